"""Saved raw results -> Parquet parts, checked one to one against the requests
(batching/land/parts.py), on a run really submitted to the emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.batching.land.parts import (
    ClaudeBatchMissingResultsError,
    cost_table,
    keep_columns_spec,
    output_schema,
    write_parts,
)
from airflow_provider_claude_batch.batching.state.manifest import Manifest
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.unit.conftest import SubmitRun

ROWS = [{"ticket": f"t{i}", "text": f"question {i}", "product": f"p{i % 3}"} for i in range(25)]


def _downloaded(manifest: Manifest, run_dir: Path) -> dict[str, Any]:
    hook = ClaudeBatchHook()
    raw_files = {}
    for record in manifest.batches:
        assert record.batch_id is not None
        raw_files[record.batch_id] = run_dir / f"raw/{record.batch_id}.jsonl"
        hook.download_results(record.batch_id, raw_files[record.batch_id])
    return raw_files


def test_one_row_per_request_with_input_columns_joined(
    submit_run: SubmitRun, emulator: RunningEmulator, tmp_path: Path
) -> None:
    manifest, run_dir = submit_run(ROWS, max_requests=10)
    assert emulator.emulator.stats["batches_created"] == len(manifest.batches) == 3
    out = tmp_path / "out"
    out.mkdir()
    stats = write_parts(
        run_dir, manifest, _downloaded(manifest, run_dir), out, keep_columns=["product"], prices=PriceTable()
    )
    assert stats.files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    table = pq.read_table(out)
    assert table.num_rows == 25 and stats.rows == 25
    assert sorted(table.column("custom_id").to_pylist()) == sorted(f"row-{i}" for i in range(25))
    products = dict(zip(table.column("custom_id").to_pylist(), table.column("product").to_pylist(), strict=True))
    assert products == {f"row-{i}": f"p{i % 3}" for i in range(25)}
    assert stats.by_result_type == {"succeeded": 25}
    assert stats.cost_usd > 0 and set(stats.by_batch) == set(manifest.batch_ids())
    assert "total" in cost_table(stats)


def test_a_result_missing_from_the_raw_file_is_named(submit_run: SubmitRun, tmp_path: Path) -> None:
    manifest, run_dir = submit_run(ROWS[:4])
    raw_files = _downloaded(manifest, run_dir)
    (raw,) = raw_files.values()
    raw.write_bytes(b"".join(raw.read_bytes().splitlines(keepends=True)[:-1]))  # one line lost
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ClaudeBatchMissingResultsError, match=r"returned 3 results for 4 requests"):
        write_parts(run_dir, manifest, raw_files, out, keep_columns=[], prices=PriceTable())


def test_kept_columns_are_checked_before_anything_is_written(submit_run: SubmitRun) -> None:
    manifest, run_dir = submit_run(ROWS[:2])
    with pytest.raises(ClaudeBatchInputError, match=r"keep_columns \['nope'\] are not among"):
        output_schema(run_dir, manifest, ["nope"])
    with pytest.raises(ClaudeBatchInputError, match=r"keep_columns \['text'\] clash with result columns"):
        output_schema(run_dir, manifest, ["text"])
    schema = output_schema(run_dir, manifest, ["text"], {"text": "input_text"})
    assert schema.names[-1] == "input_text"


def test_keep_columns_spec_accepts_a_list_or_a_renaming() -> None:
    assert keep_columns_spec(None) == ([], {})
    assert keep_columns_spec(["a", "b"]) == (["a", "b"], {})
    assert keep_columns_spec({"text": "input_text"}) == (["text"], {"text": "input_text"})
    # Renaming one column keeps the others as they are, in either shape.
    assert keep_columns_spec(["product", {"text": "input_text"}]) == (["product", "text"], {"text": "input_text"})
    assert keep_columns_spec({"product": None, "text": "input_text"}) == (["product", "text"], {"text": "input_text"})
    with pytest.raises(ClaudeBatchInputError, match="one-entry mappings"):
        keep_columns_spec([{"a": "x", "b": "y"}])
    with pytest.raises(ClaudeBatchInputError, match="list of column names or a mapping"):
        keep_columns_spec("text")


def _submit_and_land(work: Path, task_id: str, source: Any, submit_args: Any = None, **land: Any) -> Path:
    """Submit ``source`` (rows with a ``ticket`` id) and land it with the real operators."""
    from types import SimpleNamespace

    from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
    from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator

    submit = ClaudeBatchSubmitOperator(
        task_id=task_id,
        source=source,
        id_column="ticket",
        prompt="{text}",
        model="claude-haiku-4-5",
        max_tokens=8,
        work_dir=str(work),
        max_requests_per_batch=25,
        **(submit_args or {}),
    )
    ti = SimpleNamespace(dag_id="dag", run_id="run", task_id=task_id, map_index=-1)
    summary = submit.execute({"ti": ti})
    destination = work / f"out_{task_id}"
    ClaudeBatchToParquetOperator(
        task_id=f"land_{task_id}", manifest=summary["manifest"], destination=str(destination), deferrable=False, **land
    ).execute({})
    return destination


def _files(destination: Path) -> list[pa.Table]:
    return [pq.read_table(path) for path in sorted(destination.glob("part-*.parquet"))]


@pytest.mark.parametrize("row_group_size", [65_536, 7])  # a chunk held in memory; spilled and merged
def test_rows_land_in_input_order_across_chunks_and_rounds(
    emulator: RunningEmulator, tmp_path: Path, row_group_size: int
) -> None:
    rows = [{"ticket": f"t{59 - i:02d}", "text": f"question {i}", "product": f"p{i % 3}"} for i in range(60)]
    emulator.emulator.script_outcomes({"t57": "errored:overloaded_error", "t20": "expired", "t05": "expired"})
    destination = _submit_and_land(
        tmp_path, "a", rows, keep_columns=["product", "input_row"], row_group_size=row_group_size
    )
    parts = _files(destination)
    assert [part.num_rows for part in parts] == [25, 25, 10]  # one part per chunk
    landed = pa.concat_tables(parts)
    assert landed.column("custom_id").to_pylist() == [row["ticket"] for row in rows]
    assert landed.column("input_row").to_pylist() == list(range(60))
    assert landed.column("product").to_pylist() == [row["product"] for row in rows]
    resent = {r["custom_id"]: r["round"] for r in landed.to_pylist() if r["round"]}
    assert resent == {"t57": 1, "t20": 1, "t05": 1}  # rows of round 1 sit at their input place


def test_rows_answered_without_a_request_land_in_input_order_after_the_sent_ones(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    first = [{"ticket": f"a{i}", "text": f"question {i}", "product": "p"} for i in range(0, 40, 3)]
    _submit_and_land(tmp_path, "a", first)
    # Tonight: every third question is answered already, and some are asked twice.
    rows = [{"ticket": f"b{i:02d}", "text": f"question {i % 35}", "product": f"p{i}"} for i in range(45)]
    destination = _submit_and_land(tmp_path, "b", rows, keep_columns=["product", "input_row"], row_group_size=4)
    parts = _files(destination)
    landed = pa.concat_tables(parts)
    assert sorted(landed.column("custom_id").to_pylist()) == sorted(row["ticket"] for row in rows)
    sources = landed.column("answer_source").to_pylist()
    assert {"new", "reused", "deduplicated"} <= set(sources)
    answered = parts[-1]
    assert set(answered.column("answer_source").to_pylist()) <= {"reused", "deduplicated"}
    for part in parts:  # every file in input order
        places = part.column("input_row").to_pylist()
        assert places == sorted(places)
        assert part.column("custom_id").to_pylist() == [rows[p]["ticket"] for p in places]
        assert part.column("product").to_pylist() == [f"p{p}" for p in places]
    # The sent rows first, then the answered ones; input_row gives the exact input order.
    ordered = landed.sort_by("input_row")
    assert ordered.column("custom_id").to_pylist() == [row["ticket"] for row in rows]


def test_kept_columns_have_one_arrow_type_whatever_the_source(emulator: RunningEmulator, tmp_path: Path) -> None:
    import pandas as pd
    import pyarrow.csv as pacsv

    rows = [{"ticket": f"t{i}", "text": f"question {i}", "product": f"p{i}"} for i in range(3)]
    frame = pd.DataFrame(rows)
    assert pa.Table.from_pandas(frame).schema.field("product").type == pa.large_string()
    csv = tmp_path / "rows.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows), csv)
    types = {}
    sources = (("csv", str(csv), False), ("frame", frame, True), ("reused", frame.copy(), True))
    for task_id, source, reuse in sources:
        destination = _submit_and_land(
            tmp_path, task_id, source, {"reuse_answers": reuse}, keep_columns=["product", "input_row"]
        )
        (part,) = _files(destination)
        assert set(part.column("answer_source").to_pylist()) == {"reused" if task_id == "reused" else "new"}
        types[task_id] = (part.schema.field("product").type, part.schema.field("input_row").type)
    # "reused": every row answered from the store, landed from answered.parquet.
    assert types == dict.fromkeys(("csv", "frame", "reused"), (pa.string(), pa.int64()))


def test_kept_columns_of_a_staging_saved_before_the_type_rule_land_as_string(
    submit_run: SubmitRun, tmp_path: Path
) -> None:
    manifest, run_dir = submit_run([{"text": f"question {i}", "product": f"p{i}"} for i in range(3)])
    (record,) = manifest.batches
    assert record.inputs_file is not None
    inputs = pq.read_table(run_dir / record.inputs_file)
    pq.write_table(
        inputs.set_column(
            inputs.schema.get_field_index("product"), "product", inputs.column("product").cast(pa.large_string())
        ),
        run_dir / record.inputs_file,
    )
    out = tmp_path / "out"
    out.mkdir()
    write_parts(run_dir, manifest, _downloaded(manifest, run_dir), out, keep_columns=["product"], prices=PriceTable())
    landed = pq.read_table(out)
    assert landed.schema.field("product").type == pa.string()
    assert landed.column("product").to_pylist() == ["p0", "p1", "p2"]


def test_a_rerun_keeps_what_its_answers_cost_beside_what_it_paid(emulator: RunningEmulator, tmp_path: Path) -> None:
    """A rerun reuses every answer: it pays $0 (``cost_usd``), but its partition still says what
    those answers cost when they were bought (``answer_cost_usd``), row by row and in total,
    so a date's cost does not vanish on a rerun."""
    rows = [{"ticket": f"t{i}", "text": f"question {i} " * 20} for i in range(6)]
    first = pq.read_table(_submit_and_land(tmp_path, "first", rows)).to_pydict()
    again = pq.read_table(_submit_and_land(tmp_path, "again", rows)).to_pydict()
    paid = dict(zip(first["custom_id"], first["cost_usd"], strict=True))
    assert sum(paid.values()) > 0 and first["answer_cost_usd"] == first["cost_usd"]
    assert set(again["answer_source"]) == {"reused"} and sum(again["cost_usd"]) == 0
    assert dict(zip(again["custom_id"], again["answer_cost_usd"], strict=True)) == pytest.approx(paid)
    assert emulator.emulator.stats["batches_created"] == 1
