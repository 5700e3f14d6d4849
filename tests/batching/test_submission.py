"""Staging a run and its budget check (no Airflow, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.chunks import ChunkLimits
from airflow_provider_claude_batch.batching.pricing import PriceTable
from airflow_provider_claude_batch.batching.rendering import RequestSpec
from airflow_provider_claude_batch.batching.submission import StagedRun, check_budget, stage_requests
from airflow_provider_claude_batch.exceptions import ClaudeBatchBudgetError

PRICES = PriceTable.load({"m": {"input": 1, "output": 5, "cache_write": 1.25, "cache_read": 0.1}})


def _staged(tmp_path: Path, rows: int, model: str = "m") -> StagedRun:
    spec = RequestSpec(prompt="{text}", model=model, max_tokens=1000)
    return stage_requests([f"question {i}" for i in range(rows)], spec, ChunkLimits(), tmp_path)


def test_a_run_over_budget_is_stopped_with_what_it_could_cost(tmp_path: Path) -> None:
    staged = _staged(tmp_path, 2_000)
    ceiling = check_budget(staged, PRICES, None)
    assert ceiling is not None
    # 2,000 answers of at most 1,000 tokens at $5/M, halved, is $5 before any input.
    assert 5 < ceiling < 5.2
    assert check_budget(staged, PRICES, 10) == ceiling
    with pytest.raises(ClaudeBatchBudgetError) as raised:
        check_budget(staged, PRICES, 2.5)
    message = str(raised.value)
    assert message.startswith(f"2000 requests could cost up to ${ceiling:,.2f} at batch prices")
    assert "2,000,000 output tokens" in message and "over max_cost_usd $2.50. Nothing was submitted" in message


def test_a_budget_needs_every_model_priced(tmp_path: Path) -> None:
    staged = _staged(tmp_path, 3, model="house-model")
    assert check_budget(staged, PRICES, None) is None
    with pytest.raises(ClaudeBatchBudgetError, match=r"model\(s\) \['house-model'\] have no price"):
        check_budget(staged, PRICES, 100)


def test_keep_columns_are_checked_and_can_be_renamed(tmp_path: Path) -> None:
    from airflow_provider_claude_batch.batching.landing import keep_columns_spec, output_schema
    from airflow_provider_claude_batch.batching.submission import new_manifest
    from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

    spec = RequestSpec(prompt="{text}", model="m", max_tokens=10)
    source = [{"text": "hi", "product": "ios"}, {"text": "yo", "product": "web"}]
    staged = stage_requests(source, spec, ChunkLimits(), tmp_path)
    manifest = new_manifest(
        staged, dag_id="d", run_id="r", task_id="t", map_index=-1, conn_id="c", spec=spec, chunk_limits=ChunkLimits()
    )

    def schema(keep: object) -> list[str]:
        columns, rename = keep_columns_spec(keep)
        return output_schema(tmp_path, manifest, columns, rename).names[-len(columns) :]

    assert schema(["product"]) == ["product"]
    assert schema({"text": "input_text", "product": "product"}) == ["input_text", "product"]
    with pytest.raises(ClaudeBatchInputError, match=r"\['text'\] clash with result columns.*'text': 'input_text'"):
        schema(["text"])
    with pytest.raises(ClaudeBatchInputError, match=r"name two columns \['x'\]"):
        schema({"text": "x", "product": "x"})
    with pytest.raises(ClaudeBatchInputError, match=r"\['nope'\] are not among the saved input columns"):
        schema(["nope"])
    for bad in ("product", {"product": 3}, [1]):
        with pytest.raises(ClaudeBatchInputError, match="keep_columns must"):
            keep_columns_spec(bad)
