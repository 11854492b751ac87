"""The network's local clock (app/network/local_time.py): standard time in either hemisphere, one
population-weighted offset per country, and the offset a create hands the background traffic."""

from __future__ import annotations

import pytest

from app.network.generator import GENERATOR_VERSION
from app.network.geography import Country, Place
from app.network.local_time import country_utc_offset_s, network_utc_offset_s, standard_offset_s

HOUR = 3600


@pytest.mark.parametrize(
    ("zone", "hours"),
    [
        ("Europe/Amsterdam", 1),  # +2 in summer
        ("Australia/Sydney", 10),  # +11 in January (southern summer)
        ("America/Sao_Paulo", -3),
        ("America/Chicago", -6),
        ("Asia/Kolkata", 5.5),
        ("Etc/UTC", 0),
    ],
)
def test_a_zone_s_offset_is_its_standard_time(zone: str, hours: float) -> None:
    assert standard_offset_s(zone) == hours * HOUR


def test_an_unknown_zone_has_no_offset() -> None:
    assert standard_offset_s("Mars/Olympus_Mons") is None
    assert standard_offset_s("../etc/passwd") is None


@pytest.mark.parametrize(
    ("country", "low", "high"),
    [
        ("NL", 1, 1),
        ("GB", 0, 0),
        ("IN", 5.5, 5.5),
        ("US", -6.5, -5.5),  # most people live in the Eastern and Central zones
        ("AU", 9, 10),  # Sydney and Melbourne outweigh Perth
        ("BR", -3.5, -3),
    ],
)
def test_a_network_runs_on_its_people_s_clock(country: str, low: float, high: float) -> None:
    offset = network_utc_offset_s(country, GENERATOR_VERSION)
    assert low * HOUR <= offset <= high * HOUR
    assert offset % 900 == 0  # a quarter hour


def test_the_mean_is_weighted_by_population_and_skips_unknown_zones() -> None:
    two = Country(
        alpha_2="XX",
        alpha_3="XXX",
        postal_regex="",
        places=(
            Place("East", 0.0, 0.0, "Etc/GMT-4"),  # POSIX sign: UTC+4
            Place("West", 0.0, 0.0, "Etc/GMT+2"),  # UTC-2
            Place("Nowhere", 0.0, 0.0, "No/Such_Zone"),
        ),
        cumulative_population=(300, 400, 1000),
        synthetic=True,
    )
    # (3 × 4 h + 1 × -2 h) / 4, the unknown zone's 600 people left out.
    assert country_utc_offset_s(two) == 2.5 * HOUR
    nowhere = Country("XX", "XXX", "", (Place("Nowhere", 0.0, 0.0, "No/Such_Zone"),), (1,), True)
    assert country_utc_offset_s(nowhere) == 0
