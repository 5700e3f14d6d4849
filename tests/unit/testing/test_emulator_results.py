"""The emulator's results lines and file, read back through the SDK over real HTTP.

Invariants: every line parses strictly as the SDK's model, whatever its outcome; the file is
never in request order but holds each request once; downloads give the same bytes (the file
is rendered once); replies carry the emulator's tag, have the configured lengths and never
exceed ``max_tokens``; usage reports cached prefix tokens apart and web searches; an errored
line's ``request_id`` is the same on every download.
"""

from __future__ import annotations

import anthropic
import httpx
import pytest
from anthropic.types.messages import MessageBatchIndividualResponse

from airflow_provider_claude_batch.testing import EMULATOR_TAG, EmulatorConfig, RunningEmulator
from airflow_provider_claude_batch.testing.emulator_requests import StoredRequest
from airflow_provider_claude_batch.testing.emulator_results import reply_text, result_line, results_order
from tests.helpers import TEST_API_KEY, make_requests


def _results(client: anthropic.Anthropic, batch_id: str) -> list[MessageBatchIndividualResponse]:
    return list(client.messages.batches.results(batch_id))


def _request(invalid_reason: str | None = None) -> StoredRequest:
    return StoredRequest(
        custom_id="r", model="m", max_tokens=64, input_chars=400, prompt_digest=123456789, invalid_reason=invalid_reason
    )


def test_every_result_line_validates_against_the_sdk_models(
    client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    requests = make_requests(4)
    requests[3]["params"].pop("max_tokens")  # per-request validation shows up as errored
    emulator.emulator.script_outcomes({"req-1": "errored:overloaded_error", "req-2": "expired"})
    batch = client.messages.batches.create(requests=requests)
    raw = client.messages.batches.with_raw_response.results(batch.id).read()
    lines = raw.split(b"\n")
    assert lines[-1] == b"" and b"" not in lines[:-1] and b"\r" not in raw
    by_id = {
        r.custom_id: r
        for r in (MessageBatchIndividualResponse.model_validate_json(line, strict=False) for line in lines[:-1])
    }
    assert by_id["req-0"].result.type == "succeeded"
    assert by_id["req-1"].result.type == "errored"
    assert by_id["req-1"].result.error.error.type == "overloaded_error"
    assert by_id["req-2"].result.type == "expired"
    assert by_id["req-3"].result.error.error.type == "invalid_request_error"
    assert "max_tokens" in by_id["req-3"].result.error.error.message
    counts = client.messages.batches.retrieve(batch.id).request_counts
    assert (counts.succeeded, counts.errored, counts.expired) == (1, 2, 1)


def test_results_are_not_in_request_order(client: anthropic.Anthropic) -> None:
    batch = client.messages.batches.create(requests=make_requests(10))
    order = [r.custom_id for r in _results(client, batch.id)]
    assert sorted(order) == sorted(f"req-{i}" for i in range(10))
    assert order != [f"req-{i}" for i in range(10)]


@pytest.mark.parametrize("count", [0, 1, 2, 3, 10, 4097])
def test_the_order_holds_each_request_once_and_is_not_request_order(count: int) -> None:
    order = results_order(count)
    assert sorted(order) == list(range(count))
    if count >= 2:
        assert order != list(range(count))


def test_downloads_give_the_same_bytes_from_one_rendering(
    client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    emulator.emulator.script_outcomes({"req-1": "errored:overloaded_error"})
    batch = client.messages.batches.create(requests=make_requests(6))
    url = f"{emulator.base_url}/v1/messages/batches/{batch.id}/results"
    headers = {"x-api-key": TEST_API_KEY, "anthropic-version": "2023-06-01"}
    first, second = (httpx.get(url, headers=headers).content for _ in range(2))
    assert first == second and first.count(b"\n") == 6
    assert emulator.emulator.stats["results_rendered"] == 1


def test_replies_have_the_configured_lengths_and_the_tag(
    client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    emulator.emulator.config.reply_chars = (40, 120)
    batch = client.messages.batches.create(requests=make_requests(30, max_tokens=1000))
    texts = [line.result.message.content[0].text for line in _results(client, batch.id)]
    assert all(40 <= len(text) <= 120 and text.startswith(EMULATOR_TAG) for text in texts)
    assert len({len(text) for text in texts}) > 5  # drawn, not fixed


def test_a_reply_longer_than_max_tokens_is_cut_there(client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    emulator.emulator.config.reply_chars = (400, 400)
    batch = client.messages.batches.create(requests=make_requests(3, max_tokens=10))
    for line in _results(client, batch.id):
        message = line.result.message
        assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 10
        assert len(message.content[0].text) == 40


def test_usage_reports_web_searches_and_the_cached_prefix_apart(client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": "policy " * 1000, "cache_control": {"type": "ephemeral"}}]
    tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]
    requests = make_requests(2)
    for request in requests:
        request["params"].update(system=system, tools=tools)
    batch = client.messages.batches.create(requests=requests)
    usages = {line.custom_id: line.result.message.usage for line in _results(client, batch.id)}
    assert {u.server_tool_use.web_search_requests for u in usages.values() if u.server_tool_use} == {2}
    written, read = usages["req-0"], usages["req-1"]
    assert written.cache_creation_input_tokens and read.cache_read_input_tokens == written.cache_creation_input_tokens
    assert written.input_tokens == read.input_tokens < written.cache_creation_input_tokens


def test_a_line_is_a_function_of_its_inputs() -> None:
    settings = EmulatorConfig()
    request = _request()
    assert result_line("b1", request, "succeeded", settings) == result_line("b1", request, "succeeded", settings)
    text = reply_text(request, None)
    assert text.startswith(f"{EMULATOR_TAG} ") and len(text.split()) == 5
    errored = result_line("b1", request, "errored", settings)["result"]["error"]
    assert errored["error"] == {"type": "api_error", "message": f"{EMULATOR_TAG} injected api_error"}
    assert (
        errored["request_id"]
        == result_line("b1", request, "errored:api_error", settings)["result"]["error"]["request_id"]
    )
    assert errored["request_id"] != result_line("b2", request, "errored", settings)["result"]["error"]["request_id"]
    invalid = _request(invalid_reason="model: Field required")
    named = result_line("b1", invalid, "errored:invalid_request_error", settings)["result"]["error"]["error"]
    assert named["message"] == "model: Field required"
    assert result_line("b1", request, "canceled", settings) == {"custom_id": "r", "result": {"type": "canceled"}}
