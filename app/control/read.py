"""Reads of the control plane: templates, the org's CPO list, detail, status (with live charger counts
once READY) and the report."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response

from app.control.charger_counts import charger_counts, count_cache
from app.control.chargers import csms_root
from app.control.common import database, gateway, owned_call, summary_fields
from app.control.report import ENDED, Registration, render_report
from app.control.schemas import (
    CpoDetail,
    CpoList,
    CpoStatusResponse,
    CpoSummary,
    ReportOut,
    Simulation,
    TemplateList,
    TemplateOut,
)
from app.control.temporal_gateway import BackendUnavailable, Liveness
from app.lifecycle.models import TERMINAL, CpoStatus
from app.network import catalog
from app.store.db import as_utc, utcnow
from app.store.tables import Charger, Cpo, CredentialToken, Location
from app.web.auth import READ, authenticate
from app.web.http import enum_query, model_response, page_query, unprocessable
from app.web.urls import ocpi_root, ocpi_versions_url, status_url

REPORT_MAX_LOCATIONS = 100  # the one-pager lists this many sites, then summarises the rest
MARKDOWN = "text/markdown; charset=utf-8"
LIVE_PROGRESS = frozenset({CpoStatus.PENDING, CpoStatus.PROVISIONING, CpoStatus.DESTROYING})


async def list_templates(request: Request) -> Response:
    authenticate(request, READ)
    items = [TemplateOut.model_validate(catalog.template_gallery_item(t)) for t in catalog.list_templates()]
    return model_response(TemplateList(data=items, total=len(items)))


async def list_cpos(request: Request) -> Response:
    principal = authenticate(request, READ)
    page, limit, problems = page_query(request)
    status_filter = enum_query(request, "status", CpoStatus, problems)
    if problems:
        return unprocessable(problems)
    conditions = [Cpo.org == principal.org]
    if status_filter:
        conditions.append(Cpo.status == status_filter)
    async with database(request).session() as session:
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
    data = [CpoSummary(**summary_fields(request, c)) for c in rows]
    return model_response(CpoList(data=data, total=total, page=page, limit=limit))


async def get_cpo(request: Request) -> Response:
    _, cpo = await owned_call(request, READ)
    return await detail_response(request, cpo)


async def detail_response(request: Request, cpo: Cpo) -> Response:
    async with database(request).session() as session:
        peers = (
            await session.execute(
                select(func.count(func.distinct(CredentialToken.peer_id))).where(
                    CredentialToken.cpo_id == cpo.id, CredentialToken.kind == "C", CredentialToken.revoked_at.is_(None)
                )  # type: ignore[union-attr]
            )
        ).scalar_one()
    detail = CpoDetail(
        **summary_fields(request, cpo),
        created_at=as_utc(cpo.created_at),
        updated_at=as_utc(cpo.updated_at),
        registered_peers=peers,
        ocpi_version=cpo.ocpi_version,
        overrides=cpo.overrides,
        simulation=Simulation.model_validate(cpo.simulation or {}),
    )
    return model_response(detail)


async def get_status(request: Request) -> Response:
    call, cpo = await owned_call(request, READ)
    cpo_id = call.cpo_id
    fields: dict[str, Any] = {
        "status": cpo.status,
        "progress": cpo.progress,
        "error": cpo.error,
        "provisioned_at": as_utc(cpo.provisioned_at),
        "updated_at": as_utc(cpo.updated_at),
        "expires_at": as_utc(cpo.expires_at),
    }
    counts = None
    if cpo.status not in TERMINAL:
        # READY and the terminal states are written to the row before the workflow reports them, so
        # the row is authoritative there; while provisioning or tearing down, the query has the live
        # progress, and once READY the chargers' live states are counted in the DB. All asks run at
        # once, so an unreachable Temporal costs one short timeout.
        gw = gateway(request)
        query = gw.query_state(cpo_id) if cpo.status in LIVE_PROGRESS else _none()
        counted = count_cache(request).get(cpo_id) if cpo.status == CpoStatus.READY else _none()
        state, live, counts = await asyncio.gather(query, gw.liveness(cpo_id), counted)
        if state is not None:
            fields.update(
                status=state.status,
                progress=state.progress,
                error=state.error,
                provisioned_at=state.provisioned_at,
                expires_at=state.expires_at,
                updated_at=state.updated_at or fields["updated_at"],
            )
        if await _reconcile(request, cpo, live):
            fields["status"] = CpoStatus.DESTROYING
    if counts is not None and fields["status"] == CpoStatus.READY:
        fields["chargers"] = counts
        if fields["progress"] is not None:
            fields["progress"] = {**fields["progress"], "chargers_online": counts.online}
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


async def _none() -> None:
    return None


async def _reconcile(request: Request, cpo: Cpo, live: Liveness | None) -> bool:
    """A live row whose workflow closed (terminated) or vanished gets torn down, never left READY
    forever. A young PENDING row without a workflow may still be starting: the reconciler decides."""
    assert cpo.id is not None
    settings = request.app.state.settings
    young = as_utc(cpo.created_at) > utcnow() - timedelta(seconds=settings.reconcile_grace)  # type: ignore[operator]
    if live is None or live == Liveness.RUNNING or (live == Liveness.MISSING and cpo.workflow_run_id is None and young):
        return False
    try:
        await gateway(request).start_teardown(cpo.id, f"status found the workflow {live.value}")
    except BackendUnavailable:
        return False
    return True


async def get_report(request: Request) -> Response:
    call, cpo = await owned_call(request, READ)
    cpo_id = call.cpo_id
    async with database(request).session() as session:
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
        live = CredentialToken.revoked_at.is_(None)  # type: ignore[union-attr]
        token_a_live = (
            await session.execute(
                select(func.count()).where(CredentialToken.cpo_id == cpo_id, CredentialToken.kind == "A", live)
            )
        ).scalar_one() > 0
        peers = (
            await session.execute(
                select(func.count(func.distinct(CredentialToken.peer_id))).where(
                    CredentialToken.cpo_id == cpo_id, CredentialToken.kind == "C", live
                )
            )
        ).scalar_one()
        counts = None if cpo.status in ENDED else await charger_counts(session, cpo_id)
    markdown = render_report(
        cpo,
        locations,
        per_location,
        ocpi_versions_url(request, cpo_id),
        f"{ocpi_root(request, cpo_id)}/{cpo.ocpi_version}/credentials",
        Registration(token_a_live=token_a_live, registered_peers=peers),
        chargers=counts,
        csms_root=csms_root(request, cpo_id),
    )
    if prefers_markdown(request.headers.get("accept", "")):
        return Response(markdown, media_type=MARKDOWN)
    return model_response(ReportOut(cpo_id=str(cpo_id), markdown=markdown, chargers=counts))


def prefers_markdown(accept: str) -> bool:
    """True when the Accept header ranks text/markdown above JSON (JSON wins ties and absent headers)."""
    weights: dict[str, float] = {}
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[media.lower()] = max(q, weights.get(media.lower(), 0.0))
    markdown = weights.get("text/markdown", 0.0)
    json_q = max(weights.get(m, 0.0) for m in ("application/json", "application/*", "*/*"))
    return markdown > json_q
