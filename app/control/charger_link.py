"""The `detach` and `attach` actions (CONTRACT §3): hand a charger's identity to the user's own OCPP
client, and give it back to our simulated charger.

Unlike the other actions nothing is asked of the charger: the state is the database's
(app.csms.detach), and the connection that held the charger is closed at once through the API
process holding it (workflows/charger_link.py). Our pod then reconnects by itself: refused (with
`Retry-After`) while detached, served again after `attach`.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from app.control.common import database, gateway
from app.control.temporal_gateway import BackendUnavailable
from app.csms import detach as states
from app.csms.runtime import ATTACHED, DETACHED
from app.ocpi.command_models import ConnectionClose

LINK_ACTIONS = ("detach", "attach")
WORKFLOW = "ChargerDisconnectWorkflow"
CLOSE_WAIT_S = 15.0  # the workflow's own bound (schedule-to-start 3 s, close ≤ 10 s) plus slack


@dataclass(frozen=True)
class Switched:
    action_id: str
    message: str


async def switch(request: Request, cpo_id: int, identity: str, action: str) -> Switched:
    """Detach or attach the charger; 404 unknown, 409 already in that state."""
    detaching = action == "detach"
    try:
        holder = await states.set_detached(database(request), (cpo_id, identity), detaching)
    except states.NotFound:
        raise HTTPException(404, f"charger {identity} not found") from None
    except states.WrongState as exc:
        detail = (
            f"charger {identity} is already detached (`attach` gives it back to the simulator)"
            if detaching
            else f"charger {identity} is not detached (it is {exc.args[0]}): nothing to attach"
        )
        raise HTTPException(409, detail) from None
    action_id = f"charger-action-{cpo_id}-{uuid.uuid4().hex}"
    done = (
        "detached: the simulator let go of it; connect your own OCPP client with the charger's credentials"
        if detaching
        else "attached: the simulator takes it back within ~10 s"
    )
    if holder is None:
        return Switched(action_id, done)
    closed = await _close(request, action_id, cpo_id, identity, holder, DETACHED if detaching else ATTACHED)
    which = "the simulator's" if detaching else "the external client's"
    settings = request.app.state.settings
    later = f"closes within {settings.csms_touch_interval:g} s (its process's next touch)"
    return Switched(action_id, f"{done} ({which} connection {'closed' if closed else later})")


async def _close(
    request: Request, action_id: str, cpo_id: int, identity: str, holder: states.Holder, code: int
) -> bool:
    """Close the old connection where it is held. Best effort: it lost the row, so it closes at its
    next write or its process's next touch anyway."""
    settings = request.app.state.settings
    reason = "charger detached" if code == DETACHED else "charger attached back to the simulator"
    close = ConnectionClose(cpo_id, identity, holder.api_instance, holder.connection_id, code, reason)
    try:
        async with asyncio.timeout(settings.temporal_rpc_timeout):
            client = await gateway(request).client()
            handle = await client.start_workflow(
                WORKFLOW, close, id=action_id, task_queue=settings.task_queue, result_type=bool
            )
        async with asyncio.timeout(CLOSE_WAIT_S):
            return bool(await handle.result())
    except (BackendUnavailable, TimeoutError, OSError, RPCError, WorkflowFailureError):
        return False
