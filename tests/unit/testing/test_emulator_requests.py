"""What the emulator accepts at create and ``count_tokens``, over real HTTP and directly.

Invariants: a create is refused whole (the API's 400, nothing created) only for what the API
refuses at create time; invalid params are kept and end ``errored`` naming them; the lean parse
and the general one store the same request for the same compact JSON; what a request asks for
(a schema, a cacheable prefix, web searches) is kept, also across a restart from the state
file; input tokens are a quarter of the prompt's JSON characters, for usage and count_tokens.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import anthropic
import httpx
import msgspec
import pytest
from anthropic.types.messages import MessageBatchIndividualResponse

from airflow_provider_claude_batch.testing import EmulatorConfig, RunningEmulator, start_emulator
from airflow_provider_claude_batch.testing.emulator_requests import (
    EmulatorHTTPError,
    StoredRequest,
    _parse_general,
    _parse_lean,
    parse_create,
    prompt_bytes,
)
from tests.helpers import TEST_API_KEY, make_requests


def _results(client: anthropic.Anthropic, batch_id: str) -> list[MessageBatchIndividualResponse]:
    return list(client.messages.batches.results(batch_id))


SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
POLICY = [{"type": "text", "text": "policy " * 1000, "cache_control": {"type": "ephemeral"}}]
#: Requests of every kind the parses tell apart: plain, structured, cached, with web search,
#: and invalid in each way that is kept rather than refused.
VARIED: list[dict[str, Any]] = [
    *make_requests(2),
    {
        "custom_id": "schema",
        "params": {
            "model": "m",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "x"}],
            "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
        },
    },
    {
        "custom_id": "cached",
        "params": {"model": "m", "max_tokens": 8, "system": POLICY, "messages": [{"role": "user", "content": "y"}]},
    },
    {
        "custom_id": "search",
        "params": {
            "model": "m",
            "max_tokens": 8,
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 4}],
            "messages": [{"role": "user", "content": "z"}],
        },
    },
    {"custom_id": "no-model", "params": {"max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}},
    {
        "custom_id": "bool-max",
        "params": {"model": "m", "max_tokens": True, "messages": [{"role": "user", "content": "x"}]},
    },
    {"custom_id": "no-messages", "params": {"model": "m", "max_tokens": 8, "messages": []}},
    {
        "custom_id": "text-format",
        "params": {
            "model": "m",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "x"}],
            "output_config": {"format": {"type": "text"}},
        },
    },
]


@pytest.mark.parametrize(
    ("mutate", "status", "needle"),
    [
        (lambda r: r[0].update(custom_id="bad id!"), 400, "custom_id"),
        (lambda r: r[0].update(custom_id="x" * 65), 400, "custom_id"),
        (lambda r: r[1].update(custom_id=r[0]["custom_id"]), 400, "Duplicate"),
        (lambda r: r[0].pop("params"), 400, "params"),
        (lambda r: r.clear(), 400, "at least 1"),
    ],
)
def test_create_validation_errors(
    client: anthropic.Anthropic, emulator: RunningEmulator, mutate, status, needle
) -> None:
    requests = make_requests(3)
    mutate(requests)
    with pytest.raises(anthropic.APIStatusError, match=needle) as info:
        client.messages.batches.create(requests=requests)
    assert info.value.status_code == status
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert emulator.emulator.stats["batches_created"] == 0


@pytest.mark.parametrize("path", ["/v1/messages/batches", "/v1/messages/count_tokens"])
def test_a_body_that_is_not_json_is_the_apis_400(emulator: RunningEmulator, path: str) -> None:
    answer = httpx.post(
        f"{emulator.base_url}{path}",
        content=b'{"requests": [',
        headers={"x-api-key": TEST_API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    assert answer.status_code == 400 and "Request body is not valid JSON" in answer.text
    assert emulator.emulator.stats["batches_created"] == 0


def test_a_create_with_output_schema_and_cache_control_keeps_both(tmp_path: Path) -> None:
    """Oracle: requests carrying ``output_config.format`` and a ``cache_control`` system block
    (parsed by the lean create decoder) get answers valid for their schema and cache usage in
    the results file rendered once, also after a restart from the state file."""
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["a", "b"]}}, "required": ["label"]}
    system = [{"type": "text", "text": "policy " * 1000, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    requests = [
        {
            "custom_id": f"s-{i}",
            "params": {
                "model": "claude-sonnet-4-5",
                "max_tokens": 64,
                "system": system,
                "messages": [{"role": "user", "content": f"ticket {i}"}],
                "output_config": {"format": {"type": "json_schema", "schema": schema}},
            },
        }
        for i in range(3)
    ]
    config = EmulatorConfig(processing_seconds=3600, state_file=str(tmp_path / "state.json"))
    with start_emulator(config) as first:
        client = anthropic.Anthropic(api_key=first.api_key, base_url=first.base_url, max_retries=0)
        batch = client.messages.batches.create(requests=requests)
        first.emulator.end_all()
    with start_emulator(EmulatorConfig(state_file=config.state_file)) as second:
        client = anthropic.Anthropic(api_key=second.api_key, base_url=second.base_url, max_retries=0)
        results = sorted(_results(client, batch.id), key=lambda r: r.custom_id)
    assert [r.result.type for r in results] == ["succeeded"] * 3
    usages = [r.result.message.usage for r in results]
    for result in results:
        assert json.loads(result.result.message.content[0].text)["label"] in ("a", "b")
    # One request writes the prefix to the cache, the others of the batch read it.
    assert sorted(bool(u.cache_creation_input_tokens) for u in usages) == [False, False, True]
    assert sum(bool(u.cache_read_input_tokens) for u in usages) == 2


def _stored(requests: list[dict[str, Any]], *, general: bool) -> list[StoredRequest]:
    """The requests as one of the two parses stores them. Every well-formed body fits the lean
    parse's structs, so ``parse_create`` sends the general parse only bodies it refuses: its way
    of storing requests is reached here directly."""
    body = msgspec.json.encode({"requests": requests})
    return (_parse_general if general else _parse_lean)(body, "wrkspc", 100)


def test_the_lean_and_the_general_parse_store_the_same_requests() -> None:
    lean = _stored(VARIED, general=False)
    assert [s.custom_id for s in parse_create(msgspec.json.encode({"requests": VARIED}), "wrkspc", 100)] == [
        s.custom_id for s in lean
    ]
    assert [msgspec.to_builtins(s) for s in lean] == [msgspec.to_builtins(s) for s in _stored(VARIED, general=True)]
    by_id = {s.custom_id: s for s in lean}
    assert by_id["req-0"].invalid_reason is None and by_id["req-0"].output_schema is None
    assert by_id["schema"].output_schema == SCHEMA
    assert by_id["cached"].cache_point is not None and by_id["search"].web_searches == 4
    assert by_id["no-model"].invalid_reason == "model: Field required" and by_id["no-model"].model == "unknown"
    assert by_id["bool-max"].invalid_reason.startswith("max_tokens:") and by_id["bool-max"].max_tokens == 1
    assert by_id["no-messages"].invalid_reason == "messages: List should have at least 1 item"
    assert by_id["text-format"].invalid_reason == "output_config.format.type: Input should be 'json_schema'"
    assert by_id["req-0"].input_chars == len(prompt_bytes(VARIED[0]["params"]))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "requests: Field required"),
        (b'{"requests": 3}', "requests: Field required"),
        (b'{"requests": [1]}', "requests.0: Input should be an object"),
        (b'{"requests": [{"custom_id": "a", "params": 3}]}', "requests.0.params: Field required"),
        (b'{"requests": [{"custom_id": "a"}]}', "requests.0.params: Field required"),
    ],
)
def test_a_body_of_the_wrong_shape_is_refused_naming_the_field(body: bytes, message: str) -> None:
    with pytest.raises(EmulatorHTTPError) as refused:
        parse_create(body, None, 100)
    assert refused.value.status == 400 and refused.value.error_type == "invalid_request_error"
    assert refused.value.message.startswith(message)


def test_the_request_count_limit_is_the_callers() -> None:
    body = msgspec.json.encode({"requests": make_requests(3)})
    assert len(parse_create(body, None, 3)) == 3
    with pytest.raises(EmulatorHTTPError, match="at most 2 requests"):
        parse_create(body, None, 2)


def test_invalid_params_are_kept_and_end_errored_naming_them(client: anthropic.Anthropic) -> None:
    batch = client.messages.batches.create(requests=VARIED)
    assert batch.request_counts.processing == len(VARIED)
    errors = {
        line.custom_id: line.result.error.error for line in _results(client, batch.id) if line.result.type == "errored"
    }
    assert sorted(errors) == ["bool-max", "no-messages", "no-model", "text-format"]
    assert {e.type for e in errors.values()} == {"invalid_request_error"}
    assert errors["text-format"].message == "output_config.format.type: Input should be 'json_schema'"


def test_count_tokens_counts_as_usage_does(client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    messages: list[Any] = [{"role": "user", "content": "How many tokens is this?"}]
    counted = client.messages.count_tokens(model="claude-sonnet-4-6", system="Be brief.", messages=messages)
    expected = math.ceil(len(prompt_bytes({"system": "Be brief.", "messages": messages})) / 4)
    assert counted.input_tokens == expected
    assert emulator.emulator.calls["count_tokens"] == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model: Field required"),
        ({"model": "m", "messages": []}, "messages: List should have at least 1 item"),
        ({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}, "max_tokens: Extra inputs"),
    ],
)
def test_count_tokens_refuses_what_the_api_refuses(
    emulator: RunningEmulator, params: dict[str, Any], message: str
) -> None:
    answer = httpx.post(
        f"{emulator.base_url}/v1/messages/count_tokens",
        json=params,
        headers={"x-api-key": TEST_API_KEY, "anthropic-version": "2023-06-01"},
    )
    assert answer.status_code == 400 and answer.json()["error"]["message"].startswith(message)
