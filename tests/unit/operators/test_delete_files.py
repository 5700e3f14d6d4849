"""ClaudeBatchDeleteFilesOperator, called directly against the emulator: files uploaded by a run
that landed are deleted once old enough (the emulator's delete counter is the oracle); a file an
unlanded run refers to is kept; a later run uploads a deleted file again."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_claude_batch.exceptions import ClaudeBatchParameterError
from airflow_provider_claude_batch.operators.delete_files import ClaudeBatchDeleteFilesOperator
from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.testing.sample_files import make_pdf
from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator


def _submit(work: Path, folder: Path, run: str) -> dict[str, Any]:
    return ClaudeBatchSubmitOperator(
        task_id="submit",
        source=str(folder),
        source_format="files",
        documents=["path"],
        upload="files",
        reuse_answers=False,
        prompt="Extract the invoice fields.",
        model="claude-haiku-4-5",
        max_tokens=100,
        work_dir=str(work),
    ).execute({"ti": SimpleNamespace(dag_id="dag", run_id=run, task_id="submit", map_index=-1)})


def _files(emulator: RunningEmulator) -> dict[str, int]:
    return dict(emulator.emulator.snapshot()["files"])


def test_uploads_of_landed_runs_are_deleted_and_those_of_open_runs_kept(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    folder, other = tmp_path / "in", tmp_path / "other"
    for path, text in ((folder, "A"), (other, "B")):
        path.mkdir()
        (path / "doc.pdf").write_bytes(make_pdf([[f"Invoice {text}"]]))
    work = tmp_path / "work"
    landed = _submit(work, folder, "landed")
    ClaudeBatchToParquetOperator(
        task_id="land", manifest=landed, destination=str(tmp_path / "out"), deferrable=False
    ).execute({})
    _submit(work, other, "open")  # submitted, not landed: its file stays
    assert _files(emulator)["uploads"] == 2
    stats = ClaudeBatchDeleteFilesOperator(task_id="delete", work_dir=str(work), max_age=0).execute({})
    assert stats == {"deleted": 1, "already_gone": 0, "kept_in_use": 1, "kept_young": 0}
    assert _files(emulator)["deletes"] == 1
    (record,) = (work / "_files" / "default").glob("*.json")
    kept = json.loads(record.read_text())["file_id"]
    assert [item.id for item in emulator.emulator.files.list_all()] == [kept]
    # The next run of the landed documents uploads its file again.
    _submit(work, folder, "again")
    assert _files(emulator)["uploads"] == 3


def test_young_uploads_are_kept_and_max_age_is_checked_when_the_dag_is_parsed(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "doc.pdf").write_bytes(make_pdf([["Invoice"]]))
    summary = _submit(tmp_path / "work", folder, "run")
    ClaudeBatchToParquetOperator(
        task_id="land", manifest=summary, destination=str(tmp_path / "out"), deferrable=False
    ).execute({})
    stats = ClaudeBatchDeleteFilesOperator(task_id="delete", work_dir=str(tmp_path / "work")).execute({})
    assert stats["kept_young"] == 1 and _files(emulator).get("deletes", 0) == 0
    with pytest.raises(ClaudeBatchParameterError, match="max_age"):
        ClaudeBatchDeleteFilesOperator(task_id="bad", max_age="-1d")
