"""Saved raw results -> Parquet parts, checked one to one against the requests
(batching/land/parts.py), on a run really submitted to the emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.batching.land.parts import (
    ClaudeBatchMissingResultsError,
    cost_table,
    keep_columns_spec,
    output_schema,
    write_parts,
)
from airflow_provider_claude_batch.batching.state.manifest import Manifest
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.unit.conftest import SubmitRun

ROWS = [{"ticket": f"t{i}", "text": f"question {i}", "product": f"p{i % 3}"} for i in range(25)]


def _downloaded(manifest: Manifest, run_dir: Path) -> dict[str, Any]:
    hook = ClaudeBatchHook()
    raw_files = {}
    for record in manifest.batches:
        assert record.batch_id is not None
        raw_files[record.batch_id] = run_dir / f"raw/{record.batch_id}.jsonl"
        hook.download_results(record.batch_id, raw_files[record.batch_id])
    return raw_files


def test_one_row_per_request_with_input_columns_joined(
    submit_run: SubmitRun, emulator: RunningEmulator, tmp_path: Path
) -> None:
    manifest, run_dir = submit_run(ROWS, max_requests=10)
    assert emulator.emulator.stats["batches_created"] == len(manifest.batches) == 3
    out = tmp_path / "out"
    out.mkdir()
    stats = write_parts(
        run_dir, manifest, _downloaded(manifest, run_dir), out, keep_columns=["product"], prices=PriceTable()
    )
    assert stats.files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    table = pq.read_table(out)
    assert table.num_rows == 25 and stats.rows == 25
    assert sorted(table.column("custom_id").to_pylist()) == sorted(f"row-{i}" for i in range(25))
    products = dict(zip(table.column("custom_id").to_pylist(), table.column("product").to_pylist(), strict=True))
    assert products == {f"row-{i}": f"p{i % 3}" for i in range(25)}
    assert stats.by_result_type == {"succeeded": 25}
    assert stats.cost_usd > 0 and set(stats.by_batch) == set(manifest.batch_ids())
    assert "total" in cost_table(stats)


def test_a_result_missing_from_the_raw_file_is_named(submit_run: SubmitRun, tmp_path: Path) -> None:
    manifest, run_dir = submit_run(ROWS[:4])
    raw_files = _downloaded(manifest, run_dir)
    (raw,) = raw_files.values()
    raw.write_bytes(b"".join(raw.read_bytes().splitlines(keepends=True)[:-1]))  # one line lost
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ClaudeBatchMissingResultsError, match=r"returned 3 results for 4 requests"):
        write_parts(run_dir, manifest, raw_files, out, keep_columns=[], prices=PriceTable())


def test_kept_columns_are_checked_before_anything_is_written(submit_run: SubmitRun) -> None:
    manifest, run_dir = submit_run(ROWS[:2])
    with pytest.raises(ClaudeBatchInputError, match=r"keep_columns \['nope'\] are not among"):
        output_schema(run_dir, manifest, ["nope"])
    with pytest.raises(ClaudeBatchInputError, match=r"keep_columns \['text'\] clash with result columns"):
        output_schema(run_dir, manifest, ["text"])
    schema = output_schema(run_dir, manifest, ["text"], {"text": "input_text"})
    assert schema.names[-1] == "input_text"


def test_keep_columns_spec_accepts_a_list_or_a_renaming() -> None:
    assert keep_columns_spec(None) == ([], {})
    assert keep_columns_spec(["a", "b"]) == (["a", "b"], {})
    assert keep_columns_spec({"text": "input_text"}) == (["text"], {"text": "input_text"})
    with pytest.raises(ClaudeBatchInputError, match="list of column names or a mapping"):
        keep_columns_spec("text")
