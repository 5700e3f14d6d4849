"""Results JSONL -> Arrow (no Airflow, no network)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from airflow_provider_claude_batch.batching.pricing import PriceTable
from airflow_provider_claude_batch.batching.results import (
    RESULT_SCHEMA,
    ClaudeBatchResultsError,
    ResultParser,
    iter_file_lines,
)

SUCCEEDED = {
    "custom_id": "a",
    "result": {
        "type": "succeeded",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-6",
            "content": [
                {"type": "text", "text": "Bill", "citations": None},
                {"type": "tool_use", "id": "t", "name": "x", "input": {}},
                {"type": "text", "text": "ing"},
            ],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 1000,
                "output_tokens": 200,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 50,
                "service_tier": "batch",
            },
        },
    },
}
ERRORED = {
    "custom_id": "b",
    "result": {
        "type": "errored",
        "error": {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}, "request_id": "req_1"},
    },
}
EXPIRED = {"custom_id": "c", "result": {"type": "expired"}}
CANCELED = {"custom_id": "d", "result": {"type": "canceled"}}


def _parse(lines: list[dict], **kwargs) -> pa.Table:  # type: ignore[no-untyped-def]
    parser = ResultParser("msgbatch_1", 0, PriceTable(), **kwargs)
    return pa.Table.from_batches(list(parser.parse(json.dumps(line).encode() for line in lines)), schema=RESULT_SCHEMA)


def test_every_outcome_maps_onto_the_schema() -> None:
    rows = {row["custom_id"]: row for row in _parse([SUCCEEDED, ERRORED, EXPIRED, CANCELED]).to_pylist()}
    ok = rows["a"]
    assert ok["result_type"] == "succeeded"
    assert ok["text"] == "Billing"  # text blocks joined, other blocks skipped
    assert json.loads(ok["content"])[1]["type"] == "tool_use"
    assert (
        ok["input_tokens"],
        ok["output_tokens"],
        ok["cache_creation_input_tokens"],
        ok["cache_read_input_tokens"],
    ) == (1000, 200, 100, 50)
    assert ok["batch_id"] == "msgbatch_1" and ok["round"] == 0
    # Sonnet: $3 in, $15 out, $3.75 cache write, $0.30 cache read per MTok, halved for batches.
    assert ok["cost_usd"] == pytest.approx(0.5 * (1000 * 3 + 200 * 15 + 100 * 3.75 + 50 * 0.3) / 1e6)
    assert (rows["b"]["error_type"], rows["b"]["error_message"]) == ("overloaded_error", "busy")
    assert rows["b"]["cost_usd"] is None and rows["b"]["text"] is None
    assert rows["c"]["result_type"] == "expired" and rows["d"]["result_type"] == "canceled"


def test_unknown_model_has_unknown_cost_not_zero() -> None:
    line = json.loads(json.dumps(SUCCEEDED))
    line["result"]["message"]["model"] = "some-future-model"
    assert _parse([line]).column("cost_usd").to_pylist() == [None]


def test_record_batches_are_bounded() -> None:
    lines = [dict(SUCCEEDED, custom_id=f"id-{i}") for i in range(25)]
    parser = ResultParser("b", 1, PriceTable(), rows_per_batch=10)
    sizes = [b.num_rows for b in parser.parse(json.dumps(line).encode() for line in lines)]
    assert sizes == [10, 10, 5]


def test_malformed_line_names_the_line_and_batch() -> None:
    parser = ResultParser("msgbatch_x", 0, PriceTable())
    with pytest.raises(ClaudeBatchResultsError, match="line 2 of batch 'msgbatch_x'"):
        list(parser.parse([json.dumps(EXPIRED).encode(), b'{"custom_id": 5}']))


def test_iter_file_lines_handles_block_boundaries(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"".join(f"line-{i}\n".encode() for i in range(1000)))
    with path.open("rb") as handle:
        assert list(iter_file_lines(handle, block_size=7)) == [f"line-{i}".encode() for i in range(1000)]
