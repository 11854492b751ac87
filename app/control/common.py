"""What every control-plane handler shares: the request prologue (auth, path id, ownership) and
the CPO fields the summary, detail and 202 answers have in common."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from app.control.schemas import PartyScope, Topology
from app.control.temporal_gateway import TemporalGateway
from app.store.db import Database, as_utc
from app.store.tables import Cpo
from app.web.auth import Principal, authenticate
from app.web.http import require_path_id
from app.web.urls import cpo_url, ocpi_versions_url, report_url, status_url


def database(request: Request) -> Database:
    return request.app.state.db


def gateway(request: Request) -> TemporalGateway:
    return request.app.state.temporal


def unavailable(detail: str, code: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code}, status_code=503)


async def owned_cpo(request: Request, principal: Principal, cpo_id: int) -> Cpo:
    """The org's CPO or 404: another org's CPO is indistinguishable from a missing one."""
    async with database(request).session() as session:
        cpo = await session.get(Cpo, cpo_id)
    if cpo is None or cpo.org != principal.org:
        raise HTTPException(404, f"CPO {cpo_id} not found")
    return cpo


@dataclass(frozen=True)
class CpoCall:
    principal: Principal
    cpo_id: int


def cpo_call(request: Request, scope: str) -> CpoCall:
    """The prologue of every /ocpi/cpos/{cpo_id}… handler: token and scope (401/403), then the id (422)."""
    principal = authenticate(request, scope)
    return CpoCall(principal, require_path_id(request))


async def owned_call(request: Request, scope: str) -> tuple[CpoCall, Cpo]:
    call = cpo_call(request, scope)
    return call, await owned_cpo(request, call.principal, call.cpo_id)


def party(cpo: Cpo) -> PartyScope:
    return PartyScope(country_code=cpo.country_code, party_id=cpo.party_id, role=cpo.role)  # type: ignore[arg-type]


def summary_fields(request: Request, cpo: Cpo) -> dict[str, Any]:
    assert cpo.id is not None
    return {
        "cpo_id": str(cpo.id),
        "party": party(cpo),
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
