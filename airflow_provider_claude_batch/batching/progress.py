"""One-line progress reports, estimates of the time left, and end-of-wait summaries from
batch states (the JSON-safe dicts of :func:`batch_state`).

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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

COUNT_KINDS = ("succeeded", "errored", "expired", "canceled", "processing")
#: Outcomes that did not produce an answer (the short progress line sums them as "failed").
FAILED_KINDS = ("errored", "expired", "canceled")


def batch_state(batch: Any) -> dict[str, Any]:
    """The JSON-safe part of a ``MessageBatch`` that waiting and reporting need."""
    counts = batch.request_counts
    return {
        "processing_status": batch.processing_status,
        "request_counts": {kind: int(getattr(counts, kind)) for kind in COUNT_KINDS},
        "created_at": batch.created_at.isoformat() if batch.created_at else None,
        "ended_at": batch.ended_at.isoformat() if batch.ended_at else None,
    }


def total_counts(states: dict[str, dict[str, Any]]) -> dict[str, int]:
    totals = dict.fromkeys(COUNT_KINDS, 0)
    for state in states.values():
        for kind in COUNT_KINDS:
            totals[kind] += int(state.get("request_counts", {}).get(kind, 0))
    return totals


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(max(0.0, seconds))))


def _epoch(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def estimate_seconds_left(states: dict[str, dict[str, Any]], now: float) -> float | None:
    """Seconds until the last open batch ends (0.0 when none is open), or None when the states
    carry no signal to estimate from (see the module docstring). Batches run in parallel on
    the service, so the wait is the slowest open batch, not the sum."""
    durations = []
    for state in states.values():
        created, ended = _epoch(state.get("created_at")), _epoch(state.get("ended_at"))
        if state.get("processing_status") == "ended" and created is not None and ended is not None:
            durations.append(ended - created)
    typical = statistics.median(durations) if durations else None
    slowest = 0.0
    for state in states.values():
        if state.get("processing_status") == "ended":
            continue
        counts = state.get("request_counts", {})
        total = sum(int(counts.get(kind, 0)) for kind in COUNT_KINDS)
        done = total - int(counts.get("processing", 0))
        created = _epoch(state.get("created_at"))
        age = None if created is None else now - created
        if age is None or age <= 0:
            return None
        if done > 0:
            left = age * (total - done) / done
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

    def line(self, states: dict[str, dict[str, Any]], now: float | None = None) -> str:
        """A line short enough for the log view (90 to 120 characters), e.g.
        ``batches 1/3 ended; 1,180 ok, 20 failed of 3,000 (40.0% done); elapsed 0:04:10;
        about 0:06:15 left``. ``failed`` sums errored, expired and canceled (omitted while 0);
        the end-of-wait table gives each kind per batch."""
        now = time.time() if now is None else now
        totals = total_counts(states)
        requests = sum(totals.values())
        failed = sum(totals[kind] for kind in FAILED_KINDS)
        done = requests - totals["processing"]
        ended = sum(1 for s in states.values() if s.get("processing_status") == "ended")
        percent = 100.0 * done / requests if requests else 0.0
        if requests and ended == len(states) and len(states) >= self.total_batches:
            eta = "done"
        else:
            left = estimate_seconds_left(states, now) if states else None
            eta = "time left unknown" if left is None else f"about {_duration(left)} left"
        outcome = f"{totals['succeeded']:,} ok" + (f", {failed:,} failed" if failed else "")
        return (
            f"batches {ended}/{self.total_batches} ended; {outcome} of {requests:,} ({percent:.1f}% done); "
            f"elapsed {_duration(now - self.started_at)}; {eta}"
        )


def summary_table(states: dict[str, dict[str, Any]]) -> str:
    """A fixed-width table of per-batch outcomes, for the task log."""
    header = f"{'batch':<40} {'status':<12}" + "".join(f" {kind:>11}" for kind in COUNT_KINDS)
    rows = [header, "-" * len(header)]
    for batch_id, state in states.items():
        counts = state.get("request_counts", {})
        rows.append(
            f"{batch_id:<40} {state.get('processing_status', '?'):<12}"
            + "".join(f" {int(counts.get(kind, 0)):>11}" for kind in COUNT_KINDS)
        )
    totals = total_counts(states)
    rows.append(f"{'total':<40} {'':<12}" + "".join(f" {totals[kind]:>11}" for kind in COUNT_KINDS))
    return "\n".join(rows)
