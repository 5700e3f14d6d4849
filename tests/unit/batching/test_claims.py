"""Runs that need the same requests at the same moment send each once (batching/claims.py):
two real submissions over one work directory, against the emulator; the emulator's batch
counter is the oracle."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from airflow_provider_claude_batch.batching.answer_store import AnswerStore
from airflow_provider_claude_batch.batching.chunks import ChunkLimits
from airflow_provider_claude_batch.batching.claims import claim_and_wait
from airflow_provider_claude_batch.batching.content_key import KEY_BYTES
from airflow_provider_claude_batch.batching.pricing import PriceTable
from airflow_provider_claude_batch.batching.rendering import RequestSpec
from airflow_provider_claude_batch.batching.run_dir import WorkDir
from airflow_provider_claude_batch.batching.submission import ReuseSettings, Submission, SubmitTask, Submitted
from airflow_provider_claude_batch.exceptions import ClaudeBatchBudgetError
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
    """Sets ``waiting`` when the run says it waits for an earlier claim."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Waiting for"):
            self.waiting.set()


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


def test_two_runs_planning_at_once_send_each_request_once(tmp_path: Path, emulator: RunningEmulator) -> None:
    """Run A has planned and is about to create when run B, over the same rows, plans. Without
    claims B sees no batch of A's and sends every row again (4 batches for 2 chunks). With them
    B waits for A's batches and awaits their answers: 2 batches, B creates none."""
    work_dir = WorkDir(str(tmp_path))
    held = _HeldCreates()
    said = _Said()
    outcome: dict[str, Submitted | None] = {}
    first = threading.Thread(
        target=lambda: outcome.update(a=_submission(work_dir, "a", held, _logger("a")).submit(ROWS))
    )
    first.start()
    assert held.creating.wait(30)  # A has planned: its first create is on its way
    second = threading.Thread(
        target=lambda: outcome.update(
            b=_submission(work_dir, "b", ClaudeBatchHook(retry_backoff=0), _logger("b", said)).submit(ROWS)
        )
    )
    second.start()
    # B has seen A's claim and waits (or, without claims, has planned and sent on its own).
    wait_until(lambda: said.waiting.is_set() or not second.is_alive(), timeout=30, interval=0.01, what="run B")
    held.release.set()
    first.join(30)
    second.join(60)
    a, b = outcome["a"], outcome["b"]
    assert a is not None and b is not None
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
    one older than the timeout (a run that died), nor one on other keys."""
    store = AnswerStore(WorkDir(str(tmp_path)))
    keys = np.arange(2 * KEY_BYTES, dtype=np.uint8).reshape(2, KEY_BYTES)
    other_keys = np.arange(100, 100 + KEY_BYTES, dtype=np.uint8).reshape(1, KEY_BYTES)
    store.claim("stranger", other_keys)
    assert claim_and_wait(store, "first", keys) == 0  # first to claim these keys: no wait
    # "later" claims after "first": first still holds it back; with a timeout already past, not.
    assert claim_and_wait(store, "later", keys[:1], timeout=timedelta(0)) == 0
    store.drop_claim("later")
    said = _Said()
    result: list[int] = []
    waiter = threading.Thread(
        target=lambda: result.append(claim_and_wait(store, "later", keys[:1], logger=_logger("later", said)))
    )
    waiter.start()
    assert said.waiting.wait(30)
    assert store.claims(keys, exclude="later")[0][0] == "first"
    store.drop_claim("first")  # first failed before sending: later goes on
    waiter.join(30)
    assert result == [1]
    # A claim is dropped, an in-flight record (batches sent) is not.
    sent = store.claims(keys, exclude="nobody")
    assert [owner for owner, _, _ in sent] == ["later"]
    assert all(datetime.now(timezone.utc) - at < timedelta(minutes=1) for _, at, _ in sent)
