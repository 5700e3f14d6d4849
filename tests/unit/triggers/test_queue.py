"""ClaudeBatchQueueTrigger.run() against the emulator (triggers/queue.py): it fires once the
queue has room for the run's next chunk, or once a batch ended when no limit is known, or at
the recheck; and it survives serialization."""

from __future__ import annotations

import asyncio
import time

from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.triggers.queue import ClaudeBatchQueueTrigger
from tests.helpers import make_requests


def _fill(emulator: RunningEmulator, *sizes: int) -> None:
    emulator.emulator.config.processing_seconds = 60
    hook = ClaudeBatchHook(retry_backoff=0)
    for index, size in enumerate(sizes):
        hook.create_batch(make_requests(size, prefix=f"b{index}"))


async def _first(trigger: ClaudeBatchQueueTrigger, seconds: float = 1.0) -> dict[str, object] | None:
    try:
        return (await asyncio.wait_for(anext(trigger.run()), timeout=seconds)).payload
    except TimeoutError:
        return None


async def test_it_fires_when_the_next_chunk_fits_a_known_limit(emulator: RunningEmulator) -> None:
    _fill(emulator, 6, 4)
    assert await _first(ClaudeBatchQueueTrigger(needed=5, limit=12, poll_interval=0.05)) is None  # 10 + 5 > 12
    assert await _first(ClaudeBatchQueueTrigger(needed=2, limit=12, poll_interval=0.05)) == {
        "status": "room",
        "queued": 10,
    }
    emulator.emulator.advance(60)
    assert await _first(ClaudeBatchQueueTrigger(needed=5, limit=12, poll_interval=0.05)) == {
        "status": "room",
        "queued": 0,
    }


async def test_with_no_limit_it_fires_once_fewer_requests_are_queued(emulator: RunningEmulator) -> None:
    _fill(emulator, 6)
    waiting = ClaudeBatchQueueTrigger(needed=5, queued_at_start=6, poll_interval=0.05)
    assert await _first(waiting) is None
    emulator.emulator.advance(60)
    assert await _first(waiting) == {"status": "room", "queued": 0}


async def test_the_recheck_wakes_the_run_whatever_the_queue_holds(emulator: RunningEmulator) -> None:
    _fill(emulator, 6)
    event = await _first(ClaudeBatchQueueTrigger(needed=50, limit=10, poll_interval=5, recheck_at=time.time() + 0.1))
    assert event == {"status": "recheck", "queued": 6}


def test_it_serializes_every_argument_and_no_key() -> None:
    trigger = ClaudeBatchQueueTrigger("conn", needed=3, limit=9, queued_at_start=4, poll_interval=2, recheck_at=5.0)
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_claude_batch.triggers.queue.ClaudeBatchQueueTrigger"
    assert ClaudeBatchQueueTrigger(**kwargs).serialize() == (path, kwargs)
    assert kwargs["needed"] == 3 and "key" not in str(kwargs).lower()
