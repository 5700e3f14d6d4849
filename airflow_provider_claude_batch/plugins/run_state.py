"""Where a DAG run stands on the Claude Batches page: what Airflow's metadata database says of it
(``DagRun.state`` and the states of the provider's task instances in it) and whether its
transfer landed (``landing.json`` beside each submit task's manifest), made into one
:class:`Verdict`: a word and a tone the page colours it by.

Invariants:

* A run that failed is never shown as done: a failed DAG run or a failed (or upstream failed)
  submit, wait or transfer task makes the verdict ``failed`` (red), whatever its batches did.
* ``landed`` (green) needs every submit task of the run to have its landing summary; batches
  that ended without one are ``not landed`` (amber) unless the run is still going.
* What is not known is said, never guessed: a run the metadata database does not know, or
  whose run folders were not read, says so in the verdict's detail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Task instance states that mean the task did not do its work.
FAILED_TASK_STATES = frozenset({"failed", "upstream_failed"})
#: DAG run states of a run still going.
ACTIVE_RUN_STATES = frozenset({"queued", "running"})
#: How many failed tasks the detail names before it counts the rest.
NAMED_TASKS = 3


@dataclass(frozen=True)
class AirflowState:
    """What the metadata database says of a DAG run: its state, and the state of each of the
    provider's task instances in it (``submit``, ``land``, ``submit [3]`` for a mapped one)."""

    run: str | None
    tasks: dict[str, str | None] = field(default_factory=dict)

    def failed_tasks(self) -> list[tuple[str, str]]:
        return [(task, state) for task, state in sorted(self.tasks.items()) if state in FAILED_TASK_STATES]


#: (dag_id, run_id) -> what the metadata database says of the run (absent: it does not know it).
RunStates = dict[tuple[str, str], AirflowState]


@dataclass(frozen=True)
class Verdict:
    """How the page shows a run: ``word`` (landed, failed, not landed, running, or the batches'
    status when nothing else is known), ``tone`` (the colour: good, bad, warn, busy, neutral)
    and ``detail`` (the run's state, its failed tasks and its landing, in words)."""

    word: str
    tone: str
    detail: str


def landing_words(landed: int, tasks: int) -> str:
    """``landed``, ``not landed``, ``landed 1 of 2 tasks``, or ``landing not known`` (no run
    folder read)."""
    if tasks == 0:
        return "landing not known"
    if landed == tasks:
        return "landed"
    if landed == 0:
        return "not landed"
    return f"landed {landed} of {tasks} tasks"


def _detail(airflow: AirflowState | None, landing: str) -> str:
    parts = [f"run {airflow.run}" if airflow is not None and airflow.run else "run not in the metadata database"]
    failed = airflow.failed_tasks() if airflow is not None else []
    parts += [f"{task} {state}" for task, state in failed[:NAMED_TASKS]]
    if len(failed) > NAMED_TASKS:
        parts.append(f"{len(failed) - NAMED_TASKS} more task(s) failed")
    return ", ".join([*parts, landing])


def verdict(airflow: AirflowState | None, landed: int, tasks: int, *, batches_open: bool, batch_status: str) -> Verdict:
    """The verdict of a run whose submit tasks (``tasks`` run folders read, ``landed`` of them
    with a landing summary) created batches of which some may still be open."""
    landing = landing_words(landed, tasks)
    detail = _detail(airflow, landing)
    run_state = airflow.run if airflow is not None else None
    if run_state == "failed" or (airflow is not None and airflow.failed_tasks()):
        return Verdict("failed", "bad", detail)
    if batches_open or run_state in ACTIVE_RUN_STATES:
        return Verdict("running", "busy", detail)
    if tasks and landed == tasks:
        return Verdict("landed", "good", detail)
    if tasks:
        return Verdict("not landed", "warn", detail)
    if run_state == "success":  # the run folders were not read: Airflow's word is all there is
        return Verdict("success", "good", detail)
    return Verdict(batch_status, "neutral", detail)


def as_dict(airflow: AirflowState | None) -> dict[str, Any]:
    """The JSON API's view of what Airflow says of a run."""
    return {
        "dag_run_state": None if airflow is None else airflow.run,
        "task_states": {} if airflow is None else dict(airflow.tasks),
    }


__all__ = [
    "ACTIVE_RUN_STATES",
    "FAILED_TASK_STATES",
    "AirflowState",
    "RunStates",
    "Verdict",
    "as_dict",
    "landing_words",
    "verdict",
]
