"""The invoice example DAG under real Airflow (``dag.test()``) against the emulator over HTTP: a
folder of generated invoice PDFs (uploaded once through the Files API) and receipt images
(inline) lands as typed rows, and a second run over the same inbox sends nothing and uploads
nothing."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.testing.sample_files import write_invoice_folder
from tests.airflow.conftest import run_dag, task_states

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def invoice_dag(airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, work_dir: Path):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("CLAUDE_BATCH_EXAMPLE_DATA", str(tmp_path / "lake"))
    monkeypatch.setenv("CLAUDE_BATCH_EXAMPLE_POLL_SECONDS", "0.2")
    target = airflow_db / "dags" / "claude_batch_invoices.py"
    shutil.copy(ROOT / "example_dags" / "claude_batch_invoices.py", target)
    dag = DagBag(dag_folder=str(target)).get_dag("claude_batch_invoices")
    assert dag is not None
    return dag, tmp_path / "lake"


def test_invoices_and_receipts_land_typed_and_a_second_run_sends_nothing(
    invoice_dag, emulator: RunningEmulator
) -> None:
    dag, lake = invoice_dag
    write_invoice_folder(lake / "invoices" / "inbox", invoices=6, receipts=3)
    first = run_dag(dag, datetime(2026, 12, 7, tzinfo=timezone.utc))
    assert task_states(first) == {"invoices": "success", "receipts": "success"}
    invoices = ds.dataset(lake / "invoices" / "fields", format="parquet").to_table()
    receipts = ds.dataset(lake / "invoices" / "receipts", format="parquet").to_table()
    assert sorted(invoices.column("name").to_pylist()) == [f"invoice-{n:05d}.pdf" for n in range(6)]
    assert sorted(receipts.column("name").to_pylist()) == [f"receipt-{n:05d}.png" for n in range(3)]
    for name in ("vendor", "date", "currency", "total", "line_items"):
        assert name in invoices.schema.names
    assert set(invoices.column("output_status").to_pylist()) == {"valid"}
    sent = emulator.emulator.stats["requests_received"]
    assert sent == 9
    assert emulator.emulator.snapshot()["files"]["uploads"] == 6  # the invoices, by reference

    second = run_dag(dag, datetime(2026, 12, 8, tzinfo=timezone.utc))
    assert task_states(second) == {"invoices": "success", "receipts": "success"}
    assert emulator.emulator.stats["requests_received"] == sent  # every answer reused by content
    assert emulator.emulator.snapshot()["files"]["uploads"] == 6  # nothing uploaded again
    again = ds.dataset(lake / "invoices" / "fields", format="parquet").to_table()
    assert set(again.column("answer_source").to_pylist()) == {"reused"}
    assert sorted(again.column("total").to_pylist()) == sorted(invoices.column("total").to_pylist())
