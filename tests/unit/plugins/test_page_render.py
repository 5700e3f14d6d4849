"""The Claude Batches page's HTML from its Jinja2 templates: what reaches it from outside the
code is escaped, the templates and their style and script ship with the package, and the
cells read as before (durations, UTC moments, links into Airflow's UI, the chart's SVG)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from xml.etree import ElementTree

from jinja2 import meta

import airflow_provider_claude_batch
from airflow_provider_claude_batch.plugins import page_render
from airflow_provider_claude_batch.plugins.overview import DayPoint, Overview
from airflow_provider_claude_batch.plugins.page_load import TaskFilter, load_overview
from airflow_provider_claude_batch.plugins.page_render import (
    ENTRY_TEMPLATES,
    ENV,
    TEMPLATE_FOLDER,
    duration,
    moment,
    render_chart,
    render_page,
    results_until_of,
    task_link,
)
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.unit.plugins.conftest import create_batches, write_manifest

PACKAGE = Path(airflow_provider_claude_batch.__file__).parent
TEMPLATES = Path(page_render.__file__).parent / TEMPLATE_FOLDER
PYPROJECT = PACKAGE.parent / "pyproject.toml"
NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)


def test_page_escapes_what_it_shows(emulator: RunningEmulator, work_dir: Path) -> None:
    (batch_id,) = create_batches(1)
    write_manifest(work_dir, "dag<script>", "run", [batch_id])
    page = render_page(load_overview("claude_batch_default", 10), 10)
    assert "dag<script>" not in page and "dag&lt;script&gt;" in page


def test_errors_run_ids_and_connection_ids_are_escaped_too(emulator: RunningEmulator, work_dir: Path) -> None:
    """An error quoting the connection id becomes a note; a run id and a task id come from the
    work directory; the picker lists connection ids: none of them can add markup."""
    hostile = "<script>alert(1)</script>"
    unreadable = load_overview(hostile, 10)
    assert hostile in unreadable.notes[0]  # the note names the connection it could not read
    (batch_id,) = create_batches(1)
    write_manifest(work_dir, "nightly", f"manual__{hostile}", [batch_id])
    for page in (
        render_page(unreadable, 10, connections=[hostile]),
        render_page(load_overview("claude_batch_default", 10), 10),
        render_page(Overview("claude_batch_default"), 10, task=TaskFilter("nightly", hostile, "submit")),
    ):
        assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert page.count("<script>") == 1  # the page's own fold script


def _referenced_templates() -> set[str]:
    """The templates the code renders and, transitively, those they import and include."""
    found: set[str] = set()
    todo: list[str | None] = list(ENTRY_TEMPLATES)
    while todo:
        name = todo.pop()
        assert name is not None, "a template names another by a variable: list it in ENTRY_TEMPLATES"
        if name not in found:
            found.add(name)
            todo.extend(meta.find_referenced_templates(ENV.parse((TEMPLATES / name).read_text())))
    return found


def _package_data_globs() -> list[str]:
    import tomllib  # Python 3.11+, like this test run; the package itself supports 3.10

    return tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]["airflow_provider_claude_batch"]


def test_every_template_ships_with_the_package() -> None:
    """Each template the code reaches exists in the package folder and is matched by a
    ``package-data`` glob (so the wheel has it); the folder holds nothing else."""
    referenced = _referenced_templates()
    assert {"page.html.j2", "rows.html.j2", "chart.svg.j2", "page.css", "page.js"} <= referenced
    in_folder = {p.name for p in TEMPLATES.iterdir() if p.is_file()}
    assert referenced == in_folder, "a template is missing, or a file in the folder is never used"
    shipped = {str(path.relative_to(PACKAGE)) for glob in _package_data_globs() for path in PACKAGE.glob(glob)}
    missing = {name for name in referenced if f"plugins/{TEMPLATE_FOLDER}/{name}" not in shipped}
    assert missing == set(), "add these to [tool.setuptools.package-data] in pyproject.toml"


def test_every_template_escapes_and_the_style_and_script_are_inlined_as_written() -> None:
    """Autoescape is on for every template (whatever its name ends with), and the style and
    script hold no Jinja syntax: they reach the page byte for byte."""
    assert ENV.autoescape is True  # not chosen by file name: .j2, .css and .js alike
    page = render_page(Overview("claude_batch_default"), 10, now=NOW)
    for name in ("page.css", "page.js"):
        source = (TEMPLATES / name).read_text()
        assert ENV.get_template(name).render() == source.rstrip("\n")
        assert source.rstrip("\n") in page


def test_an_empty_page_says_so_and_does_not_refresh() -> None:
    page = render_page(Overview("claude_batch_default"), 10, now=NOW)
    assert '<td colspan="9" class="muted">No batches match.</td>' in page
    assert 'http-equiv="refresh"' not in page and "0 run(s), 0 of the newest 0 batch(es) of connection" in page
    assert re.search(r'<select name="dag_id"><option value="">all</option></select>', page)


def test_the_cells_read_as_durations_utc_moments_and_relative_links() -> None:
    assert [duration(s) for s in (None, 45, 119.6, 600, 7199, 9000, 172799, 200000, -90)] == [
        "",
        "45 s",
        "120 s",
        "10 min",
        "120 min",
        "2.5 h",
        "48.0 h",
        "2.3 d",
        "-90 s",
    ]
    assert moment("2026-11-07T01:03:59+01:00") == "2026-11-07 00:03" and moment(None) == ""
    assert results_until_of(None, NOW) is None
    assert results_until_of((NOW - timedelta(seconds=1)).isoformat(), NOW).archived
    later = results_until_of((NOW + timedelta(days=3)).isoformat(), NOW)
    assert later is not None and (later.archived, later.day, later.left) == (False, "2026-11-29", "3.0 d")
    assert task_link("d", "scheduled__2026-11-01T00:00:00+00:00") == (
        "../dags/d/runs/scheduled__2026-11-01T00%3A00%3A00%2B00%3A00"
    )
    assert task_link("d", "r", "t", 3) == "../dags/d/runs/r/tasks/t/mapped/3"
    assert task_link("d", "r", "t") == "../dags/d/runs/r/tasks/t"


def test_the_chart_is_well_formed_svg_with_a_bar_per_day() -> None:
    points = [DayPoint(f"2026-11-{day:02d}") for day in range(1, 31)]
    points[3] = DayPoint("2026-11-04", batches=2, requests=10, ended_requests=10, succeeded=9, cost_usd=0.5)
    points[9] = DayPoint("2026-11-10", batches=1, requests=4, ended_requests=4, succeeded=4, unpriced_batches=1)
    svg = ElementTree.fromstring(render_chart(points))
    ns = {"svg": "http://www.w3.org/2000/svg"}
    bars = svg.findall("svg:rect[@class='cost']", ns)
    assert len(bars) == 30 and bars[3].get("data-day") == "2026-11-04"
    tips = [bar.find("svg:title", ns).text for bar in bars]
    assert tips[3] == "2026-11-04: $0.5000, 2 batch(es), 10 requests, 90.0% succeeded"
    assert tips[9].endswith("100.0% succeeded, 1 without a known cost")
    assert len(svg.findall("svg:circle", ns)) == 2 and svg.find("svg:polyline", ns) is not None
    assert [t.text for t in svg.findall("svg:text", ns) if t.get("text-anchor") == "end"] == ["$0.00", "$0.25", "$0.50"]
    assert "cdn" not in render_chart(points).lower() and "<script" not in render_chart(points)
