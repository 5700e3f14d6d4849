"""Nightly: classify yesterday's support tickets with Claude's Message Batches API.

Reads the day's tickets (Parquet), submits them as batches of at most 1,000 requests,
waits in the triggerer without holding a worker slot, and lands one labelled row per ticket
as Parquet, partitioned by date: the answers are structured (``output_schema``), so the label
and the model's confidence land as typed columns. Reruns and backfills replace the day's partition whole and
re-attach to batches already created, so no ticket is billed twice.

Paths default to a local folder; point CLAUDE_BATCH_EXAMPLE_DATA at shared storage
(``s3://...``) in production, together with ``[claude_batch] work_dir``.
"""

from __future__ import annotations

import os
from datetime import datetime
from enum import Enum

from airflow.sdk import DAG, Asset
from pydantic import BaseModel, Field

from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_provider_claude_batch.sensors.batch import ClaudeBatchSensor
from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator

DATA = os.environ.get(
    "CLAUDE_BATCH_EXAMPLE_DATA", os.path.join(os.environ.get("AIRFLOW_HOME", "."), "example_data")
).rstrip("/")
POLL_SECONDS = float(os.environ.get("CLAUDE_BATCH_EXAMPLE_POLL_SECONDS", "60"))

TICKETS = Asset(f"{DATA}/support/tickets/" if "://" in DATA else f"file://{DATA}/support/tickets/")
LABELS = Asset(f"{DATA}/support/ticket_labels/" if "://" in DATA else f"file://{DATA}/support/ticket_labels/")


class Category(str, Enum):
    billing = "Billing"
    technical = "Technical"
    account = "Account"
    other = "Other"


class TicketLabel(BaseModel):
    """Each answer: a category (a dictionary-encoded column) and a confidence (a double)."""

    label: Category
    confidence: float = Field(ge=0, le=1)


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
        prompt="Classify this support ticket: {body}",
        system="You route support tickets. Give the category and how confident you are (0 to 1).",
        model="claude-sonnet-4-6",
        max_tokens=32,  # a label and a confidence as JSON need about 15 tokens
        output_schema=TicketLabel,
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
