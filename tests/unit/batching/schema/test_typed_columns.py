"""typed_columns: answers -> typed Arrow columns, output_status and output_error per row."""

from __future__ import annotations

import json

import pyarrow as pa

from airflow_provider_claude_batch.batching.schema.output_schema import OutputSchema
from airflow_provider_claude_batch.batching.schema.typed_columns import TypedAnswers, invalid_answer_ids
from airflow_provider_claude_batch.testing.structured_answers import answer

SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"enum": ["a", "b"]},
        "score": {"type": "number"},
        "where": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
    "required": ["label", "score", "where"],
}
GOOD = '{"label": "a", "score": 0.5,\n "where": {"city": "Lyon"}}'  # a newline is whitespace


def _results(rows: list[tuple[str, str | None, str | None]]) -> pa.Table:
    return pa.table(
        {
            "custom_id": [f"r{i}" for i in range(len(rows))],
            "result_type": [kind for kind, _, _ in rows],
            "text": [text for _, text, _ in rows],
            "stop_reason": [stop for _, _, stop in rows],
        }
    )


def test_each_row_is_typed_or_marked() -> None:
    typed = TypedAnswers(OutputSchema.from_user(SCHEMA))
    table = typed.add_columns(
        _results(
            [
                ("succeeded", GOOD, "end_turn"),
                ("succeeded", '{"label": "c", "score": 1, "where": {"city": "x"}}', "end_turn"),
                ("succeeded", '{"label": "a", "score": "high", "where": {"city": "x"}}', "end_turn"),
                ("succeeded", '{"label": "a", "score": 1, "where": {}}', "end_turn"),
                ("succeeded", "I think it is a", "end_turn"),
                ("succeeded", "I can't help", "refusal"),
                ("succeeded", '{"label": "a", "sco', "max_tokens"),
                ("errored", None, None),
            ]
        )
    )
    rows = table.to_pylist()
    assert [r["output_status"] for r in rows] == [
        "valid", "invalid", "invalid", "invalid", "invalid", "refused", "truncated", None,
    ]  # fmt: skip
    assert rows[0]["output_error"] is None
    assert (rows[0]["label"], rows[0]["score"], rows[0]["where"]) == ("a", 0.5, {"city": "Lyon"})
    assert rows[1]["output_error"] == "$.label: Invalid enum value 'c'"
    assert rows[2]["output_error"] == "$.score: Expected `float`, got `str`"
    assert rows[3]["output_error"] == "$.where: Object missing required field `city`"
    assert rows[4]["output_error"].startswith("$: not JSON")
    assert "refused" in rows[5]["output_error"] and "max_tokens" in rows[6]["output_error"]
    assert all(r["label"] is None and r["where"] is None for r in rows[1:])
    assert table.schema.field("label").type == pa.dictionary(pa.int32(), pa.string())
    assert typed.counts == {"valid": 1, "invalid": 4, "refused": 1, "truncated": 1}
    assert typed.not_valid == 6 and "r1 ($.label: Invalid enum value 'c')" in typed.describe_failures()


def test_a_block_without_valid_answers_still_has_the_columns() -> None:
    typed = TypedAnswers(OutputSchema.from_user(SCHEMA))
    table = typed.add_columns(_results([("expired", None, None)]))
    assert table.column("where").type == pa.struct([("city", pa.string())])
    assert table.column("where").null_count == 1


def test_the_emulators_answers_validate_and_resubmission_picks_only_invalid_ones() -> None:
    schema = OutputSchema.from_user(SCHEMA)
    lines = []
    for seed, spoil in enumerate([None, "invalid", "truncated", None, "invalid"]):
        text = answer(schema.api_format["schema"], seed, spoil)
        stop = "max_tokens" if spoil == "truncated" else "end_turn"
        message = {"stop_reason": stop, "content": [{"type": "text", "text": text}]}
        lines.append(
            json.dumps({"custom_id": f"r{seed}", "result": {"type": "succeeded", "message": message}}).encode()
        )
    lines.append(b'{"custom_id":"r9","result":{"type":"expired"}}')
    assert invalid_answer_ids(lines, schema) == ["r1", "r4"]
