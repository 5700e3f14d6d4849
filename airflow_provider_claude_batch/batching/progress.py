"""One-line progress reports and end-of-wait summaries from batch states."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

COUNT_KINDS = ("succeeded", "errored", "expired", "canceled", "processing")


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


@dataclass
class Progress:
    total_batches: int
    started_at: float

    def line(self, states: dict[str, dict[str, Any]], now: float | None = None) -> str:
        now = time.time() if now is None else now
        totals = total_counts(states)
        requests = sum(totals.values())
        done = requests - totals["processing"]
        ended = sum(1 for s in states.values() if s.get("processing_status") == "ended")
        percent = 100.0 * done / requests if requests else 0.0
        elapsed = now - self.started_at
        if 0 < done < requests:
            eta = f"about {_duration(elapsed * (requests - done) / done)} left"
        elif done == requests and requests:
            eta = "done"
        else:
            eta = "time left unknown"
        return (
            f"batches {ended}/{self.total_batches} ended; requests "
            + ", ".join(f"{totals[kind]} {kind}" for kind in COUNT_KINDS)
            + f" ({percent:.1f}% done); elapsed {_duration(elapsed)}; {eta}"
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
