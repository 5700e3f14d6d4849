"""Shared batch states: the polls of many triggers on one loop become a few ``list`` pages,
against the emulator over real HTTP (its call counters are the oracle)."""

from __future__ import annotations

import asyncio

from airflow_provider_claude_batch.batching.api.batch_state import BatchState
from airflow_provider_claude_batch.exceptions import ClaudeBatchAPIError, ClaudeBatchNotFoundError
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import Fault, RunningEmulator
from airflow_provider_claude_batch.triggers.batch import ClaudeBatchTrigger
from airflow_provider_claude_batch.triggers.shared_states import SharedBatchStates, shared_batch_states
from tests.helpers import make_requests


def _create(count: int) -> list[str]:
    hook = ClaudeBatchHook()
    return [hook.create_batch(make_requests(1, prefix=f"s{i}")).id for i in range(count)]


def test_concurrent_polls_share_one_walk_through_the_pages(emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 3600
    ids = _create(25)
    lists_before = emulator.emulator.calls["list"]

    async def poll() -> list[dict[str, object]]:
        shared = SharedBatchStates(ClaudeBatchHook(), page_size=10)
        groups = [ids[i : i + 5] for i in range(0, 25, 5)]
        answers = await asyncio.gather(*(shared.states(group) for group in groups))
        assert shared.calls == {"list": 3, "retrieve": 0}
        return [state for answer in answers for state in answer.values()]

    states = asyncio.run(poll())
    assert len(states) == 25
    assert all(isinstance(s, BatchState) and s.processing_status == "in_progress" for s in states)
    assert emulator.emulator.calls["list"] - lists_before == 3  # 25 batches, pages of 10
    assert emulator.emulator.calls["retrieve"] == 0


def test_a_poll_after_a_refresh_started_gets_fresh_states(emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 3600
    first, second = _create(2)

    async def poll() -> tuple[dict[str, object], dict[str, object]]:
        shared = SharedBatchStates(ClaudeBatchHook())
        early = asyncio.ensure_future(shared.states([first]))
        await asyncio.sleep(0)  # the first refresh is in flight and does not cover `second`
        late = await shared.states([first, second])
        return await early, late

    early, late = asyncio.run(poll())
    assert set(early) == {first} and set(late) == {first, second}


def test_unknown_ids_fall_back_to_retrieve_and_report_not_found(emulator: RunningEmulator) -> None:
    (known,) = _create(1)

    async def poll() -> dict[str, object]:
        shared = SharedBatchStates(ClaudeBatchHook())
        answer = await shared.states([known, "msgbatch_nosuchbatch"])
        assert shared.calls == {"list": 1, "retrieve": 1}
        return answer

    answer = asyncio.run(poll())
    assert isinstance(answer["msgbatch_nosuchbatch"], ClaudeBatchNotFoundError)
    state = answer[known]
    assert isinstance(state, BatchState) and state.ended


def test_a_failed_listing_reaches_every_waiter(emulator: RunningEmulator) -> None:
    (batch_id,) = _create(1)
    emulator.emulator.inject(Fault("list", status=500, times=3, retry_after=0.001))

    async def poll() -> list[object]:
        shared = SharedBatchStates(ClaudeBatchHook())
        return await asyncio.gather(shared.states([batch_id]), shared.states([batch_id]), return_exceptions=True)

    first, second = asyncio.run(poll())
    assert isinstance(first, ClaudeBatchAPIError) and isinstance(second, ClaudeBatchAPIError)
    assert emulator.emulator.calls["list"] == 3  # one listing (the SDK's 2 retries), not one per waiter


def test_one_shared_instance_per_connection_per_loop(emulator: RunningEmulator, connection_env) -> None:
    connection_env("other_claude")

    async def instances() -> tuple[object, object, object]:
        return (
            await shared_batch_states(ClaudeBatchHook()),
            await shared_batch_states(ClaudeBatchHook()),
            await shared_batch_states(ClaudeBatchHook("other_claude")),
        )

    a, b, other = asyncio.run(instances())
    assert a is b and a is not other


def test_many_triggers_end_together_on_few_calls(emulator: RunningEmulator) -> None:
    triggers = 20
    emulator.emulator.config.processing_seconds = 3600
    ids = _create(triggers * 2)

    async def wait_all() -> list[dict[str, object]]:
        runs = [
            ClaudeBatchTrigger(ids[i * 2 : i * 2 + 2], poll_interval=0.01).run().__anext__() for i in range(triggers)
        ]
        waiting = asyncio.gather(*runs)
        while emulator.emulator.calls["list"] < 2:
            await asyncio.sleep(0.01)
        emulator.emulator.end_all()
        return [event.payload for event in await waiting]

    events = asyncio.run(wait_all())
    assert all(e["status"] == "success" for e in events)
    assert emulator.emulator.calls["retrieve"] == 0
    # Polls issued together share a list call: without that, each of the 20 triggers would
    # list at least twice (40 calls), and one retrieve per batch and round would be 80+.
    assert emulator.emulator.calls["list"] <= 12
