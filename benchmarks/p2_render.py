"""P2: rendering. Input rows from Parquet -> request JSONL chunks (the submit operator's
staging step): rows/s and peak RSS.

    python -m benchmarks.p2_render case INPUT.parquet INPUT_COLUMNS   (one measured process)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import report


def make_input(path: Path, rows: int) -> Path:
    """``rows`` tickets with two text columns, written in row groups of 100k."""
    with pq.ParquetWriter(
        path, pa.schema([("ticket_id", pa.string()), ("product", pa.string()), ("body", pa.string())])
    ) as writer:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            writer.write_table(
                pa.table(
                    {
                        "ticket_id": [f"T-{i:08d}" for i in range(start, start + n)],
                        "product": [("web", "ios", "android", "api")[i % 4] for i in range(start, start + n)],
                        "body": [
                            f"My order {i} arrived damaged and support has not answered for {i % 9} days."
                            for i in range(start, start + n)
                        ],
                    }
                )
            )
    return path


def main(argv: list[str]) -> None:
    source, input_columns = Path(argv[2]), argv[3]
    from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
    from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
    from airflow_provider_claude_batch.batching.submit.staging import stage_requests

    spec = RequestSpec(
        prompt="Product: {product}. Classify this ticket (Billing/Technical/Account/Other): {body}",
        system="Answer with one word.",
        model="claude-haiku-4-5",
        max_tokens=8,
        id_column="ticket_id",
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="bench-p2-") as tmp:
        staged = stage_requests(
            source,
            spec,
            ChunkLimits(max_requests=100_000),
            Path(tmp),
            input_columns=None if input_columns == "none" else "all",
        )
        seconds = time.perf_counter() - started
        report(
            {
                "rows": staged.total_requests,
                "chunks": len(staged.chunks),
                "rows_per_second": staged.total_requests / seconds,
            },
            started=started,
            cpu_started=cpu_started,
        )


if __name__ == "__main__":
    main(sys.argv)
