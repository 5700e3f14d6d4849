"""Operator extra links: the batch in the Anthropic Console, every batch of the task on the
Claude Batches page, and the Parquet output.

The Console's batch URL is not a documented API, so its template is configurable per
connection (extra ``console_url_template``, fields ``{batch_id}`` and ``{workspace_id}``).
A template that does not render gives no link and a warning, never a failed task.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode, urlparse

from airflow.providers.common.compat.sdk import BaseOperatorLink

import airflow_provider_claude_batch.compat  # noqa: F401 - refuses an unsupported Airflow first

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, TaskInstanceKey

    from airflow_provider_claude_batch.batching.state.manifest import Manifest

log = logging.getLogger(__name__)

DEFAULT_CONSOLE_URL_TEMPLATE = "https://console.anthropic.com/workspaces/{workspace_id}/batches/{batch_id}"


#: The API host whose batches the Console shows.
ANTHROPIC_API_HOST = "api.anthropic.com"


def console_url(
    template: str | None, batch_id: str, workspace_id: str | None = None, *, base_url: str | None = None
) -> str | None:
    """The batch's page in the Anthropic Console, or None.

    Without a ``console_url_template`` the default Console URL is used only when the
    connection talks to the real API: a batch of another host (the local emulator, a gateway)
    is not in the Console, and a link there would show someone else's 404.
    """
    if template is None and base_url and (urlparse(base_url).hostname or "") != ANTHROPIC_API_HOST:
        return None
    try:
        return (template or DEFAULT_CONSOLE_URL_TEMPLATE).format(
            batch_id=batch_id, workspace_id=workspace_id or "default"
        )
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        log.warning(
            "console_url_template %r cannot be rendered (%s: %s); no Console link.", template, type(exc).__name__, exc
        )
        return None


def output_url(destination: str) -> str | None:
    """A browser URL for a landed folder: the S3 or GCS console page of its prefix, else None.

    A local path has no URL that the Airflow UI can open (browsers refuse ``file://`` links
    from a web page), so local output gets no link rather than one that does nothing.
    """
    parsed = urlparse(destination)
    bucket = parsed.netloc.rsplit("@", 1)[-1]  # ObjectStoragePath may carry a conn_id: s3://conn@bucket/
    prefix = parsed.path.strip("/")
    if parsed.scheme in ("s3", "s3a") and bucket:
        return f"https://s3.console.aws.amazon.com/s3/buckets/{bucket}?{urlencode({'prefix': prefix + '/'})}"
    if parsed.scheme in ("gs", "gcs") and bucket:
        return f"https://console.cloud.google.com/storage/browser/{bucket}/{prefix}"
    return None


#: Where the provider's plugin serves the Claude Batches page on the api-server.
BATCHES_PAGE_PREFIX = "/claude-batches"


def batches_page_url(manifest: Manifest) -> str:
    """The Claude Batches page showing the batches of the submit task that wrote ``manifest``.
    Root-relative, under the path of ``[api] base_url`` when Airflow is served below a prefix."""
    prefix = ""
    try:
        from airflow.providers.common.compat.sdk import conf

        prefix = urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    except Exception:  # a link must never fail a task
        pass
    query = {
        "conn_id": manifest.conn_id,
        "dag_id": manifest.dag_id,
        "run_id": manifest.run_id,
        "task_id": manifest.task_id,
    }
    if manifest.map_index >= 0:
        query["map_index"] = str(manifest.map_index)
    return f"{prefix}{BATCHES_PAGE_PREFIX}/?{urlencode(query)}"


class _AttributeLink(BaseOperatorLink):
    """A link whose URL the operator keeps in an attribute (``attribute``) while it runs.

    Airflow 3 saves the URL in XCom (key ``_link_<ClassName>``) when a try of the task ends,
    deferral included, computing it from the operator instance at hand. An operator that
    defers is a fresh instance when it resumes, one that never ran ``execute``: so it sets
    its link attributes again when it resumes (the sensor, the decorator and the transfer do),
    and :func:`persist_links` saves them before deferring so the UI has them while it waits.
    An unset attribute is an empty link: no XCom is read for it (a read of a missing XCom
    would log an error line in every task log).
    """

    attribute: ClassVar[str]

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return getattr(operator, self.attribute, None) or ""


def persist_links(operator: Any, context: Context) -> None:
    """Save the URLs of ``operator``'s links in XCom now (call it before deferring)."""
    for link in getattr(operator, "operator_extra_links", ()):
        url = getattr(operator, link.attribute, None) if isinstance(link, _AttributeLink) else None
        if url:
            context["ti"].xcom_push(key=link.xcom_key, value=url)


class ClaudeBatchConsoleLink(_AttributeLink):
    """The task's (first) batch in the Anthropic Console."""

    name = "Claude batch in Console"
    attribute = "console_link"


class ClaudeBatchesPageLink(_AttributeLink):
    """Every batch of the task (all chunks and rounds) on the Claude Batches page."""

    name = "Claude Batches of this task"
    attribute = "batches_page_link"


class ClaudeBatchOutputLink(_AttributeLink):
    """Where the transfer landed its Parquet."""

    name = "Parquet output"
    attribute = "output_link"
