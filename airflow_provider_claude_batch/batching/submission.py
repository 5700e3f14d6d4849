"""The submit task's work, step by step: stage request chunks, reconcile them with an earlier
try's manifest, then create only the batches that do not exist yet.

``hook`` arguments are duck-typed (``create_batch``, ``find_created_batch``,
``create_window``, ``cancel_batch``), so this module stays free of Airflow imports.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from airflow_provider_claude_batch.batching.batch_index import (
    BatchOwner,
    BatchOwnership,
    drop_pending_create,
    record_origin,
    work_dir_of,
    write_pending_create,
)
from airflow_provider_claude_batch.batching.cancel import cancel_batches
from airflow_provider_claude_batch.batching.chunks import ChunkInfo, ChunkLimits, ChunkWriter
from airflow_provider_claude_batch.batching.errors import (
    ClaudeBatchBudgetError,
    ClaudeBatchInputError,
    ClaudeBatchManifestError,
)
from airflow_provider_claude_batch.batching.manifest import (
    BatchRecord,
    Manifest,
    fingerprint,
    load_manifest,
    manifest_exists,
    utcnow_iso,
)
from airflow_provider_claude_batch.batching.pricing import PriceTable, RequestTally, cost_ceiling
from airflow_provider_claude_batch.batching.rendering import RequestRenderer, RequestSpec
from airflow_provider_claude_batch.batching.sources import open_source
from airflow_provider_claude_batch.batching.storage import remove_tree

log = logging.getLogger(__name__)

InputChangePolicy = Literal["fail", "resubmit"]
INPUT_CHANGE_POLICIES = ("fail", "resubmit")
STAGING_PREFIX = "requests-"


@dataclass
class StagedRun:
    directory_name: str
    chunks: list[ChunkInfo]
    total_requests: int
    fingerprint: str
    input_columns: list[str] | None
    #: model -> requests, bytes and output token limits (for the cost ceiling).
    tally: dict[str, RequestTally]


def stage_requests(
    source: Any,
    spec: RequestSpec,
    chunk_limits: ChunkLimits,
    run_dir: Any,
    *,
    input_columns: list[str] | Literal["all"] | None = "all",
    source_format: str | None = None,
) -> StagedRun:
    """Render every row into request chunks under a fresh ``requests-<id>/`` folder.

    Everything is validated here, before any batch exists: a bad row stops the run with its
    row number and field, and the partial folder is removed.
    """
    renderer = RequestRenderer(spec)
    wanted: list[str] | None = None
    if isinstance(input_columns, list):
        wanted = list(dict.fromkeys([*renderer.needed_columns, *input_columns]))
    elif input_columns is None:
        wanted = renderer.needed_columns
    opened = open_source(source, source_format=source_format, columns=wanted)
    renderer.check_schema(opened.schema, source=opened.description)
    if input_columns == "all":
        saved: list[str] | None = list(opened.schema.names)
    elif input_columns is None:
        saved = None
    else:
        missing = [c for c in input_columns if c not in opened.schema.names]
        if missing:
            raise ClaudeBatchInputError(
                f"input_columns {missing} are not in {opened.description}; its columns are {opened.schema.names}"
            )
        saved = list(input_columns)
    name = f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    directory = run_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    writer = ChunkWriter(directory, chunk_limits, input_columns=saved)
    try:
        for batch in opened.batches:
            writer.write_batch(renderer, batch)
        chunks = writer.close()
    except BaseException:
        writer.abort()
        remove_tree(directory)
        raise
    total = sum(chunk.request_count for chunk in chunks)
    digest = fingerprint(spec.describe(), chunk_limits.max_requests, chunk_limits.max_bytes, [c.sha256 for c in chunks])
    return StagedRun(name, chunks, total, digest, saved, renderer.tally())


def check_budget(staged: StagedRun, prices: PriceTable, max_cost_usd: float | None) -> float | None:
    """The run's cost ceiling at batch prices (None when a model has no price); raises
    :class:`ClaudeBatchBudgetError` when it is over ``max_cost_usd``, or cannot be known while
    a budget is set."""
    ceiling, unpriced = cost_ceiling(staged.tally, prices)
    if max_cost_usd is None:
        return ceiling
    if ceiling is None:
        raise ClaudeBatchBudgetError(
            f"max_cost_usd is set but model(s) {unpriced} have no price, so the most these requests could cost is "
            "unknown; add them to [claude_batch] prices (or the operator's prices). Nothing was submitted."
        )
    if ceiling > max_cost_usd:
        input_bytes = sum(t.input_bytes for t in staged.tally.values())
        output_tokens = sum(t.max_output_tokens for t in staged.tally.values())
        raise ClaudeBatchBudgetError(
            f"{staged.total_requests} requests could cost up to ${ceiling:,.2f} at batch prices (at most "
            f"{input_bytes:,} input and {output_tokens:,} output tokens), over max_cost_usd ${max_cost_usd:,.2f}. "
            "Nothing was submitted. Check the input (more rows than expected?), lower max_tokens, or raise max_cost_usd."
        )
    return ceiling


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
        batches=[
            BatchRecord(
                chunk=chunk.index,
                round=0,
                requests_file=f"{staged.directory_name}/{chunk.requests_file}",
                inputs_file=f"{staged.directory_name}/{chunk.inputs_file}" if chunk.inputs_file else None,
                request_count=chunk.request_count,
                body_bytes=chunk.body_bytes,
                sha256=chunk.sha256,
            )
            for chunk in staged.chunks
        ],
    )


def reconcile(
    existing: Manifest | None,
    staged: StagedRun,
    fresh: Manifest,
    run_dir: Any,
    *,
    policy: InputChangePolicy,
    hook: Any,
) -> tuple[Manifest, bool]:
    """Decide which manifest this try works from. Returns it and whether it is re-attached.

    Same fingerprint: the earlier try's manifest (its batches are ours; the new staging is
    dropped). Different fingerprint: ``fail`` raises before anything is created; ``resubmit``
    cancels the earlier batches that are still running and starts over, keeping the old
    manifest beside the new one for the record.
    """
    if existing is None:
        return fresh, False
    if existing.fingerprint == staged.fingerprint:
        if _staging_lost(existing, run_dir):
            # Same fingerprint, so the new chunk files are byte for byte the lost ones: point the
            # earlier batches' records at them (a lifecycle rule may expire request bodies).
            by_chunk = {record.chunk: record for record in fresh.batches}
            for record in existing.batches:
                if record.round == 0:
                    record.requests_file = by_chunk[record.chunk].requests_file
                    record.inputs_file = by_chunk[record.chunk].inputs_file
            log.warning("The request files of an earlier try are gone; using the identical ones rendered now.")
        else:
            remove_tree(run_dir / staged.directory_name)
        return existing, True
    created = existing.batch_ids()
    if policy == "fail":
        remove_tree(run_dir / staged.directory_name)
        raise ClaudeBatchManifestError(
            f"the input of {existing.task_id!r} changed since an earlier try created {len(created)} batch(es) "
            f"({', '.join(created[:5])}{'...' if len(created) > 5 else ''}); fingerprint {existing.fingerprint[:12]} "
            f"is now {staged.fingerprint[:12]}. Nothing was submitted. To replace them, set "
            "on_input_change='resubmit' (cancels the earlier batches and submits the new input)."
        )
    cancel_batches(hook, existing.open_batch_ids(), reason="Input changed", log=log)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    with (run_dir / f"manifest.replaced-{stamp}.json").open("wb") as out:
        out.write(existing.to_json())
    fresh.notes.append(
        f"{utcnow_iso()}: input changed; replaced fingerprint {existing.fingerprint[:12]} "
        f"(batches {', '.join(created) or 'none'} canceled if still running)"
    )
    return fresh, False


def create_missing_batches(manifest: Manifest, run_dir: Any, hook: Any) -> list[str]:
    """Create a batch for every record without one, saving the manifest around each create.

    A record that already has an intent but no batch id was being created by an earlier try:
    look for that batch first and adopt it rather than bill twice. While the intent is younger
    than the create window (the request's timeout plus the time a server may take to finish
    it) that try's create may still be in flight, so the lookup keeps going until the batch
    appears or the window has passed; it is never sent again before that.

    Each create announces itself in the work directory first (a pending create), so that
    another task's lookup never adopts its batch (see ``batch_index``). The manifest is read
    again before each create, so a second try of the same task instance running at the same
    time sees what the other recorded or intends.
    """
    created: list[str] = []
    work_dir = work_dir_of(run_dir, manifest.map_index)
    window: timedelta = hook.create_window
    for record in manifest.batches:
        _catch_up(record, run_dir)
        if not record.needs_create:
            continue
        known = manifest.batch_ids()
        owner = BatchOwner.of(manifest, record)
        ownership = BatchOwnership(work_dir, owner, record.request_count)
        if record.intent_at is not None:
            intent_at = datetime.fromisoformat(record.intent_at)
            until = intent_at + window
            in_flight = record.intent_closed_at is None and datetime.now(timezone.utc) < until
            if in_flight:
                log.warning(
                    "An earlier try's create of %s (sent %s) may still be in flight: waiting until %s for its "
                    "batch before sending it again.",
                    record.key,
                    record.intent_at,
                    until.isoformat(timespec="seconds"),
                )
            orphan = hook.find_created_batch(
                record.request_count,
                created_after=intent_at,
                exclude=known,
                ownership=ownership,
                until=until if in_flight else None,
            )
            if orphan is not None:
                log.warning(
                    "Re-attached %s to batch %s, created by an earlier try that did not record it.",
                    record.key,
                    orphan.id,
                )
                _record_created(record, orphan)
                _record_owned(manifest, record, run_dir, work_dir, owner)
                continue
        # Read before the intent is stamped, so the intent marks when the request leaves.
        body = (run_dir / record.requests_file).read_bytes()
        intent_at = datetime.now(timezone.utc)
        record.intent_at = intent_at.isoformat()
        record.intent_closed_at = None
        write_pending_create(
            work_dir, owner, request_count=record.request_count, intent_at=intent_at, until=intent_at + window
        )
        manifest.save(run_dir)
        try:
            batch = hook.create_batch(
                body,
                request_count=record.request_count,
                intent_at=intent_at,
                known_batch_ids=known,
                ownership=ownership,
            )
        except Exception as exc:
            _close_intent(
                manifest, record, run_dir, work_dir, owner, created_nothing=getattr(exc, "created_nothing", False)
            )
            raise
        _record_created(record, batch)
        _record_owned(manifest, record, run_dir, work_dir, owner)
        created.append(batch.id)
    return created


def _record_owned(manifest: Manifest, record: BatchRecord, run_dir: Any, work_dir: Any, owner: BatchOwner) -> None:
    """Record ``record``'s batch: the index entry first (once the manifest names a batch, its
    entry exists too), then the manifest, then forget the pending create."""
    record_origin(manifest, record, run_dir)
    manifest.save(run_dir)
    drop_pending_create(work_dir, owner)


def _close_intent(
    manifest: Manifest, record: BatchRecord, run_dir: Any, work_dir: Any, owner: BatchOwner, *, created_nothing: bool
) -> None:
    """A create failed and this try stops waiting for it. When the API surely created nothing
    the intent is forgotten; otherwise it stays (a later try looks for the batch once) but is
    no longer in flight, so that try does not wait out its window."""
    if created_nothing:
        record.intent_at = None
        drop_pending_create(work_dir, owner)
    else:
        record.intent_closed_at = utcnow_iso()
    manifest.save(run_dir)


def _catch_up(record: BatchRecord, run_dir: Any) -> None:
    """Take what another try of this task instance recorded for ``record`` since this try
    read the manifest: its batch id, or a newer intent (whose create may be in flight)."""
    if not record.needs_create or not manifest_exists(run_dir):
        return
    try:
        stored = load_manifest(run_dir)
    except ClaudeBatchManifestError:
        return
    for other in stored.batches:
        if (other.chunk, other.round, other.sha256) != (record.chunk, record.round, record.sha256):
            continue
        if other.batch_id is not None:
            record.batch_id = other.batch_id
            record.created_at = other.created_at
            record.processing_status = other.processing_status
        elif other.intent_at is not None and (record.intent_at is None or other.intent_at > record.intent_at):
            record.intent_at = other.intent_at
            record.intent_closed_at = other.intent_closed_at
        return


def _record_created(record: BatchRecord, batch: Any) -> None:
    record.batch_id = batch.id
    record.created_at = batch.created_at.isoformat()
    record.processing_status = batch.processing_status


def _staging_lost(manifest: Manifest, run_dir: Any) -> bool:
    """Whether a first-round request or input file the manifest names no longer exists."""
    for record in manifest.batches:
        if record.round != 0:
            continue
        for name in (record.requests_file, record.inputs_file):
            if name and not (run_dir / name).exists():
                return True
    return False


def drop_unreferenced_staging(manifest: Manifest, run_dir: Any) -> None:
    """Remove ``requests-*`` folders that no manifest record points at (left by failed tries)."""
    used = {record.requests_file.split("/", 1)[0] for record in manifest.batches}
    if not run_dir.exists():
        return
    for child in run_dir.iterdir():
        if child.name.startswith(STAGING_PREFIX) and child.name not in used:
            remove_tree(child)


def check_policy(policy: str) -> InputChangePolicy:
    if policy not in INPUT_CHANGE_POLICIES:
        raise ClaudeBatchInputError(f"on_input_change must be one of {INPUT_CHANGE_POLICIES}, got {policy!r}")
    return policy  # type: ignore[return-value]
