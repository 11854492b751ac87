"""Worker-side observability: the Temporal SDK's Prometheus endpoint and activity log context."""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from app.observability.logging import cpo_of_workflow, log_scope
from app.settings import Settings


def metrics_runtime(settings: Settings) -> Runtime | None:
    """A Runtime whose SDK core serves Prometheus metrics (temporal_* series: workflow/activity task
    counters and latencies, slots, pollers) on worker_metrics_host:worker_metrics_port; None when off."""
    if not settings.worker_metrics_port:
        return None
    address = f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


class _ActivityContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        workflow_id = activity.info().workflow_id or ""
        with log_scope(workflow_id=workflow_id or None, cpo_id=cpo_of_workflow(workflow_id)):
            return await self.next.execute_activity(input)


class LogContextInterceptor(Interceptor):
    """Every log line an activity writes carries its workflow id and, for `cpo-{id}…`, the CPO id."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityContext(next)
