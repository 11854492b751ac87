"""The CPO one-pager (Markdown). Never contains Token A: it is only ever returned by the POST."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.store.db import as_utc
from app.store.tables import Cpo


def render_report(
    cpo: Cpo,
    locations: Sequence[Any],
    chargers_per_location: Mapping[str, int],
    versions_url: str,
    credentials_url: str,
) -> str:
    expires = as_utc(cpo.expires_at)
    lines = [
        f"# CPO {cpo.id} — {cpo.name_prefix}",
        "",
        f"- **Party**: `{cpo.country_code}*{cpo.party_id}` ({cpo.role})"
        + (f", requested `{cpo.requested_party_id}`" if cpo.requested_party_id != cpo.party_id else ""),
        f"- **Status**: {cpo.status}",
        f"- **Template**: `{cpo.template}` v{cpo.template_version}, seed `{cpo.seed}`"
        + (f", overrides `{cpo.overrides}`" if cpo.overrides else ""),
        f"- **Expires**: {expires.isoformat().replace('+00:00', 'Z') if expires else 'never'}",
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
    lines += [
        "",
        "## OCPI peer",
        "",
        f"- Versions endpoint: `{versions_url}` (OCPI {cpo.ocpi_version})",
        "",
        "## How to handshake",
        "",
        "1. Expose your eMSP's versions endpoint and mint a Token B for this CPO.",
        "2. POST your credentials to this CPO with the Token A you received when creating it (it is not shown again):",
        "",
        "```sh",
        "export TOKEN_A=…  EMSP_TOKEN_B=…  EMSP_VERSIONS_URL=https://your-emsp.example/ocpi/versions",
        f"curl -sS -X POST '{credentials_url}' \\",
        '  -H "Authorization: Token $(printf %s "$TOKEN_A" | base64)" -H \'Content-Type: application/json\' \\',
        '  --data "{\\"token\\": \\"$EMSP_TOKEN_B\\", \\"url\\": \\"$EMSP_VERSIONS_URL\\", \\"roles\\": '
        '[{\\"role\\": \\"EMSP\\", \\"country_code\\": \\"NL\\", \\"party_id\\": \\"EMS\\", '
        '\\"business_details\\": {\\"name\\": \\"my eMSP\\"}}]}"',
        "```",
        "",
        "3. The response carries Token C: use it for every later call. Token A stops working.",
    ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
