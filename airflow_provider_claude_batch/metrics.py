"""The figures of a feeding run, sent through Airflow's metrics (StatsD or OpenTelemetry, as the
deployment configures ``[metrics]``), so the dashboards people already watch show the batch queue.

Every name and what it measures is listed in :data:`QUEUE_METRICS` and in docs/queue.md; a test
keeps the two the same. Tags carry the connection, DAG and task (StatsD without tag support
drops them: the names stay meaningful alone). Sending never fails a task: a metrics backend
that is down or misconfigured costs a warning, not a run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_claude_batch.batching.submit.feeding import Fed

log = logging.getLogger(__name__)

PREFIX = "claude_batch"

#: Every metric this provider sends: name -> (kind, what it measures).
QUEUE_METRICS: dict[str, tuple[str, str]] = {
    f"{PREFIX}.queue.queued_requests": ("gauge", "requests in the workspace's batches still processing"),
    f"{PREFIX}.queue.limit_requests": (
        "gauge",
        "the queue's limit in requests, configured or learned (unset: unknown)",
    ),
    f"{PREFIX}.queue.fill_percent": ("gauge", "how full the queue is, 0-100 (unset: limit unknown)"),
    f"{PREFIX}.queue.refusals": ("counter", "creates the API refused because the queue was full"),
    f"{PREFIX}.feed.waiting_requests": ("gauge", "this task's requests not sent yet, waiting for room"),
    f"{PREFIX}.feed.in_queue_requests": ("gauge", "this task's requests in batches still processing"),
    f"{PREFIX}.feed.ended_requests": ("gauge", "this task's requests in batches that ended"),
    f"{PREFIX}.feed.created_batches": ("counter", "batches this task created"),
    f"{PREFIX}.feed.sent_requests": ("counter", "requests in the batches this task created"),
}


def emit_feeding(fed: Fed, sent_requests: int, *, conn_id: str, dag_id: str, task_id: str) -> None:
    """Send one feeding step's figures (see :data:`QUEUE_METRICS`)."""
    try:
        from airflow.providers.common.compat.sdk import Stats
    except ImportError:  # pragma: no cover - an Airflow without a Stats facade
        return
    queue_tags = {"conn_id": conn_id}
    task_tags = {**queue_tags, "dag_id": dag_id, "task_id": task_id}
    try:
        Stats.gauge(f"{PREFIX}.queue.queued_requests", fed.queued, tags=queue_tags)
        if fed.limit is not None:
            Stats.gauge(f"{PREFIX}.queue.limit_requests", fed.limit, tags=queue_tags)
        if fed.fill is not None:
            Stats.gauge(f"{PREFIX}.queue.fill_percent", round(fed.fill * 100, 1), tags=queue_tags)
        if fed.refusals:
            Stats.incr(f"{PREFIX}.queue.refusals", fed.refusals, tags=queue_tags)
        Stats.gauge(f"{PREFIX}.feed.waiting_requests", fed.waiting_requests, tags=task_tags)
        Stats.gauge(f"{PREFIX}.feed.in_queue_requests", fed.in_queue, tags=task_tags)
        Stats.gauge(f"{PREFIX}.feed.ended_requests", fed.ended, tags=task_tags)
        if fed.created:
            Stats.incr(f"{PREFIX}.feed.created_batches", len(fed.created), tags=task_tags)
            Stats.incr(f"{PREFIX}.feed.sent_requests", sent_requests, tags=task_tags)
    except Exception as error:  # metrics must never fail a run
        log.warning("Could not send the batch queue metrics: %s", error)
