"""Which run sends a request that several runs need at the same moment.

The reuse plan makes a run await the requests another run has in a batch not landed yet
(``_answers/_inflight/``). Two runs that plan at the same moment (a backfill with several active
runs, two mapped tasks over the same rows) each find no batch of the other's and both send:
the same requests billed twice. So, before it plans, a run **claims** its content keys, then
waits while an *earlier* claim of another run overlaps them, until that claim is settled: the
other run has recorded the batches it sent in flight and dropped its claim (the plan then awaits
those requests), or dropped it without sending (it failed, or had nothing to send), or shown no
sign of life for ``timeout`` (it died): then this run plans as usual and sends what is missing.

A claim is two files beside the in-flight files (names in ``run_dir``): its keys (Parquet) and
its state (JSON: ``choosing``, ``claimed_at``, ``alive_at``). It is made in three steps, as in
Lamport's bakery: (1) the state says *choosing*; (2) the keys are written; (3) only then is the
claim's time taken and the state says *claimed*. A run reads the others' claims after its own
step 3; it waits while any other run is choosing (one write, seconds at most) and while an
earlier claimed run (by time, then owner) overlaps its keys.

Invariants: of two runs claiming the same key, the one whose choosing became visible after the
other read its claims takes its time after that read, so it is the later one and it sees the
earlier claim; both order the two claims the same way; so only the later one waits, and the
earliest claim never waits, so waits cannot cycle. A claim's time never changes; its sign of
life (``alive_at``) is refreshed while its run waits and as it creates batches, so a long wait
or a long run of creates is not mistaken for a dead run. A run waits only for batches to be
*created*, never for them to end: the transfer awaits their answers as for any in-flight
request. A run that **feeds** its chunks through the batch queue (``batching/submit/feeding``)
creates them over several steps, hours apart: it keeps its claim until its last chunk is created
(each step finds it again with :meth:`Claim.resume` and refreshes its sign of life, a step at
least every few minutes), so a later run never plans while rows of the earlier one wait for room:
it waits, then awaits them like any request in flight. Such a wait may last hours: a caller that
can wait elsewhere gives :func:`claim_and_wait` a ``patience``; past it, while an earlier claimed
run still holds the keys, the claim is dropped (nothing was planned under it) and
:class:`ClaudeBatchClaimHeldError` says so: the submit then waits deferred, holding no worker slot (a
pool full of waiting runs would starve the very run they wait for), and claims again, later
in the order, when it resumes. Limits: worker clocks are assumed to agree to within the time between two claims
(NTP); a run killed after claiming holds others back until its sign of life is ``timeout`` old.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_provider_claude_batch.batching.render.content_key import KEY_BYTES, as_arrow
from airflow_provider_claude_batch.batching.state.run_dir import RunDir, WorkDir
from airflow_provider_claude_batch.batching.state.storage import parquet_bytes, write_whole
from airflow_provider_claude_batch.exceptions import ClaudeBatchClaimHeldError

log = logging.getLogger(__name__)

#: A claim whose run has shown no sign of life for this long is a dead run's.
CLAIM_TIMEOUT = timedelta(minutes=15)
#: A run stays *choosing* for one write of its keys: longer than this, it died choosing.
CHOOSING_TIMEOUT = timedelta(minutes=2)
#: How often a live claim refreshes its sign of life.
ALIVE_EVERY = timedelta(seconds=60)
#: Pauses between two looks at the claims (doubling from the first).
FIRST_PAUSE, MAX_PAUSE = 0.25, 5.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Claim:
    """One run's claim on its keys (see the module docstring)."""

    work_dir: WorkDir
    owner: str
    keys: np.ndarray  # (n, KEY_BYTES) uint8, as ``content_key`` gives them
    timeout: timedelta = CLAIM_TIMEOUT
    claimed_at: datetime | None = None
    _alive_at: datetime | None = None
    #: Keys in common with another claim, by (owner, its claim time): a claim's keys never change.
    _overlaps: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Since when another owner's claim state has failed to read, by owner (see ``_read_state``).
    _unreadable: dict[str, datetime] = field(default_factory=dict)

    def make(self) -> None:
        """Steps 1-3: choosing, the keys, then the claim's time."""
        self._write_state(claimed_at=None)
        write_whole(self.work_dir.claim_keys_file(self.owner), parquet_bytes(pa.table({"key": as_arrow(self.keys)})))
        self._write_state(claimed_at=_now())

    @classmethod
    def resume(cls, work_dir: WorkDir | Any, owner: str, timeout: timedelta = CLAIM_TIMEOUT) -> Claim | None:
        """The claim ``owner`` made in an earlier step or try and kept while it feeds (None: it
        has none claimed). Its keys stay on disk, where other runs read them; this object only
        refreshes and drops it."""
        work_dir = WorkDir.of(work_dir)
        state = _read_state(work_dir, owner)
        if state is None or state[1] is None:
            return None
        return cls(work_dir, owner, np.zeros((0, KEY_BYTES), np.uint8), timeout, claimed_at=state[1])

    def alive(self) -> None:
        """Refresh this claim's sign of life (at most once per ``ALIVE_EVERY``)."""
        if self.claimed_at is not None and (self._alive_at is None or _now() - self._alive_at >= ALIVE_EVERY):
            self._write_state(claimed_at=self.claimed_at)

    def drop(self) -> None:
        """Remove this claim (its state first: a reader never finds a state without its keys)."""
        for path in (self.work_dir.claim_state_file(self.owner), self.work_dir.claim_keys_file(self.owner)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # not after exists(): a cached listing may deny what is there
        self.claimed_at = None

    def blocking(self) -> tuple[int, int, int]:
        """``(runs choosing, earlier live claims overlapping this one's keys, keys they hold)``."""
        assert self.claimed_at is not None
        now, choosing, earlier, common = _now(), 0, 0, 0
        for other in self.work_dir.claim_owners():
            if other == self.owner:
                continue
            state = _read_state(self.work_dir, other, self._unreadable)
            if state is None:
                continue
            alive_at, claimed_at = state
            if claimed_at is None:
                choosing += now - alive_at < CHOOSING_TIMEOUT
                continue
            if now - alive_at >= self.timeout or (claimed_at, other) >= (self.claimed_at, self.owner):
                continue
            overlap = self._overlap(other, claimed_at)
            if overlap:
                earlier += 1
                common += overlap
        return choosing, earlier, common

    def _overlap(self, other: str, claimed_at: datetime) -> int:
        cache_key = (other, claimed_at.isoformat())
        if cache_key not in self._overlaps:
            try:
                with self.work_dir.claim_keys_file(other).open("rb") as handle:
                    theirs = pq.read_table(handle).column("key")
            except FileNotFoundError:  # dropped since its state was read
                return 0
            self._overlaps[cache_key] = int(pc.sum(pc.is_in(theirs, value_set=as_arrow(self.keys))).as_py() or 0)
        return self._overlaps[cache_key]

    def _write_state(self, *, claimed_at: datetime | None) -> None:
        """Write the state: *choosing* while ``claimed_at`` is None, else *claimed* at that time."""
        alive_at = _now()
        state = {"alive_at": alive_at.isoformat(), "claimed_at": claimed_at and claimed_at.isoformat()}
        RunDir.write_atomic(self.work_dir.claim_state_file(self.owner), json.dumps(state).encode())
        self._alive_at, self.claimed_at = alive_at, claimed_at


def _read_state(
    work_dir: WorkDir, owner: str, unreadable: dict[str, datetime] | None = None
) -> tuple[datetime, datetime | None] | None:
    """``(alive_at, claimed_at)`` of ``owner``'s claim; None when it is gone or not a state.

    A state the storage fails to read (a 503, a timeout) is *unknown*, not gone: it reads as a
    run still choosing, seen alive now, so the reader waits and looks again. Taking it for gone
    let two runs over the same rows each plan without the other: the shared requests were paid
    twice. With ``unreadable`` (the reader's record of failed reads) a state still unreadable
    after ``CHOOSING_TIMEOUT`` is an error: a storage that never answers (a permission, a
    key it cannot decrypt) fails the task, which a retry may get past, rather than holding it
    for ever."""
    try:
        raw = work_dir.claim_state_file(owner).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        since = _now() if unreadable is None else unreadable.setdefault(owner, _now())
        if _now() - since >= CHOOSING_TIMEOUT:
            raise OSError(
                f"The claim of {owner} in {work_dir.in_flight_folder} has not been readable for "
                f"{CHOOSING_TIMEOUT.total_seconds():.0f} s: {error}"
            ) from error
        log.warning("Could not read the claim of %s (%s): waiting for it as for a run still choosing.", owner, error)
        return _now(), None
    if unreadable is not None:
        unreadable.pop(owner, None)
    try:
        state = json.loads(raw)
        claimed_at = state["claimed_at"] and datetime.fromisoformat(state["claimed_at"])
        return datetime.fromisoformat(state["alive_at"]), claimed_at
    except (ValueError, KeyError, TypeError):
        return None


def claim_and_wait(
    work_dir: WorkDir | Any,
    owner: str,
    keys: np.ndarray,
    *,
    timeout: timedelta = CLAIM_TIMEOUT,
    patience: float | None = None,
    logger: Any = log,
) -> tuple[Claim, int]:
    """Claim ``keys`` for ``owner``, then wait until no other run is choosing and no earlier live
    claim overlaps them. Returns the claim (the caller keeps it alive while it creates and drops
    it once its batches are recorded in flight) and how many keys earlier claims held at the
    first look (0: this run waited for nobody). With ``patience`` (seconds): an earlier claim
    still overlapping after that long raises :class:`ClaudeBatchClaimHeldError`, the claim dropped."""
    claim = Claim(WorkDir.of(work_dir), owner, keys, timeout)
    claim.make()
    pause, first, told = FIRST_PAUSE, None, None
    started = time.monotonic()
    try:
        while True:
            choosing, earlier, common = claim.blocking()
            if first is None:
                first = common
            if not choosing and not earlier:
                return claim, first
            waited = time.monotonic() - started
            if earlier and patience is not None and waited >= patience:
                raise ClaudeBatchClaimHeldError(earlier, common, waited)
            if (choosing, earlier, common) != told:  # said once per change, not once per look
                told = (choosing, earlier, common)
                if earlier:
                    logger.info(
                        "Waiting for %d earlier run(s) that claimed %d of these requests to create their batches, "
                        "so each request is sent once (this run then awaits their answers).",
                        earlier,
                        common,
                    )
                else:
                    logger.info("Waiting for %d run(s) still writing their claims.", choosing)
            claim.alive()
            time.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)
    except BaseException:
        claim.drop()
        raise
