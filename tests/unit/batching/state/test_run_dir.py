"""The work directory's layout: every name, the work directory of a run folder, atomic writes
(batching/state/run_dir.py), on local disk and on an fsspec file system (``memory://``)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_claude_batch.batching.state import storage
from airflow_provider_claude_batch.batching.state.batch_index import (
    BatchOwner,
    drop_pending_create,
    pending_creates,
    read_origin,
    record_origin,
    write_pending_create,
)
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, load_manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir, WorkDir
from airflow_provider_claude_batch.exceptions import ClaudeBatchManifestError
from tests.unit.conftest import manifest_of


@pytest.fixture(params=["local", "memory"])
def work_dir(request: pytest.FixtureRequest, tmp_path: Path) -> WorkDir:
    if request.param == "local":
        return WorkDir(str(tmp_path / "work"))
    return WorkDir(f"memory://run-dir-test-{uuid.uuid4().hex[:8]}/work")


def _relative(path: Any, base: Any) -> str:
    return str(path)[len(str(base)) + 1 :]


def test_every_name_of_the_layout(work_dir: WorkDir) -> None:
    run_dir = work_dir.run("dag", "manual__2026-01-01T00:00:00+00:00", "submit", 3)
    assert _relative(run_dir, work_dir) == "dag/manual__2026-01-01T00:00:00+00:00/submit/3"
    assert _relative(work_dir.run("dag", "run", "submit"), work_dir) == "dag/run/submit"
    assert _relative(work_dir.run("../x", "r/../y", "t"), work_dir) == ".._x/r_.._y/t"  # never climbs out
    assert _relative(run_dir.manifest, run_dir) == "manifest.json"
    assert _relative(run_dir.landing_summary, run_dir) == "landing.json"
    assert _relative(run_dir.replaced_manifest(datetime(2026, 1, 2, 3, 4, 5)), run_dir) == (
        "manifest.replaced-20260102T030405.json"
    )
    assert _relative(run_dir.raw_folder, run_dir) == "raw"
    assert run_dir.raw_results_file("msgbatch_01") == "raw/msgbatch_01.jsonl"
    assert run_dir.round_requests_file(2, 7) == "round-02/chunk-00007.jsonl"
    staging = run_dir.new_staging_name()
    assert staging.startswith("requests-") and staging != run_dir.new_staging_name()
    assert run_dir.staged_file(staging, "chunk-00000.jsonl") == f"{staging}/chunk-00000.jsonl"
    assert RunDir.staging_name_of(f"{staging}/inputs-00000.parquet") == staging
    assert _relative(run_dir / "raw/x.jsonl", run_dir) == "raw/x.jsonl"
    assert _relative(work_dir.index_entry("msgbatch_01"), work_dir) == "_batches/msgbatch_01.json"
    assert _relative(work_dir.pending_entry("abc.json"), work_dir) == "_batches/_pending/abc.json"


def test_what_is_not_a_batch_id_never_becomes_a_path(work_dir: WorkDir) -> None:
    assert work_dir.index_entry("../../etc/passwd") is None and work_dir.index_entry("a/b") is None
    with pytest.raises(ClaudeBatchManifestError, match="is not a batch id"):
        RunDir.raw_results_file("../manifest")
    with pytest.raises(ValueError, match="not a staging folder"):
        work_dir.run("d", "r", "t").drop_staging("raw")


def test_a_run_folder_knows_its_work_dir_only_where_the_layout_puts_it(work_dir: WorkDir) -> None:
    made = work_dir.run("dag", "run", "submit", 3)
    assert made.work_dir is work_dir
    located = RunDir.located(str(made), "dag", "run", "submit", 3)
    assert str(located.work_dir) == str(work_dir)
    assert str(RunDir.located(str(work_dir.run("dag", "run", "t")), "dag", "run", "t", -1).work_dir) == str(work_dir)
    # The same folder for another task instance (or a copied manifest): no work dir, a clear error.
    for elsewhere in (
        RunDir.located(str(made), "dag", "run", "submit", 4),
        RunDir.located(str(made), "dag", "other", "submit", 3),
        RunDir(str(made)),
    ):
        with pytest.raises(ClaudeBatchManifestError, match=r"\{work_dir\}/\{dag_id\}/\{run_id\}/\{task_id\}"):
            _ = elsewhere.work_dir


def test_staging_folders_are_listed_and_dropped_whole(work_dir: WorkDir) -> None:
    run_dir = work_dir.run("d", "r", "t")
    assert list(run_dir.staging_names()) == []  # no folder yet
    names = [run_dir.new_staging_name() for _ in range(2)]
    for name in names:
        (run_dir / run_dir.staged_file(name, "chunk-00000.jsonl")).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / run_dir.staged_file(name, "chunk-00000.jsonl")).write_bytes(b"{}\n")
    (run_dir / "raw").mkdir(parents=True, exist_ok=True)
    assert sorted(run_dir.staging_names()) == sorted(names)
    run_dir.drop_staging(names[0])
    assert list(run_dir.staging_names()) == [names[1]]
    run_dir.drop_staging(names[0])  # already gone: nothing to do


def test_writes_are_atomic_and_leave_no_temporary(work_dir: WorkDir, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = work_dir.run("d", "r", "t")
    run_dir.write_atomic(run_dir.landing_summary, b'{"rows": 1}')
    assert json.loads(run_dir.landing_summary.read_bytes()) == {"rows": 1}

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("the process died before the write was whole")

    if storage.is_local(run_dir.path):  # a temporary renamed over the file: fails before the rename
        monkeypatch.setattr(storage, "replace", fail)
    else:  # one upload replaces the object: fails before the upload completes
        monkeypatch.setattr(type(run_dir.path.fs), "_open", fail)
    with pytest.raises(OSError, match="before the write was whole"):
        run_dir.write_atomic(run_dir.landing_summary, b'{"rows": 2}')
    monkeypatch.undo()
    assert json.loads(run_dir.landing_summary.read_bytes()) == {"rows": 1}  # the old file, whole
    assert [child.name for child in run_dir.path.iterdir()] == ["landing.json"]  # no temporary left


def test_manifest_index_and_pending_entries_are_written_through_the_layout(work_dir: WorkDir) -> None:
    run_dir = work_dir.run("d", "r", "submit", 0)
    manifest = manifest_of(
        [BatchRecord(0, 0, "requests-x/chunk-00000.jsonl", 1, 10, "", batch_id="msgbatch_a")],
        dag_id="d",
        run_id="r",
        task_id="submit",
        map_index=0,
    )
    manifest.save(run_dir)
    assert load_manifest(run_dir).batch_ids() == ["msgbatch_a"] == load_manifest(str(run_dir.manifest)).batch_ids()
    # The index entry lands in the work directory, found from a plain path of the run folder too.
    record_origin(manifest, manifest.batches[0], str(run_dir))
    assert read_origin(work_dir, "msgbatch_a") == {
        "dag_id": "d",
        "run_id": "r",
        "task_id": "submit",
        "map_index": 0,
        "chunk": 0,
        "round": 0,
    }
    owner = BatchOwner.of(manifest, manifest.batches[0])
    now = datetime.now().astimezone()
    write_pending_create(work_dir, owner, request_count=1, intent_at=now, until=now)
    assert [entry["chunk"] for entry in pending_creates(work_dir)] == [0]
    drop_pending_create(work_dir, owner)
    assert pending_creates(work_dir) == []
    # Only final names: no temporary file of an atomic write is left anywhere.
    names = [_relative(p, work_dir.path) for p in work_dir.path.rglob("*") if p.is_file()]
    assert sorted(names) == ["_batches/msgbatch_a.json", "d/r/submit/0/manifest.json"]
