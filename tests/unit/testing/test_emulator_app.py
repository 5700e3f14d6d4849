"""The emulator's HTTP application, through the unmodified SDK and httpx over real HTTP.

Invariants: API routes need credentials (an API key with ``anthropic-version``; each 401 has its
own ``request-id``); every error, unknown routes, methods and malformed queries included, has
the API's shape; faults fail, slow down or cut answers (after the work with ``after_commit``);
results honour one ``Range``; ``results_url`` names the address the client used; the control
plane drives the emulator without being counted, shows its settings without keys, reports what
the served results billed and refuses a change it cannot make with a 400; each app serves only
its own emulator.
"""

from __future__ import annotations

import dataclasses
import json
import math

import anthropic
import httpx
import pytest

from airflow_provider_claude_batch.testing import EmulatorConfig, Fault, RunningEmulator, start_emulator
from airflow_provider_claude_batch.testing.emulator_app import create_app
from airflow_provider_claude_batch.testing.emulator_state import Emulator
from tests.helpers import TEST_API_KEY, make_requests

HEADERS = {"x-api-key": TEST_API_KEY, "anthropic-version": "2023-06-01"}


def test_both_auth_header_styles_and_required_headers(emulator: RunningEmulator) -> None:
    url = f"{emulator.base_url}/v1/messages/batches"
    version = {"anthropic-version": "2023-06-01"}
    assert httpx.get(url, headers={"x-api-key": TEST_API_KEY, **version}).status_code == 200
    assert httpx.get(url, headers={"authorization": f"Bearer {TEST_API_KEY}", **version}).status_code == 200
    missing = httpx.get(url, headers=version)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    wrong = httpx.get(url, headers={"x-api-key": "wrong-test-key", **version})
    assert wrong.status_code == 401 and "wrong-test-key" not in wrong.text
    assert wrong.headers["request-id"].startswith("req_")
    no_version = httpx.get(url, headers={"x-api-key": TEST_API_KEY})
    assert no_version.status_code == 400 and "anthropic-version" in no_version.text


def test_every_401_has_its_own_request_id(emulator: RunningEmulator) -> None:
    url = f"{emulator.base_url}/v1/messages/batches"
    answers = [httpx.get(url, headers={"x-api-key": "wrong-test-key"}) for _ in range(3)]
    answers.append(httpx.get(url))
    ids = [a.headers["request-id"] for a in answers]
    assert all(a.status_code == 401 for a in answers)
    assert [a.json()["request_id"] for a in answers] == ids
    assert len(set(ids)) == len(ids)


def test_models_need_authentication(emulator: RunningEmulator) -> None:
    answer = httpx.get(f"{emulator.base_url}/v1/models", headers={"anthropic-version": "2023-06-01"})
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("method", "path", "status", "error_type"),
    [
        ("GET", "/v1/no/such/route", 404, "not_found_error"),
        ("POST", "/v1/messages", 404, "not_found_error"),
        ("PUT", "/v1/messages/batches", 405, "invalid_request_error"),
        ("PATCH", "/v1/models", 405, "invalid_request_error"),
    ],
)
def test_unknown_routes_and_methods_answer_in_the_api_error_shape(
    emulator: RunningEmulator, method: str, path: str, status: int, error_type: str
) -> None:
    answer = httpx.request(method, f"{emulator.base_url}{path}", headers={"x-api-key": TEST_API_KEY})
    assert answer.status_code == status
    body = answer.json()
    assert set(body) == {"type", "error", "request_id"} and body["type"] == "error"
    assert body["error"]["type"] == error_type and path in body["error"]["message"]
    assert answer.headers["request-id"] == body["request_id"] and body["request_id"].startswith("req_")


def test_the_sdk_raises_its_typed_error_for_an_unknown_route(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        client.get("/v1/not-a-route", cast_to=object)
    assert raised.value.request_id is not None


def test_a_malformed_query_is_an_invalid_request(emulator: RunningEmulator) -> None:
    answer = httpx.get(
        f"{emulator.base_url}/v1/messages/batches",
        params={"limit": "many"},
        headers={"x-api-key": TEST_API_KEY, "anthropic-version": "2023-06-01"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "type": "invalid_request_error",
        "message": answer.json()["error"]["message"],
    } and answer.json()["error"]["message"].startswith("limit:")


@pytest.mark.parametrize("status", [429, 500, 529])
def test_sdk_retries_injected_faults_on_reads(
    client: anthropic.Anthropic, emulator: RunningEmulator, status: int
) -> None:
    batch = client.messages.batches.create(requests=make_requests(1))
    emulator.emulator.inject(Fault("retrieve", status=status, retry_after=0.001, times=2))
    assert client.messages.batches.retrieve(batch.id).id == batch.id
    assert emulator.emulator.calls["retrieve"] == 3
    emulator.emulator.inject(Fault("retrieve", status=status, retry_after=0.001, times=3))
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.batches.retrieve(batch.id)
    assert info.value.status_code == status


def test_plain_sdk_create_bills_twice_after_an_ambiguous_500(
    client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    """Why the hook never lets the SDK retry a create: this is what happens otherwise."""
    emulator.emulator.inject(Fault("create", status=500, retry_after=0.001, after_commit=True))
    client.messages.batches.create(requests=make_requests(2))
    assert emulator.emulator.stats["batches_created"] == 2


def test_slow_response_times_out_the_client(emulator: RunningEmulator) -> None:
    emulator.emulator.inject(Fault("list", delay_seconds=2.0))
    quick = anthropic.Anthropic(api_key=TEST_API_KEY, base_url=emulator.base_url, max_retries=0, timeout=0.3)
    with pytest.raises(anthropic.APITimeoutError):
        quick.messages.batches.list()


def test_dropped_results_connection_breaks_the_stream(client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    batch = client.messages.batches.create(requests=make_requests(2000))
    client.messages.batches.retrieve(batch.id)
    emulator.emulator.inject(Fault("results", drop_after_bytes=100_000))
    received = 0
    with pytest.raises(Exception, match="(?i)peer closed|incomplete|closed"):
        with client.messages.batches.with_streaming_response.results(batch.id) as response:
            for chunk in response.iter_bytes():
                received += len(chunk)
    assert 0 < received <= 100_000
    assert emulator.emulator.stats["results_dropped"] == 1


def test_control_plane_over_http(emulator: RunningEmulator, client: anthropic.Anthropic) -> None:
    base = emulator.base_url
    httpx.post(f"{base}/_emulator/config", json={"processing_seconds": 100}).raise_for_status()
    batch = client.messages.batches.create(requests=make_requests(1))
    httpx.post(f"{base}/_emulator/advance", params={"seconds": 100}).raise_for_status()
    assert client.messages.batches.retrieve(batch.id).processing_status == "ended"
    httpx.post(
        f"{base}/_emulator/faults", json={"endpoint": "list", "status": 500, "times": 3, "retry_after": 0.001}
    ).raise_for_status()
    with pytest.raises(anthropic.InternalServerError):
        client.with_options(max_retries=2).messages.batches.list()
    state = httpx.get(f"{base}/_emulator/state").json()
    assert state["stats"]["batches_created"] == 1 and state["calls"]["list"] == 3


def test_the_app_serves_the_emulator_it_was_created_for() -> None:
    """Oracle: the handlers are shared module code; the state is the app's own."""
    emulator = Emulator(EmulatorConfig(api_keys=frozenset({TEST_API_KEY})))
    assert create_app(emulator).state.emulator is emulator
    config = EmulatorConfig(api_keys=frozenset({TEST_API_KEY}))
    with start_emulator(config) as one, start_emulator(EmulatorConfig(api_keys=config.api_keys)) as other:
        created = httpx.post(
            f"{one.base_url}/v1/messages/batches", json={"requests": make_requests(2)}, headers=HEADERS
        )
        assert created.status_code == 200
        listed = httpx.get(f"{other.base_url}/v1/messages/batches", headers=HEADERS).json()
        assert listed["data"] == [] and other.emulator.calls == {"list": 1}
        assert one.emulator.calls == {"create": 1} and one.emulator.stats["requests_received"] == 2


def test_results_url_names_the_address_the_client_used(emulator: RunningEmulator) -> None:
    base = f"http://localhost:{emulator.port}"
    created = httpx.post(f"{base}/v1/messages/batches", json={"requests": make_requests(1)}, headers=HEADERS)
    batch = httpx.get(f"{base}/v1/messages/batches/{created.json()['id']}", headers=HEADERS).json()
    assert batch["results_url"] == f"{base}/v1/messages/batches/{batch['id']}/results"


def test_one_range_is_served_as_206_and_the_bytes_are_the_files(
    client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    batch = client.messages.batches.create(requests=make_requests(20))
    url = f"{emulator.base_url}/v1/messages/batches/{batch.id}/results"
    whole = httpx.get(url, headers=HEADERS)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    size = len(whole.content)
    assert int(whole.headers["content-length"]) == size
    tail = httpx.get(url, headers={**HEADERS, "range": "bytes=100-"})
    assert tail.status_code == 206 and tail.content == whole.content[100:]
    assert tail.headers["content-range"] == f"bytes 100-{size - 1}/{size}"
    middle = httpx.get(url, headers={**HEADERS, "range": "bytes=10-19"})
    assert middle.status_code == 206 and middle.content == whole.content[10:20]
    assert emulator.emulator.stats["results_ranges"] == 2
    unsupported = httpx.get(url, headers={**HEADERS, "range": "lines=1-"})
    assert unsupported.status_code == 400 and unsupported.json()["error"]["message"].startswith("range:")
    beyond = httpx.get(url, headers={**HEADERS, "range": f"bytes={size}-"})
    assert beyond.status_code == 416 and beyond.json()["error"]["type"] == "invalid_request_error"


def test_a_server_without_ranges_sends_the_whole_file_again(
    client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    batch = client.messages.batches.create(requests=make_requests(5))
    url = f"{emulator.base_url}/v1/messages/batches/{batch.id}/results"
    whole = httpx.get(url, headers=HEADERS).content
    emulator.emulator.config.results_ranges = False
    again = httpx.get(url, headers={**HEADERS, "range": "bytes=100-"})
    assert again.status_code == 200 and again.content == whole and "accept-ranges" not in again.headers
    assert emulator.emulator.stats["results_ranges"] == 0


def test_a_fault_for_any_endpoint_lets_skipped_calls_through_then_fails_with_retry_after(
    emulator: RunningEmulator,
) -> None:
    emulator.emulator.inject(Fault("any", status=529, skip=1, retry_after=1.5))
    url = f"{emulator.base_url}/v1/models"
    assert httpx.get(url, headers=HEADERS).status_code == 200
    failed = httpx.get(f"{emulator.base_url}/v1/messages/batches", headers=HEADERS)
    assert failed.status_code == 529 and failed.headers["retry-after"] == "1.5"
    assert failed.json()["error"] == {
        "type": "overloaded_error",
        "message": "[claude-batch emulator] injected overloaded_error",
    }
    assert httpx.get(url, headers=HEADERS).status_code == 200  # used up
    assert emulator.emulator.stats["faults_fired"] == 1


def test_a_fault_after_commit_answers_the_error_but_keeps_the_work(emulator: RunningEmulator) -> None:
    emulator.emulator.inject(Fault("create", status=500, after_commit=True))
    answer = httpx.post(
        f"{emulator.base_url}/v1/messages/batches", json={"requests": make_requests(1)}, headers=HEADERS
    )
    assert answer.status_code == 500 and answer.json()["error"]["type"] == "api_error"
    assert len(emulator.emulator.batch_ids()) == 1


def test_the_control_plane_is_not_counted_and_sets_json_values(emulator: RunningEmulator) -> None:
    base = emulator.base_url
    httpx.post(f"{base}/_emulator/config", json={"reply_chars": [40, 40]}).raise_for_status()
    assert emulator.emulator.config.reply_chars == (40, 40)
    now = httpx.post(f"{base}/_emulator/advance", params={"seconds": 60}).json()["now"]
    assert now.endswith("Z")
    httpx.post(f"{base}/_emulator/outcomes", json={"req-0": "expired"}).raise_for_status()
    state = httpx.get(f"{base}/_emulator/state").json()
    assert {key: state[key] for key in ("calls", "stats", "batches", "open_batches")} == {
        "calls": {},
        "stats": {},
        "batches": 0,
        "open_batches": 0,
    }
    assert (state["billed"]["batches"], state["billed"]["requests"], state["billed"]["cost_usd"]) == (0, 0, 0)
    httpx.post(f"{base}/v1/messages/batches", json={"requests": make_requests(1)}, headers=HEADERS)
    assert httpx.post(f"{base}/_emulator/reset").json() == {"ok": True}
    assert emulator.emulator.batch_ids() == [] and emulator.emulator.calls == {}


def test_the_state_reports_what_the_served_results_billed(emulator: RunningEmulator) -> None:
    """Oracle: the usage of the results lines as served over HTTP, priced by hand at half of
    Sonnet 4.6's list prices ($3 and $15 per million input and output tokens)."""
    base = emulator.base_url
    httpx.post(f"{base}/_emulator/outcomes", json={"req-0": "errored:overloaded_error"}).raise_for_status()
    created = httpx.post(f"{base}/v1/messages/batches", json={"requests": make_requests(5)}, headers=HEADERS)
    results = httpx.get(f"{base}/v1/messages/batches/{created.json()['id']}/results", headers=HEADERS)
    lines = [json.loads(line) for line in results.text.splitlines()]
    usages = [line["result"]["message"]["usage"] for line in lines if line["result"]["type"] == "succeeded"]
    input_tokens = sum(usage["input_tokens"] for usage in usages)
    output_tokens = sum(usage["output_tokens"] for usage in usages)
    billed = httpx.get(f"{base}/_emulator/state").json()["billed"]
    assert (billed["batches"], billed["requests"]) == (1, 4)  # the errored request bills nothing
    assert (billed["input_tokens"], billed["output_tokens"]) == (input_tokens, output_tokens)
    assert billed["cost_usd"] == pytest.approx((input_tokens * 3 + output_tokens * 15) / 1e6 / 2, abs=1e-6)
    assert list(billed["by_model"]) == ["claude-sonnet-4-6"] and billed["unpriced_models"] == []
    # Prices set through the control plane reprice what was billed.
    httpx.post(f"{base}/_emulator/config", json={"prices": {"claude-sonnet-4-6": {"input": 6, "output": 30}}})
    repriced = httpx.get(f"{base}/_emulator/state").json()["billed"]
    assert repriced["cost_usd"] == pytest.approx(billed["cost_usd"] * 2, abs=1e-6)


def test_the_config_is_shown_without_keys_or_identity_tokens(emulator: RunningEmulator) -> None:
    base = emulator.base_url
    httpx.post(
        f"{base}/_emulator/config",
        json={"processing_seconds": 30, "reply_chars": [10, 20], "federation": {"trusted_identity_tokens": ["jwt-x"]}},
    ).raise_for_status()
    answer = httpx.get(f"{base}/_emulator/config")
    shown = answer.json()
    assert set(shown) == {item.name for item in dataclasses.fields(EmulatorConfig)}
    assert (shown["processing_seconds"], shown["reply_chars"], shown["api_keys"]) == (30, [10, 20], 1)
    assert shown["federation"]["trusted_identity_tokens"] == 1
    assert TEST_API_KEY not in answer.text and "jwt-x" not in answer.text
    emulator.emulator.config.processing_seconds = math.inf
    assert httpx.get(f"{base}/_emulator/config").json()["processing_seconds"] is None  # never ends


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/_emulator/faults", {"endpoint": "create", "stauts": 500}, "stauts"),
        ("/_emulator/faults", {"endpoint": "upload"}, "unknown endpoint"),
        ("/_emulator/outcomes", {"req-0": "weird"}, "unknown outcome"),
        ("/_emulator/outcomes", ["req-0"], "AttributeError"),
        ("/_emulator/config", {"processing_time": 5}, "unknown emulator setting 'processing_time'"),
    ],
)
def test_a_control_change_it_cannot_make_is_a_400_saying_why(
    emulator: RunningEmulator, path: str, body: object, says: str
) -> None:
    answer = httpx.post(f"{emulator.base_url}{path}", json=body)
    assert answer.status_code == 400 and says in answer.json()["error"]
    not_json = httpx.post(f"{emulator.base_url}{path}", content=b"{not json")
    assert not_json.status_code == 400 and "JSONDecodeError" in not_json.json()["error"]
