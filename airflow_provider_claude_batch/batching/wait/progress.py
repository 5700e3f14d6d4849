"""One-line progress reports, estimates of the time left, and end-of-wait summaries from
batch states (:class:`~airflow_provider_claude_batch.batching.api.batch_state.BatchState`).

The estimate reads only the batch states, never the waiter's own history, so it is the same
after a triggerer restart, a reschedule-mode poke or a retry: each open batch's own age
(``now - created_at``) and counts say how fast it goes. Two signals, in this order:

* requests that already ended in an open batch: the batch is assumed to keep its average
  rate since creation. The Message Batches API keeps every request ``processing`` until the
  whole batch ends, so this signal appears only with services (or the emulator's
  ``gradual_ending`` mode) that report requests as they end;
* batches of the same wait that already ended: an open batch is assumed to take as long as
  the median of their durations (batches of one run are created together and are of a size).

With neither (every batch still open, no request ended) the time left is unknown.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from airflow_provider_claude_batch.batching.api.batch_state import COUNT_KINDS, BatchState, sum_counts


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(max(0.0, seconds))))


def estimate_seconds_left(states: Mapping[str, BatchState], now: float) -> float | None:
    """Seconds until the last open batch ends (0.0 when none is open), or None when the states
    carry no signal to estimate from (see the module docstring). Batches run in parallel on
    the service, so the wait is the slowest open batch, not the sum."""
    durations = [
        (state.ended_at - state.created_at).total_seconds()
        for state in states.values()
        if state.ended and state.ended_at is not None
    ]
    typical = statistics.median(durations) if durations else None
    slowest = 0.0
    for state in states.values():
        if state.ended:
            continue
        counts = state.request_counts
        age = now - state.created_at.timestamp()
        if age <= 0:
            return None
        if counts.done > 0:
            left = age * counts.processing / counts.done
        elif typical is not None and typical > age:
            left = typical - age
        else:  # no request ended yet, and no ended batch to compare with (or it is overdue)
            return None
        slowest = max(slowest, left)
    return slowest


@dataclass
class Progress:
    """Formats the per-poll log line of a wait that began at ``started_at`` (epoch seconds)."""

    total_batches: int
    started_at: float

    def line(self, states: Mapping[str, BatchState], now: float | None = None) -> str:
        """A line short enough for the log view (90 to 120 characters), e.g.
        ``batches 1/3 ended; 1,180 ok, 20 failed of 3,000 (40.0% done); elapsed 0:04:10;
        about 0:06:15 left``. ``failed`` sums errored, expired and canceled (omitted while 0);
        the end-of-wait table gives each kind per batch."""
        now = time.time() if now is None else now
        totals = sum_counts(states.values())
        requests = totals.total
        ended = sum(1 for s in states.values() if s.ended)
        percent = 100.0 * totals.done / requests if requests else 0.0
        if requests and ended == len(states) and len(states) >= self.total_batches:
            eta = "done"
        else:
            left = estimate_seconds_left(states, now) if states else None
            eta = "time left unknown" if left is None else f"about {_duration(left)} left"
        outcome = f"{totals.succeeded:,} ok" + (f", {totals.failed:,} failed" if totals.failed else "")
        return (
            f"batches {ended}/{self.total_batches} ended; {outcome} of {requests:,} ({percent:.1f}% done); "
            f"elapsed {_duration(now - self.started_at)}; {eta}"
        )


def summary_table(states: Mapping[str, BatchState]) -> str:
    """A fixed-width table of per-batch outcomes, for the task log."""
    header = f"{'batch':<40} {'status':<12}" + "".join(f" {kind:>11}" for kind in COUNT_KINDS)
    rows = [header, "-" * len(header)]
    for batch_id, state in states.items():
        counts = state.request_counts.as_dict()
        rows.append(
            f"{batch_id:<40} {state.processing_status:<12}" + "".join(f" {counts[kind]:>11}" for kind in COUNT_KINDS)
        )
    totals = sum_counts(states.values()).as_dict()
    rows.append(f"{'total':<40} {'':<12}" + "".join(f" {totals[kind]:>11}" for kind in COUNT_KINDS))
    return "\n".join(rows)
