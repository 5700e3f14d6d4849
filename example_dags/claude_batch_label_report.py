"""Downstream of the ticket classifier: runs whenever new ticket labels land.

``claude_batch_support_tickets`` lists the labels folder as an outlet Asset of its transfer
task, which puts the landed partition, its row counts and its cost on the Asset event. This
DAG is scheduled on that Asset and reads exactly that partition from
``triggering_asset_events``: no path guessing, no sensor polling for files.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, task

DATA = os.environ.get(
    "CLAUDE_BATCH_EXAMPLE_DATA", os.path.join(os.environ.get("AIRFLOW_HOME", "."), "example_data")
).rstrip("/")
LABELS = Asset(f"{DATA}/support/ticket_labels/" if "://" in DATA else f"file://{DATA}/support/ticket_labels/")

with DAG(
    dag_id="claude_batch_label_report",
    description="Label counts per product for every partition of ticket labels that lands",
    schedule=[LABELS],
    start_date=datetime(2026, 11, 1),
    catchup=False,
    tags=["claude", "batch", "example"],
):

    @task
    def report(triggering_asset_events: Any = None) -> list[str]:
        import pyarrow.compute as pc
        import pyarrow.dataset as ds
        from airflow.sdk import ObjectStoragePath

        written = []
        for event in triggering_asset_events[LABELS]:
            destination = ObjectStoragePath(event.extra["destination"])
            table = ds.dataset(str(destination.path), filesystem=destination.fs, format="parquet").to_table(
                columns=["product", "text", "result_type"]
            )
            succeeded = table.filter(pc.equal(table.column("result_type"), "succeeded"))
            counts = succeeded.group_by(["product", "text"]).aggregate([("text", "count")]).to_pylist()
            summary = {
                "partition": str(destination),
                "rows": event.extra["rows"],
                "cost_usd": event.extra["cost_usd"],
                "labels": sorted(counts, key=lambda row: (row["product"], row["text"])),
            }
            target = destination.parent / f"_report_{destination.name}.json"
            target.write_text(json.dumps(summary, indent=1))
            written.append(str(target))
        return written

    report()
