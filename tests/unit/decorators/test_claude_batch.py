"""``@task.claude_batch`` (decorators/claude_batch.py) called directly, against the emulator,
landing without deferring. Through Airflow (deferral, mapping, retries) it runs in
tests/airflow/test_decorator.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.state.manifest import load_manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.wait.poller import Poller, retrieve_states
from airflow_provider_claude_batch.decorators.claude_batch import claude_batch_task
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError, ClaudeBatchParameterError
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator


def _context() -> Any:
    return {"ti": SimpleNamespace(dag_id="dag", run_id="run", task_id="labels", map_index=-1)}


class _Rows:
    """A task function (``labels``) that returns ``rows`` and counts its calls."""

    def __init__(self, rows: Any) -> None:
        self.calls = 0

        def labels() -> Any:
            self.calls += 1
            return rows

        self.function = labels


def _operator(function: _Rows, tmp_path: Path, **kwargs: Any) -> Any:
    decorated = claude_batch_task(
        task_id="labels",
        prompt="{text}",
        model="claude-haiku-4-5",
        max_tokens=8,
        work_dir=str(tmp_path),
        deferrable=False,
        **kwargs,
    )(function.function)
    return decorated().operator


def test_the_function_runs_once_and_its_rows_are_submitted_and_landed(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    function = _Rows([{"text": f"question {i}", "product": f"p{i}"} for i in range(5)])
    operator = _operator(function, tmp_path, keep_columns=["product"])

    summary = operator.execute(_context())

    assert function.calls == 1
    assert emulator.emulator.stats["batches_created"] == 1
    assert summary["rows"] == 5 and Path(summary["manifest"]).name == "manifest.json"
    destination = RunDir(Path(summary["manifest"]).parent).default_output  # no destination given
    table = pq.read_table(str(destination)).to_pydict()
    assert sorted(table["product"]) == [f"p{i}" for i in range(5)]


def test_a_resume_lands_and_never_calls_the_function_again(emulator: RunningEmulator, tmp_path: Path) -> None:
    function = _Rows(["a", "b"])
    operator = _operator(function, tmp_path)
    summary = operator.execute(_context())
    ids = load_manifest(Path(summary["manifest"])).batch_ids()
    assert list(summary["by_batch"]) == ids  # the summary names the batches
    event = Poller(ids).observe(retrieve_states(ClaudeBatchHook(), ids))
    assert event is not None and event.status == "success"

    resumed = _operator(function, tmp_path)  # a resumed task instance never ran execute
    again = resumed.execute_complete(_context(), event.payload())

    assert function.calls == 1
    assert again["rows"] == 2 and again["manifest"] == summary["manifest"]
    # The submit's links, set again on the resumed instance.
    assert resumed.batches_page_link is not None
    assert (resumed.console_link, resumed.batches_page_link) == (operator.console_link, operator.batches_page_link)
    assert emulator.emulator.stats["batches_created"] == 1


def test_a_function_returning_none_fails_naming_it_before_anything_is_sent(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    with pytest.raises(ClaudeBatchInputError, match=r"labels\(\) returned None"):
        _operator(_Rows(None), tmp_path).execute(_context())
    assert emulator.emulator.stats["batches_created"] == 0


def test_rows_come_from_the_function_not_from_source(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not source="):
        _operator(_Rows([]), tmp_path, source=["a"])


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"max_retry_rounds": -1}, "max_retry_rounds"),
        ({"poll_interval": 0}, "poll_interval must be positive"),
        ({"wait_timeout": "2h"}, "wait_timeout must be a number of seconds"),
        ({"on_invalid_output": "shrug"}, "on_invalid_output"),
        ({"keep_columns": {"product": ""}}, "keep_columns must map"),
    ],
)
def test_landing_arguments_fail_when_the_dag_is_parsed(tmp_path: Path, kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises((ClaudeBatchParameterError, ClaudeBatchInputError, ValueError), match=named):
        _operator(_Rows([]), tmp_path, **kwargs)


def test_the_landing_step_gets_the_tasks_settings_resolved(tmp_path: Path) -> None:
    operator = _operator(
        _Rows([]),
        tmp_path,
        poll_interval=30,
        wait_timeout=7200,
        max_retry_rounds=1,
        keep_columns={"product": "product_name"},
        prices={"claude-haiku-4-5": {"input": 1, "output": 5, "cache_write": 1.25, "cache_read": 0.1}},
        conn_id="other",
    )
    lander = operator._lander(str(tmp_path / "out"), str(tmp_path / "manifest.json"))
    assert isinstance(lander, ClaudeBatchToParquetOperator)
    assert (lander.poll_interval, lander.wait_timeout, lander.max_retry_rounds) == (30.0, 7200.0, 1)
    assert lander.deferrable is False
    assert lander.keep_columns == {"product": "product_name"}
    assert lander.claude_batch_conn_id == "other"
    assert lander.prices == operator.prices
    assert "source" not in operator.template_fields
    assert {"destination", "keep_columns", "prompt"} <= set(operator.template_fields)
