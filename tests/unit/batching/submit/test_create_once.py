"""The create-once protocol (batching/submit/create_once.py) against the emulator: each record
created once with its writes in order, an earlier try's batch adopted, another try's record
taken instead of creating again. The emulator's counters are the oracle."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
from airflow_provider_claude_batch.batching.state.batch_index import pending_creates, read_origin
from airflow_provider_claude_batch.batching.state.manifest import Manifest, load_manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir, WorkDir
from airflow_provider_claude_batch.batching.submit.create_once import create_missing_batches
from airflow_provider_claude_batch.batching.submit.staging import stage_requests
from airflow_provider_claude_batch.batching.submit.submission import new_manifest
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator

SPEC = RequestSpec(prompt="{text}", model="claude-haiku-4-5", max_tokens=8)


def _manifest(work_dir: Path, rows: int = 5, per_batch: int = 2) -> tuple[Manifest, RunDir]:
    run_dir = WorkDir(str(work_dir)).run("d", "r", "submit")
    run_dir.path.mkdir(parents=True)
    limits = ChunkLimits(max_requests=per_batch)
    staged = stage_requests([{"text": f"question {i}"} for i in range(rows)], SPEC, limits, run_dir)
    manifest = new_manifest(
        staged,
        dag_id="d",
        run_id="r",
        task_id="submit",
        map_index=-1,
        conn_id="claude_batch_default",
        spec=SPEC,
        chunk_limits=limits,
    )
    manifest.save(run_dir)
    return manifest, run_dir


def test_each_record_is_created_once_with_its_index_entry_and_no_pending_create(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    manifest, run_dir = _manifest(tmp_path)
    alive: list[int] = []
    created = create_missing_batches(manifest, run_dir, ClaudeBatchHook(), on_created=lambda: alive.append(1))
    assert len(created) == 3 and len(alive) == 3
    assert load_manifest(run_dir).batch_ids() == created
    assert all(read_origin(run_dir.work_dir, batch_id) is not None for batch_id in created)
    assert pending_creates(run_dir.work_dir) == []
    # Run again: every record has its batch, so nothing is sent.
    assert create_missing_batches(load_manifest(run_dir), run_dir, ClaudeBatchHook()) == []
    assert emulator.emulator.stats["batches_created"] == 3


def test_an_earlier_try_s_unrecorded_batch_is_adopted_not_created_again(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """Try 1 sent its create and died before recording the answer: try 2 finds the batch."""
    manifest, run_dir = _manifest(tmp_path, rows=2)
    record = manifest.batches[0]
    record.intent_at = datetime.now(timezone.utc).isoformat()
    record.intent_closed_at = datetime.now(timezone.utc).isoformat()  # not in flight: look once
    manifest.save(run_dir)
    made = ClaudeBatchHook().create_batch((run_dir / record.requests_file).read_bytes(), request_count=2)
    assert create_missing_batches(load_manifest(run_dir), run_dir, ClaudeBatchHook()) == []
    assert load_manifest(run_dir).batch_ids() == [made.id]
    assert read_origin(run_dir.work_dir, made.id) is not None
    assert emulator.emulator.stats["batches_created"] == 1


def test_a_batch_another_try_recorded_meanwhile_is_taken_not_created(tmp_path: Path, emulator: RunningEmulator) -> None:
    """Two tries read the same manifest; the first creates. The second, working from its old
    copy, reads the manifest again before each create and takes the recorded batch."""
    stale, run_dir = _manifest(tmp_path, rows=2)
    fresh = load_manifest(run_dir)
    created = create_missing_batches(fresh, run_dir, ClaudeBatchHook())
    assert create_missing_batches(stale, run_dir, ClaudeBatchHook()) == []
    assert stale.batch_ids() == created and emulator.emulator.stats["batches_created"] == 1
