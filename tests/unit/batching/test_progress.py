"""Batch states -> progress lines and summaries (batching/progress.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow_provider_claude_batch.batching.progress import Progress, batch_state, summary_table, total_counts
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.helpers import make_requests


def _state(status: str, **counts: int) -> dict[str, Any]:
    return {"processing_status": status, "request_counts": counts}


def test_batch_state_is_the_json_safe_part_of_a_real_batch(emulator: RunningEmulator) -> None:
    hook = ClaudeBatchHook(retry_backoff=0)
    batch = hook.create_batch(make_requests(3))
    state = batch_state(hook.retrieve_batch(batch.id))
    assert state["processing_status"] == "ended"
    assert state["request_counts"] == {"succeeded": 3, "errored": 0, "expired": 0, "canceled": 0, "processing": 0}
    assert datetime.fromisoformat(state["created_at"]).tzinfo == timezone.utc
    assert state["ended_at"] is not None


def test_totals_add_up_every_batch_and_tolerate_missing_kinds() -> None:
    states = {"a": _state("ended", succeeded=2, errored=1), "b": _state("in_progress", processing=7)}
    assert total_counts(states) == {"succeeded": 2, "errored": 1, "expired": 0, "canceled": 0, "processing": 7}


def test_a_progress_line_estimates_the_time_left_from_the_pace_so_far() -> None:
    progress = Progress(total_batches=2, started_at=1000.0)
    half = {"a": _state("ended", succeeded=5), "b": _state("in_progress", processing=5)}
    line = progress.line(half, now=1060.0)
    assert line.startswith("batches 1/2 ended; requests 5 succeeded, 0 errored, 0 expired, 0 canceled, 5 processing")
    assert "(50.0% done); elapsed 0:01:00; about 0:01:00 left" in line
    assert progress.line({}, now=1000.0).endswith("time left unknown")
    assert progress.line({"a": _state("ended", succeeded=1)}, now=1001.0).endswith("; done")


def test_the_summary_table_has_a_row_per_batch_and_a_total() -> None:
    table = summary_table({"msgbatch_a": _state("ended", succeeded=3), "msgbatch_b": _state("ended", expired=2)})
    rows = table.splitlines()
    assert [row.split()[0] for row in rows[2:]] == ["msgbatch_a", "msgbatch_b", "total"]
    assert rows[-1].split()[1:] == ["3", "0", "2", "0", "0"]
