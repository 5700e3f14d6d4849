"""P11: ten runs sharing one batch queue. Ten submit tasks start together (threads of one
process, each running execute, the queue trigger and resume_feeding as Airflow runs them) and
feed their chunks through an emulator whose queue holds a tenth of their requests and which
processes every batch in a fixed time.

Reported per run: its share of the queue (its request-seconds queued over all runs'), the time
until its first create and until its last (everything sent), and the longest gap between two of
its creates; for all: the feeding time against the ideal (total work / queue size x processing
time), the creates, the queue's refusals and its high-water mark, and the task failures (a
refusal surfaced as an error would be one).

    python -m benchmarks.p11_queue_sharing [RUNS ROWS CHUNK LIMIT SECONDS]   (serve, run, print)
    python -m benchmarks.p11_queue_sharing --smoke
    python -m benchmarks.p11_queue_sharing case URL RUNS ROWS CHUNK          (one measured process)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from benchmarks.common import report, run_case
from benchmarks.emulator_process import API_KEY, emulator_process

#: The reduced shape of "ten runs sharing a 300k queue": ten runs of three 10,000-request chunks
#: through a queue of 30,000 (three chunks at a time, a tenth of the work).
DEFAULT = (10, 30_000, 10_000, 30_000, 3.0)
SMOKE = (10, 300, 100, 300, 0.5)


def _feed(index: int, rows: int, chunk: int, work: Path, start: threading.Barrier, out: dict[str, Any]) -> None:
    """One task: execute, then wait in the trigger and resume until every chunk is sent."""
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator

    operator = ClaudeBatchSubmitOperator(
        task_id="submit",
        source=[f"run{index}-q{i}" for i in range(rows)],
        model="claude-haiku-4-5",
        max_tokens=8,
        work_dir=str(work),
        max_requests_per_batch=chunk,
        reuse_answers=False,
        input_columns=None,
    )
    operator.queue_poll_interval = 0.1
    ti = SimpleNamespace(dag_id="p11", run_id=f"run{index}", task_id="submit", map_index=-1, try_number=1)
    ti.xcom_push = lambda key, value: None
    context = {"ti": ti}
    start.wait()
    out["started"] = time.time()
    try:
        state: Any = None
        steps = 0
        while True:
            steps += 1
            try:
                if state is None:
                    state = operator.execute(context)
                else:
                    event = asyncio.run(_first_event(state.trigger))
                    state = operator.resume_feeding(context, event)
            except TaskDeferred as deferred:
                state = deferred
                continue
            break
        out.update(batch_ids=state["batch_ids"], steps=steps)
    except Exception as exc:  # a failed task: reported, never hidden
        out["error"] = f"{type(exc).__name__}: {exc}"


async def _first_event(trigger: Any) -> dict[str, Any]:
    return (await anext(trigger.run())).payload


def case(runs: int, rows: int, chunk: int) -> dict[str, Any]:
    """Feed ``runs`` runs of ``rows`` requests at once; returns each run's batches and start."""
    work = Path(tempfile.mkdtemp(prefix="p11-"))
    start = threading.Barrier(runs)
    results: list[dict[str, Any]] = [{} for _ in range(runs)]
    threads = [
        threading.Thread(target=_feed, args=(index, rows, chunk, work, start, results[index])) for index in range(runs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"runs": results}


def _batches(base_url: str) -> dict[str, Any]:
    import anthropic

    client = anthropic.Anthropic(api_key=API_KEY, base_url=base_url)
    return {batch.id: batch for batch in client.messages.batches.list(limit=1000)}


def _per_run(run: dict[str, Any], batches: dict[str, Any], end: float) -> dict[str, Any]:
    """One run's figures from its batches (created and ended times, sizes)."""
    mine = sorted((batches[batch_id] for batch_id in run.get("batch_ids", [])), key=lambda b: b.created_at)
    created = [b.created_at.timestamp() for b in mine]
    queued = sum(
        b.request_counts.succeeded * ((b.ended_at.timestamp() if b.ended_at else end) - b.created_at.timestamp())
        for b in mine
    )
    gaps = [later - earlier for earlier, later in itertools.pairwise(created)]
    return {
        "first_create_s": round(created[0] - run["started"], 2) if created else None,
        "all_sent_s": round(created[-1] - run["started"], 2) if created else None,
        "longest_gap_s": round(max(gaps, default=0.0), 2),
        "request_seconds": queued,
        "steps": run.get("steps"),
        "error": run.get("error"),
    }


def measure(runs: int, rows: int, chunk: int, limit: int, seconds: float) -> dict[str, Any]:
    args = ("--queue-limit", str(limit), "--processing-seconds", str(seconds), "--max-requests", str(chunk))
    with emulator_process(*args) as url:
        env = {
            "AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT": json.dumps(
                {"conn_type": "claude_batch", "host": url, "password": API_KEY, "extra": {"queue_limit": limit}}
            )
        }
        result = run_case("benchmarks.p11_queue_sharing", "case", url, str(runs), str(rows), str(chunk), env=env)
        state = httpx.get(f"{url}/_emulator/state", timeout=600).json()
        while state["open_batches"]:  # the last batches end (the emulator processes in real time)
            time.sleep(0.1)
            state = httpx.get(f"{url}/_emulator/state", timeout=600).json()
        batches = _batches(url)
    first = min(b.created_at.timestamp() for b in batches.values())
    end = max((b.ended_at or b.created_at).timestamp() for b in batches.values())
    per_run = [_per_run(run, batches, end) for run in result["runs"]]
    total = sum(run["request_seconds"] for run in per_run) or 1.0
    for run in per_run:
        run["share"] = round(run.pop("request_seconds") / total, 3)
    span, ideal = end - first, runs * rows / limit * seconds
    return {
        "runs": runs,
        "rows_per_run": rows,
        "chunk": chunk,
        "limit": limit,
        "processing_seconds": seconds,
        "feeding_seconds": round(span, 2),
        "ideal_seconds": round(ideal, 2),
        "vs_ideal": round(span / ideal, 3),
        "longest_wait_to_first_create_s": max(run["first_create_s"] or 0 for run in per_run),
        "longest_wait_to_all_sent_s": max(run["all_sent_s"] or 0 for run in per_run),
        "longest_gap_s": max(run["longest_gap_s"] for run in per_run),
        "failed_tasks": sum(1 for run in per_run if run["error"]),
        "creates": state["stats"].get("batches_created", 0),
        "refusals": state["stats"].get("queue_refusals", 0),
        "high_water": state["stats"].get("queue_high_water", 0),
        "peak_rss_mb": round(result["rss_mb"], 1),
        "per_run": per_run,
    }


def main(argv: list[str]) -> None:
    if argv and argv[0] == "case":
        started, cpu = time.perf_counter(), time.process_time()
        figures = case(int(argv[2]), int(argv[3]), int(argv[4]))
        report(figures, started=started, cpu_started=cpu)
        return
    if argv == ["--smoke"]:
        sizes = SMOKE
    elif argv:
        sizes = (int(argv[0]), int(argv[1]), int(argv[2]), int(argv[3]), float(argv[4]))
    else:
        sizes = DEFAULT
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    print(json.dumps(measure(*sizes)))
    print(f"measured {datetime.now().isoformat(timespec='seconds')}")


if __name__ == "__main__":
    main(sys.argv[1:])
