"""The organisation's batch queue: how full it is, what a refusal teaches, what may be sent now
and in which order several runs take free room. Pure arithmetic, no I/O.

The API limits the requests an organisation may have in batches still processing (by usage
tier, about 100,000 to 500,000); a create beyond it is refused with 429 ``rate_limit_error``
and creates nothing. Invariants:

* The queue is every batch of the workspace, not only this provider's: what is in it is the
  ``processing`` count of each batch not ended (:func:`queued_requests`). The API keeps a
  batch's requests ``processing`` until the whole batch ends, so a batch leaves the queue whole.
* A limit is in requests. Configured, it is trusted. Unknown, it is learned from refusals: a
  refusal of ``n`` requests with ``q`` in the queue says the limit is below ``q + n``; an
  accepted create says it is at least ``q + n`` (:class:`LearnedLimit`). The two bounds can
  only meet if a reading was stale (another creator raced us): then the refusals' bound is
  forgotten, so a stale reading never blocks a run for good.
* Runs feeding at once are served in one stable order (:func:`turn_order`): the earliest to
  start waiting first (first come), then the higher ``priority_weight``, then the owner's name.
  A run may use only the room left after every run ahead of it has room for its next chunk
  (:func:`room_for`), so a run ahead is never overtaken for good and none starves: room only
  grows for the head of the line as batches end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from airflow_provider_claude_batch.batching.api.batch_state import ENDED, BatchState

#: The HTTP status and error type of a refused create.
QUEUE_FULL_STATUS = 429
QUEUE_FULL_ERROR_TYPE = "rate_limit_error"


#: The response header that says how many calls the request rate limit still allows.
REQUESTS_REMAINING_HEADER = "anthropic-ratelimit-requests-remaining"
#: Kinds of a 429 ``rate_limit_error`` (:func:`refusal_kind`).
QUEUE, RATE, UNKNOWN = "queue", "rate", "unknown"
#: Words only a queue refusal uses.
_QUEUE_NAMED = re.compile(r"queue|enqueued", re.IGNORECASE)
#: Words of a request (or token) rate refusal: calls or tokens over a span of time.
_RATE_WORDS = re.compile(
    r"per[- ]?(second|minute|hour|day)|/\s*(s|sec|second|min|minute)\b|\b[rt]pm\b|tokens|"
    r"requests? rate|rate of requests|request rate",
    re.IGNORECASE,
)
#: Words of a refusal about requests waiting to be processed (the queue, not named).
_WAITING_WORDS = re.compile(
    r"in[- ]flight|processing|pending|unprocessed|requests in (your )?batches|batch(ed)? requests", re.IGNORECASE
)


def refusal_kind(
    status_code: int | None, error_type: str | None, message: str | None, headers: Mapping[str, str] | None = None
) -> str | None:
    """What a 429 ``rate_limit_error`` refused (None: not such a refusal).

    The API documents one status and type for every rate limit, and no header or code that
    names the batch queue, so the refusal is read, most certain first: a message that names the
    queue is ``QUEUE``; one that speaks of calls or tokens over time (requests per minute) is
    ``RATE``, as is a response whose ``anthropic-ratelimit-requests-remaining`` header says no
    call is left; one that speaks of requests waiting to be processed is ``QUEUE``; and a
    response that says calls are left (that header above 0) was not refused for its rate, so
    it is ``QUEUE`` too. Anything else is ``UNKNOWN``: retried as a request rate refusal, and
    only if every attempt is refused that way does a feeding run wait instead of failing
    (``ClaudeBatchHook.create_batch``), without learning a limit from it.
    """
    if status_code != QUEUE_FULL_STATUS or error_type not in (None, QUEUE_FULL_ERROR_TYPE):
        return None
    text = message or ""
    if _QUEUE_NAMED.search(text):
        return QUEUE
    remaining = _header_int(headers, REQUESTS_REMAINING_HEADER)
    if _RATE_WORDS.search(text) or remaining == 0:
        return RATE
    if _WAITING_WORDS.search(text) or (remaining is not None and remaining > 0):
        return QUEUE
    return UNKNOWN


def _header_int(headers: Mapping[str, str] | None, name: str) -> int | None:
    """A header's integer value (None: absent or not a number)."""
    value = None if headers is None else headers.get(name)
    try:
        return None if value is None else int(str(value).strip())
    except ValueError:
        return None


def is_queue_full(
    status_code: int | None, error_type: str | None, message: str | None, headers: Mapping[str, str] | None = None
) -> bool:
    """Whether a refused create says the batch queue is full (a reason to wait, never to fail),
    rather than that calls come too fast (a request rate limit, retried as any 429): see
    :func:`refusal_kind`."""
    return refusal_kind(status_code, error_type, message, headers) == QUEUE


def queued_requests(states: Iterable[BatchState]) -> int:
    """Requests in the queue: those still ``processing`` in batches that have not ended."""
    return sum(state.request_counts.processing for state in states if state.processing_status != ENDED)


@dataclass(frozen=True)
class LearnedLimit:
    """What creates and refusals taught about a limit nobody configured.

    ``at_least``: the most requests the queue held after an accepted create (0: nothing learned);
    ``below``: the least ``queued + refused`` of a refusal (None: never refused).
    """

    at_least: int = 0
    below: int | None = None

    @property
    def limit(self) -> int | None:
        """The limit to plan with: just under the lowest refusal, or unknown (None)."""
        return None if self.below is None else max(self.below - 1, 0)

    def refused(self, queued: int, requests: int) -> LearnedLimit:
        """A create of ``requests`` was refused with ``queued`` in the queue."""
        bound = queued + requests
        below = bound if self.below is None else min(self.below, bound)
        if below <= self.at_least:  # a stale reading: trust the newer observation only
            return LearnedLimit(at_least=0, below=bound)
        return LearnedLimit(self.at_least, below)

    def accepted(self, queued: int, requests: int) -> LearnedLimit:
        """A create of ``requests`` was accepted with ``queued`` in the queue before it."""
        at_least = max(self.at_least, queued + requests)
        below = self.below if self.below is None or self.below > at_least else None
        return LearnedLimit(at_least, below)

    def as_dict(self) -> dict[str, int | None]:
        return {"at_least": self.at_least, "below": self.below}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LearnedLimit:
        at_least, below = data.get("at_least", 0), data.get("below")
        return cls(int(at_least) if isinstance(at_least, int) else 0, int(below) if isinstance(below, int) else None)


@dataclass(frozen=True)
class Waiting:
    """One run waiting to send chunks: when it started waiting (ISO time), its priority, its
    owner's name, and the requests of its next chunk and of all its chunks not sent."""

    owner: str
    since: str
    priority: int = 1
    next_requests: int = 0
    waiting_requests: int = 0

    @property
    def order(self) -> tuple[str, int, str]:
        return (self.since, -self.priority, self.owner)


def turn_order(waiting: Iterable[Waiting]) -> list[Waiting]:
    """The runs in the order they take free room: first come, then priority, then name."""
    return sorted(waiting, key=lambda run: run.order)


def room_for(owner: str, waiting: Sequence[Waiting], queued: int, limit: int | None) -> int | None:
    """The requests ``owner`` may send now: the limit less what is queued and less the next
    chunk of every run ahead of it (None: no limit known, send and let the API say)."""
    if limit is None:
        return None
    return max(limit - queued - ahead_of(owner, waiting), 0)


def ahead_of(owner: str, waiting: Sequence[Waiting]) -> int:
    """The requests of the next chunks of every run ahead of ``owner`` (all, if it is not in line)."""
    ahead = 0
    for run in turn_order(waiting):
        if run.owner == owner:
            break
        ahead += run.next_requests
    return ahead


def fits(requests: int, room: int | None) -> bool:
    """Whether a chunk of ``requests`` may be sent into ``room`` (None: unknown, try)."""
    return room is None or requests <= room


def fill_fraction(queued: int, limit: int | None) -> float | None:
    """How full the queue is (0-1, None with no known limit)."""
    if not limit:
        return None
    return min(queued / limit, 1.0)
