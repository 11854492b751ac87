"""`cpolab charger-action | location-action`: the simulation actions of CONTRACT §3 on the command line.

The actions are the API's own list (`app.control.charger_actions.ACTIONS`): `--help` imports it, and an
unknown action is the API's 422, which names them. Nothing else imports it, as that module pulls in the
control plane (seconds of imports on a loaded box for every call). The API's answer is printed as JSON;
a 4xx/5xx exits 1 with its detail (`cpolab.Api`), and so does a location action that an EVSE refused or
failed (after printing the answer).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from app.tools.cli import Api

# CLI option → the ChargerActionRequest field it fills.
FIELDS = {
    "evse": "evse_uid",
    "connector": "connector_id",
    "token_uid": "token_uid",
    "kwh": "target_kwh",
    "soc": "soc_percent",
    "duration": "duration_s",
    "error_code": "error_code",
}


def actions() -> tuple[str, ...]:
    from app.control.charger_actions import ACTIONS

    return ACTIONS


class _ActionsHelp(argparse.HelpFormatter):
    """Names the actions in `--help` (the import happens only then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if action.dest == "action" and text is not None:
            text += f": one of {', '.join(actions())}"
        return text


def _body(args: argparse.Namespace) -> dict[str, Any]:
    return {field: value for option, field in FIELDS.items() if (value := getattr(args, option)) is not None}


def _cpo(cpo_id: str) -> str:
    return f"/ocpi/cpos/{quote(cpo_id, safe='')}"


def cmd_charger_action(args: argparse.Namespace, api: Api) -> int:
    body = _body(args)
    path = f"{_cpo(args.cpo_id)}/chargers/{quote(args.identity, safe='')}/actions/{quote(args.action, safe='')}"
    print(json.dumps(api.call("POST", path, json=body), indent=2, ensure_ascii=False))
    return 0


def cmd_location_action(args: argparse.Namespace, api: Api) -> int:
    from app.tools.cli import CliError

    body = _body(args)
    path = f"{_cpo(args.cpo_id)}/locations/{quote(args.location_id, safe='')}/actions/{quote(args.action, safe='')}"
    answer = api.call("POST", path, json=body)
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    results = answer.get("data") or []
    failed = [r for r in results if r.get("status") in ("REJECTED", "FAILED")]
    if failed:
        first = failed[0]
        raise CliError(
            f"{len(failed)} of {len(results)} EVSEs did not take {args.action} "
            f"(e.g. {first.get('evse_uid')}: {first.get('status')}: {first.get('message')})"
        )
    return 0


def _options(p: argparse.ArgumentParser, target: str, target_help: str) -> None:
    p.add_argument("cpo_id")
    p.add_argument(target, help=target_help)
    p.add_argument("action", metavar="ACTION", help="what happens at the charger")
    p.add_argument("--evse", metavar="EVSE_UID", help="OCPI EVSE uid (default: the first)")
    p.add_argument("--connector", metavar="ID", help="OCPI connector id (default: the EVSE's first)")
    p.add_argument("--token-uid", metavar="UID", help="start: the card held to the reader (an eMSP token uid)")
    p.add_argument("--kwh", type=float, help="start: the car stops drawing after this energy")
    p.add_argument("--soc", type=float, help="start: the car's state of charge at plug-in (%%)")
    p.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="start: the driver leaves after it; suspend-ev: how long the car holds off (simulated seconds)",
    )
    p.add_argument("--error-code", help="fault: an OCPP 1.6 ChargePointErrorCode (default OtherError)")


def add_parsers(sub: Any, conn: argparse.ArgumentParser) -> None:
    """Registers the two commands on `cpolab`'s subparsers (`conn`: the --api/--token options)."""
    p = sub.add_parser(
        "charger-action",
        parents=[conn],
        formatter_class=_ActionsHelp,
        help="play a simulation action at a charger (plug, start, suspend-ev, …)",
        description="POST /ocpi/cpos/{cpo_id}/chargers/{identity}/actions/{action}; prints the answer.",
    )
    _options(p, "identity", "the charger's OCPP identity (see `cpolab chargers`)")
    p.set_defaults(handler=cmd_charger_action)

    p = sub.add_parser(
        "location-action",
        parents=[conn],
        formatter_class=_ActionsHelp,
        help="play a simulation action at every EVSE of a location",
        description="POST /ocpi/cpos/{cpo_id}/locations/{location_id}/actions/{action}; prints each EVSE's "
        "result, and exits 1 when one was refused or failed.",
    )
    _options(p, "location_id", "an OCPI location id of the CPO")
    p.set_defaults(handler=cmd_location_action)
