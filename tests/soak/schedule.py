"""A seed's schedule: what the runs are and which faults strike them, drawn from the seed alone.

Invariant: :func:`draw` is a pure function of the seed (``random.Random(seed)``, no clock, no
environment), so a failing seed replays with the same schedule; :meth:`Schedule.describe`
prints it and :func:`replay_command` is the command that runs it again.

Faults are placed by *count* where they can be (the Nth create, the Nth list page: the
emulator consumes them in call order) and by *state* where they must be (a triggerer killed
once a wait is deferred), never by wall-clock time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

#: The longest a drawn ``list`` lags the creates it should show (the soak's connection must
#: look for a lost create longer than this, see ``faults.CREATE_SETTLE_SECONDS``).
MAX_LIST_LAG_SECONDS = 6.0
#: API faults: endpoint -> statuses it may answer.
API_FAULTS = {
    "create": (429, 500, 529),
    "retrieve": (429, 500, 529),
    "list": (429, 500, 529),
    "results": (429, 500, 529),
    "cancel": (429, 500, 529),
}
#: Process faults, each struck at one moment of a run (see ``faults.py``).
PROCESS_FAULTS = (
    "kill-submit-before-create",  # the create is sent and fails slowly: SIGKILL while it waits
    "kill-submit-after-create",  # the batch is made, the answer is late: SIGKILL before it is recorded
    "create-after-timeout",  # the create answers after the client's timeout, and succeeds
    "kill-land-in-download",  # the transfer killed while a results download is stalled
    "kill-triggerer",  # the triggerer holding the waits SIGKILLed, then started again
)
PEOPLE_FAULTS = ("clear-submit-in-wait", "rerun-after-success")


@dataclass(frozen=True)
class RunPlan:
    """One pipeline run: a DAG, a day, and its rows (``shared`` of them those of run 0)."""

    dag: str
    day: str
    rows: int
    shared: int = 0


@dataclass
class Schedule:
    seed: int
    runs: list[RunPlan]
    emulator: dict[str, Any]
    api_faults: list[dict[str, Any]] = field(default_factory=list)
    process_faults: list[str] = field(default_factory=list)
    people_faults: list[str] = field(default_factory=list)
    s3: dict[str, float] = field(default_factory=dict)

    def kinds(self) -> list[str]:
        """Every fault kind this schedule holds, for the per-kind tally."""
        kinds = [
            f"api:{f['endpoint']}:{f.get('status') or ('drop' if 'drop_after_bytes' in f else 'slow')}"
            for f in self.api_faults
        ]
        kinds += [f"process:{k}" for k in self.process_faults] + [f"people:{k}" for k in self.people_faults]
        if self.s3.get("fail_every"):
            kinds.append("storage:s3-failing")
        if self.s3.get("latency_seconds"):
            kinds.append("storage:s3-slow")
        if self.emulator.get("list_lag_seconds"):
            kinds.append("api:list-stale")
        if self.emulator.get("queue_limit"):
            kinds.append("api:queue-full")
        if len({r.dag for r in self.runs}) > 1:
            kinds.append("people:second-dag-same-work-dir")
        if any(r.dag == self.runs[0].dag and r.shared for r in self.runs[1:]):
            kinds.append("people:backfill-overlapping-rows")
        return kinds

    def describe(self) -> str:
        lines = [f"seed {self.seed}:"]
        lines += [f"  run {r.dag} {r.day}: {r.rows} rows, {r.shared} shared with run 0" for r in self.runs]
        lines.append(f"  emulator {self.emulator}")
        lines += [f"  api fault {f}" for f in self.api_faults]
        lines += [f"  process fault {k}" for k in self.process_faults]
        lines += [f"  people fault {k}" for k in self.people_faults]
        if self.s3:
            lines.append(f"  s3 {self.s3}")
        return "\n".join(lines)


def replay_command(seed: int, shape: str) -> str:
    return f"python3 dev.py soak --first-seed {seed} --seeds 1 --shape {shape}"


def _day(seed: int, k: int) -> str:
    """A day of its own per seed and run: runs of different seeds never share a partition."""
    from datetime import date, timedelta

    return (date(2020, 1, 1) + timedelta(days=seed * 4 + k)).isoformat()


def _api_fault(rng: random.Random) -> dict[str, Any]:
    endpoint = rng.choice(sorted(API_FAULTS))
    draw = rng.random()
    if endpoint == "results" and draw < 0.35:
        return {"endpoint": "results", "drop_after_bytes": rng.randint(50, 2_000), "skip": rng.randint(0, 1)}
    if endpoint == "create" and draw < 0.3:  # made, then the answer lost: a blind retry would pay twice
        return {"endpoint": "create", "status": rng.choice((500, 529)), "after_commit": True, "skip": rng.randint(0, 2)}
    if endpoint == "list" and draw < 0.2:
        return {"endpoint": "list", "delay_seconds": round(rng.uniform(0.5, 3), 2), "times": rng.randint(1, 3)}
    fault: dict[str, Any] = {
        "endpoint": endpoint,
        "status": rng.choice(API_FAULTS[endpoint]),
        "times": rng.randint(1, 3),
        "skip": rng.randint(0, 3),
    }
    if fault["status"] in (429, 529):
        fault["retry_after"] = rng.choice((0, 1))
    return fault


def draw(seed: int, *, small: bool = False) -> Schedule:
    """The schedule of ``seed`` (``small``: fewer rows, for CI)."""
    rng = random.Random(seed)
    most = 60 if small else 160
    runs = [RunPlan("claude_batch_soak_a", _day(seed, 0), rng.randint(most // 2, most))]
    if rng.random() < 0.5:  # a backfill's next day over overlapping rows, at the same time
        rows = rng.randint(most // 2, most)
        runs.append(RunPlan("claude_batch_soak_a", _day(seed, 1), rows, rng.randint(1, min(rows, runs[0].rows) // 2)))
    if rng.random() < 0.35:  # a second DAG on the same work directory
        rows = rng.randint(most // 3, most // 2)
        runs.append(RunPlan("claude_batch_soak_b", _day(seed, 2), rows, rng.randint(1, min(rows, runs[0].rows))))
    emulator: dict[str, Any] = {"processing_seconds": round(rng.uniform(2, 6), 1)}
    if rng.random() < 0.3:
        emulator["list_lag_seconds"] = round(rng.uniform(1, MAX_LIST_LAG_SECONDS), 1)
    if rng.random() < 0.25:
        emulator["errored_fraction"] = 0.05
        emulator["expired_fraction"] = 0.05
    if rng.random() < 0.25:  # the organisation's queue fits two batches: runs feed as it frees
        emulator["queue_limit"] = 80
    schedule = Schedule(seed, runs, emulator)
    schedule.api_faults = [_api_fault(rng) for _ in range(rng.randint(0, 4))]
    schedule.process_faults = sorted(rng.sample(PROCESS_FAULTS, rng.choice((0, 1, 1, 2))))
    schedule.people_faults = [k for k in PEOPLE_FAULTS if rng.random() < 0.25]
    if {"kill-triggerer", "clear-submit-in-wait"} & {*schedule.process_faults, *schedule.people_faults}:
        # Their moment is a deferred wait: batches that last keep the waits deferred a while (a task starts in seconds to tens of seconds).
        emulator["processing_seconds"] = max(emulator["processing_seconds"], 30.0)
    if rng.random() < 0.4:
        schedule.s3 = {"latency_seconds": rng.choice((0.0, 0.02, 0.05)), "fail_every": rng.choice((0, 7, 11))}
    return schedule
