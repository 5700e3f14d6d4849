"""The "Claude Batches" page: an Airflow 3 plugin (a FastAPI app served by the api-server,
shown in the UI's navigation as an external view).

``/claude-batches/`` renders a connection's recent batches as HTML (status, request counts,
age, expiry, cost once landed, and the DAG run and task that created each batch);
``/claude-batches/api/batches`` returns the same as JSON. Both need an Airflow user allowed
to read the connection, since the page calls the API with its key; which DAG run created a
batch is shown only to users who may read that DAG (the one-task view needs it too).
"""

from __future__ import annotations

import html
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.responses import HTMLResponse

from airflow_provider_claude_batch.batching.progress import COUNT_KINDS
from airflow_provider_claude_batch.plugins.overview import (
    BatchRow,
    Costs,
    Origins,
    Overview,
    build_overview,
    indexed_origins,
    manifest_origins,
)

log = logging.getLogger(__name__)

URL_PREFIX = "/claude-batches"
DEFAULT_CONN_ID = "claude_batch_default"
DEFAULT_LIMIT = 50
AUTO_REFRESH_SECONDS = 30


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


def load_overview(
    conn_id: str, limit: int, task: TaskFilter | None = None, may_read_dag: Callable[[str], bool] | None = None
) -> Overview:
    """The page's data; any failure (missing connection, API down, bad key, no manifest)
    becomes a note. The task view reads only that task's manifest, the full view the batch
    index entry of each batch shown. DAG runs of DAGs ``may_read_dag`` refuses stay hidden."""
    from airflow_provider_claude_batch.batching.manifest import load_manifest
    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
    from airflow_provider_claude_batch.workdir import as_storage_path, default_work_dir, run_directory

    secret = None
    what = f"the batches of {task.describe()}" if task else f"the batches of connection {conn_id!r}"
    notes: list[str] = []
    origins: Origins = {}
    costs: Costs = {}
    try:
        hook = ClaudeBatchHook(conn_id)
        settings = hook.settings
        secret = settings.api_key
        if task is None:
            batches = list(itertools.islice(hook.iter_batches(page_size=min(limit, 1000)), limit))
        else:
            folder = run_directory(None, task.dag_id, task.run_id, task.task_id, task.map_index)
            manifest = load_manifest(folder)
            manifest_origins(manifest, folder, origins, costs, notes)
            # Newest first, like the listing.
            batches = [hook.retrieve_batch(batch_id) for batch_id in reversed(manifest.batch_ids()[-limit:])]
    except Exception as exc:
        log.warning("Claude Batches page: reading %s failed: %s", what, type(exc).__name__)
        overview = Overview(conn_id=conn_id)
        overview.notes.append(_scrubbed(f"Could not read {what}: {type(exc).__name__}: {exc}", secret))
        return overview
    if task is None:
        try:
            origins, costs = indexed_origins(as_storage_path(default_work_dir()), [b.id for b in batches], notes)
        except Exception as exc:
            notes.append(f"The work directory cannot be opened ({exc}); DAG runs are not shown.")
    overview = build_overview(
        conn_id,
        batches,
        origins,
        costs,
        console_url_template=settings.console_url_template,
        workspace_id=settings.workspace_id,
        may_read_dag=may_read_dag,
    )
    overview.notes.extend(notes)
    return overview


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


def _expiry(row: BatchRow) -> str:
    if row.processing_status == "ended" or row.expires_in_seconds is None:
        return ""
    if row.expires_in_seconds <= 0:
        return "expired"
    return f"in {_duration(row.expires_in_seconds)}"


def _origin_cell(row: BatchRow) -> str:
    origin = row.origin
    if origin is None:
        seen = "a DAG you may not read" if row.origin_hidden else "not in a manifest here"
        return f'<span class="muted">{seen}</span>'
    # Relative to this app's mount point, so it works behind a proxy prefix too.
    task_url = f"../dags/{quote(origin.dag_id)}/runs/{quote(origin.run_id)}/tasks/{quote(origin.task_id)}"
    if origin.map_index >= 0:
        task_url += f"/mapped/{origin.map_index}"
    label = f"{origin.dag_id} / {origin.task_id}" + (f" [{origin.map_index}]" if origin.map_index >= 0 else "")
    detail = f"{origin.run_id}, chunk {origin.chunk}" + (f", round {origin.round}" if origin.round else "")
    return (
        f'<a href="{html.escape(task_url)}" target="_top">{html.escape(label)}</a>'
        f'<br><span class="muted">{html.escape(detail)}</span>'
    )


def _cost_cell(row: BatchRow) -> str:
    if row.cost_usd is not None:
        return f"${row.cost_usd:,.4f}"
    # Landed with a model missing from the price table, or not landed (yet) by a transfer.
    return '<span class="muted">unknown price</span>' if row.landed else '<span class="muted">not landed</span>'


def _row_html(row: BatchRow) -> str:
    counts = "".join(f'<td class="num">{row.request_counts.get(kind, 0):,}</td>' for kind in COUNT_KINDS)
    batch_id = html.escape(row.id)
    if row.console_url:
        batch_id = f'<a href="{html.escape(row.console_url)}" target="_blank" rel="noopener">{batch_id}</a>'
    return (
        f'<tr data-batch-id="{html.escape(row.id)}">'
        f"<td><code>{batch_id}</code></td>"
        f'<td><span class="status {html.escape(row.processing_status)}">{html.escape(row.processing_status)}</span></td>'
        f'<td class="num">{row.total:,}</td>{counts}'
        f'<td class="num">{row.percent_done:.1f}%</td>'
        f"<td>{_duration(row.age_seconds)}</td><td>{_expiry(row)}</td>"
        f'<td class="num">{_cost_cell(row)}</td><td class="origin">{_origin_cell(row)}</td></tr>'
    )


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;color:#1a202c;background:#fff}
h1{font-size:20px;margin:0 0 12px}
form{margin:0 0 12px;display:flex;gap:8px;align-items:center;font-size:14px}
input{padding:4px 6px;border:1px solid #cbd5e0;border-radius:4px}
button{padding:4px 10px;border:1px solid #3182ce;background:#3182ce;color:#fff;border-radius:4px;cursor:pointer}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:6px 8px;border-bottom:1px solid #e2e8f0;text-align:left;white-space:nowrap}
th{background:#f7fafc;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.status{padding:2px 8px;border-radius:10px;font-size:12px;background:#e2e8f0}
.status.ended{background:#c6f6d5;color:#22543d}
.status.in_progress{background:#bee3f8;color:#2a4365}
.status.canceling{background:#feebc8;color:#7b341e}
.muted{color:#718096}
td.origin{white-space:normal;min-width:220px}
.note{background:#fffaf0;border:1px solid #f6ad55;padding:8px 12px;border-radius:4px;margin:0 0 12px;font-size:14px}
"""


def render_page(overview: Overview, limit: int, task: TaskFilter | None = None) -> str:
    head = "".join(f'<th class="num">{kind}</th>' for kind in COUNT_KINDS)
    rows = "".join(_row_html(row) for row in overview.rows) or (
        f'<tr><td colspan="{8 + len(COUNT_KINDS)}" class="muted">No batches.</td></tr>'
    )
    notes = "".join(f'<div class="note">{html.escape(note)}</div>' for note in overview.notes)
    query = {"conn_id": overview.conn_id, "limit": limit}
    scope = html.escape(f"connection {overview.conn_id}")
    if task is not None:
        query.update(dag_id=task.dag_id, run_id=task.run_id, task_id=task.task_id, map_index=task.map_index)
        everything = html.escape("?" + urlencode({"conn_id": overview.conn_id, "limit": limit}))
        scope = f'{html.escape(task.describe())} (<a href="{everything}">all batches</a>)'
    refresh = "?" + urlencode(query)
    # While a batch is still running the page reloads itself, like Airflow's own views.
    running = any(row.processing_status != "ended" for row in overview.rows)
    refresh_tag = f'<meta http-equiv="refresh" content="{AUTO_REFRESH_SECONDS}">' if running else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Claude Batches</title>{refresh_tag}<style>{_STYLE}</style></head>
<body>
<h1>Claude Batches</h1>
<form method="get">
  <label>Connection <input name="conn_id" value="{html.escape(overview.conn_id)}"></label>
  <label>Latest <input name="limit" type="number" min="1" max="1000" value="{limit}" style="width:70px"></label>
  <button type="submit">Show</button>
  <a href="{html.escape(refresh)}">Refresh</a>
  <span class="muted">{len(overview.rows)} batch(es) of {scope}, newest first</span>
</form>
{notes}
<table id="batches">
<thead><tr><th>batch</th><th>status</th><th class="num">requests</th>{head}<th class="num">done</th>
<th>age</th><th>expires</th><th class="num">cost</th><th>created by</th></tr></thead>
<tbody>{rows}</tbody>
</table>
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
    ) -> str:
        return render_page(visible_overview(user, conn_id, limit, task), limit, task)

    @app.get("/api/batches")
    def batches(
        user: Any = Depends(authorized),
        conn_id: str = DEFAULT_CONN_ID,
        limit: int = limit_query,
        task: TaskFilter | None = Depends(_task_filter),
    ) -> dict[str, Any]:
        return visible_overview(user, conn_id, limit, task).as_dict()

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
