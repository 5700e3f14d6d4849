"""Batch states for every trigger on a triggerer's event loop, from shared ``list`` pages.

A triggerer can hold thousands of waits. One ``retrieve`` per batch per poll costs the loop a
few milliseconds each (request building, transport, model validation), so at a few hundred
polls a second the loop is saturated and every other trigger on it lags. A ``list`` page
answers up to 1,000 batches in one call, newest first, so instead:

* all triggers of one connection on one loop share a :class:`SharedBatchStates`;
* a poll registers the ids it wants and joins the refresh in flight if that one covers them,
  else the next one, so concurrent polls cost one walk through the pages, not one each;
* the waiters of a refresh resume in waves of a few dozen per loop turn, not all in one;
* a refresh walks pages until it has seen every wanted id, or until the pages reach batches
  created before any wanted batch could still be open (a batch ends at the latest 24 hours
  after its creation); ids it did not see are retrieved one by one, which also surfaces a
  batch that does not exist (404) exactly as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.batching.api.batch_state import BatchState
from airflow_provider_claude_batch.batching.wait.poller import Answer
from airflow_provider_claude_batch.hooks.claude_batch import CLOCK_SKEW, ClaudeBatchHook
from airflow_provider_claude_batch.hooks.loop_registry import LoopRegistry

#: A batch created before this horizon cannot still be open.
OPEN_HORIZON = timedelta(hours=limits.BATCH_EXPIRY_HOURS) + CLOCK_SKEW

#: Waiters of one refresh resumed per loop turn.
WAKE_WAVE = 32

#: A batch's state, or why it could not be had.
StateOrError = Answer


@dataclass
class _Refresh:
    wanted: set[str]
    done: asyncio.Future[dict[str, StateOrError]] = field(repr=False)
    #: Ids can still join until the refresh starts, on the loop's next turn: so the polls
    #: issued in one turn (triggers woken together) share it.
    started: bool = False
    served: int = 0


class SharedBatchStates:
    """Coalesces the polls of every trigger of one connection on one event loop."""

    def __init__(self, hook: ClaudeBatchHook, *, page_size: int = limits.LIST_PAGE_MAX) -> None:
        self.hook = hook
        self.page_size = page_size
        self._running: _Refresh | None = None
        self._queued: set[str] = set()
        self._task: asyncio.Task[None] | None = None  # keeps the running refresh referenced
        #: API calls made, by kind (for tests and benchmarks).
        self.calls = {"list": 0, "retrieve": 0}

    async def states(self, batch_ids: Iterable[str]) -> dict[str, StateOrError]:
        """The current state of each of ``batch_ids`` (an exception where it failed). Raises
        when the listing itself fails, e.g. a rejected key."""
        wanted = frozenset(batch_ids)
        while True:
            running = self._running
            if running is None:
                running = self._start(set(wanted | self._queued))
                self._queued.clear()
            elif not running.started:
                running.wanted |= wanted
            elif not wanted <= running.wanted:
                # Started before we asked: wait it out, then join (or start) the next one.
                self._queued |= wanted
                await asyncio.wait([running.done])
                continue
            found = await asyncio.shield(running.done)
            # Every waiter of a refresh wakes in the same loop turn; with a thousand triggers
            # that one turn would stall the loop. Resume them in waves instead.
            position = running.served
            running.served += 1
            for _ in range(position // WAKE_WAVE):
                await asyncio.sleep(0)
            return {batch_id: found[batch_id] for batch_id in wanted}

    def _start(self, wanted: set[str]) -> _Refresh:
        loop = asyncio.get_running_loop()
        refresh = _Refresh(wanted, loop.create_future())

        async def run() -> None:
            refresh.started = True
            try:
                refresh.done.set_result(await self._refresh(frozenset(refresh.wanted)))
            except asyncio.CancelledError:
                refresh.done.cancel()
                raise
            except Exception as exc:
                refresh.done.set_exception(exc)
                refresh.done.exception()  # retrieved here: waiters re-raise it themselves
            finally:
                self._running = None

        self._running = refresh
        self._task = loop.create_task(run())
        return refresh

    async def _refresh(self, wanted: frozenset[str]) -> dict[str, StateOrError]:
        found: dict[str, StateOrError] = {}
        horizon = datetime.now(timezone.utc) - OPEN_HORIZON
        after_id: str | None = None
        while len(found) < len(wanted):
            page = await self.hook.alist_batch_states(limit=self.page_size, after_id=after_id)
            self.calls["list"] += 1
            for entry in page.data:
                if entry.id in wanted:
                    found[entry.id] = entry
            if not page.has_more or not page.data or page.data[-1].created_at < horizon:
                break
            after_id = page.last_id or page.data[-1].id
        missing = [batch_id for batch_id in wanted if batch_id not in found]
        if missing:
            answers = await asyncio.gather(*(self.hook.aretrieve_batch(b) for b in missing), return_exceptions=True)
            self.calls["retrieve"] += len(missing)
            for batch_id, answer in zip(missing, answers, strict=True):
                found[batch_id] = answer if isinstance(answer, BaseException) else BatchState.from_batch(answer)
        return found


#: One :class:`SharedBatchStates` per connection per event loop.
_SHARED: LoopRegistry[SharedBatchStates] = LoopRegistry()


async def shared_batch_states(hook: ClaudeBatchHook) -> SharedBatchStates:
    """The :class:`SharedBatchStates` of ``hook``'s connection on the running loop."""
    settings = await hook.asettings()
    return _SHARED.get(settings.cache_key(), lambda: SharedBatchStates(hook))
