"""Older import location of the error types; they live in ``airflow_provider_claude_batch.exceptions``.

Kept as re-exports only, for code that imported them from here.
"""

from __future__ import annotations

from airflow_provider_claude_batch.exceptions import (
    ClaudeBatchBudgetError,
    ClaudeBatchError,
    ClaudeBatchInputError,
    ClaudeBatchManifestError,
)

__all__ = ["ClaudeBatchBudgetError", "ClaudeBatchError", "ClaudeBatchInputError", "ClaudeBatchManifestError"]
