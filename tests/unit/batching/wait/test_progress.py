"""Batch states -> progress lines, estimates of the time left and summaries (batching/wait/progress.py),
from states the real SDK read over HTTP from the emulator (default mode: requests end with their
batch, as the API reports them; ``gradual_ending``: requests end one by one)."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from airflow_provider_claude_batch.batching.api.batch_state import BatchState, ProcessingStatus, RequestCounts
from airflow_provider_claude_batch.batching.wait.progress import Progress, estimate_seconds_left, summary_table
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.helpers import make_requests


def _state(status: ProcessingStatus, **counts: int) -> BatchState:
    return BatchState("msgbatch_x", status, RequestCounts(**counts), datetime.now(timezone.utc))


def test_the_summary_table_has_a_row_per_batch_and_a_total() -> None:
    table = summary_table({"msgbatch_a": _state("ended", succeeded=3), "msgbatch_b": _state("ended", expired=2)})
    rows = table.splitlines()
    assert [row.split()[0] for row in rows[2:]] == ["msgbatch_a", "msgbatch_b", "total"]
    assert rows[-1].split()[1:] == ["3", "0", "2", "0", "0"]


def _states(hook: ClaudeBatchHook, ids: list[str]) -> dict[str, BatchState]:
    return {batch_id: BatchState.from_batch(hook.retrieve_batch(batch_id)) for batch_id in ids}


def _now(emulator: RunningEmulator) -> float:
    return emulator.emulator.clock.now().timestamp()


def test_gradual_mode_moves_requests_out_of_processing_over_time(emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 100
    emulator.emulator.config.gradual_ending = True
    hook = ClaudeBatchHook()
    batch_id = hook.create_batch(make_requests(10)).id
    emulator.emulator.advance(35)
    batch = hook.retrieve_batch(batch_id)
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert (batch.request_counts.processing, batch.request_counts.succeeded) == (7, 3)
    emulator.emulator.advance(65)
    batch = hook.retrieve_batch(batch_id)
    assert batch.processing_status == "ended" and batch.request_counts.succeeded == 10


def test_default_mode_keeps_requests_processing_until_the_batch_ends(emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 100
    hook = ClaudeBatchHook()
    batch_id = hook.create_batch(make_requests(10)).id
    emulator.emulator.advance(99)
    assert hook.retrieve_batch(batch_id).request_counts.processing == 10


def test_a_cancel_keeps_the_answers_of_requests_that_ended(emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 100
    emulator.emulator.config.gradual_ending = True
    hook = ClaudeBatchHook()
    batch_id = hook.create_batch(make_requests(10)).id
    emulator.emulator.advance(50)
    hook.cancel_batch(batch_id)
    batch = hook.retrieve_batch(batch_id)
    assert batch.processing_status == "ended"
    assert (batch.request_counts.succeeded, batch.request_counts.canceled) == (5, 5)
    outcomes = {r.custom_id: r.result.type for r in hook.client.messages.batches.results(batch_id)}
    assert outcomes == {f"req-{i}": "succeeded" if i < 5 else "canceled" for i in range(10)}


def test_gradual_requests_give_the_time_left_even_right_after_a_restart(emulator: RunningEmulator) -> None:
    """The rate comes from the batch's own age, not from when this waiter started: a triggerer
    that just restarted (``started_at`` = now) still knows a quarter took 25 s."""
    emulator.emulator.config.processing_seconds = 100
    emulator.emulator.config.gradual_ending = True
    hook = ClaudeBatchHook()
    ids = [hook.create_batch(make_requests(100, prefix=f"b{i}")).id for i in range(2)]
    emulator.emulator.advance(25)
    states, now = _states(hook, ids), _now(emulator)
    left = estimate_seconds_left(states, now)
    assert left is not None and abs(left - 75) < 2
    line = Progress(total_batches=2, started_at=now).line(states, now)
    assert line == "batches 0/2 ended; 50 ok of 200 (25.0% done); elapsed 0:00:00; about 0:01:15 left"


def test_batches_that_ended_time_the_ones_still_open(emulator: RunningEmulator) -> None:
    """As the real API reports them (nothing until a batch ends): an open batch is expected to
    take as long as the ones of the same wait that ended."""
    emulator.emulator.config.processing_seconds = 100
    hook = ClaudeBatchHook()
    first = hook.create_batch(make_requests(10, prefix="a")).id
    assert estimate_seconds_left(_states(hook, [first]), _now(emulator)) is None  # nothing to go by
    emulator.emulator.advance(30)
    emulator.emulator.config.processing_seconds = math.inf
    second = hook.create_batch(make_requests(10, prefix="b")).id
    emulator.emulator.advance(80)
    left = estimate_seconds_left(_states(hook, [first, second]), _now(emulator))
    assert left is not None and abs(left - 20) < 2
    emulator.emulator.advance(30)  # the open batch is overdue: no honest guess
    assert estimate_seconds_left(_states(hook, [first, second]), _now(emulator)) is None


@pytest.mark.parametrize("failed", [0, 12_345])
def test_the_line_fits_the_log_view(failed: int) -> None:
    state = BatchState(
        "msgbatch_x",
        "in_progress",
        RequestCounts(succeeded=95_000, errored=failed, processing=4_000),
        datetime.fromisoformat("2026-11-01T00:00:00+00:00"),
    )
    states = {f"msgbatch_{i:026d}": state for i in range(30)}
    now = 1_793_500_000.0
    line = Progress(total_batches=30, started_at=now - 36_000).line(states, now)
    assert len(line) <= 120, line  # the per-kind line was about 170
    assert ("failed" in line) == bool(failed)
    assert "% done); elapsed 10:00:00; about" in line
