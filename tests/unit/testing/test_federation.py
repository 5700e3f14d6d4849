"""The emulator's token exchange for workload identity federation (``POST /v1/oauth/token``).

Invariants: an RFC 7523 ``jwt-bearer`` grant is exchanged only for the configured rule and
organization and only for an identity token the rule trusts; anything else is refused with
the OAuth error shape (400 for a malformed grant, 401 ``invalid_grant`` for an untrusted one),
mints nothing and never echoes the assertion. An access token lasts ``token_seconds`` of the
emulator's clock and acts in the workspace of its exchange, whatever header a call sends.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.lib.credentials import WorkloadIdentityCredentials, WorkloadIdentityError

from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.testing.federation import (
    GRANT_TYPE_JWT_BEARER,
    OAUTH_API_BETA,
    TOKEN_PREFIX,
    FederationError,
    FederationRule,
    TokenIssuer,
)
from tests.helpers import TEST_API_KEY, make_requests

IDENTITY_TOKEN = "eyJhbGciOiJSUzI1NiJ9.test-identity.sig"
RULE = FederationRule(trusted_identity_tokens=frozenset({IDENTITY_TOKEN}), token_seconds=600)
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _grant(**overrides: Any) -> dict[str, Any]:
    grant = {
        "grant_type": GRANT_TYPE_JWT_BEARER,
        "assertion": IDENTITY_TOKEN,
        "federation_rule_id": RULE.rule_id,
        "organization_id": RULE.organization_id,
    }
    grant.update(overrides)
    return {name: value for name, value in grant.items() if value is not None}


def test_a_trusted_assertion_gets_a_bearer_token_for_the_rules_lifetime() -> None:
    issuer = TokenIssuer()
    answer = issuer.exchange(_grant(), RULE, NOW)
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 600
    assert answer["access_token"].startswith(TOKEN_PREFIX)
    assert issuer.exchange(_grant(), RULE, NOW)["access_token"] != answer["access_token"]
    token = answer["access_token"]
    assert issuer.workspace_of(token, NOW + timedelta(seconds=599)) == (True, None)
    assert issuer.workspace_of(token, NOW + timedelta(seconds=600)) == (False, None)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (None, 400, "unsupported_grant_type"),
        ([_grant()], 400, "unsupported_grant_type"),
        (_grant(grant_type="client_credentials"), 400, "unsupported_grant_type"),
        (_grant(assertion=""), 400, "invalid_request"),
        ({**_grant(), "federation_rule_id": None}, 400, "invalid_request"),
        (_grant(organization_id=7), 400, "invalid_request"),
        (_grant(federation_rule_id="fdrl_other"), 401, "invalid_grant"),
        (_grant(organization_id="11111111-1111-4111-8111-111111111111"), 401, "invalid_grant"),
        (_grant(assertion="eyJ.untrusted-identity.sig"), 401, "invalid_grant"),
        (_grant(assertion=IDENTITY_TOKEN + " "), 401, "invalid_grant"),  # compared exactly
    ],
)
def test_a_refused_exchange_mints_nothing_and_never_echoes_the_assertion(body: Any, status: int, error: str) -> None:
    issuer = TokenIssuer()
    with pytest.raises(FederationError) as refused:
        issuer.exchange(body, RULE, NOW)
    assert (refused.value.status, refused.value.error) == (status, error)
    assert set(refused.value.body()) == {"error", "error_description"}
    said = json.dumps(refused.value.body()) + str(refused.value)
    assert "test-identity" not in said and "untrusted-identity" not in said
    assert issuer._tokens == {}


def test_a_token_is_bound_to_the_workspace_of_its_exchange() -> None:
    issuer = TokenIssuer()
    scoped = issuer.exchange(_grant(workspace_id="wrkspc_a"), RULE, NOW)["access_token"]
    default = issuer.exchange(_grant(workspace_id="default"), RULE, NOW)["access_token"]
    assert issuer.workspace_of(scoped, NOW) == (True, "wrkspc_a")
    assert issuer.workspace_of(default, NOW) == (True, None)
    assert issuer.workspace_of(TOKEN_PREFIX + "never-issued", NOW) == (False, None)
    issuer.reset()
    assert issuer.workspace_of(scoped, NOW) == (False, None)


def _federated_client(emulator: RunningEmulator, identity_token: str, **overrides: str) -> anthropic.Anthropic:
    rule = emulator.emulator.config.federation
    credentials = WorkloadIdentityCredentials(
        identity_token_provider=lambda: identity_token,
        federation_rule_id=overrides.get("rule", rule.rule_id),
        organization_id=rule.organization_id,
        workspace_id=overrides.get("workspace"),
    )
    return anthropic.Anthropic(credentials=credentials, base_url=emulator.base_url, max_retries=0)


def test_federated_token_exchange_then_bearer_calls(emulator: RunningEmulator) -> None:
    emulator.emulator.config.federation = RULE
    client = _federated_client(emulator, IDENTITY_TOKEN, workspace="wrkspc_fed")
    batch = client.messages.batches.create(requests=make_requests(1))
    assert [b.id for b in client.messages.batches.list()] == [batch.id]
    # One exchange serves many calls (the SDK caches the token); the token is workspace-bound.
    assert emulator.emulator.stats["token_exchanges"] == 1
    keyed = anthropic.Anthropic(
        api_key=TEST_API_KEY, base_url=emulator.base_url, default_headers={"anthropic-workspace-id": "wrkspc_fed"}
    )
    assert [b.id for b in keyed.messages.batches.list()] == [batch.id]

    with pytest.raises(WorkloadIdentityError) as untrusted:
        _federated_client(emulator, "eyJ.untrusted.sig").messages.batches.list()
    assert untrusted.value.status_code == 401 and "untrusted" not in str(untrusted.value)
    with pytest.raises(WorkloadIdentityError):
        _federated_client(emulator, IDENTITY_TOKEN, rule="fdrl_other").messages.batches.list()
    assert emulator.emulator.stats["token_exchange_failures"] >= 2
    assert emulator.emulator.stats["token_exchanges"] == 1  # no token for either


def test_an_expired_or_unflagged_access_token_is_refused(emulator: RunningEmulator) -> None:
    emulator.emulator.config.federation = RULE
    base = emulator.base_url
    minted = httpx.post(f"{base}/v1/oauth/token", json=_grant())
    assert minted.status_code == 200 and minted.json()["token_type"] == "Bearer"
    token = minted.json()["access_token"]
    headers = {"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}
    no_beta = httpx.get(f"{base}/v1/messages/batches", headers=headers)
    assert no_beta.status_code == 401 and OAUTH_API_BETA in no_beta.text
    headers["anthropic-beta"] = OAUTH_API_BETA
    assert httpx.get(f"{base}/v1/messages/batches", headers=headers).status_code == 200
    emulator.emulator.advance(minted.json()["expires_in"] + 1)
    assert httpx.get(f"{base}/v1/messages/batches", headers=headers).status_code == 401


def test_the_workspace_header_cannot_move_a_token_and_refusals_have_the_oauth_shape(
    emulator: RunningEmulator,
) -> None:
    emulator.emulator.config.federation = RULE
    base = emulator.base_url
    token = httpx.post(f"{base}/v1/oauth/token", json=_grant(workspace_id="wrkspc_a")).json()["access_token"]
    keyed_b = anthropic.Anthropic(
        api_key=TEST_API_KEY, base_url=base, default_headers={"anthropic-workspace-id": "wrkspc_b"}
    )
    in_b = keyed_b.messages.batches.create(requests=make_requests(1))
    headers = {
        "authorization": f"Bearer {token}",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": OAUTH_API_BETA,
        "anthropic-workspace-id": "wrkspc_b",
    }
    listed = httpx.get(f"{base}/v1/messages/batches", headers=headers)
    assert listed.status_code == 200 and listed.json()["data"] == []
    assert httpx.get(f"{base}/v1/messages/batches/{in_b.id}", headers=headers).status_code == 404

    refused = httpx.post(f"{base}/v1/oauth/token", json=_grant(assertion="eyJ.untrusted-identity.sig"))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_grant"
    assert "untrusted-identity" not in refused.text
    not_json = httpx.post(f"{base}/v1/oauth/token", content=b"grant_type=")
    assert not_json.status_code == 400 and not_json.json()["error"] == "unsupported_grant_type"
