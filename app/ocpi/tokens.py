"""Tokens module, CPO = Receiver: the eMSP PUTs/PATCHes its tokens here and may GET one back.

URL `/tokens/{country_code}/{party_id}/{token_uid}[?type=RFID]`. A URL party that is none of the
peer's handshake roles → HTTP 404 (allowed by the spec); URL and body disagreeing → 2001; a body that
is valid JSON but not a valid Token → HTTP 200 with 2001 (it reached the OCPI layer). PUT answers 201
for a new token, 200 for an update; PATCH needs `last_updated`; unknown token → HTTP 404 with 2004.
CiStrings (country, party, uid) match case-insensitively; the stored object keeps the sender's case.
A uid longer than an OCPP 1.6 idTag (20) gets its idTag mapping stored with the token
(app.charging.authorization.id_tag_for), so a charger presenting that idTag finds the token.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StrictBool, StringConstraints, ValidationError
from sqlalchemy import select, update
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.charging.authorization import remember_id_tag
from app.network.ocpi_enums import ProfileType, TokenType, TokenType211, WhitelistType, values
from app.ocpi.transport import OcpiContext, OcpiError, json_body, ocpi_datetime, ocpi_response, ocpi_route
from app.ocpi.transport import parse_ocpi_datetime as _parse_dt
from app.store.ocpi_tables import OcpiToken

TOKEN_TYPES_221 = values(TokenType)
TOKEN_TYPES_211 = values(TokenType211)


def _s(n: int) -> Any:
    return Annotated[str, StringConstraints(min_length=1, max_length=n)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class EnergyContract(_Lenient):
    supplier_name: _s(64)  # type: ignore[valid-type]
    contract_id: _s(64) | None = None  # type: ignore[valid-type]


class Token221(_Lenient):
    country_code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")]
    party_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{3}$")]
    uid: _s(36)  # type: ignore[valid-type]
    type: TokenType
    contract_id: _s(36)  # type: ignore[valid-type]
    visual_number: _s(64) | None = None  # type: ignore[valid-type]
    issuer: _s(64)  # type: ignore[valid-type]
    group_id: _s(36) | None = None  # type: ignore[valid-type]
    valid: StrictBool
    whitelist: WhitelistType
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")] | None = None
    default_profile_type: ProfileType | None = None
    energy_contract: EnergyContract | None = None
    last_updated: str


class Token211(_Lenient):
    uid: _s(36)  # type: ignore[valid-type]
    type: TokenType211
    auth_id: _s(36)  # type: ignore[valid-type]
    visual_number: _s(64) | None = None  # type: ignore[valid-type]
    issuer: _s(64)  # type: ignore[valid-type]
    valid: StrictBool
    whitelist: WhitelistType
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")] | None = None
    last_updated: str


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors(include_url=False)
    )


class _Key(BaseModel):
    country_code: str
    party_id: str
    uid: str
    type: str


def _key(request: Request, ctx: OcpiContext) -> _Key:
    """URL parts, checked against the peer's roles; `type` from the query (default RFID)."""
    cc, pid, uid = (request.path_params[k] for k in ("country_code", "party_id", "token_uid"))
    roles = (ctx.peer.roles if ctx.peer else []) or []
    parties = {(str(r.get("country_code", "")).upper(), str(r.get("party_id", "")).upper()) for r in roles}
    if (cc.upper(), pid.upper()) not in parties:
        raise OcpiError(2001, f"{cc}/{pid} is not one of your registered roles", http_status=404)
    token_type = (request.query_params.get("type") or "RFID").strip().upper()
    allowed = TOKEN_TYPES_211 if ctx.version == "2.1.1" else TOKEN_TYPES_221
    if token_type not in allowed:
        raise OcpiError(2001, f"type must be one of {', '.join(allowed)}, got {token_type!r}")
    return _Key(country_code=cc.upper(), party_id=pid.upper(), uid=uid, type=token_type)


def _validate(body: Any, key: _Key, version: str) -> dict[str, Any]:
    """A full, valid Token matching the URL; returns it normalised (last_updated in `Z` form)."""
    if not isinstance(body, dict):
        raise OcpiError(2001, "body must be a Token object")
    try:
        token = (Token211 if version == "2.1.1" else Token221).model_validate(body)
        last_updated = _parse_dt(token.last_updated)
    except ValidationError as exc:
        raise OcpiError(2001, "invalid Token: " + _errors(exc)) from None
    except ValueError as exc:
        raise OcpiError(2001, f"invalid Token: last_updated: {exc}") from None
    if isinstance(token, Token221) and (
        token.country_code.upper() != key.country_code or token.party_id.upper() != key.party_id
    ):
        raise OcpiError(2001, "country_code/party_id in the body differ from the URL")
    if token.uid.upper() != key.uid.upper():
        raise OcpiError(2001, f"uid {token.uid!r} in the body differs from {key.uid!r} in the URL")
    if token.type != key.type:
        raise OcpiError(2001, f"type {token.type!r} in the body differs from ?type={key.type}")
    return {**body, "last_updated": ocpi_datetime(last_updated)}


def _where(ctx: OcpiContext, key: _Key) -> list[Any]:
    return [
        OcpiToken.cpo_id == ctx.cpo_id,
        OcpiToken.country_code == key.country_code,
        OcpiToken.party_id == key.party_id,
        OcpiToken.uid == key.uid.upper(),
        OcpiToken.type == key.type,
    ]


async def _load(ctx: OcpiContext, key: _Key) -> OcpiToken | None:
    assert ctx.db is not None
    async with ctx.db.session() as session:
        return (await session.execute(select(OcpiToken).where(*_where(ctx, key)))).scalar_one_or_none()


async def _store(ctx: OcpiContext, key: _Key, data: dict[str, Any]) -> bool:
    """Upsert; True when the token is new."""
    assert ctx.db is not None
    row = {
        "cpo_id": ctx.cpo_id,
        "country_code": key.country_code,
        "party_id": key.party_id,
        "uid": key.uid.upper(),
        "type": key.type,
        "peer_id": ctx.peer_id,
        "data": data,
        "last_updated": _parse_dt(data["last_updated"]),
    }
    async with ctx.db.session() as session, session.begin():
        existed = (await session.execute(ctx.db.insert_ignore(OcpiToken), row)).rowcount == 0
        if existed:
            await session.execute(
                update(OcpiToken)
                .where(*_where(ctx, key))
                .values(data=data, last_updated=row["last_updated"], peer_id=ctx.peer_id)
            )
        await remember_id_tag(session, ctx.cpo_id, str(data["uid"]))  # a long uid's OCPP 1.6 idTag
    return not existed


async def get_token(request: Request, ctx: OcpiContext) -> Response:
    key = _key(request, ctx)
    row = await _load(ctx, key)
    if row is None:
        raise OcpiError(2004, f"unknown token {key.uid} ({key.type})", http_status=404)
    return ocpi_response(row.data)


async def put_token(request: Request, ctx: OcpiContext) -> Response:
    key = _key(request, ctx)
    data = _validate(await json_body(request), key, ctx.version)
    created = await _store(ctx, key, data)
    return ocpi_response(http_status=201 if created else 200)


async def patch_token(request: Request, ctx: OcpiContext) -> Response:
    key = _key(request, ctx)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise OcpiError(2001, "body must be a (partial) Token object")
    if "last_updated" not in body:
        raise OcpiError(2001, "PATCH must include last_updated")
    row = await _load(ctx, key)
    if row is None:
        raise OcpiError(2004, f"unknown token {key.uid} ({key.type}): PUT it first", http_status=404)
    data = _validate({**row.data, **body}, key, ctx.version)
    await _store(ctx, key, data)
    return ocpi_response()


_HANDLERS = {"GET": get_token, "PUT": put_token, "PATCH": patch_token}


async def tokens(request: Request, ctx: OcpiContext) -> Response:
    return await _HANDLERS.get(request.method, get_token)(request, ctx)


routes: list[BaseRoute] = [
    ocpi_route(
        "/ocpi/peer/{cpo_id:int}/{version}/tokens/{country_code}/{party_id}/{token_uid}",
        tokens,
        methods=list(_HANDLERS),
        module="tokens",
        needs_peer=True,
    )
]
