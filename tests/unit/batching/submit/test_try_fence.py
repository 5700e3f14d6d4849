"""The try fence (batching/submit/try_fence.py): the newest try that took a run folder is the
only one that may create; equal and unknown try numbers never fence each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
from airflow_provider_claude_batch.batching.submit.try_fence import TryFence
from airflow_provider_claude_batch.exceptions import ClaudeBatchSupersededError


def test_a_newer_try_that_took_the_folder_stops_the_older_one(tmp_path: Path) -> None:
    run_dir = WorkDir(str(tmp_path)).run("d", "r", "submit")
    first, second = TryFence(run_dir, 1), TryFence(run_dir, 2)
    first.take()
    first.check()  # alone: may create
    second.take()
    second.check()
    with pytest.raises(ClaudeBatchSupersededError, match="try 2 of this task instance took its run folder"):
        first.check()
    assert first.newest() == 2
    # An older try taking the folder late never erases the newer one's marker.
    first.take()
    assert sorted(p.name for p in run_dir.tries_folder.iterdir()) == ["try-00001.json", "try-00002.json"]
    with pytest.raises(ClaudeBatchSupersededError):
        first.check()


def test_equal_and_unknown_try_numbers_never_fence(tmp_path: Path) -> None:
    run_dir = WorkDir(str(tmp_path)).run("d", "r", "submit")
    TryFence(run_dir, 3).take()
    TryFence(run_dir, 3).take()
    TryFence(run_dir, 3).check()
    TryFence(run_dir, 0).take()
    TryFence(run_dir, 0).check()  # unknown: the fence does not apply
    assert TryFence(run_dir, 0).newest() == 3
    assert TryFence(WorkDir(str(tmp_path)).run("d", "r", "other"), 1).newest() == 0
