"""POST /ocpi/cpos: validate, reserve the party, insert row + Token A hash, start the workflow, 202."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.control.common import database, gateway, party, unavailable
from app.control.quotas import quota_problem
from app.control.schemas import CpoAcceptedResponse, CreateCpoRequest, RoamHelper
from app.control.temporal_gateway import BackendUnavailable, WorkflowIdTaken
from app.lifecycle.models import CpoStatus, CpoWorkflowInput, SimulationSettings, workflow_id
from app.network.activity_profile import ActivityProfile, profile_for
from app.network.blueprint import Blueprint, resolve_blueprint
from app.network.catalog import validate_overrides
from app.network.generator import GENERATOR_VERSION, NetworkShape, NetworkSpec, network_shape
from app.network.local_time import network_utc_offset_s
from app.network.party import reserve
from app.observability.logging import bind
from app.ocpi.roam import credentials_payload, curl_snippet
from app.security.tokens import hash_token, new_token
from app.store.db import delete_owned_rows, serialize_on, utcnow
from app.store.tables import Cpo, CpoBlueprint, CredentialToken
from app.web.auth import WRITE, Principal, authenticate
from app.web.http import from_validation_error, issue, model_response, unprocessable
from app.web.urls import cpo_url, ocpi_root, ocpi_versions_url, status_url

log = logging.getLogger("cpolab.control")

RANDOM_SEED_BOUND = 2**31  # random seeds stay small enough to retype by hand
MIN_START_BUDGET_S = 0.5  # a slow database still leaves Temporal this long to take the start
UNDO_RESERVE_S = 0.3  # kept for undoing the insert, so a 503 too answers within the bound


class _PartyExhausted(Exception):
    pass


class _OverQuota(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


@dataclass(frozen=True)
class _Draft:
    """Everything the create decides before touching the database."""

    principal: Principal
    body: CreateCpoRequest
    blueprint: Blueprint
    spec: NetworkSpec  # with the requested party; the reserved one may differ
    shape: NetworkShape
    token_a: str
    now: datetime
    expires_at: datetime | None


async def create_cpo(request: Request) -> Response:
    # Temporal gets what is left of `temporal_rpc_timeout` once the row is in, less the time an undo
    # takes, so a create answers (503 when Temporal is down) within that bound even when the database
    # was slow.
    deadline = time.monotonic() + request.app.state.settings.temporal_rpc_timeout
    principal = authenticate(request, WRITE)
    raw = await request.body()
    try:
        body = CreateCpoRequest.model_validate_json(raw or b"null")
    except ValidationError as exc:
        return from_validation_error(exc, "body")
    # The template is resolved once, here: the CPO keeps this snapshot for life (catalog edits are new
    # versions and never reach it), and the workflow's input carries the shape derived from it.
    blueprint = resolve_blueprint(body.template, body.country_code)
    if blueprint is None:
        return JSONResponse(
            {"detail": f"unknown template {body.template!r}", "template": body.template}, status_code=404
        )
    problems = validate_overrides(blueprint.template, body.overrides)
    if problems:
        return unprocessable([issue(["body", "overrides", key], msg, "override_invalid") for key, msg in problems])
    overrides = body.overrides or {}
    spec = NetworkSpec(
        template=blueprint.template.slug,
        seed=body.seed if body.seed is not None else secrets.randbelow(RANDOM_SEED_BOUND),
        country_code=body.country_code,
        party_id=body.party_id,
        name_prefix=body.name_prefix,
        locations=overrides.get("locations"),
        chargers_per_location=overrides.get("chargers_per_location"),
        generator_version=GENERATOR_VERSION,  # named, not defaulted: the default is for unversioned specs
    )
    now = utcnow()
    draft = _Draft(
        principal=principal,
        body=body,
        blueprint=blueprint,
        spec=spec,
        shape=network_shape(spec, blueprint),
        token_a=new_token(),
        now=now,
        expires_at=None if body.ttl_seconds is None else now + timedelta(seconds=body.ttl_seconds),
    )
    try:
        cpo = await _insert_cpo(request, draft)
    except _OverQuota as exc:
        return exc.response
    except _PartyExhausted:
        return unavailable(
            f"every party_id derived from {body.party_id} is taken in {body.country_code} "
            f"by your live CPOs; destroy one or pick another party_id",
            "party_namespace_exhausted",
        )
    assert cpo.id is not None
    bind(cpo_id=cpo.id, workflow_id=workflow_id(cpo.id))
    inp = CpoWorkflowInput(
        cpo_id=cpo.id,
        org=principal.org,
        spec=replace(spec, party_id=cpo.party_id),
        expires_at=draft.expires_at,
        shape=draft.shape,
        template_version=blueprint.template.version,
        simulation=SimulationSettings(**body.simulation.model_dump()),
        activity_profile=(
            await _activity_profile(blueprint.template.slug, spec) if body.simulation.background_activity else None
        ),
    )
    budget = max(MIN_START_BUDGET_S, deadline - time.monotonic() - UNDO_RESERVE_S)
    started = await _start_or_undo(request, inp, blueprint.template.slug, budget)
    if isinstance(started, Response):
        return started
    cpo_id, run_id = cpo.id, started
    if not await database(request).write_promptly(lambda session: _record_run_id(session, cpo_id, run_id)):
        # The reconciler took the row for an orphan: this create outlasted CPOLAB_RECONCILE_GRACE
        # between its INSERT and the start (a very slow Temporal). It removed the row, Token A and
        # reservation; the workflow finds no row and ends FAILED, and is terminated besides.
        gateway(request).forget(cpo.id)
        return unavailable(
            "the workflow backend answered too late: the reconciler already removed this create; "
            "nothing was created, try again",
            "workflow_backend_unavailable",
        )
    log.info("CPO %s created: org %s, template %s, %s chargers", cpo.id, principal.org, cpo.template, cpo.chargers)
    return model_response(_accepted(request, draft, cpo, run_id), 202, headers={"Location": status_url(cpo.id)})


async def _activity_profile(template: str, spec: NetworkSpec) -> ActivityProfile | None:
    """The template's traffic profile on the network's local clock (its hours are local hours)."""
    profile = profile_for(template)
    if profile is None:
        return None
    # A thread: the first call in a process loads the city data (~0.4 s of CPU), which would stall
    # every other request and charger on this event loop.
    offset = await asyncio.to_thread(network_utc_offset_s, spec.country_code, spec.generator_version)
    return replace(profile, utc_offset_s=offset)


def _accepted(request: Request, draft: _Draft, cpo: Cpo, run_id: str) -> CpoAcceptedResponse:
    assert cpo.id is not None
    version = draft.body.ocpi_version
    versions_url = ocpi_versions_url(request, cpo.id)
    credentials_url = f"{ocpi_root(request, cpo.id)}/{version}/credentials"
    return CpoAcceptedResponse(
        cpo_id=str(cpo.id),
        party=party(cpo),
        name_prefix=cpo.name_prefix,
        template=cpo.template,
        template_version=cpo.template_version,
        party_id_requested=cpo.requested_party_id if cpo.requested_party_id != cpo.party_id else None,
        token_a=draft.token_a,
        ocpi_peer_url=versions_url,
        roam_helper=RoamHelper(
            credentials_payload=credentials_payload(
                draft.token_a, versions_url, cpo.country_code, cpo.party_id, cpo.role, cpo.name_prefix, version
            ),
            curl_snippet=curl_snippet(draft.token_a, credentials_url, version),
        ),
        workflow_run_id=run_id,
        status=CpoStatus.PENDING,
        status_url=status_url(cpo.id),
        destroy_url=cpo_url(cpo.id),
        expires_at=draft.expires_at,
    )


async def _insert_cpo(request: Request, draft: _Draft) -> Cpo:
    """CPO row + blueprint + party reservation + Token A hash in one transaction (all or nothing)."""
    for attempt in range(3):
        try:
            return await database(request).write_promptly(lambda session: _insert_rows(request, draft, session))
        except IntegrityError:
            if attempt == 2:  # a concurrent create kept winning the same candidate
                raise
    raise AssertionError("unreachable")


async def _insert_rows(request: Request, draft: _Draft, session: AsyncSession) -> Cpo:
    body, shape, org = draft.body, draft.shape, draft.principal.org
    # Creates of one org take turns from here (quota and party reservation are per org):
    # Postgres by an advisory lock; on SQLite the INSERT below takes the write lock first.
    await serialize_on(session, f"cpo-create:{org}")
    cpo = Cpo(
        org=org,
        country_code=body.country_code,
        party_id=body.party_id,
        requested_party_id=body.party_id,
        role=body.role.value.upper(),
        name_prefix=body.name_prefix,
        template=draft.blueprint.template.slug,
        template_version=draft.blueprint.template.version,
        seed=draft.spec.seed,
        overrides=body.overrides or None,
        simulation=body.simulation.model_dump(),
        ocpi_version=body.ocpi_version,
        ttl_seconds=body.ttl_seconds,
        status=CpoStatus.PENDING.value,
        locations=shape.locations,
        chargers=shape.chargers,
        evses=shape.evses,
        connectors=shape.connectors,
        created_at=draft.now,
        updated_at=draft.now,
        expires_at=draft.expires_at,
    )
    session.add(cpo)
    await session.flush()
    assert cpo.id is not None
    # Checked inside the serialized transaction, so two concurrent creates cannot both squeeze under
    # the quota.
    over = await quota_problem(session, request.app.state.settings, org, shape.chargers, exclude_cpo_id=cpo.id)
    if over is not None:
        raise _OverQuota(over)
    party_id = await reserve(session, org, body.country_code, body.party_id, cpo.id)
    if party_id is None:
        raise _PartyExhausted
    cpo.party_id = party_id
    session.add(CpoBlueprint(cpo_id=cpo.id, data=draft.blueprint.model_dump(mode="json")))
    session.add(CredentialToken(cpo_id=cpo.id, token_hash=hash_token(draft.token_a), kind="A", created_at=draft.now))
    return cpo


async def _record_run_id(session: AsyncSession, cpo_id: int, run_id: str) -> bool:
    """The "202 is being sent" record the reconciler relies on; False if the row is gone."""
    row = await session.get(Cpo, cpo_id)
    if row is not None and row.workflow_run_id is None:
        row.workflow_run_id = run_id
    return row is not None


async def _start_or_undo(request: Request, inp: CpoWorkflowInput, template: str, budget: float) -> str | Response:
    """Start the workflow; on ANY failure undo the insert, so no row, token or reservation outlives a
    create that did not answer 202 (the reconciler covers the one gap left: this process dying here)."""
    try:
        return await gateway(request).start(inp, template, budget)
    except WorkflowIdTaken:
        await _undo_insert(request, inp.cpo_id)
        return unavailable(
            f"a workflow named cpo-{inp.cpo_id} already exists in Temporal namespace "
            f"{request.app.state.settings.temporal_namespace!r}: the database and the namespace are out of step "
            "(was the database reset?). Point cpolab at a fresh namespace or restore the database; "
            "nothing was created",
            "workflow_id_conflict",
        )
    except BackendUnavailable as exc:
        await _undo_insert(request, inp.cpo_id)
        gateway(request).forget(inp.cpo_id)
        return unavailable(f"workflow backend unavailable ({exc}); nothing was created", "workflow_backend_unavailable")
    except BaseException:
        await asyncio.shield(_undo_insert(request, inp.cpo_id))
        gateway(request).forget(inp.cpo_id)
        raise


async def _undo_insert(request: Request, cpo_id: int) -> None:
    async with database(request).session() as session, session.begin():
        await delete_owned_rows(session, cpo_id)
        await session.execute(delete(Cpo).where(Cpo.id == cpo_id))  # type: ignore[arg-type]
