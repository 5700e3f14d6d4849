"""The rows reuse did not send, and the answers of the rows sent (batching/reuse/answered_rows.py),
on runs really submitted to the emulator that share one work directory and answer store.

Run ``a`` asks questions 0-3 and lands (its answers are stored). Run ``b`` then asks question
0 again (reused), question 5 (sent) and question 5 under another id (deduplicated)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.batching.land.parts import output_schema, parse_record
from airflow_provider_claude_batch.batching.render.content_key import content_keys
from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerOrigin, AnswerStore
from airflow_provider_claude_batch.batching.reuse.answered_rows import (
    ANSWERED_ROW_COLUMN,
    AnsweredRows,
    NewAnswers,
    answered_input_schema,
)
from airflow_provider_claude_batch.batching.state.manifest import Manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.exceptions import ClaudeBatchMissingResultsError
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator
from airflow_provider_claude_batch.workdir import open_manifest

A_ROWS = [{"id": f"a{i}", "text": f"question {i}", "product": "from-a"} for i in range(4)]
B_ROWS = [
    {"id": "b0", "text": "question 0", "product": "x"},  # reused: a0 asked it and landed
    {"id": "b5", "text": "question 5", "product": "y"},  # sent
    {"id": "b6", "text": "question 5", "product": "z"},  # deduplicated: gets b5's outcome
]
KEEP = ["product"]
ORIGIN = AnswerOrigin(dag_id="dag", run_id="run", task_id="e", map_index=-1)


def _submit(work: Path, task_id: str, rows: list[dict[str, str]], **kwargs: Any) -> tuple[Manifest, RunDir]:
    operator = ClaudeBatchSubmitOperator(
        task_id=task_id,
        source=rows,
        id_column="id",
        model="claude-haiku-4-5",
        max_tokens=8,
        work_dir=str(work),
        **kwargs,
    )
    ti = SimpleNamespace(dag_id="dag", run_id="run", task_id=task_id, map_index=-1)
    return open_manifest(operator.execute({"ti": ti})["manifest"])


def _landed_a(work: Path) -> dict[str, dict[str, Any]]:
    """Submit and land run ``a``; its landed rows by custom_id."""
    _, run_dir = _submit(work, "a", A_ROWS)
    destination = work / "out_a"
    ClaudeBatchToParquetOperator(
        task_id="land_a", manifest=str(run_dir), destination=str(destination), deferrable=False
    ).execute({})
    return {row["custom_id"]: row for row in pq.read_table(destination).to_pylist()}


def _sent_tables(run_dir: RunDir, manifest: Manifest, schema: pa.Schema, keep: list[str] = KEEP) -> list[pa.Table]:
    """The landed tables of the run's sent requests (its one batch, downloaded for real)."""
    (record,) = manifest.batches
    assert record.batch_id is not None
    raw = run_dir / run_dir.raw_results_file(record.batch_id)
    ClaudeBatchHook().download_results(record.batch_id, raw)
    return list(parse_record(run_dir, record, record, raw, schema, keep, PriceTable(), 100))


def _answered_rows(answered: AnsweredRows, schema: pa.Schema) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for table in answered.tables(schema, KEEP, None, 100):
        # saved_usd and the input row last, dropped before writing
        assert table.column_names == [*schema.names, "saved_usd", ANSWERED_ROW_COLUMN]
        for row in table.to_pylist():
            assert row["custom_id"] not in rows
            rows[row["custom_id"]] = row
    return rows


def test_reused_and_deduplicated_rows_land_at_no_cost_with_what_their_answer_had_cost(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    landed_a = _landed_a(tmp_path)
    manifest, run_dir = _submit(tmp_path, "b", B_ROWS)
    assert emulator.emulator.stats["batches_created"] == 2  # a's, and b's one sent request
    schema = output_schema(run_dir, manifest, KEEP, None)
    answered = AnsweredRows(run_dir, manifest)
    assert answered.any
    sent = _sent_tables(run_dir, manifest, schema)
    for table in sent:
        answered.collect(table)
    b5 = next(row for table in sent for row in table.to_pylist() if row["custom_id"] == "b5")

    rows = _answered_rows(answered, schema)

    assert sorted(rows) == ["b0", "b6"]  # every row not sent, once; the sent row is not among them
    reused, copy = rows["b0"], rows["b6"]
    a0 = landed_a["a0"]
    assert (reused["answer_source"], reused["result_type"], reused["text"]) == ("reused", "succeeded", a0["text"])
    assert reused["batch_id"] == a0["batch_id"]  # the batch that paid for the answer
    assert reused["product"] == "x"  # this run's input, not the other run's
    assert reused["cost_usd"] == 0 and reused["saved_usd"] == pytest.approx(a0["cost_usd"]) and a0["cost_usd"] > 0
    assert (copy["answer_source"], copy["text"], copy["batch_id"]) == ("deduplicated", b5["text"], b5["batch_id"])
    assert copy["product"] == "z"
    assert copy["cost_usd"] == 0 and copy["saved_usd"] == pytest.approx(b5["cost_usd"]) and b5["cost_usd"] > 0


def test_a_deduplicated_row_whose_sender_did_not_land_is_an_error_naming_it(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    _landed_a(tmp_path)
    manifest, run_dir = _submit(tmp_path, "b", B_ROWS)
    schema = output_schema(run_dir, manifest, KEEP, None)
    with pytest.raises(ClaudeBatchMissingResultsError, match="row 'b6' was deduplicated"):
        _answered_rows(AnsweredRows(run_dir, manifest), schema)  # nothing collected


def test_the_input_schema_of_a_run_answered_without_a_batch(emulator: RunningEmulator, tmp_path: Path) -> None:
    _landed_a(tmp_path)
    manifest, run_dir = _submit(tmp_path, "c", [{"id": "c1", "text": "question 1", "product": "p"}])
    assert manifest.batch_ids() == []  # every row was reused
    schema = answered_input_schema(run_dir, manifest)
    assert schema is not None and schema.names == ["id", "text", "product", "input_row", "custom_id"]
    manifest, run_dir = _submit(tmp_path, "d", [{"id": "d1", "text": "question 9", "product": "p"}])
    assert answered_input_schema(run_dir, manifest) is None  # nothing answered without a batch


def _keys_of_requests(run_dir: RunDir, manifest: Manifest) -> dict[str, Any]:
    lines = [line for line in (run_dir / manifest.batches[0].requests_file).read_bytes().splitlines() if line]
    keys = content_keys(lines)
    return {json.loads(line)["custom_id"]: keys[i : i + 1] for i, line in enumerate(lines)}


def test_succeeded_answers_are_stored_by_content_key_only_when_published(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    emulator.emulator.script_outcomes({"e2": "errored:overloaded_error"})
    manifest, run_dir = _submit(tmp_path, "e", [{"id": f"e{i}", "text": f"ask {i}"} for i in range(3)])
    schema = output_schema(run_dir, manifest, [], None)
    new_answers = NewAnswers(run_dir, manifest)
    pending = new_answers.for_chunk(0, manifest.batches[0])
    assert pending is not None
    for table in _sent_tables(run_dir, manifest, schema, []):
        pending.add(table)
    pending.close()
    with (run_dir / run_dir.pending_answers_file(0)).open("rb") as handle:
        assert sorted(pq.read_table(handle).column("custom_id").to_pylist()) == ["e0", "e1"]  # answers only
    store = AnswerStore(tmp_path)
    keys = _keys_of_requests(run_dir, manifest)
    assert store.lookup(keys["e0"], max_age=None).count == 0  # pending until the landing commits

    assert new_answers.publish(store, ORIGIN) == 2  # e0 and e1; the errored e2 is not an answer

    found = {cid: store.lookup(key, max_age=None).count for cid, key in keys.items()}
    assert found == {"e0": 1, "e1": 1, "e2": 0}


def test_a_failed_landing_leaves_no_pending_answers(emulator: RunningEmulator, tmp_path: Path) -> None:
    manifest, run_dir = _submit(tmp_path, "f", [{"id": "f0", "text": "ask 0"}])
    schema = output_schema(run_dir, manifest, [], None)
    tables = _sent_tables(run_dir, manifest, schema, [])
    first = NewAnswers(run_dir, manifest)
    pending = first.for_chunk(0, manifest.batches[0])
    assert pending is not None
    for table in tables:
        pending.add(table)
    pending.close(failed=True)
    assert not (run_dir / run_dir.pending_answers_file(0)).exists()
    assert first.publish(AnswerStore(tmp_path), ORIGIN) == 0

    landed = NewAnswers(run_dir, manifest)
    pending = landed.for_chunk(0, manifest.batches[0])
    assert pending is not None
    for table in tables:
        pending.add(table)
    pending.close()
    assert (run_dir / run_dir.pending_answers_file(0)).exists()
    # A later landing of the chunk with nothing to store removes the earlier one's file.
    again = NewAnswers(run_dir, manifest).for_chunk(0, manifest.batches[0])
    assert again is not None
    again.close()
    assert not (run_dir / run_dir.pending_answers_file(0)).exists()


def test_nothing_is_kept_when_reuse_is_off(emulator: RunningEmulator, tmp_path: Path) -> None:
    manifest, run_dir = _submit(tmp_path, "g", [{"id": "g0", "text": "ask 0"}], reuse_answers=False)
    assert NewAnswers(run_dir, manifest).for_chunk(0, manifest.batches[0]) is None
    assert not AnsweredRows(run_dir, manifest).any
