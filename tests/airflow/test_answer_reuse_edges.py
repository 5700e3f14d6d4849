"""Answer reuse under hostile conditions: mapped tasks, typed answers, resubmission rounds,
clears and retries, odd column choices, object storage, bad parameters.

Real Airflow (``dag.test()``) against the emulator over HTTP. Oracles: the emulator's counters
(batches created, requests received) for what was paid, the landed Parquet by custom_id for
what was delivered, the answer store's files for what was kept."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerStore
from airflow_provider_claude_batch.batching.state.manifest import load_manifest
from airflow_provider_claude_batch.exceptions import ClaudeBatchParameterError
from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import task_states, xcom

DAY = datetime(2026, 11, 24, tzinfo=timezone.utc)
SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["Billing", "Technical", "Other"]}, "confidence": {"type": "number"}},
    "required": ["label", "confidence"],
}


def _pipeline(
    rows: Any,
    out: Path,
    *,
    submit: str = "",
    land: str = "",
    keep: Any = None,
    input_columns: Any = ("id", "body"),
    per_batch: int = 50,
    wait: str = "",
) -> str:
    input_columns = list(input_columns) if isinstance(input_columns, tuple) else input_columns
    return f"""
    s = ClaudeBatchSubmitOperator(task_id="submit", source={rows!r}, prompt="{{prompt}}", model="claude-haiku-4-5",
                                  max_tokens=400, id_column="id", max_requests_per_batch={per_batch},
                                  input_columns={input_columns!r}, {submit})
    w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1, {wait})
    l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={str(out)!r}, poll_interval=0.1,
                                     keep_columns={keep!r}, {land})
    s >> w >> l
    """


def _rows(ids: Any, *, prefix: str = "ticket", id_prefix: str = "r") -> list[dict[str, str]]:
    return [{"id": f"{id_prefix}{i}", "body": f"{prefix} {i}", "prompt": f"Label {prefix} {i}"} for i in ids]


def _run(dag: Any, run_after: datetime = DAY) -> Any:
    return dag.test(logical_date=DAY, run_after=run_after)


def _landed(path: Path) -> dict[str, dict[str, Any]]:
    rows = ds.dataset(path, format="parquet").to_table().to_pylist()
    assert len(rows) == len({r["custom_id"] for r in rows}), "duplicate custom_ids in the output"
    return {r["custom_id"]: r for r in rows}


def _stored(work_dir: Path) -> list[dict[str, Any]]:
    """Every answer in the answer store (each file, each row), with its file name."""
    rows = []
    for path in sorted((work_dir / "_answers").glob("p=*/*.parquet")):
        for row in pq.read_table(path, columns=["key", "custom_id", "text"]).to_pylist():
            rows.append({**row, "file": path.name})
    return rows


def _stats(emulator: RunningEmulator) -> tuple[int, int]:
    return emulator.emulator.stats["batches_created"], emulator.emulator.stats["requests_received"]


# ---------------------------------------------------------------------- mapped submit
def _mapped_sharing_dag(make_dag: Any, tmp_path: Path) -> tuple[Any, list[list[dict[str, str]]]]:
    """Submit, wait and land mapped over two inputs that share ten rows (map index 0: five more,
    1: eight more), each map index landing into ``out/part=<index>``. Returns the DAG and the two inputs."""
    shared = _rows(range(10), prefix="shared")
    inputs = [shared + _rows(range(100, 105), id_prefix="a"), shared + _rows(range(200, 208), id_prefix="b")]
    dag = make_dag(
        f"""
        s = ClaudeBatchSubmitOperator.partial(task_id="submit", prompt="{{prompt}}", model="claude-haiku-4-5",
                                              max_tokens=8, id_column="id").expand(source={inputs!r})
        w = ClaudeBatchSensor.partial(task_id="wait", poll_interval=0.1).expand(manifest=s.output)
        l = ClaudeBatchToParquetOperator.partial(task_id="land", poll_interval=0.1,
                                                 destination={str(tmp_path)!r} + "/out/part={{{{ ti.map_index }}}}",
                                                 keep_columns=["body"]).expand(manifest=s.output)
        w >> l
        """
    )
    return dag, inputs


def test_mapped_submits_sharing_rows_land_every_row_and_store_each_answer_once(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    dag, inputs = _mapped_sharing_dag(make_dag, tmp_path)
    run = _run(dag)
    assert {(ti.task_id, ti.map_index, str(ti.state)) for ti in run.get_task_instances()} == {
        (task, index, "success") for task in ("submit", "wait", "land") for index in (0, 1)
    }
    # One batch per map index, and the shared rows sent once (the second index awaits the first's).
    assert _stats(emulator) == (2, 10 + 5 + 8)
    for index, rows in enumerate(inputs):
        landed = _landed(tmp_path / "out" / f"part={index}")
        assert sorted(landed) == sorted(row["id"] for row in rows)
        assert {r["result_type"] for r in landed.values()} == {"succeeded"}
        assert {cid: r["body"] for cid, r in landed.items()} == {row["id"]: row["body"] for row in rows}
    # The second index stores the shared answers it awaited as soon as it takes them (so that a
    # failed landing of the first cannot lose them), and the first stores its own when it lands:
    # until a compaction merges them, a shared answer may be in two files (lookups take the
    # newest). After it, every answer is stored exactly once.
    assert {row["key"] for row in _stored(work_dir)} and len({row["key"] for row in _stored(work_dir)}) == 23
    AnswerStore(work_dir).compact(max_age=None, min_files=1)
    stored = _stored(work_dir)
    keys = [row["key"] for row in stored]
    assert len(keys) == len(set(keys)) == 10 + 5 + 8, "an answer was stored more than once"

    # A second run of the same inputs sends nothing and stores nothing more.
    again = _run(dag, DAY + timedelta(hours=1))
    assert task_states(again) == {"submit": "success", "wait": "success", "land": "success"}
    assert emulator.emulator.stats["batches_created"] == 2
    assert len(_stored(work_dir)) == 23


# ---------------------------------------------------------------------- typed answers
def test_reused_rows_are_typed_from_the_stored_text_and_invalid_answers_are_sent_again(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    emulator.emulator.config.invalid_output_fraction = 0.3
    rows = _rows(range(40))
    dag = make_dag(_pipeline(rows, tmp_path / "out", submit=f"output_schema={SCHEMA!r}", keep=["body"]))
    first_run = _run(dag)
    assert task_states(first_run)["land"] == "success"
    first = _landed(tmp_path / "out")
    invalid = {cid for cid, r in first.items() if r["output_status"] != "valid"}
    assert 3 < len(invalid) < 40
    assert len(_stored(work_dir)) == 40 - len(invalid)  # answers off the schema are not stored

    emulator.emulator.config.invalid_output_fraction = 0.0
    run = _run(dag, DAY + timedelta(hours=1))
    assert task_states(run)["land"] == "success"
    assert _stats(emulator)[1] == 40 + len(invalid)  # only the invalid ones were sent again
    second = _landed(tmp_path / "out")
    assert {cid for cid, r in second.items() if r["answer_source"] == "new"} == invalid
    for cid, row in second.items():
        assert row["output_status"] == "valid"
        assert row["label"] == json.loads(row["text"])["label"]
        if cid not in invalid:
            assert row["answer_source"] == "reused"
            assert (row["text"], row["label"], row["confidence"]) == (
                first[cid]["text"],
                first[cid]["label"],
                first[cid]["confidence"],
            )
    assert xcom(run, "land")["by_output_status"] == {"valid": 40}


def test_resubmitted_invalid_answers_reach_their_deduplicated_copies(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    emulator.emulator.config.invalid_output_fraction = 0.5
    rows = _rows(range(20))
    copies = [{**row, "id": f"copy-{row['id']}"} for row in rows]
    dag = make_dag(
        _pipeline(
            rows + copies,
            tmp_path / "out",
            submit=f"output_schema={SCHEMA!r}",
            land="on_invalid_output='resubmit', max_retry_rounds=1",
            keep=["body"],
        )
    )
    run = _run(dag)
    assert task_states(run)["land"] == "success"
    manifest = load_manifest(xcom(run, "submit")["manifest"])
    assert manifest.reuse is not None and manifest.reuse["deduplicated"] == 20
    assert max(r.round for r in manifest.batches) == 1  # a resubmission round happened
    landed = _landed(tmp_path / "out")
    assert len(landed) == 40
    for row in rows:
        sender, copy = landed[row["id"]], landed[f"copy-{row['id']}"]
        assert copy["answer_source"] == "deduplicated" and copy["cost_usd"] == 0
        assert (copy["round"], copy["batch_id"], copy["text"], copy["output_status"]) == (
            sender["round"],
            sender["batch_id"],
            sender["text"],
            sender["output_status"],
        )
        assert copy["body"] == row["body"]


# ---------------------------------------------------------------------- rounds and errors
def test_deduplicated_copies_get_their_senders_final_round(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    emulator.emulator.script_outcomes(
        {"r0": ["errored:overloaded_error", "succeeded"], "r1": ["expired", "expired", "expired"]}
    )
    rows = _rows(range(5))
    copies = [{**row, "id": f"copy-{row['id']}"} for row in rows[:2]]
    dag = make_dag(_pipeline(rows + copies, tmp_path / "out", land="max_retry_rounds=2", keep=["body"]))
    run = _run(dag)
    assert task_states(run)["land"] == "success"
    landed = _landed(tmp_path / "out")
    assert (landed["r0"]["round"], landed["r0"]["result_type"]) == (1, "succeeded")
    assert (landed["copy-r0"]["round"], landed["copy-r0"]["result_type"]) == (1, "succeeded")
    assert landed["copy-r0"]["text"] == landed["r0"]["text"]
    assert (landed["r1"]["round"], landed["r1"]["result_type"]) == (2, "expired")
    assert (landed["copy-r1"]["round"], landed["copy-r1"]["result_type"]) == (2, "expired")
    assert landed["copy-r1"]["batch_id"] == landed["r1"]["batch_id"]
    # 5 sent in round 0, r0 and r1 again in round 1, r1 in round 2.
    assert _stats(emulator) == (3, 8)
    assert {row["custom_id"] for row in _stored(work_dir)} == {"r0", "r2", "r3", "r4"}


def test_copies_of_an_errored_request_land_errored_and_a_rerun_sends_it_once(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    emulator.emulator.script_outcomes({"r2": ["errored:invalid_request_error"]})
    rows = _rows(range(4))
    copies = [{**rows[2], "id": f"copy{i}"} for i in range(3)]
    dag = make_dag(_pipeline(rows + copies, tmp_path / "out", keep=["body"]))
    _run(dag)
    landed = _landed(tmp_path / "out")
    assert {landed[cid]["result_type"] for cid in ("r2", "copy0", "copy1", "copy2")} == {"errored"}
    assert {landed[f"copy{i}"]["error_type"] for i in range(3)} == {"invalid_request_error"}
    assert _stats(emulator) == (1, 4)

    run = _run(dag, DAY + timedelta(hours=1))
    assert task_states(run)["land"] == "success"
    assert _stats(emulator) == (2, 5)  # the errored request alone, once for its four rows
    landed = _landed(tmp_path / "out")
    assert {landed[cid]["result_type"] for cid in ("r2", "copy0", "copy1", "copy2")} == {"succeeded"}
    assert landed["r2"]["answer_source"] == "new"
    assert {landed[f"copy{i}"]["answer_source"] for i in range(3)} == {"deduplicated"}


# ---------------------------------------------------------------------- clears and retries
def test_a_cleared_submit_reattaches_after_the_store_gained_its_answers(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    rows = _rows(range(30))
    dag = make_dag(_pipeline(rows, tmp_path / "out", keep=["body"]))
    first = _run(dag)
    assert task_states(first)["land"] == "success"
    before = _landed(tmp_path / "out")
    # Another DAG lands a superset of these rows meanwhile: the store now answers all of them.
    other = make_dag(_pipeline(rows + _rows(range(30, 40)), tmp_path / "other"))
    assert task_states(_run(other))["land"] == "success"
    assert _stats(emulator) == (2, 40)

    again = _run(dag)  # the same run id: a clear of every task
    assert again.run_id == first.run_id
    assert task_states(again) == {"submit": "success", "wait": "success", "land": "success"}
    assert _stats(emulator) == (2, 40)  # re-attached: nothing billed
    assert xcom(again, "submit")["batch_ids"] == xcom(first, "submit")["batch_ids"]
    assert _landed(tmp_path / "out") == before


def test_a_cleared_transfer_lands_the_same_rows_without_growing_the_store(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    rows = _rows(range(20)) + [{**row, "id": f"copy-{row['id']}"} for row in _rows(range(5))]
    dag = make_dag(_pipeline(rows, tmp_path / "out", keep=["body"]))
    first = _run(dag)
    before, stored = _landed(tmp_path / "out"), _stored(work_dir)
    assert len(stored) == 20
    again = _run(dag)
    assert again.run_id == first.run_id and task_states(again)["land"] == "success"
    assert _stats(emulator) == (1, 20)
    assert _landed(tmp_path / "out") == before
    assert _stored(work_dir) == stored  # the same files, the same answers
    assert xcom(again, "land")["answers_stored"] == xcom(first, "land")["answers_stored"] == 20


def test_copies_in_later_chunks_and_a_poking_sensor_with_nothing_to_wait_for(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    rows = _rows(range(12))
    copies = [{**row, "id": f"copy-{row['id']}"} for row in reversed(rows)]  # chunks 2 and 3 copy chunks 0 and 1
    dag = make_dag(
        _pipeline(rows + copies, tmp_path / "out", keep=["body"], per_batch=5, wait="deferrable=False, mode='poke'")
    )
    run = _run(dag)
    assert task_states(run)["land"] == "success"
    assert _stats(emulator) == (3, 12)
    landed = _landed(tmp_path / "out")
    assert len(landed) == 24
    for row in rows:
        copy = landed[f"copy-{row['id']}"]
        assert (copy["batch_id"], copy["text"]) == (landed[row["id"]]["batch_id"], landed[row["id"]]["text"])
        assert copy["body"] == row["body"]
    again = _run(dag, DAY + timedelta(hours=1))  # every row reused: the poking sensor has nothing to wait for
    assert task_states(again) == {"submit": "success", "wait": "success", "land": "success"}
    assert _stats(emulator) == (3, 12)
    assert {r["answer_source"] for r in _landed(tmp_path / "out").values()} == {"reused"}


def test_the_budget_counts_only_the_rows_sent(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    rows = _rows(range(20))
    first = _run(make_dag(_pipeline(rows, tmp_path / "a")))
    ceiling = xcom(first, "submit")["cost_ceiling_usd"]
    assert ceiling > 0
    # The same rows and two new ones, under a budget half of what all of them could cost.
    budget = f"max_cost_usd={ceiling / 2!r}"
    run = _run(make_dag(_pipeline(rows + _rows(range(20, 22)), tmp_path / "b", submit=budget)))
    assert task_states(run)["land"] == "success"
    assert _stats(emulator) == (2, 22)
    assert xcom(run, "submit")["cost_ceiling_usd"] < ceiling / 5
    # Without reuse the same budget refuses the run before anything is sent.
    refused = _run(
        make_dag(_pipeline(rows, tmp_path / "c", submit=budget + ", reuse_answers=False")),
        DAY + timedelta(hours=1),
    )
    assert task_states(refused)["submit"] == "failed"
    assert _stats(emulator) == (2, 22)


# ---------------------------------------------------------------------- columns
@pytest.mark.parametrize(
    ("input_columns", "keep", "expected"),
    [
        (["body"], {"body": "text_in"}, {"text_in"}),
        (["id", "body"], ["id", "body"], {"id", "body"}),
        ("all", {"prompt": "asked", "body": "b"}, {"asked", "b"}),
        (None, None, set()),
    ],
)
def test_every_row_reused_with_keep_columns(
    make_dag: Any,
    emulator: RunningEmulator,
    work_dir: Path,
    tmp_path: Path,
    input_columns: Any,
    keep: Any,
    expected: set[str],
) -> None:
    rows = _rows(range(6))
    first = make_dag(_pipeline(rows, tmp_path / "a", keep=keep, input_columns=input_columns))
    assert task_states(_run(first))["land"] == "success"
    second = make_dag(_pipeline(rows, tmp_path / "b", keep=keep, input_columns=input_columns))
    run = _run(second)
    assert task_states(run)["land"] == "success"
    assert _stats(emulator) == (1, 6)
    a, b = _landed(tmp_path / "a"), _landed(tmp_path / "b")
    assert {r["answer_source"] for r in b.values()} == {"reused"}
    extra = set(next(iter(b.values()))) - set(next(iter(a.values()))) - {"answer_source"}
    assert not extra
    by_id = {row["id"]: row for row in rows}
    for cid, row in b.items():
        for name in expected:
            source = {"text_in": "body", "asked": "prompt", "b": "body"}.get(name, name)
            assert row[name] == by_id[cid][source] == a[cid][name]


def test_keep_columns_without_saved_inputs_fail_clearly_when_every_row_is_reused(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    """Keeping a column the submit does not save fails when the DAG is parsed (it used to fail
    in the transfer, after the submit and the wait): nothing is submitted, nothing lands."""
    rows = _rows(range(4))
    assert task_states(_run(make_dag(_pipeline(rows, tmp_path / "a", input_columns=None))))["land"] == "success"
    with pytest.raises(AssertionError, match=r"keep_columns .{1,6}body.{1,6} are not saved by the submit task"):
        make_dag(_pipeline(rows, tmp_path / "b", input_columns=None, keep=["body"]))
    assert not (tmp_path / "b").exists()
    assert _stats(emulator) == (1, 4)


# ---------------------------------------------------------------------- bad input
def test_duplicate_custom_ids_fail_before_the_store_or_the_api_is_touched(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    rows = _rows(range(3))
    assert task_states(_run(make_dag(_pipeline(rows, tmp_path / "a"))))["land"] == "success"
    stored = _stored(work_dir)
    # r1 twice with the same request: deduplication must not hide the repeated id.
    run = _run(make_dag(_pipeline([*rows, rows[1], *_rows(range(50, 52))], tmp_path / "b")))
    assert task_states(run)["submit"] == "failed"
    assert _stats(emulator) == (1, 3)
    assert _stored(work_dir) == stored


@pytest.mark.parametrize("value", [-1, "-2d", "3 parsecs", "", float("nan"), float("inf"), "1e30d", True, [1]])
def test_a_wrong_answer_max_age_fails_at_parse_naming_it(value: Any) -> None:
    with pytest.raises(ClaudeBatchParameterError, match="answer_max_age"):
        ClaudeBatchSubmitOperator(task_id="s", source=["a"], answer_max_age=value)


def test_a_clear_after_the_request_files_expired_refuses_to_guess_a_reuse_plan(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    """A lifecycle rule deleted the staging (request bodies, answered rows) of a run whose rows
    were partly reused. Rendered again, the chunks would hold rows that were never sent: the
    clear stops before anything is sent, and the way out its error names lands the same rows."""
    rows = _rows(range(10))
    assert task_states(_run(make_dag(_pipeline(rows, tmp_path / "a"))))["land"] == "success"
    dag = make_dag(_pipeline(rows + _rows(range(10, 20)), tmp_path / "b", keep=["body"]))
    first = _run(dag)
    assert task_states(first)["land"] == "success"
    before = _landed(tmp_path / "b")
    assert _stats(emulator) == (2, 20)
    run_folder = Path(xcom(first, "submit")["manifest"]).parent
    manifest_text = (run_folder / "manifest.json").read_text()
    for staging in run_folder.glob("requests-*"):
        shutil.rmtree(staging)

    again = _run(dag)
    assert again.run_id == first.run_id
    assert task_states(again)["submit"] == "failed"
    assert _stats(emulator) == (2, 20)
    assert (run_folder / "manifest.json").read_text() == manifest_text  # not rewired to the wrong files
    assert _landed(tmp_path / "b") == before  # the committed output is untouched

    shutil.rmtree(run_folder)  # what the error says to do, once the batches are landed
    run = _run(dag)
    assert task_states(run) == {"submit": "success", "wait": "success", "land": "success"}
    assert _stats(emulator) == (2, 20)
    landed = _landed(tmp_path / "b")
    assert {cid: (r["text"], r["body"]) for cid, r in landed.items()} == {
        cid: (r["text"], r["body"]) for cid, r in before.items()
    }
    assert {r["answer_source"] for r in landed.values()} == {"reused"}


@pytest.mark.parametrize("outcome", ["errored:invalid_request_error", "errored:overloaded_error"])
def test_a_row_awaited_from_a_mapped_sibling_whose_request_failed_still_lands_answered(
    make_dag: Any, emulator: RunningEmulator, work_dir: Path, tmp_path: Path, outcome: str
) -> None:
    """Whichever map index submits first sends the shared rows; the other awaits them. r3's first
    answer fails: the awaiting index lands r3 answered all the same."""
    emulator.emulator.script_outcomes({"r3": [outcome]})  # r3's first answer, whoever sends it
    dag, inputs = _mapped_sharing_dag(make_dag, tmp_path)
    run = _run(dag)
    assert {str(ti.state) for ti in run.get_task_instances()} == {"success"}
    awaited = {
        index: load_manifest(next(work_dir.glob(f"*/*/submit/{index}/manifest.json"))).reuse["awaited"]
        for index in (0, 1)
    }
    assert sorted(awaited.values()) == [0, 10]
    waiter = 0 if awaited[0] else 1
    landed = {index: _landed(tmp_path / "out" / f"part={index}") for index in (0, 1)}
    for index in (0, 1):
        assert sorted(landed[index]) == sorted(row["id"] for row in inputs[index])
        assert landed[index]["r3"]["body"] == "shared 3"
    assert landed[waiter]["r3"]["result_type"] == "succeeded" and landed[waiter]["r3"]["text"]
    if outcome.endswith("invalid_request_error"):
        assert landed[1 - waiter]["r3"]["result_type"] == "errored"
        assert _stats(emulator)[1] == 10 + 5 + 8 + 1  # the failed request once more, by the waiter
    else:
        assert landed[1 - waiter]["r3"]["result_type"] == "succeeded"
        # The sender resends r3 in a round; a waiter that lands first cannot know and sends it too.
        assert _stats(emulator)[1] in (10 + 5 + 8 + 1, 10 + 5 + 8 + 2)
