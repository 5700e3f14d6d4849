"""ClaudeBatchTrigger: waits in the triggerer until every batch of a run has ended."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_claude_batch.batching.wait.cancel import acancel_batches
from airflow_provider_claude_batch.batching.wait.poller import (
    DEFAULT_MAX_POLL_ERRORS,
    DEFAULT_POLL_INTERVAL,
    Answer,
    Poller,
)
from airflow_provider_claude_batch.compat import TRIGGER_ON_KILL, warn_degraded
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.triggers.shared_states import shared_batch_states


class ClaudeBatchTrigger(BaseTrigger):
    """Poll every open batch; fire once when all have ended, when the deadline passes, or
    when polling keeps failing. Polls go through the loop's shared batch states (``list``
    pages shared by every trigger of the connection, see ``triggers/shared_states.py``); the
    :class:`~airflow_provider_claude_batch.batching.wait.poller.Poller` decides, and its
    :class:`~airflow_provider_claude_batch.batching.wait.wait_event.WaitEvent` is the one event.

    :param batch_ids: the batches to wait for.
    :param claude_batch_conn_id: connection to poll with (the key is looked up in the
        triggerer, never serialized).
    :param poll_interval: seconds between polls.
    :param deadline: wall-clock time (epoch seconds) after which it gives up with a
        ``timeout`` event. Absolute, so a triggerer restart does not extend the wait.
    :param max_poll_errors: consecutive failed polls tolerated (network blips, 5xx) before
        an ``error`` event.
    :param started_at: epoch seconds the wait began, for elapsed time and the estimate of
        the time left (kept across restarts).
    :param cancel_on_kill: cancel the batches when a user kills the deferred task (Airflow
        3.3 and later: earlier triggerers never call ``on_kill``, which is said once as a warning).
    """

    def __init__(
        self,
        batch_ids: list[str],
        claude_batch_conn_id: str = ClaudeBatchHook.default_conn_name,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        deadline: float | None = None,
        max_poll_errors: int = DEFAULT_MAX_POLL_ERRORS,
        started_at: float | None = None,
        cancel_on_kill: bool = True,
    ) -> None:
        super().__init__()
        self.batch_ids = list(batch_ids)
        self.claude_batch_conn_id = claude_batch_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.max_poll_errors = max_poll_errors
        self.started_at = started_at if started_at is not None else time.time()
        self.cancel_on_kill = cancel_on_kill
        self._poller: Poller | None = None
        if cancel_on_kill and not TRIGGER_ON_KILL:
            warn_degraded(
                "a trigger's on_kill (called by the triggerer from Airflow 3.3)",
                "killing a deferred wait does not cancel its batches (they run on and are billed); "
                "cancel them in the Console, or wait with deferrable=False, where a killed task cancels them",
            )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "batch_ids": self.batch_ids,
                "claude_batch_conn_id": self.claude_batch_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "max_poll_errors": self.max_poll_errors,
                "started_at": self.started_at,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = ClaudeBatchHook(self.claude_batch_conn_id)
        self._poller = poller = Poller(
            self.batch_ids, max_poll_errors=self.max_poll_errors, deadline=self.deadline, started_at=self.started_at
        )
        shared = await shared_batch_states(hook)
        while True:
            pending = poller.pending()
            answers: Mapping[str, Answer]
            try:
                answers = await shared.states(pending)
            except Exception as exc:  # the listing itself failed
                answers = dict.fromkeys(pending, exc)
            event = poller.observe(answers)
            if poller.last_errors:
                self.log.warning(
                    "Poll %d failed for %d batch(es): %s",
                    poller.failed_polls,
                    len(poller.last_errors),
                    "; ".join(poller.last_errors[:3]),
                )
            if event is not None:
                if event.status != "error":
                    self.log.info("%s", poller.progress_line())
                yield TriggerEvent(event.payload())
                return
            self.log.info("%s", poller.progress_line())
            await asyncio.sleep(poller.sleep_for(self.poll_interval))

    async def on_kill(self) -> None:
        """A user killed the deferred task (mark failed/success, clear): stop paying for the
        batches that have not ended."""
        if not self.cancel_on_kill:
            return
        poller = getattr(self, "_poller", None)
        ids = poller.to_cancel() if poller is not None else self.batch_ids
        await acancel_batches(ClaudeBatchHook(self.claude_batch_conn_id), ids, reason="Task killed", log=self.log)
