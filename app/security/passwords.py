"""Charger OCPP passwords: HMAC of a server secret, so nobody can derive them from a CPO's public inputs.

Deterministic (a regenerated network, a retried activity or a restarted charger pod gets the same
password) and never stored in clear: the DB keeps `password_hash`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

# 24 bytes of the MAC = 192 bits = 32 URL-safe base64 characters, no padding: within OCPP's 40-character
# passwordString limit and its allowed alphabet (letters, digits, '-', '_').
_MAC_BYTES = 24


def charger_password(key: bytes, cpo_id: int, identity: str) -> str:
    """The OCPP (basic auth) password of charger `identity` of CPO `cpo_id`, under the server's `key`."""
    if not key:
        raise ValueError("charger password key must not be empty")
    # JSON keeps (cpo_id, identity) unambiguous whatever characters the identity holds.
    message = json.dumps([cpo_id, identity]).encode()
    mac = hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(mac).decode()


def password_hash(password: str) -> str:
    """What the DB stores (sha256 hex): passwords are random 192-bit strings, so no slow hash is needed."""
    return hashlib.sha256(password.encode()).hexdigest()
