"""Every error this provider raises derives from :class:`ClaudeBatchError`.

Messages name the connection, batch, chunk, row or field involved, and what to do next. They
never contain an API key.
"""

from __future__ import annotations

import anthropic

from airflow_provider_claude_batch.batching.errors import (
    ClaudeBatchError,
    ClaudeBatchInputError,
    ClaudeBatchManifestError,
)

__all__ = [
    "ClaudeBatchAPIError",
    "ClaudeBatchAuthError",
    "ClaudeBatchCreateAmbiguousError",
    "ClaudeBatchError",
    "ClaudeBatchFederationError",
    "ClaudeBatchInputError",
    "ClaudeBatchManifestError",
    "ClaudeBatchNotFoundError",
]


class ClaudeBatchAPIError(ClaudeBatchError):
    """The API answered with an error, or could not be reached.

    ``created_nothing`` is true on a failed create only when the API surely created nothing
    (it refused every attempt), so the caller may forget its intent to create.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        created_nothing: bool = False,
    ):
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type
        self.created_nothing = created_nothing


class ClaudeBatchAuthError(ClaudeBatchAPIError):
    """The API key is missing or was rejected (401/403)."""


class ClaudeBatchFederationError(ClaudeBatchAuthError, anthropic.AnthropicError):
    """A connection's identity token could not be exchanged for an access token.

    Also an ``AnthropicError`` because it is raised inside the SDK's request (where the SDK
    fetches tokens): the SDK passes its own errors through, but would wrap any other one as
    a connection error and retry it, and a create would then look ambiguous.
    """


class ClaudeBatchNotFoundError(ClaudeBatchAPIError):
    """The batch does not exist in this workspace (404)."""


class ClaudeBatchCreateAmbiguousError(ClaudeBatchAPIError):
    """A create failed in a way that may or may not have created a batch, and the lookup
    that should have settled it could not."""
