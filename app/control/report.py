"""The CPO one-pager (Markdown). Never contains Token A: it is only ever returned by the POST.

It reflects the CPO's state: the handshake recipe only while Token A can still be used, the
registered peers once it has been, and no expiry once the CPO is being torn down or gone.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.control.schemas import ChargerCounts
from app.lifecycle.models import CpoStatus
from app.store.db import as_utc
from app.store.tables import Cpo

ENDED = frozenset({CpoStatus.DESTROYING, CpoStatus.DESTROYED, CpoStatus.FAILED})


@dataclass(frozen=True)
class Registration:
    """Where the CPO stands in the OCPI handshake."""

    token_a_live: bool  # Token A not used yet: an eMSP can still register
    registered_peers: int  # peers holding a live Token C


def _iso(value: datetime | None) -> str:
    moment = as_utc(value)
    return moment.isoformat().replace("+00:00", "Z") if moment else "never"


def _lifetime(cpo: Cpo) -> str:
    if cpo.status in ENDED:
        return f"- **Ended**: {cpo.status} since {_iso(cpo.updated_at)} (no expiry any more)"
    return f"- **Expires**: {_iso(cpo.expires_at)}"


def render_report(
    cpo: Cpo,
    locations: Sequence[Any],
    chargers_per_location: Mapping[str, int],
    versions_url: str,
    credentials_url: str,
    registration: Registration,
    *,
    chargers: ChargerCounts | None = None,
    csms_root: str = "",
) -> str:
    lines = [
        f"# CPO {cpo.id} — {cpo.name_prefix}",
        "",
        f"- **Party**: `{cpo.country_code}*{cpo.party_id}` ({cpo.role})"
        + (f", requested `{cpo.requested_party_id}`" if cpo.requested_party_id != cpo.party_id else ""),
        f"- **Status**: {cpo.status}",
        f"- **Template**: `{cpo.template}` v{cpo.template_version}, seed `{cpo.seed}`"
        + (f", overrides `{cpo.overrides}`" if cpo.overrides else ""),
        _lifetime(cpo),
        "",
        "## Topology",
        "",
        "| locations | chargers | EVSEs | connectors |",
        "|---:|---:|---:|---:|",
        f"| {cpo.locations} | {cpo.chargers} | {cpo.evses} | {cpo.connectors} |",
        "",
        "## Locations",
        "",
    ]
    if locations:
        lines += ["| id | name | city | chargers |", "|---|---|---|---:|"]
        lines += [
            f"| `{loc.id}` | {_cell(loc.name)} | {_cell(loc.city)} | {chargers_per_location.get(loc.id, 0)} |"
            for loc in locations
        ]
        if cpo.locations > len(locations):
            lines.append(f"\n…and {cpo.locations - len(locations)} more locations (OCPI `locations` module).")
    else:
        lines.append("_No locations yet (provisioning has not written them, or the CPO was torn down)._")
    if chargers is not None:
        lines += _chargers(cpo, chargers, csms_root)
    lines += ["", "## OCPI peer", "", f"- Versions endpoint: `{versions_url}` (OCPI {cpo.ocpi_version})", ""]
    lines += _registration(cpo, credentials_url, registration)
    return "\n".join(lines) + "\n"


def _registration(cpo: Cpo, credentials_url: str, reg: Registration) -> list[str]:
    if cpo.status in ENDED:
        return [f"_This CPO is {cpo.status}: its OCPI platform no longer accepts registrations._"]
    if reg.registered_peers:
        return [
            f"- **Registered eMSP peers**: {reg.registered_peers}. Token A has been used; each peer calls with the "
            "Token C it received. `PUT` on the credentials endpoint rotates it, `DELETE` unregisters.",
        ]
    if not reg.token_a_live:
        return ["_Token A has been used and the peer has unregistered: create a new CPO to register again._"]
    return [
        "## How to handshake",
        "",
        "1. Expose your eMSP's versions endpoint and mint a Token B for this CPO.",
        "2. POST your credentials to this CPO with the Token A you received when creating it (it is not shown again):",
        "",
        "```sh",
        "export TOKEN_A=…  EMSP_TOKEN_B=…  EMSP_VERSIONS_URL=https://your-emsp.example/ocpi/versions",
        # The URL is quoted for the shell: it is built from a (validated) Host and must stay one word.
        f"curl -sS -X POST {shlex.quote(credentials_url)} \\",
        '  -H "Authorization: Token $(printf %s "$TOKEN_A" | base64)" -H \'Content-Type: application/json\' \\',
        '  --data "{\\"token\\": \\"$EMSP_TOKEN_B\\", \\"url\\": \\"$EMSP_VERSIONS_URL\\", \\"roles\\": '
        '[{\\"role\\": \\"EMSP\\", \\"country_code\\": \\"NL\\", \\"party_id\\": \\"EMS\\", '
        '\\"business_details\\": {\\"name\\": \\"my eMSP\\"}}]}"',
        "```",
        "",
        "3. The response carries Token C: use it for every later call. Token A stops working.",
    ]


def _chargers(cpo: Cpo, counts: ChargerCounts, csms_root: str) -> list[str]:
    return [
        "",
        "## Chargers",
        "",
        "| online | booting | offline | detached |",
        "|---:|---:|---:|---:|",
        f"| {counts.online} | {counts.booting} | {counts.offline} | {counts.detached} |",
        "",
        f"- CSMS endpoint: `{csms_root}/{{identity}}` (OCPP-J over WebSocket, HTTP Basic auth: the identity and "
        "its password)",
        f"- Each charger, its state and connection: `GET /ocpi/cpos/{cpo.id}/chargers` and "
        f"`GET /ocpi/cpos/{cpo.id}/chargers/{{identity}}` (the password needs scope `cpos:write`)",
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
