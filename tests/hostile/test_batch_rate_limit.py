"""The Message Batches endpoints' request rate limit (the emulator's ``batch_rate_limit``): a
pipeline whose calls outrun it meets 429 ``rate_limit_error`` with ``retry-after`` on creates,
polls and downloads, and still lands every row once, with no batch created twice: the hook and
the SDK wait as the server says and send again.

Oracle: the emulator's counters (calls refused for the rate, batches created) and the landed
rows by custom_id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import run_dag, task_states

PIPELINE = """
s = ClaudeBatchSubmitOperator(task_id="submit", source=[f"t{{i}}" for i in range(6)], model="claude-haiku-4-5",
                              max_tokens=8, max_requests_per_batch=1)
w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.05)
l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={destination!r})
s >> w >> l
"""


def test_a_pipeline_over_the_batch_rate_limit_lands_every_row_once(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    """Six chunks (six creates) against a limit of three batch calls per half second: the
    creates beyond it are refused for the rate and sent again after ``retry-after``."""
    emulator.emulator.config.batch_rate_limit = 3
    emulator.emulator.config.batch_rate_window_seconds = 0.5
    destination = tmp_path / "out"
    dag_run = run_dag(make_dag(PIPELINE.format(destination=str(destination))))

    assert task_states(dag_run) == {"submit": "success", "wait": "success", "land": "success"}
    stats = emulator.emulator.stats
    assert stats["rate_limited"] >= 1  # the limit was met, and waited out
    assert stats["batches_created"] == 6 and len(emulator.emulator.batch_ids()) == 6  # none twice
    ids = pq.read_table(destination, columns=["custom_id"]).column("custom_id").to_pylist()
    assert sorted(ids) == sorted(f"row-{i}" for i in range(6))
