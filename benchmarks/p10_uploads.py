"""P10: documents uploaded through the Files API. A staged chunk of PDFs (inline, as staging
writes it) is prepared for its create with ``upload="files"``: every distinct file found by its
bytes, uploaded to the emulator (in its own process) on the upload threads, and the body's
base64 replaced by references. Then the same again with the records in place: no upload, one
metadata check per file. Each case in its own process; the emulator's counters say what was
uploaded.

    python -m benchmarks.p10_uploads [FILES]            (stage the folder, run both cases, print)
    python -m benchmarks.p10_uploads case upload|again CHUNK WORK_DIR   (one measured process)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import report, run_case
from benchmarks.emulator_process import connection_env, emulator_process
from benchmarks.p8_documents import make_folder

_READY: list[Any] = []


def _prepare() -> None:
    """Imports, the hook and its client (the SDK imports for about a second), outside the
    measured time."""
    from airflow_provider_claude_batch.batching.submit import uploads  # noqa: F401
    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

    hook = ClaudeBatchHook()
    hook.client  # noqa: B018 - the connection is read and the client built before the clock starts
    _READY.append(hook)


def prepare(chunk: Path, work: Path) -> dict[str, float]:
    from airflow_provider_claude_batch.batching.state.manifest import Manifest
    from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
    from airflow_provider_claude_batch.batching.submit.uploads import UploadSettings, prepare_create

    manifest = Manifest("bench", "run", "submit", -1, "claude_batch_default", "0" * 64, {}, 1, 1, 1, None)
    manifest.uploads = UploadSettings("files").as_dict()
    body = chunk.read_bytes()
    prepared = prepare_create(body, manifest, lambda hashes: None, WorkDir(work), _READY[0])
    return {
        "body_mb": len(body) / 1e6,
        "sent_kb": len(prepared.body) / 1e3,
        "files": prepared.files,
        "uploaded": prepared.uploaded,
        "upload_mb": prepared.upload_bytes / 1e6,
    }


def _stage(folder: Path, work: Path) -> Path:
    from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
    from airflow_provider_claude_batch.batching.render.documents import content_spec
    from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
    from airflow_provider_claude_batch.batching.submit.staging import stage_requests

    spec = RequestSpec(prompt="Extract.", model="claude-sonnet-4-6", max_tokens=256, content=content_spec(["path"]))
    staged = stage_requests(str(folder), spec, ChunkLimits(), work / "run")
    assert len(staged.chunks) == 1, "one chunk: lower FILES"
    return work / "run" / staged.directory_name / staged.chunks[0].requests_file


def main() -> None:
    if sys.argv[1:2] == ["case"]:
        _prepare()
        started, cpu = time.perf_counter(), time.process_time()
        measured = prepare(Path(sys.argv[3]), Path(sys.argv[4]))
        report(measured, started=started, cpu_started=cpu)
        return
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory() as temporary, emulator_process() as base_url:
        folder, work = Path(temporary) / "docs", Path(temporary) / "work"
        total = make_folder(folder, files)
        chunk = _stage(folder, work)
        env = connection_env(base_url)
        results: dict[str, Any] = {}
        for case in ("upload", "again"):
            results[case] = run_case("benchmarks.p10_uploads", "case", case, str(chunk), str(work), env=env)
        state = httpx.get(f"{base_url}/_emulator/state", timeout=30).json()
        summary = {
            "files": files,
            "file_mb": total / 1e6,
            "load_1min": os.getloadavg()[0],
            "emulator_files": state.get("files"),
            **results,
            "upload_mb_per_second": total / 1e6 / results["upload"]["seconds"],
        }
        print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
