"""The emulator's prompt cache.

Invariants: a request's cacheable prefix ends at its last ``cache_control`` (tools, then system,
then messages) and is keyed by workspace, model and the prefix's content, never by what follows
it; a prefix under ``MIN_CACHEABLE_TOKENS`` is not cached. The first use of a prefix writes it,
uses within its TTL (``5m`` default, or ``1h``) read it and refresh it, a use after expiry writes
again. Usage reports writes and reads in the API's fields, split by TTL, and ``input_tokens``
leaves out the cached tokens.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import anthropic

from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.testing.prompt_cache import (
    MIN_CACHEABLE_TOKENS,
    Breakpoint,
    CacheUse,
    PromptCache,
    breakpoint_of,
)

POLICY = "policy " * 1000  # about 1,750 tokens as the emulator counts them
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _params(question: str = "ticket 1", *, ttl: str | None = None, model: str = "claude-sonnet-4-6") -> dict[str, Any]:
    control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return {
        "model": model,
        "max_tokens": 16,
        "system": [{"type": "text", "text": POLICY, "cache_control": control}],
        "messages": [{"role": "user", "content": question}],
    }


def test_the_prefix_ends_at_the_last_breakpoint_and_what_follows_is_not_in_its_key() -> None:
    point = breakpoint_of(_params("ticket 1"), None)
    assert point is not None and point.ttl == "5m"
    assert point == breakpoint_of(_params("a different ticket"), None)
    system = _params()["system"]
    assert point.tokens == math.ceil(len(json.dumps(["claude-sonnet-4-6", system], sort_keys=True)) / 4)
    # A breakpoint on the last message moves the prefix's end: the question joins the key.
    later = _params("ticket 1")
    later["messages"] = [
        {"role": "user", "content": [{"type": "text", "text": "ticket 1", "cache_control": {"type": "ephemeral"}}]}
    ]
    moved = breakpoint_of(later, None)
    assert moved is not None and moved.key != point.key and moved.tokens > point.tokens


def test_the_key_is_per_workspace_and_model() -> None:
    keys = {
        breakpoint_of(_params(), None),
        breakpoint_of(_params(), "wrkspc_a"),
        breakpoint_of(_params(model="claude-opus-4-6"), None),
    }
    assert None not in keys and len({point.key for point in keys if point}) == 3


def test_no_breakpoint_or_a_short_prefix_is_not_cached() -> None:
    plain = _params()
    plain["system"] = [{"type": "text", "text": POLICY}]
    assert breakpoint_of(plain, None) is None
    short = _params()
    short["system"][0]["text"] = "x" * (4 * MIN_CACHEABLE_TOKENS - 100)
    assert breakpoint_of(short, None) is None
    tools = {"model": "m", "tools": [{"name": "t", "description": POLICY, "cache_control": {"type": "ephemeral"}}]}
    assert breakpoint_of(tools, None) is not None


def test_the_ttl_is_the_breakpoints_and_an_unknown_one_is_five_minutes() -> None:
    one_hour = breakpoint_of(_params(ttl="1h"), None)
    assert one_hour is not None and one_hour.ttl == "1h"
    odd = breakpoint_of(_params(ttl="2d"), None)
    assert odd is not None and odd.ttl == "5m"


def test_first_use_writes_later_uses_within_the_ttl_read_and_refresh_it() -> None:
    cache = PromptCache()
    point = Breakpoint("k", 1500, "5m")
    assert cache.use(point, NOW) == CacheUse(written=1500, ttl="5m")
    assert cache.use(point, NOW + timedelta(minutes=4)) == CacheUse(read=1500, ttl="5m")
    # The read at minute 4 refreshed the entry: minute 8 still reads, minute 14 writes again.
    assert cache.use(point, NOW + timedelta(minutes=8)) == CacheUse(read=1500, ttl="5m")
    assert cache.use(point, NOW + timedelta(minutes=13)) == CacheUse(written=1500, ttl="5m")
    assert cache.use(None, NOW) == CacheUse()


def test_a_one_hour_entry_outlives_five_minutes_and_clear_forgets_it() -> None:
    cache = PromptCache()
    point = Breakpoint("k", 2000, "1h")
    cache.use(point, NOW)
    assert cache.use(point, NOW + timedelta(minutes=59)).read == 2000
    assert cache.use(point, NOW + timedelta(minutes=59 + 61)).written == 2000
    cache.clear()
    assert cache.use(point, NOW + timedelta(minutes=121)).written == 2000


def test_usage_fields_split_writes_by_ttl() -> None:
    assert CacheUse(written=10, ttl="1h").usage() == {
        "cache_creation_input_tokens": 10,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 10},
    }
    assert CacheUse(read=7).usage()["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 0,
    }
    assert CacheUse(written=3).usage()["cache_creation"]["ephemeral_5m_input_tokens"] == 3


def test_batches_write_then_read_then_write_after_expiry_over_http(
    client: anthropic.Anthropic, emulator: RunningEmulator
) -> None:
    """Through the SDK's ``Usage``: each batch's results report what its requests did."""

    def usages() -> list[anthropic.types.Usage]:
        requests = [{"custom_id": f"r-{i}", "params": _params(f"ticket {i}")} for i in range(2)]
        batch = client.messages.batches.create(requests=requests)
        results = sorted(client.messages.batches.results(batch.id), key=lambda line: line.custom_id)
        return [line.result.message.usage for line in results if line.result.type == "succeeded"]

    first = usages()
    tokens = first[0].cache_creation_input_tokens
    assert tokens and tokens >= MIN_CACHEABLE_TOKENS
    assert [(u.cache_creation_input_tokens, u.cache_read_input_tokens) for u in first] == [(tokens, 0), (0, tokens)]
    assert first[0].cache_creation is not None and first[0].cache_creation.ephemeral_5m_input_tokens == tokens
    assert all(u.input_tokens < tokens for u in first)  # cached tokens are reported apart

    emulator.emulator.advance(4 * 60)
    assert [(u.cache_creation_input_tokens, u.cache_read_input_tokens) for u in usages()] == [(0, tokens)] * 2
    emulator.emulator.advance(5 * 60 + 1)
    again = usages()
    assert [(u.cache_creation_input_tokens, u.cache_read_input_tokens) for u in again] == [(tokens, 0), (0, tokens)]
