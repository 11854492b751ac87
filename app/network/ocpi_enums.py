"""OCPI enum values in one place: the domain's vocabulary (the catalog's data is written in it), what
the OCPI modules render and validate with, and what the tests' schemas check against.

OCPI 2.2.1 is the base; the `*_211` sets are the subsets OCPI 2.1.1 can express.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

PowerType = Literal["AC_1_PHASE", "AC_2_PHASE", "AC_2_PHASE_SPLIT", "AC_3_PHASE", "DC"]
ConnectorFormat = Literal["SOCKET", "CABLE"]
ConnectorType = Literal[
    "CHADEMO",
    "CHAOJI",
    "DOMESTIC_A",
    "DOMESTIC_B",
    "DOMESTIC_C",
    "DOMESTIC_D",
    "DOMESTIC_E",
    "DOMESTIC_F",
    "DOMESTIC_G",
    "DOMESTIC_H",
    "DOMESTIC_I",
    "DOMESTIC_J",
    "DOMESTIC_K",
    "DOMESTIC_L",
    "DOMESTIC_M",
    "DOMESTIC_N",
    "DOMESTIC_O",
    "GBT_AC",
    "GBT_DC",
    "IEC_60309_2_single_16",
    "IEC_60309_2_three_16",
    "IEC_60309_2_three_32",
    "IEC_60309_2_three_64",
    "IEC_62196_T1",
    "IEC_62196_T1_COMBO",
    "IEC_62196_T2",
    "IEC_62196_T2_COMBO",
    "IEC_62196_T3A",
    "IEC_62196_T3C",
    "NEMA_5_20",
    "NEMA_6_30",
    "NEMA_6_50",
    "NEMA_10_30",
    "NEMA_10_50",
    "NEMA_14_30",
    "NEMA_14_50",
    "PANTOGRAPH_BOTTOM_UP",
    "PANTOGRAPH_TOP_DOWN",
    "TESLA_R",
    "TESLA_S",
]
Capability = Literal[
    "CHARGING_PROFILE_CAPABLE",
    "CHARGING_PREFERENCES_CAPABLE",
    "CHIP_CARD_SUPPORT",
    "CONTACTLESS_CARD_SUPPORT",
    "CREDIT_CARD_PAYABLE",
    "DEBIT_CARD_PAYABLE",
    "PED_TERMINAL",
    "REMOTE_START_STOP_CAPABLE",
    "RESERVABLE",
    "RFID_READER",
    "START_SESSION_CONNECTOR_REQUIRED",
    "TOKEN_GROUP_CAPABLE",
    "UNLOCK_CAPABLE",
]
ParkingType = Literal[
    "ALONG_MOTORWAY", "PARKING_GARAGE", "PARKING_LOT", "ON_DRIVEWAY", "ON_STREET", "UNDERGROUND_GARAGE"
]
Facility = Literal[
    "HOTEL",
    "RESTAURANT",
    "CAFE",
    "MALL",
    "SUPERMARKET",
    "SPORT",
    "RECREATION_AREA",
    "NATURE",
    "MUSEUM",
    "BIKE_SHARING",
    "BUS_STOP",
    "TAXI_STAND",
    "TRAM_STOP",
    "METRO_STATION",
    "TRAIN_STATION",
    "AIRPORT",
    "PARKING_LOT",
    "CARPOOL_PARKING",
    "FUEL_STATION",
    "WIFI",
]
TariffDimension = Literal["ENERGY", "FLAT", "PARKING_TIME", "TIME"]
TariffType = Literal["AD_HOC_PAYMENT", "PROFILE_CHEAP", "PROFILE_FAST", "PROFILE_GREEN", "REGULAR"]
EvseStatus = Literal[
    "AVAILABLE", "BLOCKED", "CHARGING", "INOPERATIVE", "OUTOFORDER", "PLANNED", "REMOVED", "RESERVED", "UNKNOWN"
]
TokenType = Literal["AD_HOC_USER", "APP_USER", "OTHER", "RFID"]
TokenType211 = Literal["OTHER", "RFID"]
WhitelistType = Literal["ALWAYS", "ALLOWED", "ALLOWED_OFFLINE", "NEVER"]
AllowedType = Literal["ALLOWED", "BLOCKED", "EXPIRED", "NO_CREDIT", "NOT_ALLOWED"]
AuthMethod = Literal["AUTH_REQUEST", "COMMAND", "WHITELIST"]
SessionStatus = Literal["ACTIVE", "COMPLETED", "INVALID", "PENDING", "RESERVATION"]
ProfileType = Literal["CHEAP", "FAST", "GREEN", "REGULAR"]
ParkingRestriction = Literal["EV_ONLY", "PLUGGED", "DISABLED", "CUSTOMERS", "MOTORCYCLES"]
DayOfWeek = Literal["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]
LocationType211 = Literal["ON_STREET", "PARKING_GARAGE", "UNDERGROUND_GARAGE", "PARKING_LOT", "OTHER", "UNKNOWN"]


def values(enum: Any) -> tuple[str, ...]:
    """The values of one of the Literal enums above, in declaration order."""
    return get_args(enum)


POWER_TYPES_211 = frozenset({"AC_1_PHASE", "AC_3_PHASE", "DC"})
CAPABILITIES_211 = frozenset(
    {
        "CHARGING_PROFILE_CAPABLE",
        "CREDIT_CARD_PAYABLE",
        "REMOTE_START_STOP_CAPABLE",
        "RESERVABLE",
        "RFID_READER",
        "UNLOCK_CAPABLE",
    }
)
# 2.2 added BIKE_SHARING, TRAM_STOP, METRO_STATION and PARKING_LOT.
FACILITIES_211 = frozenset(values(Facility)) - {"BIKE_SHARING", "TRAM_STOP", "METRO_STATION", "PARKING_LOT"}
# 2.2 added CHAOJI, DOMESTIC_M–O, GBT_*, NEMA_* and the pantographs.
CONNECTOR_TYPES_211 = frozenset(
    t
    for t in values(ConnectorType)
    if not t.startswith(("NEMA_", "GBT_", "PANTOGRAPH_"))
    and t not in {"CHAOJI", "DOMESTIC_M", "DOMESTIC_N", "DOMESTIC_O"}
)
