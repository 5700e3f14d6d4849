"""The parameter conventions every operator follows; a wrong parameter fails at DAG parse
time with a ``ClaudeBatchParameterError`` naming it (``tests/airflow/test_conventions.py``
runs the conventions through real DAGs)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_claude_batch.conventions import (
    MAX_DURATION_SECONDS,
    age,
    as_seconds,
    check_retry_rounds,
    duration,
    pick_alias,
)
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
    ("value", "seconds"),
    [(5, 5.0), (0.25, 0.25), (timedelta(minutes=2), 120.0), (MAX_DURATION_SECONDS, MAX_DURATION_SECONDS)],
)
def test_a_duration_is_seconds_or_a_timedelta(value: Any, seconds: float) -> None:
    assert duration(value, "timeout") == timedelta(seconds=seconds)
    assert as_seconds(value, "timeout") == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "poll_interval must be positive, got 0"),
        (-1, "poll_interval must be positive, got -1"),
        (-timedelta(hours=1), "poll_interval must be positive"),
        (float("nan"), "poll_interval must be a finite duration, got nan"),
        (float("inf"), "poll_interval must be a finite duration, got inf"),
        (MAX_DURATION_SECONDS + 86400, "poll_interval may be at most 86399999913600 seconds"),
        (True, "poll_interval must be a number of seconds or a datetime.timedelta, got bool True"),
        ("30s", "poll_interval must be a number of seconds or a datetime.timedelta, got str '30s'"),
        (None, "poll_interval must be a number of seconds or a datetime.timedelta, got NoneType None"),
    ],
)
def test_a_wrong_wait_duration_is_named(value: Any, message: str) -> None:
    with pytest.raises(ClaudeBatchParameterError) as raised:
        as_seconds(value, "poll_interval")
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30d", timedelta(days=30)),
        (" 12H ", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        ("3600", timedelta(hours=1)),
        ("0", timedelta(0)),
        (0, timedelta(0)),
        (86400, timedelta(days=1)),
        (timedelta(days=7), timedelta(days=7)),
    ],
)
def test_an_age_also_takes_text_with_a_unit_and_zero(value: Any, expected: timedelta) -> None:
    assert age(value, "answer_max_age") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "max_age may not be negative, got -1"),
        ("-2d", "max_age may not be negative, got '-2d'"),
        ("3 parsecs", "max_age must be seconds or a number with s, m, h, d or w (e.g. '30d'), got '3 parsecs'"),
        ("d", "max_age must be seconds or a number with s, m, h, d or w"),
        ("", "max_age must be a timedelta, seconds or text like '30d', got ''"),
        ([30], "max_age must be a timedelta, seconds or text like '30d', got [30]"),
        (True, "max_age must be a timedelta, seconds or text like '30d', got True"),
        (float("nan"), "max_age must be a finite duration"),
        ("infd", "max_age must be a finite duration"),
        ("1e30d", "max_age may be at most 86399999913600 seconds, got '1e30d'"),
    ],
)
def test_a_wrong_age_is_named(value: Any, message: str) -> None:
    with pytest.raises(ClaudeBatchParameterError) as raised:
        age(value, "max_age")
    assert message in str(raised.value)


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
        (
            lambda: ClaudeBatchSensor(task_id="w", batch_ids=["b"], timeout=float("inf")),
            "timeout must be a finite duration",
        ),
        (lambda: ClaudeBatchSensor(task_id="w", batch_ids=["b"], poll_interval=0), "poke_interval must be positive"),
        (
            lambda: ClaudeBatchToParquetOperator(task_id="l", manifest="m", destination="d", wait_timeout=1e30),
            "wait_timeout",
        ),
        (lambda: claude_batch_task(prompt="{x}", poll_interval=float("nan"))(_rows)(), "poll_interval"),
        (
            lambda: ClaudeBatchSubmitOperator(task_id="s", source=[], prompt="{x}", answer_max_age="soon"),
            "answer_max_age",
        ),
    ],
)
def test_operator_parameters_fail_with_the_parameter_error(make: Any, named: str) -> None:
    with pytest.raises(ClaudeBatchParameterError, match=named):
        make()


def test_choices_and_positive_numbers_name_the_parameter() -> None:
    from airflow_provider_claude_batch.conventions import one_of, positive

    assert one_of("skip", "on_empty", ("skip", "fail")) == "skip"
    with pytest.raises(ClaudeBatchParameterError, match="on_empty must be 'skip' or 'fail', got 'never'"):
        one_of("never", "on_empty", ("skip", "fail"))
    assert positive(None, "max_cost_usd", "number of dollars") is None
    assert positive(3, "count_tokens_sample", "number of requests") == 3
    with pytest.raises(ClaudeBatchParameterError, match="max_cost_usd must be a positive number of dollars, got 0"):
        positive(0, "max_cost_usd", "number of dollars")
