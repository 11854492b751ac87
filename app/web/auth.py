"""Control-plane bearer auth: HS256 JWTs with `org` (tenant) and space-separated `scope` claims."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from starlette.exceptions import HTTPException
from starlette.requests import Request

READ = "cpos:read"
WRITE = "cpos:write"
ALL_SCOPES = (READ, WRITE)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    sub: str
    org: str
    scopes: frozenset[str]


def mint_token(
    secret: str, org: str, sub: str = "dev", scopes: tuple[str, ...] = ALL_SCOPES, ttl_seconds: int = 86400
) -> str:
    now = int(time.time())
    claims = {"sub": sub, "org": org, "scope": " ".join(scopes), "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm="HS256")


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing bearer token", headers=_CHALLENGE)
    return token.strip()


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_lifetime(claims: dict[str, Any], max_ttl: int) -> None:
    """`exp` (and `iat` when present) must be JSON numbers: PyJWT alone accepts `"exp": "9999999999"`.
    A leaked token must not stay valid for years, so its lifetime is capped (`CPOLAB_JWT_MAX_TTL`)."""
    exp, iat = claims["exp"], claims.get("iat")
    if not _numeric(exp) or (iat is not None and not _numeric(iat)):
        raise HTTPException(401, "invalid token: exp and iat must be numeric dates", headers=_CHALLENGE)
    lifetime = exp - (iat if iat is not None else time.time())
    if lifetime > max_ttl:
        raise HTTPException(
            401, f"invalid token: lifetime exceeds the maximum of {max_ttl} s (exp - iat)", headers=_CHALLENGE
        )


def authenticate(request: Request, scope: str) -> Principal:
    """401 for anything wrong with the token itself, 403 for a valid token lacking org or scope."""
    settings = request.app.state.settings
    try:
        claims = jwt.decode(
            _bearer(request),
            settings.jwt_secret,
            algorithms=["HS256"],
            options={"require": ["exp"], "verify_exp": True, "verify_iat": True},
        )
    except jwt.ExpiredSignatureError as exc:
        raise HTTPException(401, "token expired", headers=_CHALLENGE) from exc
    except jwt.InvalidTokenError as exc:
        raise HTTPException(401, f"invalid token: {exc}", headers=_CHALLENGE) from exc
    _check_lifetime(claims, settings.jwt_max_ttl)
    org = claims.get("org")
    if not isinstance(org, str) or not org:
        raise HTTPException(403, "token has no org claim")
    raw_scope = claims.get("scope", "")
    scopes = frozenset(raw_scope.split()) if isinstance(raw_scope, str) else frozenset()
    if scope not in scopes:
        raise HTTPException(403, f"token lacks scope {scope}")
    return Principal(sub=str(claims.get("sub", "")), org=org, scopes=scopes)
