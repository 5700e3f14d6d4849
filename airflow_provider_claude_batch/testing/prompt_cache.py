"""The emulator's prompt cache: ``cache_control`` breakpoints -> cache writes and reads in usage.

As the API does: the prompt up to the last block with ``cache_control`` (tools, then system,
then messages) is the cached prefix; a prefix shorter than :data:`MIN_CACHEABLE_TOKENS` is not
cached (no error). The first request with a given prefix (per workspace and model) writes it,
with the breakpoint's TTL (``"5m"`` default, or ``"1h"``); later requests within the TTL read it,
and each read refreshes it. Tokens are counted as the emulator counts them everywhere: a
quarter of the JSON characters.

Decided when a batch is created, in request order, so a batch's usage is the same every time
its results are downloaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

#: The API's smallest cacheable prompt for most models (Haiku models need more there).
MIN_CACHEABLE_TOKENS = 1024
_TTL = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1)}


@dataclass(frozen=True)
class Breakpoint:
    """A request's cacheable prefix."""

    key: str
    tokens: int
    ttl: str


@dataclass
class CacheUse:
    """What one request did with the cache: tokens written (by TTL) or read."""

    written: int = 0
    read: int = 0
    ttl: str = "5m"

    def usage(self) -> dict[str, Any]:
        """The usage fields the API reports for it."""
        return {
            "cache_creation_input_tokens": self.written,
            "cache_read_input_tokens": self.read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.written if self.ttl == "5m" else 0,
                "ephemeral_1h_input_tokens": self.written if self.ttl == "1h" else 0,
            },
        }


def breakpoint_of(params: dict[str, Any], workspace: str | None) -> Breakpoint | None:
    """The prefix up to the last ``cache_control`` of a request's tools, system and messages."""
    prefix: list[Any] = []
    found: tuple[int, str] | None = None
    for part in ("tools", "system", "messages"):
        value = params.get(part)
        blocks = value if isinstance(value, list) else [value] if value is not None else []
        for block in blocks:
            prefix.append(block)
            inner = block.get("content") if isinstance(block, dict) else None
            for item in [block, *(inner if isinstance(inner, list) else [])]:
                control = item.get("cache_control") if isinstance(item, dict) else None
                if isinstance(control, dict):
                    found = (len(prefix), str(control.get("ttl") or "5m"))
    if found is None:
        return None
    text = json.dumps([params.get("model"), prefix[: found[0]]], sort_keys=True)
    tokens = math.ceil(len(text) / 4)
    if tokens < MIN_CACHEABLE_TOKENS:
        return None
    key = hashlib.blake2b(f"{workspace}\x1f{text}".encode(), digest_size=16).hexdigest()
    return Breakpoint(key, tokens, found[1] if found[1] in _TTL else "5m")


class PromptCache:
    """Cache entries (prefix key -> expiry), as the service keeps them."""

    def __init__(self) -> None:
        self._expiry: dict[str, datetime] = {}

    def use(self, point: Breakpoint | None, now: datetime) -> CacheUse:
        if point is None:
            return CacheUse()
        ttl = _TTL[point.ttl]
        expiry = self._expiry.get(point.key)
        self._expiry[point.key] = now + ttl
        if expiry is not None and expiry > now:
            return CacheUse(read=point.tokens, ttl=point.ttl)
        return CacheUse(written=point.tokens, ttl=point.ttl)

    def clear(self) -> None:
        self._expiry.clear()
