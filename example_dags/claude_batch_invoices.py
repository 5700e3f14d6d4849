"""Invoices and receipts to typed rows: a folder of PDFs and images, read by Claude in batches.

Each invoice PDF in the inbox becomes one request with the PDF as a ``document`` block, each
receipt photo one request with an ``image`` block; the answers are structured
(``output_schema``), so vendor, date, currency, total and line items land as typed Parquet
columns beside each file's name. The invoices are uploaded once through the Files API and
referred to by file id; the receipts go inline. The files are read as bytes: a renamed copy of
an invoice already read reuses its answer, and a second run over the same inbox sends nothing
and uploads nothing.

Paths default to a local folder; point CLAUDE_BATCH_EXAMPLE_DATA at shared storage
(``s3://...``) in production, together with ``[claude_batch] work_dir``.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, task
from pydantic import BaseModel, Field

DATA = os.environ.get(
    "CLAUDE_BATCH_EXAMPLE_DATA", os.path.join(os.environ.get("AIRFLOW_HOME", "."), "example_data")
).rstrip("/")
INBOX = DATA + "/invoices/inbox"


class LineItem(BaseModel):
    description: str
    amount: float


class InvoiceFields(BaseModel):
    """What each document or receipt lands as: one typed column per field."""

    vendor: str
    date: str = Field(description="the invoice date, YYYY-MM-DD")
    currency: str = Field(description="ISO 4217 code")
    total: float
    line_items: list[LineItem]


PROMPT = "Extract the vendor, date, currency, total and line items of this {kind}."

with DAG(
    dag_id="claude_batch_invoices",
    description="Invoice PDFs and receipt images to typed rows with Claude Message Batches",
    schedule=None,
    start_date=datetime(2026, 12, 1),
    catchup=False,
    tags=["claude", "batch", "example", "documents"],
):

    @task.claude_batch(
        documents=["path"],
        upload="files",  # each distinct PDF uploaded once through the Files API, referred to by id
        prompt=PROMPT.replace("{kind}", "invoice"),
        model="claude-sonnet-4-6",
        max_tokens=512,
        output_schema=InvoiceFields,
        keep_columns=["name", "size"],
        destination=DATA + "/invoices/fields/",
        max_cost_usd=5.0,
        poll_interval=float(os.environ.get("CLAUDE_BATCH_EXAMPLE_POLL_SECONDS", "60")),
    )
    def invoices() -> str:
        return INBOX + "/*.pdf"

    @task.claude_batch(
        images=["path"],
        prompt=PROMPT.replace("{kind}", "receipt"),
        model="claude-sonnet-4-6",
        max_tokens=512,
        output_schema=InvoiceFields,
        keep_columns=["name", "size"],
        destination=DATA + "/invoices/receipts/",
        max_cost_usd=5.0,
        poll_interval=float(os.environ.get("CLAUDE_BATCH_EXAMPLE_POLL_SECONDS", "60")),
    )
    def receipts() -> str:
        return INBOX + "/*.png"

    invoices()
    receipts()
