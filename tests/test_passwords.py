"""Charger passwords: HMAC of the server secret over (cpo_id, identity), stored as sha256."""

from __future__ import annotations

import hashlib
import re

import pytest

from app.security.passwords import charger_password, password_hash

KEY = b"k" * 32
URL_SAFE = re.compile(r"[A-Za-z0-9_-]{32}")


def test_known_answer():
    # Frozen: changing the derivation would lock every running charger out of its CPO.
    assert charger_password(KEY, 1, "alice-0001-01") == "S2g5gZbw9euFcSGT9wcyX2UB1wfaxAv6"


def test_deterministic_url_safe_and_long_enough():
    p = charger_password(KEY, 7, "zoe-co-0003-12")
    assert p == charger_password(KEY, 7, "zoe-co-0003-12")
    assert URL_SAFE.fullmatch(p) and 24 <= len(p) <= 40  # OCPP passwordString: at most 40 characters


@pytest.mark.parametrize(
    ("other_key", "cpo_id", "identity"),
    [
        (b"other key", 7, "cp-0001-01"),  # the secret, not the public inputs, makes the password
        (KEY, 8, "cp-0001-01"),  # same identity in another CPO
        (KEY, 7, "cp-0001-02"),
    ],
)
def test_every_input_changes_the_password(other_key: bytes, cpo_id: int, identity: str):
    assert charger_password(other_key, cpo_id, identity) != charger_password(KEY, 7, "cp-0001-01")


def test_inputs_are_not_ambiguous():
    # Concatenation would make (1, "2x") and (12, "x") the same message.
    assert charger_password(KEY, 1, "2x") != charger_password(KEY, 12, "x")


def test_empty_key_is_refused():
    with pytest.raises(ValueError, match="must not be empty"):
        charger_password(b"", 1, "cp-0001-01")


def test_password_hash_is_sha256_hex():
    p = charger_password(KEY, 1, "alice-0001-01")
    assert password_hash(p) == hashlib.sha256(p.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", password_hash(p)) and password_hash(p) != password_hash(p + "x")
