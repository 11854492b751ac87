"""`cpolab` command line: mint dev tokens and drive the control plane over HTTP.

Results are JSON on stdout (the report is printed as Markdown, `chargers` as a table, `snippet` and
`create --snippet` print the raw registration curl command); errors are one line on stderr.
Exit codes: 0 ok, 1 API error or FAILED CPO, 2 usage, 3 API unreachable, 4 timed out waiting, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import httpx

from app.tools import action_commands, charger_commands

DEFAULT_API = "http://127.0.0.1:8000"
SCOPES = ("cpos:read", "cpos:write")
STATUSES = ("PENDING", "PROVISIONING", "READY", "FAILED", "DESTROYING", "DESTROYED")
POLL_INTERVAL_S = 0.5
BAR_WIDTH = 24


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---- HTTP -------------------------------------------------------------------------------------------


def _detail(resp: httpx.Response) -> str:
    """The API's error detail as one line (422 issues joined as `loc: msg`)."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip().replace("\n", " ")[:300] or resp.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(x) for x in item.get("loc", []))
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", item)))
            else:
                parts.append(str(item))
        detail = "; ".join(parts)
    text = detail if isinstance(detail, str) else json.dumps(detail)
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        text += f" ({body['code']})"
    return text.replace("\n", " ")


class Api:
    def __init__(self, base_url: str, token: str | None) -> None:
        if not token:
            raise CliError("no token: pass --token or set CPOLAB_TOKEN (mint one with `cpolab token --org ORG`)", 2)
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "cpolab-cli"},
            timeout=30,
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.ConnectError as exc:
            hint = "is it running? (--api / CPOLAB_API_URL)"
            raise CliError(f"cannot reach the API at {self.base_url} ({exc}); {hint}", 3) from None
        except httpx.TimeoutException as exc:
            raise CliError(f"the API at {self.base_url} did not answer in time ({type(exc).__name__})", 3) from None
        except httpx.HTTPError as exc:
            raise CliError(f"request to {self.base_url}{path} failed: {exc}", 3) from None
        if resp.status_code >= 400:
            raise CliError(f"HTTP {resp.status_code} on {method} {path}: {_detail(resp)}")
        try:
            return resp.json()
        except ValueError:
            raise CliError(f"HTTP {resp.status_code} on {method} {path}: response is not JSON") from None


# ---- output -----------------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _bar(done: int, total: int) -> str:
    filled = BAR_WIDTH * min(max(done, 0), total) // total if total > 0 else 0
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]"


def progress_line(status: dict[str, Any]) -> str:
    """One line: bar over steps, then steps, locations and chargers done/total and the current step."""
    p = status.get("progress") or {}
    steps_done, steps_total = p.get("steps_done", 0), p.get("steps_total", 0)
    line = f"{_bar(steps_done, steps_total)} {status.get('status', '?'):<12}"
    if p:
        line += (
            f" steps {steps_done}/{steps_total}"
            f"  locations {p.get('locations_done', 0)}/{p.get('locations_total', 0)}"
            f"  chargers {p.get('chargers_done', 0)}/{p.get('chargers_total', 0)}"
        )
        if p.get("current_step"):
            line += f"  ({p['current_step']})"
    return line


class ProgressBar:
    """Redraws in place on a terminal; prints one line per change otherwise (logs, pipes, tests)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = ""

    def show(self, status: dict[str, Any]) -> None:
        line = progress_line(status)
        if line == self.last:
            return
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
        self.last = line

    def close(self) -> None:
        if self.tty and self.last:
            sys.stderr.write("\n")
            sys.stderr.flush()


def wait_for(api: Api, cpo_id: str, interval: float, timeout: float) -> dict[str, Any]:
    bar = ProgressBar()
    deadline = time.monotonic() + timeout
    try:
        while True:
            status = api.call("GET", f"/ocpi/cpos/{cpo_id}/status")
            bar.show(status)
            if status.get("status") not in ("PENDING", "PROVISIONING"):
                return status
            if time.monotonic() > deadline:
                raise CliError(f"CPO {cpo_id} still {status.get('status')} after {timeout:g}s", 4)
            time.sleep(interval)
    finally:
        bar.close()


# ---- commands ---------------------------------------------------------------------------------------


def cmd_token(args: argparse.Namespace) -> int:
    from app.settings import ConfigurationError, get_settings
    from app.web.auth import mint_token

    scopes = tuple(dict.fromkeys(s for raw in (args.scope or SCOPES) for s in raw.replace(",", " ").split()))
    settings = get_settings()
    try:
        settings.require_secrets()
    except ConfigurationError as exc:
        raise SystemExit(f"cpolab token: {exc}") from exc
    if not 0 < args.ttl <= settings.jwt_max_ttl:
        raise CliError(
            f"--ttl must be between 1 and {settings.jwt_max_ttl} s (CPOLAB_JWT_MAX_TTL): "
            "the API refuses longer-lived tokens",
            2,
        )
    print(mint_token(settings.jwt_secret, org=args.org, sub=args.sub, scopes=scopes, ttl_seconds=args.ttl))
    return 0


def _print_snippet(created: dict[str, Any]) -> None:
    """The registration curl command, raw: ready to paste (JSON output would escape its quotes)."""
    snippet = (created.get("roam_helper") or {}).get("curl_snippet")
    if not isinstance(snippet, str):
        raise CliError("no roam_helper.curl_snippet in that response (is it a create response?)")
    print(snippet)


def cmd_snippet(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}", 2) from None
    try:
        created = json.loads(text)
    except ValueError:
        raise CliError(f"{args.file} is not JSON: pass the output of `cpolab create`", 2) from None
    _print_snippet(created if isinstance(created, dict) else {})
    return 0


def _override(raw: str) -> tuple[str, Any]:
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {raw!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value  # the API names the key and the rule if it is not an integer


def cmd_create(args: argparse.Namespace, api: Api) -> int:
    body: dict[str, Any] = {
        "template": args.template,
        "country_code": args.country,
        "party_id": args.party,
        "name_prefix": args.name_prefix,
        "role": args.role,
        "ocpi_version": args.ocpi_version,
        "seed": args.seed,
    }
    if args.no_ttl:
        body["ttl_seconds"] = None
    elif args.ttl is not None:
        body["ttl_seconds"] = args.ttl
    if args.overrides:
        body["overrides"] = dict(args.overrides)
    simulation: dict[str, Any] = {}
    if args.time_scale is not None:
        simulation["time_scale"] = args.time_scale
    if args.background_activity:
        simulation["background_activity"] = True
    if simulation:
        body["simulation"] = simulation
    created = api.call("POST", "/ocpi/cpos", json=body)
    if args.snippet:
        print(f"CPO {created['cpo_id']} accepted: its Token A is inside this command only", file=sys.stderr)
        _print_snippet(created)
        return 0
    if not args.wait:
        _print_json(created)
        return 0
    print(f"CPO {created['cpo_id']} accepted; waiting for it to provision…", file=sys.stderr)
    final = wait_for(api, created["cpo_id"], args.interval, args.timeout)
    keys = ("status", "progress", "error", "provisioned_at", "expires_at")
    _print_json({**created, **{k: final.get(k) for k in keys}})
    if final.get("status") != "READY":
        error = final.get("error") or {}
        why = f": {error.get('code')}: {error.get('message')} (step {error.get('step')})" if error else ""
        raise CliError(f"CPO {created['cpo_id']} ended {final.get('status')}{why}")
    return 0


def cmd_status(args: argparse.Namespace, api: Api) -> int:
    if args.wait:
        final = wait_for(api, args.cpo_id, args.interval, args.timeout)
        _print_json(final)
        return 0 if final.get("status") != "FAILED" else 1
    _print_json(api.call("GET", f"/ocpi/cpos/{args.cpo_id}/status"))
    return 0


def cmd_get(args: argparse.Namespace, api: Api) -> int:
    _print_json(api.call("GET", f"/ocpi/cpos/{args.cpo_id}"))
    return 0


def cmd_list(args: argparse.Namespace, api: Api) -> int:
    params: dict[str, Any] = {"page": args.page, "limit": args.limit}
    if args.status:
        params["status"] = args.status
    _print_json(api.call("GET", "/ocpi/cpos", params=params))
    return 0


def cmd_templates(args: argparse.Namespace, api: Api) -> int:
    _print_json(api.call("GET", "/ocpi/cpos/templates"))
    return 0


def cmd_extend(args: argparse.Namespace, api: Api) -> int:
    ttl = None if args.no_ttl else args.ttl
    _print_json(api.call("PATCH", f"/ocpi/cpos/{args.cpo_id}", json={"ttl_seconds": ttl}))
    return 0


def cmd_delete(args: argparse.Namespace, api: Api) -> int:
    _print_json(api.call("DELETE", f"/ocpi/cpos/{args.cpo_id}"))
    return 0


def cmd_report(args: argparse.Namespace, api: Api) -> int:
    report = api.call("GET", f"/ocpi/cpos/{args.cpo_id}/report")
    markdown = report.get("markdown", "")
    print(markdown, end="" if markdown.endswith("\n") else "\n")
    return 0


# ---- parser -----------------------------------------------------------------------------------------


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _interval(raw: str) -> float:
    value = float(raw)
    if not 0.5 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0.5 and 1 second")
    return value


def build_parser() -> argparse.ArgumentParser:
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument(
        "--api", default=argparse.SUPPRESS, help=f"API base URL (env CPOLAB_API_URL, default {DEFAULT_API})"
    )
    conn.add_argument("--token", default=argparse.SUPPRESS, help="bearer token (env CPOLAB_TOKEN)")

    parser = argparse.ArgumentParser(prog="cpolab", description="Provision simulated OCPI CPOs.", parents=[conn])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("token", help="mint a development JWT signed with CPOLAB_JWT_SECRET")
    p.add_argument("--org", required=True, help="tenant (org claim)")
    p.add_argument(
        "--scope", action="append", help=f"scope(s), repeatable or space-separated (default: {' '.join(SCOPES)})"
    )
    p.add_argument("--ttl", type=int, default=86400, help="lifetime in seconds (default 86400)")
    p.add_argument("--sub", default="dev", help="subject claim (default dev)")

    def waiting(p: argparse.ArgumentParser) -> None:
        p.add_argument("--interval", type=_interval, default=POLL_INTERVAL_S, help="poll interval, 0.5-1 s")
        p.add_argument("--timeout", type=_positive_float, default=600.0, help="give up waiting after N s (default 600)")

    p = sub.add_parser("create", parents=[conn], help="create a CPO (POST /ocpi/cpos)")
    p.add_argument("template", help="template slug (see `cpolab templates`)")
    p.add_argument("--country", required=True, help="ISO 3166-1 alpha-2 country code")
    p.add_argument("--party", required=True, help="3-char party id")
    p.add_argument("--name-prefix", required=True)
    p.add_argument("--seed", type=int, default=None, help="same seed ⇒ same network (default: random)")
    ttl = p.add_mutually_exclusive_group()
    ttl.add_argument("--ttl", type=int, default=None, help="auto-destroy after N seconds (API default 3600)")
    ttl.add_argument("--no-ttl", action="store_true", help="never expire")
    p.add_argument(
        "--overrides", nargs="+", action="extend", type=_override, metavar="KEY=VALUE", help="e.g. locations=3"
    )
    p.add_argument("--ocpi-version", choices=("2.2.1", "2.1.1"), default="2.2.1")
    p.add_argument("--role", choices=("cpo", "emsp"), default="cpo")
    p.add_argument(
        "--time-scale", type=float, default=None, metavar="X", help="simulated seconds per real second (default 1)"
    )
    p.add_argument(
        "--background-activity", action="store_true", help="the CPO makes its own charging traffic once READY"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--wait", action="store_true", help="poll until READY/FAILED with a progress bar on stderr")
    out.add_argument(
        "--snippet", action="store_true", help="print only the raw registration curl command (Token A inside)"
    )
    waiting(p)
    p.set_defaults(handler=cmd_create)

    p = sub.add_parser(
        "snippet", help="print the raw registration curl command of a saved create response (FILE or - for stdin)"
    )
    p.add_argument("file", metavar="FILE", help="JSON printed by `cpolab create` (or the POST's 202 body); - = stdin")

    p = sub.add_parser("status", parents=[conn], help="provisioning status of a CPO")
    p.add_argument("cpo_id")
    p.add_argument("--wait", action="store_true", help="poll until it stops provisioning")
    waiting(p)
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("get", parents=[conn], help="details of a CPO")
    p.add_argument("cpo_id")
    p.set_defaults(handler=cmd_get)

    p = sub.add_parser("list", parents=[conn], help="list your CPOs")
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--status", choices=STATUSES)
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("templates", parents=[conn], help="templates gallery")
    p.set_defaults(handler=cmd_templates)

    p = sub.add_parser("extend", parents=[conn], help="set a CPO's TTL from now (PATCH /ocpi/cpos/{id})")
    p.add_argument("cpo_id")
    ttl = p.add_mutually_exclusive_group(required=True)
    ttl.add_argument("--ttl", type=int, help="expire N seconds from now (60–604800)")
    ttl.add_argument("--no-ttl", action="store_true", help="never expire")
    p.set_defaults(handler=cmd_extend)

    p = sub.add_parser("delete", parents=[conn], help="destroy a CPO (idempotent)")
    p.add_argument("cpo_id")
    p.set_defaults(handler=cmd_delete)

    p = sub.add_parser("report", parents=[conn], help="print a CPO's Markdown one-pager")
    p.add_argument("cpo_id")
    p.set_defaults(handler=cmd_report)
    charger_commands.add_parsers(sub, conn)
    action_commands.add_parsers(sub, conn)
    return parser


def _fail(message: str, code: int) -> NoReturn:
    print(f"cpolab: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "token":
            return cmd_token(args)
        if args.command == "snippet":
            return cmd_snippet(args)
        api_url = getattr(args, "api", None) or os.environ.get("CPOLAB_API_URL") or DEFAULT_API
        token = getattr(args, "token", None) or os.environ.get("CPOLAB_TOKEN")
        with Api(api_url, token) as api:
            return args.handler(args, api)
    except CliError as exc:
        _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        _fail("interrupted (a CPO being provisioned keeps going: `cpolab status ID`)", 130)


if __name__ == "__main__":
    sys.exit(main())
