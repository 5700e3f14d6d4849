"""The example DAG in a real deployment: the sensor defers to a real triggerer process, which
polls the emulator while the task instance sits in state ``deferred`` holding no worker slot."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.testing import RunningEmulator
from tests.helpers import TEST_API_KEY
from tests.system.stack import AirflowStack, wait_until

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "claude_batch_support_tickets"


@pytest.fixture
def stack(tmp_path: Path, emulator: RunningEmulator) -> Iterator[AirflowStack]:
    lake = tmp_path / "lake"
    stack = AirflowStack(
        tmp_path / "airflow",
        {
            "AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT": json.dumps(
                {"conn_type": "claude_batch", "host": emulator.base_url, "password": TEST_API_KEY}
            ),
            "CLAUDE_BATCH_EXAMPLE_DATA": str(lake),
            "CLAUDE_BATCH_EXAMPLE_POLL_SECONDS": "1",
            "AIRFLOW__CLAUDE_BATCH__WORK_DIR": str(tmp_path / "work"),
        },
    )
    shutil.copy(ROOT / "example_dags" / f"{DAG_ID}.py", stack.home / "dags")
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.mark.system
def test_sensor_waits_deferred_in_a_real_triggerer(
    stack: AirflowStack, emulator: RunningEmulator, tmp_path: Path
) -> None:
    import sys

    sys.path.insert(0, str(ROOT / "example_dags"))
    from example_data import write_tickets

    write_tickets(tmp_path / "lake", "2026-11-02", 2_100)
    emulator.emulator.config.processing_seconds = 8
    wait_until(lambda: _dag_parsed(stack), timeout=90, what=f"the dag-processor to parse {DAG_ID}")
    stack.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    run = stack.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": "2026-11-02T00:00:00Z"})
    run_id = run["dag_run_id"]

    # Watch the run: note each time the sensor is seen deferred and how many polls the
    # emulator had received by then.
    polls_while_deferred: list[int] = []

    def finished() -> str | None:
        states = {
            ti["task_id"]: ti["state"]
            for ti in stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
        }
        if states.get("wait") == "deferred":
            polls_while_deferred.append(emulator.emulator.calls["retrieve"])
        state = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        return state if state in ("success", "failed") else None

    final = wait_until(finished, timeout=180, interval=0.5, what="the DAG run to finish")
    assert final == "success", stack.log_tail("scheduler") + stack.log_tail("triggerer")
    assert len(polls_while_deferred) >= 2, "the sensor was never seen deferred"
    assert polls_while_deferred[-1] > polls_while_deferred[0], "the triggerer did not poll while the task was deferred"

    # The trigger's progress lines land in the sensor's task log (what the UI shows while deferred).
    wait_logs = "".join(
        p.read_text(errors="replace")
        for p in (stack.home / "logs").rglob("*")
        if p.is_file() and "task_id=wait" in str(p)
    )
    assert "batches 0/3 ended" in wait_logs and "batches 3/3 ended" in wait_logs

    tickets = pq.read_table(tmp_path / "lake" / "support" / "tickets" / "ds=2026-11-02" / "tickets.parquet")
    output = ds.dataset(tmp_path / "lake" / "support" / "ticket_labels" / "ds=2026-11-02", format="parquet").to_table()
    assert output.num_rows == 2_100
    assert sorted(output.column("custom_id").to_pylist()) == sorted(tickets.column("ticket_id").to_pylist())
    assert emulator.emulator.stats["batches_created"] == 3
    for log in (stack.home / "logs").rglob("*"):
        if log.is_file():
            assert TEST_API_KEY.encode() not in log.read_bytes(), log


def _dag_parsed(stack: AirflowStack) -> bool:
    try:
        stack.api("GET", f"/dags/{DAG_ID}")
    except httpx.HTTPStatusError:
        return False
    return True
