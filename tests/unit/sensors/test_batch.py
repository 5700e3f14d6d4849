"""ClaudeBatchSensor's decisions, called directly against the emulator (sensors/batch.py).
The whole deferral through Airflow is in tests/airflow."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

from airflow_provider_claude_batch.batching.state.manifest import load_manifest
from airflow_provider_claude_batch.sensors.batch import ClaudeBatchFailedRequestsError, ClaudeBatchSensor
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.triggers.batch import ClaudeBatchTrigger
from tests.unit.conftest import SubmitRun


def _context() -> Any:
    pushed: dict[str, object] = {}
    ti = SimpleNamespace(start_date=None, xcom_push=lambda key, value: pushed.__setitem__(key, value), pushed=pushed)
    return {"ti": ti}


def test_it_needs_something_to_wait_for_and_a_sane_fraction() -> None:
    with pytest.raises(ValueError, match="needs manifest="):
        ClaudeBatchSensor(task_id="w")
    with pytest.raises(ValueError, match="max_failed_fraction must be between 0 and 1"):
        ClaudeBatchSensor(task_id="w", batch_ids=["b"], max_failed_fraction=2)


def test_ended_batches_finish_without_deferring_and_are_recorded(submit_run: SubmitRun) -> None:
    _, run_dir = submit_run(["a", "b", "c"])
    sensor = ClaudeBatchSensor(task_id="w", manifest=str(run_dir))
    result = sensor.execute(_context())
    assert result["totals"]["succeeded"] == 3
    assert [r.processing_status for r in load_manifest(run_dir).batches] == ["ended"]


def test_open_batches_defer_one_trigger_and_save_the_links_first(
    submit_run: SubmitRun, emulator: RunningEmulator
) -> None:
    emulator.emulator.config.processing_seconds = 3600
    manifest, run_dir = submit_run(["a", "b", "c"], max_requests=2)
    sensor = ClaudeBatchSensor(task_id="w", manifest=str(run_dir), poll_interval=7, timeout=100)
    context = _context()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, ClaudeBatchTrigger)
    assert trigger.batch_ids == manifest.batch_ids() and trigger.poll_interval == 7
    assert trigger.deadline is not None and trigger.deadline <= time.time() + 100
    # The emulator's connection has no console_url_template and is not the real API: no Console link.
    assert set(context["ti"].pushed) == {"_link_ClaudeBatchesPageLink"}


def test_poke_is_done_only_when_every_batch_ended(submit_run: SubmitRun, emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 3600
    _, run_dir = submit_run(["a"])
    sensor = ClaudeBatchSensor(task_id="w", manifest=str(run_dir), deferrable=False)
    assert sensor.poke(_context()) is False
    emulator.emulator.advance(3601)
    done = sensor.poke(_context())
    assert not isinstance(done, bool) and done.is_done and done.xcom_value["totals"]["succeeded"] == 1


def test_a_timeout_event_cancels_the_open_batches(submit_run: SubmitRun, emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 3600
    manifest, run_dir = submit_run(["a"])
    sensor = ClaudeBatchSensor(task_id="w", manifest=str(run_dir))
    event = {"status": "timeout", "message": "late", "batches": {}, "open": manifest.batch_ids()}
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute_complete(_context(), event)
    assert emulator.emulator.stats["batches_canceled"] == 1


def test_too_many_failed_requests_fail_the_wait(submit_run: SubmitRun, emulator: RunningEmulator) -> None:
    emulator.emulator.script_outcomes({"row-0": "expired", "row-1": "errored:invalid_request_error"})
    _, run_dir = submit_run(["a", "b", "c", "d"])
    with pytest.raises(ClaudeBatchFailedRequestsError, match=r"2 of 4 requests \(50.0%\)"):
        ClaudeBatchSensor(task_id="w", manifest=str(run_dir), max_failed_fraction=0.25).execute(_context())
    assert ClaudeBatchSensor(task_id="w2", manifest=str(run_dir), max_failed_fraction=0.5).execute(_context())
