"""roam_helper: what an eMSP needs to start registering with a fresh CPO in one paste."""

from __future__ import annotations

import base64
import shlex
from typing import Any


def credentials_payload(
    token_a: str, versions_url: str, country_code: str, party_id: str, role: str, name: str, ocpi_version: str
) -> dict[str, Any]:
    """This CPO's own Credentials object (2.2.1 roles list; 2.1.1 flat form)."""
    business = {"name": name}
    if ocpi_version == "2.1.1":
        return {
            "token": token_a,
            "url": versions_url,
            "business_details": business,
            "country_code": country_code,
            "party_id": party_id,
        }
    return {
        "token": token_a,
        "url": versions_url,
        "roles": [{"role": role, "country_code": country_code, "party_id": party_id, "business_details": business}],
    }


def curl_snippet(token_a: str, credentials_url: str, ocpi_version: str) -> str:
    """One curl command registering the eMSP: its Token B and versions URL come from shell variables.

    The JSON body is assembled from single-quoted literals and double-quoted variable expansions,
    so it is shell-safe for any variable value that is itself valid inside a JSON string.
    """
    auth = "Token " + base64.b64encode(token_a.encode()).decode()
    if ocpi_version == "2.1.1":
        body_parts = [
            '{"token": "',
            "$EMSP_TOKEN_B",
            '", "url": "',
            "$EMSP_VERSIONS_URL",
            '", "country_code": "',
            "${EMSP_COUNTRY_CODE:-NL}",
            '", "party_id": "',
            "${EMSP_PARTY_ID:-EMS}",
            '", "business_details": {"name": "',
            "${EMSP_NAME:-eMSP}",
            '"}}',
        ]
    else:
        body_parts = [
            '{"token": "',
            "$EMSP_TOKEN_B",
            '", "url": "',
            "$EMSP_VERSIONS_URL",
            '", "roles": [{"role": "EMSP", "country_code": "',
            "${EMSP_COUNTRY_CODE:-NL}",
            '", "party_id": "',
            "${EMSP_PARTY_ID:-EMS}",
            '", "business_details": {"name": "',
            "${EMSP_NAME:-eMSP}",
            '"}}]}',
        ]
    body = "".join(f'"{p}"' if p.startswith("$") else shlex.quote(p) for p in body_parts)
    return " ".join(
        [
            "curl",
            "-sS",
            "-X",
            "POST",
            shlex.quote(credentials_url),
            "-H",
            shlex.quote(f"Authorization: {auth}"),
            "-H",
            shlex.quote("Content-Type: application/json"),
            "--data",
            body,
        ]
    )
