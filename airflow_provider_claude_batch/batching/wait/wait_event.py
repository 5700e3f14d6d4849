"""The event a deferred wait resumes its task with: one typed payload, built and read here.

Invariants:

* A trigger sends exactly one :class:`WaitEvent`, as :meth:`WaitEvent.payload` (JSON: Airflow
  stores it in the metadata database). Only :class:`~.poller.Poller` builds one.
* The task that resumes reads it with :meth:`WaitEvent.from_payload`, which validates every
  field (and that a ``success`` has only ended batches): a malformed event fails the task with
  :class:`ClaudeBatchWaitEventError` naming the field, never a ``KeyError`` or a wrong result.
* A failure keeps its type across the deferral: ``error_kind`` says which job error the
  trigger saw (a rejected key, a missing batch, other API failures) and :meth:`WaitEvent.error`
  raises that type again in the task, with the status code and error type the API gave.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from airflow_provider_claude_batch.batching.api.batch_state import BatchState
from airflow_provider_claude_batch.exceptions import (
    ClaudeBatchAPIError,
    ClaudeBatchAuthError,
    ClaudeBatchNotFoundError,
    ClaudeBatchWaitEventError,
)

WaitStatus = Literal["success", "timeout", "error"]
ErrorKind = Literal["api", "auth", "not_found"]

#: The job error each ``error_kind`` stands for; the most specific type first.
_ERROR_TYPES: dict[ErrorKind, type[ClaudeBatchAPIError]] = {
    "not_found": ClaudeBatchNotFoundError,
    "auth": ClaudeBatchAuthError,
    "api": ClaudeBatchAPIError,
}


def error_kind(exc: BaseException) -> ErrorKind:
    for kind, error_type in _ERROR_TYPES.items():
        if isinstance(exc, error_type):
            return kind
    return "api"


class WaitEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """How a wait ended: every batch ended (``success``), the deadline passed with ``open``
    batches (``timeout``), or polling failed for good (``error``, with ``message`` and
    ``error_kind``). ``batches`` holds the last known state of every batch polled."""

    status: WaitStatus
    batches: dict[str, BatchState] = {}
    open: list[str] = []
    message: str | None = None
    error_kind: ErrorKind | None = None
    status_code: int | None = None
    error_type: str | None = None
    #: Seconds from the start of the wait to a ``success``.
    elapsed: float | None = None

    @classmethod
    def failed(cls, exc: BaseException, batches: Mapping[str, BatchState], *, message: str | None = None) -> WaitEvent:
        """An ``error`` event carrying ``exc``'s kind, status code and error type."""
        return cls(
            status="error",
            batches=dict(batches),
            message=message or str(exc),
            error_kind=error_kind(exc),
            status_code=getattr(exc, "status_code", None),
            error_type=getattr(exc, "error_type", None),
        )

    def payload(self) -> dict[str, Any]:
        """The JSON a ``TriggerEvent`` carries."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        data["batches"] = {batch_id: state.as_json() for batch_id, state in self.batches.items()}
        return data

    @classmethod
    def from_payload(cls, payload: Any) -> WaitEvent:
        """Validate the payload a task resumed with."""
        try:
            event = msgspec.convert(payload, cls)
        except msgspec.ValidationError as exc:
            raise ClaudeBatchWaitEventError(
                f"The wait resumed with an event this provider does not send ({exc}); clear the task to wait again."
            ) from None
        mismatched = [batch_id for batch_id, state in event.batches.items() if state.id != batch_id]
        not_ended = [batch_id for batch_id, state in event.batches.items() if not state.ended]
        if mismatched:
            raise ClaudeBatchWaitEventError(f"The wait's event files states under other batch ids: {mismatched[:5]}")
        if event.status == "success" and not_ended:
            raise ClaudeBatchWaitEventError(
                f"The wait's event says success, but batch(es) {', '.join(not_ended[:5])} had not ended"
            )
        if event.status == "error" and event.error_kind is None:
            raise ClaudeBatchWaitEventError("The wait's event is an error without an error_kind")
        return event

    def error(self) -> ClaudeBatchAPIError:
        """The job error an ``error`` event stands for, of the type the trigger saw."""
        error_type = _ERROR_TYPES[self.error_kind or "api"]
        return error_type(
            f"Waiting for the batches failed: {self.message}",
            status_code=self.status_code,
            error_type=self.error_type,
        )
