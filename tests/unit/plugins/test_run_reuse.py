"""What the run folders say per DAG run, read from the manifests and landing summaries: rows,
requests sent (every round), reuse counts (awaited rows apart from reused ones) and landings,
summed over a run's submit tasks (mapped ones too), and runs that created no batch at all."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_provider_claude_batch.batching.reuse.plan import ReuseCounts
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord
from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
from airflow_provider_claude_batch.plugins.run_reuse import answered_run, answered_runs, dag_folders, runs_work
from tests.unit.conftest import manifest_of


def _task(
    work_dir: WorkDir,
    run_id: str,
    task_id: str,
    map_index: int,
    counts: ReuseCounts | None,
    batch_id: str | None,
    *,
    landed: bool = True,
    requests: int = 1,
) -> None:
    records = (
        [BatchRecord(0, 0, "requests-1/chunk-00000.jsonl", requests, 10, "s", batch_id=batch_id)] if batch_id else []
    )
    manifest = manifest_of(
        records, run_id=run_id, task_id=task_id, map_index=map_index, reuse=counts and counts.as_dict()
    )
    run_dir = work_dir.run("tickets", run_id, task_id, map_index)
    manifest.save(run_dir)
    if batch_id and landed:
        run_dir.write_atomic(run_dir.landing_summary, json.dumps({"reuse_saved_usd": 0.25}).encode())


def test_reuse_is_summed_per_run_and_runs_without_a_batch_are_found(tmp_path: Path) -> None:
    work_dir = WorkDir(tmp_path)
    _task(work_dir, "run1", "submit", 0, ReuseCounts(rows=10, new=4, reused=5, deduplicated=1), "msgbatch_1")
    _task(work_dir, "run1", "submit", 1, ReuseCounts(rows=6, new=2, reused=4), "msgbatch_2")
    _task(work_dir, "run2", "submit", -1, ReuseCounts(rows=3, reused=2, deduplicated=1), None)
    _task(work_dir, "run3", "submit", -1, None, None)  # reuse_answers=False: it did not look

    found, notes = runs_work(work_dir, [("tickets", "run1", "submit", 0), ("tickets", "run1", "submit", 1)])
    run1 = found[("tickets", "run1")].reuse
    assert notes == [] and run1 is not None and (run1.rows, run1.new, run1.reused, run1.deduplicated) == (16, 6, 9, 1)
    assert run1.rows_reused == 10 and run1.saved_usd == 0.5 and run1.awaited == 0 and run1.awaited_resolved

    assert answered_run(work_dir, "tickets", "run1", "conn") is None  # it has batches: listed with them
    assert answered_run(work_dir, "tickets", "run3", "conn") is None  # did not look
    assert answered_run(work_dir, "tickets", "run2", "other_conn") is None
    run2 = answered_run(work_dir, "tickets", "run2", "conn")
    assert run2 is not None and (run2.reuse.rows, run2.reuse.rows_reused, run2.reuse.saved_usd) == (3, 3, None)

    runs, notes = answered_runs(work_dir, [("tickets", "run2"), ("tickets", "run1"), ("tickets", "gone")], "conn")
    assert [r.run_id for r in runs] == ["run2"] and notes == []
    work_dir.answers_folder.mkdir()
    work_dir.index_folder.mkdir()
    assert dag_folders(work_dir) == ["tickets"]  # never _batches or _answers


def test_rows_requests_sent_and_landings_are_summed_per_run(tmp_path: Path) -> None:
    """Requests sent count every round (a resubmission sends a request again); rows are the
    input rows; a run lands when every submit task has its landing summary."""
    work_dir = WorkDir(tmp_path)
    _task(work_dir, "run1", "submit", 0, None, "msgbatch_1", requests=5)
    _task(work_dir, "run1", "submit", 1, None, "msgbatch_2", requests=5, landed=False)
    run_dir = work_dir.run("tickets", "run1", "submit", 0)
    manifest = json.loads(run_dir.manifest.read_bytes())
    manifest["batches"].append({**manifest["batches"][0], "round": 1, "request_count": 2, "batch_id": "msgbatch_3"})
    run_dir.manifest.write_text(json.dumps(manifest))

    found, notes = runs_work(work_dir, [("tickets", "run1", "submit", 0), ("tickets", "run1", "submit", 1)])
    work = found[("tickets", "run1")]
    assert notes == [] and (work.rows, work.requests_sent, work.rounds) == (10, 12, 2)
    assert (work.tasks, work.landed, work.reuse) == (2, 1, None)


def test_awaited_rows_are_counted_apart_from_reused_ones(tmp_path: Path) -> None:
    """Rows awaited from another run's batch are neither reused nor sent: they are counted as
    awaited, waiting until the transfer resolves them, then answered (or sent after all)."""
    work_dir = WorkDir(tmp_path)
    waiting = ReuseCounts(rows=3000, awaited=3000, awaited_batches=["msgbatch_theirs"])
    _task(work_dir, "run1", "submit", -1, waiting, None)
    resolved = ReuseCounts(rows=3000, awaited=3000, awaited_resolved=True, awaited_answered=3000)
    _task(work_dir, "run2", "submit", -1, resolved, None)

    before = answered_run(work_dir, "tickets", "run1", "conn")
    after = answered_run(work_dir, "tickets", "run2", "conn")
    assert before is not None and after is not None
    assert (before.reuse.rows_reused, before.reuse.awaited, before.reuse.awaited_waiting) == (0, 3000, 3000)
    assert not before.reuse.awaited_resolved
    assert (after.reuse.rows_reused, after.reuse.awaited_answered, after.reuse.awaited_waiting) == (0, 3000, 0)
    assert after.reuse.as_dict()["awaited_waiting"] == 0 and after.work.rows == 3000
