"""Checks of a charger's WebSocket upgrade request, before anything is accepted.

Order (each failure answers at the upgrade, nothing is accepted):
1. the charger: `cpo_id` of a live CPO (not DESTROYING/DESTROYED/FAILED) and an identity of that
   CPO → else 404 (OCPP 2.0.1 part 4 §3.2 for an unknown identity);
2. HTTP Basic auth (OCPP security profile 1): username = identity, sha256(password) equal in constant
   time to the stored hash → else 401 with `WWW-Authenticate: Basic`;
3. the subprotocol: the charger's own version (`ocpp1.6` / `ocpp2.0.1`) must be offered → else 400;
4. `X-Cpolab-Pod-Generation` (our simulator pods send it), when present, a non-negative integer →
   else 400. Whether it is too old is decided by the claim (409), atomically.
5. a DETACHED charger (the `detach` action handed it to the user's own OCPP client) refuses our pods
   (they send the generation header) with 409 and `Retry-After`, so the pod polls at that pace and is
   back soon after `attach`; any other client with the password is served. The claim re-checks it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from starlette.datastructures import Headers

from app.csms.connections import ChargerRecord, ConnectionTable
from app.security.passwords import password_hash

GENERATION_HEADER = "x-cpolab-pod-generation"
MAX_IDENTITY = 255  # anything longer is not an identity of ours (2.0.1 allows 48)
MAX_AUTHORIZATION = 1024
MAX_GENERATION = 2**63 - 1  # the column is a BIGINT
# A pod refused because its charger is detached retries after this (plus its jitter): with the pod's
# default 5 s jitter range, its charger is back within ~10 s of `attach`.
DETACHED_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Denial:
    status: int
    reason: str  # for the log and the response body; never holds credentials
    retry_after: int | None = None  # seconds, sent as `Retry-After`


@dataclass(frozen=True)
class Admission:
    record: ChargerRecord
    subprotocol: str
    generation: int | None


def subprotocol_of(ocpp_version: str) -> str:
    return f"ocpp{ocpp_version}"


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(username, password) of an `Authorization: Basic …` header, or None."""
    if not header or len(header) > MAX_AUTHORIZATION:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = decoded.decode()
    except UnicodeDecodeError:
        text = decoded.decode("latin-1")
    username, sep, password = text.partition(":")
    return (username, password) if sep else None


def parse_generation(value: str | None) -> int | Denial | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) > MAX_GENERATION:
        return Denial(400, f"{GENERATION_HEADER} must be a non-negative integer")
    return int(value)


async def check(
    table: ConnectionTable, cpo_id_text: str, identity: str, headers: Headers, offered: list[str]
) -> Admission | Denial:
    if not cpo_id_text.isascii() or not cpo_id_text.isdigit() or len(cpo_id_text) > 18 or len(identity) > MAX_IDENTITY:
        return Denial(404, "unknown charger")
    record = await table.find(int(cpo_id_text), identity)
    if record is None:
        return Denial(404, "unknown charger")
    credentials = basic_credentials(headers.get("authorization"))
    if credentials is None:
        return Denial(401, "HTTP Basic credentials required")
    username, password = credentials
    # Always hash and compare, so a wrong username takes as long as a wrong password.
    password_ok = hmac.compare_digest(password_hash(password), record.password_hash)
    if not (password_ok and hmac.compare_digest(username.encode(), identity.encode())):
        return Denial(401, "wrong credentials")
    subprotocol = subprotocol_of(record.ocpp_version)
    if subprotocol not in offered:
        return Denial(400, f"this charger speaks {subprotocol}; offered: {', '.join(offered)[:200] or 'none'}")
    generation = parse_generation(headers.get(GENERATION_HEADER))
    if isinstance(generation, Denial):
        return generation
    if record.detached and generation is not None:
        reason = "this charger is detached: an external OCPP client holds it until `attach`"
        return Denial(409, reason, retry_after=DETACHED_RETRY_AFTER_S)
    return Admission(record, subprotocol, generation)
