"""Results landed while they download: the real SDK over real HTTP to the emulator, dropped
connections resumed, every row landed once and the raw file saved whole."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.batching.land.parts import write_parts
from airflow_provider_claude_batch.batching.land.raw_results import SavingDownload
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.exceptions import ClaudeBatchAPIError
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import Fault, RunningEmulator
from tests.helpers import make_requests

ROWS = 6000


def _manifest(batch_id: str, rows: int) -> Manifest:
    return Manifest(
        dag_id="d",
        run_id="r",
        task_id="t",
        map_index=-1,
        conn_id="claude_batch_default",
        fingerprint="",
        spec={},
        max_requests_per_batch=rows,
        max_bytes_per_batch=0,
        total_requests=rows,
        input_columns=None,
        batches=[
            BatchRecord(
                chunk=0, round=0, requests_file="", request_count=rows, body_bytes=0, sha256="", batch_id=batch_id
            )
        ],
    )


def _land(hook: ClaudeBatchHook, batch_id: str, tmp_path: Path) -> tuple[SavingDownload, Path]:
    raw = tmp_path / "raw" / f"{batch_id}.jsonl"
    staged = tmp_path / "staged"
    staged.mkdir()
    download = SavingDownload(lambda: hook.iter_results_bytes(batch_id, chunk_size=64 * 1024), raw)
    stats = write_parts(
        tmp_path, _manifest(batch_id, ROWS), {batch_id: download}, staged, keep_columns=[], prices=PriceTable()
    )
    assert stats.rows == ROWS
    return download, staged / "part-00000.parquet"


@pytest.mark.parametrize("ranges", [True, False], ids=["range-resume", "server-without-ranges"])
def test_dropped_connections_resume_and_every_row_lands_once(
    emulator: RunningEmulator, tmp_path: Path, ranges: bool
) -> None:
    hook = ClaudeBatchHook()
    batch = hook.create_batch(make_requests(ROWS))
    emulator.emulator.config.results_ranges = ranges
    clean = tmp_path / "clean.jsonl"
    hook.download_results(batch.id, clean)  # the bytes a download without faults saves
    emulator.emulator.inject(Fault("results", drop_after_bytes=300_000, times=2))

    download, part = _land(hook, batch.id, tmp_path)

    assert emulator.emulator.stats["results_dropped"] == 2
    assert emulator.emulator.stats["results_ranges"] == (2 if ranges else 0)
    ids = pq.read_table(part, columns=["custom_id"]).column("custom_id")
    assert len(ids) == ROWS
    assert pc.count_distinct(ids).as_py() == ROWS  # exactly once each
    assert set(ids.to_pylist()) == {f"req-{i}" for i in range(ROWS)}
    assert download.target.read_bytes() == clean.read_bytes()  # the raw file is whole, no byte twice
    assert download.saved_bytes == clean.stat().st_size
    assert [p.name for p in download.target.parent.iterdir()] == [download.target.name]
    assert emulator.emulator.stats["batches_created"] == 1


def test_a_download_that_keeps_breaking_leaves_no_raw_file(emulator: RunningEmulator, tmp_path: Path) -> None:
    hook = ClaudeBatchHook()
    batch = hook.create_batch(make_requests(ROWS))
    emulator.emulator.inject(Fault("results", drop_after_bytes=100_000, times=10))
    with pytest.raises(ClaudeBatchAPIError, match="broke off 5 times"):
        _land(hook, batch.id, tmp_path)
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


def test_results_rejected_by_the_parser_are_kept_whole(emulator: RunningEmulator, tmp_path: Path) -> None:
    """A landing that fails on the results (here: fewer than the manifest expects) still saves
    every downloaded byte, so the error's pointer to the raw file is true."""
    hook = ClaudeBatchHook()
    batch = hook.create_batch(make_requests(ROWS - 1))
    with pytest.raises(Exception, match="returned 5999 results for 6000 requests"):
        _land(hook, batch.id, tmp_path)
    raw = tmp_path / "raw" / f"{batch.id}.jsonl"
    assert len(raw.read_bytes().splitlines()) == ROWS - 1
