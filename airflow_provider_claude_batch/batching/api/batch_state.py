"""A batch's state: the one typed shape of what a poll learns about a batch.

Invariants:

* The status and result vocabularies are written here once (:data:`PROCESSING_STATUSES`,
  :data:`RESULT_TYPES`); code compares with :data:`ENDED` and friends, never with literals.
* A :class:`BatchState` is built in two ways only, both here: :meth:`BatchState.from_batch`
  from an SDK ``MessageBatch`` (or anything with its attribute names), and
  :func:`decode_states_page` straight from the JSON of a ``list`` page (no SDK model per
  batch: a page of 1,000 batches costs the triggerer's loop about a millisecond this way).
* It crosses process boundaries (trigger events, XCom, the manifest) only as JSON built by
  :meth:`BatchState.as_json` and read back by :meth:`BatchState.from_json`, which validates:
  an unknown status or a negative count is an error, not a silently wrong wait.
* ``request_counts`` sum to the batch's request total; the API keeps every request
  ``processing`` until the whole batch ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import msgspec

ProcessingStatus = Literal["in_progress", "canceling", "ended"]
#: Every ``processing_status`` of a batch, in the order a batch goes through them.
PROCESSING_STATUSES: tuple[ProcessingStatus, ...] = get_args(ProcessingStatus)
IN_PROGRESS, CANCELING, ENDED = PROCESSING_STATUSES

ResultType = Literal["succeeded", "errored", "canceled", "expired"]
#: Every outcome of one request (a result line's ``result.type``).
RESULT_TYPES: tuple[ResultType, ...] = get_args(ResultType)
#: Outcomes that did not produce an answer (progress lines sum them as "failed").
FAILED_KINDS: tuple[ResultType, ...] = ("errored", "expired", "canceled")
#: The keys of ``request_counts``, in the order tables show them.
COUNT_KINDS: tuple[str, ...] = ("succeeded", *FAILED_KINDS, "processing")

_Count = Annotated[int, msgspec.Meta(ge=0)]


class RequestCounts(msgspec.Struct, frozen=True, gc=False):
    """How many requests of a batch are in each state (they sum to the batch's size)."""

    processing: _Count = 0
    succeeded: _Count = 0
    errored: _Count = 0
    canceled: _Count = 0
    expired: _Count = 0

    @property
    def total(self) -> int:
        return self.processing + self.succeeded + self.errored + self.canceled + self.expired

    @property
    def failed(self) -> int:
        """Requests that ended without an answer (errored, expired or canceled)."""
        return self.errored + self.expired + self.canceled

    @property
    def done(self) -> int:
        return self.total - self.processing

    def as_dict(self) -> dict[str, int]:
        return {kind: int(getattr(self, kind)) for kind in COUNT_KINDS}

    @classmethod
    def of(cls, counts: Any) -> RequestCounts:
        """From the SDK's ``MessageBatchRequestCounts`` or any object with its attributes."""
        return cls(**{kind: int(getattr(counts, kind)) for kind in COUNT_KINDS})


def sum_counts(states: Iterable[BatchState]) -> RequestCounts:
    totals = dict.fromkeys(COUNT_KINDS, 0)
    for state in states:
        for kind, count in state.request_counts.as_dict().items():
            totals[kind] += count
    return RequestCounts(**totals)


class BatchState(msgspec.Struct, frozen=True, gc=False):
    """The part of a ``MessageBatch`` that waiting, reporting and the manifest need (the
    attribute names are the API's)."""

    id: str
    processing_status: ProcessingStatus
    request_counts: RequestCounts
    created_at: datetime
    ended_at: datetime | None = None

    @property
    def ended(self) -> bool:
        return self.processing_status == ENDED

    @classmethod
    def from_batch(cls, batch: Any) -> BatchState:
        """From an SDK ``MessageBatch`` (or an object with the same attributes)."""
        return cls(
            id=batch.id,
            processing_status=batch.processing_status,
            request_counts=RequestCounts.of(batch.request_counts),
            created_at=batch.created_at,
            ended_at=batch.ended_at,
        )

    def as_json(self) -> dict[str, Any]:
        """JSON-safe (RFC 3339 times); :meth:`from_json` reads it back."""
        return {
            "id": self.id,
            "processing_status": self.processing_status,
            "request_counts": self.request_counts.as_dict(),
            "created_at": self.created_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
        }

    @classmethod
    def from_json(cls, data: Any) -> BatchState:
        """Validate JSON made by :meth:`as_json`; raises ``msgspec.ValidationError`` naming the
        field that is wrong."""
        return msgspec.convert(data, cls)


def states_json(states: Mapping[str, BatchState]) -> dict[str, dict[str, Any]]:
    """batch id -> state as JSON without the id (the shape of XCom return values)."""
    result = {}
    for batch_id, state in states.items():
        entry = state.as_json()
        del entry["id"]
        result[batch_id] = entry
    return result


class BatchStatesPage(msgspec.Struct, gc=False):
    """One ``list`` page, only the fields a wait needs."""

    data: list[BatchState]
    has_more: bool = False
    last_id: str | None = None


_page_decoder = msgspec.json.Decoder(BatchStatesPage)


def decode_states_page(raw: bytes) -> BatchStatesPage:
    """A ``list`` page's JSON body as batch states (unknown fields ignored)."""
    return _page_decoder.decode(raw)
