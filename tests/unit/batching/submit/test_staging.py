"""Staging (batching/submit/staging.py): rows rendered into chunks in a fresh folder, a bad
row stopping the run before anything exists, with nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
from airflow_provider_claude_batch.batching.state.run_dir import STAGING_PREFIX, RunDir
from airflow_provider_claude_batch.batching.submit.staging import stage_requests
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

SPEC = RequestSpec(prompt="{text}", model="claude-haiku-4-5", max_tokens=8)


def test_rows_become_chunks_in_one_new_folder_with_a_stable_fingerprint(tmp_path: Path) -> None:
    rows = [{"text": f"question {i}"} for i in range(5)]
    first = stage_requests(rows, SPEC, ChunkLimits(max_requests=2), tmp_path, keys=True)
    second = stage_requests(rows, SPEC, ChunkLimits(max_requests=2), tmp_path)
    assert [c.request_count for c in first.chunks] == [2, 2, 1]
    assert first.total_requests == 5
    assert first.directory_name != second.directory_name
    assert first.fingerprint == second.fingerprint
    assert first.keys is not None and len(first.keys) == 5
    assert second.keys is None
    assert first.tally["claude-haiku-4-5"].requests == 5


def test_a_bad_row_names_its_row_and_leaves_no_folder(tmp_path: Path) -> None:
    rows = [{"text": "fine"}, {"text": "fine"}, {"other": "no text"}]
    with pytest.raises(ClaudeBatchInputError, match="text"):
        stage_requests(rows, SPEC, ChunkLimits(max_requests=1), tmp_path)
    assert [p.name for p in RunDir.of(tmp_path).path.iterdir() if p.name.startswith(STAGING_PREFIX)] == []


def test_input_columns_not_in_the_source_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ClaudeBatchInputError, match=r"input_columns \['missing'\]"):
        stage_requests([{"text": "a"}], SPEC, ChunkLimits(), tmp_path, input_columns=["missing"])
