"""Credentials module: registration (A → B → C), GET, PUT (rotate to C′), DELETE (unregister).

Token lifecycle per (CPO, peer): Token A (kind "A", no peer) → POST → peer row with Token B in the
clear (we must send it) and our Token C hashed (kind "C", peer_id). PUT re-fetches the peer's
endpoints and swaps C for C′; DELETE revokes every token of the peer. Token A is single use: once
consumed or after DELETE there is no way back in without a new Token A (a new CPO), so replays get 401.

Status choices (consistent across the module): bad JSON → HTTP 400/2001; a well-formed body that fails
validation, callback failures (3001) and no common version (3002) reached the OCPI layer → HTTP 200
with the code in the envelope; POST when registered / PUT or DELETE when not → HTTP 405.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import update
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.ocpi import client
from app.ocpi.body import excerpt
from app.ocpi.egress import PeerUrl, UrlRefused, check_url
from app.ocpi.roam import credentials_payload
from app.ocpi.transport import OcpiContext, OcpiError, json_body, ocpi_response, ocpi_route
from app.security.tokens import hash_token, new_token
from app.store.db import utcnow
from app.store.ocpi_tables import OcpiPeer
from app.store.tables import CredentialToken
from app.web.urls import ocpi_versions_url

log = logging.getLogger("cpolab.ocpi.credentials")

# Credentials tokens: printable ASCII U+0021–U+007E, at most 64 characters.
TokenStr = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
CountryCode = Annotated[str, StringConstraints(min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$")]
MAX_URL = 255  # OCPI's URL type is string(255)
PartyId = Annotated[str, StringConstraints(min_length=3, max_length=3, pattern=r"^[A-Za-z0-9]{3}$")]
Role = Literal["CPO", "EMSP", "HUB", "NAP", "NSP", "OTHER", "SCSP"]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown fields from newer peers are ignored, not refused


class BusinessDetails(_Lenient):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    website: str | None = None
    logo: dict[str, Any] | None = None


class CredentialsRole(_Lenient):
    role: Role
    business_details: BusinessDetails
    party_id: PartyId
    country_code: CountryCode


class Credentials221(_Lenient):
    token: TokenStr
    url: PeerUrl
    roles: list[CredentialsRole] = Field(min_length=1)


class Credentials211(_Lenient):
    token: TokenStr
    url: PeerUrl
    business_details: BusinessDetails
    party_id: PartyId
    country_code: CountryCode


class PeerCredentials(BaseModel):
    """Version-neutral view of what the peer sent."""

    token: str
    url: str
    roles: list[dict[str, Any]]


def _parse_credentials(body: Any, version: str) -> PeerCredentials:
    try:
        if version == "2.1.1":
            flat = Credentials211.model_validate(body)
            role = {
                "role": "EMSP",
                "business_details": flat.business_details.model_dump(exclude_none=True),
                "party_id": flat.party_id,
                "country_code": flat.country_code,
            }
            return PeerCredentials(token=flat.token, url=flat.url, roles=[role])
        creds = Credentials221.model_validate(body)
    except ValidationError as exc:
        raise OcpiError(2001, "invalid Credentials object: " + _errors(exc)) from None
    roles = [r.model_dump(exclude_none=True) for r in creds.roles]
    return PeerCredentials(token=creds.token, url=creds.url, roles=roles)


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors(include_url=False)
    )


def own_credentials(request: Request, ctx: OcpiContext, token: str) -> dict[str, Any]:
    """This CPO's Credentials object with `token` = the token the peer must use to call us."""
    cpo = ctx.cpo
    return credentials_payload(
        token,
        ocpi_versions_url(request, ctx.cpo_id),
        cpo.country_code,
        cpo.party_id,
        cpo.role,
        cpo.name_prefix,
        ctx.version,
    )


# ---- callbacks to the peer -------------------------------------------------------------------------


class PeerApi(BaseModel):
    version_url: str
    endpoints: list[dict[str, Any]]


async def fetch_peer_api(ctx: OcpiContext, creds: PeerCredentials) -> PeerApi:
    """GET the peer's versions and the details of our version, with the Token B from the body."""
    assert ctx.db is not None
    common = dict(
        db=ctx.db, cpo_id=ctx.cpo_id, token=creds.token, version=ctx.version, correlation_id=ctx.correlation_id
    )
    versions = await client.call(method="GET", url=creds.url, module="versions", **common)  # type: ignore[arg-type]
    if not versions.ok or not isinstance(versions.data, list):
        raise OcpiError(3001, f"GET {creds.url} failed: {versions.error or 'data is not a list of versions'}")
    offered = {v.get("version"): v.get("url") for v in versions.data if isinstance(v, dict)}
    version_url = offered.get(ctx.version)
    if not isinstance(version_url, str) or not version_url:
        listed = ", ".join(sorted(excerpt(v, 20) for v in offered)) or "none"
        message = f"no common OCPI version: this CPO speaks {ctx.version}, you offer {listed}"
        raise OcpiError(3002, excerpt(message))
    _check_peer_url(f"the URL of version {ctx.version}", version_url)
    details = await client.call(method="GET", url=version_url, module="version_details", **common)  # type: ignore[arg-type]
    data = details.data
    if not details.ok or not isinstance(data, dict) or not isinstance(data.get("endpoints"), list):
        raise OcpiError(3001, f"GET {version_url} failed: {details.error or 'data has no endpoints list'}")
    endpoints = [
        e
        for e in data["endpoints"]
        if isinstance(e, dict) and isinstance(e.get("identifier"), str) and isinstance(e.get("url"), str)
    ]
    for endpoint in endpoints:
        _check_peer_url(f"the URL of endpoint {excerpt(endpoint['identifier'], 40)!r}", endpoint["url"])
    return PeerApi(version_url=version_url, endpoints=endpoints)


def _check_peer_url(what: str, url: str) -> None:
    """URLs we will call later are held to the rules of the one in the body (2001, never stored)."""
    try:
        check_url(url)
    except UrlRefused as exc:
        raise OcpiError(2001, f"{what} is refused: {exc}") from None
    if len(url) > MAX_URL:
        raise OcpiError(2001, f"{what} is longer than {MAX_URL} characters")


def _peer_fields(creds: PeerCredentials, api: PeerApi, now: datetime) -> dict[str, Any]:
    """What a registration (POST) or an update (PUT) stores about the peer."""
    chosen = next((r for r in creds.roles if r.get("role") == "EMSP"), creds.roles[0] if creds.roles else None)
    return {
        "token_b": creds.token,
        "versions_url": creds.url,
        "version_url": api.version_url,
        "endpoints": api.endpoints,
        "roles": creds.roles,
        "country_code": str(chosen["country_code"]).upper() if chosen else None,
        "party_id": str(chosen["party_id"]).upper() if chosen else None,
        "updated_at": now,
    }


# ---- handlers ----------------------------------------------------------------------------------------


async def get_credentials(request: Request, ctx: OcpiContext) -> Response:
    # Tokens are stored hashed; the presented token is by definition the current one for this caller.
    return ocpi_response(own_credentials(request, ctx, ctx.token))


async def post_credentials(request: Request, ctx: OcpiContext) -> Response:
    if ctx.token_kind != "A":
        raise OcpiError(2000, "already registered: use PUT to update or DELETE to unregister", http_status=405)
    creds = _parse_credentials(await json_body(request), ctx.version)
    api = await fetch_peer_api(ctx, creds)
    token_c = new_token()
    now = utcnow()
    assert ctx.db is not None
    async with ctx.db.session() as session, session.begin():
        # Consume Token A atomically: of two concurrent POSTs with the same A, only one registers.
        await _consume_presented_token(session, ctx, now, "Token A has already been used")
        peer = OcpiPeer(cpo_id=ctx.cpo_id, version=ctx.version, created_at=now, **_peer_fields(creds, api, now))
        session.add(peer)
        await session.flush()
        session.add(_token_row(ctx.cpo_id, token_c, peer.id, now))
    log.info("CPO %s: eMSP %s/%s registered (OCPI %s)", ctx.cpo_id, peer.country_code, peer.party_id, ctx.version)
    return ocpi_response(own_credentials(request, ctx, token_c))


async def put_credentials(request: Request, ctx: OcpiContext) -> Response:
    peer = _registered_peer(ctx)
    creds = _parse_credentials(await json_body(request), ctx.version)
    api = await fetch_peer_api(ctx, creds)  # re-fetched even when nothing changed (spec)
    token_c = new_token()
    now = utcnow()
    assert ctx.db is not None
    async with ctx.db.session() as session, session.begin():
        # Compare-and-swap on the presented token: of concurrent PUTs (or a PUT and a DELETE) with
        # one token, only the first to commit finds it live; the row lock (Postgres) / write lock
        # (SQLite) makes the others wait and then match nothing, so no 200 carries a dead token.
        await _consume_presented_token(session, ctx, now)
        await _revoke_peer_tokens(session, ctx.cpo_id, peer.id, now)
        await session.execute(
            update(OcpiPeer)
            .where(OcpiPeer.id == peer.id)  # type: ignore[arg-type]
            .values(**_peer_fields(creds, api, now))
        )
        session.add(_token_row(ctx.cpo_id, token_c, peer.id, now))
    return ocpi_response(own_credentials(request, ctx, token_c))


async def delete_credentials(request: Request, ctx: OcpiContext) -> Response:
    peer = _registered_peer(ctx)
    now = utcnow()
    assert ctx.db is not None
    async with ctx.db.session() as session, session.begin():
        await _consume_presented_token(session, ctx, now)
        await _revoke_peer_tokens(session, ctx.cpo_id, peer.id, now)
        await session.execute(
            update(OcpiPeer)
            .where(OcpiPeer.id == peer.id)  # type: ignore[arg-type]
            .values(registered=False, unregistered_at=now, updated_at=now)
        )
    return ocpi_response()


async def _consume_presented_token(
    session: Any,
    ctx: OcpiContext,
    now: datetime,
    lost_race: str = "this token was replaced or revoked by a concurrent credentials PUT or DELETE: "
    "use the token that request returned",
) -> None:
    """Revoke the presented token if it is still live; a request that finds it gone lost a race (401)."""
    result = await session.execute(
        update(CredentialToken)
        .where(
            CredentialToken.cpo_id == ctx.cpo_id,
            CredentialToken.token_hash == hash_token(ctx.token),
            CredentialToken.revoked_at.is_(None),  # type: ignore[union-attr]
        )
        .values(revoked_at=now)
    )
    if result.rowcount != 1:
        raise OcpiError(2000, lost_race, http_status=401)


def _registered_peer(ctx: OcpiContext) -> OcpiPeer:
    if ctx.token_kind != "C" or ctx.peer is None or not ctx.peer.registered:
        raise OcpiError(2000, "not registered: register with POST and Token A first", http_status=405)
    return ctx.peer


def _token_row(cpo_id: int, token: str, peer_id: int | None, now: datetime) -> CredentialToken:
    return CredentialToken(cpo_id=cpo_id, token_hash=hash_token(token), kind="C", peer_id=peer_id, created_at=now)


async def _revoke_peer_tokens(session: Any, cpo_id: int, peer_id: int | None, now: datetime) -> None:
    await session.execute(
        update(CredentialToken)
        .where(
            CredentialToken.cpo_id == cpo_id,
            CredentialToken.peer_id == peer_id,
            CredentialToken.revoked_at.is_(None),  # type: ignore[union-attr]
        )
        .values(revoked_at=now)
    )


_HANDLERS = {"GET": get_credentials, "POST": post_credentials, "PUT": put_credentials, "DELETE": delete_credentials}


async def credentials(request: Request, ctx: OcpiContext) -> Response:
    return await _HANDLERS.get(request.method, get_credentials)(request, ctx)  # HEAD answers like GET


routes: list[BaseRoute] = [
    ocpi_route(
        "/ocpi/peer/{cpo_id:int}/{version}/credentials",
        credentials,
        methods=list(_HANDLERS),
        module="credentials",
        needs_peer=True,
        token_a=True,
    )
]
