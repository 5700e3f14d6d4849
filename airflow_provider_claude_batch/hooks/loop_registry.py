"""Objects shared per asyncio event loop: the async clients, the concurrency limit and the
triggers' shared batch states.

A triggerer runs thousands of waits on one loop. A client each would open thousands of
connection pools, unbounded concurrency stalls the loop for every other trigger, and a poll
each would cost one API call per trigger. So each of these exists once per loop (and per
connection, where it depends on one). Asyncio objects belong to the loop that made them, so
nothing is shared across loops; entries go with their loop (weak references).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopRegistry(Generic[T]):
    """One ``T`` per running event loop and key, made by ``factory`` on first use."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, T]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, key: Hashable, factory: Callable[[], T]) -> T:
        """The running loop's ``T`` for ``key``; call from inside the loop."""
        entries = self._by_loop.setdefault(asyncio.get_running_loop(), {})
        if key not in entries:
            entries[key] = factory()
        return entries[key]
