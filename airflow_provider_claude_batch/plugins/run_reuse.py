"""What answer reuse did for the DAG runs the Claude Batches page shows, read from the work
directory: per submit task, the manifest's ``reuse`` counts (rows new, reused, deduplicated)
and the landing summary's ``reuse_saved_usd``; summed per DAG run.

It also finds the runs that created **no batch at all** (every row was answered from the store
or deduplicated). The API lists batches only, so such a run is invisible from the batch list
and its batch index; the page asks the metadata database for recent runs and looks for their
run folders here instead (one listing and one or two small reads per run, in parallel).

Invariants: everything is read, nothing written; a folder or file that cannot be read becomes a
note, never an exception; ``saved_usd`` is None until a transfer has landed the run (the saving
is what the landed rows would have cost, known only then).
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

    @property
    def rows_reused(self) -> int:
        """Rows answered without being sent: from the store, or by a same request in the run."""
        return self.reused + self.deduplicated

    def add(self, other: RunReuse) -> None:
        self.rows += other.rows
        self.new += other.new
        self.reused += other.reused
        self.deduplicated += other.deduplicated
        if other.saved_usd is not None:
            self.saved_usd = (self.saved_usd or 0.0) + other.saved_usd

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_reused": self.rows_reused}


def task_reuse(folder: RunDir | Any, manifest: dict[str, Any] | None = None) -> tuple[RunReuse | None, list[str]]:
    """The reuse of one submit task's run folder (None: it did not look, ``reuse_answers=False``
    or an older run), and notes on what could not be read. ``manifest``: its JSON, if read."""
    run_dir = RunDir.of(folder)
    try:
        if manifest is None:
            if not run_dir.manifest.exists():
                return None, []
            manifest = json.loads(run_dir.manifest.read_bytes())
        counts = manifest.get("reuse")
        if counts is None:
            return None, []
        reuse = RunReuse(
            rows=int(counts.get("rows", 0)),
            new=int(counts.get("new", 0)),
            reused=int(counts.get("reused", 0)),
            deduplicated=int(counts.get("deduplicated", 0)),
        )
        if run_dir.landing_summary.exists():
            saved = json.loads(run_dir.landing_summary.read_bytes()).get("reuse_saved_usd")
            reuse.saved_usd = None if saved is None else float(saved)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        return None, [f"Skipped the reuse counts of {run_dir}: {exc}"]
    return reuse, []


def runs_reuse(
    work_dir: WorkDir | Any, task_folders: Iterable[tuple[str, str, str, int]]
) -> tuple[dict[RunKey, RunReuse], list[str]]:
    """(dag_id, run_id) -> the reuse summed over the given task folders
    ``(dag_id, run_id, task_id, map_index)``; runs whose tasks did not look are absent."""
    work_dir = WorkDir.of(work_dir)
    folders = sorted(set(task_folders))
    found: dict[RunKey, RunReuse] = {}
    notes: list[str] = []
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="claude-batches-reuse") as pool:
        for key, (reuse, problems) in zip(
            folders, pool.map(lambda k: task_reuse(work_dir.run(*k)), folders), strict=True
        ):
            notes.extend(problems)
            if reuse is not None:
                found.setdefault((key[0], key[1]), RunReuse()).add(reuse)
    return found, notes


@dataclass
class AnsweredRun:
    """A DAG run whose submit tasks created no batch: every row was answered without one."""

    dag_id: str
    run_id: str
    #: When its first submit task wrote its manifest (ISO 8601): where the run sorts among batches.
    created_at: str
    reuse: RunReuse


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
    total = RunReuse()
    for folder, manifest in manifests:
        reuse, _ = task_reuse(folder, manifest)
        if reuse is not None:
            total.add(reuse)
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


__all__ = ["AnsweredRun", "RunReuse", "answered_run", "answered_runs", "dag_folders", "runs_reuse", "task_reuse"]
