"""Staging a run and its budget check (no Airflow, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.chunks import ChunkLimits
from airflow_provider_claude_batch.batching.errors import ClaudeBatchBudgetError
from airflow_provider_claude_batch.batching.pricing import PriceTable
from airflow_provider_claude_batch.batching.requests import RequestSpec
from airflow_provider_claude_batch.batching.submission import StagedRun, check_budget, stage_requests

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
