"""Prompt caching for a run: one ``cache_control`` breakpoint on the shared system prompt.

Every request of a run usually starts with the same system prompt. Marked with a
``cache_control`` breakpoint, the first request that reaches the service writes it to the cache
(1.25x input for 5 minutes, 2x for an hour) and later ones read it (0.1x input). Batches run
for up to 24 hours and their requests in no set order, so the breakpoint uses the 1-hour TTL,
as Anthropic recommends for batches.

Invariant: only a prefix that is the same for every request is marked. A system prompt with
``{column}`` fields changes per row and would be written again by every request (each write
dearer than plain input), so asking to cache one is an input error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_claude_batch.batching.render.rendering import PromptTemplate
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

#: The breakpoint's time to live (the API's values: "5m", "1h").
CACHE_TTL = "1h"


def cached_system(system: str | None, params: Mapping[str, Any]) -> tuple[None, dict[str, Any]]:
    """``(system, params)`` for the request spec with the system prompt moved into ``params``
    as one text block carrying the breakpoint."""
    if system is None:
        raise ClaudeBatchInputError("cache_system_prompt=True needs a system prompt (system=...)")
    template = PromptTemplate(system)
    if template.fields:
        raise ClaudeBatchInputError(
            f"cache_system_prompt=True, but the system prompt uses column(s) {list(template.fields)}: a prefix that "
            "changes per row is never read back from the cache. Move the per-row text into the prompt."
        )
    merged = dict(params)
    merged["system"] = [
        {"type": "text", "text": template.render([]), "cache_control": {"type": "ephemeral", "ttl": CACHE_TTL}}
    ]
    return None, merged
