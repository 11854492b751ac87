"""OCPP MeterValues (1.6 and 2.0.1, keys already snake_cased by the `ocpp` library) as
app.charging.sessions.Reading: one per meterValue element, in Wh / W / A / V / %.

- A sampledValue without measurand is the energy register (Energy.Active.Import.Register, OCPP 1.6
  §7.31); `unit` may be kWh / kW; 2.0.1 adds `unitOfMeasure.multiplier` (× 10^n). 1.6 values are
  strings, 2.0.1 numbers.
- Per-phase values count only when there is no total: power is summed over phases, current and
  voltage take the highest phase.
- A value that is not a number, signed data, or an unknown measurand is skipped, never an error: a
  charger's transaction messages must not fail on sanity checks (OCPP 1.6 §3.7).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from ocpp.exceptions import FormatViolationError

from app.charging.sessions import Reading

ENERGY = "Energy.Active.Import.Register"
MEASURANDS = {ENERGY: "register_wh", "Power.Active.Import": "power_w", "Current.Import": "current_a"}
MEASURANDS |= {"Voltage": "voltage_v", "SoC": "soc_percent"}
SCALE = {"kwh": 1000.0, "kw": 1000.0, "wh": 1.0, "w": 1.0, "a": 1.0, "v": 1.0, "percent": 1.0}


def parse_time(value: Any) -> datetime:
    """An OCPP dateTime (naive = UTC); a malformed one is a FormatViolation."""
    try:
        at = datetime.fromisoformat(str(value).replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise FormatViolationError(description=f"not an ISO 8601 date-time: {str(value)[:40]!r}") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _number(sampled: dict[str, Any]) -> float | None:
    if sampled.get("format") == "SignedData" or ("signed_meter_value" in sampled and "value" not in sampled):
        return None
    try:
        value = float(sampled.get("value"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):
        return None
    unit_of_measure = sampled.get("unit_of_measure") or {}
    unit = str(sampled.get("unit") or unit_of_measure.get("unit") or "").lower()
    multiplier = unit_of_measure.get("multiplier") or 0
    if not isinstance(multiplier, int) or abs(multiplier) > 9:
        return None
    return value * SCALE.get(unit, 1.0) * 10.0**multiplier


def reading(meter_value: dict[str, Any]) -> Reading | None:
    """One meterValue element ({timestamp, sampled_value[]}); None when it has no usable value."""
    at = parse_time(meter_value.get("timestamp"))
    totals: dict[str, float] = {}
    phases: dict[str, list[float]] = {}
    for sampled in meter_value.get("sampled_value") or []:
        if not isinstance(sampled, dict):
            continue
        field = MEASURANDS.get(sampled.get("measurand") or ENERGY)
        value = _number(sampled)
        if field is None or value is None:
            continue
        if sampled.get("phase") and field != "soc_percent":
            phases.setdefault(field, []).append(value)
        else:
            totals.setdefault(field, value)
    for field, values in phases.items():
        if field not in totals:
            totals[field] = sum(values) if field in ("power_w", "register_wh") else max(values)
    if not totals:
        return None
    return Reading(at, **totals)


def readings(meter_values: list[dict[str, Any]] | None) -> list[Reading]:
    out = [reading(m) for m in meter_values or [] if isinstance(m, dict)]
    return [r for r in out if r is not None]
