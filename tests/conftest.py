from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.databases import BACKENDS, DatabaseFactory, PostgresServer
from tests.emsp_peer import EmspPeer
from tests.stack import Stack, free_port

# OCPI code the tests run in-process (pushes) calls eMSP peers on loopback, like the stack does.
os.environ.setdefault("CPOLAB_EGRESS_ALLOW_LOOPBACK", "1")

# Fixtures that give a test a database: with `--db postgres` only the tests using one of them run
# (the rest touch no database and already ran on SQLite).
DATABASE_FIXTURES = frozenset({"databases", "stack"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=BACKENDS,
        default=os.environ.get("CPOLAB_TEST_DB", "sqlite"),
        help="app database backend for the tests (default: sqlite, or CPOLAB_TEST_DB)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: exercises a SQLite-specific path; skipped with --db postgres")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--db") != "postgres":
        return
    keep, drop = [], []
    for item in items:
        touches_db = bool(DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())))
        (keep if touches_db and not item.get_closest_marker("sqlite_only") else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test that used the stack shows the stack's recent warnings and errors: a CI log is
    the only evidence of a failure that does not happen on a developer's machine."""
    outcome = yield
    report = outcome.get_result()
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and call.when == "call" and isinstance(stack, Stack):
        report.sections.append(("stack warnings and errors (newest last)", stack.recent_problems()))


@pytest.fixture(scope="session")
def databases(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    backend = request.config.getoption("--db")
    server = None
    if backend == "postgres":
        server = PostgresServer(free_port()).start()
    dbs = DatabaseFactory(backend, Path(tmp_path_factory.mktemp("databases")), server)
    try:
        yield dbs
    finally:
        dbs.close()
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory, databases: DatabaseFactory) -> AsyncIterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("stack")), database=databases.new("stack"))
    try:
        await s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.client() as c:
        yield c


@pytest.fixture(scope="session")
async def peer() -> AsyncIterator[EmspPeer]:
    """An independent eMSP (its own versions, details and receiver endpoints) on loopback."""
    p = await EmspPeer().start()
    try:
        yield p
    finally:
        await p.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client with no credentials, for OCPI calls with explicit Token headers."""
    async with httpx.AsyncClient(timeout=30) as c:
        yield c
