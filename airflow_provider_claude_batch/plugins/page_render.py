"""The Claude Batches page as HTML: the Jinja2 templates in ``templates/`` (shipped as package
data), the values they are given and the filters that format them.

Invariants:

* Every piece of markup is in a template; Python hands them plain values (text, numbers, the
  overview's objects). Autoescape is on for every template, so whatever comes from outside the
  code (dag, run, task and batch ids, connection ids, errors in notes, console URLs) is escaped
  where it is written, and no value is ever marked safe here.
* Undefined names fail the render (``StrictUndefined``): a misspelt field cannot silently
  print nothing.
* One environment per process (:data:`ENV`): each template is compiled once, never reloaded
  (package files do not change under a running api-server), and rendered from any of the
  handlers' threads.
* The page is self-contained: ``page.css``, ``page.js`` and the chart are inlined, so it needs
  no other request and works in Airflow's iframe behind any proxy prefix. Links to Airflow's
  views are relative to the app's mount point (:func:`task_link`) for the same reason.
* While a batch is still open the page reloads itself every ``AUTO_REFRESH_SECONDS``, like
  Airflow's own views; once every batch has ended it does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined

from airflow_provider_claude_batch.batching.api.batch_state import COUNT_KINDS, ENDED, FAILED_KINDS
from airflow_provider_claude_batch.plugins.overview import CHART_DAYS, STATUS_CHOICES, DayPoint, Overview, PageFilter
from airflow_provider_claude_batch.plugins.page_chart import chart_of
from airflow_provider_claude_batch.plugins.page_load import TaskFilter

AUTO_REFRESH_SECONDS = 30
#: The package folder of the templates (and of the style and script they inline).
TEMPLATE_FOLDER = "templates"
PAGE_TEMPLATE = "page.html.j2"
CHART_TEMPLATE = "chart.svg.j2"
#: The templates the code renders by name; the rest are reached from these.
ENTRY_TEMPLATES = (PAGE_TEMPLATE, CHART_TEMPLATE)


def duration(seconds: float | None) -> str:
    """``45 s``, ``12 min``, ``3.5 h``, ``2.0 d`` (negative with a ``-``); empty for None."""
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


def moment(iso: str | None) -> str:
    """``2026-11-07 00:03`` (UTC), for the created and ended columns; empty for None."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def usd(value: float) -> str:
    return f"${value:,.4f}"


def thousands(value: int) -> str:
    return f"{value:,}"


@dataclass(frozen=True)
class Bar:
    """% done as a bar: ``ok`` (succeeded, green) and ``failed`` (errored, expired or
    canceled, red) as widths in percent of all requests; what is left is still open.
    ``title``: the counts of every outcome."""

    ok: str
    failed: str
    title: str
    percent: str


def bar_of(counts: dict[str, int], percent: float) -> Bar:
    total = sum(counts.values()) or 1
    ok = 100.0 * counts.get("succeeded", 0) / total
    failed = 100.0 * sum(counts.get(kind, 0) for kind in FAILED_KINDS) / total
    title = ", ".join(f"{counts.get(kind, 0):,} {kind}" for kind in COUNT_KINDS)
    return Bar(f"{ok:.2f}", f"{failed:.2f}", title, f"{percent:.1f}")


@dataclass(frozen=True)
class ResultsUntil:
    """When a batch's results stop being downloadable: archived, or the UTC day and how long
    until then."""

    archived: bool
    day: str = ""
    left: str = ""


def results_until_of(iso: str | None, now: datetime) -> ResultsUntil | None:
    if not iso:
        return None
    until = datetime.fromisoformat(iso)
    if until <= now:
        return ResultsUntil(archived=True)
    return ResultsUntil(
        False, until.astimezone(timezone.utc).strftime("%Y-%m-%d"), duration((until - now).total_seconds())
    )


def task_link(dag_id: str, run_id: str, task_id: str | None = None, map_index: int = -1) -> str:
    """The run (or task instance) in Airflow's UI, relative to this app's mount point so that
    it works behind a proxy prefix too."""
    url = f"../dags/{quote(dag_id)}/runs/{quote(run_id)}"
    if task_id is not None:
        url += f"/tasks/{quote(task_id)}"
        if map_index >= 0:
            url += f"/mapped/{map_index}"
    return url


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("airflow_provider_claude_batch.plugins", TEMPLATE_FOLDER),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(duration=duration, moment=moment, usd=usd, thousands=thousands)
    env.globals.update(bar_of=bar_of, results_until_of=results_until_of, task_link=task_link)
    return env


ENV = _environment()


def render_chart(points: list[DayPoint]) -> str:
    """The 30-day chart alone, as inline SVG (see :mod:`.page_chart`)."""
    return ENV.get_template(CHART_TEMPLATE).render(chart=chart_of(points))


def _form_context(overview: Overview, limit: int, task: TaskFilter | None) -> dict[str, Any]:
    """The form's hidden fields (the task view keeps its task), the refresh link (this view
    again) and the link from the task view to all batches."""
    query: dict[str, Any] = {"conn_id": overview.conn_id, "limit": limit}
    hidden: list[tuple[str, str]] = []
    everything = None
    if task is not None:
        task_query = dict(dag_id=task.dag_id, run_id=task.run_id, task_id=task.task_id, map_index=task.map_index)
        query.update(task_query)
        hidden = [(name, str(value)) for name, value in task_query.items()]
        everything = "?" + urlencode({"conn_id": overview.conn_id, "limit": limit})
    return {"hidden": hidden, "refresh": "?" + urlencode(query), "everything": everything}


def render_page(
    overview: Overview,
    limit: int,
    task: TaskFilter | None = None,
    page_filter: PageFilter | None = None,
    connections: list[str] | None = None,
    now: datetime | None = None,
) -> str:
    """The page: the filter form, notes, the 30-day chart and the runs (the filter's), each
    with its batches beneath. ``connections``: the picker's choices (just the shown one if None)."""
    now = now or datetime.now(timezone.utc)
    page_filter = page_filter or PageFilter()
    runs = overview.runs(page_filter)
    running = any(row.processing_status != ENDED for row in overview.rows)
    return ENV.get_template(PAGE_TEMPLATE).render(
        overview=overview,
        limit=limit,
        task=task,
        page_filter=page_filter,
        connections=connections or [overview.conn_id],
        dags=sorted({row.origin.dag_id for row in overview.rows if row.origin}),
        status_choices=STATUS_CHOICES,
        refresh_seconds=AUTO_REFRESH_SECONDS if running else None,
        chart=chart_of(overview.chart(now.date(), page_filter)),
        chart_days=CHART_DAYS,
        runs=runs,
        shown=sum(len(run.batches) for run in runs),
        now=now,
        **_form_context(overview, limit, task),
    )


__all__ = [
    "AUTO_REFRESH_SECONDS",
    "ENTRY_TEMPLATES",
    "ENV",
    "TEMPLATE_FOLDER",
    "bar_of",
    "duration",
    "moment",
    "render_chart",
    "render_page",
    "results_until_of",
    "task_link",
]
