"""Every decision of a wait for batches, in one place: the trigger, the sensor's poke and
the transfer's resubmission rounds all poll through a :class:`Poller`.

A poll's answers (a :class:`BatchState`, or the error that replaced it, per batch) go into
:meth:`Poller.observe`, which decides, in this order:

1. a rejected key or a missing batch ends the wait at once (waiting cannot fix either);
2. a poll with failures counts one more failed poll in a row; more than
   ``max_poll_errors`` in a row end the wait with an error (a clean poll resets the count);
3. every batch ended: the wait succeeded;
4. the deadline (wall-clock epoch seconds, so a restart does not extend it) passed: the
   wait timed out, naming the batches still open;
5. otherwise: poll again after :meth:`Poller.sleep_for`.

The end is a :class:`~.wait_event.WaitEvent` (the same one a trigger sends). What to
cancel on a timeout or a kill is :meth:`Poller.to_cancel`: the batches not known to have
ended. Whether too many requests failed is :func:`check_failed_fraction`.

This module does no I/O and imports no Airflow; :func:`retrieve_states` and
:func:`wait_until_ended` are the synchronous poll and loop over a duck-typed hook.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_claude_batch.batching.api.batch_state import BatchState, sum_counts
from airflow_provider_claude_batch.batching.api.client import BatchReader
from airflow_provider_claude_batch.batching.wait.progress import Progress
from airflow_provider_claude_batch.batching.wait.wait_event import WaitEvent
from airflow_provider_claude_batch.exceptions import (
    ClaudeBatchAPIError,
    ClaudeBatchAuthError,
    ClaudeBatchFailedRequestsError,
    ClaudeBatchNotFoundError,
)

#: Batches end within 24 hours of creation (the rest of their requests expire); the default
#: timeout leaves room for a create late in a long submit.
DEFAULT_TIMEOUT_SECONDS = 26 * 3600
#: Seconds between polls: batches take minutes to hours, and one poll costs an API call.
DEFAULT_POLL_INTERVAL = 60.0
#: Consecutive failed polls (network blips, 5xx) tolerated before a wait fails.
DEFAULT_MAX_POLL_ERRORS = 10

#: A batch's state, or why a poll could not get it.
Answer = BatchState | BaseException


def started_at_of(states: Iterable[BatchState]) -> float | None:
    """When a wait really began: the earliest creation of its batches (a reschedule-mode poke
    or a resumed task is a new process, so its own start says nothing)."""
    created = [state.created_at.timestamp() for state in states]
    return min(created) if created else None


@dataclass
class Poller:
    """The state of one wait for ``batch_ids``: the last state of each batch and the failed
    polls in a row. Keep one per wait (a poke-mode sensor keeps it between pokes)."""

    batch_ids: list[str]
    max_poll_errors: int = DEFAULT_MAX_POLL_ERRORS
    #: Epoch seconds after which the wait times out; ``None``: the caller times it.
    deadline: float | None = None
    started_at: float = field(default_factory=time.time)
    states: dict[str, BatchState] = field(default_factory=dict)
    failed_polls: int = 0
    #: The failures of the last poll, ``"batch id: error"`` (empty after a clean poll).
    last_errors: list[str] = field(default_factory=list)

    def pending(self) -> list[str]:
        """The batches not known to have ended: what the next poll asks about."""
        return [batch_id for batch_id in self.batch_ids if not self._ended(batch_id)]

    def to_cancel(self) -> list[str]:
        """What a timeout or a kill cancels: the batches not known to have ended."""
        return self.pending()

    def _ended(self, batch_id: str) -> bool:
        state = self.states.get(batch_id)
        return state is not None and state.ended

    def observe(self, answers: Mapping[str, Answer], now: float | None = None) -> WaitEvent | None:
        """Take one poll's answers; the event that ends the wait, or ``None`` to poll again."""
        now = time.time() if now is None else now
        failures: list[tuple[str, BaseException]] = []
        for batch_id, answer in answers.items():
            if isinstance(answer, (ClaudeBatchNotFoundError, ClaudeBatchAuthError)):
                return WaitEvent.failed(answer, self.states)
            if isinstance(answer, BaseException):
                failures.append((batch_id, answer))
            else:
                self.states[batch_id] = answer
        self.last_errors = [f"{batch_id}: {error}" for batch_id, error in failures]
        if failures:
            self.failed_polls += 1
            if self.failed_polls > self.max_poll_errors:
                message = (
                    f"polling failed {self.failed_polls} times in a row (max_poll_errors={self.max_poll_errors}); "
                    f"last errors: {'; '.join(self.last_errors[:5])}"
                )
                return WaitEvent.failed(failures[-1][1], self.states, message=message)
        else:
            self.failed_polls = 0
        still_open = self.pending()
        if not still_open:
            return WaitEvent(status="success", batches=dict(self.states), elapsed=now - self.started_at)
        if self.deadline is not None and now >= self.deadline:
            return WaitEvent(
                status="timeout",
                batches=dict(self.states),
                open=still_open,
                message=f"{len(still_open)} batch(es) still open at the deadline",
            )
        return None

    def sleep_for(self, poll_interval: float, now: float | None = None) -> float:
        """Seconds until the next poll: the interval, but never past the deadline."""
        now = time.time() if now is None else now
        if self.deadline is None:
            return poll_interval
        return max(0.0, min(poll_interval, self.deadline - now))

    def progress_line(self, now: float | None = None) -> str:
        return Progress(total_batches=len(self.batch_ids), started_at=self.started_at).line(self.states, now)


def check_failed_fraction(states: Mapping[str, BatchState], max_failed_fraction: float | None) -> None:
    """Raise when more than ``max_failed_fraction`` of the requests ended errored, expired or
    canceled (``None``: never)."""
    totals = sum_counts(states.values())
    requests, failed = totals.total, totals.failed
    if max_failed_fraction is not None and requests and failed / requests > max_failed_fraction:
        raise ClaudeBatchFailedRequestsError(
            f"{failed} of {requests} requests ({failed / requests:.1%}) ended errored, expired or canceled, "
            f"more than max_failed_fraction={max_failed_fraction:.1%}"
        )


def retrieve_states(hook: BatchReader, batch_ids: Iterable[str]) -> dict[str, Answer]:
    """One synchronous poll: each batch's state via ``hook.retrieve_batch``, or its API error."""
    answers: dict[str, Answer] = {}
    for batch_id in batch_ids:
        try:
            answers[batch_id] = BatchState.from_batch(hook.retrieve_batch(batch_id))
        except ClaudeBatchAPIError as exc:
            answers[batch_id] = exc
    return answers


def wait_until_ended(
    poller: Poller,
    poll: Callable[[list[str]], Mapping[str, Answer]],
    poll_interval: float,
    *,
    log: Any,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitEvent:
    """Poll until the poller decides; for waits that hold their worker (not deferred)."""
    while True:
        event = poller.observe(poll(poller.pending()))
        if poller.last_errors:
            log.warning("Poll %d failed: %s", poller.failed_polls, "; ".join(poller.last_errors[:3]))
        log.info("%s", poller.progress_line())
        if event is not None:
            return event
        sleep(poller.sleep_for(poll_interval))
