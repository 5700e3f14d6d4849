"""``@task.claude_batch`` under real Airflow (``dag.test()``) against the emulator over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import run_dag, xcom

HEADER = """
import json, os
from airflow.sdk import task

CALLS = os.environ["DECORATOR_TEST_CALLS"]

def record(name):
    with open(CALLS, "a") as out:
        out.write(name + "\\n")
"""


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "calls.txt"
    path.touch()
    monkeypatch.setenv("DECORATOR_TEST_CALLS", str(path))
    return path


def _states(dag_run: Any) -> list[tuple[str, int, str]]:
    return sorted((ti.task_id, ti.map_index, str(ti.state)) for ti in dag_run.get_task_instances())


def test_the_decorator_submits_waits_deferred_and_lands(
    make_dag, work_dir: Path, tmp_path: Path, calls: Path, emulator: RunningEmulator
) -> None:
    emulator.emulator.config.processing_seconds = 0.5  # the task must defer at least once
    emulator.emulator.config.errored_fraction = 0.1  # and resubmit a round
    destination = tmp_path / "out" / "ds={{ ds }}"
    dag = make_dag(
        f"""
        @task.claude_batch(
            prompt="Label this ticket: {{body}}", id_column="ticket_id", model="claude-haiku-4-5", max_tokens=8,
            destination={str(destination)!r}, keep_columns=["ticket_id"], poll_interval=0.2,
            max_requests_per_batch=40,
        )
        def label_tickets():
            record("label_tickets")
            return [{{"ticket_id": f"t-{{i}}", "body": f"ticket number {{i}}"}} for i in range(100)]

        label_tickets()
        """,
        header=HEADER,
    )
    dag_run = run_dag(dag)
    assert _states(dag_run) == [("label_tickets", -1, "success")]
    summary = xcom(dag_run, "label_tickets")
    assert summary["rows"] == 100 and summary["destination"].endswith("ds=2026-11-01")
    assert summary["rounds"] >= 1 and summary["manifest"].endswith("manifest.json")
    table = ds.dataset(summary["destination"], format="parquet").to_table()
    assert sorted(table.column("custom_id").to_pylist()) == sorted(f"t-{i}" for i in range(100))
    assert table.column("ticket_id").to_pylist() == table.column("custom_id").to_pylist()
    # Three chunks, plus resubmission rounds; the function ran once although the task deferred.
    created = emulator.emulator.stats["batches_created"]
    assert created > 3
    assert emulator.emulator.calls["list"] >= 1  # the trigger's polls: the task deferred
    assert calls.read_text().split() == ["label_tickets"]

    # A rerun of the same run calls the function again and re-attaches: nothing is billed twice.
    dag_run = run_dag(dag)
    assert _states(dag_run) == [("label_tickets", -1, "success")]
    assert emulator.emulator.stats["batches_created"] == created
    assert xcom(dag_run, "label_tickets")["rows"] == 100


def test_the_decorator_maps_with_expand(
    make_dag, work_dir: Path, tmp_path: Path, calls: Path, emulator: RunningEmulator
) -> None:
    emulator.emulator.config.processing_seconds = 0.3
    destination = tmp_path / "out" / "part={{ ti.map_index }}"
    dag = make_dag(
        f"""
        @task
        def regions():
            return ["eu", "us", "apac"]

        @task.claude_batch(
            prompt="Summarize: {{text}}", model="claude-haiku-4-5", max_tokens=8, poll_interval=0.2,
            destination={str(destination)!r},
        )
        def reviews(region):
            record(region)
            return [f"{{region}} review {{i}}" for i in range({{"eu": 3, "us": 5, "apac": 7}}[region])]

        reviews.expand(region=regions())
        """,
        header=HEADER,
    )
    dag_run = run_dag(dag)
    assert _states(dag_run) == [
        ("regions", -1, "success"),
        ("reviews", 0, "success"),
        ("reviews", 1, "success"),
        ("reviews", 2, "success"),
    ]
    assert sorted(calls.read_text().split()) == ["apac", "eu", "us"]
    assert emulator.emulator.stats["batches_created"] == 3
    for map_index, rows in enumerate((3, 5, 7)):
        table = ds.dataset(tmp_path / "out" / f"part={map_index}", format="parquet").to_table()
        assert table.num_rows == rows
        assert set(table.column("result_type").to_pylist()) == {"succeeded"}


def test_the_decorator_is_registered_with_airflow() -> None:
    from airflow.sdk import task
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    decorators = ProvidersManagerTaskRuntime().taskflow_decorators
    assert "claude_batch" in decorators
    assert callable(task.claude_batch)


def test_a_source_argument_is_refused_at_parse_time(make_dag, work_dir: Path) -> None:
    from airflow.sdk import DAG, task

    with DAG("refuses_source", schedule=None), pytest.raises(TypeError, match="return value"):

        @task.claude_batch(source="s3://x/", prompt="{text}")
        def rows() -> list[str]:
            return ["a"]

        rows()


def test_the_decorator_lands_typed_answers(make_dag, work_dir: Path, tmp_path: Path, emulator: RunningEmulator) -> None:
    emulator.emulator.config.invalid_output_fraction = 0.5
    destination = tmp_path / "typed"
    dag = make_dag(
        f"""
        @task.claude_batch(
            prompt="Label: {{body}}", model="claude-haiku-4-5", max_tokens=200, destination={str(destination)!r},
            output_schema={{"type": "object", "properties": {{"label": {{"enum": ["a", "b"]}}}}, "required": ["label"]}},
            on_invalid_output="fail", max_retry_rounds=0,
        )
        def rows():
            return [{{"body": f"ticket {{i}}"}} for i in range(20)]

        rows()
        """,
        header="from airflow.sdk import task\n",
    )
    dag_run = run_dag(dag)
    assert _states(dag_run) == [("rows", -1, "failed")]  # on_invalid_output reached the landing
    assert not destination.exists()
    emulator.emulator.config.invalid_output_fraction = 0.0
    dag = make_dag(
        f"""
        @task.claude_batch(
            prompt="Label: {{body}}", model="claude-haiku-4-5", max_tokens=200, destination={str(destination)!r},
            output_schema={{"type": "object", "properties": {{"label": {{"enum": ["a", "b"]}}}}, "required": ["label"]}},
        )
        def rows():
            return [{{"body": f"ticket {{i}}"}} for i in range(20)]

        rows()
        """,
        header="from airflow.sdk import task\n",
    )
    dag_run = run_dag(dag)
    assert _states(dag_run) == [("rows", -1, "success")]
    table = ds.dataset(destination, format="parquet").to_table()
    assert set(table.column("label").to_pylist()) <= {"a", "b"} and table.column("label").null_count == 0
    assert xcom(dag_run, "rows")["by_output_status"] == {"valid": 20}
