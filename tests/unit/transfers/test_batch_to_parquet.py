"""ClaudeBatchToParquetOperator.execute called directly, against the emulator, without
deferring (transfers/batch_to_parquet.py). The deferred rounds through Airflow are in tests/airflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator
from tests.unit.conftest import SubmitRun

ROWS = [{"text": f"question {i}", "product": f"p{i % 2}"} for i in range(6)]


def test_every_request_lands_once_and_transient_failures_go_out_again(
    submit_run: SubmitRun, emulator: RunningEmulator, tmp_path: Path
) -> None:
    emulator.emulator.script_outcomes({"row-1": "expired", "row-2": "errored:invalid_request_error"})
    _, run_dir = submit_run(ROWS, max_requests=4)
    destination = tmp_path / "out"
    land = ClaudeBatchToParquetOperator(
        task_id="land",
        manifest={"manifest": str(run_dir / "manifest.json")},
        destination=str(destination),
        keep_columns=["product"],
        deferrable=False,
        max_retry_rounds=1,
    )
    summary = land.execute({})
    table = pq.read_table(destination).to_pydict()
    outcomes = dict(zip(table["custom_id"], table["result_type"], strict=True))
    assert sorted(outcomes) == [f"row-{i}" for i in range(6)]
    assert outcomes["row-1"] == "succeeded"  # resubmitted in round 1
    assert outcomes["row-2"] == "errored"  # a retry cannot fix an invalid request
    assert dict(zip(table["custom_id"], table["round"], strict=True))["row-1"] == 1
    assert emulator.emulator.stats["batches_created"] == 2 + 1  # two chunks, one resubmission
    assert summary["rows"] == 6 and summary["rounds"] == 2 and summary["resubmitted_requests"] == 1
    assert json.loads((run_dir / "landing.json").read_text())["destination"] == str(destination)
    assert land.output_link is None  # a browser cannot open a local folder from the UI


def test_landing_again_replaces_the_partition_and_bills_nothing(
    submit_run: SubmitRun, emulator: RunningEmulator, tmp_path: Path
) -> None:
    _, run_dir = submit_run(ROWS)
    destination = tmp_path / "out"
    for _ in range(2):
        ClaudeBatchToParquetOperator(
            task_id="land", manifest=str(run_dir), destination=str(destination), deferrable=False
        ).execute({})
    assert pq.read_table(destination).num_rows == 6
    assert sorted(p.name for p in destination.iterdir()) == ["_commit.json", "part-00000.parquet"]
    assert emulator.emulator.stats["batches_created"] == 1
    assert emulator.emulator.calls["results"] == 1  # the raw results were saved once


def test_bad_parameters_fail_when_the_dag_is_parsed() -> None:
    with pytest.raises(ValueError, match="max_retry_rounds must be >= 0"):
        ClaudeBatchToParquetOperator(task_id="l", manifest="m", destination="d", max_retry_rounds=-1)
    not_names: Any = [1]
    with pytest.raises(ValueError, match="keep_columns"):
        ClaudeBatchToParquetOperator(task_id="l", manifest="m", destination="d", keep_columns=not_names)


def _land(run_dir: Path, tmp_path: Path, **kwargs: Any) -> ClaudeBatchToParquetOperator:
    return ClaudeBatchToParquetOperator(
        task_id="land",
        manifest={"manifest": str(run_dir / "manifest.json")},
        destination=str(tmp_path / "out"),
        **kwargs,
    )


def test_its_own_wait_times_out_and_cancels_what_is_open(
    submit_run: SubmitRun, emulator: RunningEmulator, tmp_path: Path
) -> None:
    from airflow_provider_claude_batch.exceptions import ClaudeBatchWaitTimeoutError

    emulator.emulator.config.processing_seconds = 3600
    _, run_dir = submit_run(ROWS[:2])
    kept = _land(run_dir, tmp_path, deferrable=False, poll_interval=0.05, wait_timeout=0.2, cancel_on_timeout=False)
    with pytest.raises(ClaudeBatchWaitTimeoutError, match="wait_timeout"):
        kept.execute({})
    assert emulator.emulator.stats["batches_canceled"] == 0
    land = _land(run_dir, tmp_path, deferrable=False, poll_interval=0.05, wait_timeout=0.2)
    with pytest.raises(ClaudeBatchWaitTimeoutError):
        land.execute({})
    assert emulator.emulator.stats["batches_canceled"] == 1


def test_its_deferred_wait_carries_the_poll_error_budget_and_the_kill_rule(
    submit_run: SubmitRun, emulator: RunningEmulator, tmp_path: Path
) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_provider_claude_batch.exceptions import ClaudeBatchWaitEventError, ClaudeBatchWaitTimeoutError
    from airflow_provider_claude_batch.triggers.batch import ClaudeBatchTrigger

    emulator.emulator.config.processing_seconds = 3600
    manifest, run_dir = submit_run(ROWS[:2])
    land = _land(run_dir, tmp_path, max_poll_errors=3, cancel_on_kill=False, wait_timeout=50)
    with pytest.raises(TaskDeferred) as deferred:
        land.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, ClaudeBatchTrigger)
    assert (trigger.max_poll_errors, trigger.cancel_on_kill) == (3, False)
    with pytest.raises(ClaudeBatchWaitEventError):
        land.execute_complete({}, {"status": "success", "batches": {"x": {}}})
    timeout = {"status": "timeout", "message": "late", "open": manifest.batch_ids()}
    with pytest.raises(ClaudeBatchWaitTimeoutError):
        land.execute_complete({}, timeout)
    assert emulator.emulator.stats["batches_canceled"] == 1


def test_a_kept_column_that_clashes_fails_when_the_dag_is_parsed(emulator: RunningEmulator) -> None:
    """Keeping an input column named like a result column (``text``) used to fail in the
    transfer, after the batch was created and billed. Now the DAG does not parse, and the
    message's fix keeps the other columns."""
    with pytest.raises(ClaudeBatchInputError, match=r"keep_columns \['text'\] clash") as refused:
        ClaudeBatchToParquetOperator(task_id="l", manifest="m", destination="d", keep_columns=["product", "text"])
    assert "keep_columns=['product', {'text': 'input_text'}]" in str(refused.value)
    assert emulator.emulator.stats["batches_created"] == 0


def test_the_submit_s_typed_columns_and_saved_columns_are_checked_at_parse() -> None:
    from pydantic import BaseModel

    from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator

    class Review(BaseModel):
        sentiment: str

    from airflow.sdk import DAG

    with DAG("parse_checks", schedule=None):
        submit = ClaudeBatchSubmitOperator(
            task_id="submit", source=["a"], model="m", output_schema=Review, input_columns=["product"]
        )
        with pytest.raises(ClaudeBatchInputError, match=r"keep_columns \['sentiment'\] clash"):
            ClaudeBatchToParquetOperator(
                task_id="l1", manifest=submit.output, destination="d", keep_columns=["sentiment"]
            )
        with pytest.raises(ClaudeBatchInputError, match=r"keep_columns \['rating'\] are not saved by the submit task"):
            ClaudeBatchToParquetOperator(task_id="l2", manifest=submit.output, destination="d", keep_columns=["rating"])
        ClaudeBatchToParquetOperator(
            task_id="l3", manifest=submit.output, destination="d", keep_columns=[{"product": "sentiment_of"}]
        )


def test_requests_of_a_batch_canceled_under_them_are_sent_again_and_land_answered(
    submit_run: SubmitRun, emulator: RunningEmulator, tmp_path: Path
) -> None:
    """A clear of the run while its wait is deferred kills the wait, which cancels its batches;
    the submit then re-attaches to them. Their requests end ``canceled`` (never run, not
    billed): the landing sends them again in a round, and every row lands answered. Oracle: the
    rows by custom_id and their result_type; the emulator's creates (the round's batch)."""
    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

    emulator.emulator.config.processing_seconds = 3600
    manifest, run_dir = submit_run(ROWS)
    for batch_id in manifest.batch_ids():
        ClaudeBatchHook(retry_backoff=0).cancel_batch(batch_id)
    created = emulator.emulator.stats["batches_created"]
    emulator.emulator.config.processing_seconds = 0
    _land(run_dir, tmp_path, deferrable=False, poll_interval=0.05).execute({})
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert sorted(row["custom_id"] for row in rows) == [f"row-{i}" for i in range(len(ROWS))]
    assert {row["result_type"] for row in rows} == {"succeeded"} and {row["round"] for row in rows} == {1}
    assert emulator.emulator.stats["batches_created"] > created
