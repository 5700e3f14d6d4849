"""Results JSONL -> Arrow (no Airflow, no network)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from airflow_provider_claude_batch.batching.api.pricing import PriceTable, batch_saving, sync_api_cost
from airflow_provider_claude_batch.batching.api.results import (
    RESULT_SCHEMA,
    ClaudeBatchResultsError,
    ResultParser,
    web_search_fee_usd,
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


def _parse(lines: list[dict], **kwargs) -> pa.Table:
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


def _expected(line: dict) -> dict:
    """The schema's meaning of one line, written plainly: the oracle for the columnar parser."""
    result = line["result"]
    message, envelope = result.get("message"), result.get("error")
    usage = (message or {}).get("usage") or {}
    texts = [b["text"] for b in (message or {}).get("content", []) if b.get("type") == "text"]
    detail = (envelope or {}).get("error")
    return {
        "custom_id": line["custom_id"],
        "result_type": result["type"],
        "text": "".join(texts) if texts else None,
        "content": None if message is None else json.dumps(message.get("content", []), separators=(",", ":")),
        "model": None if message is None else message.get("model"),
        "input_tokens": None if message is None else usage.get("input_tokens", 0),
        "cache_read_input_tokens": None if message is None else (usage.get("cache_read_input_tokens") or 0),
        "error_type": None if envelope is None else (detail or envelope).get("type"),
        "error_message": None if envelope is None else (detail or envelope).get("message"),
    }


def test_columnar_parse_matches_the_plain_reading_of_every_shape() -> None:
    shapes = []
    for i in range(300):
        kind = i % 6
        line = json.loads(json.dumps(SUCCEEDED))
        line["custom_id"] = f"id-{i}"
        message = line["result"]["message"]
        if kind == 1:
            message["content"] = [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": [1, {"b": None}]}}]
        elif kind == 2:
            del message["usage"]
            message["content"] = [{"type": "text", "text": f'quote " and \\n {i} é'}]
        elif kind == 3:
            line = dict(ERRORED, custom_id=f"id-{i}")
        elif kind == 4:
            line = dict(EXPIRED, custom_id=f"id-{i}")
        elif kind == 5:
            message["content"] = []
            message["usage"]["cache_read_input_tokens"] = None
        shapes.append(line)
    parser = ResultParser("msgbatch_1", 0, PriceTable(), rows_per_batch=64)
    encoded = [json.dumps(line, separators=(",", ":")).encode() for line in shapes]
    table = pa.Table.from_batches(list(parser.parse(encoded)), schema=RESULT_SCHEMA)
    rows = table.to_pylist()
    assert len(rows) == 300
    for row, line in zip(rows, shapes, strict=True):
        expected = _expected(line)
        assert {key: row[key] for key in expected} == expected


def test_blank_lines_in_a_file_are_skipped(tmp_path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"\n".join([json.dumps(SUCCEEDED).encode(), b"", json.dumps(EXPIRED).encode(), b""]) + b"\n")
    with path.open("rb") as handle:
        batches = list(ResultParser("b", 0, PriceTable()).parse_file(handle))
    assert pa.Table.from_batches(batches).column("custom_id").to_pylist() == ["a", "c"]


def test_a_line_without_a_result_is_named() -> None:
    parser = ResultParser("msgbatch_y", 0, PriceTable())
    with pytest.raises(ClaudeBatchResultsError, match="line 3 of batch 'msgbatch_y'"):
        list(parser.parse([json.dumps(EXPIRED).encode(), json.dumps(ERRORED).encode(), b'{"custom_id": "z"}']))


def test_full_usage_lands_in_columns_and_one_hour_cache_writes_cost_more() -> None:
    message = dict(SUCCEEDED["result"]["message"])
    message["usage"] = {
        "input_tokens": 10,
        "output_tokens": 300,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600},
        "output_tokens_details": {"thinking_tokens": 120},
        "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
        "service_tier": "batch",
    }
    message["stop_reason"] = "refusal"
    message["stop_details"] = {"type": "refusal", "category": "cyber", "explanation": "no"}
    row = _parse([{"custom_id": "a", "result": {"type": "succeeded", "message": message}}, EXPIRED]).to_pylist()[0]
    assert (
        row["cache_creation_5m_input_tokens"],
        row["cache_creation_1h_input_tokens"],
        row["thinking_tokens"],
        row["web_search_requests"],
        row["web_fetch_requests"],
        row["service_tier"],
    ) == (400, 600, 120, 2, 0, "batch")
    assert row["stop_details"] == {"type": "refusal", "category": "cyber", "explanation": "no"}
    # Sonnet: 5-minute writes at 1.25x input ($3.75), 1-hour writes at 2x ($6), halved for batches;
    # thinking tokens are part of output_tokens; two web searches at $10 per 1,000, not halved.
    assert row["cost_usd"] == pytest.approx(0.5 * (10 * 3 + 300 * 15 + 400 * 3.75 + 600 * 6) / 1e6 + 2 * 0.01)


def test_web_searches_are_priced_per_call_and_the_fee_can_be_overridden() -> None:
    message = dict(SUCCEEDED["result"]["message"])
    message["usage"] = {"input_tokens": 0, "output_tokens": 0, "server_tool_use": {"web_search_requests": 3}}
    line = {"custom_id": "a", "result": {"type": "succeeded", "message": message}}
    assert _parse([line]).to_pylist()[0]["cost_usd"] == pytest.approx(0.03)
    prices = PriceTable.load({message["model"]: {"input": 3, "output": 15, "web_search": 5}})
    batches = list(ResultParser("b", 0, prices).parse([json.dumps(line).encode()]))
    assert pa.Table.from_batches(batches).column("cost_usd").to_pylist() == [pytest.approx(0.015)]


def test_the_web_search_fees_of_rows_are_the_part_of_their_cost_not_discounted() -> None:
    def searching(custom_id: str, model: str, searches: int) -> dict:
        message = {**SUCCEEDED["result"]["message"], "model": model}
        message["usage"] = {
            "input_tokens": 100,
            "output_tokens": 10,
            "server_tool_use": {"web_search_requests": searches},
        }
        return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}

    prices = PriceTable.load({"claude-sonnet-4-6": {"input": 3, "output": 15, "web_search": 5}})
    lines = [
        searching("a", "claude-sonnet-4-6", 3),
        searching("b", "claude-haiku-4-5", 1),
        searching("c", "claude-unknown-9", 4),  # no price: no cost, and no fee counted either
        EXPIRED,
    ]
    table = pa.Table.from_batches(list(ResultParser("b", 0, prices).parse(json.dumps(line).encode() for line in lines)))
    fees = web_search_fee_usd(table, prices)
    assert fees == pytest.approx(3 * 0.005 + 1 * 0.01)
    tokens = 0.5 * (100 * 3 + 10 * 15) / 1e6 + 0.5 * (100 * 1 + 10 * 5) / 1e6
    cost = sum(c for c in table.column("cost_usd").to_pylist() if c is not None)
    assert cost - fees == pytest.approx(tokens)
    assert sync_api_cost(cost, per_call_fees=fees) == pytest.approx(2 * tokens + fees)
    assert batch_saving(cost, per_call_fees=fees) == pytest.approx(tokens)
