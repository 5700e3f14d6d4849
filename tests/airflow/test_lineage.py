"""OpenLineage through Airflow's own integration: the OpenLineage provider's listener, fed by
our ``get_openlineage_facets_on_complete``, writes its events with its file transport (a local
consumer; no network). The DAG runs with ``dag.test()`` in a fresh process so that the
provider reads its configuration from this test's environment."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.testing import RunningEmulator

ROOT = Path(__file__).resolve().parents[2]


def _complete_events(path: Path) -> dict[str, dict[str, Any]]:
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {
        e["job"]["name"].rsplit(".", 1)[-1]: e
        for e in events
        if e.get("eventType") == "COMPLETE" and "." in e["job"]["name"]
    }


def test_the_pipeline_and_the_decorator_report_lineage(
    airflow_db: Path, work_dir: Path, tmp_path: Path, emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    tickets = tmp_path / "lake" / "tickets"
    tickets.mkdir(parents=True)
    pq.write_table(
        pa.table({"ticket_id": [f"t-{i}" for i in range(30)], "body": [f"ticket {i}" for i in range(30)]}),
        tickets / "part-0.parquet",
    )
    out = tmp_path / "lake" / "labels"
    dag_id = "lineage_pipeline"
    dag_file = airflow_db / "dags" / f"{dag_id}.py"
    dag_file.write_text(
        textwrap.dedent(
            f"""
            from datetime import datetime
            from airflow.sdk import DAG, Asset, task
            from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
            from airflow_provider_claude_batch.sensors.batch import ClaudeBatchSensor
            from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator

            with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
                submit = ClaudeBatchSubmitOperator(
                    task_id="submit", source=Asset("file://{tickets}"), id_column="ticket_id",
                    prompt="Label: {{body}}", model="claude-haiku-4-5", max_tokens=8, max_requests_per_batch=20,
                    reuse_answers=False,  # two chunks, whether or not the decorated task ran first
                )
                wait = ClaudeBatchSensor(task_id="wait", manifest=submit.output, poll_interval=0.2)
                land = ClaudeBatchToParquetOperator(
                    task_id="land", manifest=submit.output, destination="{out}/ds={{{{ ds }}}}",
                    keep_columns=["ticket_id"],
                )
                submit >> wait >> land

                @task.claude_batch(
                    prompt="Label: {{body}}", id_column="ticket_id", model="claude-haiku-4-5", max_tokens=8,
                    destination="{out}_decorated/ds={{{{ ds }}}}", poll_interval=0.2,
                )
                def label():
                    return "{tickets}"

                # The same requests again: every answer is reused from label's, no batch is created.
                @task.claude_batch(
                    prompt="Label: {{body}}", id_column="ticket_id", model="claude-haiku-4-5", max_tokens=8,
                    destination="{out}_reused/ds={{{{ ds }}}}", poll_interval=0.2,
                )
                def label_again():
                    return "{tickets}"

                label() >> label_again()
            """
        )
    )
    events = tmp_path / "openlineage.jsonl"
    monkeypatch.setenv(
        "AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps({"type": "file", "log_file_path": str(events), "append": True})
    )
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", "claude_batch_tests")
    subprocess.run(
        [sys.executable, "-m", "tests.airflow.dag_test_process", str(dag_file), dag_id, "2026-11-01T00:00:00+00:00"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=240,
    )
    completed = _complete_events(events)
    assert {"submit", "land", "label", "label_again"} <= set(completed), sorted(completed)
    # Two chunks for the pipeline, one batch for label, none for label_again.
    assert emulator.emulator.stats["batches_created"] == 3
    reused = pq.read_table(Path(f"{out}_reused") / "ds=2026-11-01")
    assert reused.num_rows == 30 and set(reused.column("answer_source").to_pylist()) == {"reused"}

    source = {"namespace": "file", "name": str(tickets)}
    (submit_input,) = completed["submit"]["inputs"]
    assert {k: submit_input[k] for k in source} == source
    assert submit_input["inputFacets"]["inputStatistics"]["rowCount"] == 30
    assert completed["submit"]["outputs"] == []

    jobs = (("land", out), ("label", Path(f"{out}_decorated")), ("label_again", Path(f"{out}_reused")))
    for job, destination in jobs:
        (land_input,) = completed[job]["inputs"]
        assert {k: land_input[k] for k in source} == source
        (output,) = completed[job]["outputs"]
        assert output["namespace"] == "file" and output["name"] == str(destination / "ds=2026-11-01")
        statistics = output["outputFacets"]["outputStatistics"]
        assert statistics["rowCount"] == 30 and statistics["fileCount"] == (2 if job == "land" else 1)
        columns = [f["name"] for f in output["facets"]["schema"]["fields"]]
        assert columns[:4] == ["custom_id", "batch_id", "round", "result_type"]
        assert ("ticket_id" in columns) == (job == "land")
        assert {f["name"]: f["type"] for f in output["facets"]["schema"]["fields"]}["input_tokens"] == "int64"
