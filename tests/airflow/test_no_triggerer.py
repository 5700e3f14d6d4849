"""Without a triggerer the waits do not defer (they would hang): ``[claude_batch] triggerer =
no`` is a deployment that says so. The sensor polls in reschedule mode and the transfer polls
resubmitted batches in place, each with one warning naming why; nothing is deferred (the
sensor's try was rescheduled, the transfer's own poller logged the wait)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import run_dag, task_states, xcom

WARNING = "No triggerer to defer to: [claude_batch] triggerer = no"


def _reschedules(dag_run: Any, task_id: str) -> int:
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    (ti,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == task_id]
    with create_session() as session:
        return int(session.scalar(select(func.count()).where(TaskReschedule.ti_id == ti.id)) or 0)


def test_without_a_triggerer_the_sensor_reschedules_and_the_transfer_polls(
    make_dag: Any,
    emulator: RunningEmulator,
    work_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__TRIGGERER", "no")
    emulator.emulator.config.processing_seconds = 1.5  # still open at the sensor's first poke
    emulator.emulator.script_outcomes({"row-1": "errored:overloaded_error"})  # the transfer resubmits it
    dag = make_dag(
        f"""
        s = ClaudeBatchSubmitOperator(task_id="submit", source=["a", "b", "c"], model="claude-haiku-4-5", max_tokens=8)
        w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.5)
        t = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={str(tmp_path / "out")!r},
                                         poll_interval=0.3)
        s >> w >> t
        """
    )
    dag_run = run_dag(dag)
    logged = capfd.readouterr().out.splitlines()  # dag.test() prints the task logs
    assert task_states(dag_run) == {"submit": "success", "wait": "success", "land": "success"}
    assert xcom(dag_run, "wait")["totals"]["succeeded"] + xcom(dag_run, "wait")["totals"]["errored"] == 3
    assert _reschedules(dag_run, "wait") >= 1  # it waited in reschedule mode, between pokes
    # The resubmitted batch was polled by the transfer itself (a trigger logs under its own name).
    assert any("1/1 ended" in line and "ClaudeBatchToParquetOperator" in line for line in logged)
    warnings = [line for line in logged if WARNING in line]
    assert len([w for w in warnings if "reschedule mode" in w]) == 1, warnings  # once per try, not per poke
    assert len([w for w in warnings if "resubmitted batches" in w]) == 1, warnings
