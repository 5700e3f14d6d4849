"""The "Claude Batches" page: an Airflow 3 plugin (a FastAPI app served by the api-server,
shown in the UI's Browse menu as an external view). This module holds the routes, their query
parameters and access checks, and the plugin class (the ``airflow.plugins`` entry point).

``/claude-batches/`` renders a connection's recent batches as HTML: one row per DAG run (its
logical date and its state: landed, failed, not landed or running) with its batches beneath
(rows, requests sent, % done as a bar, rows reused or awaited, what it billed and what reuse
saved, created, ended and duration, when the results stop being downloadable; a run whose
rows were all answered without a batch of its own shows without batches), filters by DAG,
status and date, a picker of the claude_batch connections the user may read, and a chart of
the last 30 days (cost billed per day, share of requests that succeeded) drawn as inline SVG
(no script, no CDN). ``/claude-batches/api/batches`` returns the same as JSON.

Where the rest lives: :mod:`.page_load` reads what a view shows, :mod:`.page_queries` what
Airflow's metadata database and auth manager say, :mod:`.page_render` and ``templates/`` make
the HTML, :mod:`.overview`, :mod:`.run_reuse`, :mod:`.run_state` and :mod:`.batch_costs` shape
the data.

Invariants:

* Both routes need an Airflow user allowed to read the connection (the page calls the API
  with its key): 403 otherwise, before anything is read.
* Which DAG run created a batch is shown only to users who may read that DAG; the one-task
  view of a DAG the user may not read is a 403.
* ``dag_id``, ``run_id`` and ``task_id`` name folders of the work directory: ``.`` and ``..``
  are refused (400), so a query never steps out of it. A bad status or date is a 400 too.
* The handlers are sync: FastAPI runs them in a thread pool, so the blocking API, storage and
  database calls never stall the api-server's event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from airflow.providers.common.compat.sdk import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.responses import HTMLResponse

from airflow_provider_claude_batch.compat import PLUGIN_MENU_ENTRY, request_user_dependency, warn_degraded
from airflow_provider_claude_batch.plugins.overview import Overview, PageFilter
from airflow_provider_claude_batch.plugins.page_load import TaskFilter, load_overview
from airflow_provider_claude_batch.plugins.page_queries import claude_connections, connection_reader, dag_reader
from airflow_provider_claude_batch.plugins.page_render import render_page

URL_PREFIX = "/claude-batches"
DEFAULT_CONN_ID = "claude_batch_default"
DEFAULT_LIMIT = 50


def _authorized_user() -> Callable[..., Any]:
    """A dependency: the request's Airflow user, who must be allowed to read the connection
    named by the ``conn_id`` query parameter."""
    get_user = request_user_dependency()

    async def check(user: Any = Depends(get_user), conn_id: str = Query(DEFAULT_CONN_ID)) -> Any:
        if not connection_reader(user)(conn_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"You may not read connection {conn_id!r}.")
        return user

    return check


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


def _visible_overview(user: Any, conn_id: str, limit: int, task: TaskFilter | None) -> Overview:
    """What ``user`` may see of the view: DAG runs of DAGs they may not read are hidden, and
    the one-task view of such a DAG is refused."""
    may_read_dag = dag_reader(user)
    if task is not None and not may_read_dag(task.dag_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"You may not read DAG {task.dag_id!r}.")
    return load_overview(conn_id, limit, task, may_read_dag)


def create_app() -> FastAPI:
    app = FastAPI(title="Claude Batches", description="Recent Message Batches of a Claude connection.")
    authorized = _authorized_user()
    limit_query = Query(DEFAULT_LIMIT, ge=1, le=1000)

    @app.get("/", response_class=HTMLResponse)
    def page(
        user: Any = Depends(authorized),
        conn_id: str = DEFAULT_CONN_ID,
        limit: int = limit_query,
        task: TaskFilter | None = Depends(_task_filter),
        page_filter: PageFilter = Depends(_page_filter),
    ) -> str:
        overview = _visible_overview(user, conn_id, limit, task)
        connections = claude_connections(connection_reader(user), conn_id)
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
        overview = _visible_overview(user, conn_id, limit, task)
        return {
            **overview.as_dict(page_filter),
            "connections": claude_connections(connection_reader(user), conn_id),
        }

    return app


def _menu_entries() -> list[dict[str, str]]:
    """The Browse menu's "Claude Batches" entry (``external_views``, read from Airflow 3.1). On
    3.0 the page is served all the same, without the entry: said once, as a warning."""
    if not PLUGIN_MENU_ENTRY:
        warn_degraded(
            "plugin menu entries (external_views, Airflow 3.1+)",
            f"the Claude Batches page has no entry in the Browse menu; open {URL_PREFIX}/ on the api-server",
        )
    return [
        {
            "name": "Claude Batches",
            "href": URL_PREFIX.lstrip("/") + "/",
            "url_route": "claude-batches",
            "destination": "nav",
            "category": "browse",
        }
    ]


class ClaudeBatchesPlugin(AirflowPlugin):
    """Adds "Claude Batches" to the UI's Browse menu."""

    name = "claude_batches"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Claude Batches"}]
    external_views = _menu_entries()


#: ``load_overview`` stays importable from here, where it lived before the page was split.
__all__ = ["DEFAULT_CONN_ID", "URL_PREFIX", "ClaudeBatchesPlugin", "create_app", "load_overview"]
