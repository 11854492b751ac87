"""A CPO with its generated network written straight into a test database: the rows provisioning
writes (the same row builders as activities/provisioning.py, from the generator and the template's
blueprint), without Temporal. For tests of the parts that read the network (the CSMS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from activities.provisioning import _network_rows, _routes, _tariff_rows
from app.network.blueprint import resolve_blueprint
from app.network.generator import NetworkSpec, generate_locations
from app.security.passwords import charger_password
from app.settings import Settings
from app.store.db import utcnow
from app.store.ocpi_tables import OcpiPeer
from app.store.tables import Charger, ChargerRoute, Connector, Evse, Location, Tariff
from tests.databases import AppDatabase
from tests.rows import cpo_row
from tests.stack import SECRET

# The key the Stack's API derives charger passwords with (CPOLAB_JWT_SECRET = SECRET, no charger secret).
CHARGER_KEY = Settings(jwt_secret=SECRET).charger_key()


@dataclass(frozen=True)
class SeededCharger:
    identity: str
    ocpp_version: str
    password: str
    location_id: str
    # (ocpp_evse_id, evse_uid, OCPI connector ids) of each of its EVSEs
    evses: tuple[tuple[int, str, tuple[str, ...]], ...]


@dataclass
class SeededCpo:
    cpo_id: int
    party_id: str
    chargers: dict[str, SeededCharger] = field(default_factory=dict)

    def of_version(self, ocpp_version: str) -> list[SeededCharger]:
        return [c for c in self.chargers.values() if c.ocpp_version == ocpp_version]


def seed_cpo(
    database: AppDatabase,
    *,
    party_id: str,
    org: str = "acme",
    template: str = "city-mixed-large",
    country_code: str = "NL",
    locations: int = 1,
    chargers_per_location: int = 6,
    status: str = "READY",
) -> SeededCpo:
    """A CPO row in `status` and its whole network (tariffs, locations, EVSEs, connectors, chargers
    with their password hashes, routing), as provisioning writes them."""
    blueprint = resolve_blueprint(template, country_code)
    assert blueprint is not None, template
    spec = NetworkSpec(
        template=template,
        seed=7,
        country_code=country_code,
        party_id=party_id,
        name_prefix=f"csms {party_id}",
        locations=locations,
        chargers_per_location=chargers_per_location,
    )
    with Session(database.engine()) as session:
        row = cpo_row(org, party_id, status, country_code=country_code, template=template, name_prefix=spec.name_prefix)
        session.add(row)
        session.commit()
        cpo_id = row.id
    assert cpo_id is not None
    plans = generate_locations(spec, blueprint, 0, locations)
    rows = _network_rows(cpo_id, spec, plans, CHARGER_KEY)
    with database.engine().begin() as conn:
        conn.execute(insert(Tariff), _tariff_rows(cpo_id, spec, blueprint))
        for table in (Location, Evse, Connector, Charger):
            conn.execute(insert(table), rows[table])
        conn.execute(insert(ChargerRoute), _routes(cpo_id, plans))
    seeded = SeededCpo(cpo_id, party_id)
    for loc in plans:
        for charger in loc.chargers:
            evses = tuple(
                (e.ocpp_evse_id, e.uid, tuple(c.id for c in e.connectors))
                for e in loc.evses
                if e.charger_identity == charger.identity
            )
            seeded.chargers[charger.identity] = SeededCharger(
                charger.identity,
                charger.ocpp_version,
                charger_password(CHARGER_KEY, cpo_id, charger.identity),
                loc.id,
                evses,
            )
    return seeded


def add_connector(database: AppDatabase, cpo_id: int, charger: SeededCharger, evse_uid: str, connector_id: str) -> None:
    """One more connector on an EVSE (the catalog has no multi-connector EVSE): for aggregation."""
    location_id = charger.location_id
    template = database.query(
        "SELECT standard, format, power_type, max_voltage, max_amperage FROM connector"
        " WHERE cpo_id = ? AND evse_uid = ?",
        cpo_id,
        evse_uid,
    )[0]
    with database.engine().begin() as conn:
        conn.execute(
            insert(Connector),
            [
                {
                    "cpo_id": cpo_id,
                    "evse_uid": evse_uid,
                    "id": connector_id,
                    "location_id": location_id,
                    "standard": template[0],
                    "format": template[1],
                    "power_type": template[2],
                    "max_voltage": template[3],
                    "max_amperage": template[4],
                    "last_updated": utcnow(),
                }
            ],
        )


def register_peer(database: AppDatabase, cpo_id: int) -> int:
    """A registered eMSP peer row (no handshake): the outbox writes one row per registered peer."""
    now = utcnow()
    values: dict[str, Any] = {
        "cpo_id": cpo_id,
        "version": "2.2.1",
        "token_b": "token-b",
        "versions_url": "http://127.0.0.1:9/versions",
        "version_url": "http://127.0.0.1:9/2.2.1",
        "endpoints": [],
        "roles": [],
        "registered": True,
        "created_at": now,
        "updated_at": now,
    }
    with Session(database.engine()) as session:
        peer = OcpiPeer(**values)
        session.add(peer)
        session.commit()
        assert peer.id is not None
        return peer.id
