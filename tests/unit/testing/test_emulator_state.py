"""The emulator's state machine: batches over the test clock, outcomes, faults taken, counters
and the state file; through the unmodified SDK with strict response validation, over real HTTP.

Invariants: a batch ends at the earliest of its processing end, its cancel's end and its 24 h
expiry, its open requests then succeeded (or their scripted or drawn outcome), canceled or
expired; outcomes replay; batches are scoped by workspace and deleted only once ended; counters
count what was received; a state file brings the batches back after a restart.
"""

from __future__ import annotations

import math
from pathlib import Path

import anthropic
import httpx
import pytest
from anthropic.types.messages import MessageBatchIndividualResponse

from airflow_provider_claude_batch.testing import EMULATOR_TAG, EmulatorConfig, Fault, RunningEmulator, start_emulator
from airflow_provider_claude_batch.testing.emulator_state import Clock, Emulator
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


def test_a_queue_limit_refuses_a_create_that_would_overfill_it_across_workspaces(
    emulator: RunningEmulator,
) -> None:
    emulator.emulator.config.queue_limit = 10
    emulator.emulator.config.processing_seconds = 60
    plain = anthropic.Anthropic(api_key=TEST_API_KEY, base_url=emulator.base_url, max_retries=0)
    other = anthropic.Anthropic(
        api_key=TEST_API_KEY,
        base_url=emulator.base_url,
        max_retries=0,
        default_headers={"anthropic-workspace-id": "w2"},
    )
    plain.messages.batches.create(requests=make_requests(6))
    other.messages.batches.create(requests=make_requests(4, prefix="o"))  # the queue is the organisation's
    with pytest.raises(anthropic.RateLimitError) as refused:
        plain.messages.batches.create(requests=make_requests(1, prefix="x"))
    assert refused.value.body["error"]["type"] == "rate_limit_error"
    assert "queue" in refused.value.body["error"]["message"]
    state = emulator.emulator.snapshot()
    assert (state["batches"], state["queued_requests"], state["stats"]["queue_refusals"]) == (2, 10, 1)
    emulator.emulator.advance(60)  # both ended: the queue is free again
    plain.messages.batches.create(requests=make_requests(10, prefix="y"))
    assert emulator.emulator.stats["queue_high_water"] == 10


def test_without_a_queue_limit_nothing_is_refused(emulator: RunningEmulator, client: anthropic.Anthropic) -> None:
    emulator.emulator.config.processing_seconds = 60
    for prefix in "abc":
        client.messages.batches.create(requests=make_requests(50, prefix=prefix))
    assert emulator.emulator.stats["queue_high_water"] == 150
    assert emulator.emulator.stats["queue_refusals"] == 0


def test_a_batch_rate_limit_refuses_calls_beyond_it_with_retry_after(emulator: RunningEmulator) -> None:
    """Calls to the batch endpoints count together; beyond the limit one gets 429
    ``rate_limit_error`` with the seconds until a call leaves the window, and does nothing;
    other endpoints are not counted; the window moves with the clock. Set through the control
    endpoint, as a running emulator is."""
    httpx.post(f"{emulator.base_url}/_emulator/config", json={"batch_rate_limit": 3}).raise_for_status()
    client = anthropic.Anthropic(api_key=TEST_API_KEY, base_url=emulator.base_url, max_retries=0)
    batch = client.messages.batches.create(requests=make_requests(2))
    client.messages.batches.retrieve(batch.id)
    client.messages.batches.list()
    client.models.list()  # not a batch endpoint: not counted
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.batches.create(requests=make_requests(2, prefix="x"))
    assert refused.value.body["error"]["type"] == "rate_limit_error"
    assert "per minute" in refused.value.body["error"]["message"]
    assert 59 <= float(refused.value.response.headers["retry-after"]) <= 60
    assert emulator.emulator.stats["rate_limited"] == 1 and emulator.emulator.stats["batches_created"] == 1
    emulator.emulator.advance(60)  # the window has moved on
    client.messages.batches.create(requests=make_requests(2, prefix="y"))
    assert emulator.emulator.stats["batches_created"] == 2


def test_without_a_batch_rate_limit_no_call_is_refused(emulator: RunningEmulator, client: anthropic.Anthropic) -> None:
    for _ in range(20):
        client.messages.batches.list()
    assert emulator.emulator.stats["rate_limited"] == 0


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


def test_a_state_file_keeps_batches_across_a_restart(tmp_path: Path) -> None:
    """Oracle: after a stop and a new start on the same state file, the batches are listed in
    the same order, retrieve shows them, and the ended one's results are the same lines."""

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


def test_the_clock_moves_only_when_told() -> None:
    clock = Clock()
    before = clock.now()
    clock.advance(3600)
    assert 3600 <= (clock.now() - before).total_seconds() < 3660
    clock.reset()
    assert (clock.now() - before).total_seconds() < 60


def test_scripted_outcomes_queue_per_custom_id_across_batches(
    client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    emulator.emulator.script_outcomes({"req-0": ["errored:rate_limit_error", "expired"], "req-1": "expired"})
    outcomes = []
    for _ in range(3):
        batch = client.messages.batches.create(requests=make_requests(2))
        outcomes.append({line.custom_id: line.result.type for line in _results(client, batch.id)})
    assert outcomes == [
        {"req-0": "errored", "req-1": "expired"},
        {"req-0": "expired", "req-1": "succeeded"},
        {"req-0": "succeeded", "req-1": "succeeded"},
    ]
    with pytest.raises(ValueError, match="unknown outcome"):
        emulator.emulator.script_outcomes({"req-0": "weird"})


def test_a_cancel_after_the_processing_end_changes_nothing(
    client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    emulator.emulator.config.processing_seconds = 10
    emulator.emulator.config.cancel_seconds = 60
    batch = client.messages.batches.create(requests=make_requests(2))
    assert client.messages.batches.cancel(batch.id).processing_status == "canceling"
    emulator.emulator.advance(10)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.succeeded == 2
    assert client.messages.batches.cancel(ended.id).processing_status == "ended"
    assert emulator.emulator.stats["batches_canceled"] == 1


def test_gradual_ending_reports_requests_as_they_end_and_a_cancel_keeps_them(
    client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    emulator.emulator.config.gradual_ending = True
    emulator.emulator.config.processing_seconds = 100
    batch = client.messages.batches.create(requests=make_requests(10))
    emulator.emulator.advance(35)
    counts = client.messages.batches.retrieve(batch.id).request_counts
    assert (counts.succeeded, counts.processing) == (3, 7)
    client.messages.batches.cancel(batch.id)
    emulator.emulator.advance(1)
    ended = client.messages.batches.retrieve(batch.id).request_counts
    assert (ended.succeeded, ended.canceled, ended.processing) == (3, 7, 0)


def test_take_fault_matches_skips_counts_down_and_forgets() -> None:
    emulator = Emulator()
    emulator.inject(Fault("retrieve", status=500, times=2, skip=1))
    emulator.inject(Fault("any", delay_seconds=1.0))
    assert emulator.take_fault("create") is not None  # "any" matches; used up
    assert emulator.take_fault("create") is None
    assert emulator.take_fault("retrieve") is None  # skipped
    assert [emulator.take_fault("retrieve") is not None for _ in range(3)] == [True, True, False]
    assert emulator.stats["faults_fired"] == 3
    emulator.inject(Fault("list", status=429))
    emulator.clear_faults()
    assert emulator.take_fault("list") is None


def test_a_fault_the_api_could_not_answer_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        Fault("upload")
    with pytest.raises(ValueError, match="418"):
        Fault("list", status=418)


def test_end_all_and_reset(client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = math.inf
    batch = client.messages.batches.create(requests=make_requests(2))
    assert emulator.emulator.snapshot()["open_batches"] == 1
    emulator.emulator.end_all()
    assert client.messages.batches.retrieve(batch.id).request_counts.succeeded == 2
    assert emulator.emulator.snapshot()["open_batches"] == 0
    emulator.emulator.reset()
    assert emulator.emulator.batch_ids() == [] and emulator.emulator.snapshot()["calls"] == {}


def test_a_reset_empties_the_state_file_too(tmp_path: Path) -> None:
    state_file = str(tmp_path / "state.json")
    with start_emulator(EmulatorConfig(state_file=state_file)) as first:
        client = anthropic.Anthropic(api_key=first.api_key, base_url=first.base_url, max_retries=0)
        client.messages.batches.create(requests=make_requests(1))
        first.emulator.reset()
    assert Emulator(EmulatorConfig(state_file=state_file)).batch_ids() == []


#: Sonnet 4.6 list prices per million tokens, written out here as the oracle: input, output,
#: 5-minute cache write (1.25x input), 1-hour cache write (2x input), cache read (0.1x input).
SONNET = {"input": 3.0, "output": 15.0, "write_5m": 3.75, "write_1h": 6.0, "read": 0.3}


def _priced_by_hand(lines: list[MessageBatchIndividualResponse]) -> tuple[dict[str, int], float]:
    """Tokens of the succeeded lines as downloaded, and their cost at half the list prices."""
    tokens = dict.fromkeys(("input", "output", "write_5m", "write_1h", "read"), 0)
    for line in lines:
        if line.result.type != "succeeded":
            continue
        usage = line.result.message.usage
        hour = usage.cache_creation.ephemeral_1h_input_tokens if usage.cache_creation else 0
        tokens["input"] += usage.input_tokens
        tokens["output"] += usage.output_tokens
        tokens["write_1h"] += hour
        tokens["write_5m"] += (usage.cache_creation_input_tokens or 0) - hour
        tokens["read"] += usage.cache_read_input_tokens or 0
    return tokens, sum(tokens[kind] * SONNET[kind] for kind in tokens) / 1_000_000 / 2


def test_the_state_bills_succeeded_results_once_at_batch_prices(
    client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    """Oracle: the tokens of the results as the SDK downloads them, priced by hand at half the
    list prices; errored and expired requests bill nothing; a batch is billed once, whether its
    results were downloaded first or the state was read first."""
    emulator.emulator.script_outcomes({"req-1": "errored:overloaded_error", "req-2": "expired"})
    policy = "policy " * 1000  # a system prompt long enough to be cached
    cached = [
        {
            "custom_id": f"c-{i}",
            "params": {
                "model": "claude-sonnet-4-6",
                "max_tokens": 16,
                "system": [{"type": "text", "text": policy, "cache_control": {"type": "ephemeral", "ttl": ttl}}],
                "messages": [{"role": "user", "content": f"ticket {i}"}],
            },
        }
        for i, ttl in enumerate(["1h", "1h", "5m", "5m"])
    ]
    first = client.messages.batches.create(requests=make_requests(6))
    downloaded = _results(client, first.id)  # billed at this download
    second = client.messages.batches.create(requests=cached)  # billed by the state read below
    billed = emulator.emulator.snapshot()["billed"]
    lines = downloaded + _results(client, second.id)
    tokens, dollars = _priced_by_hand(lines)
    assert tokens["write_1h"] > 0 and tokens["write_5m"] > 0 and tokens["read"] > 0  # every kind priced
    assert (billed["batches"], billed["requests"]) == (2, 8)  # 4 + 4 succeeded of 10
    assert billed["input_tokens"] == tokens["input"] and billed["output_tokens"] == tokens["output"]
    assert billed["cache_creation_input_tokens"] == tokens["write_1h"] + tokens["write_5m"]
    assert billed["cache_creation_1h_input_tokens"] == tokens["write_1h"]
    assert billed["cache_read_input_tokens"] == tokens["read"]
    assert billed["cost_usd"] == pytest.approx(dollars, abs=1e-6) and billed["unpriced_models"] == []
    assert billed["by_model"]["claude-sonnet-4-6"]["requests"] == 8
    assert emulator.emulator.snapshot()["billed"] == billed  # read again: nothing billed twice
    assert _results(client, second.id) == lines[6:] and emulator.emulator.snapshot()["billed"] == billed
    emulator.emulator.reset()
    assert emulator.emulator.snapshot()["billed"]["cost_usd"] == 0 and emulator.emulator.billing.batches == 0


def test_billed_dollars_follow_the_prices_and_an_unpriced_model_is_unknown(
    client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    emulator.emulator.config.processing_seconds = 60
    client.messages.batches.create(requests=make_requests(3))
    assert emulator.emulator.snapshot()["billed"]["batches"] == 0  # nothing billed before a batch ends
    emulator.emulator.advance(60)  # the state read sees the batch ended, and bills it
    billed = emulator.emulator.snapshot()["billed"]
    expected = (billed["input_tokens"] * 3 + billed["output_tokens"] * 15) / 1_000_000 / 2
    assert billed["cost_usd"] == pytest.approx(expected, abs=1e-6)
    emulator.emulator.config.prices = {"claude-sonnet-4-6": {"input": 30, "output": 150}}
    assert emulator.emulator.snapshot()["billed"]["cost_usd"] == pytest.approx(expected * 10, abs=1e-6)
    house = [{**request, "params": {**request["params"], "model": "house-model"}} for request in make_requests(2)]
    client.messages.batches.create(requests=house)
    emulator.emulator.advance(60)
    billed = emulator.emulator.snapshot()["billed"]
    assert billed["cost_usd"] is None and billed["unpriced_models"] == ["house-model"]
    assert billed["by_model"]["house-model"]["cost_usd"] is None and billed["requests"] == 5
    assert billed["by_model"]["claude-sonnet-4-6"]["cost_usd"] == pytest.approx(expected * 10, abs=1e-6)


def test_a_listing_lags_a_create_by_list_lag_seconds(client: anthropic.Anthropic, emulator: RunningEmulator) -> None:
    """A stale listing: the new batch is retrievable at once but listed only after the lag."""
    emulator.emulator.config.list_lag_seconds = 60
    batch = client.messages.batches.create(requests=make_requests(1))
    assert client.messages.batches.retrieve(batch.id).id == batch.id
    assert [b.id for b in client.messages.batches.list(limit=10)] == []
    emulator.emulator.advance(61)
    assert [b.id for b in client.messages.batches.list(limit=10)] == [batch.id]


def test_answer_digest_echoes_each_requests_own_text_and_the_ledger_counts_contents(
    client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    from airflow_provider_claude_batch.testing.emulator_requests import answer_digest

    emulator.emulator.config.answer_digest = True
    texts = {"a": "Classify: ticket one", "b": "Classify: ticket two"}
    requests = [
        {
            "custom_id": cid,
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
            },
        }
        for cid, text in texts.items()
    ]
    first = client.messages.batches.create(requests=requests)
    again = client.messages.batches.create(requests=requests[:1])  # the same work, paid twice
    answers = {r.custom_id: r.result.message.content[0].text for r in _results(client, first.id)}
    assert answers == {cid: answers[cid].rsplit(" #", 1)[0] + f" #{answer_digest(text)}" for cid, text in texts.items()}
    assert answers["a"] != answers["b"]
    _results(client, again.id)
    billed = emulator.emulator.snapshot()["billed"]
    assert (billed["contents"], billed["contents_billed_twice"]) == (2, 1)
