"""Control-plane bearer auth: HS256 JWTs with `org` (tenant) and space-separated `scope` claims."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from starlette.exceptions import HTTPException
from starlette.requests import Request

READ = "cpos:read"
WRITE = "cpos:write"
ALL_SCOPES = (READ, WRITE)


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
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def authenticate(request: Request, scope: str) -> Principal:
    """401 for anything wrong with the token itself, 403 for a valid token lacking org or scope."""
    secret = request.app.state.settings.jwt_secret
    try:
        claims = jwt.decode(_bearer(request), secret, algorithms=["HS256"], options={"require": ["exp"]})
    except jwt.ExpiredSignatureError as exc:
        raise HTTPException(401, "token expired", headers={"WWW-Authenticate": "Bearer"}) from exc
    except jwt.InvalidTokenError as exc:
        raise HTTPException(401, f"invalid token: {exc}", headers={"WWW-Authenticate": "Bearer"}) from exc
    org = claims.get("org")
    if not isinstance(org, str) or not org:
        raise HTTPException(403, "token has no org claim")
    raw_scope = claims.get("scope", "")
    scopes = frozenset(raw_scope.split()) if isinstance(raw_scope, str) else frozenset()
    if scope not in scopes:
        raise HTTPException(403, f"token lacks scope {scope}")
    return Principal(sub=str(claims.get("sub", "")), org=org, scopes=scopes)
