"""Each batch created exactly once: the create-once protocol of a run's records.

A create whose answer is lost may still have made its batch, so a create is never sent
blindly a second time. The order of writes is the protocol:

1. the intent (``intent_at`` in the manifest) and a pending create in the work directory,
   both before the request leaves;
2. the create (the hook sends it once and, after an ambiguous failure, looks for the batch
   before it sends again);
3. the index entry of the batch, then the manifest naming it, then the pending create dropped.

A later try that finds an intent without a batch looks for that batch first, waiting while
the earlier create may still be in flight, and adopts it; another task's lookup never
adopts a batch a pending create could have made (``state/batch_index.py``).

``hook`` is any :class:`BatchCreator` (``ClaudeBatchHook`` is one), so this module stays free
of Airflow imports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Protocol

from airflow_provider_claude_batch.batching.api.client import CreatedBatch
from airflow_provider_claude_batch.batching.state.batch_index import (
    BatchOwner,
    BatchOwnership,
    drop_pending_create,
    record_origin,
    write_pending_create,
)
from airflow_provider_claude_batch.batching.state.manifest import (
    BatchRecord,
    Manifest,
    load_manifest,
    manifest_exists,
    utcnow_iso,
)
from airflow_provider_claude_batch.batching.state.run_dir import RunDir, WorkDir
from airflow_provider_claude_batch.batching.state.storage import StoragePath
from airflow_provider_claude_batch.batching.submit.uploads import prepare_create
from airflow_provider_claude_batch.exceptions import ClaudeBatchManifestError

log = logging.getLogger(__name__)


class BatchCreator(Protocol):
    """The calls of the create-once protocol (``ClaudeBatchHook`` implements them)."""

    @property
    def create_window(self) -> timedelta:
        """How long after a create is sent its batch may still appear."""
        ...

    def create_batch(
        self,
        requests: bytes,
        *,
        request_count: int | None = ...,
        intent_at: datetime | None = ...,
        known_batch_ids: Iterable[str] = ...,
        ownership: BatchOwnership | None = ...,
        betas: Sequence[str] = ...,
    ) -> CreatedBatch: ...

    def find_created_batch(
        self,
        request_count: int,
        *,
        created_after: datetime,
        exclude: Iterable[str] = ...,
        ownership: BatchOwnership | None = ...,
        until: datetime | None = ...,
    ) -> CreatedBatch | None: ...


def create_missing_batches(
    manifest: Manifest,
    run_dir: RunDir | StoragePath,
    hook: BatchCreator,
    *,
    on_created: Callable[[], None] | None = None,
    fence: Callable[[], None] | None = None,
    admit: Callable[[BatchRecord], bool] | None = None,
) -> list[str]:
    """Create a batch for every record without one, saving the manifest around each create
    (``on_created`` is called after each: a claim's sign of life, see ``claims``). ``fence``
    raises when this try may no longer create (a newer try took the run folder, see
    ``try_fence``); it is called before each intent and again between the intent and the create.
    ``admit`` says whether a record may be created now (the batch queue's room, see ``feeding``):
    the first record it refuses ends the loop, before its intent, so the rest wait in order.

    A record that already has an intent but no batch id was being created by an earlier try:
    look for that batch first and adopt it rather than bill twice (:func:`_adopt_earlier_create`).
    While the intent is younger than the create window (the request's timeout plus the time a
    server may take to finish it) that try's create may still be in flight, so the lookup keeps
    going until the batch appears or the window has passed; it is never sent again before that.

    Each create announces itself in the work directory first (a pending create), so that
    another task's lookup never adopts its batch (see ``batch_index``). The manifest is read
    again before each create, so a second try of the same task instance running at the same
    time sees what the other recorded or intends.
    """
    created: list[str] = []
    run_dir = RunDir.of(run_dir).for_manifest(manifest)
    for record in manifest.batches:
        _catch_up(record, run_dir)
        if not record.needs_create:
            continue
        owner = BatchOwner.of(manifest, record)
        ownership = BatchOwnership(run_dir.work_dir, owner, record.request_count)
        if record.intent_at is not None and _adopt_earlier_create(manifest, record, run_dir, hook, ownership):
            continue
        if admit is not None and not admit(record):
            break
        if fence is not None:
            fence()
        created.append(_create(manifest, record, run_dir, hook, ownership, fence))
        if on_created is not None:
            on_created()
    return created


def _adopt_earlier_create(
    manifest: Manifest, record: BatchRecord, run_dir: RunDir, hook: BatchCreator, ownership: BatchOwnership
) -> bool:
    """Look for the batch an earlier try's create of ``record`` made, waiting while that create
    may still be in flight; adopt and record it when found. Returns whether it was."""
    assert record.intent_at is not None
    intent_at = datetime.fromisoformat(record.intent_at)
    until = intent_at + hook.create_window
    in_flight = record.intent_closed_at is None and datetime.now(timezone.utc) < until
    if in_flight:
        log.warning(
            "An earlier try's create of %s (sent %s) may still be in flight: waiting until %s for its "
            "batch before sending it again.",
            record.label,
            record.intent_at,
            until.isoformat(timespec="seconds"),
        )
    orphan = hook.find_created_batch(
        record.request_count,
        created_after=intent_at,
        exclude=manifest.batch_ids(),
        ownership=ownership,
        until=until if in_flight else None,
    )
    if orphan is None:
        return False
    log.warning(
        "Re-attached %s to batch %s, created by an earlier try that did not record it.", record.label, orphan.id
    )
    _record_created(record, orphan)
    _record_owned(manifest, record, run_dir, ownership.work_dir, ownership.owner)
    return True


def _create(
    manifest: Manifest,
    record: BatchRecord,
    run_dir: RunDir,
    hook: BatchCreator,
    ownership: BatchOwnership,
    fence: Callable[[], None] | None = None,
) -> str:
    """Send ``record``'s create once: intent and pending create saved first, the batch recorded
    after. A failed create closes the intent (forgotten only when surely nothing was created)."""
    work_dir, owner = ownership.work_dir, ownership.owner
    # Read (and its files uploaded, see ``uploads``) before the intent is stamped, so the intent
    # marks when the request leaves.
    prepared = prepare_create(
        (run_dir / record.requests_file).read_bytes(),
        manifest,
        lambda hashes: _record_files(manifest, record, run_dir, hashes),
        work_dir,
        hook,
    )
    intent_at = datetime.now(timezone.utc)
    record.intent_at = intent_at.isoformat()
    record.intent_closed_at = None
    write_pending_create(
        work_dir, owner, request_count=record.request_count, intent_at=intent_at, until=intent_at + hook.create_window
    )
    manifest.save(run_dir)
    if fence is not None:
        # Stopped here, the intent stays (this copy of the manifest is stale: saving it could
        # undo the newer try's records); the newer try looks for the batch and finds none.
        fence()
    try:
        batch = hook.create_batch(
            prepared.body,
            request_count=record.request_count,
            intent_at=intent_at,
            known_batch_ids=manifest.batch_ids(),
            ownership=ownership,
            **({"betas": prepared.betas} if prepared.betas else {}),
        )
    except Exception as exc:
        _close_intent(
            manifest, record, run_dir, work_dir, owner, created_nothing=getattr(exc, "created_nothing", False)
        )
        raise
    _record_created(record, batch)
    _record_owned(manifest, record, run_dir, work_dir, owner)
    return batch.id


def _record_files(manifest: Manifest, record: BatchRecord, run_dir: RunDir, hashes: list[str]) -> None:
    """Save the files a create sends by reference before any is checked or uploaded, so that
    deleting uploads keeps them while the run is not landed (``uploads.files_in_use``)."""
    record.files = hashes
    manifest.save(run_dir)


def _record_owned(
    manifest: Manifest, record: BatchRecord, run_dir: RunDir, work_dir: WorkDir, owner: BatchOwner
) -> None:
    """Record ``record``'s batch: the index entry first (once the manifest names a batch, its
    entry exists too), then the manifest, then forget the pending create."""
    record_origin(manifest, record, run_dir)
    manifest.save(run_dir)
    drop_pending_create(work_dir, owner)


def _close_intent(
    manifest: Manifest,
    record: BatchRecord,
    run_dir: RunDir,
    work_dir: WorkDir,
    owner: BatchOwner,
    *,
    created_nothing: bool,
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


def _catch_up(record: BatchRecord, run_dir: RunDir) -> None:
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


def _record_created(record: BatchRecord, batch: CreatedBatch) -> None:
    record.batch_id = batch.id
    record.created_at = batch.created_at.isoformat()
    record.processing_status = batch.processing_status
