"""Temporal worker process: `python worker.py` runs CpoWorkflow and the provisioning activities.

Scale by starting more of these (about one per core); they share the `provisioning` task queue.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities import pods
from activities.provisioning import ProvisioningActivities
from app.settings import ConfigurationError, get_settings
from app.store.db import Database
from workflows.cpo import CpoWorkflow


def make_worker(client: Client, db: Database, task_queue: str) -> Worker:
    acts = ProvisioningActivities(db)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CpoWorkflow],
        activities=[
            acts.record_status,
            acts.create_network,
            acts.create_location_batch,
            acts.register_routing_batch,
            acts.teardown_network,
            acts.count_network,
            pods.start_charger_pods,
            pods.stop_charger_pods,
        ],
        max_concurrent_activities=20,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def run_worker(stop: asyncio.Event) -> None:
    settings = get_settings()
    db = Database(settings.database_url)
    await db.create_schema()
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    async with make_worker(client, db, settings.task_queue):
        logging.getLogger("cpolab.worker").info(
            "worker polling %r on %s", settings.task_queue, settings.temporal_address
        )
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
