"""What the run folders of the DAG runs the Claude Batches page shows say, read from the work
directory: per submit task, its rows, the requests its batches were sent (every round), the
manifest's ``reuse`` counts (rows new, reused, deduplicated, awaited from another run), whether
its transfer landed (``landing.json``) and the landing summary's ``reuse_saved_usd``; summed per
DAG run (:class:`RunWork`).

It also finds the runs that created **no batch at all** (every row was answered from the store
or deduplicated, or awaited from another run's batch). The API lists batches only, so such a
run is invisible from the batch list and its batch index; the page asks the metadata database
for recent runs and looks for their run folders here instead (one listing and one or two small
reads per run, in parallel).

Invariants: everything is read, nothing written; a folder or file that cannot be read becomes a
note, never an exception; ``saved_usd`` is None until a transfer has landed the run (the saving
is what the landed rows would have cost, known only then); awaited rows are never counted as
reused: they are answered by another run's batch (or sent after all) only once the transfer
resolved them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_claude_batch.batching.state.run_dir import MANIFEST_NAME, RunDir, WorkDir
from airflow_provider_claude_batch.batching.state.storage import children

#: (dag_id, run_id)
RunKey = tuple[str, str]


@dataclass
class RunReuse:
    """How the rows of a DAG run's submit tasks divided, summed over them."""

    rows: int = 0
    new: int = 0
    reused: int = 0
    deduplicated: int = 0
    #: What reuse saved, from the landing summaries (None while a task has not landed).
    saved_usd: float | None = None
    #: Rows whose request another run had in a batch not landed yet when they were submitted.
    awaited: int = 0
    #: Of those, once the transfer resolved them: answered by the other run's batch, or sent
    #: by this run after all.
    awaited_answered: int = 0
    awaited_sent: int = 0
    #: Every task with awaited rows has resolved them (True when none has any).
    awaited_resolved: bool = True

    @property
    def rows_reused(self) -> int:
        """Rows answered without being sent: from the store, or by a same request in the run."""
        return self.reused + self.deduplicated

    @property
    def awaited_waiting(self) -> int:
        """Awaited rows not resolved yet: the other run's batch is still to end or land."""
        return self.awaited - self.awaited_answered - self.awaited_sent

    def add(self, other: RunReuse) -> None:
        self.rows += other.rows
        self.new += other.new
        self.reused += other.reused
        self.deduplicated += other.deduplicated
        self.awaited += other.awaited
        self.awaited_answered += other.awaited_answered
        self.awaited_sent += other.awaited_sent
        self.awaited_resolved = self.awaited_resolved and other.awaited_resolved
        if other.saved_usd is not None:
            self.saved_usd = (self.saved_usd or 0.0) + other.saved_usd

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_reused": self.rows_reused, "awaited_waiting": self.awaited_waiting}


def reuse_of(counts: dict[str, Any]) -> RunReuse:
    """A manifest's ``reuse`` counts (``ReuseCounts.as_dict``) as one task's :class:`RunReuse`."""
    awaited = int(counts.get("awaited", 0))
    return RunReuse(
        rows=int(counts.get("rows", 0)),
        new=int(counts.get("new", 0)),
        reused=int(counts.get("reused", 0)),
        deduplicated=int(counts.get("deduplicated", 0)),
        awaited=awaited,
        awaited_answered=int(counts.get("awaited_answered", 0)),
        awaited_sent=int(counts.get("awaited_sent", 0)),
        awaited_resolved=not awaited or bool(counts.get("awaited_resolved", False)),
    )


@dataclass
class RunWork:
    """What the run folders of a DAG run's submit tasks say, summed over them."""

    #: Submit task folders read, and how many of them hold a landing summary.
    tasks: int = 0
    landed: int = 0
    #: Input rows (those sent and, with reuse, those answered without a batch).
    rows: int = 0
    #: Requests the run's batches were sent, every round (and awaited rows sent after all).
    requests_sent: int = 0
    #: The most rounds a task of the run took (1: no resubmission).
    rounds: int = 0
    #: How the rows divided; None when no task of the run looked for answers.
    reuse: RunReuse | None = None

    def add(self, other: RunWork) -> None:
        self.tasks += other.tasks
        self.landed += other.landed
        self.rows += other.rows
        self.requests_sent += other.requests_sent
        self.rounds = max(self.rounds, other.rounds)
        if other.reuse is not None:
            if self.reuse is None:
                self.reuse = RunReuse()
            self.reuse.add(other.reuse)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "requests_sent": self.requests_sent,
            "rounds": self.rounds,
            "tasks": self.tasks,
            "landed_tasks": self.landed,
        }


def _task_work(run_dir: RunDir, manifest: dict[str, Any]) -> RunWork:
    sent = [record for record in manifest.get("batches", []) if record.get("batch_id")]
    counts = manifest.get("reuse")
    work = RunWork(
        tasks=1,
        rows=int(counts["rows"]) if counts is not None else int(manifest.get("total_requests", 0)),
        requests_sent=sum(int(record.get("request_count", 0)) for record in sent),
        rounds=1 + max((int(record.get("round", 0)) for record in sent), default=0),
        reuse=None if counts is None else reuse_of(counts),
    )
    if run_dir.landing_summary.exists():
        work.landed = 1
        if work.reuse is not None:
            saved = json.loads(run_dir.landing_summary.read_bytes()).get("reuse_saved_usd")
            work.reuse.saved_usd = None if saved is None else float(saved)
    return work


def task_work(folder: RunDir | Any, manifest: dict[str, Any] | None = None) -> tuple[RunWork | None, list[str]]:
    """What one submit task's run folder says (None: no manifest there), and notes on what
    could not be read. ``manifest``: its JSON, if read."""
    run_dir = RunDir.of(folder)
    try:
        if manifest is None:
            if not run_dir.manifest.exists():
                return None, []
            manifest = json.loads(run_dir.manifest.read_bytes())
        return _task_work(run_dir, manifest), []
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
        return None, [f"Skipped the run folder {run_dir}: {exc}"]


def runs_work(
    work_dir: WorkDir | Any, task_folders: Iterable[tuple[str, str, str, int]]
) -> tuple[dict[RunKey, RunWork], list[str]]:
    """(dag_id, run_id) -> what the given task folders ``(dag_id, run_id, task_id, map_index)``
    say, summed per run; runs none of whose folders could be read are absent."""
    work_dir = WorkDir.of(work_dir)
    folders = sorted(set(task_folders))
    found: dict[RunKey, RunWork] = {}
    notes: list[str] = []
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="claude-batches-reuse") as pool:
        for key, (work, problems) in zip(
            folders, pool.map(lambda k: task_work(work_dir.run(*k)), folders), strict=True
        ):
            notes.extend(problems)
            if work is not None:
                found.setdefault((key[0], key[1]), RunWork()).add(work)
    return found, notes


@dataclass
class AnsweredRun:
    """A DAG run whose submit tasks created no batch: every row was answered without one, or
    awaits another run's batch."""

    dag_id: str
    run_id: str
    #: When its first submit task wrote its manifest (ISO 8601): where the run sorts among batches.
    created_at: str
    work: RunWork

    @property
    def reuse(self) -> RunReuse:
        assert self.work.reuse is not None  # an answered run's tasks all looked for answers
        return self.work.reuse


def _manifests_of_run(run_folder: Any) -> list[tuple[Any, dict[str, Any]]]:
    """(task folder, manifest JSON) of every submit task instance in a run folder, mapped ones
    (``{task_id}/{map_index}/``) included."""
    found = []
    for task_folder in children(run_folder):
        if (task_folder / MANIFEST_NAME).exists():
            found.append((task_folder, json.loads((task_folder / MANIFEST_NAME).read_bytes())))
            continue
        if not task_folder.is_dir():
            continue
        for mapped in children(task_folder):
            if mapped.name.isdigit() and (mapped / MANIFEST_NAME).exists():
                found.append((mapped, json.loads((mapped / MANIFEST_NAME).read_bytes())))
    return found


def answered_run(work_dir: WorkDir | Any, dag_id: str, run_id: str, conn_id: str) -> AnsweredRun | None:
    """The run, if its folder holds submit tasks of ``conn_id`` that all looked for answers and
    none of which recorded a batch."""
    run_folder = WorkDir.of(work_dir).dag_run_folder(dag_id, run_id)
    if not run_folder.exists():
        return None
    manifests = [(folder, m) for folder, m in _manifests_of_run(run_folder) if m.get("conn_id") == conn_id]
    if not manifests or any(m.get("reuse") is None for _, m in manifests):
        return None
    if any(record.get("batch_id") for _, m in manifests for record in m.get("batches", [])):
        return None  # the batch list shows this run
    total = RunWork()
    for folder, manifest in manifests:
        total.add(_task_work(RunDir.of(folder), manifest))
    return AnsweredRun(dag_id, run_id, min(str(m.get("created_at", "")) for _, m in manifests), total)


def answered_runs(
    work_dir: WorkDir | Any, candidates: Iterable[RunKey], conn_id: str
) -> tuple[list[AnsweredRun], list[str]]:
    """Those of ``candidates`` that created no batch (see :func:`answered_run`), and notes."""
    work_dir = WorkDir.of(work_dir)

    def look(key: RunKey) -> tuple[AnsweredRun | None, str | None]:
        try:
            return answered_run(work_dir, key[0], key[1], conn_id), None
        except Exception as exc:  # one unreadable run folder must not hide the others
            return None, f"Skipped the run folder of {key[0]} / {key[1]}: {exc}"

    runs: list[AnsweredRun] = []
    notes: list[str] = []
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="claude-batches-runs") as pool:
        for run, problem in pool.map(look, list(dict.fromkeys(candidates))):
            if problem:
                notes.append(problem)
            if run is not None:
                runs.append(run)
    return runs, notes


def dag_folders(work_dir: WorkDir | Any) -> list[str]:
    """The names of the DAG folders in the work directory (not ``_batches``, ``_answers``)."""
    path = WorkDir.of(work_dir).path
    if not path.exists():
        return []
    return sorted(child.name for child in children(path) if not child.name.startswith((".", "_")) and child.is_dir())


__all__ = [
    "AnsweredRun",
    "RunReuse",
    "RunWork",
    "answered_run",
    "answered_runs",
    "dag_folders",
    "reuse_of",
    "runs_work",
    "task_work",
]
