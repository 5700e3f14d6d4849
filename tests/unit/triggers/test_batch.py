"""ClaudeBatchTrigger.run() against the emulator, on a real event loop (triggers/batch.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest

from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.triggers.batch import ClaudeBatchTrigger
from tests.helpers import TEST_API_KEY, make_requests


def _open_batches(emulator: RunningEmulator, count: int) -> list[str]:
    emulator.emulator.config.processing_seconds = 3600
    hook = ClaudeBatchHook(retry_backoff=0)
    return [hook.create_batch(make_requests(2, prefix=f"b{i}")).id for i in range(count)]


async def _until(condition: Callable[[], bool], seconds: float = 60) -> None:
    """Let the trigger run until ``condition()`` holds (bounded)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert condition(), "the trigger never got there"


async def test_one_event_once_every_batch_has_ended(emulator: RunningEmulator) -> None:
    ids = _open_batches(emulator, 2)
    trigger = ClaudeBatchTrigger(ids, poll_interval=0.05, deadline=time.time() + 120)
    events = trigger.run()
    first = asyncio.ensure_future(anext(events))
    await _until(lambda: emulator.emulator.calls["list"] >= 1)
    assert not first.done()  # still open: no event yet
    emulator.emulator.advance(3601)  # the emulator's clock: both batches end
    event = (await first).payload
    assert event["status"] == "success"
    assert set(event["batches"]) == set(ids)
    assert all(state["processing_status"] == "ended" for state in event["batches"].values())
    assert sum(state["request_counts"]["succeeded"] for state in event["batches"].values()) == 4
    with pytest.raises(StopAsyncIteration):  # exactly one event
        await anext(events)


async def test_the_deadline_gives_a_timeout_event_naming_the_open_batches(emulator: RunningEmulator) -> None:
    ids = _open_batches(emulator, 1)
    event = (await anext(ClaudeBatchTrigger(ids, poll_interval=0.05, deadline=time.time()).run())).payload
    assert event["status"] == "timeout" and event["open"] == ids
    assert event["batches"][ids[0]]["processing_status"] == "in_progress"


async def test_a_missing_batch_ends_the_wait_at_once(emulator: RunningEmulator) -> None:
    event = (await anext(ClaudeBatchTrigger(["msgbatch_missing"], poll_interval=0.05).run())).payload
    assert event["status"] == "error" and "msgbatch_missing" in event["message"]


async def test_killed_while_deferred_cancels_its_batches(emulator: RunningEmulator) -> None:
    ids = _open_batches(emulator, 2)
    await ClaudeBatchTrigger(ids).on_kill()
    assert emulator.emulator.stats["batches_canceled"] == 2
    await ClaudeBatchTrigger(ids, cancel_on_kill=False).on_kill()
    assert emulator.emulator.stats["batches_canceled"] == 2


async def test_it_serializes_to_what_rebuilds_it_and_never_the_key(
    emulator: RunningEmulator, connection_env: Callable[..., None]
) -> None:
    """What ``serialize()`` returns is what Airflow stores in the trigger row. The connection
    holds a key (the one the emulator accepts), the trigger has polled with it, and still its
    kwargs name the connection only (the stored row itself: tests/hostile/test_secrets.py)."""
    connection_env("conn")
    assert ClaudeBatchHook("conn").settings.api_key == TEST_API_KEY  # a key that could leak exists
    ids = _open_batches(emulator, 1)
    trigger = ClaudeBatchTrigger(ids, "conn", poll_interval=5, deadline=time.time() + 120, max_poll_errors=3)
    waiting = asyncio.ensure_future(anext(trigger.run()))
    await _until(lambda: trigger._poller is not None and trigger._poller.states.keys() == set(ids))
    waiting.cancel()
    path, kwargs = trigger.serialize()
    stored = json.dumps(kwargs)
    assert TEST_API_KEY not in stored and TEST_API_KEY.split("-")[-1] not in stored
    assert kwargs["claude_batch_conn_id"] == "conn"
    assert path == "airflow_provider_claude_batch.triggers.batch.ClaudeBatchTrigger"
    assert ClaudeBatchTrigger(**kwargs).serialize() == (path, kwargs)
    assert kwargs["started_at"] == trigger.started_at


async def test_killed_after_some_ended_cancels_only_the_open_ones(emulator: RunningEmulator) -> None:
    hook = ClaudeBatchHook(retry_backoff=0)
    emulator.emulator.config.processing_seconds = 0
    ended = hook.create_batch(make_requests(1, prefix="done")).id
    (still_open,) = _open_batches(emulator, 1)
    trigger = ClaudeBatchTrigger([ended, still_open], poll_interval=0.05, deadline=time.time() + 120)
    waiting = asyncio.ensure_future(anext(trigger.run()))
    await _until(lambda: trigger._poller is not None and trigger._poller.states.keys() == {ended, still_open})
    await trigger.on_kill()
    waiting.cancel()
    assert emulator.emulator.stats["batches_canceled"] == 1
    assert hook.retrieve_batch(still_open).processing_status in ("canceling", "ended")


async def test_a_missing_batch_reaches_the_resumed_sensor_as_not_found(emulator: RunningEmulator) -> None:
    """The type survives the deferral: the task raises what the trigger saw, not a generic error."""
    from types import SimpleNamespace

    from airflow_provider_claude_batch.exceptions import ClaudeBatchNotFoundError
    from airflow_provider_claude_batch.sensors.batch import ClaudeBatchSensor

    event = (await anext(ClaudeBatchTrigger(["msgbatch_missing"], poll_interval=0.05).run())).payload
    sensor = ClaudeBatchSensor(task_id="w", batch_ids=["msgbatch_missing"])
    with pytest.raises(ClaudeBatchNotFoundError, match="msgbatch_missing") as raised:
        sensor.execute_complete({"ti": SimpleNamespace()}, event)
    assert raised.value.status_code == 404
