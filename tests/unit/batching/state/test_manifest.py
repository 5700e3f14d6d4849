"""Manifest persistence (no Airflow, no network)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.api.batch_state import ENDED, BatchState, RequestCounts
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest, load_manifest
from airflow_provider_claude_batch.exceptions import ClaudeBatchManifestError


def _manifest() -> Manifest:
    return Manifest(
        dag_id="d",
        run_id="r",
        task_id="t",
        map_index=-1,
        conn_id="c",
        fingerprint="f" * 64,
        spec={"prompt": "{x}"},
        max_requests_per_batch=10,
        max_bytes_per_batch=1000,
        total_requests=3,
        input_columns=None,
        batches=[
            BatchRecord(
                chunk=0,
                round=0,
                requests_file="requests-1/chunk-00000.jsonl",
                request_count=3,
                body_bytes=99,
                sha256="s",
            )
        ],
    )


def test_round_trip_and_atomic_save(tmp_path: Path) -> None:
    manifest = _manifest()
    manifest.batches[0].batch_id = "msgbatch_1"
    manifest.save(tmp_path)
    loaded = load_manifest(tmp_path)
    assert loaded == manifest
    assert loaded.summary() == {"chunks": 1, "requests": 3, "batch_ids": ["msgbatch_1"], "rounds": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_missing_or_bad_manifest_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ClaudeBatchManifestError, match="no manifest at .*has the submit task run"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ClaudeBatchManifestError, match="not a readable manifest"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"version": 99}')
    with pytest.raises(ClaudeBatchManifestError, match="version 99"):
        load_manifest(tmp_path)


def test_polled_states_are_recorded_in_their_records_only() -> None:
    manifest = _manifest()
    manifest.batches[0].batch_id = "msgbatch_1"
    ended = BatchState(
        id="msgbatch_1",
        processing_status=ENDED,
        request_counts=RequestCounts(succeeded=2, errored=1),
        created_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        ended_at=datetime(2026, 1, 2, tzinfo=timezone.utc),
    )
    stranger = BatchState(
        id="msgbatch_2",
        processing_status="in_progress",
        request_counts=RequestCounts(processing=5),
        created_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    manifest.apply_states({"msgbatch_1": ended, "msgbatch_2": stranger})
    record = manifest.batches[0]
    assert record.processing_status == ENDED and not record.is_open
    assert record.request_counts == {"succeeded": 2, "errored": 1, "expired": 0, "canceled": 0, "processing": 0}
    assert record.ended_at == "2026-01-02T00:00:00+00:00"
    assert manifest.open_batch_ids() == [] and len(manifest.batches) == 1
