"""Real-time authorization at the eMSP: `POST {emsp tokens}/{uid}/authorize?type=` with
LocationReferences, through the one outbound client (egress policy, per-CPO slots, traffic log),
bounded by `authorize_timeout` (the charger is waiting for its answer).

The eMSP asked is the one that pushed the token, or, for a token nobody pushed, the CPO's first
registered eMSP with a tokens endpoint. HTTP 404 or OCPI 2004 = the eMSP does not know the token;
anything else that is not a valid AuthorizationInfo (timeout, 5xx, garbage) = unreachable, and
app.charging.authorization applies the whitelist fallback.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import quote

from sqlalchemy import select

from app.charging.authorization import RealtimeAnswer, RealtimeQuery, TokenRef
from app.network.ocpi_enums import AllowedType, values
from app.ocpi import client
from app.settings import Settings, get_settings
from app.store.db import Database
from app.store.ocpi_tables import OcpiPeer
from app.store.tables import Cpo

ALLOWED_TYPES = frozenset(values(AllowedType))
MAX_REFERENCE = 36


def sender_url(peer: OcpiPeer, module: str) -> str | None:
    """The peer's Sender endpoint for `module` (2.1.1 endpoints carry no role)."""
    for endpoint in peer.endpoints:
        if endpoint.get("identifier") == module and endpoint.get("role", "SENDER") == "SENDER":
            return str(endpoint["url"])
    return None


@functools.lru_cache(maxsize=8)
def _bounded(settings: Settings) -> Settings:
    """The settings of an authorize call: the client's deadline cut to `authorize_timeout`."""
    return settings.model_copy(update={"outbound_timeout": min(settings.outbound_timeout, settings.authorize_timeout)})


class RealtimeAuthorizer:
    """app.charging.authorization.RealtimeAuthorizer over OCPI, for one database."""

    def __init__(self, db: Database, settings: Settings | None = None) -> None:
        self.db = db
        self.settings = settings or get_settings()

    async def __call__(self, query: RealtimeQuery) -> RealtimeAnswer:
        async with self.db.session() as session:
            cpo = await session.get(Cpo, query.cpo_id)
            peers = (
                (
                    await session.execute(
                        select(OcpiPeer)
                        .where(OcpiPeer.cpo_id == query.cpo_id, OcpiPeer.registered.is_(True))
                        .order_by(OcpiPeer.id)
                    )
                )
                .scalars()
                .all()
            )
        candidates = [p for p in peers if sender_url(p, "tokens")]
        peer = next((p for p in candidates if p.id == query.peer_id), None) or next(iter(candidates), None)
        if cpo is None or peer is None:
            return RealtimeAnswer("unreachable", detail="no registered eMSP with a tokens endpoint")
        base = sender_url(peer, "tokens")
        assert base is not None
        url = client.join_url(base, quote(query.uid, safe=""), "authorize") + f"?type={query.token_type}"
        body: dict[str, Any] = {"location_id": query.location_id, "evse_uids": list(query.evse_uids)}
        result = await client.call(
            self.db,
            cpo_id=query.cpo_id,
            method="POST",
            url=url,
            token=peer.token_b,
            version=peer.version,
            module="tokens",
            body=body,
            routing=client.Routing(cpo.country_code, cpo.party_id, peer.country_code, peer.party_id),
            settings=_bounded(self.settings),
        )
        if result.http_status == 404 or result.ocpi_status_code == 2004:
            return RealtimeAnswer("unknown", detail=result.error or "unknown token")
        if not result.ok:
            return RealtimeAnswer("unreachable", detail=result.error or "")
        return _answer(result.data, peer)


def _answer(data: Any, peer: OcpiPeer) -> RealtimeAnswer:
    """An AuthorizationInfo (2.2.1 or 2.1.1) as a RealtimeAnswer; a malformed one counts as no answer."""
    if not isinstance(data, dict) or data.get("allowed") not in ALLOWED_TYPES:
        return RealtimeAnswer("unreachable", detail="the answer is not an AuthorizationInfo")
    token = data.get("token")
    ref = TokenRef.of_token(token, peer.country_code or "", peer.party_id or "") if isinstance(token, dict) else None
    reference = data.get("authorization_reference") or data.get("authorization_id")  # 2.1.1 spelling
    if not isinstance(reference, str) or not 0 < len(reference) <= MAX_REFERENCE:
        reference = None
    return RealtimeAnswer("answered", str(data["allowed"]), ref, reference)
