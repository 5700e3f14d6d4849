"""ClaudeBatchToParquetOperator: ended batches -> Parquet, one row per input request."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import Asset, BaseOperator

from airflow_provider_claude_batch.batching.land.kept_columns import (
    KeepColumns,
    check_kept_names,
    keep_columns_spec,
    output_column_names,
)
from airflow_provider_claude_batch.batching.schema.output_schema import OutputSchema, check_on_invalid_output
from airflow_provider_claude_batch.batching.wait.cancel import cancel_batches
from airflow_provider_claude_batch.batching.wait.poller import (
    DEFAULT_MAX_POLL_ERRORS,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT_SECONDS,
    Poller,
    retrieve_states,
    wait_until_ended,
)
from airflow_provider_claude_batch.batching.wait.wait_event import WaitEvent
from airflow_provider_claude_batch.config import answer_max_age, price_table
from airflow_provider_claude_batch.conventions import (
    DEFAULT_CONN_ID,
    as_seconds,
    check_retry_rounds,
    default_deferrable,
    pick_alias,
)
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError
from airflow_provider_claude_batch.lineage import LineageRecord, operator_lineage
from airflow_provider_claude_batch.links import ClaudeBatchOutputLink, output_url
from airflow_provider_claude_batch.triggerer import may_defer
from airflow_provider_claude_batch.workdir import open_manifest

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_claude_batch.batching.land.landing import Landing
    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook


def _upstream_submit(manifest: Any) -> Any:
    """The submit operator whose output ``manifest`` is (``submit.output``), or None."""
    operator = getattr(manifest, "operator", None)
    return operator if hasattr(operator, "output_schema") and hasattr(operator, "input_columns") else None


def check_keep_columns(keep_columns: Any, submit: Any = None) -> None:
    """Every check of ``keep_columns`` that needs no answer, run when the DAG is parsed (before
    anything is submitted or billed): its shape, clashes with the result columns and, when
    the submit task is known (``manifest=submit.output``, or the decorator itself), with its
    typed answer columns and whether it saves the columns kept. A templated value is checked
    when the task runs, before any row is written."""
    if not isinstance(keep_columns, (list, tuple, dict)):
        return
    kept, rename = keep_columns_spec(keep_columns)
    schema = getattr(submit, "output_schema", None)
    check_kept_names(kept, rename, output_column_names(schema if isinstance(schema, OutputSchema) else None))
    saved = getattr(submit, "input_columns", "all")
    if submit is not None and saved != "all":
        missing = [name for name in kept if name not in (saved or [])]
        if missing:
            raise ClaudeBatchInputError(
                f"keep_columns {missing} are not saved by the submit task {submit.task_id!r} "
                f"(its input_columns are {saved!r}); add them there"
            )


class ClaudeBatchToParquetOperator(BaseOperator):
    """Stream the results of every batch of a manifest into Parquet.

    Each batch's raw results JSONL is parsed while it downloads, in record batches written as
    Parquet row groups (one ``part-NNNNN.parquet`` per chunk), so memory stays flat however
    many results there are; the same bytes are saved to the work directory
    (``raw/{batch_id}.jsonl``), whole before the output is committed, and a connection dropped
    mid-download resumes where it broke off. The destination folder is
    replaced whole (:mod:`~airflow_provider_claude_batch.batching.land.partitions`: an atomic rename
    on local disk, a commit object on object storage), so backfills and clears never
    duplicate rows and a reader never sees a mix of two landings.

    Landing is an idempotent state machine over the manifest: each step reads the manifest
    and skips what it records as done (batches that ended, raw files saved and verified,
    rounds planned), and records what it did before the next step. A retry, a clear or the
    resume after a deferral therefore starts from the top, bills nothing twice and writes
    the same rows. The one step that bills is the resubmission rounds: they create new
    batches for requests that ended for a transient reason.

    The steps are :class:`~airflow_provider_claude_batch.batching.land.landing.Landing`'s; this
    operator is their Airflow glue: parameters, deferral, kill, lineage, links and Asset events.

    :param manifest: the submit task's output (``submit.output``) or a manifest path/URI.
    :param destination: folder path or URI of the output (templated, e.g. with ``{{ ds }}``).
    :param keep_columns: input columns joined back to each result by custom_id: a list, whose
        items may rename one column each (``["product", {"text": "input_text"}]`` for a column whose
        name a result column already has; the others keep their names), or a mapping of input
        column -> output name (``None`` keeps the name). Clashes with the result columns (and,
        with ``manifest=submit.output``, with the submit's typed answer columns) fail when the DAG
        is parsed, before anything is submitted.
    :param row_group_size: rows per Parquet row group (and per record batch in memory).
    :param compression: Parquet compression codec.
    :param prices: overrides of the price table used for ``cost_usd`` (model -> USD per
        million tokens), applied over ``[claude_batch] prices``; see
        :mod:`airflow_provider_claude_batch.batching.api.pricing`.
    :param max_retry_rounds: how many times requests that ended ``expired`` or ``errored``
        with a transient error (overloaded, api, rate limit) are resubmitted, from the saved
        request bodies, before their last outcome is landed. ``0`` disables resubmission.
        Requests rejected as invalid are never resubmitted.
    :param deferrable: wait for resubmitted batches in the triggerer or by polling. Defaults to
        on, or to ``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE`` when the deployment sets it.
    :param poll_interval: seconds (or a ``timedelta``) between polls of resubmitted batches.
    :param wait_timeout: seconds (or a ``timedelta``) to wait for a round of resubmitted batches.
    :param max_poll_errors: consecutive failed polls tolerated before failing.
    :param cancel_on_timeout: cancel the batches still open when ``wait_timeout`` passes.
    :param cancel_on_kill: cancel them when the task is killed while it waits (also while
        deferred).
    :param conn_id: the connection (templated); defaults to the manifest's connection.
        ``claude_batch_conn_id`` is accepted as the same parameter.
    :param on_invalid_output: when the submit task had an ``output_schema``, what to do with
        succeeded answers that do not match it (``output_status`` invalid, refused or
        truncated): ``"keep"`` (default: land them with ``output_error`` and null typed
        columns), ``"fail"`` (land nothing and fail, naming rows and fields) or ``"resubmit"``
        (send the invalid ones again in the resubmission rounds, bounded by
        ``max_retry_rounds``, then keep what is left; refusals and truncations would repeat, so
        they are kept as they are).

    Returns (XCom) the destination, rows per result type, tokens and cost.
    """

    template_fields: Sequence[str] = ("manifest", "destination", "keep_columns", "conn_id")
    ui_color = "#d4e3e8"
    operator_extra_links = (ClaudeBatchOutputLink(),)

    def __init__(
        self,
        *,
        manifest: Any,
        destination: str,
        keep_columns: KeepColumns | None = None,
        row_group_size: int = 65_536,
        compression: str = "zstd",
        prices: dict[str, Any] | None = None,
        max_retry_rounds: int = 2,
        deferrable: bool | None = None,
        poll_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        wait_timeout: float | timedelta = DEFAULT_TIMEOUT_SECONDS,
        max_poll_errors: int = DEFAULT_MAX_POLL_ERRORS,
        cancel_on_timeout: bool = True,
        cancel_on_kill: bool = True,
        on_invalid_output: str = "keep",
        conn_id: str | None = None,
        claude_batch_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.manifest = manifest
        self.destination = destination
        check_keep_columns(keep_columns, _upstream_submit(manifest))  # when the DAG is parsed: nothing billed yet
        self.keep_columns = keep_columns
        self.row_group_size = row_group_size
        self.compression = compression
        self.prices = prices
        self.max_retry_rounds = check_retry_rounds(max_retry_rounds)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = as_seconds(poll_interval, "poll_interval")
        self.wait_timeout = as_seconds(wait_timeout, "wait_timeout")
        self.max_poll_errors = max_poll_errors
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        #: The wait in progress when not deferred (what ``on_kill`` cancels).
        self._poller: Poller | None = None
        self.on_invalid_output = check_on_invalid_output(on_invalid_output)
        self.output_link: str | None = None
        self.lineage: LineageRecord | None = None
        self.conn_id = pick_alias("conn_id", conn_id, "claude_batch_conn_id", claude_batch_conn_id)

    @property
    def claude_batch_conn_id(self) -> str | None:
        """``conn_id`` (the older name of the parameter)."""
        return self.conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        return self._announce(context, self._land())

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the submit's source in, the Parquet partition out with its rows, files
        and schema (see ``lineage.py``)."""
        return operator_lineage(self.lineage or LineageRecord())

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        ended = WaitEvent.from_payload(event)
        self._landing().settle(ended)
        return self._announce(context, self._land())

    def _announce(self, context: Context, summary: dict[str, Any]) -> dict[str, Any]:
        """Put where and what was landed on the outlet Assets' events, so that DAGs scheduled on
        them find the partition in ``triggering_asset_events`` without guessing paths."""
        extra = {
            "destination": summary["destination"],
            "rows": summary["rows"],
            "by_result_type": summary["by_result_type"],
            "cost_usd": summary["cost_usd"],
            "files": summary["files"],
        }
        for outlet in self.outlets or []:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra.update(extra)
        return summary

    def _landing(self) -> Landing:
        from airflow_provider_claude_batch.batching.land.landing import Landing, LandingSettings
        from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

        manifest, run_dir = open_manifest(self.manifest)
        hook = ClaudeBatchHook(self.claude_batch_conn_id or manifest.conn_id)
        settings = LandingSettings(
            destination=self.destination,
            keep_columns=self.keep_columns,
            row_group_size=self.row_group_size,
            compression=self.compression,
            prices=price_table(self.prices),
            max_retry_rounds=self.max_retry_rounds,
            on_invalid_output=self.on_invalid_output,
            max_poll_errors=self.max_poll_errors,
            wait_timeout=self.wait_timeout,
            cancel_on_timeout=self.cancel_on_timeout,
            answer_max_age=answer_max_age(),
        )
        wait = functools.partial(self._wait, hook=hook, conn_id=self.claude_batch_conn_id or manifest.conn_id)
        return Landing(manifest, run_dir, hook, settings, wait=wait, log=self.log)

    def _land(self) -> dict[str, Any]:
        landing = self._landing()
        landed = landing.run()
        manifest = landing.manifest
        self.lineage = LineageRecord(
            source=manifest.source,
            requests=manifest.rows,
            destination=landed.destination,
            rows=landed.stats.rows,
            files=landed.files,
        )
        self.output_link = output_url(landed.destination)
        return landed.summary

    def _wait(self, batch_ids: list[str], *, theirs: bool, hook: ClaudeBatchHook, conn_id: str) -> WaitEvent:
        """Wait for open batches: deferred (the trigger polls; the task resumes in
        :meth:`execute_complete`), or here with the same poller. ``theirs``: batches of other
        runs, never canceled by this task."""
        deadline = time.time() + self.wait_timeout
        if self.deferrable and may_defer(self.log, "Polling the resubmitted batches in this task"):
            from airflow_provider_claude_batch.triggers.batch import ClaudeBatchTrigger

            self.defer(
                trigger=ClaudeBatchTrigger(
                    batch_ids=batch_ids,
                    claude_batch_conn_id=conn_id,
                    poll_interval=self.poll_interval,
                    deadline=deadline,
                    max_poll_errors=self.max_poll_errors,
                    cancel_on_kill=self.cancel_on_kill and not theirs,
                ),
                method_name="execute_complete",
            )
        poller = Poller(batch_ids, max_poll_errors=self.max_poll_errors, deadline=deadline)
        self._poller = None if theirs else poller  # what on_kill cancels
        try:
            return wait_until_ended(poller, lambda ids: retrieve_states(hook, ids), self.poll_interval, log=self.log)
        finally:
            self._poller = None

    def on_kill(self) -> None:
        """Killed while waiting here (not deferred: then the trigger cancels): cancel the batches
        of the wait that have not ended."""
        poller = self._poller
        if not self.cancel_on_kill or poller is None:
            return
        from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

        hook = ClaudeBatchHook(self.claude_batch_conn_id or DEFAULT_CONN_ID)
        cancel_batches(hook, poller.to_cancel(), reason="the task was killed", log=self.log)
