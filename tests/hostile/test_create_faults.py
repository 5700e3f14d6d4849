"""API faults around creates and the lookups that follow them: no fault may bill a batch twice
or hand one task another task's batch.

Every case states its oracle: the emulator's counters (creates received, batches created,
lookups) and which batch ids each manifest records. The real SDK talks HTTP to the emulator.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
from airflow_provider_claude_batch.batching.state.manifest import Manifest, load_manifest
from airflow_provider_claude_batch.batching.submit.submission import (
    create_missing_batches,
    new_manifest,
    stage_requests,
)
from airflow_provider_claude_batch.exceptions import ClaudeBatchAPIError, ClaudeBatchCreateAmbiguousError
from airflow_provider_claude_batch.hooks import claude_batch
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import Fault, RunningEmulator
from tests.airflow.conftest import run_dag, task_states
from tests.helpers import make_requests
from tests.system.stack import wait_until

SPEC = RequestSpec(prompt="{text}", model="claude-haiku-4-5", max_tokens=8, id_column="id")


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every pause the hook takes, in seconds (still taken: the server's clock is real)."""
    taken: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        taken.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(claude_batch.time, "sleep", sleep)
    return taken


def _manifest(work_dir: Path, prefix: str, *, map_index: int = -1, rows: int = 3) -> tuple[Manifest, Path]:
    """A staged manifest of one chunk for the task instance ``d/r/submit[/map_index]``."""
    run_dir = work_dir / "d" / "r" / "submit"
    if map_index >= 0:
        run_dir = run_dir / str(map_index)
    run_dir.mkdir(parents=True)
    rows_ = [{"id": f"{prefix}{i}", "text": f"{prefix} question {i}"} for i in range(rows)]
    staged = stage_requests(rows_, SPEC, ChunkLimits(), run_dir)
    manifest = new_manifest(
        staged,
        dag_id="d",
        run_id="r",
        task_id="submit",
        map_index=map_index,
        conn_id="claude_batch_default",
        spec=SPEC,
        chunk_limits=ChunkLimits(),
    )
    manifest.save(run_dir)
    return manifest, run_dir


def _custom_ids(emulator: RunningEmulator, batch_id: str) -> list[str]:
    emulator.emulator.end_all()
    return sorted(json.loads(line)["custom_id"] for line in ClaudeBatchHook().iter_results_lines(batch_id))


# ---------------------------------------------------------------------------- create faults
@pytest.mark.parametrize(
    ("fault", "creates_sent"),
    [
        (Fault("create", status=429, retry_after=0.001), 2),  # refused: sent again
        (Fault("create", status=529, retry_after=0.001), 2),  # overloaded: sent again
        (Fault("create", status=500), 2),  # answered 500, nothing made: looked up once, sent again
        (Fault("create", status=500, after_commit=True), 1),  # answered 500 after making it: adopted
    ],
    ids=["429", "529", "500-before-commit", "500-after-commit"],
)
def test_create_fault_bills_one_batch(emulator: RunningEmulator, fault: Fault, creates_sent: int) -> None:
    """Oracle: exactly one batch created, and the number of creates the server received."""
    emulator.emulator.inject(fault)
    batch = ClaudeBatchHook(retry_backoff=0).create_batch(make_requests(3))
    assert emulator.emulator.stats["batches_created"] == 1
    assert emulator.emulator.calls["create"] == creates_sent
    assert emulator.emulator.batch_ids() == [batch.id]


@pytest.mark.parametrize("status", [429, 529])
def test_retry_after_is_honoured_on_create(emulator: RunningEmulator, pauses: list[float], status: int) -> None:
    """Oracle: the pause before the second create is at least the server's retry-after, even
    with no backoff of our own (the old rule took the shorter of the two: no pause at all)."""
    emulator.emulator.inject(Fault("create", status=status, retry_after=0.3))
    ClaudeBatchHook(retry_backoff=0).create_batch(make_requests(2))
    assert pauses and min(pauses) >= 0.3
    assert emulator.emulator.calls["create"] == 2 and emulator.emulator.stats["batches_created"] == 1


def test_retry_after_beyond_the_cap_fails_without_resending(emulator: RunningEmulator) -> None:
    """Oracle: one create received, none made; the error names the cap."""
    emulator.emulator.inject(Fault("create", status=429, retry_after=30))
    with pytest.raises(ClaudeBatchAPIError, match="max_retry_after") as raised:
        ClaudeBatchHook(retry_backoff=0, max_retry_after=1).create_batch(make_requests(2))
    assert raised.value.created_nothing
    assert emulator.emulator.calls["create"] == 1 and emulator.emulator.stats["batches_created"] == 0


@pytest.mark.parametrize("status", [429, 500, 529])
def test_a_failing_lookup_never_creates_blindly(emulator: RunningEmulator, status: int) -> None:
    """The create fails ambiguously and every lookup fails too (the SDK's own 2 retries
    included). Oracle: one create received, no batch made, an error that says why."""
    emulator.emulator.inject(Fault("create", status=500))
    emulator.emulator.inject(Fault("list", status=status, retry_after=0.001, times=3))
    with pytest.raises(ClaudeBatchCreateAmbiguousError, match="lookup .* failed too"):
        ClaudeBatchHook(retry_backoff=0).create_batch(make_requests(2))
    assert emulator.emulator.calls["create"] == 1 and emulator.emulator.calls["list"] == 3
    assert emulator.emulator.stats["batches_created"] == 0


@pytest.mark.parametrize("status", [429, 500, 529])
def test_a_lookup_that_recovers_finds_the_batch(emulator: RunningEmulator, status: int) -> None:
    """One list fails, the SDK's retry gets the page. Oracle: one create, adopted."""
    emulator.emulator.inject(Fault("create", status=500, after_commit=True))
    emulator.emulator.inject(Fault("list", status=status, retry_after=0.001))
    ClaudeBatchHook(retry_backoff=0).create_batch(make_requests(2))
    assert emulator.emulator.calls["create"] == 1 and emulator.emulator.stats["batches_created"] == 1


@pytest.mark.parametrize("after_commit", [False, True], ids=["slow-before-create", "slow-answer-after-create"])
def test_a_create_past_the_client_timeout_is_billed_once(
    connection_env: Any, emulator: RunningEmulator, after_commit: bool
) -> None:
    """The client gives up after 1 s; the server makes the batch at 1.5 s (slow before create)
    or at once and answers at 1.5 s (slow answer). Oracle: one create received, one batch made
    (a single immediate lookup found nothing in the first case and created a second batch)."""
    connection_env("impatient", extra={"timeout": 1})
    emulator.emulator.inject(Fault("create", delay_seconds=1.5, after_commit=after_commit))
    batch = ClaudeBatchHook("impatient", retry_backoff=0).create_batch(make_requests(3))
    assert emulator.emulator.calls["create"] == 1
    assert emulator.emulator.stats["batches_created"] == 1
    assert emulator.emulator.batch_ids() == [batch.id]


@pytest.mark.parametrize("delay", [1.5, 2.5], ids=["within-twice-the-timeout", "later-than-twice-the-timeout"])
def test_slow_creates_in_a_dag_make_one_batch_per_chunk(
    make_dag: Any, connection_env: Any, emulator: RunningEmulator, work_dir: Path, delay: float
) -> None:
    """The issue's repro: connection timeout 1 s, every create made by the server only after
    ``delay``, 3 chunks. Oracle: 3 creates received, 3 batches (4 before the fix). At 2.5 s the
    server commits past twice the timeout, the old lookup window (the timeout plus a settle time
    of the timeout): how late a server commits does not scale with the client's timeout, so the
    settle time has a floor (4 batches without it)."""
    connection_env("slow_api", extra={"timeout": 1})
    emulator.emulator.inject(Fault("create", delay_seconds=delay, times=3))
    dag = make_dag(
        """
        ClaudeBatchSubmitOperator(task_id="submit", source=[f"t{i}" for i in range(5)], model="claude-haiku-4-5",
                                  max_tokens=8, max_requests_per_batch=2, claude_batch_conn_id="slow_api")
        """
    )
    assert task_states(run_dag(dag)) == {"submit": "success"}
    assert emulator.emulator.calls["create"] == 3
    assert emulator.emulator.stats["batches_created"] == 3


def test_the_settle_time_is_the_connection_s_when_it_sets_one(connection_env: Any) -> None:
    connection_env("floor", extra={"timeout": 1})
    connection_env("own", extra={"timeout": 1, "create_settle_seconds": 4})
    assert ClaudeBatchHook("floor").create_window.total_seconds() == 1 + limits.CREATE_SETTLE_FLOOR_SECONDS
    assert ClaudeBatchHook("own").create_window.total_seconds() == 5
    assert ClaudeBatchHook("own", create_settle_seconds=2).create_window.total_seconds() == 3


# ---------------------------------------------------------------------------- whose batch
def test_mapped_tasks_of_equal_size_never_adopt_each_other(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path
) -> None:
    """Two map indexes of 3 rows each; the create of the second is answered 500 without
    making anything. Oracle: 2 batches made, each manifest records its own, and the second
    batch holds the second input's custom_ids (before the fix it adopted the first's)."""
    emulator.emulator.config.processing_seconds = 3600
    emulator.emulator.inject(Fault("create", status=500, skip=1))
    dag = make_dag(
        """
        ClaudeBatchSubmitOperator.partial(task_id="submit", model="claude-haiku-4-5", max_tokens=8,
                                          id_column="id").expand(
            source=[[{"id": f"{p}{i}", "text": f"{p} {i}"} for i in range(3)] for p in ("a", "b")]
        )
        """
    )
    dag_run = run_dag(dag)
    assert {ti.map_index: str(ti.state) for ti in dag_run.get_task_instances()} == {0: "success", 1: "success"}
    assert emulator.emulator.stats["batches_created"] == 2 and emulator.emulator.calls["create"] == 3
    run_dir = work_dir / dag.dag_id / dag_run.run_id / "submit"
    first, second = (load_manifest(run_dir / str(i)).batch_ids() for i in (0, 1))
    assert first != second
    assert _custom_ids(emulator, second[0]) == ["b0", "b1", "b2"]


class _HoldAfterCreate(ClaudeBatchHook):
    """A hook that, once its create has returned, waits before the caller may record it: the
    gap between a create's answer and its index entry, held open on purpose."""

    def __init__(self) -> None:
        super().__init__(retry_backoff=0)
        self.created = threading.Event()
        self.release = threading.Event()

    def create_batch(self, *args: Any, **kwargs: Any) -> Any:
        batch = super().create_batch(*args, **kwargs)
        self.created.set()
        assert self.release.wait(30)
        return batch


def test_a_batch_not_yet_recorded_by_its_owner_is_not_adopted(emulator: RunningEmulator, tmp_path: Path) -> None:
    """Map index 0 has made its batch but not recorded it yet; map index 1's create (same
    size) is answered 500 without making anything, and its lookup sees index 0's batch with no
    index entry. Oracle: index 1 waits until index 0 records it, then creates its own: 2
    batches, each manifest on disk records its own batch, and each batch holds its task's
    custom_ids."""
    work_dir = tmp_path / "work"
    first, first_dir = _manifest(work_dir, "a", map_index=0)
    second, second_dir = _manifest(work_dir, "b", map_index=1)
    holding = _HoldAfterCreate()
    outcomes: dict[str, dict[str, Any]] = {"owner": {}, "other": {}}

    def task(name: str, manifest: Manifest, run_dir: Path, hook: ClaudeBatchHook) -> None:
        try:
            outcomes[name]["created"] = create_missing_batches(manifest, run_dir, hook)
        except BaseException as exc:  # raised again in the test's thread below
            outcomes[name]["error"] = exc

    owner = threading.Thread(target=task, args=("owner", first, first_dir, holding))
    owner.start()
    assert holding.created.wait(30)
    emulator.emulator.inject(Fault("create", status=500))
    other = threading.Thread(target=task, args=("other", second, second_dir, ClaudeBatchHook(retry_backoff=0)))
    other.start()
    # Index 1 has failed its create and looked (and found the unrecorded batch): let index 0 record it.
    wait_until(lambda: emulator.emulator.calls["list"] >= 1, timeout=30, interval=0.01, what="the lookup")
    holding.release.set()
    owner.join(30)
    other.join(30)
    assert not owner.is_alive() and not other.is_alive(), "a task is still creating"
    for outcome in outcomes.values():
        if "error" in outcome:
            raise outcome["error"]
    assert emulator.emulator.stats["batches_created"] == 2
    (owned,) = load_manifest(first_dir).batch_ids()
    (own,) = load_manifest(second_dir).batch_ids()
    assert outcomes["owner"]["created"] == [owned] and outcomes["other"]["created"] == [own]
    assert owned != own
    assert _custom_ids(emulator, owned) == ["a0", "a1", "a2"]
    assert _custom_ids(emulator, own) == ["b0", "b1", "b2"]


# ---------------------------------------------------------------------------- tries in flight
def test_a_clear_during_an_in_flight_create_waits_for_it(
    connection_env: Any, emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Try 1's create is still on the wire (the server makes the batch after 1.5 s) when try 2
    of the same task instance starts from the manifest on disk (a clear, or a second try
    racing it). Oracle: one create received, one batch made, and both tries record it (before
    the fix try 2 looked once, found nothing and created a second batch)."""
    connection_env("short", extra={"timeout": 3})
    manifest, run_dir = _manifest(tmp_path / "work", "a")
    emulator.emulator.inject(Fault("create", delay_seconds=1.5))
    first_try: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: first_try.update(created=create_missing_batches(manifest, run_dir, ClaudeBatchHook("short")))
    )
    thread.start()
    wait_until(lambda: emulator.emulator.calls["create"] == 1, timeout=30, interval=0.01, what="try 1's create")
    second = load_manifest(run_dir)
    assert second.batches[0].intent_at is not None and second.batches[0].batch_id is None
    assert create_missing_batches(second, run_dir, ClaudeBatchHook("short", retry_backoff=0)) == []
    thread.join(30)
    assert emulator.emulator.calls["create"] == 1
    assert emulator.emulator.stats["batches_created"] == 1
    assert first_try["created"] == second.batch_ids() == load_manifest(run_dir).batch_ids()


def test_a_newer_try_fences_an_older_one_still_creating(
    connection_env: Any, emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Try 1 (its own process) is in the create of chunk 0 (the server answers after 6 s) when
    a clear starts try 2 on the same run folder. Try 2 waits for chunk 0's batch and adopts it;
    try 1, answered, must not go on to create chunks 1 and 2 beside try 2. Oracle: 3 creates
    and 3 batches for 3 chunks (5 before the fence), try 1 stopped as superseded, and the
    manifest names the 3 batches."""
    import subprocess
    import sys

    from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
    from airflow_provider_claude_batch.batching.submit.submission import Submission, SubmitTask
    from tests.hostile.try_fence_rows import ROWS, SPEC

    connection_env("fenced", extra={"timeout": 30})
    emulator.emulator.inject(Fault("create", delay_seconds=6))
    work_dir = tmp_path / "work"
    first = subprocess.Popen(
        [sys.executable, "-m", "tests.hostile.submit_try_process", str(work_dir), "1", "fenced"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: emulator.emulator.calls["create"] == 1, timeout=120, interval=0.01, what="try 1's create")
        run_dir = WorkDir(str(work_dir)).run("d", "r", "submit")
        second = Submission(
            run_dir,
            SubmitTask("d", "r", "submit", -1, "fenced", try_number=2),
            SPEC,
            ChunkLimits(max_requests=2),
            ClaudeBatchHook("fenced", retry_backoff=0),
        ).submit(ROWS)
        out, _ = first.communicate(timeout=120)
    finally:
        first.kill()
    assert out.strip().splitlines()[-1].startswith("ClaudeBatchSupersededError: try 2")
    assert second is not None and len(second.created) == 2  # chunk 0 adopted, 1 and 2 created
    assert emulator.emulator.calls["create"] == 3
    assert emulator.emulator.stats["batches_created"] == 3
    assert sorted(load_manifest(run_dir).batch_ids()) == sorted(emulator.emulator.batch_ids())


def test_a_failed_create_is_not_waited_for_by_the_next_try(emulator: RunningEmulator, tmp_path: Path) -> None:
    """Try 1's create is refused (400: nothing made) and the task fails; its retry must not
    wait out a create window for it (600 s by default here). Oracle: 2 creates received, 1
    batch made, and the retry finished well inside the window."""
    manifest, run_dir = _manifest(tmp_path / "work", "a")
    emulator.emulator.inject(Fault("create", status=400))
    with pytest.raises(ClaudeBatchAPIError):
        create_missing_batches(manifest, run_dir, ClaudeBatchHook(retry_backoff=0))
    assert load_manifest(run_dir).batches[0].intent_at is None
    started = time.monotonic()
    created = create_missing_batches(load_manifest(run_dir), run_dir, ClaudeBatchHook(retry_backoff=0))
    assert time.monotonic() - started < 60
    assert len(created) == 1
    assert emulator.emulator.calls["create"] == 2 and emulator.emulator.stats["batches_created"] == 1
