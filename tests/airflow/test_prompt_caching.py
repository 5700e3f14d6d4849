"""Prompt caching end to end: the breakpoint on the system prompt, the emulator's cache usage
over HTTP, and the cost columns that follow from it (``dag.test()``)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pytest

from airflow_provider_claude_batch.batching.render.prompt_caching import cached_system
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import run_dag, task_states, xcom

#: Long enough to be cacheable (the API caches prefixes of 1,024 tokens or more).
SYSTEM = "You label support tickets. " + " ".join(f"Rule {i}: be precise and brief." for i in range(200))


def _run(make_dag, destination: Path, *, cache: bool):
    rows = [f"ticket {i}" for i in range(40)]
    dag = make_dag(
        f"""
        s = ClaudeBatchSubmitOperator(task_id="submit", source={rows!r}, system={SYSTEM!r}, model="claude-sonnet-4-6",
                                      max_tokens=16, cache_system_prompt={cache!r})
        w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
        l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={str(destination)!r})
        s >> w >> l
        """
    )
    dag_run = run_dag(dag)
    assert task_states(dag_run)["land"] == "success"
    return ds.dataset(destination, format="parquet").to_table().to_pylist(), xcom(dag_run, "land")


def test_a_cached_system_prompt_is_written_once_read_after_and_costs_less(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    plain, plain_summary = _run(make_dag, tmp_path / "plain", cache=False)
    cached, cached_summary = _run(make_dag, tmp_path / "cached", cache=True)
    assert all(row["cache_creation_input_tokens"] == row["cache_read_input_tokens"] == 0 for row in plain)
    writes = [row for row in cached if row["cache_creation_input_tokens"]]
    reads = [row for row in cached if row["cache_read_input_tokens"]]
    assert len(writes) == 1 and len(reads) == 39  # the first request writes, the others read
    prefix = writes[0]["cache_creation_input_tokens"]
    assert prefix >= 1024 and writes[0]["cache_creation_1h_input_tokens"] == prefix
    assert writes[0]["cache_creation_5m_input_tokens"] == 0
    assert all(row["cache_read_input_tokens"] == prefix for row in reads)
    # The input is the same (give or take the block's own JSON, a few dozen characters); the API
    # reports the cached part apart from input_tokens.
    by_id = {row["custom_id"]: row for row in plain}
    for row in reads:
        assert row["input_tokens"] + prefix == pytest.approx(by_id[row["custom_id"]]["input_tokens"], abs=30)
    # Sonnet at batch prices: 1-hour write 2x input ($6/MTok), read 0.1x ($0.30), halved.
    read = reads[0]
    assert read["cost_usd"] == pytest.approx(
        0.5 * (read["input_tokens"] * 3 + read["output_tokens"] * 15 + prefix * 0.3) / 1e6
    )
    write = writes[0]
    assert write["cost_usd"] == pytest.approx(
        0.5 * (write["input_tokens"] * 3 + write["output_tokens"] * 15 + prefix * 6) / 1e6
    )
    assert cached_summary["cost_usd"] < plain_summary["cost_usd"] / 3


def test_a_system_prompt_that_changes_per_row_is_not_cached() -> None:
    with pytest.raises(ClaudeBatchInputError, match=r"uses column\(s\) \['team'\]"):
        cached_system("You work for {team}.", {})
    with pytest.raises(ClaudeBatchInputError, match="needs a system prompt"):
        cached_system(None, {})
    _, params = cached_system("Literal {{braces}}", {"temperature": 0})
    assert params["system"] == [
        {"type": "text", "text": "Literal {braces}", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
