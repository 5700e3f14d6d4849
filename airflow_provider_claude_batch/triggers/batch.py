"""ClaudeBatchTrigger: waits in the triggerer until every batch of a run has ended."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_claude_batch.batching.cancel import acancel_batches
from airflow_provider_claude_batch.batching.progress import Progress
from airflow_provider_claude_batch.exceptions import ClaudeBatchAuthError, ClaudeBatchNotFoundError
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.triggers.shared_states import shared_batch_states


class ClaudeBatchTrigger(BaseTrigger):
    """Poll every open batch; fire once when all have ended, when the deadline passes, or
    when polling keeps failing. Polls go through the loop's shared batch states (``list``
    pages shared by every trigger of the connection, see ``triggers/shared_states.py``).

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
    :param cancel_on_kill: cancel the batches when a user kills the deferred task.
    """

    def __init__(
        self,
        batch_ids: list[str],
        claude_batch_conn_id: str = ClaudeBatchHook.default_conn_name,
        poll_interval: float = 60.0,
        deadline: float | None = None,
        max_poll_errors: int = 10,
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
        states: dict[str, dict[str, Any]] = {}
        pending = list(self.batch_ids)
        progress = Progress(total_batches=len(self.batch_ids), started_at=self.started_at)
        failed_polls = 0
        shared = await shared_batch_states(hook)
        while True:
            errors: list[str] = []
            try:
                answers = await shared.states(pending)
            except Exception as exc:  # the listing itself failed
                answers = dict.fromkeys(pending, exc)
            for batch_id, answer in answers.items():
                if isinstance(answer, (ClaudeBatchNotFoundError, ClaudeBatchAuthError)):
                    # Waiting cannot fix a missing batch or a rejected key.
                    yield TriggerEvent({"status": "error", "message": str(answer), "batches": states})
                    return
                if isinstance(answer, BaseException):
                    errors.append(f"{batch_id}: {answer}")
                else:
                    states[batch_id] = answer
            if errors:
                failed_polls += 1
                self.log.warning(
                    "Poll %d failed for %d batch(es): %s", failed_polls, len(errors), "; ".join(errors[:3])
                )
                if failed_polls > self.max_poll_errors:
                    message = f"polling failed {failed_polls} times in a row; last errors: {'; '.join(errors[:5])}"
                    yield TriggerEvent({"status": "error", "message": message, "batches": states})
                    return
            else:
                failed_polls = 0
            pending = [b for b in self.batch_ids if states.get(b, {}).get("processing_status") != "ended"]
            self.log.info("%s", progress.line(states))
            if not pending:
                yield TriggerEvent({"status": "success", "batches": states, "elapsed": time.time() - self.started_at})
                return
            now = time.time()
            if self.deadline is not None and now >= self.deadline:
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "message": f"{len(pending)} batch(es) still open at the deadline",
                        "batches": states,
                        "open": pending,
                    }
                )
                return
            sleep_for = self.poll_interval if self.deadline is None else min(self.poll_interval, self.deadline - now)
            await asyncio.sleep(max(0.0, sleep_for))

    async def on_kill(self) -> None:
        """A user killed the deferred task (mark failed/success, clear): stop paying for it."""
        if not self.cancel_on_kill:
            return
        await acancel_batches(
            ClaudeBatchHook(self.claude_batch_conn_id), self.batch_ids, reason="Task killed", log=self.log
        )
