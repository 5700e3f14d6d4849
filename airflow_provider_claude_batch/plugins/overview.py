"""What the Claude Batches page shows: a connection's recent batches, joined with the batch
index in the work directory (which DAG run and task created each batch) and with what each
batch billed (the transfers' landing summaries, else its raw results), then grouped into one
entry per DAG run (:class:`RunGroup`: its rows, requests sent, reuse, and its verdict from the
metadata database's states and its landing), filtered (:class:`PageFilter`) and summed per day
(:func:`daily_chart`).

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
from datetime import date, datetime, timedelta, timezone
from typing import Any

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.batching.api.batch_state import (
    CANCELING,
    COUNT_KINDS,
    ENDED,
    FAILED_KINDS,
    IN_PROGRESS,
    PROCESSING_STATUSES,
    BatchState,
)
from airflow_provider_claude_batch.batching.state.batch_index import BatchOwner, read_origin
from airflow_provider_claude_batch.batching.state.manifest import Manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir, WorkDir
from airflow_provider_claude_batch.links import console_url
from airflow_provider_claude_batch.plugins.run_reuse import AnsweredRun, RunKey, RunReuse, RunWork
from airflow_provider_claude_batch.plugins.run_state import AirflowState, RunStates, Verdict, verdict
from airflow_provider_claude_batch.plugins.run_state import as_dict as airflow_as_dict

log = logging.getLogger(__name__)


#: The task instance (and its chunk and round) whose manifest records a batch.
Origin = BatchOwner


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
    #: From ``ended_at - created_at`` (None while open).
    duration_seconds: float | None = None
    #: When the results stop being downloadable: created_at + 29 days (then ``archived_at``).
    results_until: str | None = None
    #: Always None: rows are reused per DAG run (``RunGroup.reuse``), not per batch. Kept in
    #: the JSON rows for their readers.
    rows_reused: int | None = None
    cost_usd: float | None = None
    #: A transfer landed this batch's results (so a missing cost means an unpriced model).
    landed: bool = False
    #: Where ``cost_usd`` comes from: "landed" (the landing summary), "raw results" (an ended
    #: batch that did not land, priced from its downloaded results), None (not known).
    cost_source: str | None = None
    origin: Origin | None = None
    #: The work directory names the creating task, but the viewer may not read its DAG.
    origin_hidden: bool = False
    console_url: str | None = None

    @property
    def total(self) -> int:
        return sum(self.request_counts.values())

    @property
    def failed(self) -> int:
        return sum(self.request_counts.get(kind, 0) for kind in FAILED_KINDS)

    @property
    def created_day(self) -> date | None:
        return datetime.fromisoformat(self.created_at).astimezone(timezone.utc).date() if self.created_at else None

    @property
    def cost_known(self) -> bool:
        """What the batch billed is known: landed, or priced from its raw results."""
        return self.cost_source is not None and self.cost_usd is not None


#: (dag_id, run_id) -> (logical date as ISO 8601, or None for a run without one, e.g. an
#: asset-triggered run; then its run_after stands in). Runs missing from the result are gone
#: from the metadata database.
RunDates = dict[tuple[str, str], str | None]


@dataclass
class RunGroup:
    """The batches of one DAG run, newest batch first. ``dag_id`` None: the batches whose run is
    unknown here (no index entry) or hidden from the viewer, shown together. A run with no
    batch (every row answered from the store or deduplicated, or awaited from another run's
    batch) has ``answered_at``: it cost nothing, and is done once its awaited rows are answered."""

    dag_id: str | None
    run_id: str | None
    #: ISO 8601, from the metadata database; None when the run is unknown there.
    logical_date: str | None
    batches: list[BatchRow] = field(default_factory=list)
    #: What its run folders say (rows, requests sent, reuse, landings); None when not read.
    work: RunWork | None = None
    #: For a run without a batch: when its submit task wrote its manifest (ISO 8601).
    answered_at: str | None = None
    #: What the metadata database says of the run; None when it does not know it (or was not asked).
    airflow: AirflowState | None = None

    @property
    def reuse(self) -> RunReuse | None:
        """How its rows divided (new, reused, deduplicated, awaited); None when its submit did not look."""
        return None if self.work is None else self.work.reuse

    def verdict(self) -> Verdict | None:
        """How the page shows where the run stands (None for the group of unknown runs)."""
        if self.dag_id is None:
            return None
        work = self.work or RunWork()
        waiting = self.reuse is not None and self.reuse.awaited_waiting > 0
        return verdict(
            self.airflow,
            work.landed,
            work.tasks,
            batches_open=waiting or any(row.processing_status != ENDED for row in self.batches),
            batch_status=self.processing_status,
        )

    @property
    def sort_time(self) -> datetime | None:
        """The newest batch's creation, or, without a batch, when the run was answered."""
        moments = [row.created_at for row in self.batches if row.created_at] or (
            [self.answered_at] if self.answered_at else []
        )
        return max((datetime.fromisoformat(m) for m in moments), default=None)

    @property
    def processing_status(self) -> str:
        statuses = {row.processing_status for row in self.batches}
        return next((s for s in (IN_PROGRESS, CANCELING) if s in statuses), ENDED)

    def _answered_share(self) -> float:
        """For a run without a batch: the share of its rows answered (awaited rows once resolved)."""
        reuse = self.reuse
        if reuse is None or not reuse.rows:
            return 100.0
        return 100.0 * (reuse.rows - reuse.awaited_waiting) / reuse.rows

    def totals(self) -> dict[str, Any]:
        """Sums over the batches (``cost_usd`` None unless every batch's cost is known, landed or
        from raw results; ``results_until``: the earliest, when the first batch's results go).
        ``rows`` and ``requests_sent`` (every round) come from the run folders when read."""
        counts = {kind: sum(row.request_counts.get(kind, 0) for row in self.batches) for kind in COUNT_KINDS}
        total = sum(counts.values())
        costs = [row.cost_usd if row.cost_known else None for row in self.batches]
        created = [row.created_at for row in self.batches if row.created_at]
        ended = [row.ended_at for row in self.batches if row.ended_at]
        all_ended = len(ended) == len(self.batches)
        duration = None
        if all_ended and created:
            duration = (datetime.fromisoformat(max(ended)) - datetime.fromisoformat(min(created))).total_seconds()
        until = [row.results_until for row in self.batches if row.results_until]
        answered = not self.batches and self.answered_at is not None
        cost = None if not costs or None in costs else sum(c for c in costs if c is not None)
        work = self.work
        return {
            "request_counts": counts,
            "total": total,
            "rows": None if work is None else work.rows,
            "requests_sent": total if work is None else work.requests_sent,
            "rounds": None if work is None else work.rounds,
            "percent_done": (
                100.0 * (total - counts["processing"]) / total
                if total
                else (self._answered_share() if answered else 0.0)
            ),
            "cost_usd": 0.0 if answered else cost,
            # Some of the cost is from raw results: billed, but not landed.
            "cost_not_landed": any(row.cost_source == "raw results" for row in self.batches),
            "created_at": min(created) if created else self.answered_at,
            "ended_at": max(ended) if all_ended and ended else self.answered_at,
            "duration_seconds": duration,
            "results_until": min(until) if until else None,
            # Rows answered without being sent (reused + deduplicated); None: reuse not recorded.
            "rows_reused": None if self.reuse is None else self.reuse.rows_reused,
            "reuse_saved_usd": None if self.reuse is None else self.reuse.saved_usd,
            "reuse": None if self.reuse is None else self.reuse.as_dict(),
        }

    def as_dict(self) -> dict[str, Any]:
        run_verdict = self.verdict()
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "logical_date": self.logical_date,
            "processing_status": self.processing_status,
            "state": None if run_verdict is None else run_verdict.word,
            "state_detail": None if run_verdict is None else run_verdict.detail,
            **airflow_as_dict(self.airflow),
            "landed_tasks": None if self.work is None else self.work.landed,
            "submit_tasks": None if self.work is None else self.work.tasks,
            **self.totals(),
            "batch_ids": [row.id for row in self.batches],
        }


#: The page's status filter: a batch's processing status, or "failed" for batches with
#: errored, expired or canceled requests.
STATUS_CHOICES = (*PROCESSING_STATUSES, "failed")


@dataclass(frozen=True)
class PageFilter:
    """What the viewer narrowed the page to. Dates compare with the run's logical date (UTC
    day), or the batch's creation day when its run is unknown; both ends included."""

    dag_id: str | None = None
    status: str | None = None
    since: date | None = None
    until: date | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUS_CHOICES:
            raise ValueError(f"status must be one of {', '.join(STATUS_CHOICES)} (got {self.status!r})")

    def keeps(self, row: BatchRow, logical_date: str | None) -> bool:
        if self.dag_id and (row.origin is None or row.origin.dag_id != self.dag_id):
            return False
        if self.status == "failed":
            if not row.failed:
                return False
        elif self.status and row.processing_status != self.status:
            return False
        if self.since or self.until:
            day = (
                datetime.fromisoformat(logical_date).astimezone(timezone.utc).date()
                if logical_date
                else row.created_day
            )
            if day is None or (self.since and day < self.since) or (self.until and day > self.until):
                return False
        return True

    def keeps_run(self, run: AnsweredRun, logical_date: str | None) -> bool:
        """The same choice for a run without a batch: it has ended and no request failed."""
        if (self.dag_id and run.dag_id != self.dag_id) or self.status not in (None, ENDED):
            return False
        if self.since or self.until:
            day = datetime.fromisoformat(logical_date or run.created_at).astimezone(timezone.utc).date()
            if (self.since and day < self.since) or (self.until and day > self.until):
                return False
        return True


def group_runs(
    rows: Iterable[BatchRow],
    run_dates: RunDates,
    page_filter: PageFilter | None = None,
    work: dict[RunKey, RunWork] | None = None,
    answered: Iterable[AnsweredRun] = (),
    states: RunStates | None = None,
) -> list[RunGroup]:
    """One group per DAG run, newest first (by its newest batch, or for a run without a batch
    by when it was answered); batches without a visible run form one group at the end. Only
    rows and runs the filter keeps. ``work``: what each run's folders say; ``states``: what the
    metadata database says of each run."""
    groups: dict[tuple[str, str] | None, RunGroup] = {}
    work = work or {}
    states = states or {}
    for row in rows:
        key = (row.origin.dag_id, row.origin.run_id) if row.origin else None
        logical_date = run_dates.get(key) if key else None
        if page_filter is not None and not page_filter.keeps(row, logical_date):
            continue
        if key not in groups:
            groups[key] = (
                RunGroup(key[0], key[1], logical_date, work=work.get(key), airflow=states.get(key))
                if key
                else RunGroup(None, None, None)
            )
        groups[key].batches.append(row)
    unknown = groups.pop(None, None)
    for run in answered:
        key = (run.dag_id, run.run_id)
        if key in groups or (page_filter is not None and not page_filter.keeps_run(run, run_dates.get(key))):
            continue
        groups[key] = RunGroup(
            run.dag_id,
            run.run_id,
            run_dates.get(key),
            work=run.work,
            answered_at=run.created_at,
            airflow=states.get(key),
        )
    # Stable: runs with batches keep the order of their newest batch (rows come newest first).
    ordered = sorted(
        groups.values(), key=lambda g: g.sort_time or datetime.min.replace(tzinfo=timezone.utc), reverse=True
    )
    return [*ordered, *([unknown] if unknown else [])]


@dataclass
class DayPoint:
    """One UTC day of the chart: what the batches created that day billed (landed, else from
    their raw results), and how their ended requests came out (``succeeded_share`` None while
    none has ended)."""

    day: str
    batches: int = 0
    requests: int = 0
    ended_requests: int = 0
    succeeded: int = 0
    cost_usd: float = 0.0
    #: Batches of the day whose cost is not known (still open; ended with neither a landing nor
    #: raw results; or an unpriced model): the day's cost is partly unknown.
    unpriced_batches: int = 0
    #: Of those, the batches still open (their cost is not billed yet).
    open_batches: int = 0

    @property
    def succeeded_share(self) -> float | None:
        return self.succeeded / self.ended_requests if self.ended_requests else None


CHART_DAYS = 30


def daily_chart(rows: Iterable[BatchRow], today: date, days: int = CHART_DAYS) -> list[DayPoint]:
    """``days`` points ending ``today`` (oldest first), one per UTC day of batch creation:
    spend happens when a batch runs, whatever the logical date of its DAG run."""
    first = today - timedelta(days=days - 1)
    points = {first + timedelta(days=i): DayPoint((first + timedelta(days=i)).isoformat()) for i in range(days)}
    for row in rows:
        point = points.get(row.created_day) if row.created_day else None
        if point is None:
            continue
        point.batches += 1
        point.requests += row.total
        point.ended_requests += row.total - row.request_counts.get("processing", 0)
        point.succeeded += row.request_counts.get("succeeded", 0)
        if row.cost_known:
            point.cost_usd += row.cost_usd or 0.0
        else:
            point.unpriced_batches += 1
            point.open_batches += row.processing_status != ENDED
    return list(points.values())


@dataclass
class Overview:
    conn_id: str
    rows: list[BatchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Logical dates of the runs shown, from the metadata database.
    run_dates: RunDates = field(default_factory=dict)
    #: Batches of the last 30 days older than ``rows`` (the table's): they feed the chart only.
    chart_rows: list[BatchRow] = field(default_factory=list)
    #: What the run folders of the runs shown say: rows, requests sent, reuse, landings.
    run_work: dict[RunKey, RunWork] = field(default_factory=dict)
    #: Recent runs that created no batch (every row answered): runs of their own on the page.
    answered_runs: list[AnsweredRun] = field(default_factory=list)
    #: What the metadata database says of the runs shown (their state, the provider's tasks).
    run_states: RunStates = field(default_factory=dict)

    def runs(self, page_filter: PageFilter | None = None) -> list[RunGroup]:
        return group_runs(self.rows, self.run_dates, page_filter, self.run_work, self.answered_runs, self.run_states)

    def chart(self, today: date, page_filter: PageFilter | None = None) -> list[DayPoint]:
        """The last 30 days of the rows, narrowed to the filter's DAG only (a status or date
        filter would hollow out the trend it is there to show)."""
        dag_only = PageFilter(dag_id=page_filter.dag_id) if page_filter and page_filter.dag_id else None
        every = [*self.rows, *self.chart_rows]
        return daily_chart((r for r in every if dag_only is None or dag_only.keeps(r, None)), today)

    def as_dict(self, page_filter: PageFilter | None = None, today: date | None = None) -> dict[str, Any]:
        """The JSON API: ``rows`` (every batch read, unfiltered, as before), ``runs`` (the
        filtered groups) and ``chart`` (30 days)."""
        today = today or datetime.now(timezone.utc).date()
        return {
            "conn_id": self.conn_id,
            "rows": [asdict(row) for row in self.rows],
            "notes": list(self.notes),
            "runs": [run.as_dict() for run in self.runs(page_filter)],
            "chart": [{**asdict(p), "succeeded_share": p.succeeded_share} for p in self.chart(today, page_filter)],
        }


def _seconds_between(start: datetime | None, end: datetime) -> float | None:
    return None if start is None else (end - start).total_seconds()


def batch_row(batch: Any, now: datetime) -> BatchRow:
    state = BatchState.from_batch(batch).as_json()
    counts = state["request_counts"]
    total = sum(counts.values())
    expires_at = getattr(batch, "expires_at", None)
    created_at, ended_at = batch.created_at, batch.ended_at
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
        duration_seconds=_seconds_between(created_at, ended_at) if ended_at else None,
        results_until=(created_at + timedelta(days=limits.RESULTS_RETENTION_DAYS)).isoformat() if created_at else None,
    )


Origins = dict[str, Origin]
#: batch id -> landed cost (None: landed, but a model is missing from the price table).
Costs = dict[str, float | None]


def manifest_origins(manifest: Manifest, folder: RunDir | Any) -> tuple[Origins, Costs, list[str]]:
    """The batches of one manifest, the costs of its landing summary in ``folder``, and notes
    on what could not be read."""
    origins = {record.batch_id: Origin.of(manifest, record) for record in manifest.batches if record.batch_id}
    costs, notes = landing_costs(folder)
    return origins, costs, notes


def landing_costs(folder: RunDir | Any) -> tuple[Costs, list[str]]:
    """batch id -> cost from the landing summary in a task folder (none before a transfer ran),
    and a note when the summary could not be read."""
    costs: Costs = {}
    summary_path = RunDir.of(folder).landing_summary
    try:
        if not summary_path.exists():
            return costs, []
        by_batch = json.loads(summary_path.read_bytes()).get("by_batch", {})
        for batch_id, totals in by_batch.items():
            cost = totals.get("cost_usd")
            costs[batch_id] = None if cost is None else float(cost)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return {}, [f"Skipped {summary_path}: {exc}"]
    return costs, []


#: (work dir, batch id) -> origin, for index entries already read in this process. An entry
#: never changes once written (a batch id is created once), so the page's 30-day chart reads
#: each entry once per api-server, not on every load. Missing entries are not cached: the
#: index is written just after a create, and a page load may come in between.
_KNOWN_ORIGINS: dict[tuple[str, str], Origin] = {}
_KNOWN_ORIGINS_MAX = 100_000


def indexed_origins(work_dir: WorkDir | Any, batch_ids: Iterable[str]) -> tuple[Origins, Costs, list[str]]:
    """batch id -> the task that created it (from the batch index under ``work_dir``), and
    batch id -> landed cost (from the landing summaries of those tasks). One small read per
    batch and per task folder, in parallel: object storage answers each in tens of ms.
    Unreadable entries become the notes returned third."""
    work_dir = WorkDir.of(work_dir)

    def lookup(batch_id: str) -> tuple[str, Origin | None, str | None]:
        cached = _KNOWN_ORIGINS.get((str(work_dir), batch_id))
        if cached is not None:
            return batch_id, cached, None
        try:
            entry = read_origin(work_dir, batch_id)
            if entry is None:
                return batch_id, None, None
            origin = Origin.from_entry(entry)
            if len(_KNOWN_ORIGINS) >= _KNOWN_ORIGINS_MAX:
                _KNOWN_ORIGINS.clear()
            _KNOWN_ORIGINS[(str(work_dir), batch_id)] = origin
            return batch_id, origin, None
        except Exception as exc:  # one bad entry must not hide the others
            return batch_id, None, f"Skipped the index entry of {batch_id}: {exc}"

    origins: Origins = {}
    costs: Costs = {}
    notes: list[str] = []
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="claude-batches-page") as pool:
        for batch_id, origin, problem in pool.map(lookup, batch_ids):
            if problem:
                notes.append(problem)
            if origin is not None:
                origins[batch_id] = origin
        folders = {(o.dag_id, o.run_id, o.task_id, o.map_index) for o in origins.values()}
        for landed, problems in pool.map(lambda key: landing_costs(work_dir.run(*key)), folders):
            costs.update(landed)
            notes.extend(problems)
    return origins, costs, notes


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
    billed: Costs | None = None,
) -> Overview:
    """Rows for ``batches`` (newest first, as ``list`` returns them) with origin and cost: the
    landed cost (``costs``), else what an ended batch billed by its raw results (``billed``).
    An origin in a DAG that ``may_read_dag`` refuses is hidden: the batch shows, its DAG run not."""
    now = now or datetime.now(timezone.utc)
    overview = Overview(conn_id=conn_id)
    for batch in batches:
        row = batch_row(batch, now)
        origin = origins.get(row.id)
        if origin is not None and may_read_dag is not None and not may_read_dag(origin.dag_id):
            origin, row.origin_hidden = None, True
        row.origin = origin
        row.landed = row.id in costs
        if row.landed:
            row.cost_usd, row.cost_source = costs[row.id], "landed"
        elif billed and row.id in billed:
            row.cost_usd, row.cost_source = billed[row.id], "raw results"
        row.console_url = console_url(console_url_template, row.id, workspace_id)
        overview.rows.append(row)
    return overview


__all__ = [
    "BatchRow",
    "DayPoint",
    "Origin",
    "Overview",
    "PageFilter",
    "RunGroup",
    "build_overview",
    "daily_chart",
    "group_runs",
    "indexed_origins",
    "landing_costs",
    "manifest_origins",
]
