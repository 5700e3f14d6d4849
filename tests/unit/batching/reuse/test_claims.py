"""Runs that need the same requests at the same moment send each once (batching/reuse/claims.py):
two real submissions over one work directory, against the emulator; the emulator's batch
counter is the oracle."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
from airflow_provider_claude_batch.batching.render.content_key import KEY_BYTES
from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
from airflow_provider_claude_batch.batching.reuse import claims
from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerStore
from airflow_provider_claude_batch.batching.reuse.claims import claim_and_wait
from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
from airflow_provider_claude_batch.batching.submit.submission import ReuseSettings, Submission, SubmitTask, Submitted
from airflow_provider_claude_batch.exceptions import ClaudeBatchBudgetError, ClaudeBatchClaimHeldError
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.system.stack import wait_until

SPEC = RequestSpec(prompt="{text}", model="claude-haiku-4-5", max_tokens=8)
ROWS = [f"ticket {i}" for i in range(6)]


class _HeldCreates(ClaudeBatchHook):
    """A hook whose creates wait for ``release``: the run is between its plan and its batches."""

    def __init__(self) -> None:
        super().__init__(retry_backoff=0)
        self.creating = threading.Event()
        self.release = threading.Event()

    def create_batch(self, *args: Any, **kwargs: Any) -> Any:
        self.creating.set()
        assert self.release.wait(30)
        return super().create_batch(*args, **kwargs)


class _Said(logging.Handler):
    """Sets ``waiting`` when the run says it waits for an earlier claim, ``choosing`` when it
    says it waits for runs still writing theirs."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()
        self.choosing = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "earlier run(s) that claimed" in message:
            self.waiting.set()
        if "still writing their claims" in message:
            self.choosing.set()


def _submission(work_dir: WorkDir, run_id: str, hook: ClaudeBatchHook, logger: logging.Logger) -> Submission:
    return Submission(
        work_dir.run("dag", run_id, "submit"),
        SubmitTask("dag", run_id, "submit", -1, ClaudeBatchHook.default_conn_name),
        SPEC,
        ChunkLimits(max_requests=4),
        hook,
        prices=PriceTable.load({"claude-haiku-4-5": {"input": 1.0, "output": 5.0}}),
        reuse=ReuseSettings(AnswerStore(work_dir), None),
        logger=logger,
    )


def _logger(name: str, handler: logging.Handler | None = None) -> logging.Logger:
    logger = logging.getLogger(f"tests.claims.{name}")
    logger.setLevel(logging.INFO)
    if handler is not None:
        logger.addHandler(handler)
    return logger


def _race(work_dir: Callable[[], WorkDir]) -> tuple[Submitted, Submitted]:
    """Run A plans and holds its first create; run B, over the same rows, plans meanwhile (each
    run with the work directory ``work_dir()`` gives it); then A's creates go. Returns both."""
    held = _HeldCreates()
    said = _Said()
    outcome: dict[str, Submitted | None] = {}
    first = threading.Thread(
        target=lambda: outcome.update(a=_submission(work_dir(), "a", held, _logger("a")).submit(ROWS))
    )
    first.start()
    assert held.creating.wait(60)  # A has planned: its first create is on its way
    hook = ClaudeBatchHook(retry_backoff=0)
    second = threading.Thread(
        target=lambda: outcome.update(b=_submission(work_dir(), "b", hook, _logger("b", said)).submit(ROWS))
    )
    second.start()
    # B has seen A's claim and waits (or, without claims, has planned and sent on its own).
    wait_until(lambda: said.waiting.is_set() or not second.is_alive(), timeout=60, interval=0.01, what="run B")
    held.release.set()
    first.join(60)
    second.join(90)
    a, b = outcome["a"], outcome["b"]
    assert a is not None and b is not None
    return a, b


def test_two_runs_planning_at_once_send_each_request_once(tmp_path: Path, emulator: RunningEmulator) -> None:
    """Run A has planned and is about to create when run B, over the same rows, plans. Without
    claims B sees no batch of A's and sends every row again (4 batches for 2 chunks). With them
    B waits for A's batches and awaits their answers: 2 batches, B creates none."""
    work_dir = WorkDir(str(tmp_path))
    a, b = _race(lambda: work_dir)
    assert emulator.emulator.stats["batches_created"] == 2
    assert len(a.created) == 2 and b.created == []
    assert b.manifest.reuse is not None and b.manifest.reuse["awaited"] == len(ROWS)
    assert sorted(b.manifest.reuse["awaited_batches"]) == sorted(a.created)


def test_a_claim_dropped_by_a_failed_run_releases_the_next_at_once(tmp_path: Path, emulator: RunningEmulator) -> None:
    """A run over budget drops its claim on the way out: a run after it sends its rows without
    waiting (it logs no wait), and the failed run left nothing in flight."""
    work_dir = WorkDir(str(tmp_path))
    broke = _submission(work_dir, "a", ClaudeBatchHook(retry_backoff=0), _logger("broke"))
    broke.max_cost_usd = 0.000001
    try:
        broke.submit(ROWS)
    except ClaudeBatchBudgetError:
        pass
    else:
        raise AssertionError("the budget should have stopped run a")
    assert work_dir.in_flight_folder.exists() and not any(work_dir.in_flight_folder.iterdir())
    said = _Said()
    done = _submission(work_dir, "b", ClaudeBatchHook(retry_backoff=0), _logger("after", said)).submit(ROWS)
    assert done is not None and len(done.created) == 2 and not said.waiting.is_set()


def test_only_an_earlier_live_claim_holds_a_run_back(tmp_path: Path) -> None:
    """Claims are ordered by time then owner: a later claim never holds a run back, nor does
    one whose run shows no sign of life for the timeout, nor one on other keys."""
    work_dir = WorkDir(str(tmp_path))
    keys = np.arange(2 * KEY_BYTES, dtype=np.uint8).reshape(2, KEY_BYTES)
    other_keys = np.arange(100, 100 + KEY_BYTES, dtype=np.uint8).reshape(1, KEY_BYTES)
    claim_and_wait(work_dir, "stranger", other_keys)
    first, waited = claim_and_wait(work_dir, "first", keys)
    assert waited == 0  # the first to claim these keys
    later, waited = claim_and_wait(work_dir, "later", keys[:1], timeout=timedelta(0))
    assert waited == 0  # with no timeout, first counts as dead
    later.drop()
    said = _Said()
    result: list[int] = []
    waiter = threading.Thread(
        target=lambda: result.append(claim_and_wait(work_dir, "later", keys[:1], logger=_logger("later", said))[1])
    )
    waiter.start()
    assert said.waiting.wait(30)
    first.drop()  # first failed before sending: later goes on
    waiter.join(30)
    assert result == [1]
    assert sorted(p.name for p in work_dir.in_flight_folder.iterdir()) == sorted(
        f"{owner}{suffix}" for owner in ("later", "stranger") for suffix in (".claim-keys", ".claim.json")
    )


def test_a_run_slow_to_write_its_claim_comes_after_one_that_claimed_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run "slow" starts claiming first, but its keys take long to write (a large claim on
    object storage). Run "quick" claims meanwhile: it waits while "slow" is still choosing, and
    "slow", whose time is taken only once its keys are written, comes after it and waits for it.
    Had the time been taken before the write, "quick" would have seen no claim and "slow" a later
    one: both would have sent."""
    work_dir = WorkDir(str(tmp_path))
    keys = np.arange(2 * KEY_BYTES, dtype=np.uint8).reshape(2, KEY_BYTES)
    writing, release = threading.Event(), threading.Event()
    real_write = claims.write_whole

    def slow_for_slow(path: Any, data: bytes) -> None:
        if path.name.startswith("slow."):
            writing.set()
            assert release.wait(30)
        real_write(path, data)

    monkeypatch.setattr(claims, "write_whole", slow_for_slow)
    outcome: dict[str, Any] = {}
    said_slow, said_quick = _Said(), _Said()
    slow = threading.Thread(
        target=lambda: outcome.update(slow=claim_and_wait(work_dir, "slow", keys, logger=_logger("slow", said_slow)))
    )
    slow.start()
    assert writing.wait(30)
    quick = threading.Thread(
        target=lambda: outcome.update(
            quick=claim_and_wait(work_dir, "quick", keys, logger=_logger("quick", said_quick))
        )
    )
    quick.start()
    assert said_quick.choosing.wait(30)  # quick holds back while slow is choosing
    release.set()
    quick.join(30)
    assert outcome["quick"][1] == 0  # then quick is first: it waits for nobody
    assert said_slow.waiting.wait(30)  # and slow, the later claim, waits for quick
    outcome["quick"][0].drop()
    slow.join(30)
    assert outcome["slow"][1] == 2


def test_a_waiting_claim_stays_alive_and_keeps_its_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that waits (or creates) refreshes its sign of life, never its place in the order."""
    monkeypatch.setattr(claims, "ALIVE_EVERY", timedelta(0))
    work_dir = WorkDir(str(tmp_path))
    claim, _ = claim_and_wait(work_dir, "run", np.zeros((1, KEY_BYTES), np.uint8))
    before = json.loads(work_dir.claim_state_file("run").read_bytes())
    claim.alive()
    after = json.loads(work_dir.claim_state_file("run").read_bytes())
    assert after["claimed_at"] == before["claimed_at"] and after["alive_at"] > before["alive_at"]
    claim.drop()
    assert not any(work_dir.in_flight_folder.iterdir())


def test_a_claim_kept_while_feeding_is_resumed_keeps_its_time_and_still_holds_others_back(tmp_path: Path) -> None:
    """A run that feeds keeps its claim between steps: ``Claim.resume`` finds it (same time, so
    the run keeps its place), refreshes it and drops it; with no claim, or one still choosing,
    there is nothing to resume."""
    work_dir = WorkDir(str(tmp_path))
    keys = np.arange(2 * KEY_BYTES, dtype=np.uint8).reshape(2, KEY_BYTES)
    assert claims.Claim.resume(work_dir, "feeding") is None
    made, _ = claim_and_wait(work_dir, "feeding", keys)
    resumed = claims.Claim.resume(work_dir, "feeding")
    assert resumed is not None and resumed.claimed_at == made.claimed_at
    resumed.alive()
    later = claims.Claim(work_dir, "later", keys[:1])
    later.make()
    assert later.blocking() == (0, 1, 1)  # the resumed claim's keys still hold the later run back
    resumed.drop()
    assert later.blocking() == (0, 0, 0) and claims.Claim.resume(work_dir, "feeding") is None
    choosing = claims.Claim(work_dir, "choosing", keys)
    choosing._write_state(claimed_at=None)
    assert claims.Claim.resume(work_dir, "choosing") is None


def test_two_runs_on_s3_each_with_its_own_file_system_send_each_request_once(
    s3_partition: Any, emulator: RunningEmulator
) -> None:
    """The same race as above on an S3 server, each run with a file system object of its own
    (two workers): what one run writes (its claim, its requests in flight) the other must see
    through its own file system's caches. Oracle: the emulator's batch counter."""
    from upath import UPath

    options = dict(s3_partition.storage_options) | {"skip_instance_cache": True}
    location = f"s3://{s3_partition.path.split('/')[0]}/work"

    def work_dir() -> WorkDir:
        return WorkDir(UPath(location, **options))

    _, b = _race(work_dir)
    assert emulator.emulator.stats["batches_created"] == 2
    assert b.created == [] and b.manifest.reuse is not None and b.manifest.reuse["awaited"] == len(ROWS)


def test_a_claim_the_storage_fails_to_read_holds_a_run_back_until_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An earlier claim whose state the storage fails to read (S3 answering 503) is unknown,
    not gone: the later run waits as for a run still choosing, then sees the claim again.
    Taken for gone, both runs planned alone and paid for the shared rows twice (the soak).
    Unreadable past ``CHOOSING_TIMEOUT`` it is an error, never a wait without end."""
    work_dir = WorkDir(str(tmp_path))
    keys = np.arange(2 * KEY_BYTES, dtype=np.uint8).reshape(2, KEY_BYTES)
    claim_and_wait(work_dir, "first", keys)
    later = claims.Claim(work_dir, "later", keys)
    later.make()
    assert later.blocking() == (0, 1, 2)
    real = WorkDir.claim_state_file

    class Failing:
        def read_bytes(self) -> bytes:
            raise OSError("503 SlowDown")

    monkeypatch.setattr(
        WorkDir, "claim_state_file", lambda self, owner: Failing() if owner == "first" else real(self, owner)
    )
    assert later.blocking()[0] == 1  # one run whose claim is unknown: waited for
    monkeypatch.setattr(claims, "CHOOSING_TIMEOUT", timedelta(0))  # unreadable for too long
    with pytest.raises(OSError, match="claim of first .* has not been readable"):
        later.blocking()
    monkeypatch.undo()
    assert later.blocking() == (0, 1, 2)


def test_a_run_out_of_patience_drops_its_claim_and_says_who_holds_it(tmp_path: Path) -> None:
    """With ``patience``, a run held back by an earlier claim gives up its own after that long
    (it planned nothing under it): no third run waits for it, and it claims again later in the
    order. A run only choosing never makes it give up (a write of seconds)."""
    work_dir = WorkDir(str(tmp_path))
    keys = np.arange(2 * KEY_BYTES, dtype=np.uint8).reshape(2, KEY_BYTES)
    first, _ = claim_and_wait(work_dir, "first", keys)
    with pytest.raises(ClaudeBatchClaimHeldError, match="1 earlier run.* hold 1 of these requests") as held:
        claim_and_wait(work_dir, "patient", keys[:1], patience=0.0)
    assert (held.value.earlier, held.value.common) == (1, 1)
    assert "patient" not in work_dir.claim_owners()
    third = claims.Claim(work_dir, "third", keys[1:])
    third.make()
    assert third.blocking() == (0, 1, 1)  # held back by first only
    first.drop()
    again, waited = claim_and_wait(work_dir, "patient", keys[:1], patience=0.0)
    assert waited == 0 and again.claimed_at is not None and third.claimed_at is not None
    assert again.claimed_at > third.claimed_at  # claimed again: after the third run now


class _LandsBetweenReads(AnswerStore):
    """The answer store of a run that plans while another run lands: right after the plan's
    first read of the store (its requests in flight, or its answers), ``land`` runs, whole."""

    def __init__(self, work_dir: WorkDir, land: Callable[[], None]) -> None:
        super().__init__(work_dir)
        self._land: Callable[[], None] | None = land

    def _after_a_read(self) -> None:
        land, self._land = self._land, None
        if land is not None:
            land()

    def in_flight(self, keys: np.ndarray, *, exclude: str) -> Any:
        try:
            return super().in_flight(keys, exclude=exclude)
        finally:
            self._after_a_read()

    def lookup(self, keys: np.ndarray, **kwargs: Any) -> Any:
        try:
            return super().lookup(keys, **kwargs)
        finally:
            self._after_a_read()


def test_a_run_planning_while_another_lands_finds_each_row_in_flight_or_answered(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """The soak's seed 9: run B planned while run A landed the same rows. A landing stores its
    answers, then retires its batches from flight; B read the store before A stored and the
    requests in flight after A retired them, found the rows in neither and paid for them again.
    Oracle: the emulator's batches (A's 2, none of B's) and B's plan (every row reused or
    awaited, none new)."""
    from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator

    work_dir = WorkDir(str(tmp_path / "work"))
    a = _submission(work_dir, "a", ClaudeBatchHook(retry_backoff=0), _logger("a")).submit(ROWS)
    assert a is not None and len(a.created) == 2
    emulator.emulator.end_all()

    def land_a() -> None:
        ClaudeBatchToParquetOperator(
            task_id="land",
            manifest=str(work_dir.run("dag", "a", "submit").manifest),
            destination=str(tmp_path / "out-a"),
            deferrable=False,
        ).execute({})

    b_run = _submission(work_dir, "b", ClaudeBatchHook(retry_backoff=0), _logger("b"))
    assert b_run.reuse is not None
    b_run.reuse = ReuseSettings(_LandsBetweenReads(work_dir, land_a), None)
    b = b_run.submit(ROWS)
    assert (tmp_path / "out-a").exists()  # A landed during B's plan
    assert emulator.emulator.stats["batches_created"] == 2
    assert b is not None and b.created == []
    assert b.manifest.reuse is not None and b.manifest.reuse["new"] == 0
