"""Every error this provider raises, in two families under :class:`ClaudeBatchError`.

* **Input errors** (:class:`ClaudeBatchInputError`): raised before anything is submitted, so
  nothing was billed. The message names the row, the field or the parameter, and the limit.
  Fix the input or the DAG and run again.
* **Job errors** (:class:`ClaudeBatchJobError`): raised after batches may exist: the API
  refused or failed a call, a batch is gone, a create could not be settled, results are
  missing, too many requests failed, the work directory's manifest does not fit. The message
  says what exists and what to do next.

Messages name the connection, batch, chunk, row or field involved. They never contain an
API key. This module imports no Airflow and no SDK (DAG files import it when they are parsed),
so the ``batching`` core raises these too. A job
error raised while a task is deferred reaches the resumed task as the same type (see
``batching/wait/wait_event.py``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ClaudeBatchAPIError",
    "ClaudeBatchAuthError",
    "ClaudeBatchBudgetError",
    "ClaudeBatchClaimHeldError",
    "ClaudeBatchCreateAmbiguousError",
    "ClaudeBatchError",
    "ClaudeBatchFailedRequestsError",
    "ClaudeBatchFederationError",
    "ClaudeBatchInputError",
    "ClaudeBatchInvalidOutputError",
    "ClaudeBatchJobError",
    "ClaudeBatchManifestError",
    "ClaudeBatchMediaError",
    "ClaudeBatchMissingResultsError",
    "ClaudeBatchNotFoundError",
    "ClaudeBatchParameterError",
    "ClaudeBatchPartitionError",
    "ClaudeBatchQueueFullError",
    "ClaudeBatchResultsError",
    "ClaudeBatchSupersededError",
    "ClaudeBatchUnsupportedAirflowError",
    "ClaudeBatchWaitEventError",
    "ClaudeBatchWaitTimeoutError",
]


class ClaudeBatchError(Exception):
    """Base class of every error raised by airflow-provider-claude-batch."""


# ---------------------------------------------------------------------- input errors
class ClaudeBatchInputError(ClaudeBatchError, ValueError):
    """The input rows, template or parameters cannot become valid batch requests.

    Raised before anything is submitted; the message names the row and the field.
    """


class ClaudeBatchMediaError(ClaudeBatchInputError):
    """Bytes the API would not take as a document or image (type, size, pages, pixels); the
    message says why. Staging adds the row and the file (``render/documents.py``); the
    emulator turns it into the API's refusal of that one request."""


class ClaudeBatchBudgetError(ClaudeBatchInputError):
    """What a run could cost is over its ``max_cost_usd`` (or cannot be priced): nothing was
    submitted."""


class ClaudeBatchParameterError(ClaudeBatchInputError):
    """An operator argument is malformed or contradicts another one (raised at DAG parse)."""


# ---------------------------------------------------------------------- job errors
class ClaudeBatchUnsupportedAirflowError(ClaudeBatchError, RuntimeError):
    """The installed Apache Airflow is outside the range this provider is tested on: raised
    when the provider is imported (see ``compat.py``), before any DAG or task uses it. Neither
    an input nor a job error: nothing ran. A ``RuntimeError``, as the Apache providers raise
    for the same case."""


class ClaudeBatchJobError(ClaudeBatchError):
    """Something went wrong after work was submitted (or while reading what was)."""


class ClaudeBatchClaimHeldError(ClaudeBatchJobError):
    """An earlier run still claims requests of this run after the caller's patience; this run's
    claim was dropped (``batching/reuse/claims``). The submit operator catches it and waits
    deferred; uncaught, nothing was planned or sent under that claim."""

    def __init__(self, earlier: int, common: int, waited_seconds: float) -> None:
        super().__init__(
            f"{earlier} earlier run(s) still hold {common} of these requests after {waited_seconds:.0f} s "
            "(a run feeding the batch queue keeps its claim until its last chunk is created)"
        )
        self.earlier, self.common = earlier, common


class ClaudeBatchManifestError(ClaudeBatchJobError):
    """The work directory's manifest is missing, unreadable or does not match the input."""


class ClaudeBatchAPIError(ClaudeBatchJobError):
    """The API answered with an error, or could not be reached.

    ``created_nothing`` is true on a failed create only when the API surely created nothing
    (it refused every attempt), so the caller may forget its intent to create.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        created_nothing: bool = False,
    ):
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type
        self.created_nothing = created_nothing


class ClaudeBatchAuthError(ClaudeBatchAPIError):
    """The API key is missing or was rejected (401/403)."""


class ClaudeBatchFederationError(ClaudeBatchAuthError):
    """A connection's identity token could not be exchanged for an access token.

    What is raised is also an ``AnthropicError`` (a subclass in ``hooks/credentials.py``),
    because it is raised inside the SDK's request (where the SDK fetches tokens): the SDK
    passes its own errors through, but would wrap any other one as a connection error and
    retry it, and a create would then look ambiguous.
    """


class ClaudeBatchNotFoundError(ClaudeBatchAPIError):
    """The batch does not exist in this workspace (404)."""


class ClaudeBatchQueueFullError(ClaudeBatchAPIError):
    """A create was refused because the organisation's batch queue is full (429 that speaks of
    the queue): nothing was created; a queue-aware submit waits for room instead of failing.
    ``request_count`` is the refused create's size; ``certain`` is False when the refusals did
    not say what they refused (each attempt a 429 naming neither the queue nor a rate): the run
    still waits, but learns no limit from it."""

    def __init__(self, message: str, *, request_count: int | None = None, certain: bool = True, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.request_count = request_count
        self.certain = certain


class ClaudeBatchCreateAmbiguousError(ClaudeBatchAPIError):
    """A create failed in a way that may or may not have created a batch, and the lookup
    that should have settled it could not."""


class ClaudeBatchResultsError(ClaudeBatchJobError):
    """A results file holds a line that is not a batch result."""


class ClaudeBatchMissingResultsError(ClaudeBatchJobError):
    """A batch's results do not match its requests one to one."""


class ClaudeBatchFailedRequestsError(ClaudeBatchJobError):
    """More requests failed than ``max_failed_fraction`` allows."""


class ClaudeBatchInvalidOutputError(ClaudeBatchJobError):
    """Answers did not match the run's output schema and ``on_invalid_output`` is ``"fail"``."""


class ClaudeBatchWaitTimeoutError(ClaudeBatchJobError):
    """Batches were still open when a wait's timeout passed (they were canceled first, unless
    the task says not to)."""


class ClaudeBatchPartitionError(ClaudeBatchJobError):
    """A partition cannot be read consistently (a commit object that cannot be parsed, or one
    that kept changing under the reader)."""


class ClaudeBatchWaitEventError(ClaudeBatchJobError):
    """The event a deferred wait resumed with is not one this provider's trigger sends."""


class ClaudeBatchSupersededError(ClaudeBatchJobError):
    """A newer try of the same task instance took the run folder: this try stops creating
    (the newer one re-attaches what this one created and creates the rest)."""
