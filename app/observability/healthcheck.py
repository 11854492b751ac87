"""Container healthchecks (docker-compose.yml runs them inside the api and worker containers).

    python -m app.observability.healthcheck api URL   # 0 when URL (the API's /readyz) answers 2xx
    python -m app.observability.healthcheck worker    # 0 when this host's worker polls its task queue
    python -m app.observability.healthcheck sim       # 0 when this host's sim worker polls for pods

The worker check reads the Temporal SDK's Prometheus endpoint (CPOLAB_WORKER_METRICS_PORT on
127.0.0.1) and wants a workflow-task and an activity-task poller on CPOLAB_TASK_QUEUE: a worker that
serves metrics but has stopped polling (draining, wedged) is not healthy. A sim worker runs only
activities: it wants an activity-task poller on `charger-runtime`. Exit 1 with one line why.
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.error
import urllib.request

from app.lifecycle.pods import CHARGER_RUNTIME_QUEUE
from app.settings import Settings, get_settings

TIMEOUT_S = 3.0
_POLLERS = re.compile(r"^temporal_num_pollers\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
WANTED_POLLERS = ("workflow_task", "activity_task")


class Unhealthy(Exception):
    pass


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise Unhealthy(f"{url} answered {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise Unhealthy(f"{url}: {exc}") from None


def check_api(url: str) -> None:
    _get(url)


def active_pollers(metrics: str, task_queue: str) -> dict[str, float]:
    """poller_type → number of pollers on `task_queue`, from Prometheus text."""
    found: dict[str, float] = {}
    for match in _POLLERS.finditer(metrics):
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("task_queue") == task_queue:
            found[labels.get("poller_type", "")] = float(match["value"])
    return found


def check_worker(settings: Settings, *, sim: bool = False) -> None:
    if not settings.worker_metrics_port:
        raise Unhealthy("CPOLAB_WORKER_METRICS_PORT is 0: the worker serves no metrics to check")
    queue, wanted = (CHARGER_RUNTIME_QUEUE, ("activity_task",)) if sim else (settings.task_queue, WANTED_POLLERS)
    pollers = active_pollers(_get(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"), queue)
    idle = [kind for kind in wanted if pollers.get(kind, 0) <= 0]
    if idle:
        raise Unhealthy(f"no {' / '.join(idle)} poller on task queue {queue!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.observability.healthcheck", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="role", required=True)
    sub.add_parser("api", help="GET a URL, healthy on 2xx").add_argument("url")
    sub.add_parser("worker", help="the local worker polls its task queue")
    sub.add_parser("sim", help="the local sim worker polls for charger pods")
    args = parser.parse_args(argv)
    try:
        if args.role == "api":
            check_api(args.url)
        else:
            check_worker(get_settings(), sim=args.role == "sim")
    except Unhealthy as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
