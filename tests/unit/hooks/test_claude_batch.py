"""ClaudeBatchHook against the emulator, through the real SDK over HTTP."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_claude_batch.exceptions import (
    ClaudeBatchAPIError,
    ClaudeBatchAuthError,
    ClaudeBatchCreateAmbiguousError,
    ClaudeBatchNotFoundError,
    ClaudeBatchQueueFullError,
)
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook, jsonl_to_create_body
from airflow_provider_claude_batch.testing import Fault, RunningEmulator
from tests.helpers import TEST_API_KEY, airflow_cli, make_requests


@pytest.fixture
def hook(emulator: RunningEmulator) -> ClaudeBatchHook:
    return ClaudeBatchHook(retry_backoff=0)


def test_settings_from_connection(connection_env, monkeypatch: pytest.MonkeyPatch) -> None:
    connection_env(
        "claude_custom",
        extra={
            "workspace_id": "wrkspc_1",
            "extra__claude_batch__default_model": "claude-x",
            "timeout": "12",
            "max_retries": 5,
        },
    )
    settings = ClaudeBatchHook("claude_custom").settings
    assert settings.workspace_id == "wrkspc_1"
    assert settings.default_model == "claude-x"
    assert settings.timeout == 12.0 and settings.max_retries == 5
    assert TEST_API_KEY not in repr(settings)
    client = ClaudeBatchHook("claude_custom").client
    assert client.max_retries == 5
    assert client.default_headers["anthropic-workspace-id"] == "wrkspc_1"


def test_env_key_is_only_a_fallback(connection_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "key-from-the-environment")
    connection_env("with_password")
    connection_env("without_password", password=None)
    assert ClaudeBatchHook("with_password").settings.api_key == TEST_API_KEY
    assert ClaudeBatchHook("without_password").settings.api_key == "key-from-the-environment"


def test_missing_key_names_the_connection(connection_env) -> None:
    connection_env("no_key", password=None)
    with pytest.raises(ClaudeBatchAuthError, match="Connection 'no_key' has no API key"):
        ClaudeBatchHook("no_key").list_batches()


def test_wrong_key_names_the_connection_never_the_key(connection_env) -> None:
    connection_env("wrong_key", password="definitely-wrong-test-key")
    hook = ClaudeBatchHook("wrong_key")
    with pytest.raises(ClaudeBatchAuthError) as info:
        hook.retrieve_batch("msgbatch_x")
    text = str(info.value)
    assert "'wrong_key'" in text and "authentication_error" in text
    assert "definitely-wrong-test-key" not in text
    ok, message = hook.test_connection()
    assert not ok and "wrong_key" in message and "definitely-wrong-test-key" not in message


def test_the_credentials_check_is_one_models_page_and_fails_only_on_a_rejected_key(
    hook: ClaudeBatchHook, emulator: RunningEmulator, connection_env
) -> None:
    assert hook.check_credentials() is True
    assert emulator.emulator.calls["models"] == 1 and emulator.emulator.calls["list"] == 0
    connection_env("wrong_key", password="definitely-wrong-test-key")
    with pytest.raises(ClaudeBatchAuthError, match="'wrong_key' was rejected.*check its credentials") as raised:
        ClaudeBatchHook("wrong_key").check_credentials()
    assert "definitely-wrong-test-key" not in str(raised.value)
    connection_env("no_key", password=None)
    with pytest.raises(ClaudeBatchAuthError, match="'no_key' has no API key"):
        ClaudeBatchHook("no_key").check_credentials()
    emulator.emulator.inject(Fault("models", status=500, times=3, retry_after=0.01))
    assert hook.check_credentials() is False  # the API could not say: the work goes on


def test_test_connection_succeeds(hook: ClaudeBatchHook) -> None:
    ok, message = hook.test_connection()
    assert ok, message


def test_unknown_batch_names_the_id(hook: ClaudeBatchHook) -> None:
    with pytest.raises(ClaudeBatchNotFoundError, match="msgbatch_nope.*claude_batch_default"):
        hook.retrieve_batch("msgbatch_nope")
    with pytest.raises(ClaudeBatchNotFoundError, match="msgbatch_nope"):
        hook.cancel_batch("msgbatch_nope")


def test_round_trip_every_endpoint(hook: ClaudeBatchHook, emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = 60
    batch = hook.create_batch(make_requests(3))
    assert hook.retrieve_batch(batch.id).processing_status == "in_progress"
    assert [b.id for b in hook.iter_batches(page_size=1)] == [batch.id]
    other = hook.create_batch(make_requests(2, prefix="other"))
    assert hook.cancel_batch(other.id).processing_status in ("canceling", "ended")
    emulator.emulator.advance(60)
    lines = list(hook.iter_results_lines(batch.id))
    assert sorted(json.loads(line)["custom_id"] for line in lines) == ["req-0", "req-1", "req-2"]
    assert hook.delete_batch(batch.id).type == "message_batch_deleted"
    assert [b.id for b in hook.iter_batches()] == [other.id]


def test_create_from_a_jsonl_chunk_is_sent_as_is(hook: ClaudeBatchHook, emulator: RunningEmulator) -> None:
    jsonl = b"".join(json.dumps(r).encode() + b"\n" for r in make_requests(4))
    assert json.loads(jsonl_to_create_body(jsonl)) == {"requests": make_requests(4)}
    batch = hook.create_batch(jsonl)
    assert batch.request_counts.processing == 4
    assert emulator.emulator.stats["create_bytes"] == len(jsonl_to_create_body(jsonl))


def test_create_that_failed_after_committing_is_adopted_not_repeated(
    hook: ClaudeBatchHook, emulator: RunningEmulator
) -> None:
    emulator.emulator.inject(Fault("create", status=500, after_commit=True, retry_after=0.001))
    batch = hook.create_batch(make_requests(5))
    assert emulator.emulator.stats["batches_created"] == 1
    assert emulator.emulator.calls["create"] == 1
    assert emulator.emulator.batch_ids() == [batch.id]


def test_create_that_failed_before_committing_is_created_once(hook: ClaudeBatchHook, emulator: RunningEmulator) -> None:
    emulator.emulator.inject(Fault("create", status=500, retry_after=0.001))
    hook.create_batch(make_requests(5))
    assert emulator.emulator.stats["batches_created"] == 1
    assert emulator.emulator.calls["create"] == 2
    assert emulator.emulator.calls["list"] == 1  # it looked before creating again


def test_slow_create_that_timed_out_is_adopted(connection_env, emulator: RunningEmulator) -> None:
    connection_env("impatient", extra={"timeout": 0.5})
    # The server creates the batch, then answers after the client has given up.
    emulator.emulator.inject(Fault("create", after_commit=True, delay_seconds=1.5))
    hook = ClaudeBatchHook("impatient", retry_backoff=0)
    hook.create_batch(make_requests(3))
    assert emulator.emulator.stats["batches_created"] == 1


@pytest.mark.parametrize("status", [429, 529])
def test_rejected_create_is_retried(hook: ClaudeBatchHook, emulator: RunningEmulator, status: int) -> None:
    emulator.emulator.inject(Fault("create", status=status, retry_after=0.001, times=2))
    hook.create_batch(make_requests(2))
    assert emulator.emulator.calls["create"] == 3
    assert emulator.emulator.stats["batches_created"] == 1


@pytest.mark.parametrize(
    ("message", "outcome"),
    [
        ("Your organization's batch queue is full.", "queue"),  # named: waits at once, one call
        ("Number of requests per minute exceeded.", "fails"),  # a request rate: retried, then fails
        ("This request would exceed your account's rate limit.", "unclear"),  # says neither
    ],
    ids=["queue", "request-rate", "unclear"],
)
def test_a_feeding_create_tells_a_full_queue_from_a_request_rate(
    emulator: RunningEmulator, message: str, outcome: str
) -> None:
    """With ``wait_on_full_queue`` (a feeding submit): a 429 that names the queue ends the create
    at once; a request rate 429 keeps the retry path and fails after the attempts, as before; a
    429 that says neither is retried the same way and, refused every time, becomes a full queue
    to wait for, marked uncertain (no limit is learned from it). Oracle: the emulator's creates."""
    hook = ClaudeBatchHook(retry_backoff=0, wait_on_full_queue=True)
    emulator.emulator.inject(Fault("create", status=429, retry_after=0.001, times=10, message=message))
    with pytest.raises(ClaudeBatchAPIError) as raised:
        hook.create_batch(make_requests(2))
    calls = emulator.emulator.calls["create"]
    assert emulator.emulator.stats["batches_created"] == 0 and raised.value.created_nothing
    if outcome == "queue":
        assert isinstance(raised.value, ClaudeBatchQueueFullError) and raised.value.certain and calls == 1
    elif outcome == "fails":
        assert not isinstance(raised.value, ClaudeBatchQueueFullError) and calls == hook.create_attempts
    else:
        assert isinstance(raised.value, ClaudeBatchQueueFullError) and not raised.value.certain
        assert calls == hook.create_attempts and raised.value.request_count == 2


def test_persistent_failure_is_surfaced_without_duplicates(hook: ClaudeBatchHook, emulator: RunningEmulator) -> None:
    emulator.emulator.inject(Fault("create", status=500, times=10))
    with pytest.raises(ClaudeBatchAPIError, match="500 api_error"):
        hook.create_batch(make_requests(2))
    assert emulator.emulator.calls["create"] == hook.create_attempts
    assert emulator.emulator.stats["batches_created"] == 0


def test_invalid_create_is_not_retried(hook: ClaudeBatchHook, emulator: RunningEmulator) -> None:
    requests = make_requests(2)
    requests[1]["custom_id"] = "no spaces allowed"
    with pytest.raises(ClaudeBatchAPIError, match="400 invalid_request_error.*custom_id"):
        hook.create_batch(requests)
    assert emulator.emulator.calls["create"] == 1


def test_several_lookalike_batches_make_the_create_ambiguous(hook: ClaudeBatchHook, emulator: RunningEmulator) -> None:
    intent = datetime.now(timezone.utc)
    hook.create_batch(make_requests(3, prefix="a"))
    hook.create_batch(make_requests(3, prefix="b"))
    emulator.emulator.inject(Fault("create", status=500, retry_after=0.001))
    with pytest.raises(ClaudeBatchCreateAmbiguousError, match="2 batches of that size"):
        hook.create_batch(make_requests(3, prefix="c"), intent_at=intent)
    assert emulator.emulator.stats["batches_created"] == 2


def test_known_and_older_batches_are_never_adopted(hook: ClaudeBatchHook, emulator: RunningEmulator) -> None:
    mine = hook.create_batch(make_requests(3, prefix="a"))
    emulator.emulator.advance(3600)
    assert hook.find_created_batch(3, created_after=datetime.now(timezone.utc) + timedelta(seconds=3000)) is None
    assert hook.find_created_batch(3, created_after=datetime.now(timezone.utc) - timedelta(seconds=60)).id == mine.id
    assert hook.find_created_batch(3, created_after=datetime.now(timezone.utc), exclude=[mine.id]) is None


def test_download_restarts_a_dropped_stream_without_duplicates(
    hook: ClaudeBatchHook, emulator: RunningEmulator, tmp_path: Path
) -> None:
    batch = hook.create_batch(make_requests(3000))
    emulator.emulator.inject(Fault("results", drop_after_bytes=200_000, times=2))
    target = tmp_path / "raw" / f"{batch.id}.jsonl"
    size = hook.download_results(batch.id, target)
    lines = target.read_bytes().splitlines()
    assert size == target.stat().st_size
    assert len(lines) == 3000
    assert len({json.loads(line)["custom_id"] for line in lines}) == 3000
    assert emulator.emulator.stats["results_dropped"] == 2
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file left


def test_download_gives_up_with_a_clear_error(hook: ClaudeBatchHook, emulator: RunningEmulator, tmp_path: Path) -> None:
    batch = hook.create_batch(make_requests(2000))
    emulator.emulator.inject(Fault("results", drop_after_bytes=1000, times=10))
    target = tmp_path / "r.jsonl"
    with pytest.raises(ClaudeBatchAPIError, match=f"results download of batch '{batch.id}' broke off 2 times"):
        hook.download_results(batch.id, target, attempts=2)
    assert not target.exists()


def test_streams_100k_result_lines(hook: ClaudeBatchHook, emulator: RunningEmulator) -> None:
    batch = hook.create_batch(make_requests(100_000, max_tokens=4))
    seen = 0
    ids = set()
    for line in hook.iter_results_lines(batch.id):
        seen += 1
        ids.add(line[line.index(b'"custom_id":"') + 13 : line.index(b'"', line.index(b'"custom_id":"') + 13)])
    assert seen == 100_000
    assert len(ids) == 100_000


def test_async_calls_share_one_client_per_loop(emulator: RunningEmulator) -> None:
    batch = ClaudeBatchHook().create_batch(make_requests(2))

    async def poll() -> tuple[str, bool]:
        first, second = ClaudeBatchHook(), ClaudeBatchHook()
        a, _ = await asyncio.gather(first.aretrieve_batch(batch.id), second.aretrieve_batch(batch.id))
        page = await first.alist_batches(limit=10)
        assert [x.id for x in page.data] == [batch.id]
        return a.processing_status, (await first.shared_async_client()) is (await second.shared_async_client())

    status, shared = asyncio.run(poll())
    assert status == "ended" and shared
    with pytest.raises(ClaudeBatchNotFoundError, match="msgbatch_missing"):
        asyncio.run(ClaudeBatchHook().aretrieve_batch("msgbatch_missing"))


def test_airflow_lists_the_provider(airflow_home: Path) -> None:
    out = airflow_cli("providers", "list", "--output", "json")
    providers = {p["package_name"]: p for p in json.loads(out[out.index("[") :])}
    assert "airflow-provider-claude-batch" in providers
    hooks = airflow_cli("providers", "hooks", "--output", "json")
    assert "claude_batch" in hooks and "ClaudeBatchHook" in hooks
    links = airflow_cli("providers", "links", "--output", "json")
    assert "links.ClaudeBatchConsoleLink" in links and "links.ClaudeBatchOutputLink" in links
    assert "links.ClaudeBatchesPageLink" in links


def test_the_sdk_transport_logs_no_line_per_call(hook: ClaudeBatchHook, caplog: pytest.LogCaptureFixture) -> None:
    """Like Airflow's own ``httpx`` setting: a poll is not an INFO line in the task log, unless
    the deployment's logging config chose a level for the transport itself."""
    import logging

    from airflow_provider_claude_batch.hooks.claude_batch import quiet_transport_logs

    transport = logging.getLogger("httpx2")
    with caplog.at_level(logging.INFO):
        hook.list_batches()
    assert not [r for r in caplog.records if r.name == "httpx2"], caplog.text

    transport.setLevel(logging.DEBUG)
    try:
        quiet_transport_logs()
        assert transport.level == logging.DEBUG
    finally:
        transport.setLevel(logging.NOTSET)
    quiet_transport_logs()
    assert transport.level == logging.WARNING
