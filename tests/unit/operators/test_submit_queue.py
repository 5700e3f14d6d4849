"""The submit operator feeding a run through a full batch queue, against the emulator's
``queue_limit`` (operators/submit.py with batching/submit/feeding.py): it creates what fits,
defers to the queue trigger, resumes only to create, and never fails on a full queue.

The oracles: the emulator's creates, its high-water mark of queued requests and its refusals,
and the landed rows by custom_id."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_claude_batch.batching.state.manifest import load_manifest
from airflow_provider_claude_batch.exceptions import ClaudeBatchBudgetError, ClaudeBatchError
from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_provider_claude_batch.sensors.batch import ClaudeBatchSensor
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator
from airflow_provider_claude_batch.triggers.queue import ClaudeBatchQueueTrigger

PROCESSING = 60.0


def _context(run_id: str = "run", try_number: int = 1) -> Any:
    ti = SimpleNamespace(dag_id="dag", run_id=run_id, task_id="submit", map_index=-1, try_number=try_number)
    ti.xcom_push = lambda key, value: None  # the links saved before a deferral
    return {"ti": ti}


def _operator(tmp_path: Path, rows: list[str], **kwargs: Any) -> ClaudeBatchSubmitOperator:
    operator = ClaudeBatchSubmitOperator(
        task_id="submit",
        source=rows,
        model="claude-haiku-4-5",
        max_tokens=8,
        work_dir=str(tmp_path / "work"),
        max_requests_per_batch=10,
        reuse_answers=False,
        **kwargs,
    )
    operator.queue_poll_interval = 0.05
    return operator


def _queue(emulator: RunningEmulator, limit: int, connection_env: Any = None) -> None:
    """The emulator's queue holds ``limit`` requests; with ``connection_env``, the connection
    knows it too (else the run learns it)."""
    emulator.emulator.config.queue_limit = limit
    emulator.emulator.config.processing_seconds = PROCESSING
    if connection_env is not None:
        connection_env("claude_batch_default", extra=json.dumps({"queue_limit": limit}))


async def _event(trigger: ClaudeBatchQueueTrigger) -> dict[str, Any] | None:
    """The trigger's event, or None when it keeps waiting (no room yet: its first polls said so)."""
    try:
        return (await asyncio.wait_for(anext(trigger.run()), timeout=1.0)).payload
    except TimeoutError:
        return None


def _step(operator: ClaudeBatchSubmitOperator, context: Any, deferred: TaskDeferred | None) -> Any:
    """One step of the task: execute, or resume from ``deferred`` once its trigger fired."""
    try:
        if deferred is None:
            return operator.execute(context)
        trigger = deferred.trigger
        assert isinstance(trigger, ClaudeBatchQueueTrigger) and deferred.method_name == "resume_feeding"
        event = asyncio.run(_event(trigger))
        if event is None:
            return deferred  # still waiting in the triggerer
        return operator.resume_feeding(context, event)
    except TaskDeferred as again:
        return again


def _feed_to_the_end(
    operators: list[tuple[ClaudeBatchSubmitOperator, Any]], emulator: RunningEmulator, states: list[Any] | None = None
) -> list[Any]:
    """Run each task's steps in turn (from ``states``: a task deferred resumes, else it executes);
    between rounds the emulator's clock moves one processing time on (every open batch ends).
    Returns each task's summary."""
    states = list(states or [None] * len(operators))
    for _ in range(20):
        for index, (operator, context) in enumerate(operators):
            if states[index] is None or isinstance(states[index], TaskDeferred):
                states[index] = _step(operator, context, states[index])
        if not any(isinstance(state, TaskDeferred) for state in states):
            return states
        emulator.emulator.advance(PROCESSING)
    raise AssertionError("the runs never finished feeding")


def _land(tmp_path: Path, summary: dict[str, Any], name: str) -> set[str]:
    destination = tmp_path / name
    ClaudeBatchToParquetOperator(
        task_id="land", manifest=summary, destination=str(destination), deferrable=False, poll_interval=0.05
    ).execute({})
    return set(pq.read_table(destination).column("custom_id").to_pylist())


def test_five_chunks_through_a_queue_of_two_land_every_row_with_five_creates(
    tmp_path: Path, emulator: RunningEmulator, connection_env: Any
) -> None:
    _queue(emulator, limit=20, connection_env=connection_env)  # two chunks of 10
    operator = _operator(tmp_path, [f"q{i}" for i in range(50)], id_prefix="r")
    first = _step(operator, _context(), None)
    assert isinstance(first, TaskDeferred)  # two created, three waiting: no worker slot held
    assert emulator.emulator.stats["batches_created"] == 2
    emulator.emulator.advance(PROCESSING)
    summary = _feed_to_the_end([(operator, _context())], emulator)[0]
    stats = emulator.emulator.stats
    assert stats["batches_created"] == 5 and stats["queue_high_water"] <= 20 and stats["queue_refusals"] == 0
    assert summary["chunks"] == 5 and len(summary["batch_ids"]) == 5
    emulator.emulator.advance(PROCESSING)
    assert _land(tmp_path, summary, "out") == {f"r-{i}" for i in range(50)}


def test_three_runs_at_once_never_exceed_the_queue_and_all_land(
    tmp_path: Path, emulator: RunningEmulator, connection_env: Any
) -> None:
    _queue(emulator, limit=25, connection_env=connection_env)  # room for two chunks of 10 at a time, never three
    runs = [
        (_operator(tmp_path, [f"{name}{i}" for i in range(30)], id_prefix=name), _context(run_id=name))
        for name in ("a", "b", "c")
    ]
    summaries = _feed_to_the_end(runs, emulator)
    stats = emulator.emulator.stats
    assert stats["batches_created"] == 9 and stats["queue_high_water"] <= 25
    assert stats["queue_refusals"] == 0  # the runs' own turns kept them under the limit
    emulator.emulator.advance(PROCESSING)
    for name, summary in zip("abc", summaries, strict=True):
        assert _land(tmp_path, summary, f"out-{name}") == {f"{name}-{i}" for i in range(30)}


def test_with_no_limit_configured_the_limit_is_learned_from_a_refusal(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    _queue(emulator, limit=30)  # the emulator knows it; the connection does not
    operator = _operator(tmp_path, [f"q{i}" for i in range(50)])
    first = _step(operator, _context(), None)
    assert isinstance(first, TaskDeferred)
    stats = emulator.emulator.stats
    assert stats["batches_created"] == 3 and stats["queue_refusals"] == 1  # the fourth was refused: waits
    assert first.trigger.limit == 39  # learned: under the 30 + 10 refused
    emulator.emulator.advance(PROCESSING)
    summary = _feed_to_the_end([(operator, _context())], emulator)[0]
    assert stats["batches_created"] == 5 and len(summary["batch_ids"]) == 5
    assert stats["queue_refusals"] == 1  # once learned, the run did not knock again
    assert stats["queue_high_water"] <= 30


class _Killed(BaseException):
    """A worker killed mid-create: no ``except Exception`` on the way closes anything."""


def test_a_full_queue_and_a_worker_killed_after_an_intent_make_five_batches_not_six(
    tmp_path: Path, emulator: RunningEmulator, connection_env: Any
) -> None:
    """Try 1 feeds two chunks, then is killed between the intent and the create of its third;
    try 2 finds the open intent, looks for that batch until the create window passed (none: the
    create never left), and feeds the rest through the queue."""
    connection_env("claude_batch_default", extra=json.dumps({"create_settle_seconds": 0, "timeout": 0.5}))
    _queue(emulator, limit=20)
    rows = [f"q{i}" for i in range(50)]
    operator = _operator(tmp_path, rows)
    deferred = _step(operator, _context(try_number=1), None)
    assert isinstance(deferred, TaskDeferred) and emulator.emulator.stats["batches_created"] == 2
    emulator.emulator.advance(PROCESSING)
    original = ClaudeBatchSubmitOperator._submission

    def killed_after_the_intent(self: ClaudeBatchSubmitOperator, context: Any) -> Any:
        hook, directory, submission = original(self, context)

        def killed(*args: Any, **kwargs: Any) -> Any:
            raise _Killed

        vars(hook)["create_batch"] = killed  # this hook only: the next step gets a fresh one
        return hook, directory, submission

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ClaudeBatchSubmitOperator, "_submission", killed_after_the_intent)
        with pytest.raises(_Killed):
            _step(operator, _context(try_number=1), deferred)
    manifest = load_manifest(tmp_path / "work" / "dag" / "run" / "submit")
    third = manifest.batches[2]
    assert third.intent_at is not None and third.intent_closed_at is None and third.batch_id is None
    assert emulator.emulator.stats["batches_created"] == 2
    summary = _feed_to_the_end([(_operator(tmp_path, rows), _context(try_number=2))], emulator)[0]
    stats = emulator.emulator.stats
    assert stats["batches_created"] == 5 and len(set(summary["batch_ids"])) == 5
    assert stats["queue_high_water"] <= 20


def test_a_run_still_feeding_stays_within_its_budget(
    tmp_path: Path, emulator: RunningEmulator, connection_env: Any
) -> None:
    """The budget is checked once for every chunk before the first is sent: what the feeding
    steps create is what the budget allowed, and what the emulator bills stays under it."""
    _queue(emulator, limit=20, connection_env=connection_env)
    operator = _operator(tmp_path, [f"q{i}" for i in range(50)], max_cost_usd=1.0)
    first = _step(operator, _context(), None)
    assert isinstance(first, TaskDeferred) and emulator.emulator.stats["batches_created"] == 2
    emulator.emulator.advance(PROCESSING)
    summary = _feed_to_the_end([(operator, _context())], emulator)[0]
    emulator.emulator.advance(PROCESSING)
    billed = emulator.emulator.snapshot()["billed"]
    assert emulator.emulator.stats["batches_created"] == 5 and billed["requests"] == 50
    assert billed["cost_usd"] <= 1.0 and summary["requests"] == 50
    over = _operator(tmp_path / "over", [f"q{i}" for i in range(50)], max_cost_usd=0.0001)
    with pytest.raises(ClaudeBatchBudgetError):  # over budget: not even the chunks that fit go out
        _step(over, _context(run_id="over"), None)
    assert emulator.emulator.stats["batches_created"] == 5


def test_the_sensor_refuses_a_run_still_feeding(tmp_path: Path, emulator: RunningEmulator, connection_env: Any) -> None:
    _queue(emulator, limit=20, connection_env=connection_env)
    assert isinstance(_step(_operator(tmp_path, [f"q{i}" for i in range(50)]), _context(), None), TaskDeferred)
    sensor = ClaudeBatchSensor(task_id="wait", manifest=str(tmp_path / "work" / "dag" / "run" / "submit"))
    with pytest.raises(ClaudeBatchError, match="still be feeding them through the batch queue"):
        sensor.execute({})


@pytest.mark.parametrize("steps", ["resumed", "retried"])
def test_a_run_overlapping_one_still_feeding_sends_no_request_twice(
    tmp_path: Path, emulator: RunningEmulator, connection_env: Any, monkeypatch: pytest.MonkeyPatch, steps: str
) -> None:
    """Run a feeds 40 rows through a queue of two chunks: its last two chunks wait for room.
    Run b, over 20 of the same rows and 10 of its own, starts while a is waiting: a's claim still
    covers the chunks it has not created (whether a's next steps resume from the deferral or come
    from a retry), so b waits for them to be created and awaits their answers instead of sending
    them too. The oracle: the emulator received each distinct request once (50), not 70."""
    from airflow_provider_claude_batch.batching.reuse import claims

    monkeypatch.setattr(claims, "MAX_PAUSE", 0.05)  # b looks at the claims often: the test stays fast
    _queue(emulator, limit=20, connection_env=connection_env)

    def reusing(rows: list[str]) -> ClaudeBatchSubmitOperator:
        operator = _operator(tmp_path, rows)
        operator.reuse_answers = True
        return operator

    run_a = reusing([f"q{i}" for i in range(40)])
    deferred = _step(run_a, _context(run_id="a"), None)
    assert isinstance(deferred, TaskDeferred) and emulator.emulator.stats["requests_received"] == 20
    run_b = reusing([f"q{i}" for i in range(20, 50)])  # q20-q39 wait in a's chunks not created yet
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(_step(run_b, _context(run_id="b"), None)))
    worker.start()
    emulator.emulator.advance(PROCESSING)
    summary_a = _feed_to_the_end([(run_a, _context(run_id="a"))], emulator, [deferred if steps == "resumed" else None])[
        0
    ]
    worker.join(timeout=60)
    assert not worker.is_alive() and outcome
    if isinstance(outcome[0], TaskDeferred):
        emulator.emulator.advance(PROCESSING)
        outcome[0] = _feed_to_the_end([(run_b, _context(run_id="b"))], emulator, outcome)[0]
    summary_b = outcome[0]
    assert emulator.emulator.stats["requests_received"] == 50  # each distinct request sent once
    emulator.emulator.advance(PROCESSING)
    assert _land(tmp_path, summary_a, "out-a") == {f"row-{i}" for i in range(40)}
    assert _land(tmp_path, summary_b, "out-b") == {f"row-{i}" for i in range(30)}


def test_a_run_held_by_a_feeding_runs_claim_waits_deferred_not_in_a_worker(
    tmp_path: Path, emulator: RunningEmulator, connection_env: Any
) -> None:
    """Run a feeds 40 rows through a queue of two chunks and keeps its claim while two chunks
    wait for room, for as long as batches take. Run b, over 20 of a's rows, gives up waiting in
    its worker after ``claim_patience``: it defers on a timer (no worker slot held, nothing
    sent, its claim dropped so it holds nobody back), and once resumed after a finished it
    awaits a's answers. Oracles: the emulator received each distinct request once (50), every
    row of both runs landed."""
    from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

    from airflow_provider_claude_batch.batching.state.run_dir import WorkDir

    _queue(emulator, limit=20, connection_env=connection_env)

    def reusing(rows: list[str]) -> ClaudeBatchSubmitOperator:
        operator = _operator(tmp_path, rows)
        operator.reuse_answers = True
        operator.claim_patience = 0.0
        return operator

    run_a = reusing([f"q{i}" for i in range(40)])
    deferred_a = _step(run_a, _context(run_id="a"), None)
    assert isinstance(deferred_a, TaskDeferred) and emulator.emulator.stats["requests_received"] == 20
    run_b = reusing([f"q{i}" for i in range(20, 50)])
    with pytest.raises(TaskDeferred) as waiting:
        run_b.execute(_context(run_id="b"))
    assert isinstance(waiting.value.trigger, TimeDeltaTrigger)
    assert waiting.value.method_name == "resume_after_claim_wait"
    assert emulator.emulator.stats["requests_received"] == 20  # b sent nothing
    assert len(WorkDir(str(tmp_path / "work")).claim_owners()) == 1  # a's claim only
    emulator.emulator.advance(PROCESSING)
    summary_a = _feed_to_the_end([(run_a, _context(run_id="a"))], emulator, [deferred_a])[0]
    try:
        summary_b = run_b.resume_after_claim_wait(_context(run_id="b"), None)
    except TaskDeferred as feeding:  # b's own 10 requests wait for room in turn
        emulator.emulator.advance(PROCESSING)
        summary_b = _feed_to_the_end([(run_b, _context(run_id="b"))], emulator, [feeding])[0]
    assert emulator.emulator.stats["requests_received"] == 50  # each distinct request sent once
    reuse = load_manifest(summary_b["manifest"]).reuse
    assert reuse is not None and reuse["awaited"] == 20
    emulator.emulator.advance(PROCESSING)
    assert _land(tmp_path, summary_a, "out-a") == {f"row-{i}" for i in range(40)}
    assert _land(tmp_path, summary_b, "out-b") == {f"row-{i}" for i in range(30)}


def test_a_resumed_feeding_step_reports_the_ceiling_and_keeps_to_the_budget(
    tmp_path: Path, emulator: RunningEmulator, connection_env: Any
) -> None:
    """The steps resumed from the deferral report the run's cost ceiling (the budget checked at
    the first step, for every chunk), and what the emulator bills stays under it; a budget
    lowered under that ceiling while the run feeds (the DAG edited) stops the next step before
    it creates anything."""
    _queue(emulator, limit=20, connection_env=connection_env)
    rows = [f"q{i}" for i in range(50)]
    operator = _operator(tmp_path, rows, max_cost_usd=1.0)
    first = _step(operator, _context(), None)
    assert isinstance(first, TaskDeferred)
    emulator.emulator.advance(PROCESSING)
    summary = _feed_to_the_end([(operator, _context())], emulator, [first])[0]
    ceiling = summary["cost_ceiling_usd"]
    assert ceiling is not None and 0 < ceiling <= 1.0
    emulator.emulator.advance(PROCESSING)
    billed = emulator.emulator.snapshot()["billed"]
    assert billed["requests"] == 50 and billed["cost_usd"] <= ceiling
    lowered = _operator(tmp_path, rows, max_cost_usd=1.0)
    deferred = _step(lowered, _context(run_id="lowered"), None)
    assert isinstance(deferred, TaskDeferred) and emulator.emulator.stats["batches_created"] == 7
    lowered.max_cost_usd = ceiling / 2
    emulator.emulator.advance(PROCESSING)
    with pytest.raises(ClaudeBatchBudgetError, match="max_cost_usd"):
        _step(lowered, _context(run_id="lowered"), deferred)
    with pytest.raises(ClaudeBatchBudgetError, match="max_cost_usd"):  # and its retry
        _step(lowered, _context(run_id="lowered", try_number=2), None)
    assert emulator.emulator.stats["batches_created"] == 7


def test_without_a_triggerer_a_run_feeds_in_its_task_and_never_defers(
    tmp_path: Path,
    emulator: RunningEmulator,
    connection_env: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """``[claude_batch] triggerer = no``: a deferral would hang, so the run waits for room in its
    own task, looking at the queue, and creates each chunk as earlier batches end (they end in
    real time here). Oracle: one execute, no deferral, five creates within the queue, one warning."""
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__TRIGGERER", "no")
    _queue(emulator, limit=20, connection_env=connection_env)
    emulator.emulator.config.processing_seconds = 0.2
    operator = _operator(tmp_path, [f"q{i}" for i in range(50)], id_prefix="r")
    summary = operator.execute(_context())  # TaskDeferred would fail the test
    stats = emulator.emulator.stats
    assert stats["batches_created"] == 5 and stats["queue_high_water"] <= 20 and stats["queue_refusals"] == 0
    assert summary["chunks"] == 5 and len(summary["batch_ids"]) == 5 and summary["cost_ceiling_usd"] is not None
    logged = capfd.readouterr()
    warnings = [line for line in (logged.out + logged.err).splitlines() if "No triggerer to defer to" in line]
    assert len(warnings) == 1 and "Waiting for room in the batch queue in this task" in warnings[0]
    emulator.emulator.advance(PROCESSING)
    assert _land(tmp_path, summary, "out") == {f"r-{i}" for i in range(50)}
