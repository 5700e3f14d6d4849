"""Keyless connections: workload identity federation through the SDK, against the emulator's
token exchange over real HTTP. No API key is configured anywhere in these tests."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import anthropic
import pytest

from airflow_provider_claude_batch.exceptions import ClaudeBatchAuthError, ClaudeBatchFederationError
from airflow_provider_claude_batch.get_provider_info import get_provider_info
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.testing.federation import TOKEN_PREFIX, FederationRule
from tests.helpers import TEST_API_KEY, make_requests

IDENTITY_TOKEN = "eyJhbGciOiJSUzI1NiJ9.k8s-projected-service-account.signature"
RULE = FederationRule(trusted_identity_tokens=frozenset({IDENTITY_TOKEN}))


@pytest.fixture
def identity_token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(IDENTITY_TOKEN + "\n")
    return path


@pytest.fixture
def federated(connection_env, emulator: RunningEmulator, identity_token_file: Path):
    """Defines a keyless connection id ``claude_federated`` (extras overridable)."""
    emulator.emulator.config.federation = RULE

    def define(**overrides: object) -> str:
        extra = {
            "federation_rule_id": RULE.rule_id,
            "organization_id": RULE.organization_id,
            "identity_token_file": str(identity_token_file),
            "workspace_id": "wrkspc_fed",
            **overrides,
        }
        connection_env("claude_federated", password=None, extra=extra)
        return "claude_federated"

    return define


def test_a_keyless_connection_creates_reads_and_tests(
    federated, emulator: RunningEmulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "key-from-the-environment")  # not used: the connection federates
    caplog.set_level(logging.DEBUG)
    hook = ClaudeBatchHook(federated())
    assert hook.settings.api_key is None and hook.settings.federation is not None
    batch = hook.create_batch(make_requests(2))
    assert hook.retrieve_batch(batch.id).request_counts.succeeded == 2
    ok, message = hook.test_connection()
    assert ok, message
    assert emulator.emulator.stats["token_exchanges"] == 1  # the SDK caches the access token
    assert emulator.emulator.stats["batches_created"] == 1

    # The batch lives in the token's workspace (no anthropic-workspace-id header was needed).
    keyed = anthropic.Anthropic(
        api_key=TEST_API_KEY, base_url=emulator.base_url, default_headers={"anthropic-workspace-id": "wrkspc_fed"}
    )
    assert [b.id for b in keyed.messages.batches.list()] == [batch.id]

    # The triggerer's path: the shared async client federates too.
    async def poll() -> str:
        return (await ClaudeBatchHook("claude_federated").aretrieve_batch(batch.id)).processing_status

    assert asyncio.run(poll()) == "ended"

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert IDENTITY_TOKEN not in logged and TOKEN_PREFIX not in logged
    assert IDENTITY_TOKEN not in repr(hook.settings)


def test_an_untrusted_identity_fails_before_anything_is_created(
    federated, emulator: RunningEmulator, identity_token_file: Path
) -> None:
    identity_token_file.write_text("eyJ.an-untrusted-identity.sig")
    hook = ClaudeBatchHook(federated(), retry_backoff=0)
    with pytest.raises(ClaudeBatchFederationError) as raised:
        hook.create_batch(make_requests(1))
    text = str(raised.value)
    assert "'claude_federated'" in text and "identity_token_file" in text
    assert "untrusted-identity" not in text
    assert isinstance(raised.value, ClaudeBatchAuthError)
    # An SDK error (which the SDK passes through unwrapped) though exceptions imports no SDK.
    assert isinstance(raised.value, anthropic.AnthropicError)
    # Not mistaken for an ambiguous create: no create went out, no lookup, no retry.
    assert emulator.emulator.calls["create"] == 0 and emulator.emulator.calls["list"] == 0
    assert emulator.emulator.stats["batches_created"] == 0
    ok, message = hook.test_connection()
    assert not ok and "claude_federated" in message


def test_a_rotated_identity_token_is_read_again(
    federated, emulator: RunningEmulator, identity_token_file: Path
) -> None:
    rotated = "eyJ.rotated-projected-token.sig"
    emulator.emulator.config.federation = FederationRule(trusted_identity_tokens=frozenset({IDENTITY_TOKEN, rotated}))
    hook = ClaudeBatchHook(federated())
    hook.list_batches()
    identity_token_file.write_text(rotated)
    emulator.emulator.config.federation = FederationRule(trusted_identity_tokens=frozenset({rotated}))
    emulator.emulator.advance(RULE.token_seconds + 1)  # the access token expired
    hook.list_batches()
    assert emulator.emulator.stats["token_exchanges"] == 2


def test_half_a_federation_setup_is_a_clear_error(federated) -> None:
    with pytest.raises(ClaudeBatchAuthError, match="'claude_federated'.*no organization_id"):
        ClaudeBatchHook(federated(organization_id="")).settings  # noqa: B018


def test_a_missing_identity_token_file_names_the_setting(federated, tmp_path: Path) -> None:
    hook = ClaudeBatchHook(federated(identity_token_file=str(tmp_path / "absent")))
    with pytest.raises(ClaudeBatchFederationError, match="'claude_federated'.*identity_token_file"):
        hook.list_batches()


def test_the_connection_form_shows_the_federation_fields() -> None:
    (connection,) = get_provider_info()["connection-types"]
    fields = connection["conn-fields"]
    for name in ("federation_rule_id", "organization_id", "service_account_id", "identity_token_file"):
        assert name in fields and fields[name]["schema"]["type"] == ["string", "null"]
        assert fields[name].get("schema", {}).get("format") != "password"  # none of them is a secret
    assert "federation" in connection["ui-field-behaviour"]["relabeling"]["password"]
