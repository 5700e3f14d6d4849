"""Which run sends a request that several runs need at the same moment.

The reuse plan makes a run await the requests another run has in a batch not landed yet
(``_answers/_inflight/``). Two runs that plan at the same moment (a backfill with several active
runs, two mapped tasks over the same rows) each find no batch of the other's and both send:
the same requests billed twice. So, before it plans, a run **claims** its content keys (its
in-flight file holds them with no batch yet) and then reads the other runs' claims:

* Claims are ordered by their time, then by owner. A run waits while an *earlier* claim of
  another run overlaps its keys, until that claim is settled: the other run has marked the
  batches it sent (its claim is replaced, and the plan then awaits those requests), or dropped
  its claim (it failed before sending, or had nothing to send), or the claim is older than
  ``timeout`` (the run died): then this run plans as usual and sends what is still missing.
* A claim is dropped on every way out of a submit that did not mark batches, and replaced by
  the in-flight record when it did (``Submission.submit``).

Invariants: each run writes its claim before it reads the others', so of two runs claiming the
same key at least the later writer sees the other; both order the two claims the same way, so
only the later one waits; the earliest claim never waits, so waits cannot form a cycle. A run
waits only for batches to be *created*, never for them to end: the transfer awaits their answers
as for any in-flight request. Limits: worker clocks are assumed to agree to within the time
between two claims (NTP); when they do not, both runs may send, as before claims existed. A run
killed between its claim and its creates holds the others back for up to ``timeout``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from airflow_provider_claude_batch.batching.answer_store import AnswerStore

log = logging.getLogger(__name__)

#: How long a claim holds other runs back: longer than a submit takes from its claim to its
#: last create (rendering is done before the claim); a claim older than this is a dead run's.
CLAIM_TIMEOUT = timedelta(minutes=15)
#: Pauses between two looks at the claims (doubling from the first).
FIRST_PAUSE, MAX_PAUSE = 0.5, 5.0


def claim_and_wait(
    store: AnswerStore,
    owner: str,
    keys: np.ndarray,
    *,
    timeout: timedelta = CLAIM_TIMEOUT,
    logger: Any = log,
) -> int:
    """Claim ``keys`` (distinct or not) for ``owner``, then wait until no earlier unsettled claim
    of another run overlaps them (see the module docstring). Returns how many of the keys an
    earlier claim held when this run first looked (0: it waited for nobody)."""
    distinct = np.unique(keys, axis=0) if len(keys) else keys  # keys: (n, KEY_BYTES) uint8
    mine = store.claim(owner, distinct)
    pause = FIRST_PAUSE
    first_seen: int | None = None
    told: tuple[int, int] | None = None
    while True:
        now = datetime.now(timezone.utc)
        earlier = [
            (other, claimed_at, common)
            for other, claimed_at, common in store.claims(distinct, exclude=owner)
            if (claimed_at, other) < (mine, owner) and now - claimed_at < timeout
        ]
        if first_seen is None:
            first_seen = max((common for _, _, common in earlier), default=0)
        if not earlier:
            return first_seen
        until = min(claimed_at for _, claimed_at, _ in earlier) + timeout
        state = (len(earlier), sum(common for _, _, common in earlier))
        if state != told:  # said once per change, not once per look
            told = state
            logger.info(
                "Waiting for %d earlier run(s) that claimed %d of these requests to create their batches, so "
                "each request is sent once (this run then awaits their answers); at most until %s.",
                *state,
                until.isoformat(timespec="seconds"),
            )
        time.sleep(max(0.0, min(pause, (until - now).total_seconds())))
        pause = min(pause * 2, MAX_PAUSE)
