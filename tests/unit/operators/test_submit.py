"""ClaudeBatchSubmitOperator.execute called directly, against the emulator (operators/submit.py).
Retries and clears through Airflow are in tests/airflow."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from airflow_provider_claude_batch.batching.state.manifest import load_manifest
from airflow_provider_claude_batch.exceptions import ClaudeBatchAuthError, ClaudeBatchBudgetError, ClaudeBatchInputError
from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_provider_claude_batch.testing import Fault, RunningEmulator


def _context(task_id: str = "submit") -> Any:
    return {"ti": SimpleNamespace(dag_id="dag", run_id="run", task_id=task_id, map_index=-1)}


def _operator(tmp_path: Path, source: Any, **kwargs: Any) -> ClaudeBatchSubmitOperator:
    return ClaudeBatchSubmitOperator(
        task_id="submit", source=source, model="claude-haiku-4-5", max_tokens=8, work_dir=str(tmp_path), **kwargs
    )


def test_rows_become_as_many_batches_as_the_limits_require(tmp_path: Path, emulator: RunningEmulator) -> None:
    summary = _operator(tmp_path, [f"q{i}" for i in range(25)], max_requests_per_batch=10).execute(_context())
    assert summary["chunks"] == 3 and summary["requests"] == 25 and len(summary["created_now"]) == 3
    assert emulator.emulator.stats["batches_created"] == 3
    assert emulator.emulator.stats["requests_received"] == 25
    assert summary["manifest"] == str(tmp_path / "dag" / "run" / "submit" / "manifest.json")
    assert load_manifest(tmp_path / "dag" / "run" / "submit").batch_ids() == summary["batch_ids"]
    assert summary["cost_ceiling_usd"] > 0


def test_a_second_try_with_the_same_input_creates_nothing(tmp_path: Path, emulator: RunningEmulator) -> None:
    first = _operator(tmp_path, ["a", "b"]).execute(_context())
    again = _operator(tmp_path, ["a", "b"]).execute(_context())
    assert again["created_now"] == [] and again["batch_ids"] == first["batch_ids"]
    assert emulator.emulator.stats["batches_created"] == 1


def test_no_rows_skip_or_fail_and_submit_nothing(tmp_path: Path, emulator: RunningEmulator) -> None:
    with pytest.raises(AirflowSkipException):
        _operator(tmp_path, []).execute(_context())
    with pytest.raises(ClaudeBatchInputError, match="on_empty='fail'"):
        _operator(tmp_path, [], on_empty="fail").execute(_context("other"))
    assert emulator.emulator.stats["batches_created"] == 0


@pytest.mark.parametrize("name", ["tickets.csv", "tickets.jsonl", "tickets.parquet", "folder"])
def test_a_file_with_no_bytes_has_no_rows_like_a_header_only_csv(
    tmp_path: Path, emulator: RunningEmulator, name: str
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "header.csv").write_text("ticket_id,body\n")
    (inputs / "folder").mkdir()
    (inputs / "folder" / "part-0.csv").write_bytes(b"")
    if name != "folder":
        (inputs / name).write_bytes(b"")
    for source in (inputs / "header.csv", inputs / name):
        settings = {"prompt": "{body}", "id_column": "ticket_id", "input_columns": ["ticket_id"]}
        with pytest.raises(AirflowSkipException, match="no rows"):
            _operator(tmp_path / "work", str(source), **settings).execute(_context())
        with pytest.raises(ClaudeBatchInputError, match="on_empty='fail'"):
            _operator(tmp_path / "work", str(source), on_empty="fail", prompt="{body}").execute(_context())
    assert emulator.emulator.stats["batches_created"] == 0


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_wrong_key_fails_before_any_request_is_staged(
    tmp_path: Path, emulator: RunningEmulator, connection_env: Any, dry_run: bool
) -> None:
    connection_env("wrong_key", password="definitely-wrong-test-key")
    operator = _operator(tmp_path, [f"q{i}" for i in range(25)], conn_id="wrong_key", estimate_only=dry_run)
    with pytest.raises(ClaudeBatchAuthError, match="'wrong_key' was rejected.*authentication_error") as raised:
        operator.execute(_context())
    assert "definitely-wrong-test-key" not in str(raised.value)
    assert list(tmp_path.rglob("requests-*")) == [] and not (tmp_path / "dag").exists()
    assert emulator.emulator.calls["models"] == 1
    assert emulator.emulator.calls["create"] == emulator.emulator.calls["count_tokens"] == 0
    assert emulator.emulator.stats["batches_created"] == 0


def test_the_key_is_checked_once_per_submit_not_per_chunk(tmp_path: Path, emulator: RunningEmulator) -> None:
    _operator(tmp_path, [f"q{i}" for i in range(25)], max_requests_per_batch=10).execute(_context())
    assert emulator.emulator.calls["models"] == 1 and emulator.emulator.stats["batches_created"] == 3


def test_a_busy_api_at_the_key_check_does_not_stop_the_submit(tmp_path: Path, emulator: RunningEmulator) -> None:
    emulator.emulator.inject(
        Fault("models", status=529, times=3, retry_after=0.01)
    )  # the first try and the SDK's 2 retries
    summary = _operator(tmp_path, ["a", "b"]).execute(_context())
    assert summary["requests"] == 2 and emulator.emulator.stats["batches_created"] == 1


def test_a_budget_stops_the_run_before_the_create(tmp_path: Path, emulator: RunningEmulator) -> None:
    with pytest.raises(ClaudeBatchBudgetError, match="over max_cost_usd"):
        _operator(tmp_path, ["a"] * 3, max_cost_usd=1e-9).execute(_context())
    assert emulator.emulator.stats["batches_created"] == 0


def test_bad_parameters_fail_when_the_dag_is_parsed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_empty"):
        _operator(tmp_path, ["a"], on_empty="ignore")
    with pytest.raises(ClaudeBatchInputError, match="on_input_change"):
        _operator(tmp_path, ["a"], on_input_change="merge")
    with pytest.raises(ValueError, match="max_cost_usd must be a positive"):
        _operator(tmp_path, ["a"], max_cost_usd=0)


def test_few_shot_turns_and_a_prefill_reach_every_request(tmp_path: Path, emulator: RunningEmulator) -> None:
    turns = [{"role": "user", "content": "Classify: card charged twice"}, {"role": "assistant", "content": "Billing"}]
    summary = _operator(tmp_path, ["login fails", "refund?"], messages=turns, prefill="Label:").execute(_context())
    run_dir = tmp_path / "dag" / "run" / "submit"
    (record,) = load_manifest(run_dir).batches
    lines = [json.loads(line) for line in (run_dir / record.requests_file).read_bytes().splitlines()]
    assert [line["params"]["messages"] for line in lines] == [
        [*turns, {"role": "user", "content": text}, {"role": "assistant", "content": "Label:"}]
        for text in ("login fails", "refund?")
    ]
    assert summary["requests"] == 2 and emulator.emulator.stats["batches_created"] == 1


def test_bad_turns_or_a_prefill_with_an_output_schema_fail_when_the_dag_is_parsed(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    with pytest.raises(ClaudeBatchInputError, match=r"prefill=: a prefill cannot be combined with output_schema"):
        _operator(tmp_path, ["a"], output_schema=schema, prefill='{"label": "')
    with pytest.raises(ClaudeBatchInputError, match=r"prefill=: a prefill cannot be combined with thinking"):
        _operator(tmp_path, ["a"], request_params={"thinking": {"type": "enabled", "budget_tokens": 2048}}, prefill="A")
    with pytest.raises(ClaudeBatchInputError, match=r"messages=: messages\[1\]\.role must be 'assistant'"):
        _operator(tmp_path, ["a"], messages=[{"role": "user", "content": "q"}, {"role": "user", "content": "r"}])
    assert _operator(tmp_path, ["a"], output_schema=schema, messages=[]).prefill is None  # the schema alone is fine
