"""ClaudeBatchQueueTrigger: waits in the triggerer until the batch queue has room for a run's
next chunk, so that a feeding run holds no worker slot between its creates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_claude_batch.batching.api.queue_limit import queued_requests
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

#: Seconds between two looks at the queue.
DEFAULT_QUEUE_POLL_INTERVAL = 60.0


class ClaudeBatchQueueTrigger(BaseTrigger):
    """Poll what is in the workspace's batch queue (``list`` pages, every batch); fire once when
    it has room: ``queued + needed <= limit`` with a known limit, or fewer requests queued than
    at the start with none (a batch ended); or when ``recheck_at`` passes (the run's turn may have
    come, and its place in line needs a sign of life). The worker decides; this only wakes it.

    A failed poll is logged and the wait goes on: the worker meets any lasting error (a
    rejected key) at its next create, and ``recheck_at`` bounds the wait.

    :param claude_batch_conn_id: the connection (its key is looked up here, never serialized).
    :param needed: requests that must fit: the run's next chunk. Runs ahead of it in line are
        not counted here (their turn may end while this waits); the worker checks the turn, and
        a run whose turn has not come defers again at the cost of one look.
    :param limit: the queue's limit in requests (None: unknown).
    :param queued_at_start: requests queued when the run deferred (None: read on the first poll).
    :param poll_interval: seconds between polls.
    :param recheck_at: epoch seconds at which it fires whatever the queue holds.
    """

    def __init__(
        self,
        claude_batch_conn_id: str = ClaudeBatchHook.default_conn_name,
        needed: int = 0,
        limit: int | None = None,
        queued_at_start: int | None = None,
        poll_interval: float = DEFAULT_QUEUE_POLL_INTERVAL,
        recheck_at: float | None = None,
    ) -> None:
        super().__init__()
        self.claude_batch_conn_id = claude_batch_conn_id
        self.needed = int(needed)
        self.limit = limit
        self.queued_at_start = queued_at_start
        self.poll_interval = float(poll_interval)
        self.recheck_at = recheck_at

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "claude_batch_conn_id": self.claude_batch_conn_id,
                "needed": self.needed,
                "limit": self.limit,
                "queued_at_start": self.queued_at_start,
                "poll_interval": self.poll_interval,
                "recheck_at": self.recheck_at,
            },
        )

    def has_room(self, queued: int) -> bool:
        """Whether ``queued`` requests in the queue leave room to wake the run."""
        if self.limit is not None:
            return queued + self.needed <= self.limit
        return self.queued_at_start is not None and queued < self.queued_at_start

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = ClaudeBatchHook(self.claude_batch_conn_id)
        while True:
            queued: int | None = None
            try:
                queued = queued_requests(await hook.aqueue_states())
            except Exception as exc:  # a blip: the recheck bounds the wait
                self.log.warning("Could not read the batch queue: %s", exc)
            if queued is not None:
                if self.limit is None and self.queued_at_start is None:
                    self.queued_at_start = queued
                elif self.has_room(queued):
                    yield TriggerEvent({"status": "room", "queued": queued})
                    return
                self.log.info(
                    "Batch queue: %d/%s requests; waiting for room for %d.",
                    queued,
                    "?" if self.limit is None else self.limit,
                    self.needed,
                )
            if self.recheck_at is not None and time.time() >= self.recheck_at:
                yield TriggerEvent({"status": "recheck", "queued": queued})
                return
            await asyncio.sleep(self._pause())

    def _pause(self) -> float:
        if self.recheck_at is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, self.recheck_at - time.time()))
