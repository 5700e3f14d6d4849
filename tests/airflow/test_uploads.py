"""Documents sent inline and by reference under real Airflow (``dag.test()``) against the emulator
over HTTP: both land the same rows, each with its own document's hash; a rerun uploads only the
file deleted on the server meanwhile (the emulator's upload counter), and does not fail."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anthropic
import pyarrow.dataset as ds

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.testing.sample_files import make_pdf
from tests.airflow.conftest import run_dag, task_states

PIPELINES = """
for mode in ("inline", "files"):
    s = ClaudeBatchSubmitOperator(task_id=f"submit_{{mode}}", source={inbox!r}, documents=["path"], upload=mode,
                                  prompt="Extract the invoice fields.", model="claude-haiku-4-5", max_tokens=50,
                                  work_dir={work!r} + "/" + mode, reuse_answers=False)
    l = ClaudeBatchToParquetOperator(task_id=f"land_{{mode}}", manifest=s.output, poll_interval=0.1,
                                     destination={out!r} + "/" + mode, keep_columns=["name"])
    s >> l
"""


def _landed(path: Path) -> dict[str, dict[str, Any]]:
    return {row["custom_id"]: row for row in ds.dataset(path, format="parquet").to_table().to_pylist()}


def _document_hash(row: dict[str, Any]) -> str:
    (facts,) = json.JSONDecoder().raw_decode(row["text"].split("documents: ", 1)[1])[0]
    return str(facts["sha256"])


def _uploads(emulator: RunningEmulator) -> int:
    return int(emulator.emulator.snapshot()["files"].get("uploads", 0))


def test_inline_and_uploaded_documents_land_the_same_rows_and_uploads_happen_once(
    make_dag: Any, tmp_path: Path, emulator: RunningEmulator
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    hashes = {}
    for n in range(4):
        data = make_pdf([[f"Invoice {n}", f"Total {n}.00"]] * (1 + n % 2))
        (inbox / f"invoice-{n}.pdf").write_bytes(data)
        hashes[f"invoice-{n}.pdf"] = hashlib.sha256(data).hexdigest()
    out = tmp_path / "lake"
    dag = make_dag(PIPELINES.format(inbox=str(inbox / "*.pdf"), work=str(tmp_path / "work"), out=str(out)))

    first = run_dag(dag, datetime(2026, 12, 7, tzinfo=timezone.utc))
    assert set(task_states(first).values()) == {"success"}
    inline, files = _landed(out / "inline"), _landed(out / "files")
    assert sorted(inline) == sorted(files) and len(files) == 4
    for custom_id, row in files.items():
        assert _document_hash(row) == _document_hash(inline[custom_id]) == hashes[row["name"]]
        assert row["text"] == inline[custom_id]["text"]
    assert _uploads(emulator) == 4

    # A file deleted on the server: the next run (which sends every request again, no answer
    # reuse here) uploads that one again and nothing else, and lands every row.
    client = anthropic.Anthropic(api_key=emulator.api_key, base_url=emulator.base_url)
    gone = client.beta.files.list(betas=[limits.FILES_API_BETA]).data[0].id
    client.beta.files.delete(gone, betas=[limits.FILES_API_BETA])
    received = emulator.emulator.stats["requests_received"]
    second = run_dag(dag, datetime(2026, 12, 8, tzinfo=timezone.utc))
    assert set(task_states(second).values()) == {"success"}
    assert emulator.emulator.stats["requests_received"] == received + 8 and _uploads(emulator) == 5
    again = _landed(out / "files")
    assert {row["result_type"] for row in again.values()} == {"succeeded"}
    assert {row["name"]: _document_hash(row) for row in again.values()} == hashes
