"""The emulator, through the unmodified SDK with strict response validation, over real HTTP."""

from __future__ import annotations

import math

import anthropic
import httpx
import pytest
from anthropic.types.messages import MessageBatchIndividualResponse

from airflow_provider_claude_batch.testing import EMULATOR_TAG, Fault, RunningEmulator
from tests.helpers import TEST_API_KEY, make_requests


def _results(client: anthropic.Anthropic, batch_id: str) -> list[MessageBatchIndividualResponse]:
    return list(client.messages.batches.results(batch_id))


def test_create_retrieve_results_parse_strictly(client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 3600
    batch = client.messages.batches.create(requests=make_requests(3))
    assert batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 3
    assert batch.results_url is None
    assert (batch.expires_at - batch.created_at).total_seconds() == 24 * 3600

    emulator.emulator.advance(3600)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.ended_at is not None
    assert ended.request_counts.succeeded == 3
    assert ended.results_url == f"{emulator.base_url}/v1/messages/batches/{batch.id}/results"

    results = _results(client, batch.id)
    assert sorted(r.custom_id for r in results) == ["req-0", "req-1", "req-2"]
    for result in results:
        assert result.result.type == "succeeded"
        message = result.result.message
        assert message.content[0].type == "text"
        assert message.content[0].text.startswith(EMULATOR_TAG)
        assert message.usage.input_tokens > 0
        # Deterministic: the same request always gets the same answer.
    again = {r.custom_id: r.result.message.content[0].text for r in _results(client, batch.id)}
    assert again == {r.custom_id: r.result.message.content[0].text for r in results}


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


def test_list_pages_newest_first_with_after_and_before(client: anthropic.Anthropic) -> None:
    ids = [client.messages.batches.create(requests=make_requests(1)).id for _ in range(5)]
    page = client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == [ids[4], ids[3]]
    assert page.has_more and page.first_id == ids[4] and page.last_id == ids[3]
    assert [b.id for b in client.messages.batches.list(limit=2)] == ids[::-1]  # auto-paginates
    older = client.messages.batches.list(limit=2, after_id=ids[3])
    assert [b.id for b in older.data] == [ids[2], ids[1]]
    newer = client.messages.batches.list(limit=2, before_id=ids[1])
    assert [b.id for b in newer.data] == [ids[3], ids[2]]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.list(limit=1001)


def test_cancel_moves_through_canceling_to_ended(client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 3600
    emulator.emulator.config.cancel_seconds = 60
    batch = client.messages.batches.create(requests=make_requests(3))
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    emulator.emulator.advance(60)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.request_counts.canceled == 3
    assert {r.result.type for r in _results(client, batch.id)} == {"canceled"}


def test_batches_expire_after_24_hours(client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = math.inf
    batch = client.messages.batches.create(requests=make_requests(2))
    emulator.emulator.advance(23.9 * 3600)
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    emulator.emulator.advance(0.1 * 3600)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.expired == 2


def test_archived_after_29_days(client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    batch = client.messages.batches.create(requests=make_requests(1))
    assert client.messages.batches.retrieve(batch.id).archived_at is None
    emulator.emulator.advance(29 * 24 * 3600)
    assert client.messages.batches.retrieve(batch.id).archived_at is not None


def test_delete_only_ended_batches(client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 3600
    batch = client.messages.batches.create(requests=make_requests(1))
    with pytest.raises(anthropic.BadRequestError, match="cannot be deleted"):
        client.messages.batches.delete(batch.id)
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        client.messages.batches.results(batch.id)  # the SDK refuses: results_url is null before the end
    early = httpx.get(
        f"{emulator.base_url}/v1/messages/batches/{batch.id}/results",
        headers={"x-api-key": TEST_API_KEY, "anthropic-version": "2023-06-01"},
    )
    assert early.status_code == 400 and "not ended" in early.text
    emulator.emulator.advance(3600)
    deleted = client.messages.batches.delete(batch.id)
    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


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


def test_count_and_byte_limits_are_configurable(client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    emulator.emulator.config.max_requests_per_batch = 5
    with pytest.raises(anthropic.BadRequestError, match="at most 5 requests"):
        client.messages.batches.create(requests=make_requests(6))
    emulator.emulator.config.max_bytes_per_batch = 400
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.batches.create(requests=make_requests(5))
    assert info.value.status_code == 413
    assert info.value.body["error"]["type"] == "request_too_large"
    assert emulator.emulator.stats["batches_created"] == 0


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


def test_workspaces_scope_batches(emulator: RunningEmulator) -> None:
    a = anthropic.Anthropic(
        api_key=TEST_API_KEY, base_url=emulator.base_url, default_headers={"anthropic-workspace-id": "wrkspc_a"}
    )
    b = anthropic.Anthropic(
        api_key=TEST_API_KEY, base_url=emulator.base_url, default_headers={"anthropic-workspace-id": "wrkspc_b"}
    )
    batch = a.messages.batches.create(requests=make_requests(1))
    assert [x.id for x in a.messages.batches.list()] == [batch.id]
    assert list(b.messages.batches.list()) == []
    with pytest.raises(anthropic.NotFoundError):
        b.messages.batches.retrieve(batch.id)


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


def test_counters_record_what_was_received(client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    batch = client.messages.batches.create(requests=make_requests(7))
    client.messages.batches.retrieve(batch.id)
    snapshot = emulator.emulator.snapshot()
    assert snapshot["calls"] == {"create": 1, "retrieve": 1}
    assert snapshot["stats"]["batches_created"] == 1
    assert snapshot["stats"]["requests_received"] == 7
    assert snapshot["stats"]["create_bytes"] > 0


def test_errored_and_expired_fractions_are_deterministic(
    client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    def run() -> tuple[dict[str, str], dict[str, str]]:
        emulator.emulator.reset()
        emulator.emulator.config.errored_fraction = 0.1
        emulator.emulator.config.expired_fraction = 0.1
        first = client.messages.batches.create(requests=make_requests(500))
        second = client.messages.batches.create(requests=make_requests(500))
        return (
            {r.custom_id: r.result.type for r in _results(client, first.id)},
            {r.custom_id: r.result.type for r in _results(client, second.id)},
        )

    first, resubmitted = run()
    assert run() == (first, resubmitted)  # the same sequence replays identically
    kinds = list(first.values())
    assert 20 < kinds.count("errored") < 80
    assert 20 < kinds.count("expired") < 80
    failed = [cid for cid, kind in first.items() if kind != "succeeded"]
    assert sum(resubmitted[cid] == "succeeded" for cid in failed) > len(failed) / 2  # transient


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


def test_every_401_has_its_own_request_id(emulator: RunningEmulator) -> None:
    url = f"{emulator.base_url}/v1/messages/batches"
    answers = [httpx.get(url, headers={"x-api-key": "wrong-test-key"}) for _ in range(3)]
    answers.append(httpx.get(url))
    ids = [a.headers["request-id"] for a in answers]
    assert all(a.status_code == 401 for a in answers)
    assert [a.json()["request_id"] for a in answers] == ids
    assert len(set(ids)) == len(ids)


def test_a_state_file_keeps_batches_across_a_restart(tmp_path) -> None:
    """Oracle: after a stop and a new start on the same state file, the batches are listed in
    the same order, retrieve shows them, and the ended one's results are the same lines."""
    from airflow_provider_claude_batch.testing import EmulatorConfig, start_emulator

    config = EmulatorConfig(processing_seconds=3600, state_file=str(tmp_path / "state.json"))

    def connect(running: RunningEmulator) -> anthropic.Anthropic:
        return anthropic.Anthropic(api_key=running.api_key, base_url=running.base_url, max_retries=0)

    with start_emulator(config) as first:
        client = connect(first)
        ended = client.messages.batches.create(requests=make_requests(3, prefix="e"))
        first.emulator.end_all()
        running = client.messages.batches.create(requests=make_requests(2, prefix="r"))
        before = [line.custom_id for line in _results(client, ended.id)]
    with start_emulator(EmulatorConfig(processing_seconds=3600, state_file=config.state_file)) as second:
        client = connect(second)
        assert [b.id for b in client.messages.batches.list()] == [running.id, ended.id]
        assert client.messages.batches.retrieve(running.id).processing_status == "in_progress"
        assert [line.custom_id for line in _results(client, ended.id)] == before
        assert [line.result.type for line in _results(client, ended.id)] == ["succeeded"] * 3
        assert second.emulator.stats["batches_created"] == 0  # nothing was created again


def test_a_create_with_output_schema_and_cache_control_keeps_both(tmp_path) -> None:
    """Oracle: requests carrying ``output_config.format`` and a ``cache_control`` system block
    (parsed by the lean create decoder) get answers valid for their schema and cache usage in
    the results file rendered once, also after a restart from the state file."""
    import json

    from airflow_provider_claude_batch.testing import EmulatorConfig, start_emulator

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


@pytest.mark.parametrize("path", ["/v1/messages/batches", "/v1/messages/count_tokens"])
def test_a_body_that_is_not_json_is_the_apis_400(emulator: RunningEmulator, path: str) -> None:
    answer = httpx.post(
        f"{emulator.base_url}{path}",
        content=b'{"requests": [',
        headers={"x-api-key": TEST_API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    assert answer.status_code == 400 and "Request body is not valid JSON" in answer.text
    assert emulator.emulator.stats["batches_created"] == 0
