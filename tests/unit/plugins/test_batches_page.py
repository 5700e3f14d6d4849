"""The Claude Batches page's routes, run in-process against the emulator over real HTTP and,
for runs, a real metadata database: the connection and DAG checks, the query parameters,
the JSON API, and the plugin Airflow loads."""

from __future__ import annotations

import html
import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
from airflow_provider_claude_batch.plugins.page_load import load_overview
from airflow_provider_claude_batch.plugins.page_render import render_page
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import make_dag, task_states  # noqa: F401  (real Airflow fixtures)
from tests.unit.plugins.conftest import create_batches, write_manifest


def test_a_task_filter_cannot_step_out_of_the_work_directory() -> None:
    from fastapi import HTTPException

    from airflow_provider_claude_batch.plugins.batches_page import _task_filter

    assert _task_filter(None, "run", "task") is None
    with pytest.raises(HTTPException) as raised:
        _task_filter("..", "run", "task")
    assert raised.value.status_code == 400


def test_bad_filters_are_refused_and_empty_ones_mean_all() -> None:
    from fastapi import HTTPException

    from airflow_provider_claude_batch.plugins.batches_page import _page_filter
    from airflow_provider_claude_batch.plugins.overview import PageFilter

    def page_filter(
        dag_id: str | None = None, run_id: str | None = None, task_id: str | None = None, **query: str
    ) -> PageFilter:
        values = {"status_": None, "since": None, "until": None, **query}
        return _page_filter(dag_id, run_id, task_id, values["status_"], values["since"], values["until"])

    assert page_filter("", status_="", since="", until="") == PageFilter()  # the form's "all"
    assert page_filter("nightly", "run", "task").dag_id is None  # the one-task view, not a DAG filter
    assert page_filter("nightly", since="2026-11-01") == PageFilter(dag_id="nightly", since=date(2026, 11, 1))
    for bad in ({"status_": "done"}, {"since": "yesterday"}, {"until": "2026-13-01"}):
        with pytest.raises(HTTPException) as raised:
            page_filter(**bad)
        assert raised.value.status_code == 400


def test_airflow_loads_the_plugin_from_its_entry_point() -> None:
    """The ``airflow.plugins`` entry point names the plugin class here; it mounts the app at
    /claude-batches and adds the page to the Browse menu."""
    from importlib.metadata import entry_points

    from airflow_provider_claude_batch.plugins.batches_page import URL_PREFIX, ClaudeBatchesPlugin

    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == "claude_batches"]
    assert entry.load() is ClaudeBatchesPlugin
    (app,) = ClaudeBatchesPlugin.fastapi_apps
    assert app["url_prefix"] == URL_PREFIX == "/claude-batches"
    paths = {route.path for route in app["app"].routes}
    assert {"/", "/api/batches"} <= paths
    (view,) = ClaudeBatchesPlugin.external_views
    assert (view["href"], view["category"], view["destination"]) == ("claude-batches/", "browse", "nav")


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
    mine, theirs = create_batches(2)
    write_manifest(work_dir, "visible", "manual__1", [mine])
    write_manifest(work_dir, "secret_dag", "manual__2", [theirs])
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


# --------------------------------------------------------------------- answers reused
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
    assert ">reused 10 of 10</div>" in answered_row and "$0.0000" in answered_row and ">saved $" in answered_row
    assert 'class="status good">landed</span>' in answered_row and "run success" in answered_row
    paid_row = page.split(f'data-run="{dag.dag_id}/{first.run_id}"', 1)[1].split("</tr>", 1)[0]
    assert ">reused 2 of 10</div>" in paid_row and ">saved $" in paid_row
    assert ">10<" in paid_row and ">8<" in paid_row  # 10 rows, 8 requests sent

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


# --------------------------------------------------------------------- failed runs, rounds
TYPED_PIPELINE = """
s = ClaudeBatchSubmitOperator(task_id="submit", source={rows!r}, id_column="id", prompt="Classify: {{body}}",
                              model="claude-haiku-4-5", max_tokens=400, output_schema={schema!r})
w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={out!r}, poll_interval=0.1,
                                 on_invalid_output={on_invalid!r}, max_retry_rounds={rounds})
s >> w >> l
"""
LABEL_SCHEMA = {"type": "object", "properties": {"label": {"enum": ["a", "b"]}}, "required": ["label"]}


def _typed_dag(make_dag: Any, rows: int, out: Path, on_invalid: str, rounds: int) -> Any:  # noqa: F811
    source = [{"id": f"t{i}", "body": f"ticket {i}"} for i in range(rows)]
    return make_dag(
        TYPED_PIPELINE.format(rows=source, schema=LABEL_SCHEMA, out=str(out), on_invalid=on_invalid, rounds=rounds)
    )


def _run_row(page: str, dag_id: str, run_id: str) -> str:
    return html.unescape(page.split(f'data-run="{dag_id}/{run_id}"', 1)[1].split("</tr>", 1)[0])


def test_a_run_whose_transfer_failed_shows_failed_not_green(
    make_dag: Any,  # noqa: F811
    emulator: RunningEmulator,
    work_dir: Path,
    tmp_path: Path,
) -> None:
    """Issue 23: a run whose transfer failed showed "ended 100.0%" in green. The run shows its
    DAG run's state and its tasks' from the metadata database, and its landing: failed, in red,
    never green; what its batch billed comes from the raw results the transfer downloaded."""
    emulator.emulator.config.invalid_output_fraction = 0.3
    dag = _typed_dag(make_dag, 20, tmp_path / "out", on_invalid="fail", rounds=0)
    run = dag.test()
    assert task_states(run)["land"] == "failed" and str(run.state) == "failed"

    overview = load_overview("claude_batch_default", 10)
    page = render_page(overview, 10)
    row = _run_row(page, dag.dag_id, run.run_id)
    assert 'class="status bad">failed</span>' in row
    assert "run failed" in row and "land failed" in row and "not landed" in row
    assert "status good" not in row and "status ended" not in row and "billed, not landed" in row
    assert f'<tr class="run bad" data-run="{dag.dag_id}/{run.run_id}"' in page

    (entry,) = [r for r in overview.as_dict()["runs"] if r["run_id"] == run.run_id]
    assert (entry["state"], entry["dag_run_state"], entry["task_states"]["land"]) == ("failed", "failed", "failed")
    assert entry["task_states"]["submit"] == "success" and entry["percent_done"] == 100.0
    assert (entry["submit_tasks"], entry["landed_tasks"]) == (1, 0)
    assert entry["cost_usd"] is not None and entry["cost_usd"] > 0 and entry["cost_not_landed"]


def test_rows_and_requests_sent_are_shown_apart_across_rounds(
    make_dag: Any,  # noqa: F811
    emulator: RunningEmulator,
    work_dir: Path,
    tmp_path: Path,
) -> None:
    """Issue 23: during resubmission rounds a run of 3,000 rows showed "requests 3,061". The
    run shows its rows and the requests it sent, every round included, apart."""
    emulator.emulator.config.invalid_output_fraction = 0.3
    dag = _typed_dag(make_dag, 40, tmp_path / "out", on_invalid="resubmit", rounds=1)
    run = dag.test()
    assert task_states(run)["land"] == "success"
    sent = emulator.emulator.stats["requests_received"]
    assert sent > 40 and emulator.emulator.stats["batches_created"] == 2

    overview = load_overview("claude_batch_default", 10)
    row = _run_row(render_page(overview, 10), dag.dag_id, run.run_id)
    assert '<td class="num">40<div class="sub" title=' in row and ">reused 0 of 40<" in row  # rows, then reuse
    assert f'<td class="num">{sent}<div class="sub">in 2 rounds</div>' in row
    assert 'class="status good">landed</span>' in row
    (entry,) = [r for r in overview.as_dict()["runs"] if r["run_id"] == run.run_id]
    assert (entry["rows"], entry["requests_sent"], entry["rounds"], entry["state"]) == (40, sent, 2, "landed")
