"""The prompt-caching breakpoint: on a constant system prompt only, with the 1-hour TTL."""

from __future__ import annotations

import pytest

from airflow_provider_claude_batch.batching.render.prompt_caching import CACHE_TTL, cached_system
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError


def test_a_constant_system_prompt_becomes_one_cached_block() -> None:
    system, params = cached_system("You label {{tickets}}.", {"temperature": 0})
    assert system is None
    assert params == {
        "temperature": 0,
        "system": [
            {"type": "text", "text": "You label {tickets}.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ],
    }
    assert CACHE_TTL == "1h"  # batches run for up to 24 hours


def test_caching_needs_a_system_prompt_that_does_not_change_per_row() -> None:
    with pytest.raises(ClaudeBatchInputError, match="needs a system prompt"):
        cached_system(None, {})
    with pytest.raises(ClaudeBatchInputError, match=r"uses column\(s\) \['team'\]"):
        cached_system("You answer for {team}.", {})
