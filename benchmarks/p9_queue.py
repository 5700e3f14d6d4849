"""P9: feeding a run through the organisation's batch queue. The submit operator (execute, the
queue trigger, resume_feeding, as Airflow runs them) sends N requests in chunks through an
emulator whose queue holds a fifth of them and which processes every batch in a fixed time.

Reported: the queue's utilisation over the feeding (requests-seconds queued / limit x time),
the end-to-end feeding time against the ideal (total work / queue size x processing time),
the worker-slot seconds (time spent in execute and resume steps, the waits excluded), the
creates, the refusals and the high-water mark of the queue.

    python -m benchmarks.p9_queue [ROWS CHUNK LIMIT SECONDS]     (serve, run, print)
    python -m benchmarks.p9_queue case URL ROWS CHUNK             (one measured process)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from benchmarks.common import report, run_case
from benchmarks.emulator_process import API_KEY, emulator_process

#: The reduced shape of "2M requests in 100k chunks through a 500k queue": 20 chunks, 5 at once.
DEFAULT = (200_000, 10_000, 50_000, 4.0)
SMOKE = (2_000, 100, 500, 0.5)


def _step(operator: Any, context: Any, deferred: Any, slot: list[float]) -> Any:
    """One step of the task: on a worker (timed, appended to ``slot``: the worker slot) after
    waiting in the trigger (not timed: no slot is held)."""
    from airflow.sdk.exceptions import TaskDeferred

    event = None
    if deferred is not None:
        event = asyncio.run(_first_event(deferred.trigger))
    started = time.perf_counter()
    try:
        return operator.execute(context) if deferred is None else operator.resume_feeding(context, event)
    except TaskDeferred as again:
        return again
    finally:
        slot.append(time.perf_counter() - started)


async def _first_event(trigger: Any) -> dict[str, Any]:
    return (await anext(trigger.run())).payload


def case(base_url: str, rows: int, chunk: int) -> dict[str, Any]:
    """Stage and feed ``rows`` requests; returns the figures (see the module docstring)."""
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator

    work = Path(tempfile.mkdtemp(prefix="p9-"))
    operator = ClaudeBatchSubmitOperator(
        task_id="submit",
        source=[f"q{i}" for i in range(rows)],
        model="claude-haiku-4-5",
        max_tokens=8,
        work_dir=str(work),
        max_requests_per_batch=chunk,
        reuse_answers=False,
        input_columns=None,
    )
    operator.queue_poll_interval = 0.1
    ti = SimpleNamespace(dag_id="p9", run_id="run", task_id="submit", map_index=-1, try_number=1)
    ti.xcom_push = lambda key, value: None
    slot: list[float] = []
    state = _step(operator, {"ti": ti}, None, slot)
    while isinstance(state, TaskDeferred):
        state = _step(operator, {"ti": ti}, state, slot)
    return {
        "first_step_seconds": slot[0],
        "resume_steps_seconds": sum(slot[1:]),
        "steps": len(slot),
        "batches": len(state["batch_ids"]),
    }


def timeline(base_url: str) -> tuple[float, float, float]:
    """From the emulator's batches: (first create, last end, request-seconds queued)."""
    import anthropic

    client = anthropic.Anthropic(api_key=API_KEY, base_url=base_url)
    batches = list(client.messages.batches.list(limit=1000))
    start = min(b.created_at for b in batches)
    end = max(b.ended_at or b.created_at for b in batches)
    queued = sum(
        (b.request_counts.succeeded + b.request_counts.errored) * ((b.ended_at or end) - b.created_at).total_seconds()
        for b in batches
    )
    return start.timestamp(), end.timestamp(), queued


def measure(rows: int, chunk: int, limit: int, seconds: float) -> dict[str, Any]:
    args = ("--queue-limit", str(limit), "--processing-seconds", str(seconds), "--max-requests", str(chunk))
    with emulator_process(*args) as url:
        env = {
            "AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT": json.dumps(
                {"conn_type": "claude_batch", "host": url, "password": API_KEY, "extra": {"queue_limit": limit}}
            )
        }
        result = run_case("benchmarks.p9_queue", "case", url, str(rows), str(chunk), env=env)
        state = httpx.get(f"{url}/_emulator/state", timeout=30).json()
        while state["open_batches"]:  # the last batches end (the emulator processes in real time)
            time.sleep(0.1)
            state = httpx.get(f"{url}/_emulator/state", timeout=30).json()
        start, end, queued = timeline(url)
    span = end - start
    ideal = rows / limit * seconds
    return {
        "rows": rows,
        "chunk": chunk,
        "limit": limit,
        "processing_seconds": seconds,
        "feeding_seconds": round(span, 2),
        "ideal_seconds": round(ideal, 2),
        "vs_ideal": round(span / ideal, 3),
        "utilisation": round(queued / (limit * span), 3),
        "first_step_seconds": round(result["first_step_seconds"], 2),
        "resume_steps_seconds": round(result["resume_steps_seconds"], 2),
        "task_seconds": round(result["seconds"], 2),
        "steps": result["steps"],
        "creates": state["stats"].get("batches_created", 0),
        "refusals": state["stats"].get("queue_refusals", 0),
        "high_water": state["stats"].get("queue_high_water", 0),
        "peak_rss_mb": round(result["rss_mb"], 1),
    }


def main(argv: list[str]) -> None:
    if argv and argv[0] == "case":
        started, cpu = time.perf_counter(), time.process_time()
        figures = case(argv[1], int(argv[2]), int(argv[3]))
        report(figures, started=started, cpu_started=cpu)
        return
    if argv == ["--smoke"]:
        sizes = SMOKE
    elif argv:
        sizes = (int(argv[0]), int(argv[1]), int(argv[2]), float(argv[3]))
    else:
        sizes = DEFAULT
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    print(json.dumps(measure(*sizes)))
    print(f"measured {datetime.now().isoformat(timespec='seconds')}")


if __name__ == "__main__":
    main(sys.argv[1:])
