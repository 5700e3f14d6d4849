"""What the Claude Batches page shows: a connection's recent batches, joined with the batch
index in the work directory (which DAG run and task created each batch) and with the
transfers' landing summaries (what each batch cost).

Every source may be missing or broken (no such connection, an unreachable API, a manifest
that does not parse, an unknown model): each problem becomes a note on the page, never an
exception out of it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from airflow_provider_claude_batch.batching.batch_index import read_origin
from airflow_provider_claude_batch.batching.landing import LANDING_SUMMARY_NAME
from airflow_provider_claude_batch.batching.manifest import Manifest
from airflow_provider_claude_batch.batching.progress import batch_state
from airflow_provider_claude_batch.links import console_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Origin:
    """The task instance whose manifest records a batch."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    chunk: int
    round: int


@dataclass
class BatchRow:
    id: str
    processing_status: str
    request_counts: dict[str, int]
    created_at: str | None
    expires_at: str | None
    ended_at: str | None
    age_seconds: float | None
    expires_in_seconds: float | None
    percent_done: float
    cost_usd: float | None = None
    #: A transfer landed this batch's results (so a missing cost means an unpriced model).
    landed: bool = False
    origin: Origin | None = None
    #: The work directory names the creating task, but the viewer may not read its DAG.
    origin_hidden: bool = False
    console_url: str | None = None

    @property
    def total(self) -> int:
        return sum(self.request_counts.values())


@dataclass
class Overview:
    conn_id: str
    rows: list[BatchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seconds_between(start: datetime | None, end: datetime) -> float | None:
    return None if start is None else (end - start).total_seconds()


def batch_row(batch: Any, now: datetime) -> BatchRow:
    state = batch_state(batch)
    counts = state["request_counts"]
    total = sum(counts.values())
    expires_at = getattr(batch, "expires_at", None)
    return BatchRow(
        id=batch.id,
        processing_status=state["processing_status"],
        request_counts=counts,
        created_at=state["created_at"],
        expires_at=expires_at.isoformat() if expires_at else None,
        ended_at=state["ended_at"],
        age_seconds=_seconds_between(batch.created_at, now),
        expires_in_seconds=None if expires_at is None else (expires_at - now).total_seconds(),
        percent_done=100.0 * (total - counts["processing"]) / total if total else 0.0,
    )


Origins = dict[str, Origin]
#: batch id -> landed cost (None: landed, but a model is missing from the price table).
Costs = dict[str, float | None]


def manifest_origins(manifest: Manifest, folder: Any, origins: Origins, costs: Costs, notes: list[str]) -> None:
    """Add the batches of one manifest (and the costs of its landing summary in ``folder``)."""
    for record in manifest.batches:
        if record.batch_id:
            origins[record.batch_id] = Origin(
                manifest.dag_id, manifest.run_id, manifest.task_id, manifest.map_index, record.chunk, record.round
            )
    costs.update(landing_costs(folder, notes))


def landing_costs(folder: Any, notes: list[str]) -> Costs:
    """batch id -> cost from the landing summary in a task folder (none before a transfer ran)."""
    costs: Costs = {}
    summary_path = folder / LANDING_SUMMARY_NAME
    try:
        if not summary_path.exists():
            return costs
        by_batch = json.loads(summary_path.read_bytes()).get("by_batch", {})
        for batch_id, totals in by_batch.items():
            cost = totals.get("cost_usd")
            costs[batch_id] = None if cost is None else float(cost)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        notes.append(f"Skipped {summary_path}: {exc}")
    return costs


def indexed_origins(work_dir: Any, batch_ids: Iterable[str], notes: list[str]) -> tuple[Origins, Costs]:
    """batch id -> the task that created it (from the batch index under ``work_dir``), and
    batch id -> landed cost (from the landing summaries of those tasks). One small read per
    batch and per task folder, in parallel: object storage answers each in tens of ms.
    Unreadable entries become notes."""
    from airflow_provider_claude_batch.workdir import run_directory

    def lookup(batch_id: str) -> tuple[str, Origin | None, str | None]:
        try:
            entry = read_origin(work_dir, batch_id)
            if entry is None:
                return batch_id, None, None
            origin = Origin(
                entry["dag_id"],
                entry["run_id"],
                entry["task_id"],
                int(entry.get("map_index", -1)),
                int(entry.get("chunk", 0)),
                int(entry.get("round", 0)),
            )
            return batch_id, origin, None
        except Exception as exc:  # one bad entry must not hide the others
            return batch_id, None, f"Skipped the index entry of {batch_id}: {exc}"

    origins: Origins = {}
    costs: Costs = {}
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="claude-batches-page") as pool:
        for batch_id, origin, problem in pool.map(lookup, batch_ids):
            if problem:
                notes.append(problem)
            if origin is not None:
                origins[batch_id] = origin
        folders = {(o.dag_id, o.run_id, o.task_id, o.map_index) for o in origins.values()}
        for landed in pool.map(lambda key: landing_costs(run_directory(work_dir, *key), notes), folders):
            costs.update(landed)
    return origins, costs


def build_overview(
    conn_id: str,
    batches: Iterable[Any],
    origins: Origins,
    costs: Costs,
    *,
    console_url_template: str | None = None,
    workspace_id: str | None = None,
    may_read_dag: Callable[[str], bool] | None = None,
    now: datetime | None = None,
) -> Overview:
    """Rows for ``batches`` (newest first, as ``list`` returns them) with origin and cost. An
    origin in a DAG that ``may_read_dag`` refuses is hidden: the batch shows, its DAG run not."""
    now = now or datetime.now(timezone.utc)
    overview = Overview(conn_id=conn_id)
    for batch in batches:
        row = batch_row(batch, now)
        origin = origins.get(row.id)
        if origin is not None and may_read_dag is not None and not may_read_dag(origin.dag_id):
            origin, row.origin_hidden = None, True
        row.origin = origin
        row.cost_usd = costs.get(row.id)
        row.landed = row.id in costs
        row.console_url = console_url(console_url_template, row.id, workspace_id)
        overview.rows.append(row)
    return overview


__all__ = ["BatchRow", "Origin", "Overview", "build_overview", "indexed_origins", "landing_costs", "manifest_origins"]
