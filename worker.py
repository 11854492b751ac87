"""Temporal worker process: `python worker.py` runs the CPO workflows and their activities.

Scale by starting more of these (about one per core); they share the `provisioning` task queue.
At start each worker makes sure the reconciler's Schedule exists (idempotent).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from datetime import timedelta

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

from activities import pods
from activities.provisioning import ProvisioningActivities
from activities.reconcile import ReconcileActivities
from app.lifecycle.models import RECONCILER_SCHEDULE_ID, ReconcileInput
from app.settings import ConfigurationError, Settings, get_settings
from app.store.db import Database
from app.store.migrate import SchemaNotAtHead, require_at_head
from workflows.cpo import CpoWorkflow
from workflows.reconciler import ReconcilerWorkflow
from workflows.teardown import CpoTeardownWorkflow

log = logging.getLogger("cpolab.worker")


def make_worker(client: Client, db: Database, task_queue: str, charger_key: bytes) -> Worker:
    acts = ProvisioningActivities(db, charger_key)
    reconcile = ReconcileActivities(db, client, task_queue)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CpoWorkflow, CpoTeardownWorkflow, ReconcilerWorkflow],
        activities=[
            acts.record_status,
            acts.create_network,
            acts.create_location_batch,
            acts.register_routing_batch,
            acts.teardown_network,
            acts.count_network,
            pods.start_charger_pods,
            pods.stop_charger_pods,
            reconcile.reconcile,
        ],
        max_concurrent_activities=20,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


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
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    await ensure_reconciler_schedule(client, settings)
    async with make_worker(client, db, settings.task_queue, settings.charger_key()):
        log.info("worker polling %r on %s", settings.task_queue, settings.temporal_address)
        await stop.wait()
    await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description="cpolab Temporal worker")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    try:
        get_settings().require_secrets()  # activities derive charger passwords from it
    except ConfigurationError as exc:
        raise SystemExit(f"cpolab worker refuses to start: {exc}") from None
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(stop)

    asyncio.run(_main())


if __name__ == "__main__":
    main()
