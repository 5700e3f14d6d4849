"""The soak's two DAGs: the same pipeline (submit from S3, deferred wait, land to S3) under two
DAG ids sharing one work directory, as two teams' DAGs on one Airflow would."""

from __future__ import annotations

from tests.distributed.deployment import BUCKET

DAG_IDS = ("claude_batch_soak_a", "claude_batch_soak_b")
PROMPT = "Classify: {body}"
BATCH_SIZE = 40

_DAG = """
from datetime import datetime, timedelta
from airflow.sdk import DAG
from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_provider_claude_batch.sensors.batch import ClaudeBatchSensor
from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator

with DAG({dag_id!r}, schedule=None, start_date=datetime(2020, 1, 1), max_active_runs=4,
         default_args={{"retries": 4, "retry_delay": timedelta(seconds=2)}}):
    submit = ClaudeBatchSubmitOperator(
        task_id="submit", source="s3://{bucket}/soak-in/{dag_id}/ds={{{{ ds }}}}/", id_column="row_id",
        prompt={prompt!r}, model="claude-haiku-4-5", max_tokens=64, max_requests_per_batch={batch},
    )
    submit.queue_poll_interval = 1  # a full queue is checked again every second, not every minute
    submit.claim_recheck_interval = 10  # a wait deferred on another run's claim: looked at every 10 s
    wait = ClaudeBatchSensor(task_id="wait", manifest=submit.output, poll_interval=1)
    land = ClaudeBatchToParquetOperator(
        task_id="land", manifest=submit.output, destination="s3://{bucket}/soak-out/{dag_id}/ds={{{{ ds }}}}/",
        keep_columns=["row_id", "body"], poll_interval=1,
    )
    submit >> wait >> land
"""


def dag_files() -> dict[str, str]:
    return {
        f"{dag_id}.py": _DAG.format(dag_id=dag_id, bucket=BUCKET, prompt=PROMPT, batch=BATCH_SIZE) for dag_id in DAG_IDS
    }


def source_key(dag_id: str, day: str) -> str:
    return f"{BUCKET}/soak-in/{dag_id}/ds={day}/rows.parquet"


def destination(dag_id: str, day: str) -> str:
    return f"s3://{BUCKET}/soak-out/{dag_id}/ds={day}/"
