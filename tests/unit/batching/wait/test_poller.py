"""Every decision of a wait (batching/wait/poller.py), from states the real SDK read over HTTP from the
emulator and from the errors the hook raises for real faults."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_claude_batch.batching.api.batch_state import BatchState
from airflow_provider_claude_batch.batching.wait.poller import (
    Poller,
    check_failed_fraction,
    retrieve_states,
    started_at_of,
    wait_until_ended,
)
from airflow_provider_claude_batch.exceptions import (
    ClaudeBatchAPIError,
    ClaudeBatchFailedRequestsError,
    ClaudeBatchNotFoundError,
)
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import Fault, RunningEmulator
from tests.helpers import make_requests


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args: Any) -> None:
        self.lines.append(message % args)

    warning = info


def _batches(hook: ClaudeBatchHook, count: int) -> list[str]:
    return [hook.create_batch(make_requests(2, prefix=f"p{i}")).id for i in range(count)]


def test_success_once_every_batch_ended(emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 100
    hook = ClaudeBatchHook(retry_backoff=0)
    ids = _batches(hook, 2)
    poller = Poller(ids)
    assert poller.observe(retrieve_states(hook, poller.pending())) is None
    assert poller.pending() == ids and poller.to_cancel() == ids
    emulator.emulator.advance(101)
    event = poller.observe(retrieve_states(hook, poller.pending()))
    assert event is not None and event.status == "success" and set(event.batches) == set(ids)
    assert poller.pending() == [] and poller.to_cancel() == []


def test_a_missing_batch_ends_the_wait_at_once_as_not_found(emulator: RunningEmulator) -> None:
    hook = ClaudeBatchHook(retry_backoff=0)
    poller = Poller(["msgbatch_missing"], max_poll_errors=5)
    event = poller.observe(retrieve_states(hook, poller.pending()))
    assert event is not None and event.status == "error" and event.error_kind == "not_found"
    assert isinstance(event.error(), ClaudeBatchNotFoundError) and event.status_code == 404


def test_failed_polls_count_in_a_row_and_a_clean_poll_resets_them(
    emulator: RunningEmulator, connection_env: Any
) -> None:
    connection_env("claude_batch_default", extra={"max_retries": 0})
    emulator.emulator.config.processing_seconds = 100
    hook = ClaudeBatchHook(retry_backoff=0)
    (batch_id,) = _batches(hook, 1)
    poller = Poller([batch_id], max_poll_errors=2)
    emulator.emulator.inject(Fault("retrieve", status=500, times=2, retry_after=0.001))
    for failed in (1, 2):
        assert poller.observe(retrieve_states(hook, [batch_id])) is None
        assert poller.failed_polls == failed and batch_id in poller.last_errors[0]
    assert poller.observe(retrieve_states(hook, [batch_id])) is None  # clean: the count starts over
    assert poller.failed_polls == 0 and poller.last_errors == []
    emulator.emulator.inject(Fault("retrieve", status=500, times=3, retry_after=0.001))
    events = [poller.observe(retrieve_states(hook, [batch_id])) for _ in range(3)]
    assert events[:2] == [None, None]
    last = events[2]
    assert last is not None and last.status == "error" and last.error_kind == "api" and last.status_code == 500
    assert last.message is not None and "polling failed 3 times in a row (max_poll_errors=2)" in last.message
    assert emulator.emulator.stats["faults_fired"] == 5


def test_the_deadline_times_out_naming_what_is_still_open(emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 100
    hook = ClaudeBatchHook(retry_backoff=0)
    ids = _batches(hook, 2)
    emulator.emulator.advance(101)
    late = hook.create_batch(make_requests(1, prefix="late")).id
    poller = Poller([*ids, late], deadline=time.time() - 1)
    event = poller.observe(retrieve_states(hook, poller.pending()))
    assert event is not None and event.status == "timeout" and event.open == [late]
    assert poller.to_cancel() == [late]  # the ended ones are not canceled
    assert poller.sleep_for(60) == 0.0 and Poller(ids).sleep_for(60) == 60


def test_the_sync_wait_polls_until_the_poller_decides(emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 100
    hook = ClaudeBatchHook(retry_backoff=0)
    ids = _batches(hook, 2)
    sleeps: list[float] = []

    def advance(seconds: float) -> None:  # the emulator's clock moves instead of ours
        sleeps.append(seconds)
        emulator.emulator.advance(101)

    log = _Log()
    event = wait_until_ended(Poller(ids), lambda pending: retrieve_states(hook, pending), 7.0, log=log, sleep=advance)
    assert event.status == "success" and sleeps == [7.0]
    assert len(log.lines) == 2 and log.lines[-1].startswith("batches 2/2 ended")


def test_failed_fraction_and_the_start_of_a_wait(emulator: RunningEmulator) -> None:
    emulator.emulator.script_outcomes({"req-0": "expired"})
    hook = ClaudeBatchHook(retry_backoff=0)
    batch = hook.create_batch(make_requests(4))
    states = {batch.id: BatchState.from_batch(hook.retrieve_batch(batch.id))}
    check_failed_fraction(states, 0.25)
    check_failed_fraction(states, None)
    with pytest.raises(ClaudeBatchFailedRequestsError, match=r"1 of 4 requests \(25.0%\)"):
        check_failed_fraction(states, 0.2)
    assert started_at_of(states.values()) == batch.created_at.timestamp()
    assert started_at_of([]) is None


def test_a_poll_error_is_kept_per_batch_not_raised(emulator: RunningEmulator) -> None:
    hook = ClaudeBatchHook(retry_backoff=0)
    (batch_id,) = _batches(hook, 1)
    answers = retrieve_states(hook, [batch_id, "msgbatch_missing"])
    assert isinstance(answers[batch_id], BatchState)
    assert isinstance(answers["msgbatch_missing"], ClaudeBatchAPIError)
