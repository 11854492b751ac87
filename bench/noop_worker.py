"""Bench-only worker for bench_cost.py's baseline: serves bench/noop_workflow.py with the production
worker's concurrency settings (`CPOLAB_WORKER_MAX_CONCURRENT_*`) on its own task queue of the same
dev server, so the only difference from a CPO create is the work cpolab itself adds.

    python -m bench.noop_worker --address 127.0.0.1:7233     # from the repository root
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from temporalio.client import Client
from temporalio.worker import Worker

from app.settings import get_settings
from bench.noop_workflow import TASK_QUEUE, NoopWorkflow, noop


async def serve(address: str) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings = get_settings()
    async with Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[NoopWorkflow],
        activities=[noop],
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
    ):
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", required=True, help="Temporal frontend host:port")
    asyncio.run(serve(parser.parse_args().address))
