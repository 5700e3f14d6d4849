"""The batch index: which task created a batch, and whose a batch is (no Airflow, no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_claude_batch.batching.state.batch_index import BatchOwner, index_path, read_origin, record_origin
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir, WorkDir
from airflow_provider_claude_batch.plugins.overview import Origin


def test_the_batch_index_sits_in_the_work_dir_and_takes_only_batch_ids(tmp_path: Path) -> None:
    work_dir = tmp_path / "work"
    assert RunDir.located(work_dir / "dag" / "run" / "task", "dag", "run", "task", -1).work_dir.path == work_dir
    assert RunDir.located(work_dir / "dag" / "run" / "task" / "3", "dag", "run", "task", 3).work_dir.path == work_dir
    assert index_path(work_dir, "../../etc/passwd") is None and read_origin(work_dir, "a/b") is None
    assert read_origin(work_dir, "msgbatch_unknown") is None
    (work_dir / "_batches").mkdir(parents=True)
    (work_dir / "_batches" / "msgbatch_odd.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a batch index entry"):
        read_origin(work_dir, "msgbatch_odd")


def test_an_owner_is_written_and_read_back_by_one_type(tmp_path: Path) -> None:
    manifest = Manifest(
        dag_id="dag",
        run_id="manual__2026",
        task_id="submit",
        map_index=2,
        conn_id="c",
        fingerprint="f",
        spec={},
        max_requests_per_batch=10,
        max_bytes_per_batch=1000,
        total_requests=1,
        input_columns=None,
        batches=[BatchRecord(0, 1, "round-01/chunk-00000.jsonl", 1, 10, "s", batch_id="msgbatch_x")],
    )
    run_dir = WorkDir(tmp_path).run("dag", "manual__2026", "submit", 2)
    record_origin(manifest, manifest.batches[0], run_dir)
    entry = read_origin(tmp_path, "msgbatch_x")
    assert entry is not None
    owner = BatchOwner.from_entry(entry)
    # The page's origin is the same type as the owner that decides adoption.
    assert owner == Origin.of(manifest, manifest.batches[0]) == BatchOwner("dag", "manual__2026", "submit", 2, 0, 1)
    assert owner.names_me(entry) and owner.as_entry() == entry
    # Entries written before chunks and rounds were recorded name chunk 0 of round 0.
    older = {"dag_id": "dag", "run_id": "manual__2026", "task_id": "submit"}
    assert BatchOwner.from_entry(older) == BatchOwner("dag", "manual__2026", "submit", -1, 0, 0)
    assert not owner.names_me({"run_id": "manual__2026", "task_id": "submit", "map_index": 2, "round": 1})


def test_an_owner_recording_in_the_middle_of_a_claim_never_makes_its_batch_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner of a batch records it (index entry written, then its pending create dropped)
    at the worst moment: right after the claim's first read of the work directory. Whichever
    read comes first, the batch must be the owner's (OTHER), never FREE for anyone to adopt."""
    from datetime import datetime, timedelta, timezone

    from airflow_provider_claude_batch.batching.state import batch_index
    from airflow_provider_claude_batch.batching.state.batch_index import (
        BatchOwnership,
        Whose,
        drop_pending_create,
        write_pending_create,
    )

    work_dir = WorkDir(tmp_path)
    owner = BatchOwner("dag", "run", "submit", 0, 0, 1)
    now = datetime.now(timezone.utc)
    write_pending_create(work_dir, owner, request_count=3, intent_at=now, until=now + timedelta(minutes=10))
    recorded: list[bool] = []

    def owner_records_after(read: Any) -> Any:
        def first_read_then_record(*args: Any, **kwargs: Any) -> Any:
            found = read(*args, **kwargs)
            if not recorded:
                recorded.append(True)
                entry_path = work_dir.index_entry("msgbatch_owned")
                assert entry_path is not None
                RunDir.write_atomic(entry_path, json.dumps(owner.as_entry()).encode())
                drop_pending_create(work_dir, owner)
            return found

        return first_read_then_record

    monkeypatch.setattr(batch_index, "read_origin", owner_records_after(batch_index.read_origin))
    monkeypatch.setattr(batch_index, "pending_creates", owner_records_after(batch_index.pending_creates))
    stranger = BatchOwnership(work_dir, BatchOwner("dag", "run", "submit", 1, 0, 1), request_count=3)
    assert stranger.whose("msgbatch_owned", now + timedelta(seconds=1))[0] is Whose.OTHER
    assert recorded
