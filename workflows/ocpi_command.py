"""OcpiCommandWorkflow (`ocpi-command-…` / `ocpi-reservation-…`): one OCPI command, from the validated
body to the CommandResult at the eMSP's response_url.

1. Where is the charger? (connection table, on the provisioning queue)
2. The OCPP call, on `csms-{api_instance}`: the worker inside the API process holding the charger's
   WebSocket. A short schedule-to-start timeout or "not connected here" means the charger moved (or
   that process died) before the call was sent: the route is read again, a bounded number of times.
   Once the call started it is never retried (a second RemoteStart could start a second session).
3. The charger's answer → CommandResult (app.ocpi.command_models.command_result).
4. The POST to response_url with Token B, retried with backoff until the advertised timeout (at least
   MIN_DELIVERY). The result lives in this workflow's history from step 3 on: a crash of any process
   afterwards only delays the POST.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from activities.ocpp_commands import CommandActivities
    from app.ocpi.command_models import (
        CommandInput,
        CommandOutcome,
        OcppAnswer,
        OcppCall,
        ReservationQuery,
        RouteQuery,
        command_result,
        csms_queue,
        result_body,
    )

# Reading the connection table: quick, retried briefly (a DB hiccup), never for long.
LOOKUP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=1), maximum_attempts=4
)
LOOKUP_TIMEOUT = timedelta(seconds=5)
# The OCPP call is sent at most once: a schedule-to-start timeout (no worker of that API process
# took it: the process is gone) is the only failure known to leave the charger untouched.
SEND_RETRY = RetryPolicy(maximum_attempts=1)
SEND_SCHEDULE_TO_START = timedelta(seconds=2)
SEND_MARGIN = timedelta(seconds=2)  # the call's own timeout is inside the activity; this is slack
SEND_OCPP_CALL = "send_ocpp_call"
MAX_ROUTES = 4  # route lookups of one command (the charger reconnecting elsewhere meanwhile)
REROUTE_PAUSE = timedelta(milliseconds=500)
# The result POST: retried with backoff; an unknown peer (unregistered meanwhile) is final.
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=4),
    non_retryable_error_types=["PeerGone"],
)
# A result known late (a crashed worker's activity waits out its attempt timeout) still gets this long.
MIN_DELIVERY = timedelta(seconds=10)


@workflow.defn
class OcpiCommandWorkflow:
    @workflow.run
    async def run(self, inp: CommandInput) -> CommandOutcome:
        deadline = workflow.now() + timedelta(seconds=inp.deadline_s)
        call = inp.call
        result, message = inp.result, inp.message or ""
        if result is None and call is None and inp.reservation_workflow_id is not None:
            call, result, message = await self._reservation_call(inp)
        identity = call.identity if call is not None else inp.identity
        if result is None and call is not None:
            result, message = await self._send(inp.command, call)
        assert result is not None
        # A simulation action (no response_url) returns the answer to its caller instead.
        delivered = await self._deliver(inp, result, message, deadline) if inp.delivery is not None else False
        return CommandOutcome(result, message, identity, call.ocpp_version if call else None, delivered)

    async def _reservation_call(self, inp: CommandInput) -> tuple[OcppCall | None, str | None, str]:
        """CANCEL_RESERVATION names no charger: the accepted RESERVE_NOW of that id says which."""
        assert inp.reservation_workflow_id is not None and inp.reservation_id is not None
        found = await workflow.execute_activity_method(
            CommandActivities.find_reservation,
            ReservationQuery(inp.cpo_id, inp.reservation_workflow_id),
            start_to_close_timeout=LOOKUP_TIMEOUT * 2,
            retry_policy=LOOKUP_RETRY,
            summary="find the reservation",
        )
        if found.identity is None or found.ocpp_version is None:
            return None, "UNKNOWN_RESERVATION", "no reservation of this id was accepted by a charge point"
        call = OcppCall(
            inp.cpo_id,
            found.identity,
            found.ocpp_version,
            "CancelReservation",
            {"reservation_id": inp.reservation_id},
            inp.deadline_s / 2,
        )
        return call, None, ""

    async def _send(self, command: str, call: OcppCall) -> tuple[str, str]:
        charger = f"charge point {call.identity}"
        for _ in range(MAX_ROUTES):
            route = await workflow.execute_activity_method(
                CommandActivities.resolve_charger_route,
                RouteQuery(call.cpo_id, call.identity),
                start_to_close_timeout=LOOKUP_TIMEOUT,
                retry_policy=LOOKUP_RETRY,
                summary=f"route of {call.identity}",
            )
            if route.api_instance is None:
                return "FAILED", f"{charger} is not connected (status {route.status})"
            try:
                answer = await workflow.execute_activity(
                    SEND_OCPP_CALL,  # by name: its code lives in the API processes (app/csms/commands.py)
                    call,
                    task_queue=csms_queue(route.api_instance),
                    schedule_to_start_timeout=SEND_SCHEDULE_TO_START,
                    start_to_close_timeout=timedelta(seconds=call.timeout_s) + SEND_MARGIN,
                    retry_policy=SEND_RETRY,
                    result_type=OcppAnswer,
                    summary=f"{call.action} to {call.identity}",
                )
            except ActivityError as failure:
                cause = failure.cause
                if isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START:
                    await workflow.sleep(REROUTE_PAUSE)  # that API process is gone: where is it now?
                    continue
                if isinstance(cause, ApplicationError) and cause.type == "NotConnectedHere":
                    await workflow.sleep(REROUTE_PAUSE)
                    continue
                if isinstance(cause, ApplicationError) and cause.type == "ChargerTimeout":
                    return "TIMEOUT", f"{charger} did not answer {call.action} within {call.timeout_s:g} s"
                if isinstance(cause, (TimeoutError, CancelledError)):  # that API process died / shut down
                    return "TIMEOUT", f"no answer from {charger}: the CSMS connection holding it was lost"
                if isinstance(cause, ApplicationError) and cause.type == "ConnectionLost":
                    return "FAILED", f"{charger} disconnected before answering {call.action}"
                workflow.logger.warning("%s to %s failed: %s", call.action, call.identity, cause or failure)
                return "FAILED", f"{call.action} could not be sent to {charger}"
            return command_result(command, answer)
        return "TIMEOUT", f"{charger} could not be reached: its connection kept moving"

    async def _deliver(self, inp: CommandInput, result: str, message: str, deadline: datetime) -> bool:
        assert inp.delivery is not None
        budget = max(deadline - workflow.now(), MIN_DELIVERY)
        body = result_body(inp.delivery.version, result, message)
        try:
            await workflow.execute_activity_method(
                CommandActivities.post_command_result,
                dataclasses.replace(inp.delivery, body=body),
                schedule_to_close_timeout=budget,
                start_to_close_timeout=min(timedelta(seconds=inp.delivery.attempt_s), budget),
                retry_policy=DELIVERY_RETRY,
                summary=f"{result} to response_url",
            )
        except ActivityError as failure:
            workflow.logger.warning("CommandResult %s not delivered: %s", result, failure.cause or failure)
            return False
        return True
