"""A run's landing, step by step: awaited rows, refresh, download, verify, rounds, write, swap.

:class:`Landing` is the transfer's work without Airflow, as :class:`Submission` is the
submit's. It is an idempotent state machine over the manifest: each step reads the manifest
and skips what it records as done (batches that ended, raw files saved and verified, rounds
planned), and records what it did before the next step. A retry, a clear or the resume after
a deferral therefore starts again from the top, bills nothing twice and writes the same rows.

Invariants:

* The one step that bills is :meth:`Landing._bill_retry_rounds`: it creates new batches (through
  the create-once protocol) for requests that ended for a transient reason, up to
  ``max_retry_rounds``.
* Nothing is landed from results that do not match their requests: every batch's saved
  results are checked (each custom_id sent exactly once, no stranger) before the commit, and a
  mismatch is downloaded once more before it fails.
* The destination is replaced whole (``land/partitions.py``): a reader never sees a mix of
  two landings, and a failure leaves the previous landing in place.
* Answers reach the answer store once every batch's results have matched their requests: after
  the commit, or when the commit fails (they are sound, and the API drops results after 29
  days). A store write that fails never fails the landing.

Waiting is the caller's: ``wait`` either waits here and returns how the wait ended, or defers
(raises) and the caller resumes with :meth:`Landing.settle` and then :meth:`Landing.run` again.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple, Protocol

from airflow_provider_claude_batch.batching.api.batch_state import BatchState
from airflow_provider_claude_batch.batching.api.client import ResultsReader
from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.batching.land.partitions import commit, discard, stage
from airflow_provider_claude_batch.batching.land.parts import (
    KeepColumns,
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
from airflow_provider_claude_batch.batching.schema.citations import CitedAnswers, asks_for_citations
from airflow_provider_claude_batch.batching.schema.output_schema import OutputSchema
from airflow_provider_claude_batch.batching.schema.typed_columns import TypedAnswers, invalid_answer_ids
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.state.storage import StoragePath, as_path
from airflow_provider_claude_batch.batching.submit.create_once import BatchCreator, create_missing_batches
from airflow_provider_claude_batch.batching.wait.cancel import cancel_batches
from airflow_provider_claude_batch.batching.wait.poller import (
    DEFAULT_MAX_POLL_ERRORS,
    DEFAULT_TIMEOUT_SECONDS,
    Poller,
    retrieve_states,
)
from airflow_provider_claude_batch.batching.wait.wait_event import WaitEvent
from airflow_provider_claude_batch.exceptions import (
    ClaudeBatchError,
    ClaudeBatchInvalidOutputError,
    ClaudeBatchMissingResultsError,
    ClaudeBatchWaitTimeoutError,
)

_log = logging.getLogger(__name__)


class LandingClient(ResultsReader, BatchCreator, Protocol):
    """What a landing calls: states, results, cancels, and creates for resubmission rounds."""


class Wait(Protocol):
    """Wait until ``batch_ids`` have ended and return how the wait ended, or defer (raise) and
    resume with :meth:`Landing.settle`. ``theirs``: batches of other runs, never canceled."""

    def __call__(self, batch_ids: list[str], *, theirs: bool) -> WaitEvent: ...


@dataclass(frozen=True)
class LandingSettings:
    """The transfer's parameters that decide what a landing writes and how long it waits."""

    destination: str
    keep_columns: KeepColumns | None = None
    row_group_size: int = 65_536
    compression: str = "zstd"
    prices: PriceTable = field(default_factory=PriceTable)
    max_retry_rounds: int = 2
    on_invalid_output: str = "keep"
    max_poll_errors: int = DEFAULT_MAX_POLL_ERRORS
    wait_timeout: float = DEFAULT_TIMEOUT_SECONDS
    cancel_on_timeout: bool = True
    #: How old a stored answer may be when the store is compacted after the commit.
    answer_max_age: timedelta = timedelta(days=30)


class StagedParts(NamedTuple):
    """Parquet parts written to a staged folder, not committed yet, with their totals and (with
    an output schema) how their answers typed."""

    staged: StoragePath
    stats: LandingStats
    typed: TypedAnswers | None
    new_answers: NewAnswers


@dataclass(frozen=True)
class Landed:
    """A committed landing: its summary (the transfer's XCom) and what lineage reports."""

    summary: dict[str, Any]
    stats: LandingStats
    destination: str
    #: The committed files' names, relative to the destination.
    files: list[str]


class Landing:
    """One run's landing: see the module docstring for its steps and invariants."""

    def __init__(
        self,
        manifest: Manifest,
        run_dir: RunDir,
        hook: LandingClient,
        settings: LandingSettings,
        *,
        wait: Wait,
        log: Any = _log,
    ) -> None:
        self.manifest = manifest
        self.run_dir = run_dir
        self.hook = hook
        self.settings = settings
        self.wait = wait
        self.log = log
        self._verified: set[str] = set()  # batches whose saved results matched their requests

    def run(self) -> Landed:
        """Land every row once: awaited rows first, then the rounds, then the commit."""
        self._resolve_awaited()
        staged, raw_files = self._bill_retry_rounds()
        if staged is None:
            staged = self._stage(raw_files)
        return self._write(staged)

    def settle(self, ended: WaitEvent) -> None:
        """Record how a wait ended; on a timeout cancel what is still open (never another run's
        batches), then fail; an error ends the landing with its own type."""
        self._record(ended.batches)
        if ended.status == "timeout":
            own = set(self.manifest.batch_ids())
            still_open = [batch_id for batch_id in ended.open if batch_id in own]
            if self.settings.cancel_on_timeout and still_open:
                cancel_batches(self.hook, still_open, reason="the wait for resubmitted batches timed out", log=self.log)
            raise ClaudeBatchWaitTimeoutError(
                f"Batches did not end within wait_timeout ({self.settings.wait_timeout:g} s): {ended.message}"
            )
        if ended.status == "error":
            raise ended.error()

    # ------------------------------------------------------------------ awaited rows
    def _resolve_awaited(self) -> None:
        """Rows whose requests another run had in flight at submit: wait for those batches
        (never cancelling them: they are not this run's), then take their answers, or send the
        rows this run did not get an answer for (``batching/reuse/awaited.py``)."""
        counts = ReuseCounts.from_dict(self.manifest.reuse)
        if counts is None or not counts.awaited or counts.awaited_resolved:
            return
        poller = Poller(counts.awaited_batches, max_poll_errors=self.settings.max_poll_errors)
        event = poller.observe(retrieve_states(self.hook, counts.awaited_batches))
        gone = event is not None and event.status == "error"  # e.g. deleted: send the rows after all
        pending = [] if gone else poller.pending()
        if pending:
            self.log.info(
                "Waiting for %d batch(es) of other runs that hold %d of this run's requests.",
                len(pending),
                counts.awaited,
            )
            self.settle(self.wait(pending, theirs=True))
        store = AnswerStore(self.run_dir.for_manifest(self.manifest).work_dir)
        counts = resolve_awaited(self.run_dir, self.manifest, store, self.hook.download_results, self.settings.prices)
        self.log.info(
            "Awaited rows: %d answered by other runs' batches, %d sent in this run after all.",
            counts.awaited_answered,
            counts.awaited_sent,
        )

    # ------------------------------------------------------------------ rounds
    def _bill_retry_rounds(self) -> tuple[StagedParts | None, dict[str, StoragePath]]:
        """Download every batch's results and resubmit what ended for a transient reason (and,
        with ``on_invalid_output="resubmit"``, answers off the output schema), round after
        round: this **creates and bills new batches**, up to ``max_retry_rounds``.
        Returns, once no round is left to create, the parts landed while the last results
        downloaded (staged, or None when nothing was downloaded) and every batch's raw file."""
        while True:
            # Records of a round planned by an earlier try but not created yet.
            create_missing_batches(self.manifest, self.run_dir, self.hook)
            still_open = self._refresh()
            if still_open:
                self.settle(self.wait(still_open, theirs=False))
                continue
            staged, raw_files, next_round = self._download_and_plan()
            if not next_round:
                return staged, raw_files
            if staged is not None:
                discard(staged.staged)
            self.log.info(
                "Round %d: resubmitting %d request(s) that ended expired, with a retryable error or (with "
                "on_invalid_output='resubmit') with an answer that does not match the output schema, in %d batch(es).",
                next_round[0].round,
                sum(r.request_count for r in next_round),
                len(next_round),
            )
            self.manifest.batches.extend(next_round)
            self.manifest.save(self.run_dir)

    def _download_and_plan(self) -> tuple[StagedParts | None, dict[str, StoragePath], list[BatchRecord]]:
        """Every batch ended: land what is not saved yet while it downloads (into a staged folder,
        kept only if every batch's results pass the identity check), verify every batch, and
        plan the next round (empty when none is left)."""
        raw_files = self._raw_sources()
        staged = None
        if any(isinstance(raw, SavingDownload) for raw in raw_files.values()):
            try:
                staged = self._stage(raw_files)
            except ClaudeBatchMissingResultsError:
                staged = None  # the saved results are checked (and downloaded again) below
        try:
            if self._verify_all() and staged is not None:
                discard(staged.staged)  # landed from results that were downloaded again
                staged = None
            run_dir = self.run_dir
            raw_files = {
                r.batch_id or "": run_dir / run_dir.raw_results_file(r.batch_id or "") for r in self.manifest.batches
            }
            next_round = plan_next_round(
                self.manifest, run_dir, self.settings.max_retry_rounds, also_retry=self._invalid_answers()
            )
        except BaseException:
            if staged is not None:
                discard(staged.staged)
            raise
        return staged, raw_files, next_round

    def _invalid_answers(self) -> Callable[[Iterable[bytes]], Iterable[str]] | None:
        """With ``on_invalid_output="resubmit"``: what names the answers to send again."""
        if self.settings.on_invalid_output != "resubmit" or self.manifest.output_schema is None:
            return None
        schema = OutputSchema.from_user(self.manifest.output_schema)
        return lambda lines: invalid_answer_ids(lines, schema)

    def _refresh(self) -> list[str]:
        """Record the state of the batches not known to have ended; return those still open
        (a batch whose poll failed counts as open: the wait polls it again)."""
        ids = self.manifest.open_batch_ids()
        if not ids:
            return []
        poller = Poller(ids, max_poll_errors=self.settings.max_poll_errors)
        event = poller.observe(retrieve_states(self.hook, ids))
        self._record(poller.states)
        if event is not None and event.status == "error":
            raise event.error()
        return poller.pending()

    def _record(self, states: dict[str, BatchState]) -> None:
        self.manifest.apply_states(states)
        self.manifest.save(self.run_dir)

    # ------------------------------------------------------------------ results
    def _raw_sources(self) -> dict[str, StoragePath]:
        """Per batch, its saved raw results file, or a download that saves it while it is
        landed (round 0, the bulk). A resubmission round's results are saved first: landing an
        earlier round needs to know which of its requests went out again."""
        raw_files: dict[str, StoragePath] = {}
        run_dir = self.run_dir
        for record in self.manifest.batches:
            if record.batch_id is None:
                raise ClaudeBatchError(f"{record.label} has no batch: the submit task did not finish; clear it")
            name = run_dir.raw_results_file(record.batch_id)
            raw = run_dir / name
            raw_files[record.batch_id] = raw
            if not raw.exists():
                if record.round == 0:
                    raw_files[record.batch_id] = SavingDownload(
                        functools.partial(self.hook.iter_results_bytes, record.batch_id), raw
                    )
                else:
                    self.hook.download_results(record.batch_id, raw)
            if record.results_file != name:
                record.results_file = name
                self.manifest.save(run_dir)
        return raw_files

    def _verify_all(self) -> bool:
        """Check every batch's saved results against its requests (:meth:`_verify`); a raw
        file a failed landing did not get to is downloaded first. Returns whether any results
        had to be downloaded again (then what was landed from them is not to be kept)."""
        first_records = {record.chunk: record for record in self.manifest.batches if record.round == 0}
        downloaded_again = False
        for record in self.manifest.batches:
            batch_id = record.batch_id or ""
            if batch_id in self._verified:
                continue
            raw = self.run_dir / self.run_dir.raw_results_file(batch_id)
            if not raw.exists():
                self.hook.download_results(batch_id, raw)
            downloaded_again |= self._verify(record, first_records.get(record.chunk, record), raw)
        return downloaded_again

    def _verify(self, record: BatchRecord, inputs_record: BatchRecord, raw: StoragePath) -> bool:
        """Every custom_id the batch was sent exactly once in its saved results, and no other.
        A mismatch (a corrupted or foreign file) is downloaded once more before it fails the
        task: nothing is landed from results that do not match their requests."""
        check = check_identity(self.run_dir, record, inputs_record, raw)
        downloaded_again = not check.ok
        if not check.ok:
            self.log.warning(
                "The saved results of batch %s do not match its requests (missing %d, repeated %d, foreign %d); "
                "downloading them again.",
                record.batch_id,
                *check.counts,
            )
            self.hook.download_results(record.batch_id or "", raw)
            check = check_identity(self.run_dir, record, inputs_record, raw)
            if not check.ok:
                raise ClaudeBatchMissingResultsError(check.message(raw))
        self._verified.add(record.batch_id or "")
        return downloaded_again

    # ------------------------------------------------------------------ write and commit
    def _stage(self, raw_files: dict[str, StoragePath]) -> StagedParts:
        """Parquet parts of every chunk in a staged folder (discarded if anything fails);
        downloads in ``raw_files`` are saved while they are read. With an output schema the
        answers are typed as they are parsed; whether invalid ones fail the task is decided
        when the parts are committed (a further round may still replace them)."""
        settings, manifest = self.settings, self.manifest
        keep_columns, rename = keep_columns_spec(settings.keep_columns)
        staged = stage(as_path(settings.destination))
        typed = None if manifest.output_schema is None else TypedAnswers(OutputSchema.from_user(manifest.output_schema))
        cited = CitedAnswers() if typed is None and asks_for_citations(manifest.spec) else None
        new_answers = NewAnswers(self.run_dir, manifest)
        try:
            stats = write_parts(
                self.run_dir,
                manifest,
                raw_files,
                staged,
                keep_columns=keep_columns,
                rename=rename,
                prices=settings.prices,
                row_group_size=settings.row_group_size,
                compression=settings.compression,
                answer_columns=typed or cited,
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

    def _write(self, parts: StagedParts) -> Landed:
        """Commit the staged parts as the destination, whole, store the new answers, and record
        the summary beside the manifest (the Claude Batches page reads it)."""
        staged, stats, typed = parts.staged, parts.stats, parts.typed
        destination = as_path(self.settings.destination)
        try:
            if typed is not None and typed.not_valid and self.settings.on_invalid_output == "fail":
                raise ClaudeBatchInvalidOutputError(
                    typed.describe_failures() + ". Nothing was landed (on_invalid_output='fail')."
                )
            committed = commit(staged, destination, stats.files, rows=stats.rows)
        except ClaudeBatchInvalidOutputError:
            discard(staged)
            raise
        except BaseException:
            discard(staged)
            # Every batch's results matched its requests: the answers are sound even though the
            # Parquet commit failed, and stored now they are never paid for again.
            if parts.new_answers.enabled:
                self._store_answers(self.run_dir.for_manifest(self.manifest), parts.new_answers)
            raise
        run_dir = self.run_dir.for_manifest(self.manifest)
        if parts.new_answers.enabled:
            stats.answers_stored = self._store_answers(run_dir, parts.new_answers)
        summary = {
            "destination": str(destination),
            **stats.as_dict(),
            # What readers should read: exactly these files (see batching/land/partitions.py).
            "files": [str(destination / name) for name in committed["files"]],
            "version": committed["version"],
        }
        if typed is not None:
            summary["by_output_status"] = dict(typed.counts)
            self.log.info("Typed answers by output_status: %s.", dict(typed.counts))
            if typed.not_valid:
                self.log.warning("%s.", typed.describe_failures())
        run_dir.write_atomic(run_dir.landing_summary, json.dumps(summary, indent=1).encode())
        self._log_summary(stats, str(destination))
        return Landed(summary, stats, str(destination), list(committed["files"]))

    def _store_answers(self, run_dir: RunDir, new_answers: NewAnswers) -> int:
        """Add the landed answers to the answer store, and compact a partition that has grown
        many files. Never fails the landing: the output is committed, and a store write that
        failed only means a later run pays for these requests again."""
        manifest = self.manifest
        try:
            store = AnswerStore(run_dir.work_dir)
            stored = new_answers.publish(
                store, AnswerOrigin(manifest.dag_id, manifest.run_id, manifest.task_id, manifest.map_index)
            )
            # Landed: runs that need these requests find them in the store now, not in flight.
            store.landed(AnswerStore.owner_name(manifest.dag_id, manifest.run_id, manifest.task_id, manifest.map_index))
            if store.needs_compaction():
                compacted = store.compact(max_age=self.settings.answer_max_age)
                self.log.info("Compacted the answer store: %s.", compacted.as_dict())
            return stored
        except Exception as exc:  # the landing is committed: say why, go on
            self.log.warning("Could not add the new answers to the answer store: %s", exc)
            return 0

    def _log_summary(self, stats: LandingStats, destination: str) -> None:
        self.log.info("Tokens and cost per batch:\n%s", cost_table(stats))
        if self.manifest.reuse is not None:
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
