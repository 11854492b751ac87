"""POST /ocpi/cpos: validate, reserve the party, insert row + Token A hash, start the workflow, 202."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.control.common import database, gateway, party, unavailable
from app.control.quotas import quota_problem
from app.control.schemas import CpoAcceptedResponse, CreateCpoRequest, RoamHelper
from app.control.temporal_gateway import BackendUnavailable, WorkflowIdTaken
from app.lifecycle.models import CpoStatus, CpoWorkflowInput
from app.network import catalog
from app.network.generator import NetworkSpec, network_shape
from app.network.party import reserve
from app.ocpi.roam import credentials_payload, curl_snippet
from app.security.tokens import hash_token, new_token
from app.store.db import utcnow
from app.store.tables import Cpo, CredentialToken, PartyReservation
from app.web.auth import WRITE, Principal, authenticate
from app.web.http import from_validation_error, issue, model_response, unprocessable
from app.web.urls import cpo_url, ocpi_root, ocpi_versions_url, status_url

RANDOM_SEED_BOUND = 2**31  # random seeds stay small enough to retype by hand


class _PartyExhausted(Exception):
    pass


class _OverQuota(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


async def create_cpo(request: Request) -> Response:
    principal = authenticate(request, WRITE)
    raw = await request.body()
    try:
        body = CreateCpoRequest.model_validate_json(raw or b"null")
    except ValidationError as exc:
        return from_validation_error(exc, "body")
    template = catalog.get_template(body.template)
    if template is None:
        return JSONResponse(
            {"detail": f"unknown template {body.template!r}", "template": body.template}, status_code=404
        )
    problems = catalog.validate_overrides(template, body.overrides)
    if problems:
        return unprocessable([issue(["body", "overrides", key], msg, "override_invalid") for key, msg in problems])

    overrides = body.overrides or {}
    seed = body.seed if body.seed is not None else secrets.randbelow(RANDOM_SEED_BOUND)
    now = utcnow()
    expires_at = None if body.ttl_seconds is None else now + timedelta(seconds=body.ttl_seconds)
    token_a = new_token()
    role = body.role.value.upper()
    draft = NetworkSpec(
        template=template.slug,
        seed=seed,
        country_code=body.country_code,
        party_id=body.party_id,
        name_prefix=body.name_prefix,
        locations=overrides.get("locations"),
        chargers_per_location=overrides.get("chargers_per_location"),
    )
    shape = network_shape(draft)

    try:
        cpo = await _insert_cpo(
            request, principal, body, template.version, seed, shape, now, expires_at, token_a, role, overrides or None
        )
    except _OverQuota as exc:
        return exc.response
    except _PartyExhausted:
        return unavailable(
            f"every party_id derived from {body.party_id} is taken in {body.country_code} "
            f"by your live CPOs; destroy one or pick another party_id",
            "party_namespace_exhausted",
        )
    assert cpo.id is not None
    spec = NetworkSpec(
        template=template.slug,
        seed=seed,
        country_code=cpo.country_code,
        party_id=cpo.party_id,
        name_prefix=body.name_prefix,
        locations=draft.locations,
        chargers_per_location=draft.chargers_per_location,
    )
    inp = CpoWorkflowInput(
        cpo_id=cpo.id,
        org=principal.org,
        spec=spec,
        expires_at=expires_at,
        shape=shape,
        template_version=template.version,
    )
    failure = await _start_or_undo(request, inp, template.slug)
    if isinstance(failure, Response):
        return failure
    run_id = failure
    async with database(request).session() as session, session.begin():
        db_cpo = await session.get(Cpo, cpo.id)
        if db_cpo is not None and db_cpo.workflow_run_id is None:
            db_cpo.workflow_run_id = run_id

    versions_url = ocpi_versions_url(request, cpo.id)
    credentials_url = f"{ocpi_root(request, cpo.id)}/{body.ocpi_version}/credentials"
    accepted = CpoAcceptedResponse(
        cpo_id=str(cpo.id),
        party=party(cpo),
        name_prefix=cpo.name_prefix,
        template=cpo.template,
        template_version=cpo.template_version,
        party_id_requested=cpo.requested_party_id if cpo.requested_party_id != cpo.party_id else None,
        token_a=token_a,
        ocpi_peer_url=versions_url,
        roam_helper=RoamHelper(
            credentials_payload=credentials_payload(
                token_a, versions_url, cpo.country_code, cpo.party_id, role, cpo.name_prefix, body.ocpi_version
            ),
            curl_snippet=curl_snippet(token_a, credentials_url, body.ocpi_version),
        ),
        workflow_run_id=run_id,
        status=CpoStatus.PENDING,
        status_url=status_url(cpo.id),
        destroy_url=cpo_url(cpo.id),
        expires_at=expires_at,
    )
    return model_response(accepted, 202, headers={"Location": status_url(cpo.id)})


async def _insert_cpo(
    request: Request,
    principal: Principal,
    body: CreateCpoRequest,
    template_version: int,
    seed: int,
    shape: Any,
    now: Any,
    expires_at: Any,
    token_a: str,
    role: str,
    overrides: dict[str, int] | None,
) -> Cpo:
    """CPO row + party reservation + Token A hash in one transaction (all or nothing)."""
    for attempt in range(3):
        try:
            async with database(request).session() as session, session.begin():
                # The INSERT comes first so SQLite takes its write lock before we read reservations.
                cpo = Cpo(
                    org=principal.org,
                    country_code=body.country_code,
                    party_id=body.party_id,
                    requested_party_id=body.party_id,
                    role=role,
                    name_prefix=body.name_prefix,
                    template=body.template,
                    template_version=template_version,
                    seed=seed,
                    overrides=overrides,
                    ocpi_version=body.ocpi_version,
                    ttl_seconds=body.ttl_seconds,
                    status=CpoStatus.PENDING.value,
                    locations=shape.locations,
                    chargers=shape.chargers,
                    evses=shape.evses,
                    connectors=shape.connectors,
                    created_at=now,
                    updated_at=now,
                    expires_at=expires_at,
                )
                session.add(cpo)
                await session.flush()
                assert cpo.id is not None
                # Checked inside the insert's transaction (SQLite holds the write lock by now), so two
                # concurrent creates cannot both squeeze under the quota.
                over = await quota_problem(
                    session, request.app.state.settings, principal.org, shape.chargers, exclude_cpo_id=cpo.id
                )
                if over is not None:
                    raise _OverQuota(over)
                party_id = await reserve(session, principal.org, body.country_code, body.party_id, cpo.id)
                if party_id is None:
                    raise _PartyExhausted
                cpo.party_id = party_id
                session.add(CredentialToken(cpo_id=cpo.id, token_hash=hash_token(token_a), kind="A", created_at=now))
            return cpo
        except IntegrityError:
            if attempt == 2:  # a concurrent create kept winning the same candidate
                raise
    raise AssertionError("unreachable")


async def _start_or_undo(request: Request, inp: CpoWorkflowInput, template: str) -> str | Response:
    """Start the workflow; on ANY failure undo the insert, so no row, token or reservation outlives a
    create that did not answer 202 (the reconciler covers the one gap left: this process dying here)."""
    try:
        return await gateway(request).start(inp, template)
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
        await session.execute(delete(CredentialToken).where(CredentialToken.cpo_id == cpo_id))
        await session.execute(delete(PartyReservation).where(PartyReservation.cpo_id == cpo_id))
        await session.execute(delete(Cpo).where(Cpo.id == cpo_id))
