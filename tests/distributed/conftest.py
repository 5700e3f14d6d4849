"""The production shape on one machine: PostgreSQL, Redis, moto's S3 behind a fault proxy, and
Airflow with a CeleryExecutor: api-server, scheduler, dag-processor, two Celery workers and two
triggerers, each worker and triggerer under a name of its own. The work directory, the sources
and the destinations are all on ``s3://``. Everything stops at the end, also after a failure."""

from __future__ import annotations

import json
import secrets
import textwrap
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_claude_batch.testing import RunningEmulator
from tests.distributed.services import MotoS3, Postgres, Redis, S3FaultProxy
from tests.helpers import TEST_API_KEY
from tests.system.stack import AirflowStack

DAG_ID = "claude_batch_distributed"
BUCKET = "lake"
WORKERS = ("worker-1", "worker-2")
TRIGGERERS = ("triggerer", "triggerer-2")

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


@dataclass
class Deployment:
    stack: AirflowStack
    emulator: RunningEmulator
    moto: MotoS3
    proxy: S3FaultProxy
    services: list[Any]
    started_in_seconds: float

    def s3(self) -> Any:
        """s3fs straight to the S3 server (the test's own reads and writes bypass the faults)."""
        import s3fs

        return s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=self.moto.url, skip_instance_cache=True)

    def s3_path(self, url: str) -> Any:
        from upath import UPath

        return UPath(url, key="testing", secret="testing", endpoint_url=self.moto.url)

    def diagnostics(self) -> str:
        lines = [service.state() for service in self.services]
        lines.append(f"s3 proxy: {self.proxy.requests} requests, {self.proxy.faults} faults injected")
        emulator = self.emulator.emulator
        lines.append(f"emulator calls {dict(emulator.calls)} stats {dict(emulator.stats)}")
        lines.append(self.stack.diagnostics())
        return "\n".join(lines)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, emulator_server: RunningEmulator) -> Iterator[Deployment]:
    import time

    started = time.monotonic()
    home = tmp_path_factory.mktemp("distributed")
    with ExitStack() as cleanup:
        postgres, redis, moto = Postgres(home), Redis(home), MotoS3(home)
        for service in (postgres, redis, moto):
            cleanup.callback(service.stop)
            service.start()
        proxy = S3FaultProxy(moto.port)
        proxy.start()
        cleanup.callback(proxy.stop)
        import boto3

        boto3.client(
            "s3", endpoint_url=moto.url, aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1"
        ).create_bucket(Bucket=BUCKET)

        connection = {"conn_type": "claude_batch", "host": emulator_server.base_url, "password": TEST_API_KEY}
        components = {
            "api-server": ["api-server"],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            # Each worker and triggerer on "its own machine": no log server (they would share a
            # port here; task logs are on the shared local disk), a name of its own.
            **{
                w: ["celery", "worker", "--concurrency", "2", "--celery-hostname", w, "--skip-serve-logs"]
                for w in WORKERS
            },
            **{t: ["triggerer", "--skip-serve-logs"] for t in TRIGGERERS},
        }
        stack = AirflowStack(
            home / "airflow",
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url,
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": redis.url,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{postgres.url}",
                "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.distributed.hostname.from_environment",
                # A worker lost with its machine: its task is failed (and retried) within seconds.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "10",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
                # A lost triggerer: the other takes its triggers after this many seconds of silence.
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "8",
                "AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT": json.dumps(connection),
                "AIRFLOW__CLAUDE_BATCH__WORK_DIR": f"s3://{BUCKET}/_claude_batch/",
                # S3 for the Amazon provider's file system (and s3fs) in every process: through the proxy.
                "AWS_ENDPOINT_URL": proxy.url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": secrets.token_hex(8),
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_RETRY_MODE": "standard",
                "AWS_MAX_ATTEMPTS": "6",
            },
            components=components,
            component_env={name: {"CLAUDE_BATCH_TEST_HOSTNAME": name} for name in (*WORKERS, *TRIGGERERS)},
        )
        (stack.home / "dags" / f"{DAG_ID}.py").write_text(textwrap.dedent(DAG))
        cleanup.callback(stack.stop)
        deployment = Deployment(stack, emulator_server, moto, proxy, [postgres, redis, moto], 0.0)
        try:
            stack.start(timeout=180)
        except BaseException:
            print(deployment.diagnostics())
            raise
        deployment.started_in_seconds = time.monotonic() - started
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
