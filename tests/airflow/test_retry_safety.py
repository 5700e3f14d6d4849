"""Never bill twice, never lose a row: rounds, retries in every phase, orphans, cancellation,
backfill-safe output. Real Airflow (``dag.test()``) against the emulator; its counters are the
oracle for "no duplicate batch"."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.dataset as ds

from airflow_provider_claude_batch.batching.state.manifest import load_manifest
from airflow_provider_claude_batch.testing import Fault, RunningEmulator
from tests.airflow.conftest import run_dag, task_states, xcom


def _landed(path: Path) -> dict[str, dict]:
    table = ds.dataset(path, format="parquet").to_table()
    rows = table.to_pylist()
    assert len(rows) == len({r["custom_id"] for r in rows}), "duplicate custom_ids in the output"
    return {r["custom_id"]: r for r in rows}


PIPELINE = """
s = ClaudeBatchSubmitOperator(task_id="submit", source=[f"t{{i}}" for i in range({rows})], model="claude-haiku-4-5",
                              max_tokens=8, max_requests_per_batch={per_batch}, retries={retries}, retry_delay=0)
w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1, retries={retries}, retry_delay=0)
l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={destination!r}, poll_interval=0.1,
                                 max_retry_rounds={rounds}, retries={retries}, retry_delay=0)
s >> w >> l
"""


def _pipeline(make_dag, out: Path, *, rows: int = 6, per_batch: int = 4, retries: int = 0, rounds: int = 2):
    return make_dag(
        PIPELINE.format(rows=rows, per_batch=per_batch, retries=retries, destination=str(out), rounds=rounds)
    )


def test_transient_failures_are_resubmitted_in_rounds(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    emulator.emulator.script_outcomes(
        {
            "row-0": ["errored:overloaded_error", "errored:api_error"],  # succeeds in round 2
            "row-1": ["expired", "expired", "expired"],  # still expired after the last round
            "row-2": ["errored:invalid_request_error"],  # never resubmitted
            "row-5": ["errored:rate_limit_error"],  # succeeds in round 1 (other chunk)
        }
    )
    dag_run = run_dag(_pipeline(make_dag, tmp_path / "out"))
    assert task_states(dag_run) == {"submit": "success", "wait": "success", "land": "success"}
    rows = _landed(tmp_path / "out")
    assert sorted(rows) == [f"row-{i}" for i in range(6)]
    assert (rows["row-0"]["result_type"], rows["row-0"]["round"]) == ("succeeded", 2)
    assert (rows["row-1"]["result_type"], rows["row-1"]["round"]) == ("expired", 2)
    assert (rows["row-2"]["result_type"], rows["row-2"]["error_type"], rows["row-2"]["round"]) == (
        "errored",
        "invalid_request_error",
        0,
    )
    assert (rows["row-5"]["result_type"], rows["row-5"]["round"]) == ("succeeded", 1)
    assert all(rows[f"row-{i}"]["round"] == 0 for i in (3, 4))
    # round 0: 2 chunks; round 1: both chunks (row-0,row-1 | row-5); round 2: chunk 0 only (row-0,row-1)
    assert emulator.emulator.stats["batches_created"] == 5
    assert emulator.emulator.stats["requests_received"] == 6 + 3 + 2
    landed = xcom(dag_run, "land")
    assert landed["rounds"] == 3 and landed["resubmitted_requests"] == 5
    manifest = load_manifest(xcom(dag_run, "submit")["manifest"])
    assert sorted((b.round, b.chunk, b.request_count) for b in manifest.batches) == [
        (0, 0, 4),
        (0, 1, 2),
        (1, 0, 2),
        (1, 1, 1),
        (2, 0, 2),
    ]


def test_no_rounds_when_disabled(make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path) -> None:
    emulator.emulator.script_outcomes({"row-0": "expired"})
    run_dag(_pipeline(make_dag, tmp_path / "out", rounds=0))
    assert _landed(tmp_path / "out")["row-0"]["result_type"] == "expired"
    assert emulator.emulator.stats["batches_created"] == 2


def test_retry_after_a_create_failure_creates_only_the_missing_batches(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    # Chunk 0 is created, then the create of chunk 1 is rejected (400: not retried by the
    # hook) and the task fails half-way. Its retry re-attaches to chunk 0's batch.
    emulator.emulator.inject(Fault("create", status=400, skip=1))
    dag_run = run_dag(_pipeline(make_dag, tmp_path / "out", retries=1))
    assert task_states(dag_run) == {"submit": "success", "wait": "success", "land": "success"}
    assert emulator.emulator.calls["create"] == 3
    assert emulator.emulator.stats["batches_created"] == 2
    assert sorted(_landed(tmp_path / "out")) == [f"row-{i}" for i in range(6)]


def test_retry_after_poll_failures_waits_on_the_same_batches(
    make_dag, emulator: RunningEmulator, work_dir: Path
) -> None:
    dag = make_dag(
        """
        s = ClaudeBatchSubmitOperator(task_id="submit", source=["a", "b"], model="claude-haiku-4-5", max_tokens=8)
        w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.05, max_poll_errors=2, retries=1, retry_delay=0)
        s >> w
        """
    )
    # Each call fails three times (the SDK retries twice): the sensor's check before
    # deferring (a retrieve), then three polls of the trigger (list pages), which ends the
    # first try.
    emulator.emulator.inject(Fault("retrieve", status=500, times=3, retry_after=0.001))
    emulator.emulator.inject(Fault("list", status=500, times=9, retry_after=0.001))
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"submit": "success", "wait": "success"}
    assert emulator.emulator.stats["faults_fired"] == 12
    assert dag_run.get_task_instance("wait").try_number == 2
    assert emulator.emulator.stats["batches_created"] == 1


def test_retry_after_a_broken_results_download(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    emulator.emulator.inject(Fault("results", drop_after_bytes=10, times=5))  # all 5 attempts of the first try
    dag_run = run_dag(_pipeline(make_dag, tmp_path / "out", rows=3, per_batch=10, retries=1))
    assert task_states(dag_run)["land"] == "success"
    assert emulator.emulator.stats["results_dropped"] == 5
    assert sorted(_landed(tmp_path / "out")) == ["row-0", "row-1", "row-2"]
    assert emulator.emulator.stats["batches_created"] == 1


def test_retry_after_a_write_failure(make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the output's parent folder should be")
    dag = _pipeline(make_dag, blocker / "out", rows=3, per_batch=10)
    first = run_dag(dag)
    assert task_states(first)["land"] == "failed"
    blocker.unlink()
    second = run_dag(dag)  # a clear of the whole run
    assert task_states(second)["land"] == "success"
    assert sorted(_landed(blocker / "out")) == ["row-0", "row-1", "row-2"]
    assert emulator.emulator.stats["batches_created"] == 1
    assert emulator.emulator.calls["results"] == 1  # the raw results saved by the first try were reused


def test_changed_input_fails_unless_resubmit_is_asked(make_dag, emulator: RunningEmulator, work_dir: Path) -> None:
    body = """
    ClaudeBatchSubmitOperator(task_id="submit", source={source}, model="claude-haiku-4-5", max_tokens=8,
                              on_input_change={policy!r})
    """
    make_dag(body.format(source='["a", "b"]', policy="fail"), dag_id="changing_input")
    run_dag(make_dag(body.format(source='["a", "b"]', policy="fail"), dag_id="changing_input"))
    changed = run_dag(make_dag(body.format(source='["a", "B"]', policy="fail"), dag_id="changing_input"))
    assert task_states(changed) == {"submit": "failed"}
    assert emulator.emulator.stats["batches_created"] == 1
    emulator.emulator.config.processing_seconds = math.inf
    resubmitted = run_dag(make_dag(body.format(source='["a", "B"]', policy="resubmit"), dag_id="changing_input"))
    assert task_states(resubmitted) == {"submit": "success"}
    assert emulator.emulator.stats["batches_created"] == 2
    manifest = load_manifest(xcom(resubmitted, "submit")["manifest"])
    assert manifest.notes and "input changed" in manifest.notes[0]


def test_sensor_timeout_cancels_the_batches(make_dag, emulator: RunningEmulator, work_dir: Path) -> None:
    emulator.emulator.config.processing_seconds = math.inf
    dag = make_dag(
        """
        s = ClaudeBatchSubmitOperator(task_id="submit", source=["a", "b", "c"], model="claude-haiku-4-5", max_tokens=8,
                                      max_requests_per_batch=2)
        w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1, timeout=0.5)
        s >> w
        """
    )
    assert task_states(run_dag(dag)) == {"submit": "success", "wait": "failed"}
    assert emulator.emulator.stats["batches_canceled"] == 2


def test_backfill_twice_creates_no_new_batches_and_identical_output(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    dag = make_dag(
        f"""
        s = ClaudeBatchSubmitOperator(task_id="submit", source=["{{{{ ds }}}} a", "{{{{ ds }}}} b", "{{{{ ds }}}} c"],
                                      model="claude-haiku-4-5", max_tokens=8, max_requests_per_batch=2,
                                      reuse_answers=False)  # re-attach by manifest, not reuse by content
        w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
        l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination="{tmp_path}/out/ds={{{{ ds }}}}")
        s >> w >> l
        """
    )
    days = [datetime(2026, 11, d, tzinfo=timezone.utc) for d in (1, 2, 3)]

    def backfill() -> dict[str, dict]:
        for day in days:
            assert set(task_states(run_dag(dag, day)).values()) == {"success"}
        return {p.name: _landed(p) for p in sorted((tmp_path / "out").iterdir())}

    first = backfill()
    created = emulator.emulator.stats["batches_created"]
    second = backfill()
    assert created == 6
    assert emulator.emulator.stats["batches_created"] == created
    assert first == second
    assert sorted(first) == ["ds=2026-11-01", "ds=2026-11-02", "ds=2026-11-03"]
    assert {r["text"] is not None for part in first.values() for r in part.values()} == {True}
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no staging left behind


def test_crash_between_create_and_record_is_recovered_without_a_second_batch(
    make_dag, emulator: RunningEmulator, work_dir: Path, airflow_db: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.system.stack import wait_until

    dag = make_dag(
        """
        ClaudeBatchSubmitOperator(task_id="submit", source=[f"t{i}" for i in range(5)], model="claude-haiku-4-5",
                                  max_tokens=8, max_requests_per_batch=3)
        """,
        dag_id="orphan_recovery",
    )
    # The second create commits on the server, then its answer hangs: kill the worker there.
    emulator.emulator.inject(Fault("create", after_commit=True, delay_seconds=60, skip=1))
    day = "2026-11-01T00:00:00+00:00"
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.airflow.dag_test_process", dag.fileloc, dag.dag_id, day],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: emulator.emulator.stats["batches_created"] == 2,
            # A fresh process starting Airflow: slow when the suite's other worker loads the machine.
            timeout=240,
            interval=0.05,
            what="the second create",
        )
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    emulator.emulator.clear_faults()
    orphan = emulator.emulator.batch_ids()[-1]
    manifest_path = work_dir / "orphan_recovery" / "manual__2026-11-01T00:00:00+00:00" / "submit" / "manifest.json"
    crashed = load_manifest(manifest_path)
    assert crashed.batches[1].intent_at is not None and crashed.batches[1].batch_id is None  # the orphan window

    dag_run = run_dag(dag, datetime(2026, 11, 1, tzinfo=timezone.utc))
    assert task_states(dag_run) == {"submit": "success"}
    assert emulator.emulator.stats["batches_created"] == 2
    assert load_manifest(manifest_path).batches[1].batch_id == orphan
