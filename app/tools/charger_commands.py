"""`cpolab chargers | charger | ocpp-log`: a CPO's chargers on the command line (CONTRACT §3).

`chargers` prints a table (stdout) and a page line (stderr); `--json` prints the API's page instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from app.tools.cli import Api

STATES = ("BOOTING", "ONLINE", "OFFLINE", "DETACHED")
COLUMNS = ("IDENTITY", "STATE", "OCPP", "VENDOR / MODEL", "LOCATION", "EVSES", "LAST SEEN")


def _path(cpo_id: str, identity: str | None = None) -> str:
    path = f"/ocpi/cpos/{quote(cpo_id, safe='')}/chargers"
    return path if identity is None else f"{path}/{quote(identity, safe='')}"


def _cell(value: Any) -> str:
    """Printable text only: a table cell must not carry terminal escapes or break the row."""
    text = "" if value is None else str(value)
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def render_table(rows: Sequence[Sequence[Any]], headers: Sequence[str] = COLUMNS) -> str:
    cells = [[_cell(v) for v in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def charger_rows(chargers: Sequence[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            c.get("identity"),
            c.get("state"),
            c.get("ocpp_version"),
            f"{c.get('vendor', '')} {c.get('model', '')}".strip(),
            c.get("location_id"),
            len(c.get("evse_uids") or []),
            c.get("last_seen_at") or "never",
        ]
        for c in chargers
    ]


def cmd_chargers(args: argparse.Namespace, api: Api) -> int:
    params: dict[str, Any] = {"page": args.page, "limit": args.limit}
    if args.state:
        params["state"] = args.state
    page = api.call("GET", _path(args.cpo_id), params=params)
    if args.json:
        print(json.dumps(page, indent=2, ensure_ascii=False))
        return 0
    data = page.get("data") or []
    print(render_table(charger_rows(data)))
    total, limit = page.get("total", 0), page.get("limit") or 1
    pages = max(1, -(-total // limit))
    print(f"page {page.get('page')}/{pages}: {len(data)} of {total} chargers", file=sys.stderr)
    return 0


def cmd_charger(args: argparse.Namespace, api: Api) -> int:
    print(json.dumps(api.call("GET", _path(args.cpo_id, args.identity)), indent=2, ensure_ascii=False))
    return 0


def cmd_ocpp_log(args: argparse.Namespace, api: Api) -> int:
    params = {"page": args.page, "limit": args.limit}
    page = api.call("GET", f"{_path(args.cpo_id, args.identity)}/ocpp-log", params=params)
    print(json.dumps(page, indent=2, ensure_ascii=False))
    return 0


def add_parsers(sub: Any, conn: argparse.ArgumentParser) -> None:
    """Registers the three commands on `cpolab`'s subparsers (`conn`: the --api/--token options)."""
    p = sub.add_parser("chargers", parents=[conn], help="list a CPO's chargers (table: state, last seen)")
    p.add_argument("cpo_id")
    p.add_argument("--state", choices=STATES, help="only chargers in this state")
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--limit", type=int, default=100, help="chargers per page (1-100, default 100)")
    p.add_argument("--json", action="store_true", help="print the API's JSON page instead of a table")
    p.set_defaults(handler=cmd_chargers)

    p = sub.add_parser(
        "charger", parents=[conn], help="one charger with its CSMS URL, username (and password with cpos:write)"
    )
    p.add_argument("cpo_id")
    p.add_argument("identity")
    p.set_defaults(handler=cmd_charger)

    p = sub.add_parser("ocpp-log", parents=[conn], help="a charger's OCPP frames, newest first (JSON)")
    p.add_argument("cpo_id")
    p.add_argument("identity")
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(handler=cmd_ocpp_log)
