"""Control-plane routes: /ocpi/cpos… (CONTRACT §1)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.control.report import render_report
from app.control.schemas import (
    CpoAcceptedResponse,
    CpoDetail,
    CpoList,
    CpoStatusResponse,
    CpoSummary,
    CreateCpoRequest,
    DeleteResponse,
    PartyScope,
    ReportOut,
    RoamHelper,
    TemplateList,
    TemplateOut,
    Topology,
    UpdateCpoRequest,
)
from app.control.temporal_gateway import BackendUnavailable, TemporalGateway, TtlRejected
from app.lifecycle.models import TERMINAL, CpoStatus, CpoWorkflowInput
from app.network import catalog
from app.network.generator import NetworkSpec, network_shape
from app.network.party import reserve
from app.ocpi.roam import credentials_payload, curl_snippet
from app.security.tokens import hash_token, new_token
from app.store.db import Database, as_utc, utcnow
from app.store.tables import Charger, Cpo, CredentialToken, Location, PartyReservation
from app.web.auth import READ, WRITE, Principal, authenticate
from app.web.http import from_validation_error, issue, model_response, page_query, path_id, unprocessable
from app.web.urls import cpo_url, ocpi_root, ocpi_versions_url, report_url, status_url

RANDOM_SEED_BOUND = 2**31  # random seeds stay small enough to retype by hand
REPORT_MAX_LOCATIONS = 100  # the one-pager lists this many sites, then summarises the rest
LIVE_PROGRESS = frozenset({CpoStatus.PENDING, CpoStatus.PROVISIONING, CpoStatus.DESTROYING})


class _PartyExhausted(Exception):
    pass


def _db(request: Request) -> Database:
    return request.app.state.db


def _gateway(request: Request) -> TemporalGateway:
    return request.app.state.temporal


def _unavailable(detail: str, code: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code}, status_code=503)


async def owned_cpo(request: Request, principal: Principal, cpo_id: int) -> Cpo:
    """The org's CPO or 404: another org's CPO is indistinguishable from a missing one."""
    async with _db(request).session() as session:
        cpo = await session.get(Cpo, cpo_id)
    if cpo is None or cpo.org != principal.org:
        raise HTTPException(404, f"CPO {cpo_id} not found")
    return cpo


def _party(cpo: Cpo) -> PartyScope:
    return PartyScope(country_code=cpo.country_code, party_id=cpo.party_id, role=cpo.role)  # type: ignore[arg-type]


def _summary_fields(request: Request, cpo: Cpo) -> dict[str, Any]:
    assert cpo.id is not None
    return {
        "cpo_id": str(cpo.id),
        "party": _party(cpo),
        "name_prefix": cpo.name_prefix,
        "template": cpo.template,
        "template_version": cpo.template_version,
        "seed": cpo.seed,
        "status": cpo.status,
        "ocpi_peer_url": ocpi_versions_url(request, cpo.id),
        "topology": Topology(
            locations=cpo.locations, chargers=cpo.chargers, evses=cpo.evses, connectors=cpo.connectors
        ),
        "report_url": report_url(cpo.id),
        "status_url": status_url(cpo.id),
        "destroy_url": cpo_url(cpo.id),
        "expires_at": as_utc(cpo.expires_at),
    }


# ---- templates -----------------------------------------------------------------------------------


async def list_templates(request: Request) -> Response:
    authenticate(request, READ)
    items = [TemplateOut.model_validate(catalog.template_gallery_item(t)) for t in catalog.list_templates()]
    return model_response(TemplateList(data=items, total=len(items)))


# ---- create --------------------------------------------------------------------------------------


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
    except _PartyExhausted:
        return _unavailable(
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
    inp = CpoWorkflowInput(cpo_id=cpo.id, org=principal.org, spec=spec, expires_at=expires_at)
    try:
        run_id = await _gateway(request).start(inp, template.slug)
    except BackendUnavailable as exc:
        await _undo_insert(request, cpo.id)
        await _gateway(request).forget(cpo.id)
        return _unavailable(
            f"workflow backend unavailable ({exc}); nothing was created", "workflow_backend_unavailable"
        )
    async with _db(request).session() as session, session.begin():
        db_cpo = await session.get(Cpo, cpo.id)
        if db_cpo is not None and db_cpo.workflow_run_id is None:
            db_cpo.workflow_run_id = run_id

    versions_url = ocpi_versions_url(request, cpo.id)
    credentials_url = f"{ocpi_root(request, cpo.id)}/{body.ocpi_version}/credentials"
    accepted = CpoAcceptedResponse(
        cpo_id=str(cpo.id),
        party=_party(cpo),
        name_prefix=cpo.name_prefix,
        template=cpo.template,
        template_version=cpo.template_version,
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
            async with _db(request).session() as session, session.begin():
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


async def _undo_insert(request: Request, cpo_id: int) -> None:
    async with _db(request).session() as session, session.begin():
        await session.execute(delete(CredentialToken).where(CredentialToken.cpo_id == cpo_id))
        await session.execute(delete(PartyReservation).where(PartyReservation.cpo_id == cpo_id))
        await session.execute(delete(Cpo).where(Cpo.id == cpo_id))


# ---- read ------------------------------------------------------------------------------------------


async def list_cpos(request: Request) -> Response:
    principal = authenticate(request, READ)
    page, limit, problems = page_query(request)
    status_filter = request.query_params.get("status")
    if status_filter is not None and status_filter not in CpoStatus.__members__:
        problems.append(issue(["query", "status"], f"must be one of {', '.join(CpoStatus)}", "enum"))
    if problems:
        return unprocessable(problems)
    conditions = [Cpo.org == principal.org]
    if status_filter:
        conditions.append(Cpo.status == status_filter)
    async with _db(request).session() as session:
        total = (await session.execute(select(func.count()).select_from(Cpo).where(*conditions))).scalar_one()
        rows = (
            (
                await session.execute(
                    select(Cpo).where(*conditions).order_by(Cpo.id.desc()).offset((page - 1) * limit).limit(limit)  # type: ignore[union-attr]
                )
            )
            .scalars()
            .all()
        )
    data = [CpoSummary(**_summary_fields(request, c)) for c in rows]
    return model_response(CpoList(data=data, total=total, page=page, limit=limit))


async def get_cpo(request: Request) -> Response:
    principal = authenticate(request, READ)
    cpo_id = path_id(request)
    if isinstance(cpo_id, Response):
        return cpo_id
    return await _detail(request, await owned_cpo(request, principal, cpo_id))


async def _detail(request: Request, cpo: Cpo) -> Response:
    async with _db(request).session() as session:
        peers = (
            await session.execute(
                select(func.count(func.distinct(CredentialToken.peer_id))).where(
                    CredentialToken.cpo_id == cpo.id, CredentialToken.kind == "C", CredentialToken.revoked_at.is_(None)
                )  # type: ignore[union-attr]
            )
        ).scalar_one()
    detail = CpoDetail(
        **_summary_fields(request, cpo),
        created_at=as_utc(cpo.created_at),
        updated_at=as_utc(cpo.updated_at),
        registered_peers=peers,
        ocpi_version=cpo.ocpi_version,
        overrides=cpo.overrides,
    )
    return model_response(detail)


async def update_cpo(request: Request) -> Response:
    """PATCH: extend (or shorten, or lift) the TTL of a live CPO through the workflow's update."""
    principal = authenticate(request, WRITE)
    cpo_id = path_id(request)
    if isinstance(cpo_id, Response):
        return cpo_id
    try:
        body = UpdateCpoRequest.model_validate_json((await request.body()) or b"null")
    except ValidationError as exc:
        return from_validation_error(exc, "body")
    cpo = await owned_cpo(request, principal, cpo_id)
    if cpo.status in TERMINAL or cpo.status == CpoStatus.DESTROYING:
        raise HTTPException(409, f"CPO {cpo_id} is {cpo.status}; its TTL can no longer change")
    try:
        await _gateway(request).extend_ttl(cpo_id, body.ttl_seconds)
    except TtlRejected as exc:
        raise HTTPException(409, f"CPO {cpo_id}: {exc}") from exc
    except BackendUnavailable as exc:
        return _unavailable(f"workflow backend unavailable ({exc}); try again", "workflow_backend_unavailable")
    # The update recorded the new expires_at in the row before it answered.
    return await _detail(request, await owned_cpo(request, principal, cpo_id))


async def get_status(request: Request) -> Response:
    principal = authenticate(request, READ)
    cpo_id = path_id(request)
    if isinstance(cpo_id, Response):
        return cpo_id
    cpo = await owned_cpo(request, principal, cpo_id)
    fields: dict[str, Any] = {
        "status": cpo.status,
        "progress": cpo.progress,
        "error": cpo.error,
        "provisioned_at": as_utc(cpo.provisioned_at),
        "updated_at": as_utc(cpo.updated_at),
        "expires_at": as_utc(cpo.expires_at),
    }
    # READY and the terminal states are written to the row before the workflow reports them, so the
    # row is authoritative there; while provisioning or tearing down, the query has the live progress.
    if cpo.status in LIVE_PROGRESS:
        state = await _gateway(request).query_state(cpo_id)
        if state is not None:
            fields.update(
                status=state.status,
                progress=state.progress,
                error=state.error,
                provisioned_at=state.provisioned_at,
                expires_at=state.expires_at,
                updated_at=state.updated_at or fields["updated_at"],
            )
    out = CpoStatusResponse.model_validate(
        {
            **fields,
            "cpo_id": str(cpo_id),
            "status_url": status_url(cpo_id),
            "workflow_run_id": cpo.workflow_run_id,
            "created_at": as_utc(cpo.created_at),
        },
        from_attributes=True,
    )
    return model_response(out)


async def get_report(request: Request) -> Response:
    principal = authenticate(request, READ)
    cpo_id = path_id(request)
    if isinstance(cpo_id, Response):
        return cpo_id
    cpo = await owned_cpo(request, principal, cpo_id)
    async with _db(request).session() as session:
        per_location = dict(
            (
                await session.execute(
                    select(Charger.location_id, func.count())
                    .where(Charger.cpo_id == cpo_id)
                    .group_by(Charger.location_id)
                )
            ).all()
        )
        locations = (
            await session.execute(
                select(Location.id, Location.name, Location.city)
                .where(Location.cpo_id == cpo_id)
                .order_by(Location.idx)
                .limit(REPORT_MAX_LOCATIONS)
            )
        ).all()
    markdown = render_report(
        cpo,
        locations,
        per_location,
        ocpi_versions_url(request, cpo_id),
        f"{ocpi_root(request, cpo_id)}/{cpo.ocpi_version}/credentials",
    )
    return model_response(ReportOut(cpo_id=str(cpo_id), markdown=markdown))


# ---- delete -----------------------------------------------------------------------------------------


async def delete_cpo(request: Request) -> Response:
    """Idempotent: 202 while teardown runs, 200 once gone (or never ours: indistinguishable)."""
    principal = authenticate(request, WRITE)
    cpo_id = path_id(request)
    if isinstance(cpo_id, Response):
        return cpo_id
    async with _db(request).session() as session:
        cpo = await session.get(Cpo, cpo_id)
    if cpo is None or cpo.org != principal.org:
        return model_response(
            DeleteResponse(cpo_id=str(cpo_id), status=CpoStatus.DESTROYED, status_url=status_url(cpo_id))
        )
    if cpo.status in TERMINAL:
        return model_response(
            DeleteResponse(cpo_id=str(cpo_id), status=CpoStatus(cpo.status), status_url=status_url(cpo_id))
        )
    try:
        running = await _gateway(request).request_destroy(cpo_id)
    except BackendUnavailable as exc:
        return _unavailable(f"workflow backend unavailable ({exc}); try again", "workflow_backend_unavailable")
    status = CpoStatus.DESTROYING if running else CpoStatus(cpo.status)
    return model_response(
        DeleteResponse(cpo_id=str(cpo_id), status=status, status_url=status_url(cpo_id)), 202 if running else 200
    )


def _by_method(**handlers: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """One Route per path, so a 405 lists every allowed method in its Allow header."""

    async def dispatch(request: Request) -> Response:
        return await handlers[request.method if request.method != "HEAD" else "GET"](request)

    return dispatch


routes = [
    Route("/ocpi/cpos", _by_method(GET=list_cpos, POST=create_cpo), methods=["GET", "POST"]),
    Route("/ocpi/cpos/templates", list_templates, methods=["GET"]),
    Route("/ocpi/templates/cpos", list_templates, methods=["GET"]),
    Route(
        "/ocpi/cpos/{cpo_id}",
        _by_method(GET=get_cpo, PATCH=update_cpo, DELETE=delete_cpo),
        methods=["GET", "PATCH", "DELETE"],
    ),
    Route("/ocpi/cpos/{cpo_id}/status", get_status, methods=["GET"]),
    Route("/ocpi/cpos/{cpo_id}/report", get_report, methods=["GET"]),
]
