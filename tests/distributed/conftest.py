"""The production shape on one machine: PostgreSQL, Redis, moto's S3 behind a fault proxy, and
Airflow with a CeleryExecutor: api-server, scheduler, dag-processor, two Celery workers and two
triggerers, each worker and triggerer under a name of its own. The work directory, the sources
and the destinations are all on ``s3://``. Everything stops at the end, also after a failure."""

from __future__ import annotations

import textwrap
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from airflow_provider_claude_batch.testing import RunningEmulator
from tests.distributed.deployment import BUCKET, TRIGGERERS, WORKERS, Deployment, start_deployment

__all__ = ["BUCKET", "TRIGGERERS", "WORKERS", "Deployment"]

DAG_ID = "claude_batch_distributed"

DAG = f"""
from datetime import datetime, timedelta
from airflow.sdk import DAG
from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_provider_claude_batch.sensors.batch import ClaudeBatchSensor
from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator

with DAG({DAG_ID!r}, schedule=None, start_date=datetime(2026, 1, 1), max_active_runs=3,
         default_args={{"retries": 3, "retry_delay": timedelta(seconds=2)}}):
    submit = ClaudeBatchSubmitOperator(
        task_id="submit", source="s3://{BUCKET}/tickets/ds={{{{ ds }}}}/", id_column="ticket_id",
        prompt="Classify: {{body}}", model="claude-haiku-4-5", max_tokens=8, max_requests_per_batch=250,
    )
    wait = ClaudeBatchSensor(task_id="wait", manifest=submit.output, poll_interval=1)
    land = ClaudeBatchToParquetOperator(
        task_id="land", manifest=submit.output, destination="s3://{BUCKET}/labels/ds={{{{ ds }}}}/",
        keep_columns=["ticket_id", "product"], poll_interval=1,
    )
    submit >> wait >> land
"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, emulator_server: RunningEmulator) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp("distributed")
    with start_deployment(
        home, emulator_server, executor="celery", dags={f"{DAG_ID}.py": textwrap.dedent(DAG)}
    ) as deployment:
        yield deployment


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    deployment = getattr(item, "funcargs", {}).get("deployment")
    if report.failed and isinstance(deployment, Deployment):
        report.sections.append(("the distributed deployment at the failure", deployment.diagnostics()))
    return report


def write_tickets(deployment: Deployment, ds: str, rows: int) -> list[str]:
    """``rows`` tickets for day ``ds`` on S3; returns their ids."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [f"T{ds.replace('-', '')}-{i:05d}" for i in range(rows)]
    table = pa.table(
        {
            "ticket_id": ids,
            "body": [f"ticket {i} of {ds}" for i in range(rows)],
            "product": ["web", "api"] * (rows // 2),
        }
    )
    with deployment.s3().open(f"{BUCKET}/tickets/ds={ds}/tickets.parquet", "wb") as out:
        pq.write_table(table, out)
    return ids


def home_logs(deployment: Deployment) -> list[Path]:
    return [p for p in (deployment.stack.home / "logs").rglob("*") if p.is_file()]
