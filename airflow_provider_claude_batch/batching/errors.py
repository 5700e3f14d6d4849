"""Error types usable without Airflow (the ``batching`` package imports no Airflow)."""

from __future__ import annotations


class ClaudeBatchError(Exception):
    """Base class of every error raised by airflow-provider-claude-batch."""


class ClaudeBatchInputError(ClaudeBatchError, ValueError):
    """The input rows, template or parameters cannot become valid batch requests.

    Raised before anything is submitted; the message names the row and the field.
    """


class ClaudeBatchBudgetError(ClaudeBatchInputError):
    """What a run could cost is over its ``max_cost_usd`` (or cannot be priced): nothing was
    submitted."""


class ClaudeBatchManifestError(ClaudeBatchError):
    """The work directory's manifest is missing, unreadable or does not match the input."""
