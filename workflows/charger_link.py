"""ChargerDisconnectWorkflow (`charger-action-…` of `detach` / `attach`): close one charger connection
inside the API process holding it (task queue `csms-{api_instance}`, app/csms/commands.py).

The database write of the action already took the row from that connection, so this only makes the
close prompt: if the process is gone (no worker takes the task) or the socket already closed, there
is nothing left to close, and a live process would notice the lost row at its next touch anyway.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from app.ocpi.command_models import ConnectionClose, csms_queue

CLOSE_CONNECTION = "close_charger_connection"
CLOSE_SCHEDULE_TO_START = timedelta(seconds=3)  # no worker of that API process: it is gone
CLOSE_TIMEOUT = timedelta(seconds=10)  # the close waits ≤ 5 s for the socket's task


@workflow.defn
class ChargerDisconnectWorkflow:
    @workflow.run
    async def run(self, close: ConnectionClose) -> bool:
        """Whether the connection was found and closed."""
        try:
            closed: bool = await workflow.execute_activity(
                CLOSE_CONNECTION,  # by name: its code lives in the API processes
                close,
                task_queue=csms_queue(close.api_instance),
                schedule_to_start_timeout=CLOSE_SCHEDULE_TO_START,
                start_to_close_timeout=CLOSE_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=2),
                result_type=bool,
                summary=f"close {close.identity}",
            )
        except ActivityError:
            return False
        return closed
