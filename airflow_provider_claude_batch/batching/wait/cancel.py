"""Cancel batches and say so: the one rule for every place that stops paying for a wait.

A sensor that timed out, a task killed while deferred, a submit whose input changed: each
cancels some batches. Cancelling is best effort and never raises: a batch that already ended
(or was deleted) cannot be canceled and needs no cancel, and a failed cancel must not hide the
reason the task is failing. Every attempt is logged as a warning naming the reason, since each
one changes what is billed.

``hook`` is a :class:`~airflow_provider_claude_batch.batching.api.client.BatchCanceller` (or its
async twin), so this module stays free of Airflow imports; ``log`` is any logger
(a task's or a trigger's ``self.log``), this module's own by default.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from airflow_provider_claude_batch.batching.api.client import AsyncBatchCanceller, BatchCanceller

_log = logging.getLogger(__name__)


def cancel_batches(hook: BatchCanceller, batch_ids: Iterable[str], *, reason: str, log: Any = None) -> list[str]:
    """Cancel each batch with ``hook.cancel_batch``; returns the ids whose cancel was accepted."""
    ids = list(batch_ids)
    outcomes: list[Any] = []
    for batch_id in ids:
        try:
            outcomes.append(hook.cancel_batch(batch_id))
        except Exception as exc:
            outcomes.append(exc)
    return _report(ids, outcomes, reason, log or _log)


async def acancel_batches(
    hook: AsyncBatchCanceller, batch_ids: Iterable[str], *, reason: str, log: Any = None
) -> list[str]:
    """:func:`cancel_batches` with ``hook.acancel_batch``, the cancels in flight together (the
    hook bounds how many calls a loop has in flight)."""
    ids = list(batch_ids)
    outcomes = await asyncio.gather(*(hook.acancel_batch(batch_id) for batch_id in ids), return_exceptions=True)
    return _report(ids, outcomes, reason, log or _log)


def _report(
    ids: Sequence[str],
    outcomes: Sequence[Any],
    reason: str,
    log: Any,
) -> list[str]:
    canceled = []
    for batch_id, outcome in zip(ids, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            log.warning("%s: could not cancel batch %s: %s", reason, batch_id, outcome)
        else:
            log.warning("%s: canceled batch %s (%s).", reason, batch_id, outcome.processing_status)
            canceled.append(batch_id)
    return canceled
