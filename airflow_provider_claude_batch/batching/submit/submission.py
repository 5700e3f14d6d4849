"""The submit task's work: stage request chunks, check the budget, reconcile them with an
earlier try's manifest, then create only the batches that do not exist yet.

:class:`Submission` runs these steps for one task instance and owns their order. Its one rule
for staging: a try renders into a fresh ``requests-<id>/`` folder, and that folder is deleted
(in :meth:`Submission.submit`, and nowhere else) unless the manifest this try works from names
it. A budget failure, an empty source, a re-attach to an earlier try's identical staging or a
refused input change therefore leave nothing behind, and the staging the manifest names is
never deleted.

``hook`` is a :class:`SubmitClient` (``ClaudeBatchHook`` is one), so this module stays free of
Airflow imports.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, TypeGuard

import pyarrow as pa

from airflow_provider_claude_batch.batching.api.client import BatchCanceller, TokenCounter
from airflow_provider_claude_batch.batching.api.jsonl import iter_file_lines
from airflow_provider_claude_batch.batching.api.pricing import PriceTable, cost_ceiling
from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits, request_id
from airflow_provider_claude_batch.batching.render.content_key import as_arrow, content_keys
from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerStore
from airflow_provider_claude_batch.batching.reuse.claims import Claim, claim_and_wait
from airflow_provider_claude_batch.batching.reuse.plan import ReuseCounts, replan
from airflow_provider_claude_batch.batching.state.manifest import INPUT_CHANGE_POLICIES as INPUT_CHANGE_POLICIES
from airflow_provider_claude_batch.batching.state.manifest import (
    BatchRecord,
    Manifest,
    load_manifest,
    manifest_exists,
    utcnow_iso,
)
from airflow_provider_claude_batch.batching.state.manifest import InputChangePolicy as InputChangePolicy
from airflow_provider_claude_batch.batching.state.run_dir import STAGING_PREFIX as STAGING_PREFIX
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.submit.create_once import BatchCreator, create_missing_batches
from airflow_provider_claude_batch.batching.submit.feeding import Fed, QueueReader, QueueSettings, feed
from airflow_provider_claude_batch.batching.submit.staging import StagedRun, stage_requests
from airflow_provider_claude_batch.batching.submit.token_estimate import DEFAULT_SAMPLE, TokenEstimate, count_staged
from airflow_provider_claude_batch.batching.submit.try_fence import TryFence
from airflow_provider_claude_batch.batching.submit.uploads import UploadSettings
from airflow_provider_claude_batch.batching.wait.cancel import cancel_batches
from airflow_provider_claude_batch.exceptions import (
    ClaudeBatchBudgetError,
    ClaudeBatchManifestError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReuseSettings:
    """Answers reused by content (see ``reuse``): the store, and how old an answer may be."""

    store: AnswerStore
    max_age: timedelta | None


def plan_reuse(
    staged: StagedRun, run_dir: RunDir, settings: ReuseSettings, chunk_limits: ChunkLimits, owner: str | None = None
) -> StagedRun:
    """``staged`` with only the rows that must be sent (the reuse plan, see ``reuse``): the same
    fingerprint (that of every row), a fresh staging folder when rows were taken out (the old
    one is deleted), and the tally of the rows sent."""
    if staged.keys is None:
        raise ValueError("the run was staged without keys")
    replanned = replan(
        run_dir,
        staged.directory_name,
        staged.chunks,
        staged.keys,
        chunk_limits,
        staged.input_columns,
        settings.store,
        settings.max_age,
        owner,
    )
    if replanned is None:
        rows = staged.total_requests
        counts = ReuseCounts(
            rows=rows,
            new=rows,
            max_age_seconds=None if settings.max_age is None else settings.max_age.total_seconds(),
        )
        return replace(staged, keys=None, reuse=counts)
    run_dir.drop_staging(staged.directory_name)
    return replace(
        staged,
        directory_name=replanned.directory_name,
        chunks=replanned.chunks,
        total_requests=replanned.total_requests,
        tally=replanned.tally,
        keys=None,
        reuse=replanned.counts,
    )


def check_budget(
    staged: StagedRun, prices: PriceTable, max_cost_usd: float | None, *, counted: bool = False
) -> tuple[float | None, list[str]]:
    """The run's cost ceiling at batch prices and, when it cannot be known (None), why; raises
    :class:`ClaudeBatchBudgetError` when it is over ``max_cost_usd``, or cannot be known while
    a budget is set. ``counted``: the tally's input is tokens counted on a sample
    (``count_tokens_sample``), not bytes; the refusal then gives the input's expected cost."""
    ceiling, unknown = cost_ceiling(staged.tally, prices)
    if max_cost_usd is None:
        return ceiling, unknown
    if ceiling is None:
        raise ClaudeBatchBudgetError(
            f"max_cost_usd is set but the most these requests could cost is unknown: {'; '.join(unknown)}. Add a "
            "missing price to [claude_batch] prices (or the operator's prices); with server tools, leave "
            "max_cost_usd unset. Nothing was submitted."
        )
    if ceiling > max_cost_usd:
        raise ClaudeBatchBudgetError(_over_budget(staged, prices, ceiling, max_cost_usd, counted))
    return ceiling, []


def _over_budget(staged: StagedRun, prices: PriceTable, ceiling: float, max_cost_usd: float, counted: bool) -> str:
    """Why a run is refused: its ceiling, what the ceiling assumes, and what can be known of
    the expected cost (the input, once counted; never the output before the answers exist)."""
    input_tokens = sum(t.input_bytes for t in staged.tally.values())
    output_tokens = sum(t.max_output_tokens for t in staged.tally.values())
    no_output = {model: replace(tally, max_output_tokens=0) for model, tally in staged.tally.items()}
    output_ceiling = ceiling - (cost_ceiling(no_output, prices)[0] or 0.0)
    message = (
        f"{staged.total_requests} requests could cost up to ${ceiling:,.2f} at batch prices, over max_cost_usd "
        f"${max_cost_usd:,.2f}. Nothing was submitted. This is a ceiling, not a forecast: it prices every answer "
        f"at its max_tokens ({output_tokens:,} output tokens, {_usd(output_ceiling)}), since how long the answers "
        "will be is unknown until they exist"
    )
    if counted:
        expected = sum(
            price.cost(tally.input_bytes, 0, 0, 0)
            for model, tally in staged.tally.items()
            if (price := prices.price(model)) is not None
        )
        message += (
            f". Expected: the input alone, about {input_tokens:,} tokens as counted with count_tokens_sample, "
            f"costs {_usd(expected)} at batch prices; the answers add at most {_usd(output_ceiling)}."
        )
    else:
        message += (
            f", and every byte of input as a token ({input_tokens:,} bytes, {_usd(ceiling - output_ceiling)}; "
            "English text is about four bytes a token). Set count_tokens_sample to count the input tokens with "
            "the free count_tokens endpoint: the budget then checks the counted input, and this message says "
            "what the input alone costs."
        )
    return message + " Check the input (more rows than expected?), lower max_tokens, or raise max_cost_usd."


def _usd(dollars: float) -> str:
    """Dollars to the cent, or to a hundredth of a cent below one dollar."""
    return f"${dollars:,.2f}" if dollars >= 1 else f"${dollars:.4f}"


def new_manifest(
    staged: StagedRun,
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int,
    conn_id: str,
    spec: RequestSpec,
    chunk_limits: ChunkLimits,
) -> Manifest:
    return Manifest(
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        map_index=map_index,
        conn_id=conn_id,
        fingerprint=staged.fingerprint,
        spec=spec.describe(),
        max_requests_per_batch=chunk_limits.max_requests,
        max_bytes_per_batch=chunk_limits.max_bytes,
        total_requests=staged.total_requests,
        input_columns=staged.input_columns,
        reuse=None if staged.reuse is None else staged.reuse.as_dict(),
        batches=[
            BatchRecord(
                chunk=chunk.index,
                round=0,
                requests_file=RunDir.staged_file(staged.directory_name, chunk.requests_file),
                inputs_file=RunDir.staged_file(staged.directory_name, chunk.inputs_file) if chunk.inputs_file else None,
                request_count=chunk.request_count,
                body_bytes=chunk.body_bytes,
                sha256=chunk.sha256,
            )
            for chunk in staged.chunks
        ],
    )


def _staging_lost(manifest: Manifest, run_dir: RunDir) -> bool:
    """Whether a first-round request or input file the manifest names no longer exists."""
    for record in manifest.batches:
        if record.round != 0:
            continue
        for name in (record.requests_file, record.inputs_file):
            if name and not (run_dir / name).exists():
                return True
    return False


def _check_plan_recoverable(manifest: Manifest, run_dir: RunDir) -> None:
    """A lost staging can be rendered again only when it held every row: the fingerprint
    covers all rows, but a reuse plan sent a subset (the others answered from the store or
    deduplicated), and which subset depended on the store at the time. Chunks rendered now would
    hold rows that were never sent, and the answered rows are gone with the staging."""
    reuse = manifest.reuse or {}
    if not reuse.get("answered_file"):
        return
    raise ClaudeBatchManifestError(
        f"the request files of an earlier try of {manifest.task_id!r} are gone, and that try sent only "
        f"{reuse.get('new')} of its {reuse.get('rows')} rows (the others were reused from the answer store or "
        "deduplicated), so files rendered now cannot stand in for them. Nothing was submitted. Once its batches "
        f"({', '.join(manifest.batch_ids()[:5]) or 'none'}) have been landed, delete the run folder {run_dir} and "
        "run again: their answers are then reused from the store at no cost."
    )


class SubmitClient(BatchCreator, TokenCounter, BatchCanceller, QueueReader, Protocol):
    """What a submission calls: the create-once protocol, ``count_tokens`` for the counted
    budget and the dry run, cancels when a changed input is resubmitted, and what is in the batch
    queue when it feeds (``feeding``)."""


@dataclass(frozen=True)
class SubmitTask:
    """The task instance a submission works for: its run folder, manifest and batches are its own."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    conn_id: str
    #: Airflow's try number (0: unknown); the newest try fences older ones (``try_fence``).
    try_number: int = 0


@dataclass
class Submitted:
    """What a submission did: the manifest it works from and the batches it created now."""

    manifest: Manifest
    created: list[str]
    #: The most the new work could cost at batch prices (None: a model has no price).
    cost_ceiling: float | None
    #: Whether the manifest is an earlier try's of the same input.
    reattached: bool
    #: With a queue: what the feeding step created and what still waits for room.
    fed: Fed | None = None


@dataclass
class Submission:
    """One task instance's submission: stage, budget, reconcile, create, in that order.

    Nothing is created before the whole input is rendered, the budget allows the new work, and
    an earlier try's manifest is reconciled; see the module docstring for the staging rule.
    """

    run_dir: RunDir
    task: SubmitTask
    spec: RequestSpec
    chunk_limits: ChunkLimits
    hook: SubmitClient
    prices: PriceTable = field(default_factory=PriceTable)
    max_cost_usd: float | None = None
    policy: InputChangePolicy = "fail"
    #: The answers' JSON schema (``OutputSchema.as_json()``), recorded in the manifest for the
    #: transfer, which types each answer by it; ``None`` for free-text answers.
    output_schema: str | None = None
    #: Count input tokens on this many sampled requests (the free ``count_tokens`` endpoint);
    #: the budget then prices the counted tokens instead of the byte-for-token ceiling.
    count_tokens_sample: int | None = None
    #: Reuse stored answers and send identical requests once (None: send every row).
    reuse: ReuseSettings | None = None
    #: Feed chunks through the batch queue as room frees (None: create them all at once).
    queue: QueueSettings | None = None
    #: Send documents and images by reference to uploaded files (None: inline; see ``uploads``).
    uploads: UploadSettings | None = None
    #: How long to wait in this process for an earlier run's claim on shared requests before
    #: giving up the claim with ``ClaudeBatchClaimHeldError`` (the operator then waits deferred);
    #: None: wait here as long as it takes (no triggerer to defer to).
    claim_patience: float | None = None
    logger: Any = log

    def submit(
        self,
        source: Any,
        *,
        input_columns: list[str] | Literal["all"] | None = "all",
        source_format: str | None = None,
        source_location: str | None = None,
    ) -> Submitted | None:
        """Submit ``source``'s rows. None when it has no rows and no earlier try created batches:
        nothing was submitted and nothing is left in the run folder but what was there."""
        staged = self._stage(source, input_columns=input_columns, source_format=source_format, keys=True)
        # Taken once the input is known to be good (bad input leaves nothing behind) and before
        # the manifest is read: an older try still creating stops before its next create.
        fence = TryFence(self.run_dir, self.task.try_number)
        fence.take()
        existing = load_manifest(self.run_dir) if manifest_exists(self.run_dir) else None
        manifest: Manifest | None = None
        claim: Claim | None = None
        try:
            if staged.total_requests == 0 and (existing is None or not existing.batch_ids()):
                return None
            self._check_input_change(existing, staged)  # before any claim or wait: nothing to plan
            if self.reuse is not None and not _same_input(existing, staged):
                # A retry of the same input re-attaches to what its first try planned and sent.
                assert staged.keys is not None
                claim = self._claim(staged.keys)
                staged = plan_reuse(staged, self.run_dir, self.reuse, self.chunk_limits, self._owner)
                assert staged.reuse is not None
                self.logger.info("Reuse: %s.", staged.reuse.describe())
            if self.count_tokens_sample is not None and staged.total_requests:
                staged = self._count(staged, self.count_tokens_sample)[1]
            ceiling = self._check_budget(staged, existing)
            manifest, reattached = self._reconcile(existing, staged)
        except BaseException:
            self._drop_claim(claim)  # made now: nothing of this try's plan went out
            raise
        finally:
            # The one place this try's staging is deleted: when the manifest does not name it.
            if manifest is None or staged.directory_name not in _staging_names(manifest):
                self.run_dir.drop_staging(staged.directory_name)
        manifest.source = source_location
        manifest.output_schema = self.output_schema
        if reattached and manifest.cost_ceiling_usd is not None:
            ceiling = manifest.cost_ceiling_usd  # what the budget checked, for the rows planned then
            self._check_budget_again(manifest)
        manifest.cost_ceiling_usd = ceiling
        manifest.uploads = None if self.uploads is None else self.uploads.as_dict()
        if reattached:
            self.logger.info(
                "Input unchanged since an earlier try: re-attaching to %d existing batch(es).",
                len(manifest.batch_ids()),
            )
        if claim is None and reattached:  # a retry of a run still feeding: its claim is kept
            claim = self._resume_claim()
        try:
            manifest.save(self.run_dir)
            self._drop_earlier_staging(manifest)
            fed = self._create(manifest, fence, None if claim is None else claim.alive)
        except BaseException:
            if claim is not None and self.reuse is not None:  # what was created is in flight, then no claim
                with contextlib.suppress(Exception):
                    mark_in_flight(manifest, self.run_dir, self.reuse.store, self._owner)
            self._settle_claim(claim, manifest)
            raise
        try:
            if self.reuse is not None and manifest.reuse is not None:
                mark_in_flight(manifest, self.run_dir, self.reuse.store, self._owner)
        finally:  # recorded in flight first: a run waiting on the claim then finds the batches
            self._settle_claim(claim, manifest)
        return Submitted(manifest, fed.created, ceiling, reattached, fed if self.queue is not None else None)

    def _claim(self, keys: Any) -> Claim:
        """Claim this run's requests and wait for earlier claims (see ``claims``)."""
        assert self.reuse is not None
        store, patience = self.reuse.store, self.claim_patience
        return claim_and_wait(store.work_dir, self._owner, keys, patience=patience, logger=self.logger)[0]

    def _create(self, manifest: Manifest, fence: TryFence, alive: Callable[[], None] | None) -> Fed:
        """Create the manifest's missing batches: all at once, or with a queue, what fits now."""
        if self.queue is None:
            created = create_missing_batches(manifest, self.run_dir, self.hook, on_created=alive, fence=fence.check)
            return Fed(created=created)
        fed = feed(manifest, self.run_dir, self.hook, self.queue, fence=fence.check, on_created=alive)
        self.logger.info("%s", fed.describe())
        return fed

    def continue_feeding(self) -> Submitted:
        """The next feeding step of a run whose first step left chunks waiting for room (the task
        resumed from its deferral): the manifest as saved, the same try's fence, one step, and
        what it created marked in flight for the reuse plans of other runs."""
        if self.queue is None:
            raise ValueError("continue_feeding needs a queue")
        fence = TryFence(self.run_dir, self.task.try_number)
        fence.check()
        manifest = load_manifest(self.run_dir)
        self._check_budget_again(manifest)
        claim = self._resume_claim()
        created: bool | None = None  # None: the step failed, what it created is not known
        try:
            fed = self._create(manifest, fence, None if claim is None else claim.alive)
            created = bool(fed.created)
        finally:  # on an error too: what this step created is in flight before the claim goes
            if self.reuse is not None and manifest.reuse is not None and created is not False:
                with contextlib.suppress(Exception):
                    mark_in_flight(manifest, self.run_dir, self.reuse.store, self._owner)
            self._settle_claim(claim, manifest)
        return Submitted(manifest, fed.created, manifest.cost_ceiling_usd, True, fed)

    def _check_budget_again(self, manifest: Manifest) -> None:
        """Before a later feeding step: the ceiling the first step checked against the budget as
        it is now (a DAG edited while its run feeds may have lowered it); over it, nothing more
        is created."""
        ceiling, budget = manifest.cost_ceiling_usd, self.max_cost_usd
        waiting = sum(1 for record in manifest.batches if record.needs_create)
        if waiting and budget is not None and ceiling is not None and ceiling > budget:
            raise ClaudeBatchBudgetError(
                f"The run's cost ceiling ${ceiling:,.4f} is over max_cost_usd ${budget:,.4f}, lowered since its "
                f"first batches were sent: its {waiting} chunk(s) still waiting for the batch queue are not sent."
            )

    def _resume_claim(self) -> Claim | None:
        """This run's claim kept from an earlier feeding step or try (see ``claims``), if any."""
        if self.reuse is None:
            return None
        try:
            return Claim.resume(self.reuse.store.work_dir, self._owner)
        except Exception as error:  # unreadable: the run creates as before, unclaimed
            self.logger.warning("Could not read this run's claim on its requests: %s", error)
            return None

    def _settle_claim(self, claim: Claim | None, manifest: Manifest) -> None:
        """After a create step: keep the claim while chunks wait for room in the batch queue (a
        later run over the same rows then waits for their creates instead of sending them too),
        refreshing its sign of life; drop it once every chunk is created. Never raises."""
        if claim is None:
            return
        if not any(record.needs_create for record in manifest.batches):
            self._drop_claim(claim)
            return
        try:
            claim.alive()
        except Exception as error:
            self.logger.warning("Could not refresh this run's claim on its requests: %s", error)

    def _drop_claim(self, claim: Claim | None) -> None:
        """Drop this run's claim (see ``claims``), if it made one; never raises."""
        if claim is None:
            return
        try:
            claim.drop()
        except Exception as error:  # the claim then times out; the error in flight matters more
            self.logger.warning("Could not drop this run's claim on its requests: %s", error)

    @property
    def _owner(self) -> str:
        task = self.task
        return AnswerStore.owner_name(task.dag_id, task.run_id, task.task_id, task.map_index)

    def estimate(
        self,
        source: Any,
        *,
        input_columns: list[str] | Literal["all"] | None = "all",
        source_format: str | None = None,
    ) -> TokenEstimate | None:
        """A dry run: render ``source``'s rows, make the reuse plan a submit would make now, and
        count the input tokens of the requests it would send on a sample (``count_tokens_sample``,
        by default ``DEFAULT_SAMPLE``). None when the source has no rows.

        Rows the plan does not send (reused, deduplicated, awaited) cost nothing in the estimate.
        The plan only reads the answer store and the in-flight marks of other runs; nothing is
        created, nothing is marked in flight, the manifest is not touched, and every staging
        folder of this try (the full one and the plan's) is deleted.

        An earlier try of this task that created every batch for the same input (the same
        fingerprint) makes the estimate say so at $0: a submit would re-attach to those batches
        and send nothing. A changed input, or an earlier try with a chunk not created yet (a
        submit would create it), is estimated as a first try: never less than a submit may send.
        """
        staged = self._stage(source, input_columns=input_columns, source_format=source_format, keys=True)
        staging = [staged.directory_name]
        try:
            if not staged.total_requests:
                return None
            existing = load_manifest(self.run_dir) if manifest_exists(self.run_dir) else None
            if (
                _same_input(existing, staged)
                and existing.batch_ids()
                and not any(record.needs_create for record in existing.batches)
            ):
                return TokenEstimate.reattaching(staged.total_requests, len(existing.batch_ids()))
            counts = None
            if self.reuse is not None:
                staged = plan_reuse(staged, self.run_dir, self.reuse, self.chunk_limits, self._owner)
                staging.append(staged.directory_name)
                counts = staged.reuse
                assert counts is not None
                self.logger.info("Reuse: %s.", counts.describe())
            if not staged.total_requests:
                return TokenEstimate.nothing_to_send().with_reuse(counts)
            return self._count(staged, self.count_tokens_sample or DEFAULT_SAMPLE)[0].with_reuse(counts)
        finally:
            for name in staging:
                self.run_dir.drop_staging(name)

    def _stage(
        self,
        source: Any,
        *,
        input_columns: list[str] | Literal["all"] | None,
        source_format: str | None,
        keys: bool = False,
    ) -> StagedRun:
        self.run_dir.mkdir()
        staged = stage_requests(
            source,
            self.spec,
            self.chunk_limits,
            self.run_dir,
            input_columns=input_columns,
            source_format=source_format,
            keys=keys and self.reuse is not None,
        )
        self.logger.info(
            "Rendered %d requests into %d chunk(s) (limits: %d requests, %d bytes per batch); fingerprint %s.",
            staged.total_requests,
            len(staged.chunks),
            self.chunk_limits.max_requests,
            self.chunk_limits.max_bytes,
            staged.fingerprint[:12],
        )
        return staged

    def _count(self, staged: StagedRun, sample: int) -> tuple[TokenEstimate, StagedRun]:
        """The counted estimate, and ``staged`` with its tally in counted tokens (what the budget
        then prices)."""
        estimate, counted = count_staged(staged, self.run_dir, self.hook.count_tokens, self.prices, sample)
        self.logger.info("Counted estimate: %s.", estimate.describe())
        return estimate, counted

    def _check_budget(self, staged: StagedRun, existing: Manifest | None) -> float | None:
        # The budget guards new work only: re-attaching to batches of the same input bills nothing.
        new_work = not _same_input(existing, staged)
        ceiling, unknown = check_budget(
            staged, self.prices, self.max_cost_usd if new_work else None, counted=self.count_tokens_sample is not None
        )
        self.logger.info(
            "Cost ceiling: %s at batch prices%s.",
            f"unknown ({'; '.join(unknown)})" if ceiling is None else f"${ceiling:,.4f}",
            f" (max_cost_usd ${self.max_cost_usd:,.2f})" if self.max_cost_usd is not None else "",
        )
        return ceiling

    def _new_manifest(self, staged: StagedRun) -> Manifest:
        return new_manifest(
            staged,
            dag_id=self.task.dag_id,
            run_id=self.task.run_id,
            task_id=self.task.task_id,
            map_index=self.task.map_index,
            conn_id=self.task.conn_id,
            spec=self.spec,
            chunk_limits=self.chunk_limits,
        )

    def _reconcile(self, existing: Manifest | None, staged: StagedRun) -> tuple[Manifest, bool]:
        """Decide which manifest this try works from. Returns it and whether it is re-attached.

        Same fingerprint: the earlier try's manifest (its batches are ours). Different
        fingerprint: under ``fail`` the submit has already refused it (``_check_input_change``,
        before any claim); ``resubmit`` cancels the earlier batches that are still running and
        starts over, keeping the old manifest beside the new one for the record.
        """
        fresh = self._new_manifest(staged)
        if existing is None:
            return fresh, False
        if _same_input(existing, staged):
            if _staging_lost(existing, self.run_dir):
                _check_plan_recoverable(existing, self.run_dir)
                # Same fingerprint, so the new chunk files are byte for byte the lost ones: point the
                # earlier batches' records at them (a lifecycle rule may expire request bodies).
                by_chunk = {record.chunk: record for record in fresh.batches}
                for record in existing.batches:
                    if record.round == 0:
                        record.requests_file = by_chunk[record.chunk].requests_file
                        record.inputs_file = by_chunk[record.chunk].inputs_file
                self.logger.warning(
                    "The request files of an earlier try are gone; using the identical ones rendered now."
                )
            return existing, True
        created = existing.batch_ids()
        cancel_batches(self.hook, existing.open_batch_ids(), reason="Input changed", log=self.logger)
        RunDir.write_atomic(self.run_dir.replaced_manifest(datetime.now()), existing.to_json())
        fresh.notes.append(
            f"{utcnow_iso()}: input changed; replaced fingerprint {existing.fingerprint[:12]} "
            f"(batches {', '.join(created) or 'none'} canceled if still running)"
        )
        return fresh, False

    def _check_input_change(self, existing: Manifest | None, staged: StagedRun) -> None:
        """Raise when an earlier try's input differs from this one's and the policy is ``fail``."""
        if existing is None or _same_input(existing, staged) or self.policy != "fail":
            return
        created = existing.batch_ids()
        raise ClaudeBatchManifestError(
            f"the input of {existing.task_id!r} changed since an earlier try created {len(created)} batch(es) "
            f"({', '.join(created[:5])}{'...' if len(created) > 5 else ''}); fingerprint "
            f"{existing.fingerprint[:12]} is now {staged.fingerprint[:12]}. Nothing was submitted. To replace "
            "them, set on_input_change='resubmit' (cancels the earlier batches and submits the new input)."
        )

    def _drop_earlier_staging(self, manifest: Manifest) -> None:
        """Remove staging folders of earlier tries that the manifest does not name."""
        used = _staging_names(manifest)
        for name in list(self.run_dir.staging_names()):
            if name not in used:
                self.run_dir.drop_staging(name)


def _same_input(existing: Manifest | None, staged: StagedRun) -> TypeGuard[Manifest]:
    """Whether an earlier try's manifest is of the same input as this try's staging (the same
    fingerprint): then this try re-attaches to it and creates only what it lacks, and its
    budget, reuse plan and estimate are those of that earlier try."""
    return existing is not None and existing.fingerprint == staged.fingerprint


def mark_in_flight(manifest: Manifest, run_dir: RunDir, store: AnswerStore, owner: str) -> None:
    """Tell later runs which requests this run has in batches not landed yet (by content key),
    so that a run needing the same ones waits for them instead of sending them again."""
    tables = []
    for record in manifest.batches:
        if record.round != 0 or record.batch_id is None:
            continue
        # Opened, not checked with exists() first: on object storage exists() may answer from a
        # listing cached earlier in the process, and a request left unmarked is paid twice.
        try:
            with (run_dir / record.requests_file).open("rb") as handle:
                lines = [line for line in iter_file_lines(handle) if line]
        except FileNotFoundError:
            log.warning("The requests of batch %s are gone: other runs cannot await them.", record.batch_id)
            continue
        tables.append(
            pa.table(
                {
                    "key": as_arrow(content_keys(lines)),
                    "batch_id": pa.array([record.batch_id] * len(lines), pa.string()),
                    "custom_id": pa.array([request_id(line) for line in lines], pa.string()),
                }
            )
        )
    if tables:
        entries = pa.concat_tables(tables)
        store.mark_in_flight(owner, entries)
        log.info("%d request(s) marked in flight: a run needing them awaits their answers.", entries.num_rows)
    else:
        log.info("No request marked in flight (%d batch record(s)).", len(manifest.batches))


def _staging_names(manifest: Manifest) -> set[str]:
    """The staging folders a manifest needs: its chunks', and its answered rows'."""
    names = {RunDir.staging_name_of(record.requests_file) for record in manifest.batches}
    answered = (manifest.reuse or {}).get("answered_file")
    if answered:
        names.add(RunDir.staging_name_of(answered))
    return names
