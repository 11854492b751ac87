"""What kind of site a generated location is (generator 3): opening hours and publication.

The site type follows from the name suffix the generator picked (`countries.json` maps each suffix:
"Shopping Centre" → mall, "Fleet Depot" → depot …). A site type without hours is open 24/7, except
in a parking garage, which keeps the garage's hours. A depot is not published: only the operator's
fleet (`publish_allowed_to`, by token group) sees it.
"""

from __future__ import annotations

from app.network.plans import OpeningTimesPlan, PublishTokenPlan, RegularHoursPlan
from app.network.regional import CountryRealism, Hours

_GARAGES = frozenset({"PARKING_GARAGE", "UNDERGROUND_GARAGE"})
_ALWAYS_OPEN = OpeningTimesPlan(twentyfourseven=True)


def _opening_times(hours: tuple[Hours, ...]) -> OpeningTimesPlan:
    if not hours:
        return _ALWAYS_OPEN
    regular = sorted(
        (RegularHoursPlan(day, h.begin, h.end) for h in hours for day in h.weekdays),
        key=lambda r: (r.weekday, r.period_begin),
    )
    return OpeningTimesPlan(twentyfourseven=False, regular_hours=tuple(regular))


def site_access(
    realism: CountryRealism, suffix: str, parking_type: str, party_id: str, operator: str
) -> tuple[OpeningTimesPlan, bool, tuple[PublishTokenPlan, ...] | None]:
    """(opening_times, publish, publish_allowed_to) of a location named with `suffix`."""
    rule = next((s for s in realism.sites if s.suffix == suffix), None)
    hours = rule.hours if rule else ()
    if not hours and parking_type in _GARAGES and (rule is None or rule.published):
        hours = realism.garage_hours
    if rule is not None and not rule.published:
        fleet = (PublishTokenPlan(group_id=f"{party_id}-FLEET", issuer=(operator.strip() or party_id)[:64]),)
        return _opening_times(hours), False, fleet
    return _opening_times(hours), True, None
