"""The emulated Message Batches service as a state machine: batches, their clock, injected
faults, scripted outcomes and the counters, in one :class:`Emulator` object.

A batch moves ``in_progress`` -> (``canceling``) -> ``ended`` when it is looked at
(:meth:`_Batch.settle`), never by a background timer: the clock is the wall clock plus an
offset that tests move forward (:meth:`Emulator.advance`) instead of sleeping.

Invariants:

* A batch ends at the earliest of its processing end, its cancel's end and its 24 h expiry;
  requests not ended by then are ``succeeded`` (or their scripted or drawn outcome),
  ``canceled`` or ``expired`` accordingly. Outcomes, once set, never change.
* Outcomes replay: a request's outcome is the next scripted one for its custom_id, else
  ``errored`` for invalid params, else a draw from the errored/expired fractions by a hash of the
  custom_id and how often it was submitted (so a resubmission draws again, and a run replays).
* Batches, faults and scripted outcomes change under one lock: the server's event loop and a
  test's own thread drive the same object at the same time.
* Batches are scoped by workspace; a deleted batch is gone for every call.
* With a ``state_file``, batches (not counters, faults, scripted outcomes or the clock offset)
  are written after each change, atomically, and read back on start: a restarted emulator
  still has them.
* Counters count what was received (``calls`` per endpoint, ``stats`` per event), so tests can
  assert what a client did, e.g. that a create was not sent twice.
* With a ``batch_rate_limit``, the batch endpoints answer at most that many calls per window;
  the others get 429 ``rate_limit_error`` with a ``retry-after`` and change nothing.
* With a ``queue_limit``, the requests in batches still processing (every workspace: the queue
  is the organisation's) never exceed it: a create that would is refused whole, before anything
  is stored, and ``stats["queue_high_water"]`` is the most ever queued (the tests' oracle).
* Billing counts what the ended batches' results bill (:mod:`.emulator_billing`): a batch is
  billed once, when its results file is rendered, at its first download or the first
  :meth:`Emulator.snapshot` after it ended, whichever comes first.

The HTTP layer (:mod:`.emulator_app`) adds authentication, latency and what faults do to an
answer; this module only decides which fault a call takes.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import math
import os
import secrets
import shutil
import tempfile
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.testing.emulator_billing import Billing
from airflow_provider_claude_batch.testing.emulator_files import FileStore
from airflow_provider_claude_batch.testing.emulator_requests import (
    ERROR_TYPES,
    EmulatorHTTPError,
    StoredRequest,
    parse_create,
    stable_int,
    text_digests,
)
from airflow_provider_claude_batch.testing.emulator_results import write_results
from airflow_provider_claude_batch.testing.federation import FederationRule, TokenIssuer
from airflow_provider_claude_batch.testing.pagination import cursor_page, list_body
from airflow_provider_claude_batch.testing.prompt_cache import PromptCache

DEFAULT_API_KEY = "emulator-key"

ENDPOINTS = ("create", "retrieve", "list", "cancel", "delete", "results", "models", "count_tokens")
#: The Message Batches endpoints, which ``batch_rate_limit`` counts together.
BATCH_ENDPOINTS = ("create", "retrieve", "list", "cancel", "delete", "results")

_encoder = msgspec.json.Encoder()


def rfc3339(moment: datetime | None) -> str | None:
    """A time as the API writes it (UTC, ``Z``)."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class Clock:
    """Wall clock plus an offset that tests move forward instead of sleeping."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(timezone.utc) + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += timedelta(seconds=seconds)

    def reset(self) -> None:
        with self._lock:
            self._offset = timedelta()


@dataclass
class Fault:
    """One injected fault, consumed ``times`` times by calls to ``endpoint``.

    ``status``: answer with this HTTP status and the matching error body. With
    ``after_commit`` (create only) the batch is created first, then the error is returned:
    the ambiguous failure that makes blind retries bill twice.
    ``delay_seconds``: answer this much later (a slow response).
    ``drop_after_bytes`` (results only): close the connection mid-body after that many bytes.
    ``skip``: let this many matching calls through untouched first.
    ``message``: the error's message (default: says it was injected), e.g. the words a real
    rate limit or queue refusal uses.
    """

    endpoint: str
    status: int | None = None
    times: int = 1
    skip: int = 0
    retry_after: float | None = None
    after_commit: bool = False
    delay_seconds: float = 0.0
    drop_after_bytes: int | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if self.endpoint not in (*ENDPOINTS, "any"):
            raise ValueError(f"unknown endpoint {self.endpoint!r}; use one of {ENDPOINTS} or 'any'")
        if self.status is not None and self.status not in ERROR_TYPES:
            raise ValueError(f"unsupported fault status {self.status}; use one of {sorted(ERROR_TYPES)}")


@dataclass
class EmulatorConfig:
    """Knobs of the emulated service. Every field can be changed while it runs."""

    api_keys: frozenset[str] = frozenset({DEFAULT_API_KEY})
    #: Seconds from creation until a batch ends (``math.inf``: never, until it expires).
    processing_seconds: float = 0.0
    #: Seconds from a cancel until the batch ends with its remaining requests canceled.
    cancel_seconds: float = 0.0
    max_requests_per_batch: int = limits.MAX_REQUESTS_PER_BATCH
    max_bytes_per_batch: int = limits.MAX_BYTES_PER_BATCH
    #: Added to every API call (not to control endpoints): a far-away server.
    latency_seconds: float = 0.0
    #: Fractions of requests that end errored (``api_error``) / expired, chosen by a hash of
    #: the custom_id and how often it was submitted, so runs replay identically.
    errored_fraction: float = 0.0
    expired_fraction: float = 0.0
    #: Replies are ``reply_chars`` characters long, or drawn from this range by hash.
    reply_chars: tuple[int, int] | None = None
    #: Answer a results ``Range`` request with 206 and the rest of the file; ``False``: ignore
    #: the header and send the whole file again (a server without ranges).
    results_ranges: bool = True
    #: Workload identity federation: the rule ``POST /v1/oauth/token`` exchanges against.
    federation: FederationRule = field(default_factory=FederationRule)
    #: Opt-in: requests end one by one, evenly over ``processing_seconds`` (in request order),
    #: and ``request_counts`` move from ``processing`` to their outcome as they do; the batch
    #: ends with its last request. The real API does the work this way but reports none of
    #: it: its requests stay ``processing`` until the whole batch ends (the default here).
    #: The mode models a service that reports per-request progress, so that waiting, the
    #: estimate of the time left and the page can be exercised with it. A cancel or the
    #: 24 h expiry keeps the outcomes of requests that already ended.
    gradual_ending: bool = False
    #: A JSON file that holds every batch (requests, outcomes, times): written after each
    #: change, read when the emulator starts, so batches survive a restart. Counters, faults,
    #: scripted outcomes and the test clock's offset are not kept.
    state_file: str | None = None
    #: Requests with ``output_config.format`` get JSON answers valid for their schema, except
    #: these fractions (drawn by a hash of the batch and custom_id, so a resubmission draws
    #: again): answers that do not validate, refusals (``stop_reason`` "refusal" with
    #: ``stop_details``) and truncations (``stop_reason`` "max_tokens").
    invalid_output_fraction: float = 0.0
    refusal_fraction: float = 0.0
    truncated_fraction: float = 0.0
    #: Price overrides for the dollars ``snapshot`` reports as billed, over the provider's
    #: table, in any form ``[claude_batch] prices`` takes (a mapping, JSON, a JSON file's path).
    prices: Mapping[str, Any] | str | None = None
    #: The organisation's batch queue: at most this many requests in batches still processing,
    #: across every workspace (None: no limit). A create that would go over it is refused with
    #: the API's 429 ``rate_limit_error`` and creates nothing; ``stats`` keep the high-water mark
    #: of requests queued (``queue_high_water``) and the refusals (``queue_refusals``).
    queue_limit: int | None = None
    #: The request rate limit of the Message Batches endpoints (create, retrieve, list, results,
    #: cancel, delete, counted together): at most this many calls per ``batch_rate_window_seconds``
    #: (None: no limit). A call beyond it gets the API's 429 ``rate_limit_error``, with a
    #: ``retry-after`` of the seconds until a call leaves the window, and does nothing;
    #: ``stats["rate_limited"]`` counts them. The window is a minute, as the API's; shorter in tests.
    batch_rate_limit: int | None = None
    batch_rate_window_seconds: float = 60.0
    #: Seconds after its create during which a batch is missing from ``list`` (it answers
    #: ``retrieve``): the lag of a listing behind a create that the API documents nowhere
    #: but that a create-once lookup must survive.
    list_lag_seconds: float = 0.0
    #: Free-text answers end with `` #`` and 16 hex digits of the SHA-256 of the request's last
    #: user text (:func:`answer_digest`), so a row landed with another row's answer is caught.
    answer_digest: bool = False


@dataclass
class _Batch:
    """One batch: its stored requests, its times, and its outcomes once it ended."""

    id: str
    workspace: str | None
    created_at: datetime
    expires_at: datetime
    requests: list[StoredRequest]
    ends_at: datetime | None
    cancel_initiated_at: datetime | None = None
    ended_at: datetime | None = None
    outcomes: list[str] | None = None
    #: ``gradual_ending``: the outcomes of the first requests, which ended before the batch.
    finished: list[str] = field(default_factory=list)
    deleted: bool = False
    #: The results JSONL, rendered once on the first read after the batch ended.
    results_path: str | None = None

    def _finish_gradually(self, until: datetime, resolve: Callable[[StoredRequest], str]) -> None:
        """End the requests due by ``until``: request k (of n) at ``created + (k+1)/n`` of the
        way to ``ends_at``, so the last one ends with the batch."""
        if self.ends_at is None:
            return
        span = (self.ends_at - self.created_at).total_seconds()
        share = 1.0 if span <= 0 else (until - self.created_at).total_seconds() / span
        due = min(len(self.requests), max(0, math.floor(share * len(self.requests) + 1e-9)))
        for request in self.requests[len(self.finished) : due]:
            self.finished.append(resolve(request))

    def settle(self, now: datetime, config: EmulatorConfig, resolve: Callable[[StoredRequest], str]) -> bool:
        """Move the batch along its state machine up to ``now``; whether it ended just now."""
        if self.ended_at is not None:
            return False
        end_candidates = [self.expires_at]
        if self.ends_at is not None:
            end_candidates.append(self.ends_at)
        cancel_end = None
        if self.cancel_initiated_at is not None:
            cancel_end = self.cancel_initiated_at + timedelta(seconds=config.cancel_seconds)
            end_candidates.append(cancel_end)
        end = min(end_candidates)
        if config.gradual_ending:
            self._finish_gradually(min(now, end), resolve)
        if now < end:
            return False
        self.ended_at = end
        rest = self.requests[len(self.finished) :]
        if end == self.ends_at and (cancel_end is None or self.ends_at <= cancel_end):
            self.outcomes = self.finished + [resolve(request) for request in rest]
        elif cancel_end is not None and end == cancel_end:
            self.outcomes = self.finished + ["canceled"] * len(rest)
        else:
            self.outcomes = self.finished + ["expired"] * len(rest)
        return True

    def processing_status(self) -> str:
        if self.ended_at is not None:
            return "ended"
        return "canceling" if self.cancel_initiated_at is not None else "in_progress"

    def request_counts(self) -> dict[str, int]:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        ended = self.finished if self.outcomes is None else self.outcomes
        counts["processing"] = len(self.requests) - len(ended)
        for outcome in ended:
            counts[outcome.split(":", 1)[0]] += 1
        return counts


@dataclass
class _SavedState:
    """What a state file holds: every batch, oldest first (``list`` pages depend on it)."""

    batches: list[_Batch]


def _batch_id(batch: _Batch) -> str:
    return batch.id


class Emulator:
    """The emulated Message Batches service: state, rules, faults and counters."""

    def __init__(self, config: EmulatorConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.clock = clock or Clock()
        self._lock = threading.RLock()
        self._batches: dict[str, _Batch] = {}
        self._faults: list[Fault] = []
        self._scripted_outcomes: dict[str, list[str]] = {}
        self._attempts: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self._seed = secrets.token_hex(4)
        self.calls: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        #: What the results served so far bill (see :mod:`.emulator_billing`).
        self.billing = Billing()
        self.base_url: str | None = None
        self.tokens = TokenIssuer()
        self.prompt_cache = PromptCache()
        #: The Files API's uploaded files and their counters (``emulator_files``).
        self.files = FileStore()
        # Rendered results files live here until the emulator is garbage collected.
        #: When the batch endpoints' calls in the rate window came (``batch_rate_limit``).
        self._batch_calls: collections.deque[datetime] = collections.deque()
        self._results_dir = tempfile.mkdtemp(prefix="claude-batch-emulator-")
        weakref.finalize(self, shutil.rmtree, self._results_dir, True)
        self._dirty = False
        self._load_state()

    # ----------------------------------------------------------------- test controls
    def reset(self) -> None:
        with self._lock:
            self.tokens.reset()
            self._dirty = bool(self._batches)
            self.prompt_cache.clear()
            for batch in self._batches.values():
                if batch.results_path is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(batch.results_path)
            self._batches.clear()
            self._faults.clear()
            self._batch_calls.clear()
            self._scripted_outcomes.clear()
            self._attempts.clear()
            self.calls.clear()
            self.stats.clear()
            self.billing.clear()
            self.files.clear()
            self.clock.reset()
            self.save_state()

    def check_batch_rate(self, endpoint: str) -> None:
        """Count a call to a batch endpoint against ``batch_rate_limit``; over it, refuse it with
        the API's 429 ``rate_limit_error`` and the seconds until a call leaves the window."""
        limit = self.config.batch_rate_limit
        if limit is None or endpoint not in BATCH_ENDPOINTS:
            return
        with self._lock:
            now, window = self.clock.now(), timedelta(seconds=self.config.batch_rate_window_seconds)
            while self._batch_calls and now - self._batch_calls[0] >= window:
                self._batch_calls.popleft()
            if len(self._batch_calls) < limit:
                self._batch_calls.append(now)
                return
            self.stats["rate_limited"] += 1
            wait = max((self._batch_calls[0] + window - now).total_seconds(), 0.001)
        raise EmulatorHTTPError(
            429,
            f"Number of Message Batches API requests per minute exceeded: the limit is {limit} per "
            f"{self.config.batch_rate_window_seconds:g} s.",
            error_type="rate_limit_error",
            retry_after=wait,
        )

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def script_outcomes(self, outcomes: dict[str, list[str] | str]) -> None:
        """Queue outcomes per custom_id, used by the next batches that end with it.

        Each entry is ``"succeeded"``, ``"expired"`` or ``"errored:<error_type>"``; a
        custom_id without a queued outcome gets the default (succeeded, or the configured
        errored/expired fractions, or an invalid_request_error for invalid params).
        """
        with self._lock:
            for custom_id, queued in outcomes.items():
                items = [queued] if isinstance(queued, str) else list(queued)
                for item in items:
                    kind = item.split(":", 1)[0]
                    if kind not in ("succeeded", "errored", "expired"):
                        raise ValueError(f"unknown outcome {item!r} for {custom_id!r}")
                self._scripted_outcomes.setdefault(custom_id, []).extend(items)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def batch_ids(self) -> list[str]:
        with self._lock:
            return list(self._batches)

    def end_all(self) -> None:
        """End every open batch now (its requests get their outcomes)."""
        with self._lock:
            now = self.clock.now()
            for batch in self._batches.values():
                if batch.ended_at is None and batch.cancel_initiated_at is None:
                    batch.ends_at = now
                self._settle(batch, now)
        self.save_state()

    def snapshot(self) -> dict[str, Any]:
        """The counters, the batches, and what the ended batches billed. Every batch is moved
        along to now first, and the results of one that ended are rendered if no download has
        rendered them yet, so every ended batch is billed."""
        with self._lock:
            now = self.clock.now()
            for batch in self._batches.values():
                self._settle(batch, now)
                if batch.ended_at is not None:
                    self._rendered(batch)
            snapshot = {
                "calls": dict(self.calls),
                "stats": dict(self.stats),
                "files": {**self.files.stats, "stored": len(self.files.list_all())},
                "batches": len(self._batches),
                "open_batches": sum(1 for b in self._batches.values() if b.ended_at is None),
                "queued_requests": self.queued_requests(now),
                "billed": self.billing.report(PriceTable.load(self.config.prices)),
            }
        self.save_state()
        return snapshot

    # ----------------------------------------------------------------- state file
    def _load_state(self) -> None:
        path = self.config.state_file
        if not path or not os.path.exists(path):
            return
        with open(path, "rb") as handle:
            saved = msgspec.json.decode(handle.read(), type=_SavedState)
        self._batches = {batch.id: batch for batch in saved.batches}

    def save_state(self) -> None:
        """Write the batches to the state file, when one is configured and something changed
        (atomically: a restart reads the old or the new state, never half of one)."""
        path = self.config.state_file
        with self._lock:
            if not path or not self._dirty:
                return
            data = _encoder.encode(_SavedState(batches=list(self._batches.values())))
            self._dirty = False
        temporary = f"{path}.tmp-{secrets.token_hex(4)}"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)

    def _settle(self, batch: _Batch, now: datetime) -> None:
        if batch.settle(now, self.config, self._resolve):
            self._dirty = True

    # ----------------------------------------------------------------- faults
    def take_fault(self, endpoint: str) -> Fault | None:
        """The fault this call to ``endpoint`` gets, if any: the first injected one that matches
        and has calls left (a ``skip`` lets the call through and counts down instead)."""
        with self._lock:
            for fault in self._faults:
                if fault.endpoint in (endpoint, "any") and fault.times > 0:
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    self.stats["faults_fired"] += 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # ----------------------------------------------------------------- outcomes
    def _resolve(self, request: StoredRequest) -> str:
        queued = self._scripted_outcomes.get(request.custom_id)
        if queued:
            return queued.pop(0)
        if request.invalid_reason is not None:
            return "errored:invalid_request_error"
        if self.config.errored_fraction or self.config.expired_fraction:
            # Transient failures are drawn afresh for each submission of the same custom_id,
            # so a resubmission usually succeeds (and the same sequence replays identically).
            self._attempts[request.custom_id] += 1
            draw = (stable_int(request.custom_id, self._attempts[request.custom_id]) % 1_000_000) / 1_000_000
            if draw < self.config.errored_fraction:
                return "errored:api_error"
            if draw < self.config.errored_fraction + self.config.expired_fraction:
                return "expired"
        return "succeeded"

    # ----------------------------------------------------------------- operations
    def _new_batch_id(self) -> str:
        return f"msgbatch_01emu{self._seed}{next(self._ids):012d}"

    def create(self, body: bytes, workspace: str | None) -> dict[str, Any]:
        """``POST /v1/messages/batches``: a new batch, ``in_progress`` in this answer; its end is
        ``processing_seconds`` away (never, with ``math.inf``: it expires)."""
        config = self.config
        self.stats["create_bytes"] += len(body)
        if len(body) > config.max_bytes_per_batch:
            raise EmulatorHTTPError(
                413,
                f"Request exceeds the maximum size of {config.max_bytes_per_batch} bytes "
                f"for a batch (got {len(body)}).",
                error_type="request_too_large",
            )
        stored = parse_create(body, workspace, config.max_requests_per_batch, self.files.resolve)
        if config.answer_digest:
            for request, digest in zip(stored, text_digests(body), strict=True):
                request.text_digest = digest
        now = self.clock.now()
        with self._lock:
            queued = self._admit_to_queue(len(stored), now)
            for request in stored:
                request.cache_use = self.prompt_cache.use(request.cache_point, now)
            batch = _Batch(
                id=self._new_batch_id(),
                workspace=workspace,
                created_at=now,
                expires_at=now + timedelta(hours=limits.BATCH_EXPIRY_HOURS),
                requests=stored,
                ends_at=None
                if math.isinf(config.processing_seconds)
                else now + timedelta(seconds=config.processing_seconds),
            )
            self._batches[batch.id] = batch
            self._dirty = True
            # Counted before the new batch is looked at: its create answers in_progress.
            self.stats["queue_high_water"] = max(self.stats["queue_high_water"], queued + len(stored))
            self.stats["batches_created"] += 1
            self.stats["requests_received"] += len(stored)
            return self._batch_json(batch)

    def queued_requests(self, now: datetime | None = None) -> int:
        """Requests in batches still processing, in every workspace (the organisation's queue)."""
        with self._lock:
            now = now or self.clock.now()
            queued = 0
            for batch in self._batches.values():
                self._settle(batch, now)
                if batch.ended_at is None:
                    queued += batch.request_counts()["processing"]
            return queued

    def _admit_to_queue(self, adding: int, now: datetime) -> int:
        """The requests queued before a create of ``adding``; refuses it when it would take the
        queue over ``queue_limit``: the API's 429 ``rate_limit_error``, nothing is created."""
        limit = self.config.queue_limit
        queued = self.queued_requests(now)
        if limit is not None and queued + adding > limit:
            self.stats["queue_refusals"] += 1
            raise EmulatorHTTPError(
                429,
                f"This batch of {adding} requests would exceed your organization's batch queue limit of "
                f"{limit} requests waiting to be processed ({queued} are in the queue now). Retry once "
                "earlier batches have ended.",
                error_type="rate_limit_error",
            )
        return queued

    def _get(self, batch_id: str, workspace: str | None) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None or batch.deleted or batch.workspace != workspace:
            raise EmulatorHTTPError(404, f"No message batch found with id '{batch_id}'.")
        self._settle(batch, self.clock.now())
        return batch

    def retrieve(self, batch_id: str, workspace: str | None) -> dict[str, Any]:
        with self._lock:
            return self._batch_json(self._get(batch_id, workspace))

    def cancel(self, batch_id: str, workspace: str | None) -> dict[str, Any]:
        """Start canceling an open batch: it ends ``cancel_seconds`` later (nothing changes once
        it is canceling or ended)."""
        with self._lock:
            batch = self._get(batch_id, workspace)
            if batch.ended_at is None and batch.cancel_initiated_at is None:
                batch.cancel_initiated_at = self.clock.now()
                self.stats["batches_canceled"] += 1
                self._dirty = True
                self._settle(batch, self.clock.now())
            return self._batch_json(batch)

    def delete(self, batch_id: str, workspace: str | None) -> dict[str, Any]:
        """Delete an ended batch (a 400 while it is not)."""
        with self._lock:
            batch = self._get(batch_id, workspace)
            if batch.ended_at is None:
                raise EmulatorHTTPError(
                    400,
                    f"Message batch '{batch_id}' cannot be deleted while it is {batch.processing_status()}; "
                    "cancel it and wait for it to end first.",
                )
            batch.deleted = True
            self._dirty = True
            return {"id": batch_id, "type": "message_batch_deleted"}

    def list(self, workspace: str | None, limit: int, after_id: str | None, before_id: str | None) -> dict[str, Any]:
        """A page of the workspace's batches, newest first."""
        if not 1 <= limit <= limits.LIST_PAGE_MAX:
            raise EmulatorHTTPError(400, f"limit: Input should be between 1 and {limits.LIST_PAGE_MAX}")
        with self._lock:
            now = self.clock.now()
            listed_before = now - timedelta(seconds=self.config.list_lag_seconds)
            newest_first = [
                b
                for b in reversed(self._batches.values())
                if not b.deleted and b.workspace == workspace and b.created_at <= listed_before
            ]
            for batch in newest_first:
                self._settle(batch, now)
            page, has_more = cursor_page(newest_first, _batch_id, limit, after_id, before_id)
            return list_body(page, _batch_id, has_more, self._batch_json)

    def exchange_token(self, body: Any) -> dict[str, Any]:
        """``POST /v1/oauth/token``: an access token for an identity token the federation rule
        trusts (raises :class:`FederationError` otherwise)."""
        with self._lock:
            return self.tokens.exchange(body, self.config.federation, self.clock.now())

    def results_file(self, batch_id: str, workspace: str | None) -> tuple[str, int]:
        """The path and size of an ended batch's results JSONL, rendered once on the first read
        and then served from disk (not in request order)."""
        with self._lock:
            batch = self._get(batch_id, workspace)
            if batch.ended_at is None or batch.outcomes is None:
                raise EmulatorHTTPError(
                    400, f"Message batch '{batch_id}' has not ended yet; results are available once it has."
                )
            path = self._rendered(batch)
            return path, os.path.getsize(path)

    def _rendered(self, batch: _Batch) -> str:
        """The results file of an ended batch, rendered (and billed) the first time."""
        if batch.results_path is None or not os.path.exists(batch.results_path):
            # (A batch loaded from a state file names the files of an earlier process.)
            batch.results_path = self._render_results(batch)
        return batch.results_path

    def _render_results(self, batch: _Batch) -> str:
        assert batch.outcomes is not None
        pairs = list(zip(batch.requests, batch.outcomes, strict=True))
        path = os.path.join(self._results_dir, f"{batch.id}.jsonl")
        write_results(path, batch.id, pairs, self.config, on_line=self.billing.add_line)
        self.billing.batches += 1
        self.billing.add_contents(request for request, outcome in pairs if outcome == "succeeded")
        self.stats["results_rendered"] += 1
        return path

    # ----------------------------------------------------------------- JSON shapes
    def _batch_json(self, batch: _Batch) -> dict[str, Any]:
        ended = batch.ended_at is not None
        archived_at = batch.created_at + timedelta(days=limits.RESULTS_RETENTION_DAYS)
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": batch.processing_status(),
            "request_counts": batch.request_counts(),
            "created_at": rfc3339(batch.created_at),
            "expires_at": rfc3339(batch.expires_at),
            "ended_at": rfc3339(batch.ended_at),
            "cancel_initiated_at": rfc3339(batch.cancel_initiated_at),
            "archived_at": rfc3339(archived_at) if self.clock.now() >= archived_at else None,
            "results_url": f"{self.base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }
