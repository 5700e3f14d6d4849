"""P5: typed answers. Answer texts -> validated, typed Arrow columns (the transfer's
``typed_columns`` step): rows/s and peak RSS over blocks of 65,536 rows.

The input is a results-shaped Parquet file (custom_id, result_type, text, stop_reason) written
before the clock starts and streamed by row group, so peak RSS shows that memory stays bounded
by a block. The mix: about 97% valid answers, 2% invalid (a field missing or mistyped), 0.5%
refused, 0.5% truncated.

    python -m benchmarks.p5_typed_answers case INPUT.parquet SCHEMA   (one measured process)
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import report

BLOCK_ROWS = 65_536
SCHEMAS: dict[str, dict[str, Any]] = {
    "classification": {
        "type": "object",
        "properties": {
            "label": {"enum": ["Billing", "Technical", "Account", "Other"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["label", "confidence"],
    },
    "extraction": {
        "type": "object",
        "properties": {
            "customer": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "email": {"type": ["string", "null"]}},
                "required": ["name", "email"],
            },
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer"}},
                    "required": ["sku", "quantity"],
                },
            },
            "urgent": {"type": "boolean"},
        },
        "required": ["customer", "items", "urgent"],
    },
}


def _answer(kind: str, rng: random.Random, i: int) -> dict[str, Any]:
    if kind == "classification":
        return {"label": rng.choice(("Billing", "Technical", "Account", "Other")), "confidence": rng.random()}
    return {
        "customer": {"name": f"Customer {i}", "email": None if i % 3 else f"c{i}@example.com"},
        "items": [{"sku": f"SKU-{i % 997}-{k}", "quantity": 1 + k} for k in range(1 + i % 3)],
        "urgent": bool(i % 2),
    }


def make_input(path: Path, rows: int, kind: str) -> Path:
    rng = random.Random(5)
    schema = pa.schema(
        [("custom_id", pa.string()), ("result_type", pa.string()), ("text", pa.string()), ("stop_reason", pa.string())]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, BLOCK_ROWS):
            ids, texts, stops = [], [], []
            for i in range(start, min(rows, start + BLOCK_ROWS)):
                answer = _answer(kind, rng, i)
                draw = rng.random()
                stop = "end_turn"
                if draw < 0.02:  # invalid: the first field missing
                    answer.pop(next(iter(answer)))
                elif draw < 0.025:
                    stop = "refusal"
                elif draw < 0.03:
                    stop = "max_tokens"
                ids.append(f"row-{i}")
                texts.append(json.dumps(answer))
                stops.append(stop)
            writer.write_table(
                pa.table(
                    {"custom_id": ids, "result_type": ["succeeded"] * len(ids), "text": texts, "stop_reason": stops},
                    schema=schema,
                )
            )
    return path


def main(argv: list[str]) -> None:
    source, kind = Path(argv[2]), argv[3]
    from airflow_provider_claude_batch.batching.schema.output_schema import OutputSchema
    from airflow_provider_claude_batch.batching.schema.typed_columns import TypedAnswers

    typed = TypedAnswers(OutputSchema.from_user(SCHEMAS[kind]))
    started, cpu_started = time.perf_counter(), time.process_time()
    rows = 0
    for batch in pq.ParquetFile(source).iter_batches(batch_size=BLOCK_ROWS):
        rows += typed.add_columns(pa.Table.from_batches([batch])).num_rows
    seconds = time.perf_counter() - started
    report(
        {
            "rows": rows,
            "rows_per_second": rows / seconds,
            # The machine is shared: rows per CPU second and the load say how much of the wall
            # time was waiting for a core.
            "rows_per_cpu_second": rows / (time.process_time() - cpu_started),
            "load_1min": os.getloadavg()[0],
            "by_output_status": dict(typed.counts),
        },
        started=started,
        cpu_started=cpu_started,
    )


if __name__ == "__main__":
    main(sys.argv)
