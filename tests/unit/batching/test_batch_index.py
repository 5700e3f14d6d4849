"""The batch index: which task created a batch, and whose a batch is (no Airflow, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.batch_index import BatchOwner, index_path, read_origin, record_origin
from airflow_provider_claude_batch.batching.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.batching.run_dir import RunDir, WorkDir
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
