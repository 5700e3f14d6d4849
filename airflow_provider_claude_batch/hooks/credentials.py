"""Keyless auth: a connection that signs in with workload identity federation.

Instead of a long-lived API key, the worker or triggerer presents a short-lived identity
token from its platform (a Kubernetes projected service account token, a cloud's or a CI's
OIDC token), which the API exchanges for an access token under a federation rule
(``POST /v1/oauth/token``, RFC 7523). The SDK does the exchange and the refresh
(``anthropic.lib.credentials.WorkloadIdentityCredentials`` behind its ``TokenCache``); this
module only builds it from the connection.

Invariants:

* Nothing secret is stored in the connection: its extras name the federation rule, the
  organization and where the identity token file is. The file is read on every exchange,
  because platforms rotate it in place.
* An access token acts in the workspace it was minted for, so ``workspace_id`` goes into
  the exchange and never into an ``anthropic-workspace-id`` header.
* A failed exchange is a :class:`~airflow_provider_claude_batch.exceptions.ClaudeBatchFederationError`
  naming the connection; the SDK's message is already redacted (it never carries the
  identity token) and is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anthropic
from anthropic.lib.credentials import AccessToken, IdentityTokenFile, WorkloadIdentityCredentials

from airflow_provider_claude_batch.exceptions import ClaudeBatchAuthError, ClaudeBatchFederationError

#: Connection extras of a federated connection (the form shows each one).
FEDERATION_EXTRAS = ("federation_rule_id", "organization_id", "service_account_id", "identity_token_file")


@dataclass(frozen=True)
class FederationSettings:
    """Where a connection's identity comes from. No field is a secret."""

    federation_rule_id: str
    organization_id: str
    service_account_id: str | None = None
    #: Path of the identity token (JWT) file; ``None``: ``ANTHROPIC_IDENTITY_TOKEN_FILE``.
    identity_token_file: str | None = None

    @classmethod
    def from_extras(cls, conn_id: str, values: dict[str, Any]) -> FederationSettings | None:
        """The federation of a connection, ``None`` when it names no federation rule."""
        rule, organization = values.get("federation_rule_id"), values.get("organization_id")
        if not rule and not organization:
            return None
        if not rule or not organization:
            missing = "federation_rule_id" if not rule else "organization_id"
            raise ClaudeBatchAuthError(
                f"Connection {conn_id!r} is set up for workload identity federation but has no {missing}: "
                "set both federation_rule_id and organization_id (or neither, to use an API key)."
            )
        return cls(
            federation_rule_id=str(rule),
            organization_id=str(organization),
            service_account_id=values.get("service_account_id") or None,
            identity_token_file=values.get("identity_token_file") or None,
        )


class _FederationError(ClaudeBatchFederationError, anthropic.AnthropicError):
    """What a failed exchange raises inside the SDK's request: an ``AnthropicError``, which the
    SDK passes through (it would wrap any other error as a connection error and retry it, and
    a create would look ambiguous). Defined here so that ``exceptions`` needs no SDK."""


class ConnectionCredentials:
    """The SDK's federated credentials, with failures translated to name the connection.

    An access token provider for ``anthropic.Anthropic(credentials=...)`` and
    ``AsyncAnthropic`` (the SDK runs it in a worker thread there); it implements
    ``for_base_url`` so that the exchange goes to the same deployment as the API calls.
    """

    def __init__(self, conn_id: str, provider: WorkloadIdentityCredentials) -> None:
        self.conn_id = conn_id
        self._provider = provider

    def __call__(self, *, force_refresh: bool = False) -> AccessToken:
        try:
            return self._provider(force_refresh=force_refresh)
        except anthropic.AnthropicError as exc:  # WorkloadIdentityError, IdentityTokenFileError, ...
            raise _FederationError(
                f"Connection {self.conn_id!r} could not exchange its identity token for an access token: {exc}. "
                "Check the connection's federation_rule_id, organization_id and identity_token_file.",
                status_code=getattr(exc, "status_code", None),
                error_type="authentication_error",
            ) from None  # the SDK's error is summarized above; its frames may hold the assertion

    def for_base_url(self, base_url: str) -> ConnectionCredentials:
        return ConnectionCredentials(self.conn_id, self._provider.for_base_url(base_url))

    def close(self) -> None:
        self._provider.close()

    def __repr__(self) -> str:
        return f"ConnectionCredentials(conn_id={self.conn_id!r}, workload identity federation)"


def federated_credentials(
    conn_id: str, settings: FederationSettings, workspace_id: str | None
) -> ConnectionCredentials:
    """A fresh credentials provider for one client (each client owns and closes its own)."""
    try:
        identity_token = IdentityTokenFile(settings.identity_token_file)
    except anthropic.AnthropicError as exc:
        raise ClaudeBatchAuthError(
            f"Connection {conn_id!r} uses workload identity federation but has no identity token file: "
            "set the connection extra identity_token_file or ANTHROPIC_IDENTITY_TOKEN_FILE."
        ) from exc
    provider = WorkloadIdentityCredentials(
        identity_token_provider=identity_token,
        federation_rule_id=settings.federation_rule_id,
        organization_id=settings.organization_id,
        service_account_id=settings.service_account_id,
        workspace_id=workspace_id,
    )
    return ConnectionCredentials(conn_id, provider)
