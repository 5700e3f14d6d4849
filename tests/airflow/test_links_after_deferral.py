"""The sensor's extra links survive a real deferral (dag.test() runs the trigger inline)."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import run_dag, task_states, xcom


def _saved_link(dag_run: Any, task_id: str, name: str) -> object:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key=f"_link_{name}")
        row = session.scalars(query).first()
        return None if row is None else XComModel.deserialize_value(row)


def test_links_of_a_sensor_that_deferred_point_at_the_batch_and_the_page(
    make_dag: Any,
    emulator: RunningEmulator,
    work_dir: Path,
    connection_env: Any,
) -> None:
    connection_env(
        "linked",
        extra={"console_url_template": "https://console.example/{workspace_id}/b/{batch_id}", "workspace_id": "wrk_1"},
    )
    emulator.emulator.config.processing_seconds = math.inf  # open until the trigger has polled

    def end_once_the_trigger_polls() -> None:  # driven by the emulator's counter, bounded
        deadline = time.monotonic() + 120
        while emulator.emulator.calls["list"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        emulator.emulator.end_all()

    threading.Thread(target=end_once_the_trigger_polls, daemon=True).start()
    dag = make_dag(
        """
        s = ClaudeBatchSubmitOperator(task_id="submit", source=["a"], model="claude-haiku-4-5", max_tokens=8,
                                      claude_batch_conn_id="linked")
        w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
        s >> w
        """
    )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"submit": "success", "wait": "success"}
    # It really deferred: only the trigger lists batches (the sensor's own check retrieves).
    assert emulator.emulator.calls["list"] >= 1
    batch_id = xcom(dag_run, "submit")["batch_ids"][0]
    page = "/claude-batches/?" + urlencode(
        {"conn_id": "linked", "dag_id": dag_run.dag_id, "run_id": dag_run.run_id, "task_id": "submit"}
    )
    assert _saved_link(dag_run, "wait", "ClaudeBatchConsoleLink") == f"https://console.example/wrk_1/b/{batch_id}"
    assert _saved_link(dag_run, "wait", "ClaudeBatchesPageLink") == page
