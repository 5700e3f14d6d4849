"""The "Claude Batches" page: an Airflow 3 plugin (a FastAPI app served by the api-server,
shown in the UI's navigation as an external view).

``/claude-batches/`` renders a connection's recent batches as HTML: one row per DAG run
(its logical date) with its batches beneath (requests, % done as a bar, rows reused, cost and
what reuse saved, created, ended, duration, when the results stop being downloadable; a run
whose rows were all answered from the answer store shows without batches), filters by DAG, status and date, a
picker of the claude_batch connections the user may read, and a chart of the last 30 days
(cost per day, share of requests that succeeded) drawn as inline SVG (no script, no CDN).
``/claude-batches/api/batches`` returns the same as JSON. Both need an Airflow user allowed
to read the connection, since the page calls the API with its key; which DAG run created a
batch is shown only to users who may read that DAG (the one-task view needs it too).
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.responses import HTMLResponse

from airflow_provider_claude_batch.batching.api.batch_state import COUNT_KINDS, ENDED
from airflow_provider_claude_batch.plugins.overview import (
    CHART_DAYS,
    STATUS_CHOICES,
    BatchRow,
    Costs,
    DayPoint,
    Origins,
    Overview,
    PageFilter,
    RunDates,
    RunGroup,
    build_overview,
    indexed_origins,
    manifest_origins,
)
from airflow_provider_claude_batch.plugins.run_reuse import RunKey, answered_run, answered_runs, dag_folders, runs_reuse

log = logging.getLogger(__name__)

URL_PREFIX = "/claude-batches"
DEFAULT_CONN_ID = "claude_batch_default"
DEFAULT_LIMIT = 50
AUTO_REFRESH_SECONDS = 30
#: At most this many batches are read for the 30-day chart (one ``list`` page per 1,000).
CHART_MAX_BATCHES = 3000
CONN_TYPE = "claude_batch"


def _authorized_user() -> Any:
    """A dependency: the request's Airflow user, who must be allowed to read the connection
    named by the ``conn_id`` query parameter."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails
    from airflow.api_fastapi.core_api.security import get_user

    async def check(user: Any = Depends(get_user), conn_id: str = Query(DEFAULT_CONN_ID)) -> Any:
        if not get_auth_manager().is_authorized_connection(
            method="GET", details=ConnectionDetails(conn_id=conn_id), user=user
        ):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"You may not read connection {conn_id!r}.")
        return user

    return check


def _dag_reader(user: Any) -> Callable[[str], bool]:
    """``may_read(dag_id)`` for the request's user, asking the auth manager once per request."""
    from airflow.api_fastapi.app import get_auth_manager

    readable: set[str] | None = None

    def may_read(dag_id: str) -> bool:
        nonlocal readable
        if readable is None:
            readable = set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))
        return dag_id in readable

    return may_read


def _connection_reader(user: Any) -> Callable[[str], bool]:
    """``may_read(conn_id)`` for the request's user (the picker offers only those)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

    def may_read(conn_id: str) -> bool:
        return bool(
            get_auth_manager().is_authorized_connection(
                method="GET", details=ConnectionDetails(conn_id=conn_id), user=user
            )
        )

    return may_read


def _scrubbed(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


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


def _recent_batches(hook: Any, limit: int, now: datetime) -> list[Any]:
    """The newest ``limit`` batches, and beyond them those created in the last 30 days (for
    the chart; at most ``CHART_MAX_BATCHES``). ``list`` is newest first, so it stops at the
    first older batch."""
    since = now - timedelta(days=CHART_DAYS)
    batches: list[Any] = []
    for batch in hook.iter_batches(page_size=1000 if limit > 100 else 100):
        if len(batches) >= limit and (batch.created_at < since or len(batches) >= CHART_MAX_BATCHES):
            break
        batches.append(batch)
    return batches


def run_dates_from_db(runs: Iterable[tuple[str, str]]) -> RunDates:
    """The logical date (or, for a run without one, its run_after) of each DAG run, from the
    metadata database the api-server uses."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select, tuple_

    wanted = list(set(runs))
    dates: RunDates = {}
    with create_session() as session:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = select(DagRun.dag_id, DagRun.run_id, DagRun.logical_date, DagRun.run_after).where(
                tuple_(DagRun.dag_id, DagRun.run_id).in_(chunk)
            )
            for dag_id, run_id, logical_date, run_after in session.execute(query):
                moment = logical_date or run_after
                dates[(dag_id, run_id)] = moment.isoformat() if moment else None
    return dates


def recent_runs_from_db(dag_ids: Iterable[str], since: datetime, limit: int) -> list[RunKey]:
    """The newest ``limit`` DAG runs of ``dag_ids`` due since ``since`` (by ``run_after``), from
    the metadata database: where the page looks for runs that created no batch."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    wanted = sorted(set(dag_ids))
    if not wanted:
        return []
    with create_session() as session:
        query = (
            select(DagRun.dag_id, DagRun.run_id)
            .where(DagRun.dag_id.in_(wanted), DagRun.run_after >= since)
            .order_by(DagRun.run_after.desc())
            .limit(limit)
        )
        return [(dag_id, run_id) for dag_id, run_id in session.execute(query)]


def load_overview(
    conn_id: str,
    limit: int,
    task: TaskFilter | None = None,
    may_read_dag: Callable[[str], bool] | None = None,
    *,
    run_dates: Callable[[Iterable[tuple[str, str]]], RunDates] = run_dates_from_db,
    recent_runs: Callable[[Iterable[str], datetime, int], list[RunKey]] = recent_runs_from_db,
    now: datetime | None = None,
) -> Overview:
    """The page's data; any failure (missing connection, API down, bad key, no manifest, no
    metadata database) becomes a note. The task view reads only that task's manifest, the full
    view the newest ``limit`` batches and the rest of the last 30 days, with the batch index
    entry of each. DAG runs of DAGs ``may_read_dag`` refuses stay hidden. ``run_dates`` looks
    up the logical dates of the runs shown; ``recent_runs`` the newest runs of the last 30 days
    of the DAGs in the work directory, among which runs that created no batch are found."""
    from airflow_provider_claude_batch.batching.state.manifest import load_manifest
    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
    from airflow_provider_claude_batch.workdir import run_directory, work_directory

    secret = None
    what = f"the batches of {task.describe()}" if task else f"the batches of connection {conn_id!r}"
    notes: list[str] = []
    origins: Origins = {}
    costs: Costs = {}
    answered_task = None
    now = now or datetime.now(timezone.utc)
    try:
        hook = ClaudeBatchHook(conn_id)
        settings = hook.settings
        secret = settings.api_key
        if task is None:
            batches = _recent_batches(hook, limit, now)
        else:
            folder = run_directory(None, task.dag_id, task.run_id, task.task_id, task.map_index)
            manifest = load_manifest(folder)
            origins, costs, notes = manifest_origins(manifest, folder)
            if not manifest.batch_ids():  # every row answered: the run, without a batch
                answered_task = answered_run(folder.work_dir, task.dag_id, task.run_id, manifest.conn_id)
            # Newest first, like the listing.
            batches = [hook.retrieve_batch(batch_id) for batch_id in reversed(manifest.batch_ids()[-limit:])]
    except Exception as exc:
        log.warning("Claude Batches page: reading %s failed: %s", what, type(exc).__name__)
        overview = Overview(conn_id=conn_id)
        overview.notes.append(_scrubbed(f"Could not read {what}: {type(exc).__name__}: {exc}", secret))
        return overview
    if task is None:
        try:
            origins, costs, problems = indexed_origins(work_directory(), [b.id for b in batches])
            notes.extend(problems)
        except Exception as exc:
            notes.append(f"The work directory cannot be opened ({exc}); DAG runs are not shown.")
    reuse_notes: list[str] = []
    try:
        work_dir = work_directory() if task is None else folder.work_dir
        run_reuse, reuse_notes = runs_reuse(
            work_dir, {(o.dag_id, o.run_id, o.task_id, o.map_index) for o in origins.values()}
        )
        answered = [answered_task] if answered_task is not None else []
        if task is None:
            candidates = recent_runs(dag_folders(work_dir), now - timedelta(days=CHART_DAYS), limit)
            found, problems = answered_runs(work_dir, candidates, conn_id)
            answered, reuse_notes = found, reuse_notes + problems
    except Exception as exc:
        log.warning("Claude Batches page: reuse not read: %s", type(exc).__name__)
        run_reuse, answered = {}, []
        reuse_notes.append(f"Runs that created no batch, and rows reused, are not shown ({type(exc).__name__}).")
    notes.extend(reuse_notes)
    overview = build_overview(
        conn_id,
        batches,
        origins,
        costs,
        console_url_template=settings.console_url_template,
        workspace_id=settings.workspace_id,
        may_read_dag=may_read_dag,
        now=now,
    )
    # The table shows the newest ``limit``; older batches of the last 30 days feed the chart.
    overview.rows, overview.chart_rows = overview.rows[:limit], overview.rows[limit:]
    overview.run_reuse = run_reuse
    overview.answered_runs = [run for run in answered if may_read_dag is None or may_read_dag(run.dag_id)]
    runs = {(row.origin.dag_id, row.origin.run_id) for row in overview.rows if row.origin}
    runs |= {(run.dag_id, run.run_id) for run in overview.answered_runs}
    if runs:
        try:
            overview.run_dates = run_dates(runs)
        except Exception as exc:
            log.warning("Claude Batches page: logical dates unavailable: %s", type(exc).__name__)
            notes.append(f"Logical dates are not available ({type(exc).__name__}); runs show their run id.")
    overview.notes.extend(notes)
    return overview


def _env_conn_type(value: str) -> str | None:
    """The connection type of an ``AIRFLOW_CONN_*`` value (JSON or URI), without parsing secrets."""
    if value.lstrip().startswith("{"):
        try:
            conn_type = json.loads(value).get("conn_type")
        except (ValueError, AttributeError):
            return None
        return conn_type if isinstance(conn_type, str) else None
    return urlsplit(value).scheme.replace("-", "_") or None


def claude_connections(may_read: Callable[[str], bool], current: str) -> list[str]:
    """Ids of the claude_batch connections in the metadata database and the environment that
    ``may_read`` allows, sorted, with ``current`` always among them (other secrets backends
    cannot be listed; their connections are reached by typing ``?conn_id=``)."""
    found = {
        key[len("AIRFLOW_CONN_") :].lower()
        for key, value in os.environ.items()
        if key.startswith("AIRFLOW_CONN_") and _env_conn_type(value) == CONN_TYPE
    }
    try:
        from airflow.models.connection import Connection
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            found.update(session.scalars(select(Connection.conn_id).where(Connection.conn_type == CONN_TYPE)))
    except Exception as exc:  # no metadata database here: the environment's connections still count
        log.debug("Claude Batches page: connections not listed from the database: %s", type(exc).__name__)
    return sorted({conn_id for conn_id in found if may_read(conn_id)} | {current})


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds < 120:
        return f"{sign}{seconds:.0f} s"
    if seconds < 7200:
        return f"{sign}{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{sign}{seconds / 3600:.1f} h"
    return f"{sign}{seconds / 86400:.1f} d"


def _moment(iso: str | None) -> str:
    """``2026-11-07 00:03`` (UTC), for the created and ended columns."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def _results_until(iso: str | None, now: datetime) -> str:
    if not iso:
        return ""
    until = datetime.fromisoformat(iso)
    if until <= now:
        return '<span class="muted">archived</span>'
    left = f"in {_duration((until - now).total_seconds())}"
    return f'{until.astimezone(timezone.utc).strftime("%Y-%m-%d")} <span class="muted">({left})</span>'


def _bar(counts: dict[str, int], percent: float) -> str:
    """% done as a bar: succeeded green, errored/expired/canceled red, the rest still open."""
    total = sum(counts.values()) or 1
    ok = 100.0 * counts.get("succeeded", 0) / total
    failed = 100.0 * sum(counts.get(k, 0) for k in ("errored", "expired", "canceled")) / total
    title = ", ".join(f"{counts.get(kind, 0):,} {kind}" for kind in COUNT_KINDS)
    return (
        f'<div class="bar" title="{html.escape(title)}"><span class="ok" style="width:{ok:.2f}%"></span>'
        f'<span class="failed" style="width:{failed:.2f}%"></span></div>'
        f'<span class="pct">{percent:.1f}%</span>'
    )


def _answered_bar(rows: int) -> str:
    """The bar of a run without a batch: done, every row answered from the store or deduplicated."""
    title = f"{rows:,} rows answered without a batch"
    return (
        f'<div class="bar" title="{html.escape(title)}"><span class="reused" style="width:100.00%"></span></div>'
        '<span class="pct">100.0%</span>'
    )


def _reused_cell(totals: dict[str, Any]) -> str:
    """Rows reused (from the store, or deduplicated in the run), of the run's rows; "-" when
    the run's submit did not look for answers."""
    reuse = totals["reuse"]
    if reuse is None:
        return "-"
    title = f"{reuse['reused']:,} from the answer store, {reuse['deduplicated']:,} deduplicated, {reuse['new']:,} sent"
    return f'<span title="{html.escape(title)}">{reuse["rows_reused"]:,} of {reuse["rows"]:,}</span>'


def _saved(totals: dict[str, Any]) -> str:
    saved = totals["reuse_saved_usd"]
    return "" if not saved else f' <span class="saved muted">(saved ${saved:,.4f})</span>'


def _task_link(dag_id: str, run_id: str, task_id: str | None = None, map_index: int = -1) -> str:
    # Relative to this app's mount point, so it works behind a proxy prefix too.
    url = f"../dags/{quote(dag_id)}/runs/{quote(run_id)}"
    if task_id is not None:
        url += f"/tasks/{quote(task_id)}"
        if map_index >= 0:
            url += f"/mapped/{map_index}"
    return url


def _origin_cell(row: BatchRow) -> str:
    origin = row.origin
    if origin is None:
        seen = "a DAG you may not read" if row.origin_hidden else "not in a manifest here"
        return f'<span class="muted">{seen}</span>'
    task_url = _task_link(origin.dag_id, origin.run_id, origin.task_id, origin.map_index)
    label = origin.task_id + (f" [{origin.map_index}]" if origin.map_index >= 0 else "")
    detail = f"chunk {origin.chunk}" + (f", round {origin.round}" if origin.round else "")
    return (
        f'<a href="{html.escape(task_url)}" target="_top" title="{html.escape(origin.dag_id)} / {html.escape(label)}">'
        f'{html.escape(label)}</a> <span class="muted">{html.escape(detail)}</span>'
    )


def _cost_cell(row: BatchRow) -> str:
    if row.cost_usd is not None:
        return f"${row.cost_usd:,.4f}"
    # Landed with a model missing from the price table, or not landed (yet) by a transfer.
    return '<span class="muted">unknown price</span>' if row.landed else '<span class="muted">not landed</span>'


def _status(value: str) -> str:
    return f'<span class="status {html.escape(value)}">{html.escape(value)}</span>'


def _batch_html(row: BatchRow, now: datetime, run_key: str) -> str:
    batch_id = html.escape(row.id)
    if row.console_url:
        batch_id = f'<a href="{html.escape(row.console_url)}" target="_blank" rel="noopener">{batch_id}</a>'
    return (
        f'<tr class="batch" data-batch-id="{html.escape(row.id)}" data-run="{html.escape(run_key)}">'
        f'<td class="indent"><code>{batch_id}</code></td><td>{_status(row.processing_status)}</td>'
        f'<td class="num">{row.total:,}</td><td>{_bar(row.request_counts, row.percent_done)}</td>'
        f'<td class="num"></td><td class="num">{_cost_cell(row)}</td>'
        f"<td>{_moment(row.created_at)}</td><td>{_moment(row.ended_at)}</td>"
        f"<td>{_duration(row.duration_seconds)}</td><td>{_results_until(row.results_until, now)}</td>"
        f'<td class="origin">{_origin_cell(row)}</td></tr>'
    )


def _run_html(run: RunGroup, now: datetime) -> str:
    totals = run.totals()
    run_key = f"{run.dag_id}/{run.run_id}" if run.dag_id else ""
    if run.dag_id is None or run.run_id is None:
        label = '<span class="muted">batches without a DAG run you may read</span>'
        when = ""
    else:
        when_text = _moment(run.logical_date) if run.logical_date else run.run_id
        when = (
            f'<a href="{html.escape(_task_link(run.dag_id, run.run_id))}" target="_top" '
            f'title="{html.escape(run.run_id)}">{html.escape(when_text)}</a>'
        )
        label = f"<b>{html.escape(run.dag_id)}</b> {when}"
    cost = totals["cost_usd"]
    cost_cell = (f"${cost:,.4f}" if cost is not None else '<span class="muted">incomplete</span>') + _saved(totals)
    if run.batches or run.reuse is None:
        bar = _bar(totals["request_counts"], totals["percent_done"])
        batches = f"{len(run.batches)} batch(es)"
    else:
        bar, batches = _answered_bar(run.reuse.rows), "no batch: every row answered"
    head = (
        f'<tr class="run" data-run="{html.escape(run_key)}" data-dag-id="{html.escape(run.dag_id or "")}">'
        f'<td><span class="toggle">&#9662;</span> {label} <span class="muted">{batches}</span></td>'
        f"<td>{_status(run.processing_status)}</td>"
        f'<td class="num">{totals["total"]:,}</td><td>{bar}</td>'
        f'<td class="num">{_reused_cell(totals)}</td><td class="num">{cost_cell}</td>'
        f"<td>{_moment(totals['created_at'])}</td><td>{_moment(totals['ended_at'])}</td>"
        f"<td>{_duration(totals['duration_seconds'])}</td><td>{_results_until(totals['results_until'], now)}</td>"
        f"<td></td></tr>"
    )
    return head + "".join(_batch_html(row, now, run_key) for row in run.batches)


def render_chart(points: list[DayPoint]) -> str:
    """Cost per day as bars (left scale) and the share of requests that succeeded as a line
    (right scale, 0-100%), as inline SVG. Days without ended requests have no point; the line
    joins the days that have one, so a trend shows across a quiet weekend."""
    width, height, left, right, top, bottom = 900, 220, 64, 48, 16, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(1, len(points))
    top_cost = max((p.cost_usd for p in points), default=0.0) or 1.0
    parts = [
        f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="Cost per day and share of requests that succeeded, last '
        f'{len(points)} days">'
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - fraction)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" class="grid"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">${top_cost * fraction:,.2f}</text>'
        )
        parts.append(f'<text x="{left + plot_w + 6}" y="{y + 4:.1f}" class="axis">{fraction:.0%}</text>')
    line: list[str] = []
    for i, point in enumerate(points):
        x = left + i * step
        bar_h = plot_h * point.cost_usd / top_cost
        tip = f"{point.day}: ${point.cost_usd:,.4f}, {point.batches} batch(es), {point.requests:,} requests"
        share = point.succeeded_share
        if share is not None:
            tip += f", {share:.1%} succeeded"
        if point.unpriced_batches:
            tip += f", {point.unpriced_batches} without a known cost"
        parts.append(
            f'<rect class="cost" data-day="{point.day}" x="{x + step * 0.15:.1f}" y="{top + plot_h - bar_h:.1f}" '
            f'width="{step * 0.7:.1f}" height="{bar_h:.1f}"><title>{html.escape(tip)}</title></rect>'
        )
        if share is None:  # nothing ended that day: the line goes on to the next day that has
            continue
        cx, cy = x + step / 2, top + plot_h * (1 - share)
        line.append(f"{cx:.1f},{cy:.1f}")
        parts.append(
            f'<circle class="share" cx="{cx:.1f}" cy="{cy:.1f}" r="3"><title>{html.escape(tip)}</title></circle>'
        )
    if len(line) > 1:
        parts.append(f'<polyline class="share" points="{" ".join(line)}"/>')
    for i, point in enumerate(points):
        if i % 5 == 0 or i == len(points) - 1:
            x = left + i * step + step / 2
            parts.append(
                f'<text x="{x:.1f}" y="{height - bottom + 16}" class="axis" text-anchor="middle">{point.day[5:]}</text>'
            )
    parts.append(
        f'<text x="{left}" y="{height - 4}" class="legend"><tspan class="cost-key">&#9632;</tspan> cost per day '
        f'(batches created that day, as landed) <tspan class="share-key">&#9679;</tspan> share of ended requests '
        "that succeeded</text></svg>"
    )
    return "".join(parts)


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;color:#1a202c;background:#fff}
h1{font-size:20px;margin:0 0 12px}
h2{font-size:15px;margin:16px 0 6px}
form{margin:0 0 12px;display:flex;flex-wrap:wrap;gap:8px;align-items:center;font-size:14px}
input,select{padding:4px 6px;border:1px solid #cbd5e0;border-radius:4px;background:#fff}
button{padding:4px 10px;border:1px solid #3182ce;background:#3182ce;color:#fff;border-radius:4px;cursor:pointer}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:5px 8px;border-bottom:1px solid #e2e8f0;text-align:left;white-space:nowrap}
th{background:#f7fafc;font-weight:600}
tr.run{background:#f7fafc;cursor:pointer}
tr.run td{border-top:2px solid #cbd5e0}
tr.batch.folded{display:none}
td.indent{padding-left:28px}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.status{padding:2px 8px;border-radius:10px;font-size:12px;background:#e2e8f0}
.status.ended{background:#c6f6d5;color:#22543d}
.status.in_progress{background:#bee3f8;color:#2a4365}
.status.canceling{background:#feebc8;color:#7b341e}
.bar{display:inline-flex;width:110px;height:10px;background:#e2e8f0;border-radius:5px;overflow:hidden;vertical-align:middle}
.bar .ok{background:#38a169}.bar .failed{background:#e53e3e}.bar .reused{background:#805ad5}
.pct{display:inline-block;width:48px;text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#718096}
.toggle{color:#718096;display:inline-block;width:12px}
td.origin{white-space:normal;min-width:160px}
.note{background:#fffaf0;border:1px solid #f6ad55;padding:8px 12px;border-radius:4px;margin:0 0 12px;font-size:14px}
svg .grid{stroke:#e2e8f0}svg .axis,svg .legend{font-size:11px;fill:#4a5568}
svg rect.cost{fill:#90cdf4}svg polyline.share{fill:none;stroke:#2f855a;stroke-width:2}
svg circle.share{fill:#2f855a}svg .cost-key{fill:#90cdf4}svg .share-key{fill:#2f855a}
"""

#: Clicking a run folds or unfolds its batches (the page works without it: all unfolded).
_SCRIPT = """
document.querySelectorAll('tr.run').forEach(function(run){run.addEventListener('click',function(e){
if(e.target.closest('a'))return;var key=run.dataset.run;
document.querySelectorAll('tr.batch').forEach(function(b){if(b.dataset.run===key)b.classList.toggle('folded');});
});});
"""


def _options(values: Iterable[str], selected: str | None, blank: str | None = None) -> str:
    options = [f'<option value="">{html.escape(blank)}</option>'] if blank is not None else []
    for value in values:
        chosen = " selected" if value == selected else ""
        options.append(f'<option value="{html.escape(value)}"{chosen}>{html.escape(value)}</option>')
    return "".join(options)


def render_page(
    overview: Overview,
    limit: int,
    task: TaskFilter | None = None,
    page_filter: PageFilter | None = None,
    connections: list[str] | None = None,
    now: datetime | None = None,
) -> str:
    now = now or datetime.now(timezone.utc)
    page_filter = page_filter or PageFilter()
    runs = overview.runs(page_filter)
    body = "".join(_run_html(run, now) for run in runs) or (
        '<tr><td colspan="11" class="muted">No batches match.</td></tr>'
    )
    notes = "".join(f'<div class="note">{html.escape(note)}</div>' for note in overview.notes)
    query: dict[str, Any] = {"conn_id": overview.conn_id, "limit": limit}
    scope = f"connection {html.escape(overview.conn_id)}"
    hidden = ""
    if task is not None:
        task_query = dict(dag_id=task.dag_id, run_id=task.run_id, task_id=task.task_id, map_index=task.map_index)
        query.update(task_query)
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(str(v))}">' for k, v in task_query.items()
        )
        everything = html.escape("?" + urlencode({"conn_id": overview.conn_id, "limit": limit}))
        scope = f'{html.escape(task.describe())} (<a href="{everything}">all batches</a>)'
    refresh = "?" + urlencode(query)
    # While a batch is still running the page reloads itself, like Airflow's own views.
    running = any(row.processing_status != ENDED for row in overview.rows)
    refresh_tag = f'<meta http-equiv="refresh" content="{AUTO_REFRESH_SECONDS}">' if running else ""
    dags = sorted({row.origin.dag_id for row in overview.rows if row.origin})
    dag_select = (
        f'<label>DAG <select name="dag_id">{_options(dags, page_filter.dag_id, "all")}</select></label>'
        if task is None
        else ""
    )
    chart = render_chart(overview.chart(now.date(), page_filter))
    shown = sum(len(run.batches) for run in runs)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Claude Batches</title>{refresh_tag}<style>{_STYLE}</style></head>
<body>
<h1>Claude Batches</h1>
<form method="get" id="filters">{hidden}
  <label>Connection <select name="conn_id">{_options(connections or [overview.conn_id], overview.conn_id)}</select></label>
  {dag_select}
  <label>Status <select name="status">{_options(STATUS_CHOICES, page_filter.status, "any")}</select></label>
  <label>Logical date from <input name="since" type="date" value="{page_filter.since or ""}"></label>
  <label>to <input name="until" type="date" value="{page_filter.until or ""}"></label>
  <label>Latest <input name="limit" type="number" min="1" max="1000" value="{limit}" style="width:70px"></label>
  <button type="submit">Show</button>
  <a href="{html.escape(refresh)}">Refresh</a>
</form>
{notes}
<h2>Last {CHART_DAYS} days</h2>
{chart}
<h2>Runs <span class="muted">{len(runs)} run(s), {shown} of the newest {len(overview.rows)} batch(es) of {scope}</span></h2>
<table id="runs">
<thead><tr><th>DAG run (logical date) / batch</th><th>status</th><th class="num">requests</th><th>done</th>
<th class="num">rows reused</th><th class="num">cost</th><th>created (UTC)</th><th>ended (UTC)</th><th>duration</th>
<th>results until</th><th>created by</th></tr></thead>
<tbody>{body}</tbody>
</table>
<script>{_SCRIPT}</script>
</body></html>"""


def _task_filter(
    dag_id: str | None = None, run_id: str | None = None, task_id: str | None = None, map_index: int = -1
) -> TaskFilter | None:
    """``?dag_id=&run_id=&task_id=[&map_index=]``: one submit task's batches (all three needed)."""
    if not (dag_id and run_id and task_id):
        return None
    if {dag_id, run_id, task_id} & {".", ".."}:  # never a path step out of the work directory
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "dag_id, run_id and task_id must be names, not '.' or '..'")
    return TaskFilter(dag_id, run_id, task_id, map_index)


def _page_filter(
    dag_id: str | None = None,
    run_id: str | None = None,
    task_id: str | None = None,
    status_: str | None = Query(None, alias="status"),
    since: str | None = None,
    until: str | None = None,
) -> PageFilter:
    """``?dag_id=`` alone (without ``run_id`` and ``task_id``, the one-task view) narrows to a
    DAG; ``?status=`` to a processing status or ``failed``; ``?since=&until=`` (YYYY-MM-DD) to
    logical dates. Empty values (the form's "all") mean no filter."""
    try:
        return PageFilter(
            dag_id=dag_id if dag_id and not (run_id and task_id) else None,
            status=status_ or None,
            since=date.fromisoformat(since) if since else None,
            until=date.fromisoformat(until) if until else None,
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None


def create_app() -> FastAPI:
    app = FastAPI(title="Claude Batches", description="Recent Message Batches of a Claude connection.")
    authorized = _authorized_user()
    limit_query = Query(DEFAULT_LIMIT, ge=1, le=1000)

    # Sync handlers: FastAPI runs them in a thread pool, so the blocking API calls never
    # stall the api-server's event loop.
    def visible_overview(user: Any, conn_id: str, limit: int, task: TaskFilter | None) -> Overview:
        may_read_dag = _dag_reader(user)
        if task is not None and not may_read_dag(task.dag_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"You may not read DAG {task.dag_id!r}.")
        return load_overview(conn_id, limit, task, may_read_dag)

    @app.get("/", response_class=HTMLResponse)
    def page(
        user: Any = Depends(authorized),
        conn_id: str = DEFAULT_CONN_ID,
        limit: int = limit_query,
        task: TaskFilter | None = Depends(_task_filter),
        page_filter: PageFilter = Depends(_page_filter),
    ) -> str:
        overview = visible_overview(user, conn_id, limit, task)
        connections = claude_connections(_connection_reader(user), conn_id)
        return render_page(overview, limit, task, page_filter, connections)

    @app.get("/api/batches")
    def batches(
        user: Any = Depends(authorized),
        conn_id: str = DEFAULT_CONN_ID,
        limit: int = limit_query,
        task: TaskFilter | None = Depends(_task_filter),
        page_filter: PageFilter = Depends(_page_filter),
    ) -> dict[str, Any]:
        """Every batch read (``rows``, newest ``limit``), the filtered ``runs``, the 30-day
        ``chart`` and the ``connections`` the user may pick."""
        overview = visible_overview(user, conn_id, limit, task)
        return {
            **overview.as_dict(page_filter),
            "connections": claude_connections(_connection_reader(user), conn_id),
        }

    return app


class ClaudeBatchesPlugin(AirflowPlugin):
    """Adds "Claude Batches" to the UI's Browse menu."""

    name = "claude_batches"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Claude Batches"}]
    external_views = [
        {
            "name": "Claude Batches",
            "href": URL_PREFIX.lstrip("/") + "/",
            "url_route": "claude-batches",
            "destination": "nav",
            "category": "browse",
        }
    ]
