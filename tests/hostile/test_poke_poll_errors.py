"""Poke mode (``deferrable=False``) tolerates ``max_poll_errors`` consecutive failed polls, like
the trigger. Oracle: the emulator's retrieve faults fired and the sensor's state."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_claude_batch.testing import Fault, RunningEmulator
from tests.airflow.conftest import run_dag, task_states

DAG = """
s = ClaudeBatchSubmitOperator(task_id="submit", source=["a", "b"], model="claude-haiku-4-5", max_tokens=8)
w = ClaudeBatchSensor(task_id="wait", manifest=s.output, deferrable=False, mode="poke", poll_interval=0.05,
                      max_poll_errors={max_poll_errors})
s >> w
"""


@pytest.mark.parametrize(("max_poll_errors", "state"), [(3, "success"), (2, "failed")])
def test_poke_mode_fails_only_after_max_poll_errors_in_a_row(
    max_poll_errors: int,
    state: str,
    make_dag,
    connection_env,
    emulator: RunningEmulator,
    work_dir: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    connection_env("claude_batch_default", extra={"max_retries": 0})  # one retrieve per poke
    emulator.emulator.inject(Fault("retrieve", status=500, times=3, retry_after=0.001))
    dag_run = run_dag(make_dag(DAG.format(max_poll_errors=max_poll_errors)))

    assert task_states(dag_run) == {"submit": "success", "wait": state}
    assert emulator.emulator.stats["faults_fired"] == 3
    if state == "failed":
        assert "polling failed 3 times in a row (max_poll_errors=2)" in "".join(capfd.readouterr())
