"""Typed answers end to end: ``output_schema=`` on the submit, the emulator answering with
structured outputs over HTTP, typed Parquet columns from the transfer (``dag.test()``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from airflow_provider_claude_batch.batching.state.manifest import load_manifest
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import run_dag, task_states, xcom

MODEL_HEADER = """
from enum import Enum
from pydantic import BaseModel, Field

class Label(str, Enum):
    billing = "Billing"
    technical = "Technical"
    other = "Other"

class Address(BaseModel):
    city: str
    postcode: str | None = None

class Ticket(BaseModel):
    label: Label
    confidence: float = Field(ge=0, le=1)
    priority: int
    urgent: bool
    tags: list[str]
    address: Address
    note: str | None = None
"""

SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"enum": ["Billing", "Technical", "Other"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "people": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": ["integer", "null"]}},
                "required": ["name"],
            },
        },
    },
    "required": ["label", "confidence", "people"],
}


def _rows(count: int) -> list[dict[str, str]]:
    return [{"id": f"t{i}", "body": f"ticket number {i}"} for i in range(count)]


def _land(destination: Path) -> pa.Table:
    return ds.dataset(destination, format="parquet").to_table()


def _dag_body(rows: int, destination: Path, schema: str, **land: Any) -> str:
    extra = "".join(f", {key}={value!r}" for key, value in land.items())
    return f"""
    s = ClaudeBatchSubmitOperator(task_id="submit", source={_rows(rows)!r}, id_column="id", prompt="Classify: {{body}}",
                                  model="claude-haiku-4-5", max_tokens=400, output_schema={schema})
    w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
    l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={str(destination)!r},
                                     poll_interval=0.1{extra})
    s >> w >> l
    """


def test_a_pydantic_model_lands_typed_columns(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    dag_run = run_dag(make_dag(_dag_body(30, out, "Ticket"), header=MODEL_HEADER))
    assert task_states(dag_run) == {"submit": "success", "wait": "success", "land": "success"}
    table = _land(out)
    types = {name: table.schema.field(name).type for name in table.schema.names}
    assert types["label"] == pa.dictionary(pa.int32(), pa.string())
    assert types["confidence"] == pa.float64()
    assert types["priority"] == pa.int64()
    assert types["urgent"] == pa.bool_()
    assert types["tags"] == pa.list_(pa.string())
    assert types["address"] == pa.struct([("city", pa.string()), ("postcode", pa.string())])
    assert types["note"] == pa.string()
    # Every typed column may be null (an answer that does not validate gets nulls), and so may
    # an optional field inside a struct; the answer's absent optional fields land as nulls.
    assert all(table.schema.field(name).nullable for name in ("label", "confidence", "address", "note"))
    assert types["address"].field("postcode").nullable
    assert table.column("output_status").to_pylist() == ["valid"] * 30
    for row in table.to_pylist():  # the typed fields are the answer's fields
        answer = json.loads(row["text"])
        assert row["label"] == answer["label"] in ("Billing", "Technical", "Other")
        assert row["address"]["city"] == answer["address"]["city"]
        assert row["address"]["postcode"] == answer["address"].get("postcode")
    # Every request carried the native output_config.format, adapted by the SDK once.
    manifest = load_manifest(Path(xcom(dag_run, "submit")["manifest"]))
    body = (Path(xcom(dag_run, "submit")["manifest"]).parent / manifest.batches[0].requests_file).read_text()
    params = [json.loads(line)["params"] for line in body.splitlines()]
    assert all(p["output_config"]["format"]["type"] == "json_schema" for p in params)
    assert params[0]["output_config"]["format"]["schema"]["additionalProperties"] is False
    assert "tools" not in params[0] and "tool_choice" not in params[0]
    assert manifest.output_schema is not None and json.loads(manifest.output_schema)["title"] == "Ticket"
    assert xcom(dag_run, "land")["by_output_status"] == {"valid": 30}


def test_a_json_schema_marks_and_counts_invalid_refused_and_truncated_answers(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    config = emulator.emulator.config
    config.invalid_output_fraction, config.refusal_fraction, config.truncated_fraction = 0.2, 0.1, 0.1
    out = tmp_path / "out"
    dag_run = run_dag(make_dag(_dag_body(200, out, repr(SCHEMA))))
    assert task_states(dag_run)["land"] == "success"
    table = _land(out)
    assert table.schema.field("people").type == pa.list_(pa.struct([("name", pa.string()), ("age", pa.int64())]))
    assert table.schema.field("label").type == pa.dictionary(pa.int32(), pa.string())
    rows = {row["custom_id"]: row for row in table.to_pylist()}
    assert len(rows) == 200
    # Oracle: what the emulator sent, read from the raw answers independently of the parser.
    expected: dict[str, str] = {}
    for row in rows.values():
        if row["stop_reason"] == "refusal":
            expected[row["custom_id"]] = "refused"
        elif row["stop_reason"] == "max_tokens":
            expected[row["custom_id"]] = "truncated"
        else:
            try:
                answer = json.loads(row["text"])
            except ValueError:
                answer = {}
            expected[row["custom_id"]] = "valid" if "label" in answer else "invalid"
    assert {k: r["output_status"] for k, r in rows.items()} == expected
    counts = xcom(dag_run, "land")["by_output_status"]
    assert counts == {status: list(expected.values()).count(status) for status in set(expected.values())}
    assert all(counts.get(status, 0) > 5 for status in ("invalid", "refused", "truncated"))
    invalid = [r for r in rows.values() if r["output_status"] == "invalid"]
    assert all(r["output_error"] == "$: Object missing required field `label`" for r in invalid)
    assert all(r["label"] is None and r["text"] for r in invalid)  # the text is kept
    refused = [r for r in rows.values() if r["output_status"] == "refused"]
    assert all("category 'general_harms'" in r["output_error"] for r in refused)  # from stop_details
    assert all(r["stop_details"]["category"] == "general_harms" for r in refused)
    assert all(
        r["output_error"] is None and r["label"] is not None for r in rows.values() if r["output_status"] == "valid"
    )


def test_on_invalid_output_fail_lands_nothing(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    emulator.emulator.config.invalid_output_fraction = 0.2
    out = tmp_path / "out"
    dag_run = run_dag(make_dag(_dag_body(40, out, repr(SCHEMA), on_invalid_output="fail", max_retry_rounds=0)))
    assert task_states(dag_run)["land"] == "failed"
    assert not out.exists()
    assert emulator.emulator.stats["batches_created"] == 1


def test_on_invalid_output_resubmit_sends_exactly_the_invalid_answers_again(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    emulator.emulator.config.invalid_output_fraction = 0.3
    out = tmp_path / "out"
    dag_run = run_dag(make_dag(_dag_body(60, out, repr(SCHEMA), on_invalid_output="resubmit", max_retry_rounds=1)))
    assert task_states(dag_run)["land"] == "success"
    summary = xcom(dag_run, "submit")
    manifest = load_manifest(Path(summary["manifest"]))
    run_dir = Path(summary["manifest"]).parent
    first = [json.loads(line) for line in (run_dir / manifest.batches[0].results_file).read_text().splitlines()]
    invalid_first = {
        line["custom_id"]
        for line in first
        if "label" not in json.loads(line["result"]["message"]["content"][0]["text"])
    }
    assert len(invalid_first) > 5
    assert emulator.emulator.stats["batches_created"] == 2
    assert manifest.batches[1].request_count == len(invalid_first)
    table = _land(out)
    resent = {row["custom_id"] for row in table.to_pylist() if row["round"] == 1}
    assert resent == invalid_first
    # A second draw fixes most of them; what is still invalid is kept and marked.
    still = sum(1 for row in table.to_pylist() if row["output_status"] == "invalid")
    assert still < len(invalid_first)
    assert xcom(dag_run, "land")["by_output_status"].get("invalid", 0) == still


def test_on_invalid_output_keep_is_the_default(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    emulator.emulator.config.invalid_output_fraction = 0.3
    out = tmp_path / "out"
    dag_run = run_dag(make_dag(_dag_body(20, out, repr(SCHEMA))))
    assert task_states(dag_run)["land"] == "success"
    assert emulator.emulator.stats["batches_created"] == 1
    assert (
        xcom(dag_run, "land")["by_output_status"]["invalid"]
        == sum(1 for row in _land(out).to_pylist() if row["output_status"] == "invalid")
        > 0
    )


def test_an_unsupported_schema_is_rejected_before_anything_is_submitted(
    airflow_db: Path, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    schema = {"type": "object", "properties": {"score": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}}
    path = airflow_db / "dags" / "typed_unsupported.py"
    path.write_text(
        "from datetime import datetime\nfrom airflow.sdk import DAG\n"
        "from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator\n"
        "with DAG('typed_unsupported', schedule=None, start_date=datetime(2026, 1, 1)):\n"
        f"    ClaudeBatchSubmitOperator(task_id='submit', source=['a'], model='claude-haiku-4-5', output_schema={schema!r})\n"
    )
    bag = DagBag(dag_folder=str(path))
    (error,) = bag.import_errors.values()
    assert "ClaudeBatchInputError" in error and "$.score" in error and "unions are not supported" in error
    assert emulator.emulator.calls["create"] == 0
