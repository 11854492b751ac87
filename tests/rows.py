"""CPO rows made the way the API makes them, for tests that drive workflows or modules directly."""

from __future__ import annotations

from typing import Any

from app.store.db import utcnow
from app.store.tables import Cpo


def cpo_row(org: str, party: str, status: str = "PENDING", **fields: Any) -> Cpo:
    """An unsaved CPO row (add it to a session); `fields` override the defaults."""
    now = utcnow()
    values: dict[str, Any] = {
        "org": org,
        "country_code": "DE",
        "party_id": party,
        "requested_party_id": party,
        "role": "CPO",
        "name_prefix": party.lower(),
        "template": "small-urban-ac",
        "template_version": 1,
        "seed": 1,
        "ocpi_version": "2.2.1",
        "status": status,
        "created_at": now,
        "updated_at": now,
    }
    return Cpo(**(values | fields))
