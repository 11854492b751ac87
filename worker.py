"""Temporal worker process, in one of two roles.

- `python worker.py` (role `provisioning`): the CPO workflows, the pod child workflows, the OCPI
  command workflows and their DB activities on the `provisioning` task queue. At start it makes sure
  the reconciler's Schedule exists (idempotent). Scale by starting more (about one per core).
- `python worker.py --role sim`: a sim worker, hosting charger pods (task queue `charger-runtime`):
  each pod runs the OCPP simulators of ~500 chargers that connect to the CSMS at CPOLAB_CSMS_URL.
  It needs no database. Kill one and its pods move to another within the heartbeat timeout.

SIGTERM / SIGINT: the worker stops polling, lets running activities finish for up to
CPOLAB_WORKER_SHUTDOWN_GRACE seconds, then cancels them (Temporal retries them on another worker)
and exits 0. CPOLAB_WORKER_METRICS_PORT serves the Temporal SDK's Prometheus metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from datetime import timedelta

import ocpp.messages
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.worker import Worker

from activities.background import BackgroundActivities
from activities.charger_pods import PodActivities
from activities.charger_runtime import HEARTBEAT_S as POD_HEARTBEAT_S
from activities.charger_runtime import ChargerRuntime
from activities.ocpp_commands import CommandActivities
from activities.provisioning import ProvisioningActivities
from activities.reconcile import ReconcileActivities
from app.lifecycle import temporal_client
from app.lifecycle.models import RECONCILER_SCHEDULE_ID, ReconcileInput
from app.lifecycle.pods import CHARGER_RUNTIME_QUEUE
from app.observability.logging import configure_logging
from app.observability.temporal import LogContextInterceptor, metrics_runtime
from app.settings import ConfigurationError, Settings, get_settings
from app.store.db import Database
from app.store.migrate import SchemaNotAtHead, require_at_head
from app.tools.open_files import raise_open_files_limit
from workflows.background import BackgroundActivityWorkflow
from workflows.charger_link import ChargerDisconnectWorkflow
from workflows.charger_pod import ChargerPodWorkflow
from workflows.cpo import CpoWorkflow
from workflows.ocpi_command import OcpiCommandWorkflow
from workflows.reconciler import ReconcilerWorkflow
from workflows.teardown import CpoTeardownWorkflow

log = logging.getLogger("cpolab.worker")


def make_worker(
    client: Client,
    db: Database,
    task_queue: str,
    charger_key: bytes,
    shutdown_grace: float = 10.0,
    *,
    max_concurrent_activities: int = 20,
    max_concurrent_workflow_tasks: int = 100,
) -> Worker:
    acts = ProvisioningActivities(db, charger_key)
    pods = PodActivities(db, client)
    reconcile = ReconcileActivities(db, client, task_queue)
    commands = CommandActivities(db, client)
    background = BackgroundActivities(db, client, task_queue)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[
            CpoWorkflow,
            ChargerPodWorkflow,
            CpoTeardownWorkflow,
            ReconcilerWorkflow,
            OcpiCommandWorkflow,
            ChargerDisconnectWorkflow,
            BackgroundActivityWorkflow,
        ],
        activities=[
            acts.record_status,
            acts.create_network,
            acts.create_location_batch,
            acts.register_routing_batch,
            acts.provision_network,
            acts.provision_small_network,
            acts.teardown_network,
            acts.count_network,
            pods.plan_pod,
            pods.await_chargers_online,
            pods.stop_charger_pods,
            reconcile.reconcile,
            commands.resolve_charger_route,
            commands.find_reservation,
            commands.post_command_result,
            background.start_visits,
            background.warm_up,
        ],
        max_concurrent_activities=max_concurrent_activities,
        max_concurrent_workflow_tasks=max_concurrent_workflow_tasks,
        graceful_shutdown_timeout=timedelta(seconds=shutdown_grace),
        interceptors=[LogContextInterceptor()],
    )


def make_sim_worker(
    client: Client, charger_key: bytes, csms_url: str, shutdown_grace: float = 10.0, *, max_pods: int = 500
) -> Worker:
    runtime = ChargerRuntime(charger_key, csms_url)
    return Worker(
        client,
        task_queue=CHARGER_RUNTIME_QUEUE,
        activities=[runtime.run_charger_pod],
        max_concurrent_activities=max_pods,
        # A pod learns of its cancellation (teardown) from a heartbeat's answer; the SDK otherwise
        # throttles heartbeats to 80 % of the 20 s timeout, so a DELETE took ~16 s to disconnect. Each
        # heartbeat costs the Temporal server ~4 ms of CPU, for every live pod: every 2 s, 100 idle
        # tiny CPOs kept 19 % of a core busy (bench_cost), so 5 s (POD_HEARTBEAT_S) bounds the delay.
        max_heartbeat_throttle_interval=timedelta(seconds=POD_HEARTBEAT_S),
        # A pod runs until cancelled: on shutdown its chargers disconnect at once and Temporal
        # retries the pod on another sim worker (there is nothing to drain).
        graceful_shutdown_timeout=timedelta(seconds=min(shutdown_grace, 2.0)),
        interceptors=[LogContextInterceptor()],
    )


async def run_sim_worker(stop: asyncio.Event) -> None:
    settings = get_settings()
    raise_open_files_limit()  # one descriptor per simulated charger
    # The simulators validate every frame against the OCPP schemas; inline is ~22 % less CPU than the
    # library's thread-pool default (bench_sim --inline-validation). Process-wide, so set here.
    ocpp.messages.ASYNC_VALIDATION = False
    client = await temporal_client.connect(settings, runtime=metrics_runtime(settings))
    worker = make_sim_worker(
        client,
        settings.charger_key(),
        settings.csms_base_url(),
        settings.worker_shutdown_grace,
        max_pods=settings.sim_max_pods,
    )
    async with worker:
        log.info(
            "sim worker polling %r on %s, chargers connect to %s",
            CHARGER_RUNTIME_QUEUE,
            settings.temporal_address,
            settings.csms_base_url(),
        )
        await stop.wait()
        log.info("sim worker stopping: its pods move to another sim worker")
    log.info("sim worker stopped")


async def ensure_reconciler_schedule(client: Client, settings: Settings) -> None:
    """Create the reconciler's Schedule once (every worker tries; the first one wins)."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            ReconcilerWorkflow.run,
            ReconcileInput(grace_seconds=settings.reconcile_grace),
            id="cpolab-reconciler-run",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.reconcile_interval))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(RECONCILER_SCHEDULE_ID, schedule)
        log.info("created schedule %s (every %s s)", RECONCILER_SCHEDULE_ID, settings.reconcile_interval)
    except ScheduleAlreadyRunningError:
        pass


async def run_worker(stop: asyncio.Event) -> None:
    settings = get_settings()
    db = Database(settings.database_url)
    try:
        await require_at_head(db)  # activities written for another schema must not run on this one
    except SchemaNotAtHead as exc:
        await db.dispose()
        raise SystemExit(f"cpolab worker refuses to start: {exc}") from None
    client = await temporal_client.connect(settings, runtime=metrics_runtime(settings))
    await ensure_reconciler_schedule(client, settings)
    worker = make_worker(
        client,
        db,
        settings.task_queue,
        settings.charger_key(),
        settings.worker_shutdown_grace,
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
    )
    async with worker:  # leaving it is worker.shutdown(): stop polling, drain, cancel after the grace
        log.info("worker polling %r on %s", settings.task_queue, settings.temporal_address)
        await stop.wait()
        log.info("worker stopping: no new tasks; in-flight activities get %g s", settings.worker_shutdown_grace)
    await db.dispose()
    log.info("worker stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description="cpolab Temporal worker")
    parser.add_argument("--log-level", default=None, help="overrides CPOLAB_LOG_LEVEL")
    parser.add_argument(
        "--role",
        choices=("provisioning", "sim"),
        default="provisioning",
        help="provisioning: CPO workflows and DB activities; sim: charger pods (OCPP simulators)",
    )
    args = parser.parse_args()
    settings = get_settings()
    try:
        settings.require_secrets()  # activities derive charger passwords from it
        temporal_client.tls_config(settings)  # an unreadable certificate stops the worker here, named
    except ConfigurationError as exc:
        raise SystemExit(f"cpolab worker refuses to start: {exc}") from None
    configure_logging(settings.log_format, args.log_level or settings.log_level)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await (run_sim_worker(stop) if args.role == "sim" else run_worker(stop))

    asyncio.run(_main())
    # The Temporal SDK core's threads can outlive the event loop and abort the interpreter while it
    # finalizes ("PyGILState_Release … finalizing", temporalio/sdk-python#300): everything is
    # stopped and flushed here, so leave without finalizing.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
