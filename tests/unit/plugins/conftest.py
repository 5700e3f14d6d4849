"""What the Claude Batches page tests share: a work directory the page reads (the configured
one), submit manifests with their batch index entries and landing summaries written the way
the submit and transfer tasks write them, batches created on the emulator, and a stand-in for
the metadata database's logical dates."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_claude_batch.batching.state.batch_index import record_origin
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from tests.helpers import make_requests


@pytest.fixture
def work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__WORK_DIR", str(tmp_path / "work"))
    return tmp_path / "work"


def write_manifest(
    work_dir: Path,
    dag_id: str,
    run_id: str,
    batch_ids: list[str],
    cost: Any = "absent",
    reuse: dict[str, Any] | None = None,
) -> Path:
    """A submit task's manifest recording ``batch_ids``, their batch index entries and, unless
    ``cost`` is "absent", a landing summary giving each batch that cost; ``reuse``: the
    manifest's reuse counts (``ReuseCounts.as_dict()``). Returns the run folder."""
    folder = WorkDir(work_dir).run(dag_id, run_id, "submit").path  # where a submit task puts it
    folder.mkdir(parents=True)
    manifest = Manifest(
        dag_id=dag_id,
        run_id=run_id,
        task_id="submit",
        map_index=-1,
        conn_id="claude_batch_default",
        fingerprint="f",
        spec={},
        max_requests_per_batch=10,
        max_bytes_per_batch=10,
        total_requests=len(batch_ids),
        input_columns=None,
        batches=[
            BatchRecord(chunk=i, round=0, requests_file="", request_count=1, body_bytes=1, sha256="", batch_id=b)
            for i, b in enumerate(batch_ids)
        ],
        reuse=reuse,
    )
    manifest.save(folder)
    for record in manifest.batches:
        record_origin(manifest, record, folder)
    if cost != "absent":
        summary = {"by_batch": {b: {"rows": 1, "cost_usd": cost} for b in batch_ids}}
        (folder / "landing.json").write_text(json.dumps(summary))
    return folder


def create_batches(count: int) -> list[str]:
    """Ids of ``count`` new batches of two requests each, on the connection's emulator."""
    hook = ClaudeBatchHook()
    return [hook.create_batch(make_requests(2, prefix=f"b{i}")).id for i in range(count)]


class RunDatesOf:
    """A stand-in for the metadata database's DagRun table (``page_queries`` is tested against
    the real one): answers from ``known`` and records which runs were asked for."""

    def __init__(self, known: dict[tuple[str, str], str | None]) -> None:
        self.known = known
        self.asked: list[set[tuple[str, str]]] = []

    def __call__(self, runs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        self.asked.append(set(runs))
        return {key: value for key, value in self.known.items() if key in self.asked[-1]}
