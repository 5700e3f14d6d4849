"""Documents sent by reference against the emulator over HTTP: ``upload="files"`` uploads each
distinct file once per workspace (the emulator's upload counter is the oracle), lands the same
rows as inline, reuses answers across modes by the bytes, uploads again a file the server no
longer knows, and refuses bad input before anything is uploaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anthropic
import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError, ClaudeBatchParameterError
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.testing.sample_files import make_pdf, make_png
from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator


def _context(run: str) -> Any:
    return {"ti": SimpleNamespace(dag_id="dag", run_id=run, task_id="submit", map_index=-1)}


def _documents(folder: Path, count: int, *, padding: int = 0) -> dict[str, str]:
    """``count`` PDFs; their sha256 by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for n in range(count):
        data = make_pdf([[f"Invoice {n}", f"Total {n}.00"]], padding=padding * n)
        (folder / f"inv-{n:03d}.pdf").write_bytes(data)
        hashes[f"inv-{n:03d}.pdf"] = hashlib.sha256(data).hexdigest()
    return hashes


def _run(work: Path, source: str, run: str, destination: Path, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """Submit and land one run; its rows by file name."""
    kwargs.setdefault("documents", ["path"])
    summary = ClaudeBatchSubmitOperator(
        task_id="submit",
        source=source,
        prompt="Extract the invoice fields.",
        model="claude-haiku-4-5",
        max_tokens=200,
        work_dir=str(work),
        source_format="files",
        **kwargs,
    ).execute(_context(run))
    ClaudeBatchToParquetOperator(
        task_id="land", manifest=summary, destination=str(destination), keep_columns=["name"], deferrable=False
    ).execute({})
    return {row["name"]: row for row in pq.read_table(destination).to_pylist()}


def _sha256_of_answer(row: dict[str, Any]) -> str:
    (facts,) = json.JSONDecoder().raw_decode(row["text"].split("documents: ", 1)[1])[0]
    return str(facts["sha256"])


def _uploads(emulator: RunningEmulator) -> int:
    return int(emulator.emulator.snapshot()["files"].get("uploads", 0))


def test_files_mode_uploads_once_and_lands_the_rows_inline_lands(tmp_path: Path, emulator: RunningEmulator) -> None:
    hashes = _documents(tmp_path / "in", 4)
    source = str(tmp_path / "in")
    inline = _run(tmp_path / "work-inline", source, "inline", tmp_path / "out-inline")
    assert _uploads(emulator) == 0
    inline_bytes = emulator.emulator.stats["create_bytes"]
    files = _run(tmp_path / "work", source, "run1", tmp_path / "out1", upload="files")
    assert _uploads(emulator) == 4  # one upload per distinct document
    # The create referred to the files instead of carrying their base64.
    assert emulator.emulator.stats["create_bytes"] - inline_bytes < inline_bytes / 2
    assert sorted(files) == sorted(inline) == sorted(hashes)
    for name, row in files.items():
        assert _sha256_of_answer(row) == hashes[name] == _sha256_of_answer(inline[name])
        assert row["text"] == inline[name]["text"] and row["custom_id"] == inline[name]["custom_id"]
    # A rerun of the same documents: answers reused by content, nothing uploaded or sent again.
    received = emulator.emulator.stats["requests_received"]
    again = _run(tmp_path / "work", source, "run2", tmp_path / "out2", upload="files")
    assert _uploads(emulator) == 4 and emulator.emulator.stats["requests_received"] == received
    assert {row["answer_source"] for row in again.values()} == {"reused"}


def test_a_new_run_refers_to_recorded_files_and_uploads_again_one_deleted_on_the_server(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    hashes = _documents(tmp_path / "in", 3)
    source = str(tmp_path / "in")
    _run(tmp_path / "work", source, "run1", tmp_path / "out1", upload="files", reuse_answers=False)
    assert _uploads(emulator) == 3
    # Another run without answer reuse sends every request again, by reference: no upload.
    _run(tmp_path / "work", source, "run2", tmp_path / "out2", upload="files", reuse_answers=False)
    assert _uploads(emulator) == 3
    assert emulator.emulator.stats["requests_received"] == 6
    # A file deleted on the server (over HTTP, as a user would) is uploaded again, not a failure.
    records = sorted((tmp_path / "work" / "_files" / "default").glob("*.json"))
    assert sorted(path.stem for path in records) == sorted(hashes.values())
    gone = json.loads(records[0].read_text())["file_id"]
    client = anthropic.Anthropic(api_key=emulator.api_key, base_url=emulator.base_url)
    client.beta.files.delete(gone, betas=[limits.FILES_API_BETA])
    rows = _run(tmp_path / "work", source, "run3", tmp_path / "out3", upload="files", reuse_answers=False)
    assert _uploads(emulator) == 4
    assert {row["result_type"] for row in rows.values()} == {"succeeded"}
    assert {name: _sha256_of_answer(row) for name, row in rows.items()} == hashes
    assert json.loads(records[0].read_text())["file_id"] != gone


def test_a_file_deleted_between_the_check_and_the_create_is_sent_again_and_uploaded_again(
    tmp_path: Path, emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the metadata check cannot close: the file is gone when the create arrives, so
    the request errors with "File not found"; landing resubmits it, and that create uploads the
    file again."""
    hashes = _documents(tmp_path / "in", 2)
    source = str(tmp_path / "in")
    _run(tmp_path / "work", source, "run1", tmp_path / "out1", upload="files", reuse_answers=False)
    client = anthropic.Anthropic(api_key=emulator.api_key, base_url=emulator.base_url)
    for item in client.beta.files.list(betas=[limits.FILES_API_BETA]).data:
        client.beta.files.delete(item.id, betas=[limits.FILES_API_BETA])
    # The submit's check sees the files still there (deleted after it looked).
    with monkeypatch.context() as patched:
        patched.setattr(ClaudeBatchHook, "file_exists", lambda self, file_id: True)
        summary = ClaudeBatchSubmitOperator(
            task_id="submit",
            source=source,
            source_format="files",
            documents=["path"],
            upload="files",
            reuse_answers=False,
            prompt="Extract the invoice fields.",
            model="claude-haiku-4-5",
            max_tokens=200,
            work_dir=str(tmp_path / "work"),
        ).execute(_context("run2"))
    assert _uploads(emulator) == 2
    ClaudeBatchToParquetOperator(
        task_id="land", manifest=summary, destination=str(tmp_path / "out2"), keep_columns=["name"], deferrable=False
    ).execute({})
    rows = {row["name"]: row for row in pq.read_table(tmp_path / "out2").to_pylist()}
    assert {row["result_type"] for row in rows.values()} == {"succeeded"}
    assert {name: _sha256_of_answer(row) for name, row in rows.items()} == hashes
    assert _uploads(emulator) == 4 and emulator.emulator.stats["batches_created"] == 3


def test_auto_uploads_only_files_from_the_threshold(tmp_path: Path, emulator: RunningEmulator) -> None:
    hashes = _documents(tmp_path / "in", 3, padding=20_000)  # 0, 20 KB, 40 KB of padding
    rows = _run(
        tmp_path / "work", str(tmp_path / "in"), "run", tmp_path / "out", upload="auto", upload_min_bytes=15_000
    )
    assert _uploads(emulator) == 2
    assert {name: _sha256_of_answer(row) for name, row in rows.items()} == hashes


def test_answers_are_reused_between_an_inline_run_and_an_uploading_one(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    hashes = _documents(tmp_path / "in", 3)
    _run(tmp_path / "work", str(tmp_path / "in"), "inline", tmp_path / "out1")
    received = emulator.emulator.stats["requests_received"]
    rows = _run(tmp_path / "work", str(tmp_path / "in"), "files", tmp_path / "out2", upload="files")
    assert emulator.emulator.stats["requests_received"] == received and _uploads(emulator) == 0
    assert {row["answer_source"] for row in rows.values()} == {"reused"}
    assert {name: _sha256_of_answer(row) for name, row in rows.items()} == hashes


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (make_png(10, 10), "image/png"),  # a PNG named .pdf
        (b"", "empty|zero|no bytes"),
        (make_pdf([["Secret"]], encrypted=True), "encrypt"),
    ],
    ids=["mislabelled", "empty", "encrypted"],
)
def test_bad_input_is_named_before_anything_is_uploaded(
    tmp_path: Path, emulator: RunningEmulator, content: bytes, problem: str
) -> None:
    _documents(tmp_path / "in", 3)
    (tmp_path / "in" / "inv-001.pdf").write_bytes(content)
    with pytest.raises(ClaudeBatchInputError, match=rf"(?i)row 1 .*inv-001\.pdf.*({problem})"):
        _run(tmp_path / "work", str(tmp_path / "in"), "run", tmp_path / "out", upload="files")
    assert _uploads(emulator) == 0 and emulator.emulator.stats["requests_received"] == 0


def test_upload_mode_is_checked_when_the_dag_is_parsed() -> None:
    mode: Any = "s3"
    with pytest.raises(ClaudeBatchParameterError, match="upload must be"):
        ClaudeBatchSubmitOperator(task_id="t", source="x", documents=["path"], upload=mode)
