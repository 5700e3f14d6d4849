"""Nightly: classify yesterday's support tickets with Claude's Message Batches API.

Reads the day's tickets (Parquet), submits them as batches of at most 1,000 requests,
waits in the triggerer without holding a worker slot, and lands one labelled row per ticket
as Parquet, partitioned by date. Reruns and backfills replace the day's partition whole and
re-attach to batches already created, so no ticket is billed twice.

Paths default to a local folder; point CLAUDE_BATCH_EXAMPLE_DATA at shared storage
(``s3://...``) in production, together with ``[claude_batch] work_dir``.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, Asset

from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_provider_claude_batch.sensors.batch import ClaudeBatchSensor
from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator

DATA = os.environ.get(
    "CLAUDE_BATCH_EXAMPLE_DATA", os.path.join(os.environ.get("AIRFLOW_HOME", "."), "example_data")
).rstrip("/")
POLL_SECONDS = float(os.environ.get("CLAUDE_BATCH_EXAMPLE_POLL_SECONDS", "60"))

TICKETS = Asset(f"{DATA}/support/tickets/" if "://" in DATA else f"file://{DATA}/support/tickets/")
LABELS = Asset(f"{DATA}/support/ticket_labels/" if "://" in DATA else f"file://{DATA}/support/ticket_labels/")

with DAG(
    dag_id="claude_batch_support_tickets",
    description="Classify support tickets with Claude Message Batches",
    schedule="@daily",
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=3,
    tags=["claude", "batch", "example"],
):
    submit = ClaudeBatchSubmitOperator(
        task_id="submit",
        source=DATA + "/support/tickets/ds={{ ds }}/",
        id_column="ticket_id",
        prompt="Classify this support ticket into one category (Billing/Technical/Account/Other): {body}",
        system="Answer with one word.",
        model="claude-sonnet-4-6",
        max_tokens=16,
        max_requests_per_batch=1_000,
        max_cost_usd=5.0,  # a night with far more tickets than usual fails before it is billed
        inlets=[TICKETS],
    )
    wait = ClaudeBatchSensor(task_id="wait", manifest=submit.output, poll_interval=POLL_SECONDS)
    land = ClaudeBatchToParquetOperator(
        task_id="land",
        manifest=submit.output,
        destination=DATA + "/support/ticket_labels/ds={{ ds }}/",
        keep_columns=["ticket_id", "product"],
        poll_interval=POLL_SECONDS,  # for resubmitted batches
        outlets=[LABELS],
    )
    submit >> wait >> land
