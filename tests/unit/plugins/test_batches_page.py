"""The Claude Batches page's data and HTML, against the emulator over real HTTP: origins from
the batch index, costs from landing summaries, and every broken source shown as a note."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_claude_batch.batching.state.batch_index import record_origin
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.plugins.batches_page import load_overview, render_page
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.helpers import TEST_API_KEY, make_requests


@pytest.fixture
def work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__WORK_DIR", str(tmp_path / "work"))
    return tmp_path / "work"


def _manifest(work_dir: Path, dag_id: str, run_id: str, batch_ids: list[str], cost: Any = "absent") -> None:
    folder = WorkDir(work_dir).run(dag_id, run_id, "submit").path  # where a submit task puts it
    folder.mkdir(parents=True)
    manifest = Manifest(
        dag_id=dag_id,
        run_id=run_id,
        task_id="submit",
        map_index=-1,
        conn_id="claude_batch_default",
        fingerprint="f",
        spec={},
        max_requests_per_batch=10,
        max_bytes_per_batch=10,
        total_requests=len(batch_ids),
        input_columns=None,
        batches=[
            BatchRecord(chunk=i, round=0, requests_file="", request_count=1, body_bytes=1, sha256="", batch_id=b)
            for i, b in enumerate(batch_ids)
        ],
    )
    manifest.save(folder)
    for record in manifest.batches:
        record_origin(manifest, record, folder)
    if cost != "absent":
        summary = {"by_batch": {b: {"rows": 1, "cost_usd": cost} for b in batch_ids}}
        (folder / "landing.json").write_text(json.dumps(summary))


def _created(count: int) -> list[str]:
    hook = ClaudeBatchHook()
    return [hook.create_batch(make_requests(2, prefix=f"b{i}")).id for i in range(count)]


def test_rows_carry_the_creating_task_and_the_landed_cost(emulator: RunningEmulator, work_dir: Path) -> None:
    emulator.emulator.config.processing_seconds = 3600
    first, second, third = _created(3)
    emulator.emulator.end_all()
    _manifest(work_dir, "nightly", "scheduled__2026-11-01T00:00:00+00:00", [first], cost=0.0125)
    _manifest(work_dir, "pricing_gap", "manual__1", [second], cost=None)
    (work_dir / "_batches" / f"{third}.json").write_text("{not json")

    overview = load_overview("claude_batch_default", 10)

    rows = {row.id: row for row in overview.rows}
    assert [row.id for row in overview.rows] == [third, second, first]  # newest first
    assert rows[first].origin is not None and rows[first].origin.dag_id == "nightly"
    assert rows[first].cost_usd == 0.0125 and rows[first].landed
    assert rows[second].cost_usd is None and rows[second].landed  # landed, unpriced model
    assert rows[third].origin is None and not rows[third].landed
    assert rows[first].processing_status == "ended" and rows[first].request_counts["succeeded"] == 2
    assert rows[first].expires_in_seconds is not None and rows[first].expires_in_seconds > 23 * 3600
    assert any(third in note for note in overview.notes)  # its index entry is broken

    page = render_page(overview, 10)
    assert 'http-equiv="refresh"' not in page  # every batch has ended
    assert "$0.0125" in page and "unknown price" in page and "not landed" in page
    assert "nightly / submit" in page and "scheduled__2026-11-01T00:00:00+00:00" in page
    assert "../dags/nightly/runs/scheduled__2026-11-01T00%3A00%3A00%2B00%3A00/tasks/submit" in page


def test_limit_takes_the_newest_and_a_running_batch_refreshes_the_page(
    emulator: RunningEmulator, work_dir: Path
) -> None:
    emulator.emulator.config.processing_seconds = 3600
    ids = _created(3)
    overview = load_overview("claude_batch_default", 2)
    assert [row.id for row in overview.rows] == ids[::-1][:2]
    assert '<meta http-equiv="refresh" content="30">' in render_page(overview, 2)


def test_a_missing_connection_is_a_note_not_an_error(emulator: RunningEmulator, work_dir: Path) -> None:
    overview = load_overview("no_such_connection", 10)
    assert overview.rows == []
    assert "no_such_connection" in overview.notes[0]
    assert "no_such_connection" in render_page(overview, 10)


def test_an_unreachable_api_is_a_note_without_the_key(
    emulator: RunningEmulator, work_dir: Path, connection_env: Any
) -> None:
    connection_env("claude_down", host="http://127.0.0.1:9", extra=json.dumps({"max_retries": 0, "timeout": 5}))
    overview = load_overview("claude_down", 10)
    assert overview.rows == [] and "claude_down" in overview.notes[0]
    assert TEST_API_KEY not in json.dumps(overview.as_dict())


def test_a_wrong_key_is_a_note(emulator: RunningEmulator, work_dir: Path, connection_env: Any) -> None:
    connection_env("claude_badkey", password="not-the-key")
    overview = load_overview("claude_badkey", 10)
    assert overview.rows == [] and "claude_badkey" in overview.notes[0]
    assert "not-the-key" not in overview.notes[0]


def test_a_console_template_that_does_not_render_gives_no_link(
    emulator: RunningEmulator, work_dir: Path, connection_env: Any
) -> None:
    connection_env("claude_tpl", extra=json.dumps({"console_url_template": "https://console/{nope}/{batch_id}"}))
    (batch_id,) = _created(1)
    (row,) = load_overview("claude_tpl", 10).rows
    assert row.id == batch_id and row.console_url is None
    assert f"<code>{batch_id}</code>" in render_page(load_overview("claude_tpl", 10), 10)


def test_page_escapes_what_it_shows(emulator: RunningEmulator, work_dir: Path) -> None:
    (batch_id,) = _created(1)
    _manifest(work_dir, "dag<script>", "run", [batch_id])
    page = render_page(load_overview("claude_batch_default", 10), 10)
    assert "dag<script>" not in page and "dag&lt;script&gt;" in page


def test_a_task_filter_shows_exactly_that_tasks_batches(emulator: RunningEmulator, work_dir: Path) -> None:
    from airflow_provider_claude_batch.plugins.batches_page import TaskFilter

    first, second, third = _created(3)
    _manifest(work_dir, "nightly", "run_1", [first, third])
    _manifest(work_dir, "other", "run_1", [second])
    task = TaskFilter("nightly", "run_1", "submit")
    overview = load_overview("claude_batch_default", 10, task)
    assert [row.id for row in overview.rows] == [third, first]
    assert all(row.origin is not None and row.origin.dag_id == "nightly" for row in overview.rows)
    page = render_page(overview, 10, task)
    assert "nightly / run_1 / submit" in page and ">all batches</a>" in page and second not in page


def test_a_task_without_a_manifest_is_a_note(emulator: RunningEmulator, work_dir: Path) -> None:
    from airflow_provider_claude_batch.plugins.batches_page import TaskFilter

    overview = load_overview("claude_batch_default", 10, TaskFilter("nightly", "never_ran", "submit"))
    assert overview.rows == [] and "no manifest at" in overview.notes[0]


def test_a_task_filter_cannot_step_out_of_the_work_directory() -> None:
    from fastapi import HTTPException

    from airflow_provider_claude_batch.plugins.batches_page import _task_filter

    assert _task_filter(None, "run", "task") is None
    with pytest.raises(HTTPException) as raised:
        _task_filter("..", "run", "task")
    assert raised.value.status_code == 400


def test_the_page_needs_the_connection_and_shows_only_readable_dags(
    emulator: RunningEmulator, work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin's own checks, with Airflow's auth manager replaced by one that allows only
    ``claude_batch_default`` and the DAG ``visible`` (the auth manager is not what is tested)."""
    import airflow.api_fastapi.app as api_app
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from airflow_provider_claude_batch.plugins.batches_page import create_app

    class OnlyDefaultAndVisible:
        def is_authorized_connection(self, *, method: str, details: Any, user: Any) -> bool:
            return method == "GET" and details.conn_id == "claude_batch_default"

        def get_authorized_dag_ids(self, *, user: Any, method: str = "GET") -> set[str]:
            return {"visible"} if method == "GET" else set()

    monkeypatch.setattr(api_app, "get_auth_manager", lambda: OnlyDefaultAndVisible())
    app = create_app()
    app.dependency_overrides[get_user] = lambda: "someone"
    mine, theirs = _created(2)
    _manifest(work_dir, "visible", "manual__1", [mine])
    _manifest(work_dir, "secret_dag", "manual__2", [theirs])
    with TestClient(app) as client:
        allowed = client.get("/api/batches")
        page = client.get("/")
        denied = client.get("/", params={"conn_id": "other_connection"})
        one_task = client.get("/api/batches", params={"dag_id": "visible", "run_id": "manual__1", "task_id": "submit"})
        hidden_task = client.get("/", params={"dag_id": "secret_dag", "run_id": "manual__2", "task_id": "submit"})
        one_dag = client.get("/api/batches", params={"dag_id": "visible", "status": "", "since": ""})
        hidden_dag = client.get("/api/batches", params={"dag_id": "secret_dag"})
        bad_status = client.get("/", params={"status": "done"})
    rows = {r["id"]: r for r in allowed.json()["rows"]}
    assert allowed.status_code == 200 and set(rows) == {mine, theirs}
    assert rows[mine]["origin"]["dag_id"] == "visible" and not rows[mine]["origin_hidden"]
    assert rows[theirs]["origin"] is None and rows[theirs]["origin_hidden"]
    assert "secret_dag" not in allowed.text and "secret_dag" not in page.text
    assert "a DAG you may not read" in page.text and "manual__1" in page.text
    assert denied.status_code == 403 and "other_connection" in denied.text
    assert one_task.status_code == 200 and [r["id"] for r in one_task.json()["rows"]] == [mine]
    assert hidden_task.status_code == 403 and "secret_dag" in hidden_task.text
    assert [run["batch_ids"] for run in one_dag.json()["runs"]] == [[mine]]
    assert one_dag.json()["connections"] == ["claude_batch_default"]
    assert hidden_dag.json()["runs"] == [] and len(hidden_dag.json()["chart"]) == 30
    assert bad_status.status_code == 400 and "status must be one of" in bad_status.text


# --------------------------------------------------------------------- runs, filters, chart
NIGHTLY_RUN = "scheduled__2026-11-01T00:00:00+00:00"


def _dates(known: dict[tuple[str, str], str | None]) -> Any:
    """A stand-in for the metadata database's DagRun table (the DB lookup itself runs in the
    browser system test): records which runs were asked for."""
    asked: list[set[tuple[str, str]]] = []

    def lookup(runs: Any) -> dict[tuple[str, str], str | None]:
        asked.append(set(runs))
        return {key: value for key, value in known.items() if key in asked[-1]}

    lookup.asked = asked
    return lookup


def test_one_row_per_run_with_its_batches_beneath(emulator: RunningEmulator, work_dir: Path) -> None:
    from airflow_provider_claude_batch.plugins.batches_page import load_overview

    emulator.emulator.config.processing_seconds = 3600
    first, second, other, stray = _created(4)
    emulator.emulator.script_outcomes({"b1-0": "errored:api_error"})
    emulator.emulator.advance(600)
    emulator.emulator.end_all()
    _manifest(work_dir, "nightly", NIGHTLY_RUN, [first, second], cost=0.02)
    _manifest(work_dir, "nightly", "manual__2026-11-02T08:00:00+00:00", [other])
    lookup = _dates({("nightly", NIGHTLY_RUN): "2026-11-01T00:00:00+00:00"})

    overview = load_overview("claude_batch_default", 10, run_dates=lookup)

    assert lookup.asked == [{("nightly", NIGHTLY_RUN), ("nightly", "manual__2026-11-02T08:00:00+00:00")}]
    runs = overview.runs()
    assert [(r.dag_id, r.run_id) for r in runs] == [
        ("nightly", "manual__2026-11-02T08:00:00+00:00"),  # newest batch first
        ("nightly", NIGHTLY_RUN),
        (None, None),  # the batch no manifest here names
    ]
    manual, nightly, unknown = runs
    assert [row.id for row in nightly.batches] == [second, first] and [row.id for row in unknown.batches] == [stray]
    totals = nightly.totals()
    assert totals["total"] == 4 and totals["request_counts"]["errored"] == 1 and totals["percent_done"] == 100.0
    assert totals["cost_usd"] == pytest.approx(0.04) and manual.totals()["cost_usd"] is None  # not landed
    assert totals["duration_seconds"] == pytest.approx(600, abs=5)
    created = datetime.fromisoformat(totals["created_at"])
    assert datetime.fromisoformat(totals["results_until"]) == created + timedelta(days=29)
    assert nightly.logical_date == "2026-11-01T00:00:00+00:00" and manual.logical_date is None

    now = emulator.emulator.clock.now()
    page = render_page(overview, 10, now=now)
    run_row = page.split(f'data-run="nightly/{NIGHTLY_RUN}"', 1)[1].split("</tr>", 1)[0]
    assert "2026-11-01 00:00" in run_row and NIGHTLY_RUN not in run_row.split("title=")[0]  # the date, not the id
    assert '<span class="ok" style="width:75.00%">' in run_row and 'class="failed" style="width:25.00%"' in run_row
    assert "$0.0400" in run_row and '<td class="num">-</td>' in run_row  # rows reused: not recorded yet
    assert (created + timedelta(days=29)).strftime("%Y-%m-%d") in run_row and "10 min" in run_row
    assert page.index(f'data-batch-id="{second}"') < page.index(f'data-batch-id="{first}"')
    assert page.index(f'data-run="nightly/{NIGHTLY_RUN}"') < page.index(f'data-batch-id="{second}"')
    # A run the database no longer knows shows its run id instead of a date.
    assert ">manual__2026-11-02T08:00:00+00:00</a>" in page


def test_filters_by_dag_status_and_logical_date(emulator: RunningEmulator, work_dir: Path) -> None:
    from datetime import date

    from airflow_provider_claude_batch.plugins.batches_page import load_overview
    from airflow_provider_claude_batch.plugins.overview import PageFilter

    emulator.emulator.config.processing_seconds = 3600
    ended_ok, ended_failed, running = _created(3)
    emulator.emulator.script_outcomes({"b1-1": "expired"})
    emulator.emulator.end_all()
    _manifest(work_dir, "nightly", "r1", [ended_ok])
    _manifest(work_dir, "nightly", "r2", [ended_failed])
    emulator.emulator.config.processing_seconds = 3600
    _manifest(work_dir, "weekly", "r3", [running])
    # ``running`` ended too (end_all); make a fresh open batch for the weekly run instead.
    (open_batch,) = [ClaudeBatchHook().create_batch(make_requests(2, prefix="open")).id]
    _manifest(work_dir, "weekly", "r4", [open_batch])
    lookup = _dates(
        {
            ("nightly", "r1"): "2026-11-01T00:00:00+00:00",
            ("nightly", "r2"): "2026-11-02T00:00:00+00:00",
            ("weekly", "r3"): "2026-10-26T00:00:00+00:00",
            ("weekly", "r4"): "2026-11-02T00:00:00+00:00",
        }
    )
    overview = load_overview("claude_batch_default", 10, run_dates=lookup)

    def runs(**kwargs: Any) -> list[str | None]:
        return [run.run_id for run in overview.runs(PageFilter(**kwargs))]

    assert runs() == ["r4", "r3", "r2", "r1"]
    assert runs(dag_id="nightly") == ["r2", "r1"]
    assert runs(status="in_progress") == ["r4"]
    assert runs(status="failed") == ["r2"]
    assert runs(status="ended", dag_id="weekly") == ["r3"]
    assert runs(since=date(2026, 11, 2)) == ["r4", "r2"]
    assert runs(since=date(2026, 11, 1), until=date(2026, 11, 1)) == ["r1"]
    with pytest.raises(ValueError, match="status must be one of"):
        PageFilter(status="done")


def test_the_chart_sums_cost_and_success_per_day_over_30_days(emulator: RunningEmulator, work_dir: Path) -> None:
    from airflow_provider_claude_batch.plugins.batches_page import load_overview, render_chart

    emulator.emulator.config.processing_seconds = 60
    hook = ClaudeBatchHook()
    old = hook.create_batch(make_requests(2, prefix="old")).id  # 40 days ago: outside
    emulator.emulator.advance(15 * 86400)
    early = hook.create_batch(make_requests(4, prefix="early")).id  # 25 days ago
    emulator.emulator.advance(23 * 86400)
    emulator.emulator.script_outcomes({"late-0": "errored:api_error"})
    late = hook.create_batch(make_requests(4, prefix="late")).id
    late_open = hook.create_batch(make_requests(2, prefix="open")).id
    emulator.emulator.advance(2 * 86400)
    emulator.emulator.config.processing_seconds = 3600
    today = hook.create_batch(make_requests(3, prefix="today")).id  # still open
    _manifest(work_dir, "nightly", "r_early", [early], cost=0.5)
    _manifest(work_dir, "nightly", "r_late", [late, late_open], cost=0.25)
    _manifest(work_dir, "weekly", "r_old", [old], cost=9.0)
    now = emulator.emulator.clock.now()
    overview = load_overview("claude_batch_default", 1, run_dates=_dates({}), now=now)
    assert [row.id for row in overview.rows] == [today]  # the table: the newest ``limit``
    assert {row.id for row in overview.chart_rows} == {late_open, late, early}  # 30 days, not the 40-day-old one

    points = overview.chart(now.date())
    assert len(points) == 30 and points[-1].day == now.date().isoformat()
    by_day = {p.day: p for p in points}
    late_day = by_day[(now - timedelta(days=2)).date().isoformat()]
    assert (late_day.batches, late_day.requests, late_day.cost_usd) == (2, 6, pytest.approx(0.5))
    assert late_day.succeeded_share == pytest.approx(5 / 6)
    assert by_day[(now - timedelta(days=25)).date().isoformat()].cost_usd == pytest.approx(0.5)
    today_point = by_day[now.date().isoformat()]
    assert today_point.succeeded_share is None and today_point.unpriced_batches == 1  # open, not landed
    assert sum(p.cost_usd for p in points) == pytest.approx(1.0)
    # The DAG filter narrows the chart too.
    from airflow_provider_claude_batch.plugins.overview import PageFilter

    assert sum(p.batches for p in overview.chart(now.date(), PageFilter(dag_id="weekly"))) == 0

    svg = render_chart(points)
    assert svg.count('<rect class="cost"') == 30 and "<polyline" in svg and "cdn" not in svg.lower()
    assert f'data-day="{late_day.day}"' in svg and "83.3% succeeded" in svg


def test_the_connection_picker_lists_readable_claude_connections(
    emulator: RunningEmulator, work_dir: Path, connection_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_claude_batch.plugins.batches_page import claude_connections

    connection_env("claude_nightly")
    connection_env("claude_secret_team")
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_URI", "claude-batch://:key@localhost")
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", "postgres://user:pw@db/warehouse")
    monkeypatch.setenv("AIRFLOW_CONN_BROKEN", "{not json")
    picked = claude_connections(lambda conn_id: conn_id != "claude_secret_team", "typed_in")
    assert picked == ["claude_batch_default", "claude_nightly", "claude_uri", "typed_in"]
    page = render_page(load_overview("claude_batch_default", 10, run_dates=_dates({})), 10, connections=picked)
    picker = page.split('<select name="conn_id">', 1)[1].split("</select>", 1)[0]
    assert '<option value="claude_batch_default" selected>' in picker and "claude_secret_team" not in picker
    assert '<input name="conn_id"' not in page


# --------------------------------------------------------------------- answers reused
from tests.airflow.conftest import make_dag, task_states  # noqa: E402,F401  (real Airflow fixtures)

REUSE_PIPELINE = """
s = ClaudeBatchSubmitOperator(task_id="submit", source={rows!r}, prompt="{{prompt}}", model="claude-haiku-4-5",
                              max_tokens=8, id_column="id", max_requests_per_batch=5)
w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={out!r}, poll_interval=0.1)
s >> w >> l
"""


def test_a_run_answered_from_the_store_shows_with_rows_reused_and_the_saving(
    make_dag: Any,  # noqa: F811
    emulator: RunningEmulator,
    work_dir: Path,
    tmp_path: Path,
) -> None:
    """Two real runs of the same rows under new run ids: the first sends 8 requests (2 of its
    10 rows repeat a prompt), the second none. Both show as runs, found through the real
    metadata database; the second has no batch, 100% done, cost 0 and every row reused."""
    from datetime import timezone

    from fastapi.testclient import TestClient

    rows = [{"id": f"r{i}", "prompt": f"Label {min(i, 7)}"} for i in range(10)]  # r8, r9 repeat r7
    dag = make_dag(REUSE_PIPELINE.format(rows=rows, out=str(tmp_path / "out")))
    day = datetime(2026, 11, 24, tzinfo=timezone.utc)
    first = dag.test(logical_date=day, run_after=day)
    second = dag.test(logical_date=day, run_after=day + timedelta(hours=1))
    assert task_states(second)["land"] == "success"
    assert emulator.emulator.stats["batches_created"] == 2 and emulator.emulator.stats["requests_received"] == 8
    first_cost = json.loads((WorkDir(work_dir).run(dag.dag_id, first.run_id, "submit").landing_summary).read_text())

    overview = load_overview("claude_batch_default", 10)
    runs = {run.run_id: run for run in overview.runs()}
    assert set(runs) == {first.run_id, second.run_id}, overview.notes
    assert [run.run_id for run in overview.runs()] == [second.run_id, first.run_id]  # newest first
    paid, answered = runs[first.run_id].totals(), runs[second.run_id].totals()
    assert paid["rows_reused"] == 2 and paid["reuse"]["deduplicated"] == 2 and paid["reuse"]["new"] == 8
    assert paid["reuse_saved_usd"] == pytest.approx(first_cost["reuse_saved_usd"]) and paid["reuse_saved_usd"] > 0
    assert runs[second.run_id].batches == []
    assert (answered["percent_done"], answered["cost_usd"], answered["total"]) == (100.0, 0.0, 0)
    assert answered["rows_reused"] == 10 and answered["reuse"]["reused"] == 10
    assert answered["reuse_saved_usd"] == pytest.approx(first_cost["cost_usd"] + first_cost["reuse_saved_usd"])
    assert runs[second.run_id].logical_date == day.isoformat()  # from the metadata database

    page = render_page(overview, 10)
    answered_row = page.split(f'data-run="{dag.dag_id}/{second.run_id}"', 1)[1].split("</tr>", 1)[0]
    assert "no batch: every row answered" in answered_row and "100.0%" in answered_row
    assert ">10 of 10</span>" in answered_row and "$0.0000" in answered_row and "(saved $" in answered_row
    paid_row = page.split(f'data-run="{dag.dag_id}/{first.run_id}"', 1)[1].split("</tr>", 1)[0]
    assert ">2 of 10</span>" in paid_row and "(saved $" in paid_row

    # The same through the JSON API (auth manager allowing everything: it is not what is tested).
    import airflow.api_fastapi.app as api_app
    from airflow.api_fastapi.core_api.security import get_user

    from airflow_provider_claude_batch.plugins.batches_page import create_app

    class Everyone:
        def is_authorized_connection(self, **_: Any) -> bool:
            return True

        def get_authorized_dag_ids(self, **_: Any) -> set[str]:
            return {dag.dag_id}

    original = api_app.get_auth_manager
    api_app.get_auth_manager = lambda: Everyone()
    try:
        app = create_app()
        app.dependency_overrides[get_user] = lambda: "someone"
        with TestClient(app) as client:
            body = client.get("/api/batches").json()
            one_task = client.get(
                "/api/batches", params={"dag_id": dag.dag_id, "run_id": second.run_id, "task_id": "submit"}
            ).json()
    finally:
        api_app.get_auth_manager = original
    by_run = {run["run_id"]: run for run in body["runs"]}
    assert by_run[second.run_id]["batch_ids"] == [] and by_run[second.run_id]["rows_reused"] == 10
    assert by_run[second.run_id]["cost_usd"] == 0.0 and by_run[second.run_id]["percent_done"] == 100.0
    assert by_run[first.run_id]["rows_reused"] == 2 and by_run[first.run_id]["reuse_saved_usd"] > 0
    assert [run["run_id"] for run in one_task["runs"]] == [second.run_id]  # the task view shows it too
