"""Loading what one view of the Claude Batches page shows (an :class:`Overview`), in named steps:

1. ``_list_batches`` / ``_task_batches``: the batches. The full view reads the newest
   ``limit`` from the API's ``list`` and, beyond them, those created in the last 30 days (for
   the chart); the one-task view (:class:`TaskFilter`) reads the batches that task's manifest
   records, and the costs of its landing summary.
2. ``_index_origins`` (full view): which task created each batch and what it cost, from the
   batch index and the landing summaries in the work directory; then ``_billed``: what the
   ended batches that did not land billed, from their raw results (:mod:`.batch_costs`).
3. ``_run_folders``: what the run folders say per DAG run (rows, requests sent, reuse,
   landings), and the recent runs that created no batch (found among the metadata database's
   runs of the DAGs in the work directory).
4. ``_table_and_chart``: the rows, newest ``limit`` for the table and the older rest for the
   chart, with the DAG runs of DAGs the viewer may not read hidden.
5. ``_logical_dates`` and ``_run_states``: the logical dates of the runs shown, and their
   states and those of the provider's task instances in them, from the metadata database.

Invariants: loading never raises for a broken source, and writes nothing. When step 1 fails
(no such connection, the API down, a wrong key, no manifest) the overview is empty with one
note, and the API key never appears in it (an SDK error may quote request details). Steps 2,
3 and 5 fail on their own: the batches still show, with a note saying what is missing. The
metadata database is reached only through the ``run_dates``, ``run_states`` and
``recent_runs`` callables (by default :mod:`~airflow_provider_claude_batch.plugins.page_queries`),
so the steps run where no database is configured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_claude_batch.batching.api.batch_state import ENDED, BatchState
from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.config import price_table
from airflow_provider_claude_batch.plugins.batch_costs import raw_costs
from airflow_provider_claude_batch.plugins.overview import (
    CHART_DAYS,
    Costs,
    Origins,
    Overview,
    RunDates,
    build_overview,
    indexed_origins,
    manifest_origins,
)
from airflow_provider_claude_batch.plugins.page_queries import (
    recent_runs_from_db,
    run_dates_from_db,
    run_states_from_db,
)
from airflow_provider_claude_batch.plugins.run_reuse import (
    AnsweredRun,
    RunKey,
    RunWork,
    answered_run,
    answered_runs,
    dag_folders,
    runs_work,
)
from airflow_provider_claude_batch.plugins.run_state import RunStates

log = logging.getLogger(__name__)

#: At most this many batches are read for the 30-day chart (one ``list`` page per 1,000).
CHART_MAX_BATCHES = 3000

RunDatesLookup = Callable[[Iterable[RunKey]], RunDates]
RunStatesLookup = Callable[[Iterable[RunKey]], RunStates]
RecentRunsLookup = Callable[[Iterable[str], datetime, int], list[RunKey]]


@dataclass(frozen=True)
class TaskFilter:
    """Show only the batches of one submit task instance (from its manifest)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    def describe(self) -> str:
        return f"{self.dag_id} / {self.run_id} / {self.task_id}" + (
            f" [{self.map_index}]" if self.map_index >= 0 else ""
        )


@dataclass
class _Listing:
    """What step 1 read: the batches (newest first) and, for the task view, their origins and
    costs, its run folder and the run itself when it created no batch."""

    batches: list[Any]
    origins: Origins = field(default_factory=dict)
    costs: Costs = field(default_factory=dict)
    #: What ended batches that did not land billed, from their raw results.
    billed: Costs = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    run_dir: RunDir | None = None
    answered_task: AnsweredRun | None = None


def load_overview(
    conn_id: str,
    limit: int,
    task: TaskFilter | None = None,
    may_read_dag: Callable[[str], bool] | None = None,
    *,
    run_dates: RunDatesLookup = run_dates_from_db,
    recent_runs: RecentRunsLookup = recent_runs_from_db,
    now: datetime | None = None,
    run_states: RunStatesLookup = run_states_from_db,
    prices: Callable[[], PriceTable] = price_table,
) -> Overview:
    """The page's data; any failure becomes a note (see the module's steps). DAG runs of DAGs
    ``may_read_dag`` refuses stay hidden. ``run_dates`` looks up the logical dates of the runs
    shown, ``run_states`` their states; ``recent_runs`` the newest runs of the last 30 days of
    the DAGs in the work directory, among which runs that created no batch are found.
    ``prices``: the price table raw results are priced at (called only when there are some)."""
    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

    now = now or datetime.now(timezone.utc)
    what = f"the batches of {task.describe()}" if task else f"the batches of connection {conn_id!r}"
    try:
        hook = ClaudeBatchHook(conn_id)
        settings = hook.settings
    except Exception as exc:
        return _unreadable(conn_id, what, exc, secret=None)
    try:
        listing = _list_batches(hook, limit, now) if task is None else _task_batches(hook, task, conn_id, limit)
    except Exception as exc:
        return _unreadable(conn_id, what, exc, secret=settings.api_key)
    notes = listing.notes
    if task is None:
        notes.extend(_index_origins(listing))
    notes.extend(_billed(listing, prices))
    run_work, answered, folder_notes = _run_folders(listing, task, conn_id, limit, now, recent_runs)
    notes.extend(folder_notes)
    overview = _table_and_chart(conn_id, listing, settings, limit, may_read_dag, now)
    overview.run_work = run_work
    overview.answered_runs = [run for run in answered if may_read_dag is None or may_read_dag(run.dag_id)]
    notes.extend(_logical_dates(overview, run_dates))
    notes.extend(_run_states(overview, run_states))
    overview.notes.extend(notes)
    return overview


def _unreadable(conn_id: str, what: str, exc: Exception, secret: str | None) -> Overview:
    """The empty overview of a view whose batches could not be read, its note scrubbed of the key."""
    log.warning("Claude Batches page: reading %s failed: %s", what, type(exc).__name__)
    overview = Overview(conn_id=conn_id)
    overview.notes.append(_scrubbed(f"Could not read {what}: {type(exc).__name__}: {exc}", secret))
    return overview


def _scrubbed(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _list_batches(hook: Any, limit: int, now: datetime) -> _Listing:
    """Step 1 of the full view: the newest ``limit`` batches, and beyond them those created in
    the last 30 days (for the chart; at most ``CHART_MAX_BATCHES``). ``list`` is newest first,
    so it stops at the first older batch."""
    since = now - timedelta(days=CHART_DAYS)
    batches: list[Any] = []
    for batch in hook.iter_batches(page_size=1000 if limit > 100 else 100):
        if len(batches) >= limit and (batch.created_at < since or len(batches) >= CHART_MAX_BATCHES):
            break
        batches.append(batch)
    return _Listing(batches)


def _task_batches(hook: Any, task: TaskFilter, conn_id: str, limit: int) -> _Listing:
    """Step 1 of the one-task view: the newest ``limit`` batches its manifest records (newest
    first, like the listing), their origins and costs; when it recorded none (every row was
    answered), the run itself, shown without a batch."""
    from airflow_provider_claude_batch.batching.state.manifest import load_manifest
    from airflow_provider_claude_batch.workdir import run_directory

    folder = run_directory(None, task.dag_id, task.run_id, task.task_id, task.map_index)
    manifest = load_manifest(folder)
    origins, costs, notes = manifest_origins(manifest, folder)
    listing = _Listing([], origins, costs, notes=notes, run_dir=folder)
    if not manifest.batch_ids():
        listing.answered_task = answered_run(folder.work_dir, task.dag_id, task.run_id, manifest.conn_id)
    listing.batches = [hook.retrieve_batch(batch_id) for batch_id in reversed(manifest.batch_ids()[-limit:])]
    return listing


def _index_origins(listing: _Listing) -> list[str]:
    """Step 2 (full view): the listed batches' origins and costs from the work directory's
    batch index and landing summaries; notes on what could not be read."""
    from airflow_provider_claude_batch.workdir import work_directory

    try:
        listing.origins, listing.costs, problems = indexed_origins(work_directory(), [b.id for b in listing.batches])
    except Exception as exc:
        return [f"The work directory cannot be opened ({exc}); DAG runs are not shown."]
    return problems


def _billed(listing: _Listing, prices: Callable[[], PriceTable]) -> list[str]:
    """Step 2, then: what the ended batches that did not land billed, from the raw results in
    their run folders; notes on what could not be priced."""
    from airflow_provider_claude_batch.workdir import work_directory

    unlanded = [
        b.id
        for b in listing.batches
        if b.id not in listing.costs and b.id in listing.origins and BatchState.from_batch(b).processing_status == ENDED
    ]
    if not unlanded:
        return []
    try:
        work_dir = work_directory() if listing.run_dir is None else listing.run_dir.work_dir
        listing.billed, problems = raw_costs(work_dir, listing.origins, unlanded, prices)
    except Exception as exc:
        log.warning("Claude Batches page: raw results not priced: %s", type(exc).__name__)
        return [f"What batches that did not land billed is not shown ({type(exc).__name__})."]
    return problems


def _run_folders(
    listing: _Listing,
    task: TaskFilter | None,
    conn_id: str,
    limit: int,
    now: datetime,
    recent_runs: RecentRunsLookup,
) -> tuple[dict[RunKey, RunWork], list[AnsweredRun], list[str]]:
    """Step 3: what the run folders of the runs that created the batches say (rows, requests
    sent, reuse, landings), and the runs that created no batch (the task view's own run; in the
    full view, among the recent runs of the work directory's DAGs), with notes. Any failure
    leaves both empty, with a note."""
    from airflow_provider_claude_batch.workdir import work_directory

    notes: list[str] = []
    try:
        work_dir = work_directory() if listing.run_dir is None else listing.run_dir.work_dir
        task_folders = {(o.dag_id, o.run_id, o.task_id, o.map_index) for o in listing.origins.values()}
        run_work, problems = runs_work(work_dir, task_folders)
        notes.extend(problems)
        answered = [listing.answered_task] if listing.answered_task is not None else []
        if task is None:
            candidates = recent_runs(dag_folders(work_dir), now - timedelta(days=CHART_DAYS), limit)
            answered, problems = answered_runs(work_dir, candidates, conn_id)
            notes.extend(problems)
    except Exception as exc:
        log.warning("Claude Batches page: run folders not read: %s", type(exc).__name__)
        notes.append(
            f"Runs that created no batch, rows, rows reused and landings are not shown ({type(exc).__name__})."
        )
        return {}, [], notes
    return run_work, answered, notes


def _table_and_chart(
    conn_id: str,
    listing: _Listing,
    settings: Any,
    limit: int,
    may_read_dag: Callable[[str], bool] | None,
    now: datetime,
) -> Overview:
    """Step 4: the rows with origin, cost and console link. The table shows the newest
    ``limit``; older batches of the last 30 days feed the chart only."""
    overview = build_overview(
        conn_id,
        listing.batches,
        listing.origins,
        listing.costs,
        console_url_template=settings.console_url_template,
        workspace_id=settings.workspace_id,
        may_read_dag=may_read_dag,
        now=now,
        billed=listing.billed,
    )
    overview.rows, overview.chart_rows = overview.rows[:limit], overview.rows[limit:]
    return overview


def _runs_shown(overview: Overview) -> set[RunKey]:
    """The runs of the table's rows and the runs without a batch."""
    runs = {(row.origin.dag_id, row.origin.run_id) for row in overview.rows if row.origin}
    return runs | {(run.dag_id, run.run_id) for run in overview.answered_runs}


def _run_states(overview: Overview, run_states: RunStatesLookup) -> list[str]:
    """Step 5: the states of the runs shown and of the provider's tasks in them, or a note:
    the runs are then judged by their batches and landings only."""
    runs = _runs_shown(overview)
    if not runs:
        return []
    try:
        overview.run_states = run_states(runs)
    except Exception as exc:
        log.warning("Claude Batches page: run states unavailable: %s", type(exc).__name__)
        return [f"DAG run states are not available ({type(exc).__name__}); runs are judged by their landing only."]
    return []


def _logical_dates(overview: Overview, run_dates: RunDatesLookup) -> list[str]:
    """Step 5: the logical dates of the runs shown (those of the table's rows and the runs
    without a batch), or a note: the runs then show their run id."""
    runs = _runs_shown(overview)
    if not runs:
        return []
    try:
        overview.run_dates = run_dates(runs)
    except Exception as exc:
        log.warning("Claude Batches page: logical dates unavailable: %s", type(exc).__name__)
        return [f"Logical dates are not available ({type(exc).__name__}); runs show their run id."]
    return []


__all__ = ["CHART_MAX_BATCHES", "TaskFilter", "load_overview"]
