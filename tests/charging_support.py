"""Test support for charging sessions: an eMSP (tests/emsp_peer.py) registered with a seeded CPO
(its peer row and a Token C, as the credentials handshake leaves them), tokens pushed through the
CPO's real tokens module, and the OCPP transaction messages of both versions as raw payloads."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlmodel import Session

from app.security.tokens import hash_token
from app.store.db import utcnow
from app.store.ocpi_tables import OcpiPeer
from app.store.tables import CredentialToken, tariff_ids
from tests.databases import AppDatabase
from tests.emsp_peer import EmspPeer, OcpiClient, Received, new_cpo, ok, register
from tests.stack import Stack, wait_status

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    """An OCPP timestamp `seconds` after T0."""
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Emsp:
    """An eMSP registered with one CPO: call the CPO's OCPI with `client`, read pushes from `peer`."""

    peer: EmspPeer
    profile: str
    cpo_id: int
    cpo_party: str
    client: OcpiClient
    api_url: str
    version: str = "2.2.1"

    def url(self, *parts: str) -> str:
        return "/".join([f"{self.api_url}/ocpi/peer/{self.cpo_id}/{self.version}", *parts])

    async def push_token(self, uid: str, *, whitelist: str = "ALWAYS", valid: bool = True, type: str = "RFID") -> None:
        token = {
            "country_code": self.peer.country_code,
            "party_id": self.peer.party_id,
            "uid": uid,
            "type": type,
            "contract_id": f"NL-EMS-C{uid}"[:36],
            "issuer": "Test eMSP",
            "valid": valid,
            "whitelist": whitelist,
            "last_updated": "2026-03-01T00:00:00Z",
        }
        if self.version == "2.1.1":
            token["auth_id"] = token.pop("contract_id")
        resp = await self.client.request(
            "PUT",
            self.url("tokens", self.peer.country_code, self.peer.party_id, uid),
            params={"type": type},
            json=token,
        )
        assert resp.status_code in (200, 201), resp.text

    async def sessions(self) -> list[dict[str, Any]]:
        return ok(await self.client.request("GET", self.url("sessions")))  # type: ignore[no-any-return]

    def pushes(self, session_id: str) -> list[Received]:
        """Session pushes the eMSP received for this session, in arrival order."""
        tail = f"/{self.profile}/{self.version}/sessions/NL/{self.cpo_party}/{session_id}"
        return [r for r in self.peer.received if r.path == tail]

    def authorize_calls(self, uid: str) -> list[Received]:
        tail = f"/{self.profile}/{self.version}/tokens/{uid}/authorize"
        return [r for r in self.peer.received if r.path == tail and r.method == "POST"]


async def push_rfid_token(
    ocpi: OcpiClient,
    base: str,
    uid: str,
    *,
    contract_id: str,
    whitelist: str = "ALWAYS",
    issuer: str = "Test eMSP",
) -> dict[str, Any]:
    """The eMSP (NL*EMS) pushes an RFID token to the CPO's 2.2.1 tokens module at `base`; returns it."""
    token = {
        "country_code": "NL",
        "party_id": "EMS",
        "uid": uid,
        "type": "RFID",
        "contract_id": contract_id,
        "issuer": issuer,
        "valid": True,
        "whitelist": whitelist,
        "last_updated": "2026-01-01T00:00:00Z",
    }
    resp = await ocpi.request("PUT", f"{base}/tokens/NL/EMS/{uid}", params={"type": "RFID"}, json=token)
    assert resp.status_code in (200, 201), resp.text
    return token


class LiveCpo:
    """A READY CPO on a test stack with the eMSP peer registered through the real handshake: its live
    chargers and its OCPI 2.2.1 module base, called as the eMSP with `ocpi`."""

    def __init__(self, body: dict[str, Any], ocpi: OcpiClient) -> None:
        self.id = int(body["cpo_id"])
        self.base = body["ocpi_peer_url"].removesuffix("/versions") + "/2.2.1"
        self.ocpi = ocpi

    async def push_token(
        self, uid: str, *, whitelist: str = "ALWAYS", contract_id: str = "NL-EMS-C00000002-X"
    ) -> dict[str, Any]:
        """The eMSP pushes an RFID token (ALWAYS: a charger's Authorize needs no real-time call); returns it."""
        return await push_rfid_token(self.ocpi, self.base, uid, contract_id=contract_id, whitelist=whitelist)


@asynccontextmanager
async def live_cpo(stack: Stack, peer: EmspPeer, **create: Any) -> AsyncIterator[LiveCpo]:
    """Creates a CPO (`create`: POST body fields over tests.emsp_peer.CPO_BODY), waits for READY and
    registers the eMSP peer with it."""
    async with stack.client() as control, httpx.AsyncClient(timeout=30) as http:
        body = await new_cpo(control, **create)
        status = await wait_status(control, body["cpo_id"], {"READY", "FAILED"}, timeout=120)
        assert status["status"] == "READY", status
        resp, _ = await register(http, body, peer)
        yield LiveCpo(body, OcpiClient(http, ok(resp)["token"]))


def register_emsp(
    database: AppDatabase,
    http: httpx.AsyncClient,
    api_url: str,
    peer: EmspPeer,
    cpo_id: int,
    cpo_party: str,
    profile: str = "ok",
    version: str = "2.2.1",
) -> Emsp:
    """The peer row and Token C a credentials handshake leaves (endpoints = the peer's details)."""
    now = utcnow()
    base = f"{peer.base}/{profile}/{version}"
    endpoints = [{"identifier": m, "role": "RECEIVER", "url": f"{base}/{m}"} for m in ("sessions", "cdrs", "locations")]
    endpoints += [{"identifier": "tokens", "role": "SENDER", "url": f"{base}/tokens"}]
    role = {"role": "EMSP", "country_code": peer.country_code, "party_id": peer.party_id}
    token_c = "C-" + secrets.token_hex(16)
    with Session(database.engine()) as session:
        row = OcpiPeer(
            cpo_id=cpo_id,
            version=version,
            token_b=peer.new_token(),
            versions_url=peer.versions_url(profile),
            version_url=base,
            endpoints=endpoints,
            roles=[role],
            country_code=peer.country_code,
            party_id=peer.party_id,
            registered=True,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        session.add(
            CredentialToken(cpo_id=cpo_id, token_hash=hash_token(token_c), kind="C", peer_id=row.id, created_at=now)
        )
        session.commit()
    return Emsp(peer, profile, cpo_id, cpo_party, OcpiClient(http, token_c, raw=version == "2.1.1"), api_url, version)


# ---- OCPP payloads -----------------------------------------------------------------------------------


def sampled_16(wh: float, w: float | None = None) -> list[dict[str, Any]]:
    values: list[dict[str, Any]] = [{"value": str(wh)}]  # no measurand = the energy register in Wh
    if w is not None:
        values.append({"value": str(w / 1000), "measurand": "Power.Active.Import", "unit": "kW"})
    return values


def meter_16(seconds: float, wh: float, w: float | None = None) -> dict[str, Any]:
    return {"timestamp": at(seconds), "sampledValue": sampled_16(wh, w)}


def meter_201(seconds: float, wh: float, w: float | None = None, context: str | None = None) -> dict[str, Any]:
    energy: dict[str, Any] = {"value": wh / 1000, "unitOfMeasure": {"unit": "kWh"}}
    if context:
        energy["context"] = context
    values = [energy]
    if w is not None:
        values.append({"value": w, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}})
    return {"timestamp": at(seconds), "sampledValue": values}


def event_201(
    event_type: str,
    seq_no: int,
    transaction_id: str,
    seconds: float,
    trigger: str,
    *,
    evse: tuple[int, int] | None = (1, 1),
    id_token: str | None = None,
    meter: list[dict[str, Any]] | None = None,
    **info: Any,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "eventType": event_type,
        "timestamp": at(seconds),
        "triggerReason": trigger,
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": transaction_id, **info},
    }
    if evse is not None:
        payload["evse"] = {"id": evse[0], "connectorId": evse[1]}
    if id_token is not None:
        payload["idToken"] = {"idToken": id_token, "type": "ISO14443"}
    if meter is not None:
        payload["meterValue"] = meter
    return payload


# ---- tariffs -----------------------------------------------------------------------------------------


def set_tariff(database: AppDatabase, cpo_id: int, evse_uid: str, connector_id: str, elements: list[Any]) -> str:
    """Give the connector a tariff of known elements (EUR)."""
    tariff_id = (
        database.query(
            "SELECT tariff_id FROM connector WHERE cpo_id = ? AND evse_uid = ? AND id = ?",
            cpo_id,
            evse_uid,
            connector_id,
        )
    )[0][0]
    assert tariff_id
    tariff_id = tariff_ids(str(tariff_id))[0]  # the REGULAR one, which sessions with a token pay
    data = database.query("SELECT data FROM tariff WHERE cpo_id = ? AND id = ?", cpo_id, tariff_id)[0][0]
    data = json.loads(data) if isinstance(data, str) else data
    data = {**data, "currency": "EUR", "elements": elements}
    data.pop("energy_mix", None)
    database.query(  # a new last_updated: GET /tariffs renders it afresh
        "UPDATE tariff SET data = ?, currency = 'EUR', last_updated = ? WHERE cpo_id = ? AND id = ?",
        *(json.dumps(data), utcnow(), cpo_id, tariff_id),
    )
    return str(tariff_id)
