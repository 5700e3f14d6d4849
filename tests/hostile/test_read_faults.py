"""API faults on everything but the create: retrieve, list, results and cancel answering 429,
500 or 529 more often than the SDK's own retries absorb, and the API gone altogether while a
wait is under way. None may lose a row, land one twice, or create a batch.

Every case states its oracle: the emulator's counters (faults fired, batches created or
canceled) and the landed rows by custom_id. The real SDK talks HTTP to the emulator; the
creates faults are in ``test_create_faults.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.wait.cancel import cancel_batches
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import EmulatorConfig, Fault, RunningEmulator, start_emulator
from airflow_provider_claude_batch.testing.pytest_plugin import connection_uri_json
from airflow_provider_claude_batch.triggers.batch import ClaudeBatchTrigger
from tests.airflow.conftest import run_dag, task_states
from tests.helpers import TEST_API_KEY, make_requests

STATUSES = [429, 500, 529]

PIPELINE = """
s = ClaudeBatchSubmitOperator(task_id="submit", source=[f"t{{i}}" for i in range(5)], model="claude-haiku-4-5",
                              max_tokens=8, max_requests_per_batch=3)
w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.05)
l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={destination!r})
s >> w >> l
"""


@pytest.mark.parametrize("status", STATUSES)
def test_read_faults_on_every_endpoint_lose_no_row(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path, status: int
) -> None:
    """Each read endpoint fails three times in a row, one more than the SDK retries: the
    sensor's check before deferring (retrieve), the trigger's first poll (list) and the first
    results download (results) each fail as a whole. Oracle: every task succeeds in its first
    try, all 9 faults fired, 2 batches for 2 chunks, and the Parquet holds each custom_id once."""
    for endpoint in ("retrieve", "list", "results"):
        emulator.emulator.inject(Fault(endpoint, status=status, retry_after=0.001, times=3))
    destination = tmp_path / "out"
    dag_run = run_dag(make_dag(PIPELINE.format(destination=str(destination))))

    assert task_states(dag_run) == {"submit": "success", "wait": "success", "land": "success"}
    assert {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()} == {"submit": 1, "wait": 1, "land": 1}
    assert emulator.emulator.stats["faults_fired"] == 9
    assert emulator.emulator.stats["batches_created"] == 2 and emulator.emulator.calls["create"] == 2
    ids = pq.read_table(destination, columns=["custom_id"]).column("custom_id").to_pylist()
    assert sorted(ids) == [f"row-{i}" for i in range(5)]


@pytest.mark.parametrize("status", STATUSES)
def test_a_refused_cancel_is_retried_then_reported_never_raised(
    emulator: RunningEmulator, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A cancel answered ``status`` twice goes through on the SDK's retry; one answered three
    times is reported as a warning naming the batch and does not raise (it must not hide the
    reason the task is failing). Oracle: the emulator's cancel counters and the batch's state."""
    emulator.emulator.config.processing_seconds = 3600
    hook = ClaudeBatchHook(retry_backoff=0)
    first, second = (hook.create_batch(make_requests(2, prefix=p)).id for p in ("a", "b"))

    emulator.emulator.inject(Fault("cancel", status=status, retry_after=0.001, times=2))
    assert cancel_batches(hook, [first], reason="Input changed") == [first]
    assert emulator.emulator.calls["cancel"] == 3 and emulator.emulator.stats["batches_canceled"] == 1

    emulator.emulator.inject(Fault("cancel", status=status, retry_after=0.001, times=3))
    with caplog.at_level(logging.WARNING):
        assert cancel_batches(hook, [second], reason="Input changed") == []
    assert emulator.emulator.calls["cancel"] == 6 and emulator.emulator.stats["batches_canceled"] == 1
    assert hook.retrieve_batch(second).processing_status == "in_progress"
    assert any(f"Input changed: could not cancel batch {second}: " in r.getMessage() for r in caplog.records)


async def _until(condition: Callable[[], bool], seconds: float = 60) -> None:
    """Let the trigger run on this loop until ``condition()`` holds (bounded)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert condition(), "the trigger never got there"


async def test_an_outage_mid_wait_loses_no_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API goes away while a trigger waits (the emulator stops: connections refused) and
    comes back on the same address with its state file. Oracle: the polls in between fail
    without ending the wait, the wait ends with success once the batch has ended, the
    restarted emulator created nothing, and the results hold every custom_id once."""
    config = EmulatorConfig(api_keys=frozenset({TEST_API_KEY}), processing_seconds=3600)
    config.state_file = str(tmp_path / "state.json")
    before = start_emulator(config)
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", connection_uri_json(before, max_retries=0))
    try:
        batch_id = ClaudeBatchHook(retry_backoff=0).create_batch(make_requests(4)).id
        trigger = ClaudeBatchTrigger([batch_id], poll_interval=0.05, deadline=time.time() + 120, max_poll_errors=50)
        waiting = asyncio.ensure_future(anext(trigger.run()))
        await _until(lambda: before.emulator.calls["list"] >= 1)
    finally:
        before.stop()
    await _until(lambda: trigger._poller is not None and trigger._poller.failed_polls >= 2)
    assert not waiting.done()

    after = start_emulator(replace(config), port=before.port)
    try:
        after.emulator.end_all()
        event = (await waiting).payload
        assert event["status"] == "success"
        assert event["batches"][batch_id]["request_counts"]["succeeded"] == 4
        assert after.emulator.stats["batches_created"] == 0
        lines = ClaudeBatchHook().iter_results_lines(batch_id)
        assert sorted(json.loads(line)["custom_id"] for line in lines) == [f"req-{i}" for i in range(4)]
    finally:
        after.stop()
