"""One feeding step against the emulator's batch queue (batching/submit/feeding.py): chunks go
in order while they fit, a refusal waits and teaches, and two workers racing for the last room
end with one create."""

from __future__ import annotations

import threading
from pathlib import Path

from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
from airflow_provider_claude_batch.batching.state.manifest import Manifest
from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
from airflow_provider_claude_batch.batching.submit.feeding import Fed, QueueSettings, feed
from airflow_provider_claude_batch.batching.submit.queue_turns import QueueTurns
from airflow_provider_claude_batch.batching.submit.submission import new_manifest, stage_requests
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import Fault, RunningEmulator


def _staged(tmp_path: Path, run_id: str, rows: int, chunk: int = 10) -> tuple[Manifest, WorkDir]:
    work_dir = WorkDir(tmp_path / "work")
    run_dir = work_dir.run("dag", run_id, "submit")
    run_dir.mkdir()
    spec = RequestSpec(prompt="{text}", model="claude-haiku-4-5", max_tokens=8, id_prefix=run_id)
    limits = ChunkLimits(max_requests=chunk)
    staged = stage_requests([f"{run_id} {i}" for i in range(rows)], spec, limits, run_dir)
    manifest = new_manifest(
        staged, dag_id="dag", run_id=run_id, task_id="submit", map_index=-1, conn_id="c", spec=spec, chunk_limits=limits
    )
    manifest.save(run_dir)
    return manifest, work_dir


def _feed(manifest: Manifest, work_dir: WorkDir, limit: int | None) -> Fed:
    hook = ClaudeBatchHook(retry_backoff=0, wait_on_full_queue=True)
    return feed(
        manifest, work_dir.run("dag", manifest.run_id, "submit"), hook, QueueSettings("c", manifest.run_id, limit)
    )


def test_chunks_go_in_order_while_they_fit_and_the_figures_say_what_is_left(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    emulator.emulator.config.processing_seconds = 60
    manifest, work_dir = _staged(tmp_path, "r1", rows=45)
    fed = _feed(manifest, work_dir, limit=25)
    assert len(fed.created) == 2 and [r.batch_id is not None for r in manifest.batches] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert (fed.waiting_chunks, fed.waiting_requests, fed.next_requests) == (3, 25, 10)
    assert (fed.queued, fed.in_queue, fed.ended, fed.limit) == (20, 20, 0, 25)
    assert fed.fill == 0.8 and "25 waiting to be sent" in fed.describe()
    emulator.emulator.advance(60)
    fed = _feed(manifest, work_dir, limit=25)  # 10 + 10 + the last 5 fill the 25 exactly
    assert len(fed.created) == 3 and fed.ended == 20 and (fed.queued, fed.fill) == (25, 1.0)
    assert fed.done and fed.reason == "" and emulator.emulator.stats["batches_created"] == 5
    assert QueueTurns(work_dir, "c").waiting() == []  # every chunk sent: out of the line


def test_a_refusal_waits_and_teaches_the_limit(tmp_path: Path, emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 60
    emulator.emulator.config.queue_limit = 15
    manifest, work_dir = _staged(tmp_path, "r1", rows=30)
    fed = _feed(manifest, work_dir, limit=None)
    assert len(fed.created) == 1 and fed.refusals == 1 and fed.limit == 19 and fed.learned
    assert manifest.batches[1].intent_at is None  # the refused create made nothing: no intent left
    again = _feed(manifest, work_dir, limit=None)  # the learned limit keeps it from knocking again
    assert again.created == [] and emulator.emulator.stats["queue_refusals"] == 1


def test_a_refusal_that_never_says_why_waits_but_teaches_no_limit(tmp_path: Path, emulator: RunningEmulator) -> None:
    """Every attempt of the first create gets a 429 that names neither the queue nor a rate: the
    step waits (no failure) with the chunk still to send, and learns no limit from it."""
    manifest, work_dir = _staged(tmp_path, "r1", rows=30)
    emulator.emulator.inject(Fault("create", status=429, retry_after=0.001, times=10, message="Rate limited"))
    fed = _feed(manifest, work_dir, limit=None)
    assert fed.created == [] and fed.refusals == 1 and fed.waiting_chunks == 3
    assert fed.limit is None and QueueTurns(work_dir, "c").learned().limit is None
    assert manifest.batches[0].intent_at is None and emulator.emulator.stats["batches_created"] == 0


def test_two_workers_racing_for_the_last_room_make_one_create(tmp_path: Path, emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 60
    emulator.emulator.config.queue_limit = 10  # room for one chunk
    runs = [_staged(tmp_path, name, rows=10) for name in ("ra", "rb")]
    results: list[Fed] = []
    threads = [threading.Thread(target=lambda m=m, w=w: results.append(_feed(m, w, limit=10))) for m, w in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert emulator.emulator.stats["batches_created"] == 1 and emulator.emulator.stats["queue_refusals"] == 0
    assert sorted(len(fed.created) for fed in results) == [0, 1]
    assert [fed.waiting_chunks for fed in results if not fed.created] == [1]


def test_a_record_the_queue_cannot_write_after_a_create_does_not_fail_the_step(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    # Object storage refusing the learned limit's write after a create must not send the run to
    # a retry: the batch exists. A directory where the record goes makes the write fail for real.
    emulator.emulator.config.processing_seconds = 60
    manifest, work_dir = _staged(tmp_path, "r1", rows=20)
    blocked = Path(str(work_dir.queue_learned_limit("c")))
    (blocked / "in-the-way").mkdir(parents=True)
    fed = _feed(manifest, work_dir, limit=None)
    assert len(fed.created) == 2 and fed.done
    assert emulator.emulator.stats["batches_created"] == 2


def test_a_refusal_learns_from_the_queue_as_it_is_and_a_learned_limit_never_fails_a_run(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """Run A fills a queue of 20 with no limit known; run B's create is refused. B read no queue
    before (nothing to plan with), so it reads it now: the limit learned is under 30 (20 queued
    plus B's 10), not under 10, which would have failed every later run with "can never fit".
    A learned limit under a whole chunk (a stale guess) gets one create a step: the API decides."""
    from airflow_provider_claude_batch.batching.api.queue_limit import LearnedLimit

    emulator.emulator.config.processing_seconds = 60
    emulator.emulator.config.queue_limit = 20
    a, work_dir = _staged(tmp_path, "a", rows=20)
    assert len(_feed(a, work_dir, limit=None).created) == 2
    b, _ = _staged(tmp_path, "b", rows=10)
    fed = _feed(b, work_dir, limit=None)
    assert fed.created == [] and fed.refusals == 1
    assert QueueTurns(work_dir, "c").learned().limit == 29
    again = _feed(b, work_dir, limit=None)  # 20 queued of 29: no room for 10, it waits
    assert again.created == [] and again.reason == "no room for the next chunk"
    emulator.emulator.advance(60)
    assert len(_feed(b, work_dir, limit=None).created) == 1
    QueueTurns(work_dir, "c").learn(LearnedLimit(at_least=0, below=5))  # a guess under one chunk
    c, _ = _staged(tmp_path, "c", rows=10)
    probed = _feed(c, work_dir, limit=None)
    assert len(probed.created) == 1 and QueueTurns(work_dir, "c").learned().limit is None
