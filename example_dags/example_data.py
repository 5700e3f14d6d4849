"""Synthetic support tickets for the example DAGs (not a DAG file)."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

_SUBJECTS = {
    "Billing": ["I was charged twice for my subscription this month.", "Please refund my last invoice."],
    "Technical": ["The mobile app crashes when I upload images.", "Sync fails with a timeout error."],
    "Account": ["I can't log into my account after resetting my password.", "How do I change my email?"],
    "Other": ["Do you have a student discount?", "Where can I send feedback about the new design?"],
}
PRODUCTS = ["web", "ios", "android", "api"]


def write_tickets(data_dir: str | Path, ds: str, rows: int, *, seed: int = 7) -> Path:
    """Write ``rows`` tickets for day ``ds`` to ``{data_dir}/support/tickets/ds={ds}/``."""
    rng = random.Random(f"{seed}-{ds}")
    categories = list(_SUBJECTS)
    ids, bodies, products = [], [], []
    for i in range(rows):
        category = rng.choice(categories)
        ids.append(f"T{ds.replace('-', '')}-{i:06d}")
        # Each ticket's text is its own (a new night's tickets are new requests); a rerun of a
        # night sends the same requests, which answer reuse does not pay for again.
        bodies.append(f"{rng.choice(_SUBJECTS[category])} (ticket {ids[-1]})")
        products.append(rng.choice(PRODUCTS))
    folder = Path(data_dir) / "support" / "tickets" / f"ds={ds}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "tickets.parquet"
    pq.write_table(pa.table({"ticket_id": ids, "body": bodies, "product": products}), target)
    return target
