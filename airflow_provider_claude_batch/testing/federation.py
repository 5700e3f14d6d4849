"""The emulator's side of workload identity federation (``POST /v1/oauth/token``).

The SDK's ``WorkloadIdentityCredentials`` sends an RFC 7523 ``jwt-bearer`` grant: an
identity token (a JWT from Kubernetes, GitHub Actions, a cloud's metadata server, ...), a
federation rule id and an organization id. The API answers with a short-lived access token,
which the SDK then sends as ``Authorization: Bearer`` with the ``oauth-2025-04-20`` beta.

Rules kept here:

* An assertion is accepted only for the configured rule and only when the rule trusts it
  (the emulator does not verify JWT signatures: tests configure the exact tokens to trust).
* An access token is bound to the workspace of its exchange; ``anthropic-workspace-id``
  cannot move it to another one, as on the API.
* Tokens expire after ``token_seconds`` of the emulator's clock, so tests can advance past
  expiry instead of sleeping.
* Failures answer with the OAuth error shape (``error``, ``error_description``) that the
  SDK reports, and never echo the assertion.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

GRANT_TYPE_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: ``anthropic-beta`` flag a request must carry to authenticate with a Bearer access token.
OAUTH_API_BETA = "oauth-2025-04-20"
TOKEN_PREFIX = "sk-ant-oat-emu-"


class FederationError(Exception):
    """A refused token exchange: HTTP status and OAuth error code."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass
class FederationRule:
    """One federation rule: which identity tokens it trusts, for which organization."""

    rule_id: str = "fdrl_emulator"
    organization_id: str = "00000000-0000-4000-8000-000000000000"
    #: Identity tokens (JWTs) this rule accepts, compared exactly.
    trusted_identity_tokens: frozenset[str] = frozenset()
    token_seconds: int = 600


@dataclass
class _AccessToken:
    workspace: str | None
    expires_at: datetime


@dataclass
class TokenIssuer:
    """Exchanges identity tokens for access tokens and checks the access tokens it issued."""

    _tokens: dict[str, _AccessToken] = field(default_factory=dict)

    def exchange(self, body: Any, rule: FederationRule, now: datetime) -> dict[str, Any]:
        if not isinstance(body, dict) or body.get("grant_type") != GRANT_TYPE_JWT_BEARER:
            raise FederationError(400, "unsupported_grant_type", f"grant_type must be {GRANT_TYPE_JWT_BEARER}")
        for name in ("assertion", "federation_rule_id", "organization_id"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise FederationError(400, "invalid_request", f"{name} is required")
        if body["federation_rule_id"] != rule.rule_id or body["organization_id"] != rule.organization_id:
            raise FederationError(401, "invalid_grant", "no such federation rule in this organization")
        if body["assertion"] not in rule.trusted_identity_tokens:
            raise FederationError(401, "invalid_grant", "the identity token does not match the federation rule")
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        workspace = body.get("workspace_id")
        self._tokens[token] = _AccessToken(
            workspace=None if workspace in (None, "default") else workspace,
            expires_at=now + timedelta(seconds=rule.token_seconds),
        )
        return {"access_token": token, "token_type": "Bearer", "expires_in": rule.token_seconds}

    def workspace_of(self, token: str, now: datetime) -> tuple[bool, str | None]:
        """``(valid, workspace)`` of a presented Bearer token."""
        issued = self._tokens.get(token)
        if issued is None or issued.expires_at <= now:
            return False, None
        return True, issued.workspace

    def reset(self) -> None:
        self._tokens.clear()
