"""EVSEs that match the hardware: per charger model, the OCPI EVSEs and connectors each generator
version makes, and the OCPP connector numbering (`app.network.topology`) on top of them."""

from __future__ import annotations

import dataclasses
from collections import Counter
from functools import cache

import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from app.lifecycle.models import SA_CPO_ID, SA_ORG, SA_STATE, SA_TEMPLATE, workflow_id
from app.network import catalog
from app.network.blueprint import Blueprint, TemplateSnapshot, resolve_blueprint
from app.network.catalog import ChargerModel, Connector, power_class
from app.network.generator import GENERATOR_VERSION, LocationPlan, NetworkSpec, generate_locations, network_shape
from app.network.topology import OcppConnector, charger_layouts, ocpp_connectors
from app.store.db import Database
from app.store.tables import PartyReservation
from tests.rows import cpo_row
from tests.stack import Stack, wait_status

CCS, CHADEMO, T2, CCS1 = "IEC_62196_T2_COMBO", "CHADEMO", "IEC_62196_T2", "IEC_62196_T1_COMBO"


def _model(model_id: str) -> ChargerModel:
    model = catalog.get_charger_model(model_id)
    assert model is not None, model_id
    return model


def _dc(standard: str) -> Connector:
    return Connector(
        standard=standard, format="CABLE", power_type="DC", max_voltage=920, max_amperage=200, max_electric_power=150000
    )


# Hardware the shipped catalog does not sell (the generator must not care): a Terra 54 whose firmware
# speaks 2.0.1, and one power output with three DC cables.
TERRA_54_ON_201 = _model("abb-terra-54").model_copy(update={"id": "terra-54-201", "ocpp_versions": ("1.6", "2.0.1")})
THREE_CABLES = ChargerModel(
    id="one-output-three-cables",
    vendor="Test",
    model="Tri-cable 150",
    serial_prefix="TRI",
    power_type="DC",
    max_power_w=150000,
    ocpp_versions=("1.6", "2.0.1"),
    capabilities=("RFID_READER", "REMOTE_START_STOP_CAPABLE"),
    evses=((_dc(CCS), _dc(CHADEMO), _dc(CCS1)),),
)


@cache
def _one_model_blueprint(model: ChargerModel, ocpp_version: str) -> Blueprint:
    """A template of one charger model (the catalog's site kind and tariffs), as a stored blueprint."""
    base = resolve_blueprint("mixed-depot", "FR")  # a depot with both tariffs
    assert base is not None
    power_types = sorted({c.power_type for output in model.outputs for c in output})
    classes = {power_class(p) for p in power_types}
    template = TemplateSnapshot.model_validate(
        base.template.model_dump()
        | {
            "slug": "one-model",
            "ocpp_versions": [ocpp_version],
            "power_types": power_types,
            "charger_mix": [{"model": model.model_dump(), "share": 1, "ocpp_version": ocpp_version}],
            "tariffs": [t.model_dump() for t in base.template.tariffs if t.power_class in classes],
        }
    )
    # Through JSON, as a CPO's stored blueprint is read back.
    return Blueprint.model_validate_json(Blueprint(template=template, country=base.country).model_dump_json())


def _one_charger(model: ChargerModel, ocpp_version: str, version: int) -> LocationPlan:
    bp = _one_model_blueprint(model, ocpp_version)
    spec = NetworkSpec("one-model", 3, "FR", "TOP", "topo", locations=1, chargers_per_location=1)
    (location,) = generate_locations(dataclasses.replace(spec, generator_version=version), bp, 0, 1)
    return location


def _standards(location: LocationPlan) -> list[list[str]]:
    return [[c.standard for c in evse.connectors] for evse in location.evses]


@pytest.mark.parametrize(
    ("model", "ocpp_version", "version", "evses"),
    [
        # One output, CCS + CHAdeMO: one EVSE with two connectors on both protocols (version 2).
        (_model("abb-terra-54"), "1.6", 2, [[CCS, CHADEMO]]),
        (_model("tritium-rtm75"), "1.6", 2, [[CCS, CHADEMO]]),
        (TERRA_54_ON_201, "2.0.1", 2, [[CCS, CHADEMO]]),
        (TERRA_54_ON_201, "1.6", 2, [[CCS, CHADEMO]]),
        # Version 1 split a 1.6 charger's connectors into virtual EVSEs; 2.0.1 always had the outputs.
        (_model("abb-terra-54"), "1.6", 1, [[CCS], [CHADEMO]]),
        (TERRA_54_ON_201, "2.0.1", 1, [[CCS, CHADEMO]]),
        # One output, three cables: one EVSE with three connectors.
        (THREE_CABLES, "1.6", 2, [[CCS, CHADEMO, CCS1]]),
        (THREE_CABLES, "2.0.1", 2, [[CCS, CHADEMO, CCS1]]),
        (THREE_CABLES, "1.6", 1, [[CCS], [CHADEMO], [CCS1]]),
        # Triple charger: the DC output (CCS | CHAdeMO) and the AC cable charge two cars at once.
        (_model("abb-terra-54-cjg"), "1.6", 2, [[CCS, CHADEMO], [T2]]),
        (_model("abb-terra-54-cjg"), "1.6", 1, [[CCS], [CHADEMO], [T2]]),
        # Dual outlet: two EVSEs in every version.
        (_model("alfen-eve-double-pro-line"), "1.6", 2, [[T2], [T2]]),
        (_model("alfen-eve-double-pro-line"), "2.0.1", 2, [[T2], [T2]]),
        (_model("alfen-eve-double-pro-line"), "1.6", 1, [[T2], [T2]]),
        # Two outputs, the second with two cables.
        (_model("abb-terra-184"), "2.0.1", 2, [[CCS], [CCS, CHADEMO]]),
        (_model("abb-terra-184"), "1.6", 2, [[CCS], [CCS, CHADEMO]]),
        (_model("abb-terra-184"), "1.6", 1, [[CCS], [CCS], [CHADEMO]]),
    ],
    ids=lambda v: v.id if isinstance(v, ChargerModel) else None,
)
def test_evses_per_model_and_version(model: ChargerModel, ocpp_version: str, version: int, evses: list[list[str]]):
    location = _one_charger(model, ocpp_version, version)
    (charger,) = location.chargers
    assert _standards(location) == evses
    assert [e.ocpp_evse_id for e in location.evses] == list(range(1, len(evses) + 1))
    assert [e.uid for e in location.evses] == [f"LOC00001-C01-{n}" for n in range(1, len(evses) + 1)]
    assert charger.evse_uids == tuple(e.uid for e in location.evses)
    for evse in location.evses:
        assert evse.charger_identity == charger.identity
        assert [c.id for c in evse.connectors] == [str(k) for k in range(1, len(evse.connectors) + 1)]
        assert evse.capabilities == model.capabilities
    bp = _one_model_blueprint(model, ocpp_version)
    shape = network_shape(NetworkSpec("one-model", 3, "FR", "TOP", "topo", 1, 1, version), bp)
    assert (shape.evses, shape.connectors) == (len(evses), sum(map(len, evses)))


def test_triple_charger_outputs_keep_their_power_and_tariff():
    location = _one_charger(_model("abb-terra-54-cjg"), "1.6", GENERATOR_VERSION)
    dc, ac = location.evses
    assert {(c.power_type, c.tariff_id) for c in dc.connectors} == {("DC", "DC-FAST")}
    assert [(c.power_type, c.format, c.max_electric_power, c.tariff_id) for c in ac.connectors] == [
        ("AC_3_PHASE", "CABLE", 43000, "AC-STD")
    ]


# ---- OCPP connector numbering on the generated layout ---------------------------------------------


def _numbering(model: ChargerModel, ocpp_version: str, version: int) -> list[tuple[int, int, str]]:
    location = _one_charger(model, ocpp_version, version)
    ((identity, layout),) = charger_layouts(location).items()
    assert identity == location.chargers[0].identity
    return [(c.ocpp_evse_id, c.ocpp_connector_id, c.connector_id) for c in ocpp_connectors(ocpp_version, layout)]


@pytest.mark.parametrize(
    ("model", "ocpp_version", "version", "numbering"),
    [
        # 1.6: connectorId runs 1..n across the charger, EVSE by EVSE.
        (_model("abb-terra-54"), "1.6", 2, [(1, 1, "1"), (1, 2, "2")]),
        (_model("abb-terra-54-cjg"), "1.6", 2, [(1, 1, "1"), (1, 2, "2"), (2, 3, "1")]),
        (_model("abb-terra-184"), "1.6", 2, [(1, 1, "1"), (2, 2, "1"), (2, 3, "2")]),
        (THREE_CABLES, "1.6", 2, [(1, 1, "1"), (1, 2, "2"), (1, 3, "3")]),
        # 2.0.1: (evseId, connectorId within the EVSE).
        (TERRA_54_ON_201, "2.0.1", 2, [(1, 1, "1"), (1, 2, "2")]),
        (_model("abb-terra-184"), "2.0.1", 2, [(1, 1, "1"), (2, 1, "1"), (2, 2, "2")]),
        (_model("alfen-eve-double-pro-line"), "2.0.1", 2, [(1, 1, "1"), (2, 1, "1")]),
        # Version 1 CPOs: a virtual EVSE per connector, so the rule gives connectorId == ocpp_evse_id
        # (what their routing rows already say).
        (_model("abb-terra-184"), "1.6", 1, [(1, 1, "1"), (2, 2, "1"), (3, 3, "1")]),
    ],
    ids=lambda v: v.id if isinstance(v, ChargerModel) else None,
)
def test_ocpp_numbering_per_model(model: ChargerModel, ocpp_version: str, version: int, numbering: list):
    assert _numbering(model, ocpp_version, version) == numbering


@pytest.mark.parametrize("version", [1, 2])
def test_charger_layouts_cover_a_whole_location_in_order(version: int):
    bp = resolve_blueprint("city-mixed-large", "DE")
    assert bp is not None
    spec = NetworkSpec("city-mixed-large", 11, "DE", "LAY", "layouts", 2, 12, version)
    for location in generate_locations(spec, bp, 0, 2):
        layouts = charger_layouts(location)
        assert list(layouts) == [c.identity for c in location.chargers]
        evses = {e.uid: e for e in location.evses}
        seen: Counter[str] = Counter()
        for charger in location.chargers:
            layout = layouts[charger.identity]
            assert tuple(uid for _, uid, _ in layout) == charger.evse_uids
            assert [n for n, _, _ in layout] == list(range(1, len(layout) + 1))
            for ocpp_evse_id, uid, connector_ids in layout:
                evse = evses[uid]
                assert (evse.charger_identity, evse.ocpp_evse_id) == (charger.identity, ocpp_evse_id)
                assert connector_ids == tuple(c.id for c in evse.connectors)
                seen[uid] += 1
            connectors = ocpp_connectors(charger.ocpp_version, layout)
            assert len(connectors) == sum(len(ids) for _, _, ids in layout)
            if charger.ocpp_version == "1.6":
                assert [c.ocpp_connector_id for c in connectors] == list(range(1, len(connectors) + 1))
            else:
                assert all(c.ocpp_connector_id == int(c.connector_id) for c in connectors)
        assert seen == Counter(evses.keys())  # every EVSE once


def test_charger_layouts_do_not_depend_on_evse_order():
    location = _one_charger(_model("abb-terra-54-cjg"), "1.6", 2)
    shuffled = dataclasses.replace(location, evses=tuple(reversed(location.evses)))
    assert charger_layouts(shuffled) == charger_layouts(location)
    ((_, layout),) = charger_layouts(location).items()
    assert layout == ((1, "LOC00001-C01-1", ("1", "2")), (2, "LOC00001-C01-2", ("1",)))


def test_ocpp_numbering_is_an_ocpp_connector_per_ocpi_connector():
    location = _one_charger(THREE_CABLES, "1.6", 2)
    ((_, layout),) = charger_layouts(location).items()
    assert ocpp_connectors("1.6", layout) == [
        OcppConnector(ocpp_evse_id=1, ocpp_connector_id=n, evse_uid="LOC00001-C01-1", connector_id=str(n))
        for n in (1, 2, 3)
    ]


# ---- end to end: the API creates version 2; a run whose input names no version stays version 1 -----


ORG = "topology"


def _routes(stack: Stack, cpo_id: int) -> set[tuple[str, int, str]]:
    rows = stack.query("SELECT identity, ocpp_evse_id, evse_uid FROM charger_route WHERE cpo_id = ?", cpo_id)
    return {(str(identity), int(str(n)), str(uid)) for identity, n, uid in rows}


def _planned_routes(spec: NetworkSpec) -> set[tuple[str, int, str]]:
    bp = resolve_blueprint(spec.template, spec.country_code)
    assert bp is not None
    return {
        (identity, n, uid)
        for location in generate_locations(spec, bp, 0, network_shape(spec, bp).locations)
        for identity, layout in charger_layouts(location).items()
        for n, uid, _ in layout
    }


async def test_a_new_cpo_gets_version_2_and_an_unversioned_run_keeps_version_1(stack: Stack):
    spec = NetworkSpec("highway-dc", 99, "NL", "TP2", "topo")  # 3 sites x (Terra 184 + HYC300)
    async with stack.client(org=ORG) as client:
        body = {"template": "highway-dc", "country_code": "NL", "party_id": "TP2", "name_prefix": "topo", "seed": 99}
        created = await client.post("/ocpi/cpos", json=body)
        assert created.status_code == 202, created.text
        new_id = created.json()["cpo_id"]
        assert created.json()["party"]["party_id"] == "TP2"
        assert (await wait_status(client, new_id, {"READY", "FAILED"}))["status"] == "READY"
        topology = (await client.get(f"/ocpi/cpos/{new_id}")).json()["topology"]
        assert (topology["chargers"], topology["evses"], topology["connectors"]) == (6, 12, 15)
        assert (stack.count("evse", int(new_id)), stack.count("connector", int(new_id))) == (12, 15)
        assert _routes(stack, int(new_id)) == _planned_routes(dataclasses.replace(spec, generator_version=2))

        # A run started before NetworkSpec had the field: its input has neither version nor shape.
        db = Database(stack.database_url)
        try:
            async with db.session() as session, session.begin():
                row = cpo_row(ORG, "TP1", country_code="NL", template="highway-dc", seed=99, name_prefix="topo")
                row.locations, row.chargers, row.evses, row.connectors = 3, 6, 15, 15
                session.add(row)
                await session.flush()
                assert row.id is not None
                session.add(PartyReservation(org=ORG, country_code="NL", party_id="TP1", cpo_id=row.id))
            old_id = row.id
        finally:
            await db.dispose()
        old_spec = dataclasses.replace(spec, party_id="TP1")
        raw_spec = {k: v for k, v in dataclasses.asdict(old_spec).items() if k != "generator_version"}
        temporal = await Client.connect(stack.temporal_address)
        await temporal.start_workflow(
            "CpoWorkflow",
            {"cpo_id": old_id, "org": ORG, "spec": raw_spec, "expires_at": None},
            id=workflow_id(old_id),
            task_queue="provisioning",
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SA_ORG, ORG),
                    SearchAttributePair(SA_TEMPLATE, "highway-dc"),
                    SearchAttributePair(SA_STATE, "PENDING"),
                    SearchAttributePair(SA_CPO_ID, old_id),
                ]
            ),
        )
        assert (await wait_status(client, str(old_id), {"READY", "FAILED"}))["status"] == "READY"
        assert (stack.count("evse", old_id), stack.count("connector", old_id)) == (15, 15)
        assert _routes(stack, old_id) == _planned_routes(dataclasses.replace(old_spec, generator_version=1))
        for cpo_id in (new_id, old_id):
            assert (await client.delete(f"/ocpi/cpos/{cpo_id}")).status_code in (200, 202)
