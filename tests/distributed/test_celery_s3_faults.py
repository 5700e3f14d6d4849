"""Three nights at once on the production shape (CeleryExecutor, two workers, two triggerers,
everything on S3), under faults: S3 slow and failing throughout, the triggerer holding the waits
killed, a Celery worker killed in the middle of a transfer. Then a rerun replaces a partition
while a reader reads it in a loop.

Oracles: the emulator's count of batches created (one per chunk, never more), the custom_ids of
each committed partition (every input id exactly once), and each reader's view of the partition
(always one whole landing)."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from typing import Any

import pytest

from airflow_provider_claude_batch.batching.land.partitions import read_commit, read_partition
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.distributed.conftest import BUCKET, DAG_ID, TRIGGERERS, WORKERS, Deployment, home_logs, write_tickets
from tests.helpers import TEST_API_KEY
from tests.system.stack import wait_until

# One deployment for both tests; its start (a PostgreSQL migration, nine Airflow processes on two
# cores) and the faults' detection times (10 s without a heartbeat, 8 s without a triggerer)
# set the pace, not the work.
pytestmark = [pytest.mark.distributed, pytest.mark.timeout(600)]

DAYS = ("2026-11-01", "2026-11-02", "2026-11-03")
ROWS = 600  # 3 batches of at most 250 per night
BATCHES_PER_NIGHT = 3


def wait_ti(deployment: Deployment, run_id: str) -> dict[str, Any]:
    return deployment.stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/wait")


def triggerer_names(deployment: Deployment) -> dict[int, str]:
    jobs = deployment.stack.api("GET", "/jobs", params={"job_type": "TriggererJob", "limit": 100})["jobs"]
    return {job["id"]: job["hostname"] for job in jobs}


def holders(deployment: Deployment, run_ids: dict[str, str]) -> dict[str, str | None]:
    """run_id -> the name of the triggerer running its wait's trigger."""
    names = triggerer_names(deployment)
    result = {}
    for run_id in run_ids.values():
        trigger = wait_ti(deployment, run_id).get("trigger") or {}
        result[run_id] = names.get(trigger.get("triggerer_id"))
    return result


def test_three_nights_survive_a_lost_triggerer_a_lost_worker_and_a_flaky_s3(
    deployment: Deployment, emulator: RunningEmulator
) -> None:
    stack, proxy, emu = deployment.stack, deployment.proxy, emulator.emulator
    inputs = {day: write_tickets(deployment, day, ROWS) for day in DAYS}
    emu.config.processing_seconds = math.inf  # the batches end when the test says so
    proxy.latency_seconds, proxy.fail_every = 0.01, 8  # S3 slow, and every 8th request fails once

    started = time.monotonic()
    run_ids = {day: stack.trigger(DAG_ID, f"{day}T00:00:00Z") for day in DAYS}

    # 1. All three waits deferred, polled by the triggerers.
    wait_until(
        lambda: all(wait_ti(deployment, r)["state"] == "deferred" for r in run_ids.values()) and emu.calls["list"] >= 3,
        timeout=120,
        what="the three sensors to defer and be polled",
    )
    assert emu.stats["batches_created"] == len(DAYS) * BATCHES_PER_NIGHT
    # API calls per poll: every trigger on one triggerer shares one `list` page per poll.
    calls, polls_started = Counter(emu.calls), time.monotonic()
    wait_until(lambda: emu.calls["list"] >= calls["list"] + 6, timeout=60, what="six more polls")
    window = time.monotonic() - polls_started
    per_poll = {name: (emu.calls[name] - calls[name]) * 1.0 / window for name in ("list", "retrieve")}

    # 2. The triggerer holding (most of) the waits is lost; the other takes them over.
    held = holders(deployment, run_ids)
    lost = Counter(h for h in held.values() if h).most_common(1)[0][0]
    (survivor,) = [t for t in TRIGGERERS if t != lost]
    stack.kill_component(lost)
    wait_until(
        lambda: set(holders(deployment, run_ids).values()) == {survivor},
        timeout=90,
        what=f"{survivor} to take over the triggers of {lost}",
    )
    polls = emu.calls["list"]
    wait_until(lambda: emu.calls["list"] > polls, timeout=30, what=f"{survivor} to poll")
    assert {wait_ti(deployment, r)["state"] for r in run_ids.values()} == {"deferred"}

    # 3. The batches end; a worker is lost in the middle of a transfer (slow downloads make the
    # transfer last long enough to be caught with a raw results file saved but nothing landed).
    emu.config.latency_seconds = 0.25
    emu.end_all()
    victim_run = run_ids[DAYS[0]]
    s3 = deployment.s3()

    def transfer_in_flight() -> str | None:
        land = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{victim_run}/taskInstances/land")
        raw = s3.glob(f"{BUCKET}/_claude_batch/{DAG_ID}/{victim_run}/submit/raw/*.jsonl")
        s3.invalidate_cache()
        if land["state"] == "running" and land["hostname"] in WORKERS and raw:
            return str(land["hostname"])
        return None

    worker = wait_until(transfer_in_flight, timeout=120, interval=0.2, what="the transfer of the first night to run")
    assert not s3.exists(f"{BUCKET}/labels/ds={DAYS[0]}/_commit.json")
    stack.kill_component(worker)
    emu.config.latency_seconds = 0.0

    finals = {day: stack.wait_for_run(DAG_ID, run_id, timeout=180) for day, run_id in run_ids.items()}
    wall_seconds = time.monotonic() - started
    assert finals == dict.fromkeys(DAYS, "success"), deployment.diagnostics()

    # The oracles: no batch created twice, every row exactly once in each committed partition.
    assert emu.stats["batches_created"] == len(DAYS) * BATCHES_PER_NIGHT
    for day in DAYS:
        table = read_partition(deployment.s3_path(f"s3://{BUCKET}/labels/ds={day}/"))
        ids = table.column("custom_id").to_pylist()
        assert len(ids) == len(set(ids)) == ROWS, day
        assert sorted(ids) == sorted(inputs[day]), day
        assert table.column("ticket_id").to_pylist() == ids
    land = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{victim_run}/taskInstances/land")
    assert land["try_number"] >= 2 and land["hostname"] != worker, land
    assert proxy.faults > 0
    for log in home_logs(deployment):
        assert TEST_API_KEY.encode() not in log.read_bytes(), log

    print(
        f"\nDISTRIBUTED: deployment up in {deployment.started_in_seconds:.0f} s; three nights of {ROWS} rows "
        f"in {wall_seconds:.0f} s with a triggerer and a worker lost; API calls per 1 s poll while 3 waits "
        f"(9 batches) were deferred on {len(set(held.values()))} triggerer(s): {per_poll}; "
        f"S3 requests {proxy.requests}, faults {proxy.faults}"
    )


def test_a_reader_never_sees_a_mix_while_a_rerun_replaces_the_partition(deployment: Deployment) -> None:
    """Runs after the nights above: clear the first night's transfer while a reader reads its
    partition from S3 in a loop."""
    stack, emu = deployment.stack, deployment.emulator.emulator
    partition = deployment.s3_path(f"s3://{BUCKET}/labels/ds={DAYS[0]}/")
    before = read_commit(partition)
    assert before is not None, "the first test lands this partition"
    created = emu.stats["batches_created"]
    expected = sorted(f"T{DAYS[0].replace('-', '')}-{i:05d}" for i in range(ROWS))
    (run,) = [
        r for r in stack.api("GET", f"/dags/{DAG_ID}/dagRuns")["dag_runs"] if r["logical_date"].startswith(DAYS[0])
    ]
    versions: list[str] = []
    errors: list[BaseException] = []
    rerunning = threading.Event()
    rerunning.set()

    def reader() -> None:
        try:
            while rerunning.is_set():
                table = read_partition(partition, columns=["custom_id"], attempts=20)
                assert sorted(table.column("custom_id").to_pylist()) == expected
                versions.append(read_commit(partition)["version"])
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        stack.api(
            "POST",
            f"/dags/{DAG_ID}/clearTaskInstances",
            json={"dry_run": False, "task_ids": ["land"], "dag_run_id": run["dag_run_id"], "only_failed": False},
        )
        wait_until(
            lambda: (
                (read_commit(partition) or {}).get("version") != before["version"]
                and stack.run_state(DAG_ID, run["dag_run_id"]) == "success"
            ),
            timeout=120,
            what="the rerun of the transfer to commit",
        )
    finally:
        rerunning.clear()
        thread.join(timeout=60)
    assert not errors, errors[0]
    assert len(versions) >= 3 and versions[0] == before["version"] != versions[-1], versions
    assert emu.stats["batches_created"] == created
