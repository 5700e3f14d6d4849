"""The parameter conventions every operator follows; a wrong parameter fails at DAG parse
time with a ``ClaudeBatchParameterError`` naming it (``tests/airflow/test_conventions.py``
runs the conventions through real DAGs)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_claude_batch.conventions import as_seconds, check_retry_rounds, pick_alias
from airflow_provider_claude_batch.decorators.claude_batch import claude_batch_task
from airflow_provider_claude_batch.exceptions import ClaudeBatchParameterError
from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_provider_claude_batch.sensors.batch import ClaudeBatchSensor
from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator


def _rows() -> list[str]:
    return []


def test_durations_aliases_and_rounds() -> None:
    assert as_seconds(timedelta(minutes=2), "timeout") == 120.0 and as_seconds(5, "timeout") == 5.0
    with pytest.raises(ClaudeBatchParameterError, match="timeout must be positive"):
        as_seconds(0, "timeout")
    with pytest.raises(ClaudeBatchParameterError, match="poke_interval must be a number of seconds"):
        as_seconds(True, "poke_interval")
    assert pick_alias("conn_id", None, "claude_batch_conn_id", "c") == "c"
    with pytest.raises(ClaudeBatchParameterError, match="give only conn_id="):
        pick_alias("conn_id", "a", "claude_batch_conn_id", "b")
    assert check_retry_rounds(0) == 0
    with pytest.raises(ClaudeBatchParameterError, match="max_retry_rounds must be >= 0, got -1"):
        check_retry_rounds(-1)


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: ClaudeBatchSubmitOperator(task_id="s", source=[], prompt="{x}", on_empty="ignore"), "on_empty"),
        (lambda: ClaudeBatchSubmitOperator(task_id="s", source=[], prompt="{x}", max_cost_usd=0), "max_cost_usd"),
        (lambda: ClaudeBatchSensor(task_id="w"), "needs manifest="),
        (lambda: ClaudeBatchSensor(task_id="w", batch_ids=["b"], max_failed_fraction=2), "max_failed_fraction"),
        (
            lambda: ClaudeBatchToParquetOperator(task_id="l", manifest="m", destination="d", max_retry_rounds=-1),
            "max_retry_rounds",
        ),
        (lambda: claude_batch_task(prompt="{x}", max_retry_rounds=-1)(_rows)(), "max_retry_rounds"),
    ],
)
def test_operator_parameters_fail_with_the_parameter_error(make: Any, named: str) -> None:
    with pytest.raises(ClaudeBatchParameterError, match=named):
        make()
