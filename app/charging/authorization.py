"""Who may charge: a token presented at a charger (OCPP idTag / idToken) against the tokens the
eMSP pushed (the whitelist, table `ocpi_token`) and, where the whitelist type asks for it, the
eMSP's real-time authorization (the call itself is app.ocpi.authorize; this module only decides).

Whitelist rules (OCPI 2.2.1 WhitelistType; a token with `valid=false` is BLOCKED without asking):

| cached token            | asks the eMSP | eMSP down / too slow                 | auth_method          |
|-------------------------|---------------|--------------------------------------|----------------------|
| ALWAYS                  | no            | —                                    | WHITELIST            |
| ALLOWED                 | yes           | ALLOWED (it is whitelisted)          | AUTH_REQUEST / WHITELIST when down |
| ALLOWED_OFFLINE         | yes           | ALLOWED                              | AUTH_REQUEST / WHITELIST when down |
| NEVER                   | yes           | NOT_ALLOWED                          | AUTH_REQUEST         |
| unknown token           | yes           | UNKNOWN (nobody vouches for it)      | AUTH_REQUEST         |

OCPP 1.6 idTags are at most 20 characters, OCPI uids 36. A uid of up to 20 characters is its own
idTag; a longer one maps to `id_tag_for(uid)`: 20 base32 characters of SHA-256(upper(uid)) —
deterministic (the same uid gives the same idTag on every process, for every CPO) and 100 bits wide,
so distinct uids do not collide in practice. The pair is stored (`ocpp_id_tag`) when the token is
pushed or a remote start sends it, so an idTag coming back from a charger maps to its uid.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.charging_tables import IdTagMapping
from app.store.db import Database
from app.store.ocpi_tables import OcpiToken

MAX_ID_TAG_16 = 20

# OCPI AllowedType, plus UNKNOWN: the eMSP does not know the token (404 / 2004), or nobody answered.
ALLOWED = "ALLOWED"
UNKNOWN = "UNKNOWN"

# OCPI allowed → OCPP authorization status (ocpp-sim reference §9).
OCPP16_STATUS = {
    "ALLOWED": "Accepted",
    "BLOCKED": "Blocked",
    "EXPIRED": "Expired",
    "NO_CREDIT": "Invalid",
    "NOT_ALLOWED": "Invalid",
    UNKNOWN: "Invalid",
}
OCPP201_STATUS = {
    "ALLOWED": "Accepted",
    "BLOCKED": "Blocked",
    "EXPIRED": "Expired",
    "NO_CREDIT": "NoCredit",
    "NOT_ALLOWED": "NotAtThisLocation",
    UNKNOWN: "Unknown",
}
# OCPP 2.0.1 IdTokenEnumType → the OCPI TokenType tried first (then any type).
OCPI_TYPE_OF_201 = {"ISO14443": "RFID", "ISO15693": "RFID", "Local": "AD_HOC_USER", "Central": "APP_USER"}


def id_tag_for(uid: str) -> str:
    """The OCPP 1.6 idTag for an OCPI token uid (see the module docstring)."""
    if len(uid) <= MAX_ID_TAG_16:
        return uid
    digest = hashlib.sha256(uid.upper().encode()).digest()
    return base64.b32encode(digest).decode()[:MAX_ID_TAG_16]


async def remember_id_tag(session: AsyncSession, cpo_id: int, uid: str) -> str:
    """Store the idTag ↔ uid pair of a long uid (idempotent); returns the idTag to send over 1.6."""
    id_tag = id_tag_for(uid)
    if id_tag != uid:
        dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(IdTagMapping.__table__).on_conflict_do_nothing()  # type: ignore[arg-type]
        await session.execute(insert, {"cpo_id": cpo_id, "id_tag": id_tag, "uid": uid})
    return id_tag


async def uid_of(session: AsyncSession, cpo_id: int, id_tag: str) -> str:
    """The OCPI uid an idTag stands for (itself unless it is a stored mapping)."""
    if len(id_tag) != MAX_ID_TAG_16:
        return id_tag
    found = await session.execute(
        select(IdTagMapping.uid).where(IdTagMapping.cpo_id == cpo_id, IdTagMapping.id_tag == id_tag)
    )
    return found.scalar_one_or_none() or id_tag


@dataclass(frozen=True)
class TokenRef:
    """The eMSP token a session is billed to (OCPI CdrToken)."""

    country_code: str
    party_id: str
    uid: str
    type: str
    contract_id: str

    def cdr_token(self) -> dict[str, str]:
        return {
            "country_code": self.country_code,
            "party_id": self.party_id,
            "uid": self.uid,
            "type": self.type,
            "contract_id": self.contract_id,
        }

    @classmethod
    def of_token(cls, data: dict[str, Any], country_code: str = "", party_id: str = "") -> TokenRef | None:
        """From an OCPI Token object (2.2.1, or 2.1.1 with `auth_id` and no country/party)."""
        try:
            return cls(
                str(data.get("country_code") or country_code).upper(),
                str(data.get("party_id") or party_id).upper(),
                str(data["uid"]),
                str(data["type"]),
                str(data.get("contract_id") or data.get("auth_id") or data["uid"]),
            )
        except (KeyError, TypeError):
            return None


@dataclass(frozen=True)
class CachedToken:
    ref: TokenRef
    valid: bool
    whitelist: str
    peer_id: int | None


@dataclass(frozen=True)
class RealtimeQuery:
    cpo_id: int
    uid: str
    token_type: str  # the OCPI TokenType asked for
    location_id: str
    evse_uids: tuple[str, ...]
    peer_id: int | None  # the eMSP that pushed the token (None: unknown token, ask the CPO's eMSP)


@dataclass(frozen=True)
class RealtimeAnswer:
    outcome: Literal["answered", "unknown", "unreachable"]
    allowed: str | None = None  # OCPI AllowedType when answered
    token: TokenRef | None = None
    authorization_reference: str | None = None
    detail: str = ""


RealtimeAuthorizer = Callable[[RealtimeQuery], Awaitable[RealtimeAnswer]]


@dataclass(frozen=True)
class Decision:
    allowed: str  # OCPI AllowedType or UNKNOWN
    token: TokenRef | None
    auth_method: str  # OCPI AuthMethod
    authorization_reference: str | None = None

    @property
    def accepted(self) -> bool:
        return self.allowed == ALLOWED

    def ocpp16_status(self) -> str:
        return OCPP16_STATUS.get(self.allowed, "Invalid")

    def ocpp201_status(self) -> str:
        return OCPP201_STATUS.get(self.allowed, "Invalid")


def needs_realtime(cached: CachedToken | None) -> bool:
    return cached is None or (cached.valid and cached.whitelist != "ALWAYS")


def decide(cached: CachedToken | None, answer: RealtimeAnswer | None) -> Decision:
    """The decision for a token from the cache and, when `needs_realtime`, the eMSP's answer."""
    if cached is not None and not cached.valid:
        return Decision("BLOCKED", cached.ref, "WHITELIST")
    if cached is not None and cached.whitelist == "ALWAYS":
        return Decision(ALLOWED, cached.ref, "WHITELIST")
    if answer is None or answer.outcome == "unreachable":
        if cached is not None and cached.whitelist in ("ALLOWED", "ALLOWED_OFFLINE"):
            return Decision(ALLOWED, cached.ref, "WHITELIST")
        if cached is not None:  # NEVER: only the eMSP may say yes
            return Decision("NOT_ALLOWED", cached.ref, "AUTH_REQUEST")
        return Decision(UNKNOWN, None, "AUTH_REQUEST")
    token = answer.token or (cached.ref if cached else None)
    if answer.outcome == "unknown":
        return Decision(UNKNOWN, token, "AUTH_REQUEST")
    return Decision(answer.allowed or UNKNOWN, token, "AUTH_REQUEST", answer.authorization_reference)


async def cached_token(
    session: AsyncSession, cpo_id: int, uid: str, preferred_type: str | None = None
) -> CachedToken | None:
    """The pushed token with this uid: `preferred_type` first, then RFID, then any type (uids
    compare case-insensitively, as CiString)."""
    rows = (
        (await session.execute(select(OcpiToken).where(OcpiToken.cpo_id == cpo_id, OcpiToken.uid == uid.upper())))
        .scalars()
        .all()
    )
    if not rows:
        return None
    order = [preferred_type, "RFID"]
    rows = sorted(rows, key=lambda r: (order.index(r.type) if r.type in order else len(order), r.type))
    row = rows[0]
    ref = TokenRef.of_token(row.data, row.country_code, row.party_id)
    if ref is None:
        return None
    return CachedToken(ref, bool(row.data.get("valid")), str(row.data.get("whitelist", "ALWAYS")), row.peer_id)


async def authorize(
    db: Database,
    realtime: RealtimeAuthorizer,
    *,
    cpo_id: int,
    id_tag: str,
    preferred_type: str | None,
    location_id: str,
    evse_uids: tuple[str, ...],
) -> Decision:
    """Decide on a token presented at a charger (the real-time call runs with no transaction open)."""
    async with db.session() as session:
        uid = await uid_of(session, cpo_id, id_tag)
        cached = await cached_token(session, cpo_id, uid, preferred_type)
    answer = None
    if needs_realtime(cached):
        token_type = cached.ref.type if cached else (preferred_type or "RFID")
        peer_id = cached.peer_id if cached else None
        answer = await realtime(RealtimeQuery(cpo_id, uid, token_type, location_id, evse_uids, peer_id))
    return decide(cached, answer)
