"""The price table, the cost formula and the cost ceiling (no Airflow, no network)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.api.pricing import PriceTable, RequestTally, Usage, cost_ceiling
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError


def test_prices_match_a_model_or_its_dated_alias_only() -> None:
    table = PriceTable()
    assert table.price("claude-sonnet-4-5-20250929") == table.prices["claude-sonnet-4-5"]
    assert table.price("claude-opus-4-0") == table.price("claude-opus-4-20250514") == table.prices["claude-opus-4"]
    assert table.price("claude-3-5-haiku-latest") == table.prices["claude-3-5-haiku"]
    # A model newer than the table is unknown, not priced as the family it starts with.
    assert table.price("claude-opus-4-8") is None
    assert table.price("claude-opus-4-8-20270101") is None
    assert table.cost("claude-opus-4-8", Usage(100, 100)) is None
    assert table.price("claude-opus-4-1-20250805") == table.prices["claude-opus-4-1"]
    assert table.price("claude-opus-4-6") == table.prices["claude-opus-4-6"]
    assert table.price("gpt-4") is None
    assert table.cost("gpt-4", Usage(100, 100)) is None
    assert table.cost("claude-haiku-4-5", Usage(1_000_000, 0)) == pytest.approx(0.5)
    assert table.cost("claude-haiku-4-5", Usage(1_000_000, 0), batch=False) == pytest.approx(1.0)


def test_prices_can_be_overridden_without_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"my-model": {"input": 2, "output": 4}}')
    # The one place prices come from is [claude_batch] prices (config.price_table); the old
    # variable of the same meaning is no longer read.
    monkeypatch.setenv("CLAUDE_BATCH_PRICES", '{"env-model": {"input": 1, "output": 1}}')
    table = PriceTable.load(
        str(prices), {"claude-sonnet-4-6": {"input": 1, "output": 1, "cache_write": 1, "cache_read": 1}}
    )
    assert table.price("env-model") is None
    assert table.cost("my-model", Usage(1_000_000, 1_000_000)) == pytest.approx(3.0)
    assert table.cost("claude-sonnet-4-6", Usage(0, 0, 1_000_000, 1_000_000)) == pytest.approx(1.0)
    with pytest.raises(ClaudeBatchInputError, match="price of model 'bad'"):
        PriceTable.load({"bad": {"input": "x"}})


def test_a_requests_cost_counts_hour_long_cache_writes_and_web_searches() -> None:
    """One request's cost prices every part of its usage, as the results' ``cost_usd`` does."""
    table = PriceTable.load({"m": {"input": 2, "output": 4, "cache_write": 2.5, "cache_read": 0.2}})
    five_minutes = table.cost("m", Usage(cache_creation_input_tokens=1_000_000))
    one_hour = table.cost("m", Usage(cache_creation_input_tokens=1_000_000, cache_creation_1h_input_tokens=1_000_000))
    assert five_minutes == pytest.approx(1.25)
    # An hour's write costs 2x input (4 USD/M here), halved for batches.
    assert one_hour == pytest.approx(2.0)
    # A search costs $10 per 1,000, not halved by the batch discount.
    assert table.cost("m", Usage(web_search_requests=3)) == pytest.approx(0.03)
    assert table.cost("m", Usage(web_search_requests=3), batch=False) == pytest.approx(0.03)


def test_the_cost_ceiling_prices_bytes_as_tokens_and_full_answers() -> None:
    prices = PriceTable.load({"m": {"input": 2, "output": 10, "cache_write": 2.5, "cache_read": 0.2}})
    ceiling, unpriced = cost_ceiling(
        {"m": RequestTally(requests=4, input_bytes=1_000_000, max_output_tokens=100_000)}, prices
    )
    # 1M bytes at the cache-write price (the dearer input) + 100k answer tokens, halved.
    assert unpriced == [] and ceiling == pytest.approx((2.5 + 1.0) / 2)
    assert cost_ceiling({"m": RequestTally(1, 10, 10), "mystery": RequestTally(1, 10, 10)}, prices) == (
        None,
        ["model mystery has no price"],
    )


def _tally(params: dict[str, object]) -> RequestTally:
    tally = RequestTally()
    tally.add(json.dumps({"custom_id": "a", "params": params}).encode(), 0)
    return tally


def test_an_hour_long_cache_breakpoint_prices_the_ceiling_at_the_hour_rate() -> None:
    """A 1-hour cache write costs 2x input, dearer than the 5-minute write's 1.25x: the ceiling of
    a run whose requests carry one prices its bytes at 2x, wherever the breakpoint sits."""
    prices = PriceTable.load({"m": {"input": 2, "output": 10, "cache_write": 2.5, "cache_read": 0.2}})
    hour = {"type": "ephemeral", "ttl": "1h"}
    text = [{"type": "text", "text": "x", "cache_control": hour}]
    for params in (
        {"system": text},
        {"messages": [{"role": "user", "content": text}]},
        {"tools": [{"name": "t", "input_schema": {"type": "object"}, "cache_control": hour}]},
        {"cache_control": hour},  # the request-level breakpoint
        {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": text}]}]},
    ):
        tally = _tally(params)
        assert tally.hour_cache_writes, params
        assert cost_ceiling({"m": replace(tally, input_bytes=1_000_000)}, prices)[0] == pytest.approx(4.0 / 2)
    five_minutes = _tally({"system": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]})
    assert not five_minutes.hour_cache_writes
    assert cost_ceiling({"m": replace(five_minutes, input_bytes=1_000_000)}, prices)[0] == pytest.approx(2.5 / 2)


def test_server_tools_make_the_ceiling_unknown_and_client_tools_do_not() -> None:
    prices = PriceTable.load({"m": {"input": 2, "output": 10}, "n": {"input": 2, "output": 10}})
    client = _tally({"tools": [{"name": "lookup", "input_schema": {"type": "object"}}, {"type": "bash_20250124"}]})
    assert client.server_tools == set() and cost_ceiling({"m": client}, prices)[0] is not None
    # A search result block in a message is not a tool the request offers.
    quoted = _tally({"messages": [{"role": "user", "content": [{"type": "web_search_tool_result"}]}]})
    assert quoted.server_tools == set()
    search = _tally({"tools": [{"type": "web_search_20250305", "name": "web_search"}]})
    fetch = _tally({"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}], "mcp_servers": [{"url": "u"}]})
    ceiling, why = cost_ceiling({"m": search, "n": fetch, "mystery": RequestTally()}, prices)
    assert ceiling is None
    assert why == [
        "model mystery has no price",
        "requests use server tools (mcp_servers, web_fetch_20250910, web_search_20250305) whose results no request bounds",
    ]
