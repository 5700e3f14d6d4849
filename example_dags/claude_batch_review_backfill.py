"""Backfill months of history: summarize each day's product reviews with Message Batches.

Every run works on one day (``{{ ds }}``) and writes that day's partition. The output of a
run is swapped in whole, and the submit task keeps its manifest under the run's own folder,
so running the same backfill twice creates no new batches and leaves identical Parquet:

    airflow backfill create --dag-id claude_batch_review_backfill \\
        --from-date 2026-10-01 --to-date 2026-10-31 --max-active-runs 4

    # re-run days that already succeeded (e.g. after changing nothing, or to repair output):
    airflow backfill create --dag-id claude_batch_review_backfill \\
        --from-date 2026-10-01 --to-date 2026-10-31 --reprocess-behavior completed

A rerun re-attaches to the batches its day already created (same input, same fingerprint);
if a day's input changed, the submit task fails and says so, unless
``on_input_change="resubmit"``.
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
POLL_SECONDS = float(os.environ.get("CLAUDE_BATCH_EXAMPLE_POLL_SECONDS", "300"))
SUMMARIES = Asset(f"{DATA}/support/ticket_summaries/" if "://" in DATA else f"file://{DATA}/support/ticket_summaries/")

with DAG(
    dag_id="claude_batch_review_backfill",
    description="One day of ticket history per run, safe to backfill and to backfill again",
    schedule="@daily",
    start_date=datetime(2026, 10, 1),
    catchup=False,  # history is loaded with `airflow backfill create`, on purpose
    max_active_runs=4,
    tags=["claude", "batch", "example", "backfill"],
):
    submit = ClaudeBatchSubmitOperator(
        task_id="submit",
        source=DATA + "/support/tickets/ds={{ ds }}/",
        id_column="ticket_id",
        prompt="Summarize this support ticket in at most ten words: {body}",
        model="claude-haiku-4-5",
        max_tokens=32,
        retries=2,
    )
    wait = ClaudeBatchSensor(task_id="wait", manifest=submit.output, poll_interval=POLL_SECONDS, retries=2)
    land = ClaudeBatchToParquetOperator(
        task_id="land",
        manifest=submit.output,
        destination=DATA + "/support/ticket_summaries/ds={{ ds }}/",
        keep_columns=["ticket_id"],
        poll_interval=POLL_SECONDS,
        outlets=[SUMMARIES],
        retries=2,
    )
    submit >> wait >> land
