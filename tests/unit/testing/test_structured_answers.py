"""The emulator's structured answers (``output_config.format``).

Invariants: an answer is a deterministic function of schema and seed, and valid for the
schema as the provider's own validator reads it (``OutputSchema.decoder``, which also enforces
the bounds the API only describes): enums and consts are kept, integers in ``1..5``, numbers in
``[0, 1)``, arrays of 1 to 3 items, local ``$ref`` s followed, required fields always present.
A spoiled answer fails that validator on purpose; over HTTP, the emulator's configured
fractions of invalid, refused and truncated answers show up as such in the results.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import anthropic
import msgspec
import pytest

from airflow_provider_claude_batch.batching.schema.output_schema import INVALID, REFUSED, TRUNCATED, VALID, OutputSchema
from airflow_provider_claude_batch.batching.schema.typed_columns import classify
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.testing.structured_answers import REFUSAL_DETAILS, answer, instance

SCHEMA: dict[str, Any] = {
    "type": "object",
    "$defs": {
        "Address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "since": {"type": "string", "format": "date"}},
            "required": ["city", "since"],
        }
    },
    "properties": {
        "label": {"enum": ["Billing", "Technical", "Other"]},
        "kind": {"const": "ticket"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "priority": {"type": "integer", "minimum": 1, "maximum": 5},
        "urgent": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "address": {"$ref": "#/$defs/Address"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["label", "kind", "confidence", "priority", "urgent", "tags", "address"],
}
OUTPUT = OutputSchema.from_user(SCHEMA)
SEEDS = range(60)


@pytest.mark.parametrize("schema", [SCHEMA, OUTPUT.api_format["schema"]], ids=["as_given", "as_sent"])
def test_answers_are_valid_for_the_schema_and_deterministic(schema: dict[str, Any]) -> None:
    texts = [answer(schema, seed) for seed in SEEDS]
    for text in texts:
        OUTPUT.decoder.decode(text)  # raises, naming the field, when not valid
    assert texts == [answer(schema, seed) for seed in SEEDS]
    assert len(set(texts)) == len(texts)


def test_each_keyword_is_honoured() -> None:
    values = [instance(SCHEMA, seed) for seed in SEEDS]
    assert {v["label"] for v in values} == {"Billing", "Technical", "Other"}
    assert {v["kind"] for v in values} == {"ticket"}
    assert {v["priority"] for v in values} == {1, 2, 3, 4, 5}
    assert all(0 <= v["confidence"] < 1 for v in values)
    assert {v["urgent"] for v in values} == {True, False}
    assert {len(v["tags"]) for v in values} == {1, 2, 3}
    assert all(re.fullmatch(r"2026-01-\d\d", v["address"]["since"]) for v in values)
    # The optional, nullable note is sometimes absent, sometimes null, sometimes a string.
    notes = Counter("absent" if "note" not in v else type(v["note"]).__name__ for v in values)
    assert set(notes) == {"absent", "NoneType", "str"}


def test_an_invalid_answer_misses_its_first_required_field_or_is_not_json() -> None:
    for seed in range(10):
        spoiled = answer(SCHEMA, seed, "invalid")
        assert "label" not in json.loads(spoiled)
        with pytest.raises(msgspec.ValidationError, match="label"):
            OUTPUT.decoder.decode(spoiled)
    nothing_required = {"type": "object", "properties": {"label": {"enum": ["a", "b"]}}}
    prose = answer(nothing_required, 1, "invalid")
    assert prose.startswith("Sure! ")
    with pytest.raises(msgspec.DecodeError):
        OutputSchema.from_user(nothing_required).decoder.decode(prose)


def test_a_truncated_answer_is_the_valid_ones_first_half() -> None:
    whole, cut = answer(SCHEMA, 3), answer(SCHEMA, 3, "truncated")
    assert whole.startswith(cut) and len(cut) == len(whole) // 2
    with pytest.raises(msgspec.DecodeError):
        OUTPUT.decoder.decode(cut)


def _requests(count: int) -> list[dict[str, Any]]:
    params = {"model": "claude-haiku-4-5", "max_tokens": 400, "output_config": {"format": OUTPUT.api_format}}
    return [
        {"custom_id": f"t{i}", "params": {**params, "messages": [{"role": "user", "content": f"ticket {i}"}]}}
        for i in range(count)
    ]


def _statuses(client: anthropic.Anthropic, batch_id: str) -> dict[str, str]:
    statuses = {}
    for line in client.messages.batches.results(batch_id):
        assert line.result.type == "succeeded"
        message = line.result.message
        details = message.stop_details.model_dump() if message.stop_details else None
        if message.stop_reason == "refusal":
            assert details == REFUSAL_DETAILS
        statuses[line.custom_id] = classify(message.stop_reason, message.content[0].text, OUTPUT.decoder, details)[0]
    return statuses


def test_the_configured_fractions_are_spoiled_over_http(client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    config = emulator.emulator.config
    config.invalid_output_fraction, config.refusal_fraction, config.truncated_fraction = 0.2, 0.1, 0.1
    batch = client.messages.batches.create(requests=_requests(400))
    statuses = _statuses(client, batch.id)
    counts = Counter(statuses.values())
    assert 50 < counts[INVALID] < 110 and 20 < counts[REFUSED] < 60 and 20 < counts[TRUNCATED] < 60
    assert counts[VALID] == 400 - counts[INVALID] - counts[REFUSED] - counts[TRUNCATED]
    assert _statuses(client, batch.id) == statuses  # the same on every download
    resubmitted = _statuses(client, client.messages.batches.create(requests=_requests(400)).id)
    assert resubmitted != statuses  # a new batch draws again

    config.invalid_output_fraction = config.refusal_fraction = config.truncated_fraction = 0.0
    clean = client.messages.batches.create(requests=_requests(50))
    assert set(_statuses(client, clean.id).values()) == {VALID}
