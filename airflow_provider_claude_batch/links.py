"""Operator extra links: the batch in the Anthropic Console, and the Parquet output.

The Console's batch URL is not a documented API, so its template is configurable per
connection (extra ``console_url_template``, fields ``{batch_id}`` and ``{workspace_id}``).
A template that does not render gives no link and a warning, never a failed task.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

log = logging.getLogger(__name__)

DEFAULT_CONSOLE_URL_TEMPLATE = "https://console.anthropic.com/workspaces/{workspace_id}/batches/{batch_id}"


def console_url(template: str | None, batch_id: str, workspace_id: str | None = None) -> str | None:
    try:
        return (template or DEFAULT_CONSOLE_URL_TEMPLATE).format(
            batch_id=batch_id, workspace_id=workspace_id or "default"
        )
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        log.warning(
            "console_url_template %r cannot be rendered (%s: %s); no Console link.", template, type(exc).__name__, exc
        )
        return None


class ClaudeBatchConsoleLink(BaseOperatorLink):
    """The task's (first) batch in the Anthropic Console."""

    name = "Claude batch in Console"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return getattr(operator, "console_link", None) or ""


class ClaudeBatchOutputLink(BaseOperatorLink):
    """Where the transfer landed its Parquet."""

    name = "Parquet output"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return getattr(operator, "output_link", None) or ""
