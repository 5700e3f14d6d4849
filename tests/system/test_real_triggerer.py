"""A real deployment (api-server, scheduler, dag-processor, triggerer as processes): the sensor
defers to the triggerer, survives a triggerer restart, and a kill cancels the batches."""

from __future__ import annotations

import math
import shutil

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.testing import RunningEmulator
from tests.helpers import TEST_API_KEY
from tests.system.conftest import tickets as _tickets
from tests.system.stack import AirflowStack, wait_until

DAG_ID = "claude_batch_support_tickets"
POKE_DAG_ID = "claude_batch_poke_sensor"

pytestmark = pytest.mark.system


def test_sensor_waits_deferred_in_a_real_triggerer(stack: AirflowStack, emulator: RunningEmulator) -> None:
    tickets = _tickets(stack, "2026-11-02", 2_100)
    # The batches end only when the test says so, after the trigger was seen polling: with a
    # fixed processing time, a loaded machine could defer the sensor after the batches ended.
    emulator.emulator.config.processing_seconds = math.inf
    run_id = stack.trigger(DAG_ID, "2026-11-02T00:00:00Z")

    def wait_logs() -> str:
        return "".join(
            p.read_text(errors="replace")
            for p in (stack.home / "logs").rglob("*")
            if p.is_file() and run_id in str(p) and "task_id=wait" in str(p)
        )

    # Each time the sensor is seen deferred, note how many polls the emulator had received.
    polls_while_deferred: list[int] = []

    def polled_while_deferred() -> bool:
        if stack.task_states(DAG_ID, run_id).get("wait") == "deferred":
            polls_while_deferred.append(emulator.emulator.calls["list"])
        # The trigger's progress lines land in the sensor's task log (what the UI shows while deferred).
        polled = len(polls_while_deferred) >= 2 and polls_while_deferred[-1] > polls_while_deferred[0]
        return polled and wait_logs().count("% done); elapsed") >= 2

    wait_until(polled_while_deferred, timeout=180, interval=0.5, what="the triggerer to poll the deferred sensor")
    stack.wait_deferred(DAG_ID, run_id, "wait")
    emulator.emulator.end_all()
    final = stack.wait_for_run(DAG_ID, run_id)
    assert final == "success", stack.log_tail("scheduler") + stack.log_tail("triggerer")
    assert "batches 3/3 ended" in wait_logs()

    output = ds.dataset(stack.lake / "support" / "ticket_labels" / "ds=2026-11-02", format="parquet").to_table()
    assert output.num_rows == 2_100
    assert sorted(output.column("custom_id").to_pylist()) == sorted(tickets.column("ticket_id").to_pylist())
    assert emulator.emulator.stats["batches_created"] == 3
    for log in (stack.home / "logs").rglob("*"):
        if log.is_file():
            assert TEST_API_KEY.encode() not in log.read_bytes(), log


def test_the_wait_survives_a_triggerer_restart(stack: AirflowStack, emulator: RunningEmulator) -> None:
    _tickets(stack, "2026-11-03", 1_500)
    emulator.emulator.config.processing_seconds = math.inf
    run_id = stack.trigger(DAG_ID, "2026-11-03T00:00:00Z")
    wait_until(
        lambda: stack.task_states(DAG_ID, run_id).get("wait") == "deferred" and emulator.emulator.calls["list"] >= 2,
        timeout=120,
        what="the sensor to defer and the trigger to poll",
    )
    stack.wait_deferred(DAG_ID, run_id, "wait")
    stack.stop_component("triggerer")
    polls_before = emulator.emulator.calls["list"]
    stack.start_component("triggerer")
    wait_until(lambda: emulator.emulator.calls["list"] > polls_before, timeout=120, what="the new triggerer to poll")
    assert stack.task_states(DAG_ID, run_id)["wait"] == "deferred"
    emulator.emulator.end_all()
    assert stack.wait_for_run(DAG_ID, run_id) == "success"
    assert emulator.emulator.stats["batches_created"] == 2


def test_killing_a_deferred_sensor_cancels_its_batches(stack: AirflowStack, emulator: RunningEmulator) -> None:
    _tickets(stack, "2026-11-04", 1_200)
    emulator.emulator.config.processing_seconds = math.inf
    run_id = stack.trigger(DAG_ID, "2026-11-04T00:00:00Z")
    wait_until(lambda: stack.task_states(DAG_ID, run_id).get("wait") == "deferred", timeout=120, what="the deferral")
    polls = emulator.emulator.calls["list"]
    wait_until(lambda: emulator.emulator.calls["list"] > polls, timeout=60, what="the trigger to run")
    stack.set_task_state(DAG_ID, run_id, "wait", "failed")
    wait_until(
        lambda: emulator.emulator.stats["batches_canceled"] == 2, timeout=60, what="the trigger's on_kill to cancel"
    )
    assert stack.wait_for_run(DAG_ID, run_id) == "failed"


def test_killing_a_poking_sensor_cancels_its_batches(stack: AirflowStack, emulator: RunningEmulator) -> None:
    emulator.emulator.config.processing_seconds = math.inf
    run_id = stack.trigger(POKE_DAG_ID, "2026-11-05T00:00:00Z")
    wait_until(
        lambda: (
            stack.task_states(POKE_DAG_ID, run_id).get("wait") == "running" and emulator.emulator.calls["retrieve"] >= 1
        ),
        timeout=120,
        what="the sensor to poke",
    )
    stack.set_task_state(POKE_DAG_ID, run_id, "wait", "failed")
    wait_until(lambda: emulator.emulator.stats["batches_canceled"] == 1, timeout=60, what="on_kill to cancel")


BACKFILL_DAG_ID = "claude_batch_review_backfill"


# Two whole backfills of three runs each: on two cores shared with the suite's other worker this
# outlasts the suite's default 300 s; each wait inside has its own bound.
@pytest.mark.timeout(600)
def test_running_the_same_backfill_twice_creates_nothing_new(stack: AirflowStack, emulator: RunningEmulator) -> None:
    """Three days run at once (``--max-active-runs 3``); the third day holds the first day's
    tickets, so two runs plan the same 40 requests within a second of each other: whichever
    plans first sends them, the other awaits its batch (through its claim when they plan at the
    same moment; the deterministic case is tests/unit/batching/reuse/test_claims.py). Then the whole
    backfill again creates nothing new."""
    days = ["2026-10-06", "2026-10-07", "2026-10-08"]
    for day in days[:2]:
        _tickets(stack, day, 40)
    repeated = stack.lake / "support" / "tickets" / f"ds={days[2]}"
    repeated.mkdir(parents=True)
    shutil.copy(stack.lake / "support" / "tickets" / f"ds={days[0]}" / "tickets.parquet", repeated)
    # Long enough that the sensors are seen deferred by the scheduler before their trigger fires: a
    # trigger firing first makes Airflow retry the sensor ("state changed externally").
    emulator.emulator.config.processing_seconds = 10
    wait_until(lambda: stack.has_dag(BACKFILL_DAG_ID), timeout=90, what="the backfill DAG to be parsed")

    def backfill(*extra: str) -> dict[str, bytes]:
        assert not stack.active_backfills(BACKFILL_DAG_ID)
        # The DAG is scheduled (@daily, no catchup): unpaused, the scheduler also starts a run of
        # today, which fails (no tickets for today) and retries. It is left out of what is checked
        # (only backfill runs are read, and only the backfill's days may land); created while
        # the DAG is paused, the backfill's runs do not compete with that run for the SQLite lock.
        stack.api("PATCH", f"/dags/{BACKFILL_DAG_ID}", json={"is_paused": True})
        stack.create_backfill(
            BACKFILL_DAG_ID,
            "--from-date",
            days[0],
            "--to-date",
            days[-1],
            "--max-active-runs",
            "3",
            *extra,
        )
        stack.api("PATCH", f"/dags/{BACKFILL_DAG_ID}", json={"is_paused": False})

        def done() -> bool:
            runs = stack.api("GET", f"/dags/{BACKFILL_DAG_ID}/dagRuns", params={"run_type": "backfill"})["dag_runs"]
            return len(runs) == 3 and all(r["state"] in ("success", "failed") for r in runs) and runs

        runs = wait_until(done, timeout=240, interval=1, what="the backfill runs")
        assert {r["state"] for r in runs} == {"success"}, stack.log_tail("scheduler")

        wait_until(
            lambda: not stack.active_backfills(BACKFILL_DAG_ID),
            timeout=60,
            what="the scheduler to mark the backfill complete",
        )
        root = stack.lake / "support" / "ticket_summaries"
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}

    first = backfill()
    created = emulator.emulator.stats["batches_created"]
    assert created == 2, "the repeated day's requests were sent twice"
    assert emulator.emulator.stats["requests_received"] == 80
    second = backfill("--reprocess-behavior", "completed")
    assert emulator.emulator.stats["batches_created"] == created
    assert first == second
    assert sorted(first) == [f"ds={day}/part-00000.parquet" for day in days]
    # The repeated day landed every one of its rows, with the answers the first day paid for.
    first_day, repeated_day = (
        pq.read_table(pa.BufferReader(first[f"ds={day}/part-00000.parquet"])).sort_by("ticket_id")
        for day in (days[0], days[2])
    )
    assert repeated_day.num_rows == 40
    assert repeated_day.column("ticket_id").equals(first_day.column("ticket_id"))
    assert repeated_day.column("text").equals(first_day.column("text"))
