"""ClaudeBatchToParquetOperator: ended batches -> Parquet, one row per input request."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow.sdk import Asset, BaseOperator

from airflow_provider_claude_batch.batching.api.batch_state import BatchState
from airflow_provider_claude_batch.batching.land.partitions import commit, discard, stage
from airflow_provider_claude_batch.batching.land.parts import (
    LandingStats,
    check_identity,
    cost_table,
    keep_columns_spec,
    write_parts,
)
from airflow_provider_claude_batch.batching.land.raw_results import SavingDownload
from airflow_provider_claude_batch.batching.land.rounds import plan_next_round
from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerOrigin, AnswerStore
from airflow_provider_claude_batch.batching.reuse.answered_rows import NewAnswers
from airflow_provider_claude_batch.batching.reuse.awaited import resolve_awaited
from airflow_provider_claude_batch.batching.reuse.plan import ReuseCounts
from airflow_provider_claude_batch.batching.schema.output_schema import OutputSchema
from airflow_provider_claude_batch.batching.schema.typed_columns import (
    TypedAnswers,
    check_on_invalid_output,
    invalid_answer_ids,
)
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.state.storage import StoragePath, as_path
from airflow_provider_claude_batch.batching.submit.create_once import create_missing_batches
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
from airflow_provider_claude_batch.conventions import as_seconds, check_retry_rounds, default_deferrable, pick_alias
from airflow_provider_claude_batch.exceptions import (
    ClaudeBatchError,
    ClaudeBatchInvalidOutputError,
    ClaudeBatchMissingResultsError,
    ClaudeBatchWaitTimeoutError,
)
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.lineage import LineageRecord, operator_lineage
from airflow_provider_claude_batch.links import ClaudeBatchOutputLink, output_url
from airflow_provider_claude_batch.triggers.batch import ClaudeBatchTrigger
from airflow_provider_claude_batch.workdir import open_manifest

if TYPE_CHECKING:
    from airflow.sdk import Context


class StagedParts(NamedTuple):
    """Parquet parts written to a staged folder, not committed yet, with their totals and (with
    an output schema) how their answers typed."""

    staged: StoragePath
    stats: LandingStats
    typed: TypedAnswers | None
    new_answers: NewAnswers


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
    the same rows. The one step that bills is :meth:`_bill_retry_rounds`: it creates new
    batches for requests that ended for a transient reason.

    :param manifest: the submit task's output (``submit.output``) or a manifest path/URI.
    :param destination: folder path or URI of the output (templated, e.g. with ``{{ ds }}``).
    :param keep_columns: input columns joined back to each result by custom_id: a list, or a
        mapping of input column -> output name (``{"text": "input_text"}`` for a column whose name
        a result column already has).
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
        keep_columns: list[str] | dict[str, str] | None = None,
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
        if isinstance(keep_columns, (list, dict)):
            keep_columns_spec(keep_columns)  # a wrong shape fails when the DAG is parsed
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
        self._verified: set[str] = set()  # batches whose saved results matched their requests
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
        manifest, run_dir = open_manifest(self.manifest)
        self._settle(ended, manifest, run_dir)
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

    def _land(self) -> dict[str, Any]:
        manifest, run_dir = open_manifest(self.manifest)
        hook = ClaudeBatchHook(self.claude_batch_conn_id or manifest.conn_id)
        self._resolve_awaited(manifest, run_dir, hook)
        staged, raw_files = self._bill_retry_rounds(manifest, run_dir, hook)
        if staged is None:
            staged = self._stage(manifest, run_dir, raw_files)
        return self._write(manifest, run_dir, staged)

    def _resolve_awaited(self, manifest: Manifest, run_dir: RunDir, hook: ClaudeBatchHook) -> None:
        """Rows whose requests another run had in flight at submit: wait for those batches
        (never cancelling them: they are not this task's), then take their answers, or send the
        rows this run did not get an answer for (``batching/reuse/awaited.py``)."""
        counts = ReuseCounts.from_dict(manifest.reuse)
        if counts is None or not counts.awaited or counts.awaited_resolved:
            return
        poller = Poller(counts.awaited_batches, max_poll_errors=self.max_poll_errors)
        event = poller.observe(retrieve_states(hook, counts.awaited_batches))
        gone = event is not None and event.status == "error"  # e.g. deleted: send the rows after all
        pending = [] if gone else poller.pending()
        if pending:
            self.log.info(
                "Waiting for %d batch(es) of other runs that hold %d of this run's requests.",
                len(pending),
                counts.awaited,
            )
            self._wait(pending, manifest, run_dir, hook, theirs=True)
        store = AnswerStore(run_dir.for_manifest(manifest).work_dir)
        counts = resolve_awaited(run_dir, manifest, store, hook.download_results, price_table(self.prices))
        self.log.info(
            "Awaited rows: %d answered by other runs' batches, %d sent in this run after all.",
            counts.awaited_answered,
            counts.awaited_sent,
        )

    def _bill_retry_rounds(
        self, manifest: Manifest, run_dir: RunDir, hook: ClaudeBatchHook
    ) -> tuple[StagedParts | None, dict[str, StoragePath]]:
        """Download every batch's results and resubmit what ended for a transient reason (and,
        with ``on_invalid_output="resubmit"``, answers off the output schema), round after
        round: this **creates and bills new batches**, up to ``max_retry_rounds``.
        Returns, once no round is left to create, the parts landed while the last results
        downloaded (staged, or None when nothing was downloaded) and every batch's raw file."""
        while True:
            # Records of a round planned by an earlier try but not created yet.
            create_missing_batches(manifest, run_dir, hook)
            still_open = self._refresh(manifest, run_dir, hook)
            if still_open:
                self._wait(still_open, manifest, run_dir, hook)
                continue
            raw_files = self._raw_sources(manifest, run_dir, hook)
            # Results not saved yet are landed while they download, into a staged folder that
            # is committed only if they pass the identity check and no further round is needed.
            staged = None
            if any(isinstance(raw, SavingDownload) for raw in raw_files.values()):
                try:
                    staged = self._stage(manifest, run_dir, raw_files)
                except ClaudeBatchMissingResultsError:
                    staged = None  # the saved results are checked (and downloaded again) below
            try:
                if self._verify_all(manifest, run_dir, hook) and staged is not None:
                    discard(staged.staged)  # landed from results that were downloaded again
                    staged = None
                raw_files = {
                    r.batch_id or "": run_dir / run_dir.raw_results_file(r.batch_id or "") for r in manifest.batches
                }
                next_round = plan_next_round(
                    manifest, run_dir, self.max_retry_rounds, also_retry=self._invalid_answers(manifest)
                )
            except BaseException:
                if staged is not None:
                    discard(staged.staged)
                raise
            if not next_round:
                return staged, raw_files
            if staged is not None:
                discard(staged[0])
            self.log.info(
                "Round %d: resubmitting %d request(s) that ended expired, with a retryable error or (with "
                "on_invalid_output='resubmit') with an answer that does not match the output schema, in %d batch(es).",
                next_round[0].round,
                sum(r.request_count for r in next_round),
                len(next_round),
            )
            manifest.batches.extend(next_round)
            manifest.save(run_dir)

    def _invalid_answers(self, manifest: Manifest) -> Callable[[Iterable[bytes]], Iterable[str]] | None:
        """With ``on_invalid_output="resubmit"``: what names the answers to send again."""
        if self.on_invalid_output != "resubmit" or manifest.output_schema is None:
            return None
        schema = OutputSchema.from_user(manifest.output_schema)
        return lambda lines: invalid_answer_ids(lines, schema)

    def _refresh(self, manifest: Manifest, run_dir: RunDir, hook: ClaudeBatchHook) -> list[str]:
        """Record the state of the batches not known to have ended; return those still open
        (a batch whose poll failed counts as open: the wait polls it again)."""
        ids = manifest.open_batch_ids()
        if not ids:
            return []
        poller = Poller(ids, max_poll_errors=self.max_poll_errors)
        event = poller.observe(retrieve_states(hook, ids))
        self._record(manifest, run_dir, poller.states)
        if event is not None and event.status == "error":
            raise event.error()
        return poller.pending()

    def _wait(
        self, batch_ids: list[str], manifest: Manifest, run_dir: RunDir, hook: ClaudeBatchHook, *, theirs: bool = False
    ) -> None:
        """Wait for open batches: deferred (the trigger polls), or here with the same poller.
        ``theirs``: batches of other runs, never canceled by this task."""
        deadline = time.time() + self.wait_timeout
        if self.deferrable:
            self.defer(
                trigger=ClaudeBatchTrigger(
                    batch_ids=batch_ids,
                    claude_batch_conn_id=self.claude_batch_conn_id or manifest.conn_id,
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
            ended = wait_until_ended(poller, lambda ids: retrieve_states(hook, ids), self.poll_interval, log=self.log)
        finally:
            self._poller = None
        self._settle(ended, manifest, run_dir)

    def _settle(self, ended: WaitEvent, manifest: Manifest, run_dir: RunDir) -> None:
        """Record how a wait ended; on a timeout cancel what is still open, then fail."""
        self._record(manifest, run_dir, ended.batches)
        if ended.status == "timeout":
            own = set(manifest.batch_ids())  # never another run's batches (awaited ones)
            still_open = [batch_id for batch_id in ended.open if batch_id in own]
            if self.cancel_on_timeout and still_open:
                hook = ClaudeBatchHook(self.claude_batch_conn_id or manifest.conn_id)
                cancel_batches(hook, still_open, reason="the wait for resubmitted batches timed out", log=self.log)
            raise ClaudeBatchWaitTimeoutError(
                f"Batches did not end within wait_timeout ({self.wait_timeout:g} s): {ended.message}"
            )
        if ended.status == "error":
            raise ended.error()

    @staticmethod
    def _record(manifest: Manifest, run_dir: RunDir, states: dict[str, BatchState]) -> None:
        manifest.apply_states(states)
        manifest.save(run_dir)

    def on_kill(self) -> None:
        """Killed while waiting here (not deferred: then the trigger cancels): cancel the batches
        of the wait that have not ended."""
        poller = self._poller
        if not self.cancel_on_kill or poller is None:
            return
        hook = ClaudeBatchHook(self.claude_batch_conn_id or ClaudeBatchHook.default_conn_name)
        cancel_batches(hook, poller.to_cancel(), reason="the task was killed", log=self.log)

    def _raw_sources(self, manifest: Manifest, run_dir: RunDir, hook: ClaudeBatchHook) -> dict[str, StoragePath]:
        """Per batch, its saved raw results file, or a download that saves it while it is
        landed (round 0, the bulk). A resubmission round's results are saved first: landing an
        earlier round needs to know which of its requests went out again."""
        raw_files: dict[str, StoragePath] = {}
        for record in manifest.batches:
            if record.batch_id is None:
                raise ClaudeBatchError(f"{record.label} has no batch: the submit task did not finish; clear it")
            name = run_dir.raw_results_file(record.batch_id)
            raw = run_dir / name
            raw_files[record.batch_id] = raw
            if not raw.exists():
                if record.round == 0:
                    raw_files[record.batch_id] = SavingDownload(
                        functools.partial(hook.iter_results_bytes, record.batch_id), raw
                    )
                else:
                    hook.download_results(record.batch_id, raw)
            if record.results_file != name:
                record.results_file = name
                manifest.save(run_dir)
        return raw_files

    def _verify_all(self, manifest: Manifest, run_dir: RunDir, hook: ClaudeBatchHook) -> bool:
        """Check every batch's saved results against its requests (:meth:`_verify`); a raw
        file a failed landing did not get to is downloaded first. Returns whether any results
        had to be downloaded again (then what was landed from them is not to be kept)."""
        first_records = {record.chunk: record for record in manifest.batches if record.round == 0}
        downloaded_again = False
        for record in manifest.batches:
            batch_id = record.batch_id or ""
            if batch_id in self._verified:
                continue
            raw = run_dir / run_dir.raw_results_file(batch_id)
            if not raw.exists():
                hook.download_results(batch_id, raw)
            downloaded_again |= self._verify(record, first_records.get(record.chunk, record), run_dir, raw, hook)
        return downloaded_again

    def _verify(
        self,
        record: BatchRecord,
        inputs_record: BatchRecord,
        run_dir: RunDir,
        raw: StoragePath,
        hook: ClaudeBatchHook,
    ) -> bool:
        """Every custom_id the batch was sent exactly once in its saved results, and no other.
        A mismatch (a corrupted or foreign file) is downloaded once more before it fails the
        task: nothing is landed from results that do not match their requests."""
        check = check_identity(run_dir, record, inputs_record, raw)
        downloaded_again = not check.ok
        if not check.ok:
            self.log.warning(
                "The saved results of batch %s do not match its requests (missing %d, repeated %d, foreign %d); "
                "downloading them again.",
                record.batch_id,
                *check.counts,
            )
            hook.download_results(record.batch_id or "", raw)
            check = check_identity(run_dir, record, inputs_record, raw)
            if not check.ok:
                raise ClaudeBatchMissingResultsError(check.message(raw))
        self._verified.add(record.batch_id or "")
        return downloaded_again

    def _stage(self, manifest: Manifest, run_dir: RunDir, raw_files: dict[str, StoragePath]) -> StagedParts:
        """Parquet parts of every chunk in a staged folder (discarded if anything fails);
        downloads in ``raw_files`` are saved while they are read. With an output schema the
        answers are typed as they are parsed; whether invalid ones fail the task is decided
        when the parts are committed (a further round may still replace them)."""
        keep_columns, rename = keep_columns_spec(self.keep_columns)
        destination = as_path(self.destination)
        staged = stage(destination)
        typed = None if manifest.output_schema is None else TypedAnswers(OutputSchema.from_user(manifest.output_schema))
        new_answers = NewAnswers(run_dir, manifest)
        try:
            stats = write_parts(
                run_dir,
                manifest,
                raw_files,
                staged,
                keep_columns=keep_columns,
                rename=rename,
                prices=price_table(self.prices),
                row_group_size=self.row_group_size,
                compression=self.compression,
                typed=typed,
                new_answers=new_answers,
            )
        except BaseException:
            discard(staged)
            raise
        for batch_id, raw in raw_files.items():
            if isinstance(raw, SavingDownload):
                self.log.info(
                    "Saved the results of batch %s (%s bytes) to %s while landing them.", batch_id, raw.saved_bytes, raw
                )
        return StagedParts(staged, stats, typed, new_answers)

    def _store_answers(self, manifest: Manifest, run_dir: RunDir, new_answers: NewAnswers) -> int:
        """Add the landed answers to the answer store, and compact a partition that has grown
        many files. Never fails the landing: the output is committed, and a store write that
        failed only means a later run pays for these requests again."""
        try:
            store = AnswerStore(run_dir.work_dir)
            stored = new_answers.publish(
                store, AnswerOrigin(manifest.dag_id, manifest.run_id, manifest.task_id, manifest.map_index)
            )
            # Landed: runs that need these requests find them in the store now, not in flight.
            store.landed(AnswerStore.owner_name(manifest.dag_id, manifest.run_id, manifest.task_id, manifest.map_index))
            if store.needs_compaction():
                stats = store.compact(max_age=answer_max_age())
                self.log.info("Compacted the answer store: %s.", stats.as_dict())
            return stored
        except Exception as exc:  # the landing is committed: say why, go on
            self.log.warning("Could not add the new answers to the answer store: %s", exc)
            return 0

    def _write(self, manifest: Manifest, run_dir: RunDir, parts: StagedParts) -> dict[str, Any]:
        """Commit the staged parts as the destination, whole, and record the summary."""
        staged, stats, typed = parts.staged, parts.stats, parts.typed
        destination = as_path(self.destination)
        try:
            if typed is not None and typed.not_valid and self.on_invalid_output == "fail":
                raise ClaudeBatchInvalidOutputError(
                    typed.describe_failures() + ". Nothing was landed (on_invalid_output='fail')."
                )
            committed = commit(staged, destination, stats.files, rows=stats.rows)
        except BaseException:
            discard(staged)
            raise
        run_dir = run_dir.for_manifest(manifest)
        if parts.new_answers.enabled:
            stats.answers_stored = self._store_answers(manifest, run_dir, parts.new_answers)
        summary = {
            "destination": str(destination),
            **stats.as_dict(),
            # What readers should read: exactly these files (see batching/land/partitions.py).
            "files": [str(destination / name) for name in committed["files"]],
            "version": committed["version"],
        }
        if typed is not None:
            summary["by_output_status"] = dict(typed.counts)
            if typed.not_valid:
                self.log.warning("%s.", typed.describe_failures())
        self.lineage = LineageRecord(
            source=manifest.source,
            requests=manifest.rows,
            destination=str(destination),
            rows=stats.rows,
            files=list(committed["files"]),
        )
        # Beside the manifest, for the Claude Batches page (cost per batch).
        run_dir.write_atomic(run_dir.landing_summary, json.dumps(summary, indent=1).encode())
        self.output_link = output_url(str(destination))
        self.log.info("Tokens and cost per batch:\n%s", cost_table(stats))
        if manifest.reuse is not None:
            sources = stats.by_answer_source
            self.log.info(
                "Answers: %d new, %d reused from the answer store, %d deduplicated; reuse saved $%.4f; "
                "%d new answer(s) stored for later runs.",
                sources["new"],
                sources["reused"],
                sources["deduplicated"],
                stats.reuse_saved_usd,
                stats.answers_stored,
            )
        self.log.info(
            "Landed %d rows in %s (%s) after %d round(s); tokens %s; cost $%.4f%s.",
            stats.rows,
            destination,
            ", ".join(f"{count} {kind}" for kind, count in sorted(stats.by_result_type.items())),
            stats.rounds,
            dict(stats.tokens),
            stats.cost_usd,
            f" ({stats.rows_without_cost} succeeded rows of an unpriced model)" if stats.rows_without_cost else "",
        )
        return summary
