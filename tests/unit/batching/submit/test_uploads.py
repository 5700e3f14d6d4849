"""Uploads through the emulator's Files API with the real hook: which sources of a create body go
by reference, each distinct file uploaded once per workspace (also by two runs at the same
moment), a recorded id the server lost uploaded again, and deletion by age that keeps what a
run not landed yet refers to."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.render.documents import inline_sources
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
from airflow_provider_claude_batch.batching.submit.uploads import (
    FileRecord,
    UploadSettings,
    delete_uploads,
    ensure_uploaded,
    files_in_use,
    find_files,
    prepare_create,
    refer,
)
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.testing.sample_files import make_pdf, make_png

PDF = make_pdf([["Invoice 7"]])
PNG = make_png(4, 4)
BIG = make_pdf([["Invoice 8"]], padding=5_000)


def _line(custom_id: str, *files: tuple[str, bytes]) -> bytes:
    blocks = [
        b'{"type":"document","source":{"type":"base64","media_type":"'
        + media.encode()
        + b'","data":"'
        + base64.b64encode(data)
        + b'"}}'
        for media, data in files
    ]
    blocks.append(
        b'{"type":"text","text":' + json.dumps('{"type":"base64","media_type":"x/y","data":""}').encode() + b"}"
    )
    return (
        b'{"custom_id":"' + custom_id.encode() + b'","params":{"model":"claude-haiku-4-5","max_tokens":5,'
        b'"messages":[{"role":"user","content":[' + b",".join(blocks) + b"]}]}}"
    )


BODY = b"\n".join(
    [_line("a", ("application/pdf", PDF)), _line("b", ("application/pdf", PDF), ("image/png", PNG)), _line("c")]
)


def _manifest(**changes: object) -> Manifest:
    manifest = Manifest("dag", "run", "task", -1, "conn", "f" * 64, {}, 10, 1000, 3, None)
    for name, value in changes.items():
        setattr(manifest, name, value)
    return manifest


def test_files_are_found_by_their_bytes_once_and_text_that_looks_like_a_source_is_left_alone() -> None:
    files, spans = find_files(BODY, UploadSettings("files"))
    assert set(files) == {hashlib.sha256(PDF).hexdigest(), hashlib.sha256(PNG).hexdigest()}
    assert len(spans) == 3  # the PDF twice, the PNG once; the prompt's escaped text is no source
    assert files[hashlib.sha256(PDF).hexdigest()].size == len(PDF)
    for item in files.values():
        item.file_id = f"file_{item.sha256[:6]}"
    referred = refer(BODY, files, spans)
    assert not list(inline_sources(referred))
    assert referred.count(b'"source":{"type":"file","file_id":"file_') == 3
    assert [json.loads(line)["custom_id"] for line in referred.split(b"\n")] == ["a", "b", "c"]


def test_auto_sends_small_files_inline() -> None:
    body = _line("a", ("application/pdf", PDF), ("application/pdf", BIG))
    files, spans = find_files(body, UploadSettings("auto", min_bytes=len(BIG)))
    assert list(files) == [hashlib.sha256(BIG).hexdigest()] and len(spans) == 1


def test_a_manifest_without_uploads_sends_the_body_as_it_is(tmp_path: Path) -> None:
    prepared = prepare_create(BODY, _manifest(), lambda hashes: None, WorkDir(tmp_path), object())
    assert prepared.body is BODY and prepared.betas == []


def _uploads(emulator: RunningEmulator) -> int:
    return int(emulator.emulator.snapshot()["files"].get("uploads", 0))


def test_each_file_is_uploaded_once_per_workspace_and_again_when_the_server_lost_it(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    hook, work = ClaudeBatchHook(), WorkDir(tmp_path)
    recorded: list[list[str]] = []
    manifest = _manifest(uploads=UploadSettings("files").as_dict())
    first = prepare_create(BODY, manifest, recorded.append, work, hook)
    assert (first.files, first.uploaded, first.reused) == (2, 2, 0) and _uploads(emulator) == 2
    assert recorded == [sorted(find_files(BODY, UploadSettings("files"))[0])]
    assert first.upload_bytes == len(PDF) + len(PNG) and first.betas == ["files-api-2025-04-14"]
    again = prepare_create(BODY, manifest, recorded.append, work, hook)
    assert (again.uploaded, again.reused) == (0, 2) and again.body == first.body and _uploads(emulator) == 2
    record = FileRecord.read(work.file_record("default", hashlib.sha256(PDF).hexdigest()))
    assert record is not None and record.size == len(PDF) and record.media_type == "application/pdf"
    assert hook.delete_file(record.file_id) and not hook.file_exists(record.file_id)
    third = prepare_create(BODY, manifest, recorded.append, work, hook)
    assert (third.uploaded, third.reused) == (1, 1) and _uploads(emulator) == 3


def test_two_runs_needing_the_same_bytes_at_once_upload_them_once(tmp_path: Path, emulator: RunningEmulator) -> None:
    work, start = WorkDir(tmp_path), threading.Barrier(2)
    results: dict[str, int] = {}

    def run(owner: str) -> None:
        files, _ = find_files(BODY, UploadSettings("files"))
        start.wait()
        results[owner] = len(ensure_uploaded(BODY, files, work, ClaudeBatchHook(), owner))

    threads = [threading.Thread(target=run, args=(f"files-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results.values()) == [0, 2] and _uploads(emulator) == 2


def test_deletion_by_age_keeps_files_an_unlanded_run_refers_to(tmp_path: Path, emulator: RunningEmulator) -> None:
    hook, work = ClaudeBatchHook(), WorkDir(tmp_path)
    manifest = _manifest(uploads=UploadSettings("files").as_dict())
    prepare_create(BODY, manifest, lambda hashes: None, work, hook)
    pdf, png = hashlib.sha256(PDF).hexdigest(), hashlib.sha256(PNG).hexdigest()
    run_dir = work.run("dag", "run", "task")
    run_dir.mkdir()
    record = BatchRecord(0, 0, "requests-x/chunk-00000.jsonl", 2, 10, "0" * 64, files=[pdf])
    _manifest(batches=[record]).save(run_dir)
    assert files_in_use(work) == {pdf}
    young = delete_uploads(work, hook, max_age=timedelta(days=1))
    assert young.as_dict() == {"deleted": 0, "already_gone": 0, "kept_in_use": 1, "kept_young": 1}
    later = datetime.now(timezone.utc) + timedelta(days=2)
    old = delete_uploads(work, hook, max_age=timedelta(days=1), now=later)
    assert (old.deleted, old.kept_in_use) == (1, 1)
    assert emulator.emulator.snapshot()["files"]["deletes"] == 1
    assert not work.file_record("default", png).exists() and work.file_record("default", pdf).exists()
    (run_dir.path / "landing.json").write_text("{}")  # landed: nothing refers to it any longer
    assert files_in_use(work) == set()
    assert delete_uploads(work, hook, max_age=timedelta(days=1), now=later).deleted == 1
    assert work.file_records("default") == []


def test_a_record_path_is_only_ever_a_sha256(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a sha256"):
        WorkDir(tmp_path).file_record("default", "../../etc")
