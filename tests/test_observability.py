"""Logging and outbound-metrics building blocks, in-process: the JSON formatter and its context, the
credential mask, and the outcome label of every kind of outbound failure (real calls to a hostile peer
on loopback, counted in the process's Prometheus registry)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from app.observability.logging import ContextFilter, JsonFormatter, bind, cpo_of_workflow, log_scope
from app.ocpi import client
from app.settings import Settings
from app.store.db import Database
from tests.databases import DatabaseFactory
from tests.hostile_peer import HostilePeer
from tests.stack import free_port

LOOSE = Settings(egress_allow_loopback=True, outbound_timeout=1.0)


def _json_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_json_lines_carry_the_scope_bound_anywhere_inside_it_and_nothing_outside() -> None:
    logger, out = _json_logger("cpolab.test.json")
    logger.info("before any scope")
    with log_scope(correlation_id="corr-1"):
        bind(cpo_id=42, workflow_id="cpo-42", ignored=None)
        logger.info("inside %s", "scope")
        try:
            raise ValueError("boom with Bearer eyJhbGciOiJIUzI1NiJ9.secret-part")
        except ValueError:
            logger.exception("failed")
    bind(cpo_id=1)  # no scope open: nothing to bind to, nothing leaks into later lines
    logger.info("after")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["before any scope", "inside scope", "failed", "after"]
    assert "cpo_id" not in lines[0] and "cpo_id" not in lines[3]
    assert lines[1]["cpo_id"] == 42 and lines[1]["workflow_id"] == "cpo-42" and lines[1]["correlation_id"] == "corr-1"
    assert lines[1]["level"] == "INFO" and lines[1]["logger"] == "cpolab.test.json" and lines[1]["time"].endswith("Z")
    assert "Bearer [redacted]" in lines[2]["exception"] and "secret-part" not in out.getvalue()


def test_credentials_in_messages_are_masked_whatever_their_case() -> None:
    logger, out = _json_logger("cpolab.test.mask")
    logger.warning("Authorization: Token QS1hYmNkZWYxMjM0NTY3OA== and token b-0123456789abcdef")
    text = out.getvalue()
    assert "QS1hYmNkZWYxMjM0NTY3OA" not in text and "b-0123456789abcdef" not in text
    assert text.count("[redacted]") == 2


def test_temporal_extras_name_the_workflow_and_its_cpo() -> None:
    logger, out = _json_logger("cpolab.test.temporal")
    logger.info("from a workflow", extra={"temporal_workflow": {"workflow_id": "cpo-7-teardown"}})
    logger.info("from the reconciler", extra={"temporal_activity": {"workflow_id": "cpolab-reconciler-run"}})
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["workflow_id"] == "cpo-7-teardown" and first["cpo_id"] == 7
    assert second["workflow_id"] == "cpolab-reconciler-run" and "cpo_id" not in second
    assert cpo_of_workflow("cpo-12") == 12 and cpo_of_workflow("cpo-x") is None and cpo_of_workflow("") is None


# ---- outbound outcomes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def hostile() -> AsyncIterator[HostilePeer]:
    peer = await HostilePeer(drip_interval=0.3).start()
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture(scope="module")
async def db(databases: DatabaseFactory) -> AsyncIterator[Database]:
    async with databases.opened("obs") as database:
        yield database


def _calls(module: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("cpolab_ocpi_outbound_calls_total", {"module": module, "outcome": outcome}) or 0.0


def _failures(module: str) -> float:
    return REGISTRY.get_sample_value("cpolab_ocpi_outbound_failures_total", {"module": module}) or 0.0


@pytest.mark.parametrize(
    ("path", "outcome"),
    [
        ("ok/versions", "ok"),
        ("internal", "http_error"),
        ("nostatus", "invalid_response"),
        ("huge", "invalid_response"),
        ("badgzip", "invalid_response"),
        ("drip-body", "timeout"),
        ("refused", "network_error"),
        ("ftp", "refused"),
    ],
)
async def test_each_outbound_result_is_counted_under_its_module_and_outcome(
    hostile: HostilePeer, db: Database, path: str, outcome: str
) -> None:
    url = {
        "refused": f"http://127.0.0.1:{free_port()}/versions",
        "ftp": "ftp://127.0.0.1/versions",
    }.get(path, f"{hostile.base}/{path}")
    before, failed_before = _calls("tariffs", outcome), _failures("tariffs")
    other = _calls("other", outcome)
    result = await client.call(
        db, cpo_id=1, method="GET", url=url, token="B-token", version="2.2.1", module="tariffs", settings=LOOSE
    )
    assert (result.error is None) == (outcome == "ok"), result.error
    assert _calls("tariffs", outcome) == before + 1
    assert _failures("tariffs") == failed_before + (outcome != "ok")
    assert _calls("other", outcome) == other


async def test_an_unknown_module_name_is_folded_into_other(hostile: HostilePeer, db: Database) -> None:
    before = _calls("other", "ok")
    await client.call(
        db, cpo_id=1, method="GET", url=f"{hostile.base}/ok/versions", token="B", version="2.2.1",
        module="made-up-by-a-caller", settings=LOOSE,
    )  # fmt: skip
    assert _calls("other", "ok") == before + 1
    assert REGISTRY.get_sample_value("cpolab_ocpi_outbound_calls_total", {"module": "made-up-by-a-caller"}) is None
