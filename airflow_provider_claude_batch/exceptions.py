"""Every error this provider raises derives from :class:`ClaudeBatchError`.

Messages name the connection, batch, chunk, row or field involved, and what to do next. They
never contain an API key.
"""

from __future__ import annotations

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
    "ClaudeBatchInputError",
    "ClaudeBatchManifestError",
    "ClaudeBatchNotFoundError",
]


class ClaudeBatchAPIError(ClaudeBatchError):
    """The API answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status_code: int | None = None, error_type: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type


class ClaudeBatchAuthError(ClaudeBatchAPIError):
    """The API key is missing or was rejected (401/403)."""


class ClaudeBatchNotFoundError(ClaudeBatchAPIError):
    """The batch does not exist in this workspace (404)."""


class ClaudeBatchCreateAmbiguousError(ClaudeBatchAPIError):
    """A create failed in a way that may or may not have created a batch, and the lookup
    that should have settled it could not."""
