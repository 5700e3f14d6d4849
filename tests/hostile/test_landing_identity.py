"""Landing verifies identity, not counts: each batch's results must hold every custom_id it was
sent exactly once and no other. Oracle: the rows of the Parquet by custom_id, the emulator's
counters, and the error naming the ids."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.land.parts import check_identity
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import run_dag, task_states


def _result(custom_id: str) -> str:
    return json.dumps({"custom_id": custom_id, "result": {"type": "expired"}})


def _request(custom_id: str) -> str:
    return json.dumps({"custom_id": custom_id, "params": {"model": "m", "max_tokens": 1, "messages": []}})


@pytest.mark.parametrize(
    ("returned", "counts", "shown"),
    [
        (["a", "b", "c"], (0, 0, 0), ([], [], [])),
        (["a", "a", "c"], (1, 1, 0), (["b"], ["a"], [])),  # same count: a count check passes it
        (["a", "b", "c", "zz"], (0, 0, 1), ([], [], ["zz"])),
        (["x", "y", "z"], (3, 0, 3), (["a", "b", "c"], [], ["x", "y", "z"])),  # another batch's results
    ],
    ids=["exact", "duplicate-and-missing", "stranger", "foreign-batch"],
)
def test_check_identity_compares_ids_not_counts(
    tmp_path: Path, returned: list[str], counts: tuple[int, int, int], shown: tuple[list[str], ...]
) -> None:
    (tmp_path / "chunk.jsonl").write_text("".join(_request(i) + "\n" for i in "abc"))
    (tmp_path / "raw.jsonl").write_text("".join(_result(i) + "\n" for i in returned))
    record = BatchRecord(chunk=0, round=0, requests_file="chunk.jsonl", request_count=3, body_bytes=0, sha256="")
    record.batch_id = "msgbatch_x"
    check = check_identity(tmp_path, record, record, tmp_path / "raw.jsonl")
    assert check.counts == counts
    assert (check.missing, check.duplicated, check.strangers) == shown
    assert check.ok == (counts == (0, 0, 0))


PIPELINE = """
from airflow.sdk import task

s = ClaudeBatchSubmitOperator(task_id="submit", source=[f"t{{i}}" for i in range(6)], model="claude-haiku-4-5",
                              max_tokens=8, max_requests_per_batch=3)
w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)

@task
def tamper(summary):
    from airflow_provider_claude_batch.batching.state.manifest import load_manifest
    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
    run_dir = __import__("pathlib").Path(summary["manifest"]).parent
    manifest = load_manifest(run_dir)
    first, second = manifest.batches
    if {mode!r} == "corrupt-raw":
        # A saved results file with one custom_id twice and another missing (same count).
        lines = list(ClaudeBatchHook().iter_results_lines(first.batch_id))
        (run_dir / "raw").mkdir(exist_ok=True)
        (run_dir / "raw" / f"{{first.batch_id}}.jsonl").write_bytes(b"\\n".join([lines[0], lines[0], *lines[2:]]) + b"\\n")
    else:
        # Two equal-size chunks pointing at each other's batch: a wrong adoption.
        first.batch_id, second.batch_id = second.batch_id, first.batch_id
        manifest.save(run_dir)

l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={destination!r})
s >> w >> tamper(s.output) >> l
"""


def test_a_corrupted_results_file_is_downloaded_again_and_lands_every_row_once(
    make_dag,
    emulator: RunningEmulator,
    work_dir: Path,
    tmp_path: Path,
) -> None:
    destination = tmp_path / "out"
    dag_run = run_dag(make_dag(PIPELINE.format(mode="corrupt-raw", destination=str(destination))))
    assert task_states(dag_run) == {"submit": "success", "wait": "success", "tamper": "success", "land": "success"}
    ids = pq.read_table(destination, columns=["custom_id"]).column("custom_id").to_pylist()
    assert sorted(ids) == [f"row-{i}" for i in range(6)]  # each exactly once, none lost
    assert emulator.emulator.stats["batches_created"] == 2
    assert emulator.emulator.calls["results"] >= 3  # the tamper read, then the corrupted file downloaded again


def test_results_of_another_batch_never_land(
    make_dag,
    emulator: RunningEmulator,
    work_dir: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    destination = tmp_path / "out"
    dag_run = run_dag(make_dag(PIPELINE.format(mode="swap-batches", destination=str(destination))))
    assert task_states(dag_run)["land"] == "failed"
    # Nothing of it reaches the answer store either: a later run would reuse the wrong answers.
    stored = [p for p in (work_dir / "_answers").rglob("*.parquet") if "_inflight" not in p.parts]
    assert stored == []
    assert not destination.exists()
    printed = "".join(capfd.readouterr())
    assert "its results do not match its requests one to one, also when downloaded again" in printed
    assert "3 missing (e.g. ['row-0', 'row-1', 'row-2'])" in printed
    assert "3 not among its requests (e.g. ['row-3', 'row-4', 'row-5'])" in printed
    assert emulator.emulator.stats["batches_created"] == 2
