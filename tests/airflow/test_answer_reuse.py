"""Answers reused by content across runs: the same requests are never paid for twice.

Real Airflow (``dag.test()``) against the emulator; the emulator's counters (batches created,
requests received) are the oracle for what was paid, the landed Parquet (rows by custom_id)
for what was delivered."""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from airflow_provider_claude_batch.batching.render.content_key import content_keys
from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerStore
from airflow_provider_claude_batch.batching.state.manifest import load_manifest
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import task_states, xcom

DAY = datetime(2026, 11, 24, tzinfo=timezone.utc)

PIPELINE = """
s = ClaudeBatchSubmitOperator(task_id="submit", source={source}, prompt="{{prompt}}", model="claude-haiku-4-5", max_tokens=8,
                              id_column="id", max_requests_per_batch={per_batch}, input_columns=["id", "body"],
                              {extra})
w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={destination!r}, poll_interval=0.1,
                                 keep_columns={{"body": "input_body"}})
s >> w >> l
"""


def _rows(ids: range, *, prefix: str = "ticket") -> list[dict[str, str]]:
    return [{"id": f"r{i}", "body": f"{prefix} {i}", "prompt": f"Label {prefix} {i}"} for i in ids]


def _dag(make_dag: Any, rows: list[dict[str, str]], out: Path, *, per_batch: int = 50, extra: str = "") -> Any:
    return make_dag(
        PIPELINE.format(source=repr(rows), per_batch=per_batch, destination=str(out), extra=extra),
    )


def _run(dag: Any, logical_date: datetime, run_after: datetime) -> Any:
    """A run of ``logical_date`` whose run id depends on ``run_after``: a new run of the same date."""
    return dag.test(logical_date=logical_date, run_after=run_after)


def _landed(path: Path) -> dict[str, dict[str, Any]]:
    rows = ds.dataset(path, format="parquet").to_table().to_pylist()
    assert len(rows) == len({r["custom_id"] for r in rows}), "duplicate custom_ids in the output"
    return {r["custom_id"]: r for r in rows}


def _answers(rows: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {cid: (r["result_type"], r["text"], r["input_body"]) for cid, r in rows.items()}


def test_the_same_date_under_a_new_run_id_creates_no_batch(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path, capfd: Any
) -> None:
    dag = _dag(make_dag, _rows(range(120)), tmp_path / "out", per_batch=50)
    first = _run(dag, DAY, DAY)
    assert task_states(first) == {"submit": "success", "wait": "success", "land": "success"}
    first_rows = _landed(tmp_path / "out")
    assert emulator.emulator.stats["batches_created"] == 3
    calls = dict(emulator.emulator.calls)

    second = _run(dag, DAY, DAY + timedelta(hours=1))
    assert second.run_id != first.run_id
    assert task_states(second) == {"submit": "success", "wait": "success", "land": "success"}
    assert emulator.emulator.stats["batches_created"] == 3  # nothing new billed
    assert emulator.emulator.stats["requests_received"] == 120
    # The sensor and the transfer did not wait: no batch was polled or downloaded again.
    assert {k: emulator.emulator.calls[k] for k in ("retrieve", "list", "results")} == {
        k: calls.get(k, 0) for k in ("retrieve", "list", "results")
    }
    second_rows = _landed(tmp_path / "out")
    assert _answers(second_rows) == _answers(first_rows)
    assert {r["answer_source"] for r in first_rows.values()} == {"new"}
    assert {r["answer_source"] for r in second_rows.values()} == {"reused"}
    assert all(r["cost_usd"] == 0 for r in second_rows.values())
    assert {r["batch_id"] for r in second_rows.values()} == {r["batch_id"] for r in first_rows.values()}

    submitted = xcom(second, "submit")
    assert submitted["batch_ids"] == [] and submitted["rows"] == 120
    manifest = load_manifest(submitted["manifest"])
    assert manifest.reuse is not None
    assert (manifest.reuse["new"], manifest.reuse["reused"], manifest.reuse["deduplicated"]) == (0, 120, 0)
    landed = xcom(second, "land")
    assert landed["by_answer_source"] == {"new": 0, "reused": 120, "deduplicated": 0}
    assert landed["cost_usd"] == 0
    assert landed["reuse_saved_usd"] == round(sum(r["cost_usd"] for r in first_rows.values()), 6) > 0
    # Links without a URL (no batch, no Console for the emulator) read no XCom: no error lines.
    assert "XCom not found" not in capfd.readouterr().out


def test_a_day_holding_most_of_yesterdays_rows_sends_only_the_others(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    day1 = _dag(make_dag, _rows(range(200)), tmp_path / "day1", per_batch=100)
    assert task_states(_run(day1, DAY, DAY))["land"] == "success"
    assert emulator.emulator.stats["requests_received"] == 200

    # Day 2: 180 of day 1's rows (new custom_ids: the key is the content) and 20 new ones.
    rows = [{**row, "id": f"d2-{row['id']}"} for row in _rows(range(20, 200))] + _rows(range(1000, 1020))
    day2 = _dag(make_dag, rows, tmp_path / "day2", per_batch=100)
    run = _run(day2, DAY + timedelta(days=1), DAY + timedelta(days=1))
    assert task_states(run) == {"submit": "success", "wait": "success", "land": "success"}
    assert emulator.emulator.stats["requests_received"] == 220  # only the 20 new rows were sent
    assert emulator.emulator.stats["batches_created"] == 3
    landed = _landed(tmp_path / "day2")
    assert sorted(landed) == sorted(row["id"] for row in rows)  # every row of day 2
    sources = {cid: r["answer_source"] for cid, r in landed.items()}
    assert {sources[f"r{i}"] for i in range(1000, 1020)} == {"new"}
    assert {sources[f"d2-r{i}"] for i in range(20, 200)} == {"reused"}
    assert all(r["result_type"] == "succeeded" and r["text"] for r in landed.values())
    assert landed["d2-r25"]["input_body"] == "ticket 25"


def test_a_thousand_copies_of_one_prompt_are_sent_once(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    rows = [{"id": f"c{i}", "body": f"copy {i}", "prompt": "The same question"} for i in range(1000)]
    run = _run(_dag(make_dag, rows, tmp_path / "out", per_batch=1000), DAY, DAY)
    assert task_states(run)["land"] == "success"
    assert emulator.emulator.stats["requests_received"] == 1
    landed = _landed(tmp_path / "out")
    assert len(landed) == 1000
    assert len({r["text"] for r in landed.values()}) == 1
    assert sorted(r["answer_source"] for r in landed.values()).count("deduplicated") == 999
    assert landed["c999"]["input_body"] == "copy 999"
    summary = xcom(run, "land")
    assert summary["by_answer_source"] == {"new": 1, "reused": 0, "deduplicated": 999}
    assert summary["cost_usd"] == round(landed["c0"]["cost_usd"], 6)
    assert summary["reuse_saved_usd"] == round(999 * landed["c0"]["cost_usd"], 6)


def test_opting_out_sends_everything(make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path) -> None:
    rows = [{"id": f"c{i}", "body": "b", "prompt": "same"} for i in range(10)]
    dag = _dag(make_dag, rows, tmp_path / "out", extra="reuse_answers=False,")
    _run(dag, DAY, DAY)
    run = _run(dag, DAY, DAY + timedelta(hours=1))
    assert task_states(run)["land"] == "success"
    assert emulator.emulator.stats["requests_received"] == 20
    assert {r["answer_source"] for r in _landed(tmp_path / "out").values()} == {"new"}
    assert not (work_dir / "_answers").exists()  # opted out: nothing stored either


def test_answers_older_than_the_max_age_are_sent_again(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    rows = _rows(range(10))
    _run(_dag(make_dag, rows, tmp_path / "a"), DAY, DAY)
    assert emulator.emulator.stats["requests_received"] == 10
    run = _run(_dag(make_dag, rows, tmp_path / "b", extra="answer_max_age=0,"), DAY, DAY + timedelta(hours=1))
    assert task_states(run)["land"] == "success"
    assert emulator.emulator.stats["requests_received"] == 20
    run = _run(_dag(make_dag, rows, tmp_path / "c", extra="answer_max_age='1d',"), DAY, DAY + timedelta(hours=2))
    assert emulator.emulator.stats["requests_received"] == 20
    assert {r["answer_source"] for r in _landed(tmp_path / "c").values()} == {"reused"}


def test_errored_answers_are_not_reused(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    emulator.emulator.script_outcomes({"r3": ["errored:invalid_request_error"]})
    rows = _rows(range(6))
    dag = _dag(make_dag, rows, tmp_path / "out")
    _run(dag, DAY, DAY)
    assert _landed(tmp_path / "out")["r3"]["result_type"] == "errored"
    run = _run(dag, DAY, DAY + timedelta(hours=1))
    assert task_states(run)["land"] == "success"
    assert emulator.emulator.stats["requests_received"] == 7  # r3 sent again, alone
    landed = _landed(tmp_path / "out")
    assert landed["r3"]["answer_source"] == "new" and landed["r3"]["result_type"] == "succeeded"
    assert {landed[f"r{i}"]["answer_source"] for i in (0, 1, 2, 4, 5)} == {"reused"}


def test_the_compaction_task_merges_and_expires_the_store(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    for number, day in enumerate((DAY, DAY + timedelta(days=1))):
        rows = _rows(range(number * 30, number * 30 + 40))
        _run(_dag(make_dag, rows, tmp_path / f"out{number}"), day, day)
    store = AnswerStore(work_dir)
    before = sum(len(files) for files in store.files().values())
    assert before > 16  # two landings, each a file in most partitions

    dag = make_dag(
        "ClaudeBatchCompactAnswersOperator(task_id='compact')",
        header="from airflow_provider_claude_batch.operators.compact_answers import ClaudeBatchCompactAnswersOperator\n",
    )
    run = dag.test(logical_date=DAY, run_after=DAY)
    assert task_states(run) == {"compact": "success"}
    stats = xcom(run, "compact")
    # Day 2's 10 rows of day 1 were reused, not stored again: no duplicates to drop.
    assert (stats["files_before"], stats["answers_kept"], stats["duplicates"], stats["expired"]) == (before, 70, 0, 0)
    assert all(len(files) <= 1 for files in store.files().values())
    keys = content_keys([f'{{"custom_id":"x","params":{p}}}'.encode() for p in _params_of(work_dir)])
    assert store.lookup(keys, max_age=None).count == 70

    expire = make_dag(
        "ClaudeBatchCompactAnswersOperator(task_id='compact', max_age=0)",
        header="from airflow_provider_claude_batch.operators.compact_answers import ClaudeBatchCompactAnswersOperator\n",
    )
    run = expire.test(logical_date=DAY, run_after=DAY)
    assert xcom(run, "compact")["expired"] == 70
    assert sum(len(files) for files in store.files().values()) == 0


def _params_of(work_dir: Path) -> list[str]:
    """The params of every request sent under ``work_dir`` (from the staged chunk files)."""
    params = set()
    for chunk in work_dir.rglob("chunk-*.jsonl"):
        for line in chunk.read_bytes().splitlines():
            params.add(line.split(b',"params":', 1)[1][:-1].decode())
    return sorted(params)


SUBMIT_ONLY = """
ClaudeBatchSubmitOperator(task_id="submit", source={source}, prompt="{{prompt}}", model="claude-haiku-4-5",
                          max_tokens=8, id_column="id", input_columns=["id", "body"])
"""


def test_requests_in_another_runs_open_batch_are_awaited_not_sent_again(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    """Run A has sent its rows and not landed them; run B needs 8 of them: it waits for A's
    batch instead of paying for them, and lands A's answers (r3's errored: B sends that one)."""
    emulator.emulator.script_outcomes({"r3": ["errored:overloaded_error"]})
    emulator.emulator.config.processing_seconds = math.inf
    rows = _rows(range(10))
    other = make_dag(SUBMIT_ONLY.format(source=repr(rows)))
    assert task_states(_run(other, DAY, DAY)) == {"submit": "success"}  # sent, never landed
    assert emulator.emulator.stats["requests_received"] == 10

    def end_once_b_waits() -> None:  # B's transfer polls A's open batch: then it ends
        deadline = time.monotonic() + 120
        while emulator.emulator.calls["list"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        emulator.emulator.end_all()
        emulator.emulator.config.processing_seconds = 0

    threading.Thread(target=end_once_b_waits, daemon=True).start()
    needed = [{**row, "id": f"b-{row['id']}"} for row in rows[:8]] + _rows(range(100, 102))
    run = _run(_dag(make_dag, needed, tmp_path / "b"), DAY, DAY + timedelta(hours=1))
    assert task_states(run) == {"submit": "success", "wait": "success", "land": "success"}
    manifest = load_manifest(xcom(run, "submit")["manifest"])
    assert manifest.reuse is not None
    assert (manifest.reuse["new"], manifest.reuse["awaited"]) == (2, 8)
    assert (manifest.reuse["awaited_answered"], manifest.reuse["awaited_sent"]) == (7, 1)
    # B paid for its 2 new rows and for r3's copy only (A's r3 errored).
    assert emulator.emulator.stats["requests_received"] == 10 + 2 + 1
    landed = _landed(tmp_path / "b")
    assert sorted(landed) == sorted(row["id"] for row in needed)
    assert all(r["result_type"] == "succeeded" for r in landed.values())
    assert {landed[f"b-r{i}"]["answer_source"] for i in (0, 1, 2, 4, 5, 6, 7)} == {"reused"}
    assert landed["b-r3"]["answer_source"] == "new"
    their_batch = load_manifest(work_dir / other.dag_id / _run_id_of(work_dir, other.dag_id) / "submit").batch_ids()
    assert {landed[f"b-r{i}"]["batch_id"] for i in (0, 1, 2)} == set(their_batch)
    assert emulator.emulator.stats["batches_canceled"] == 0  # never another run's batch


def _run_id_of(work_dir: Path, dag_id: str) -> str:
    (run,) = [p.name for p in (work_dir / dag_id).iterdir()]
    return run
