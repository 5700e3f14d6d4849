"""Turns at the batch queue in a real work directory (batching/submit/queue_turns.py): one lock
holder at a time, a run's place kept across its steps, dead runs passed over, the learned limit
kept."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow_provider_claude_batch.batching.api.queue_limit import LearnedLimit
from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
from airflow_provider_claude_batch.batching.submit import queue_turns
from airflow_provider_claude_batch.batching.submit.queue_turns import QueueTurns


def _turns(tmp_path: Path) -> QueueTurns:
    return QueueTurns(WorkDir(tmp_path), "conn")


def test_one_holder_at_a_time_and_the_other_gives_up(tmp_path: Path) -> None:
    turns = _turns(tmp_path)
    with turns.locked("run-a") as first:
        assert first
        with turns.locked("run-b", wait_seconds=0.2) as second:
            assert not second  # run-a is creating: come back later
    with turns.locked("run-b", wait_seconds=0.2) as later:
        assert later  # released on leaving the block


def test_the_same_run_takes_its_own_lock_and_a_dead_holder_loses_it(tmp_path: Path) -> None:
    turns = _turns(tmp_path)
    lock = WorkDir(tmp_path).queue_lock("conn")
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"owner": "run-a", "token": "old", "alive_at": datetime.now(timezone.utc).isoformat()}))
    with turns.locked("run-a", wait_seconds=0.2) as again:
        assert again  # a killed try of the same run left it: its next try goes on
    stale = datetime.now(timezone.utc) - queue_turns.LOCK_TIMEOUT - timedelta(seconds=1)
    lock.write_text(json.dumps({"owner": "run-dead", "token": "x", "alive_at": stale.isoformat()}))
    with turns.locked("run-b", wait_seconds=0.2) as taken:
        assert taken
    assert not lock.exists()


def test_a_lock_file_left_empty_is_taken_over_once_it_is_old(tmp_path: Path) -> None:
    """A worker killed between creating the lock and writing its holder leaves an empty file:
    it holds the others back while it may still be written, then no longer (it used to hold
    every run of the connection back for ever)."""
    turns = _turns(tmp_path)
    lock = WorkDir(tmp_path).queue_lock("conn")
    lock.parent.mkdir(parents=True)
    lock.write_bytes(b"")
    with turns.locked("run-b", wait_seconds=0.2) as young:
        assert not young
    old = time.time() - queue_turns.LOCK_TIMEOUT.total_seconds() - 1
    os.utime(lock, (old, old))
    with turns.locked("run-b", wait_seconds=0.2) as taken:
        assert taken
    assert not lock.exists()


def test_a_run_keeps_its_place_and_dead_or_gone_runs_leave_the_line(tmp_path: Path) -> None:
    turns = _turns(tmp_path)
    first = turns.enter("run-a", priority=1, next_requests=10, waiting_requests=30)
    turns.enter("run-b", priority=5, next_requests=10, waiting_requests=10)
    again = turns.enter("run-a", priority=1, next_requests=10, waiting_requests=20)
    assert again.since == first.since  # its place in line survives its steps
    assert {run.owner: run.waiting_requests for run in turns.waiting()} == {"run-a": 20, "run-b": 10}
    entry = WorkDir(tmp_path).queue_entry("conn", "run-b")
    data = json.loads(entry.read_text())
    data["alive_at"] = (datetime.now(timezone.utc) - queue_turns.ENTRY_TIMEOUT).isoformat()
    entry.write_text(json.dumps(data))
    assert [run.owner for run in turns.waiting()] == ["run-a"]  # a dead run is passed over
    turns.leave("run-a")
    turns.leave("run-a")  # never raises
    assert turns.waiting() == []


def test_the_learned_limit_is_kept_per_connection(tmp_path: Path) -> None:
    turns = _turns(tmp_path)
    assert turns.learned() == LearnedLimit()
    turns.learn(LearnedLimit(at_least=20, below=40))
    assert turns.learned().limit == 39
    assert QueueTurns(WorkDir(tmp_path), "other").learned() == LearnedLimit()
