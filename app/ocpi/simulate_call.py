"""The simulate DataTransfer (vendorId "cpolab", messageId "simulate", app/sim/simulate.py) as the
platform sends it: the control plane's actions and the background activity build it here.

It travels as a SIMULATE command (OcpiCommandWorkflow without a response_url) to the API process
holding the charger, so it works whichever process that is.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.charging.authorization import remember_id_tag
from app.ocpi.command_models import CommandInput, OcppCall
from app.ocpi.command_targets import Target

SIMULATE = "SIMULATE"


def simulate_data(action: str, target: Target) -> dict[str, Any]:
    """The data's action (the sim's name: `clear_fault`, `suspend_ev` …) and connector in the charger's
    OCPP numbering (2.0.1 adds the EVSE id)."""
    data: dict[str, Any] = {"action": action.replace("-", "_"), "connector_id": target.ocpp_connector_id}
    if target.ocpp_version != "1.6":
        data["evse_id"] = target.ocpp_evse_id
    return data


async def presented_id_tag(session: AsyncSession, cpo_id: int, target: Target, token_uid: str) -> str:
    """What the driver's card reads at this charger: a 1.6 idTag is ≤ 20 characters, so a longer OCPI
    uid is mapped (stored in the caller's transaction: commit it before sending)."""
    return await remember_id_tag(session, cpo_id, token_uid) if target.ocpp_version == "1.6" else token_uid


def simulate_command(
    cpo_id: int, target: Target, data: dict[str, Any], charger_timeout: float, deadline: float
) -> CommandInput:
    """The SIMULATE command carrying `data` to the charger (no response_url: the caller reads the outcome)."""
    call = OcppCall(
        cpo_id,
        target.identity,
        target.ocpp_version,
        "DataTransfer",
        {"vendor_id": "cpolab", "message_id": "simulate", "data": json.dumps(data, separators=(",", ":"))},
        charger_timeout,
    )
    return CommandInput(SIMULATE, cpo_id, target.identity, call, None, deadline)
