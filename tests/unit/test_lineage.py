"""What the submit, the transfer and the decorator report to OpenLineage, built from a
``LineageRecord`` (the end-to-end report through Airflow's listener is in
``tests/airflow/test_lineage.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk import Asset

from airflow_provider_claude_batch.lineage import LineageRecord, dataset_identity, operator_lineage, source_location

ROOT = Path(__file__).resolve().parents[2]


def test_a_source_has_a_location_only_when_it_is_a_dataset(tmp_path: Path) -> None:
    assert source_location(str(tmp_path / "rows.parquet")) == str(tmp_path / "rows.parquet")
    assert source_location(tmp_path / "rows") == str(tmp_path / "rows")
    assert source_location(Asset("s3://lake/tickets")) == "s3://lake/tickets"
    assert source_location([{"text": "a row"}]) is None  # rows from XCom have no name
    assert source_location("") is None


def test_the_lineage_names_source_and_destination_with_counts_and_schema(tmp_path: Path) -> None:
    destination = tmp_path / "answers"
    destination.mkdir()
    pq.write_table(
        pa.table({"custom_id": ["a"], "text": ["b"], "input_tokens": [3]}), destination / "part-00000.parquet"
    )
    record = LineageRecord(
        source="s3://lake/tickets", requests=5, destination=str(destination), rows=5, files=["part-00000.parquet"]
    )
    lineage = operator_lineage(record)

    (source,) = lineage.inputs
    assert (source.namespace, source.name) == ("s3://lake", "tickets")
    assert source.inputFacets["inputStatistics"].rowCount == 5
    (output,) = lineage.outputs
    assert (output.namespace, output.name) == ("file", str(destination))
    assert output.outputFacets["outputStatistics"].rowCount == 5
    assert output.outputFacets["outputStatistics"].fileCount == 1
    assert [(f.name, f.type) for f in output.facets["schema"].fields] == [
        ("custom_id", "string"),
        ("text", "string"),
        ("input_tokens", "int64"),
    ]


def test_a_submit_reports_only_its_source_and_rows_from_xcom_report_nothing() -> None:
    submit = operator_lineage(LineageRecord(source="/data/rows.parquet", requests=2))
    assert [(d.namespace, d.name) for d in submit.inputs] == [("file", "/data/rows.parquet")] and submit.outputs == []
    empty = operator_lineage(LineageRecord())
    assert empty.inputs == [] and empty.outputs == []


@pytest.mark.parametrize(
    ("location", "identity"),
    [
        ("/data/tickets/", ("file", "/data/tickets")),
        ("file:///data/tickets", ("file", "/data/tickets")),
        ("s3://lake/support/tickets/ds=2026-11-01/", ("s3://lake", "support/tickets/ds=2026-11-01")),
        ("s3://aws_default@lake/labels", ("s3://lake", "labels")),
        ("gs://bucket/x.parquet", ("gs://bucket", "x.parquet")),
    ],
)
def test_dataset_names_follow_the_openlineage_convention(location: str, identity: tuple[str, str]) -> None:
    assert dataset_identity(location) == identity


def test_the_provider_imports_without_openlineage() -> None:
    code = (
        "import sys\n"
        "blocked = ('openlineage', 'airflow.providers.openlineage.extractors', 'airflow.providers.common.compat.openlineage')\n"
        "for name in blocked:\n"
        "    sys.modules[name] = None  # any import of it now fails\n"
        "import airflow_provider_claude_batch.operators.submit, airflow_provider_claude_batch.transfers.batch_to_parquet\n"
        "import airflow_provider_claude_batch.decorators.claude_batch, airflow_provider_claude_batch.get_provider_info\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
