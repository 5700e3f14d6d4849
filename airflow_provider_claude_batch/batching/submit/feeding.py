"""One feeding step of a run through the organisation's batch queue: create the chunks that fit
now, in order, and say what is left and how full the queue is.

A run whose requests do not fit the free queue is fed in steps: each step (on a worker, only to
create) takes the connection's queue lock (``queue_turns``), reads what is in the queue (every
batch of the workspace, from ``list`` pages), and creates chunks while the room its turn allows
holds them (``batching/api/queue_limit``); then the caller waits, deferred, until batches end,
and runs the next step. Invariants:

* Every create goes through ``create_once`` (intent, pending create, adopt after an ambiguous
  failure, the try fence): a step killed anywhere leaves what the next step or try adopts, so no
  chunk is created twice and none is forgotten.
* A queue-full refusal (a 429 ``queue_limit.refusal_kind`` reads as the queue's) created
  nothing: its intent is dropped and the step ends with the chunk still waiting; the refusal
  teaches the limit when none is configured (an unclear one, refused on every attempt, waits
  too but teaches nothing). It never fails the run. Any other error propagates as before.
* Chunks go in manifest order and a chunk is never split: when less than the next chunk is free,
  the step waits (the chunk's identity, its file and its answers stay what staging made them).
* Under the lock the room only shrinks by what this step sends, so the runs of one work
  directory never go over the limit by their own creates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from airflow_provider_claude_batch.batching.api.batch_state import ENDED, BatchState
from airflow_provider_claude_batch.batching.api.queue_limit import (
    LearnedLimit,
    fill_fraction,
    fits,
    queued_requests,
    room_for,
)
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.submit.create_once import BatchCreator, create_missing_batches
from airflow_provider_claude_batch.batching.submit.queue_turns import QueueTurns
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError, ClaudeBatchQueueFullError

log = logging.getLogger(__name__)


class QueueReader(Protocol):
    """What a feeding step reads of the queue (``ClaudeBatchHook`` implements it)."""

    def queue_states(self) -> list[BatchState]:
        """Every batch of the workspace that may still be processing."""
        ...


class FeedClient(BatchCreator, QueueReader, Protocol):
    """What a feeding step calls."""


@dataclass(frozen=True)
class QueueSettings:
    """A run's place at the queue: its connection (the queue's key), its owner name, the
    configured limit in requests (None: learn it) and its ``priority_weight``."""

    conn_id: str
    owner: str
    limit: int | None = None
    priority: int = 1


@dataclass
class Fed:
    """What a feeding step did and what is left: the figures progress lines and metrics show."""

    created: list[str] = field(default_factory=list)
    #: Chunks and requests not sent yet, and the next chunk's size.
    waiting_chunks: int = 0
    waiting_requests: int = 0
    next_requests: int = 0
    #: The queue after this step: requests in it (every batch of the workspace), the limit
    #: planned with (None: unknown), whether it was learned, and refusals met in this step.
    queued: int = 0
    limit: int | None = None
    learned: bool = False
    refusals: int = 0
    #: This run's requests in batches still processing, and in batches that ended.
    in_queue: int = 0
    ended: int = 0
    #: Why the step stopped before every chunk was sent ("" when all were).
    reason: str = ""

    @property
    def done(self) -> bool:
        return self.waiting_chunks == 0

    @property
    def fill(self) -> float | None:
        return fill_fraction(self.queued, self.limit)

    def describe(self) -> str:
        """One progress line."""
        full = "limit unknown" if self.fill is None else f"{self.fill:.0%} full"
        limit = "?" if self.limit is None else f"{self.limit:,}{' (learned)' if self.learned else ''}"
        line = (
            f"Queue: {self.queued:,}/{limit} requests ({full}). This run: {self.waiting_requests:,} waiting to be "
            f"sent ({self.waiting_chunks} chunk(s)), {self.in_queue:,} in the queue, {self.ended:,} ended"
        )
        return line + (f"; waiting: {self.reason}." if self.reason else ".")


def _waiting(manifest: Manifest) -> list[BatchRecord]:
    return [record for record in manifest.batches if record.needs_create]


def feed(
    manifest: Manifest,
    run_dir: RunDir,
    hook: FeedClient,
    settings: QueueSettings,
    *,
    fence: Callable[[], None] | None = None,
    on_created: Callable[[], None] | None = None,
) -> Fed:
    """One feeding step (see the module docstring). Returns what was created and what is left."""
    run_dir = RunDir.of(run_dir).for_manifest(manifest)
    turns = QueueTurns(run_dir.work_dir, settings.conn_id)
    waiting = _waiting(manifest)
    if not waiting:
        turns.leave(settings.owner)
        return _report(manifest, [], settings, Fed())
    turns.enter(
        settings.owner,
        priority=settings.priority,
        next_requests=waiting[0].request_count,
        waiting_requests=sum(record.request_count for record in waiting),
    )
    fed = Fed()
    limit = settings.limit if settings.limit is not None else turns.learned().limit
    with turns.locked(settings.owner) as held:
        if held:
            # Read only when a limit decides: without one the API says when the queue is full.
            states = _read_queue(hook) if limit is not None else []
            fed = _create_what_fits(manifest, run_dir, hook, settings, turns, states, fence, on_created)
        else:
            fed.reason = "another run is creating"
    # The figures of a run that waits (the trigger's baseline) or plans with a limit; a run
    # that sent everything with no limit known makes no extra call.
    after = _read_queue(hook) if _waiting(manifest) or limit is not None else []
    return _finish(manifest, turns, after or [], settings, fed)


def _read_queue(hook: FeedClient) -> list[BatchState] | None:
    """What is in the queue, or None when it cannot be read (a failed ``list``): never a reason
    to fail the submit; without it the API's refusal says when the queue is full."""
    try:
        return hook.queue_states()
    except Exception as error:
        log.warning("Could not read the batch queue (going on without it): %s", error)
        return None


def _create_what_fits(
    manifest: Manifest,
    run_dir: RunDir,
    hook: FeedClient,
    settings: QueueSettings,
    turns: QueueTurns,
    states: Sequence[BatchState] | None,
    fence: Callable[[], None] | None,
    on_created: Callable[[], None] | None,
) -> Fed:
    """Under the lock: create chunks in order while they fit this run's room (``states`` None:
    the queue could not be read; the API decides)."""
    learned = turns.learned()
    limit = settings.limit if settings.limit is not None else learned.limit
    queued = queued_requests(states or [])
    room = None if states is None else room_for(settings.owner, turns.waiting(), queued, limit)
    fed = Fed()
    sent: dict[str, int | None] = {"queued": queued, "room": room, "sending": 0}

    probed: list[bool] = []

    def admit(record: BatchRecord) -> bool:
        sent["sending"] = record.request_count
        if fits(record.request_count, sent["room"]):
            return True
        if settings.limit is not None and record.request_count > settings.limit:
            raise ClaudeBatchInputError(
                f"A chunk of {record.request_count:,} requests can never fit the batch queue of {settings.limit:,} "
                "requests (the connection's queue_limit): lower max_requests_per_batch."
            )
        if settings.limit is None and limit is not None and record.request_count > limit and not probed:
            # A learned limit is a guess from refusals (this workspace's batches only, read when it
            # could be): one under a whole chunk would hold the run back for ever. The API
            # decides: one create a step, which teaches the limit again either way.
            probed.append(True)
            return True
        fed.reason = "the queue is full" if limit is not None and queued >= limit else "no room for the next chunk"
        return False

    def created() -> None:
        count = sent["sending"] or 0
        _bookkeep(lambda: _learn_accepted(turns, sent["queued"] or 0, count) if settings.limit is None else None)
        sent["queued"] = (sent["queued"] or 0) + count
        sent["room"] = None if sent["room"] is None else sent["room"] - count
        _bookkeep(lambda: turns.refresh_lock(settings.owner))
        if on_created is not None:
            on_created()

    before = set(manifest.batch_ids())
    try:
        create_missing_batches(manifest, run_dir, hook, on_created=created, fence=fence, admit=admit)
    except ClaudeBatchQueueFullError as refusal:
        fed.refusals += 1
        fed.reason = "the API refused a create: the queue is full"
        if settings.limit is None and refusal.certain:  # an unclear refusal teaches no limit
            _learn_refused(hook, turns, states, sent["queued"], refusal.request_count or 0)
        log.warning("The batch queue is full (%s); waiting for batches to end.", refusal)
    fed.created = [batch_id for batch_id in manifest.batch_ids() if batch_id not in before]
    return fed


def _finish(
    manifest: Manifest, turns: QueueTurns, states: Sequence[BatchState], settings: QueueSettings, fed: Fed
) -> Fed:
    """Refresh or drop the run's entry and fill in the figures."""
    waiting = _waiting(manifest)
    if waiting:
        turns.enter(
            settings.owner,
            priority=settings.priority,
            next_requests=waiting[0].request_count,
            waiting_requests=sum(record.request_count for record in waiting),
        )
    else:
        turns.leave(settings.owner)
    return _report(manifest, states, settings, fed, turns.learned())


def _report(
    manifest: Manifest,
    states: Sequence[BatchState],
    settings: QueueSettings,
    fed: Fed,
    learned: LearnedLimit | None = None,
) -> Fed:
    waiting = _waiting(manifest)
    fed.waiting_chunks = len(waiting)
    fed.waiting_requests = sum(record.request_count for record in waiting)
    fed.next_requests = waiting[0].request_count if waiting else 0
    fed.queued = queued_requests(states)
    fed.learned = settings.limit is None and learned is not None and learned.limit is not None
    fed.limit = settings.limit if settings.limit is not None else (learned.limit if learned else None)
    ours = set(manifest.batch_ids())
    for state in states:
        if state.id in ours:
            if state.processing_status == ENDED:
                fed.ended += state.request_counts.total
            else:
                fed.in_queue += state.request_counts.processing
    if not fed.done and not fed.reason:
        fed.reason = "no room for the next chunk"
    return fed


def _learn_refused(
    hook: FeedClient, turns: QueueTurns, states: Sequence[BatchState] | None, queued: int | None, count: int
) -> None:
    """Learn from a queue-full refusal of ``count`` requests, with what the queue held then: the
    step's own reading and its creates since (``queued``), or, when the step did not read the
    queue (no limit known yet), a reading taken now. A queue that cannot be read teaches
    nothing: taking it for empty would learn a limit of less than one chunk."""
    if not states:
        now = _read_queue(hook)
        if now is None:
            return
        queued = queued_requests(now)
    _bookkeep(lambda: turns.learn(turns.learned().refused(queued or 0, count)))


def _learn_accepted(turns: QueueTurns, queued: int, count: int) -> None:
    """Record what an accepted create taught about an unconfigured limit, when it taught
    something new (a write per create on object storage is a request that can fail)."""
    learned = turns.learned()
    taught = learned.accepted(queued, count)
    if taught != learned:
        turns.learn(taught)


def _bookkeep(step: Callable[[], object]) -> None:
    """Run a step of the queue's bookkeeping after a create: the batch exists and is recorded
    in the manifest, so a failure here (object storage refusing a write) must not fail the
    run and send it to a retry; it is logged, and the next step learns and locks again."""
    try:
        step()
    except Exception as error:
        log.warning("Could not update the batch queue's records after a create (%s); carrying on.", error)
