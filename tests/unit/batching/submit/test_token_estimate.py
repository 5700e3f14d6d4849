"""Input tokens counted on an even sample of a staged run and scaled to it per model, through
the real hook's ``count_tokens`` against the emulator (it counts a quarter of the prompt's JSON
characters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
from airflow_provider_claude_batch.batching.submit.staging import stage_requests
from airflow_provider_claude_batch.batching.submit.token_estimate import count_staged, sample_lines
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator

PRICES = PriceTable.load({"claude-haiku-4-5": {"input": 1.0, "output": 5.0}})


def test_a_sample_is_spread_over_every_chunk(tmp_path: Path) -> None:
    spec = RequestSpec(prompt="{text}", model="claude-haiku-4-5", max_tokens=8)
    staged = stage_requests([f"row {i}" for i in range(100)], spec, ChunkLimits(max_requests=25), tmp_path)
    files = [f"{staged.directory_name}/{chunk.requests_file}" for chunk in staged.chunks]
    picked = sample_lines(tmp_path, files, staged.total_requests, 10)
    assert len(picked) == 10
    assert [line.split(b'"custom_id":"', 1)[1].split(b'"', 1)[0] for line in picked][:2] == [b"row-0", b"row-10"]
    assert any(b'"row 90"' in line for line in picked)  # the last chunk too


def test_counted_tokens_replace_bytes_in_the_tally_and_scale_to_the_run(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    spec = RequestSpec(prompt="{text}", model="claude-haiku-4-5", max_tokens=100)
    rows = [("a long ticket body " * 20) + str(i) for i in range(200)]
    staged = stage_requests(rows, spec, ChunkLimits(max_requests=50), tmp_path)
    hook = ClaudeBatchHook()
    found, counted = count_staged(staged, tmp_path, hook.count_tokens, PRICES, sample=20)

    assert (found.requests, found.batches, found.sampled) == (200, 4, 20)
    assert emulator.emulator.calls["count_tokens"] == 20  # the sample, not every row
    assert found.output_tokens_ceiling == 200 * 100
    # The emulator counts about a quarter of the prompt's characters: far under one per byte.
    assert 0 < found.input_tokens < staged.tally["claude-haiku-4-5"].input_bytes / 2
    assert counted.tally["claude-haiku-4-5"].input_bytes == found.input_tokens
    # The ceiling prices input as a cache write where that is dearer (1.25x input by default).
    assert found.cost_usd == pytest.approx((found.input_tokens * 1.25 + 20_000 * 5.0) / 2 / 1e6)
    assert emulator.emulator.stats["batches_created"] == 0 and "200 requests to send in 4 batch(es)" in found.describe()
