"""Unit-test helpers: a real submitted run (the submit task's steps, the real hook, the emulator)
without Airflow's scheduler or metadata DB."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.batching.submit.submission import (
    create_missing_batches,
    new_manifest,
    stage_requests,
)
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator

SubmitRun = Callable[..., tuple[Manifest, Path]]


def manifest_of(records: list[BatchRecord], **fields: Any) -> Manifest:
    """A manifest holding ``records``, with plain values for every other field."""
    values: dict[str, Any] = {
        "dag_id": "dag",
        "run_id": "run",
        "task_id": "submit",
        "map_index": -1,
        "conn_id": "conn",
        "fingerprint": "f" * 64,
        "spec": {},
        "max_requests_per_batch": limits.MAX_REQUESTS_PER_BATCH,
        "max_bytes_per_batch": limits.MAX_BYTES_PER_BATCH,
        "total_requests": sum(record.request_count for record in records),
        "input_columns": None,
    }
    values.update(fields)
    return Manifest(batches=records, **values)


@pytest.fixture
def submit_run(emulator: RunningEmulator, tmp_path: Path) -> SubmitRun:
    """``submit_run(rows, max_requests=...)``: stage ``rows`` (a list of texts or dicts), write the
    manifest and create its batches on the emulator; returns the manifest and its run folder."""

    def submit(rows: list[object], *, max_requests: int = 100, task_id: str = "submit") -> tuple[Manifest, Path]:
        run_dir = tmp_path / "work" / "dag" / "run" / task_id
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = RequestSpec(prompt="{text}", model="claude-haiku-4-5", max_tokens=8)
        limits = ChunkLimits(max_requests=max_requests)
        staged = stage_requests(rows, spec, limits, run_dir)
        manifest = new_manifest(
            staged,
            dag_id="dag",
            run_id="run",
            task_id=task_id,
            map_index=-1,
            conn_id=ClaudeBatchHook.default_conn_name,
            spec=spec,
            chunk_limits=limits,
        )
        manifest.save(run_dir)
        create_missing_batches(manifest, run_dir, ClaudeBatchHook(retry_backoff=0))
        return manifest, run_dir

    return submit
