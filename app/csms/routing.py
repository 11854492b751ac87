"""The `ocpp` library's per-CALL conversions, done with the same functions but memoised.

For every CALL the library converts each payload key by two regular expressions (camel → snake),
builds the answer by `dataclasses.asdict` (a deep copy), strips the `None`s and converts each key
back by a dozen string replacements, then JSON-encodes with a fresh encoder. Profiled under the
benchmark's load that was ~20 % of the API's CPU per message. Here each key is converted once by
the library's own function and remembered, the answer is walked once, and the encoder is built
once; the output is the library's, byte for byte (tests/test_csms_routing.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ocpp.charge_point import camel_to_snake_case, snake_to_camel_case
from ocpp.messages import _DecimalEncoder

CALLRESULT = 3
MAX_CACHED_KEYS = 4096  # chargers choose their keys (customData allows any): keep the memo bounded

_LEAVES = (str, int, float)
_snake_keys: dict[str, str] = {}
_camel_keys: dict[str, str] = {}
_fields: dict[type, tuple[tuple[str, str], ...]] = {}
# The library's encoder class (Decimal with one decimal place), built once instead of per message.
_encoder = _DecimalEncoder(separators=(",", ":"))


def _memoised(memo: dict[str, str], convert: Callable[[dict[str, None]], dict[str, None]], key: str) -> str:
    """One key through the library's `convert`, remembered; past the bound new keys are converted but
    not kept, so a charger inventing keys cannot push out everyone's common ones."""
    found = memo.get(key)
    if found is None:
        found = next(iter(convert({key: None})))
        if len(memo) < MAX_CACHED_KEYS:
            memo[key] = found
    return found


def _snake(key: str) -> str:
    return _memoised(_snake_keys, camel_to_snake_case, key)


def _camel(key: str) -> str:
    return _memoised(_camel_keys, snake_to_camel_case, key)


def snake_case_payload(data: Any) -> Any:
    """`ocpp.charge_point.camel_to_snake_case`, with the key conversions memoised."""
    if isinstance(data, dict):
        return {_snake(key): snake_case_payload(value) for key, value in data.items()}
    if isinstance(data, list):
        return [snake_case_payload(value) for value in data]
    return data


def camel_case_payload(data: Any) -> Any:
    """What the library sends for an answer: `snake_to_camel_case(remove_nones(serialize_as_dict(x)))`
    in one walk (dataclasses by their fields, `None` dropped from dicts and lists, keys camelCased)."""
    if isinstance(data, _LEAVES):  # most values (str enums too): nothing to walk
        return data
    if isinstance(data, dict):
        return {_camel(key): camel_case_payload(value) for key, value in data.items() if value is not None}
    if isinstance(data, list):
        return [camel_case_payload(value) for value in data if value is not None]
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        fields = _fields.get(type(data))
        if fields is None:
            fields = _fields[type(data)] = tuple((f.name, _camel(f.name)) for f in dataclasses.fields(data))
        out = {}
        for name, key in fields:
            value = getattr(data, name)
            if value is not None:
                out[key] = camel_case_payload(value)
        return out
    return data


def call_result_text(unique_id: str, answer: Any) -> str:
    """The CALLRESULT frame of a handler's answer (a `call_result` dataclass), as the library writes it."""
    return _encoder.encode([CALLRESULT, unique_id, camel_case_payload(answer)])
