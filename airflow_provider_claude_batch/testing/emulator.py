"""A local, faithful emulator of the Message Batches API.

The unmodified ``anthropic`` SDK talks to it over real HTTP through ``base_url``. It
validates requests as the API does, moves batches from ``in_progress`` to ``ended`` by a
clock (that tests advance instead of sleeping), answers deterministically (every text says
it comes from the emulator), injects faults on demand and counts everything it received.

State lives in one :class:`Emulator` object. In-process users (the pytest fixture) drive it
directly; out-of-process users drive it through the ``/_emulator/*`` control endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import math
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.testing.federation import (
    OAUTH_API_BETA,
    TOKEN_PREFIX,
    FederationError,
    FederationRule,
    TokenIssuer,
)
from airflow_provider_claude_batch.testing.models_catalog import find_model, models_page
from airflow_provider_claude_batch.testing.pagination import cursor_page, list_body
from airflow_provider_claude_batch.testing.prompt_cache import Breakpoint, CacheUse, PromptCache, breakpoint_of
from airflow_provider_claude_batch.testing.structured_answers import REFUSAL_DETAILS, answer

DEFAULT_API_KEY = "emulator-key"
EMULATOR_TAG = "[claude-batch emulator]"

ENDPOINTS = ("create", "retrieve", "list", "cancel", "delete", "results", "models", "count_tokens")

_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
_STATUS_ERROR = {status: error_type for error_type, status in _ERROR_STATUS.items()}

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()

_FILLER_WORDS = [
    "billing",
    "account",
    "technical",
    "login",
    "password",
    "invoice",
    "refund",
    "upgrade",
    "plan",
    "device",
    "sync",
    "error",
    "crash",
    "timeout",
    "network",
    "export",
    "import",
    "report",
    "dashboard",
    "setting",
    "profile",
    "access",
]


def _rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _batch_id(batch: _Batch) -> str:
    return batch.id


def _stable_int(*parts: object) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


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
    """

    endpoint: str
    status: int | None = None
    times: int = 1
    skip: int = 0
    retry_after: float | None = None
    after_commit: bool = False
    delay_seconds: float = 0.0
    drop_after_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.endpoint not in (*ENDPOINTS, "any"):
            raise ValueError(f"unknown endpoint {self.endpoint!r}; use one of {ENDPOINTS} or 'any'")
        if self.status is not None and self.status not in _STATUS_ERROR:
            raise ValueError(f"unsupported fault status {self.status}; use one of {sorted(_STATUS_ERROR)}")


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


class _StoredRequest(msgspec.Struct, gc=False):
    """What a batch keeps of one request: a few scalars, never its params."""

    custom_id: str
    model: str
    max_tokens: int
    input_chars: int
    prompt_digest: int
    invalid_reason: str | None
    #: The JSON schema of ``output_config.format``, when the request asks for structured output.
    output_schema: dict[str, Any] | None = None
    #: The prompt's cacheable prefix (``cache_control``) and what the request did with it.
    cache_point: Breakpoint | None = None
    cache_use: CacheUse = msgspec.field(default_factory=CacheUse)
    #: Web searches the answer reports in ``usage.server_tool_use`` (see :func:`_web_searches`).
    web_searches: int = 0


class _WireParams(msgspec.Struct, gc=False):
    """The params fields the emulator checks. ``messages`` and ``system`` stay raw JSON bytes:
    a create of 100k requests builds no dict or list per message."""

    model: Any = None
    max_tokens: Any = None
    messages: msgspec.Raw = msgspec.Raw(b"null")
    system: msgspec.Raw = msgspec.Raw(b"null")
    tools: msgspec.Raw = msgspec.Raw(b"null")
    output_config: msgspec.Raw = msgspec.Raw(b"null")

    def structured(self) -> bool:
        """Whether the request asks for a structured answer or marks a cacheable prefix: then the
        emulator needs its params decoded (the rare case; plain prompts stay raw bytes)."""
        return (
            bytes(self.output_config).strip() != b"null"
            or b'"web_search_' in bytes(self.tools)
            or any(b'"cache_control"' in bytes(raw) for raw in (self.tools, self.system, self.messages))
        )

    def decoded(self) -> dict[str, Any]:
        """The params as the general parse sees them (only the fields the emulator reads)."""
        params: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens}
        for name in ("messages", "system", "tools", "output_config"):
            value = _json_decoder.decode(bytes(getattr(self, name)))
            if value is not None:
                params[name] = value
        return params


class _WireRequest(msgspec.Struct, gc=False):
    custom_id: Any = None
    params: _WireParams | None = None


class _WireBody(msgspec.Struct, gc=False):
    requests: list[_WireRequest]


_create_decoder = msgspec.json.Decoder(_WireBody)
#: ``Range: bytes=START-`` or ``bytes=START-END`` (one range: what a resuming download sends).
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
#: Bytes read from a rendered results file per body chunk.
RESULTS_CHUNK_BYTES = 1 << 20


@dataclass
class _Batch:
    id: str
    workspace: str | None
    created_at: datetime
    expires_at: datetime
    requests: list[_StoredRequest]
    ends_at: datetime | None
    cancel_initiated_at: datetime | None = None
    ended_at: datetime | None = None
    outcomes: list[str] | None = None
    #: ``gradual_ending``: the outcomes of the first requests, which ended before the batch.
    finished: list[str] = field(default_factory=list)
    deleted: bool = False
    #: The results JSONL, rendered once on the first read after the batch ended.
    results_path: str | None = None

    def _finish_gradually(self, until: datetime, resolve: Callable[[_StoredRequest], str]) -> None:
        """End the requests due by ``until``: request k (of n) at ``created + (k+1)/n`` of the
        way to ``ends_at``, so the last one ends with the batch."""
        if self.ends_at is None:
            return
        span = (self.ends_at - self.created_at).total_seconds()
        share = 1.0 if span <= 0 else (until - self.created_at).total_seconds() / span
        due = min(len(self.requests), max(0, math.floor(share * len(self.requests) + 1e-9)))
        for request in self.requests[len(self.finished) : due]:
            self.finished.append(resolve(request))

    def settle(self, now: datetime, config: EmulatorConfig, resolve: Callable[[_StoredRequest], str]) -> bool:
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


class EmulatorHTTPError(Exception):
    def __init__(self, status: int, message: str, *, error_type: str | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or _STATUS_ERROR.get(status, "api_error")
        self.retry_after = retry_after


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
        self.base_url: str | None = None
        self.tokens = TokenIssuer()
        self.prompt_cache = PromptCache()
        # Rendered results files live here until the emulator is garbage collected.
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
            self._scripted_outcomes.clear()
            self._attempts.clear()
            self.calls.clear()
            self.stats.clear()
            self.clock.reset()
            self.save_state()

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
        with self._lock:
            return {
                "calls": dict(self.calls),
                "stats": dict(self.stats),
                "batches": len(self._batches),
                "open_batches": sum(1 for b in self._batches.values() if b.ended_at is None),
            }

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
            data = _json_encoder.encode(_SavedState(batches=list(self._batches.values())))
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
    def _resolve(self, request: _StoredRequest) -> str:
        queued = self._scripted_outcomes.get(request.custom_id)
        if queued:
            return queued.pop(0)
        if request.invalid_reason is not None:
            return "errored:invalid_request_error"
        if self.config.errored_fraction or self.config.expired_fraction:
            # Transient failures are drawn afresh for each submission of the same custom_id,
            # so a resubmission usually succeeds (and the same sequence replays identically).
            self._attempts[request.custom_id] += 1
            draw = (_stable_int(request.custom_id, self._attempts[request.custom_id]) % 1_000_000) / 1_000_000
            if draw < self.config.errored_fraction:
                return "errored:api_error"
            if draw < self.config.errored_fraction + self.config.expired_fraction:
                return "expired"
        return "succeeded"

    def _spoiled(self, batch_id: str, request: _StoredRequest) -> str | None:
        """How a structured answer is spoiled on purpose (``None``: it is valid)."""
        config = self.config
        if request.output_schema is None:
            return None
        draw = (_stable_int("output", batch_id, request.custom_id) % 1_000_000) / 1_000_000
        for spoil, fraction in (
            ("invalid", config.invalid_output_fraction),
            ("refused", config.refusal_fraction),
            ("truncated", config.truncated_fraction),
        ):
            if draw < fraction:
                return spoil
            draw -= fraction
        return None

    # ----------------------------------------------------------------- operations
    def _new_batch_id(self) -> str:
        return f"msgbatch_01emu{self._seed}{next(self._ids):012d}"

    def create(self, body: bytes, workspace: str | None) -> dict[str, Any]:
        config = self.config
        self.stats["create_bytes"] += len(body)
        if len(body) > config.max_bytes_per_batch:
            raise EmulatorHTTPError(
                413,
                f"Request exceeds the maximum size of {config.max_bytes_per_batch} bytes "
                f"for a batch (got {len(body)}).",
                error_type="request_too_large",
            )
        try:
            stored = self._parse_create(body, workspace)
        except msgspec.DecodeError:
            # Not the shape the fast path expects: the general parse names what is wrong.
            stored = self._parse_create_generic(body, workspace)
        now = self.clock.now()
        with self._lock:
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
            self.stats["batches_created"] += 1
            self.stats["requests_received"] += len(stored)
            return self._batch_json(batch)

    def _check_count(self, count: int) -> None:
        if not count:
            raise EmulatorHTTPError(400, "requests: List should have at least 1 item")
        if count > self.config.max_requests_per_batch:
            raise EmulatorHTTPError(
                400,
                f"requests: a batch may hold at most {self.config.max_requests_per_batch} requests (got {count}).",
            )

    def _parse_create(self, body: bytes, workspace: str | None) -> list[_StoredRequest]:
        """A create body decoded into minimal structs (messages and system kept as raw JSON);
        raises ``msgspec.DecodeError`` for any body not of that shape."""
        requests = _create_decoder.decode(body).requests
        self._check_count(len(requests))
        stored: list[_StoredRequest] = []
        seen: set[str] = set()
        for index, item in enumerate(requests):
            custom_id = self._check_custom_id(index, item.custom_id, seen)
            params = item.params
            if params is None:
                raise EmulatorHTTPError(400, f"requests.{index}.params: Field required")
            messages = bytes(params.messages)
            stripped = messages.strip()
            has_messages = stripped.startswith(b"[") and stripped[1:].lstrip() != b"]"
            # The same bytes as encoding [system, messages] again, for compact JSON.
            prompt_bytes = b"[" + bytes(params.system).strip() + b"," + stripped + b"]"
            stored.append(_stored_request(custom_id, params.model, params.max_tokens, has_messages, prompt_bytes))
            if params.structured():
                _add_structure(stored[-1], params.decoded(), workspace)
        return stored

    def _parse_create_generic(self, body: bytes, workspace: str | None) -> list[_StoredRequest]:
        payload = _decode_body(body)
        if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
            raise EmulatorHTTPError(400, "requests: Field required (a list of requests)")
        raw_requests = payload["requests"]
        self._check_count(len(raw_requests))
        seen: set[str] = set()
        return [self._validate_request(index, item, seen, workspace) for index, item in enumerate(raw_requests)]

    @staticmethod
    def _check_custom_id(index: int, custom_id: Any, seen: set[str]) -> str:
        if not isinstance(custom_id, str) or not limits.CUSTOM_ID_PATTERN.match(custom_id):
            raise EmulatorHTTPError(
                400,
                f"requests.{index}.custom_id: String should match pattern '{limits.CUSTOM_ID_PATTERN.pattern}'",
            )
        if custom_id in seen:
            raise EmulatorHTTPError(400, f"requests.{index}.custom_id: Duplicate custom_id {custom_id!r} in batch")
        seen.add(custom_id)
        return custom_id

    @classmethod
    def _validate_request(cls, index: int, item: Any, seen: set[str], workspace: str | None) -> _StoredRequest:
        if not isinstance(item, dict):
            raise EmulatorHTTPError(400, f"requests.{index}: Input should be an object")
        custom_id = cls._check_custom_id(index, item.get("custom_id"), seen)
        params = item.get("params")
        if not isinstance(params, dict):
            raise EmulatorHTTPError(400, f"requests.{index}.params: Field required")
        messages = params.get("messages")
        has_messages = isinstance(messages, list) and bool(messages)
        stored = _stored_request(
            custom_id, params.get("model"), params.get("max_tokens"), has_messages, _prompt_bytes(params)
        )
        _add_structure(stored, params, workspace)
        return stored

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
        with self._lock:
            batch = self._get(batch_id, workspace)
            if batch.ended_at is None and batch.cancel_initiated_at is None:
                batch.cancel_initiated_at = self.clock.now()
                self.stats["batches_canceled"] += 1
                self._dirty = True
                self._settle(batch, self.clock.now())
            return self._batch_json(batch)

    def delete(self, batch_id: str, workspace: str | None) -> dict[str, Any]:
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
        if not 1 <= limit <= limits.LIST_PAGE_MAX:
            raise EmulatorHTTPError(400, f"limit: Input should be between 1 and {limits.LIST_PAGE_MAX}")
        with self._lock:
            now = self.clock.now()
            newest_first = [b for b in reversed(self._batches.values()) if not b.deleted and b.workspace == workspace]
            for batch in newest_first:
                self._settle(batch, now)
            page, has_more = cursor_page(newest_first, _batch_id, limit, after_id, before_id)
            return list_body(page, _batch_id, has_more, self._batch_json)

    def results_file(self, batch_id: str, workspace: str | None) -> tuple[str, int]:
        """The path and size of an ended batch's results JSONL, rendered once on the first read
        and then served from disk (not in request order)."""
        with self._lock:
            batch = self._get(batch_id, workspace)
            if batch.ended_at is None or batch.outcomes is None:
                raise EmulatorHTTPError(
                    400, f"Message batch '{batch_id}' has not ended yet; results are available once it has."
                )
            if batch.results_path is None or not os.path.exists(batch.results_path):
                # (A batch loaded from a state file names the files of an earlier process.)
                batch.results_path = self._render_results(batch)
            return batch.results_path, os.path.getsize(batch.results_path)

    def _render_results(self, batch: _Batch) -> str:
        assert batch.outcomes is not None
        pairs = list(zip(batch.requests, batch.outcomes, strict=True))
        # Results carry no ordering guarantee: interleave the two halves so that consumers
        # that assume request order are caught by the tests.
        half = (len(pairs) + 1) // 2
        order = [
            i for pair in itertools.zip_longest(range(half, len(pairs)), range(half)) for i in pair if i is not None
        ]
        path = os.path.join(self._results_dir, f"{batch.id}.jsonl")
        with open(path, "wb") as out:
            for start in range(0, len(order), 4096):
                out.write(
                    b"".join(
                        _json_encoder.encode(self._result_json(batch.id, pairs[i][0], pairs[i][1])) + b"\n"
                        for i in order[start : start + 4096]
                    )
                )
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
            "created_at": _rfc3339(batch.created_at),
            "expires_at": _rfc3339(batch.expires_at),
            "ended_at": _rfc3339(batch.ended_at),
            "cancel_initiated_at": _rfc3339(batch.cancel_initiated_at),
            "archived_at": _rfc3339(archived_at) if self.clock.now() >= archived_at else None,
            "results_url": f"{self.base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    def _reply_text(self, request: _StoredRequest) -> str:
        config = self.config
        if config.reply_chars is None:
            words = [_FILLER_WORDS[(request.prompt_digest >> (5 * k)) % len(_FILLER_WORDS)] for k in range(3)]
            return f"{EMULATOR_TAG} {' '.join(words)}"
        low, high = config.reply_chars
        target = low + request.prompt_digest % max(1, high - low + 1)
        text = EMULATOR_TAG
        k = 0
        while len(text) < target:
            text += " " + _FILLER_WORDS[(request.prompt_digest + k * 7919) % len(_FILLER_WORDS)]
            k += 1
        return text[:target]

    def _result_json(self, batch_id: str, request: _StoredRequest, outcome: str) -> dict[str, Any]:
        kind, _, error_type = outcome.partition(":")
        if kind == "succeeded":
            spoil = self._spoiled(batch_id, request)
            stop_details = REFUSAL_DETAILS if spoil == "refused" else None
            if request.output_schema is None:
                text = self._reply_text(request)
            elif spoil == "refused":
                text = f"{EMULATOR_TAG} I can't help with that."
            else:
                text = answer(request.output_schema, request.prompt_digest, spoil)
            output_tokens = max(1, math.ceil(len(text) / 4))
            stop_reason = {"refused": "refusal", "truncated": "max_tokens"}.get(spoil or "", "end_turn")
            if spoil == "truncated":
                output_tokens = request.max_tokens
            if output_tokens > request.max_tokens:
                text = text[: request.max_tokens * 4]
                output_tokens = request.max_tokens
                stop_reason = "max_tokens"
            return {
                "custom_id": request.custom_id,
                "result": {
                    "type": "succeeded",
                    "message": {
                        "id": f"msg_emu{request.prompt_digest:016x}",
                        "type": "message",
                        "role": "assistant",
                        "model": request.model,
                        "content": [{"type": "text", "text": text, "citations": None}],
                        "stop_reason": stop_reason,
                        "stop_sequence": None,
                        **({"stop_details": stop_details} if stop_details else {}),
                        "usage": {
                            # Cached prefix tokens are reported apart from input_tokens, as the API does.
                            "input_tokens": max(
                                1,
                                math.ceil(request.input_chars / 4) - request.cache_use.written - request.cache_use.read,
                            ),
                            "output_tokens": output_tokens,
                            **request.cache_use.usage(),
                            **(
                                {
                                    "server_tool_use": {
                                        "web_search_requests": request.web_searches,
                                        "web_fetch_requests": 0,
                                    }
                                }
                                if request.web_searches
                                else {}
                            ),
                            "service_tier": "batch",
                        },
                    },
                },
            }
        if kind == "errored":
            error_type = error_type or "api_error"
            message = (
                request.invalid_reason
                if error_type == "invalid_request_error" and request.invalid_reason
                else f"{EMULATOR_TAG} injected {error_type}"
            )
            return {
                "custom_id": request.custom_id,
                "result": {
                    "type": "errored",
                    "error": {
                        "type": "error",
                        "error": {"type": error_type, "message": message},
                        "request_id": f"req_emu{_stable_int(batch_id, request.custom_id):016x}",
                    },
                },
            }
        return {"custom_id": request.custom_id, "result": {"type": kind}}


def _prompt_bytes(params: dict[str, Any]) -> bytes:
    """What the emulator counts input tokens of: the system prompt and the messages."""
    return _json_encoder.encode([params.get("system"), params.get("messages")])


def _decode_body(body: bytes) -> Any:
    """A request body as JSON, or the API's 400 for one that is not."""
    try:
        return _json_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise EmulatorHTTPError(400, f"Request body is not valid JSON: {exc}") from None


def count_input_tokens(body: bytes) -> dict[str, Any]:
    """``POST /v1/messages/count_tokens``: the input tokens a request's params would use, counted
    as the emulator's usage counts them (a quarter of the prompt's JSON characters)."""
    params = _decode_body(body)
    if not isinstance(params, dict) or not isinstance(params.get("model"), str):
        raise EmulatorHTTPError(400, "model: Field required")
    if not isinstance(params.get("messages"), list) or not params["messages"]:
        raise EmulatorHTTPError(400, "messages: List should have at least 1 item")
    if "max_tokens" in params:
        raise EmulatorHTTPError(400, "max_tokens: Extra inputs are not permitted")
    return {"input_tokens": max(1, math.ceil(len(_prompt_bytes(params)) / 4))}


# --------------------------------------------------------------------- HTTP layer
def _error_response(exc: EmulatorHTTPError, request_id: str) -> JSONResponse:
    headers = {"request-id": request_id}
    if exc.retry_after is not None:
        headers["retry-after"] = f"{exc.retry_after:g}"
    return JSONResponse(
        status_code=exc.status,
        content={"type": "error", "error": {"type": exc.error_type, "message": exc.message}, "request_id": request_id},
        headers=headers,
    )


def _fault_error(fault: Fault) -> EmulatorHTTPError:
    assert fault.status is not None
    error_type = _STATUS_ERROR[fault.status]
    return EmulatorHTTPError(
        fault.status, f"{EMULATOR_TAG} injected {error_type}", error_type=error_type, retry_after=fault.retry_after
    )


def create_app(emulator: Emulator) -> FastAPI:
    """The FastAPI application serving ``emulator``."""
    app = FastAPI(title="Claude Message Batches API emulator", docs_url=None, redoc_url=None, openapi_url=None)

    def new_request_id() -> str:
        return f"req_emu{secrets.token_hex(8)}"

    def authenticate(request: Request) -> str | None:
        """The workspace a request acts in, once its credentials pass (else a 401)."""
        key = request.headers.get("x-api-key")
        authorization = request.headers.get("authorization", "")
        if key is None and authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
            if key.startswith(TOKEN_PREFIX):
                return authenticate_access_token(request, key)
        if not key:
            emulator.stats["auth_failures"] += 1
            raise EmulatorHTTPError(401, "x-api-key header is required", error_type="authentication_error")
        if key not in emulator.config.api_keys:
            emulator.stats["auth_failures"] += 1
            raise EmulatorHTTPError(401, "invalid x-api-key", error_type="authentication_error")
        if not request.headers.get("anthropic-version"):
            raise EmulatorHTTPError(400, "anthropic-version: header is required")
        return request.headers.get("anthropic-workspace-id")

    def authenticate_access_token(request: Request, token: str) -> str | None:
        """A federated access token acts in the workspace it was minted for, with the OAuth beta."""
        valid, workspace = emulator.tokens.workspace_of(token, emulator.clock.now())
        if not valid:
            emulator.stats["auth_failures"] += 1
            raise EmulatorHTTPError(401, "invalid or expired access token", error_type="authentication_error")
        flags = {flag.strip() for flag in request.headers.get("anthropic-beta", "").split(",")}
        if OAUTH_API_BETA not in flags:
            emulator.stats["auth_failures"] += 1
            raise EmulatorHTTPError(
                401,
                f"OAuth authentication needs the anthropic-beta {OAUTH_API_BETA}",
                error_type="authentication_error",
            )
        if not request.headers.get("anthropic-version"):
            raise EmulatorHTTPError(400, "anthropic-version: header is required")
        emulator.stats["token_requests"] += 1
        return workspace

    async def handle(endpoint: str, request: Request, operation: Callable[[str | None, Fault | None], Any]) -> Response:
        emulator.calls[endpoint] += 1
        # results_url must point back at whatever address the client used to reach us.
        emulator.base_url = str(request.base_url).rstrip("/")
        request_id = new_request_id()  # every answer has its own, failures included
        try:
            workspace = authenticate(request)
            if emulator.config.latency_seconds:
                await asyncio.sleep(emulator.config.latency_seconds)
            fault = emulator.take_fault(endpoint)
            committed = fault is not None and fault.after_commit
            if fault is not None and not committed:
                if fault.delay_seconds:
                    await asyncio.sleep(fault.delay_seconds)
                if fault.status is not None:
                    raise _fault_error(fault)
            result = operation(workspace, fault)
            emulator.save_state()
            if committed:  # the work is done; only the answer is slow or lost
                assert fault is not None
                if fault.delay_seconds:
                    await asyncio.sleep(fault.delay_seconds)
                if fault.status is not None:
                    raise _fault_error(fault)
            if isinstance(result, Response):
                result.headers["request-id"] = request_id
                return result
            return Response(
                content=_json_encoder.encode(result), media_type="application/json", headers={"request-id": request_id}
            )
        except EmulatorHTTPError as exc:
            return _error_response(exc, request_id)

    @app.post("/v1/messages/batches")
    async def create_batch(request: Request) -> Response:
        body = await request.body()
        return await handle("create", request, lambda ws, _fault: emulator.create(body, ws))

    @app.post("/v1/messages/count_tokens")
    async def count_tokens(request: Request) -> Response:
        body = await request.body()
        return await handle("count_tokens", request, lambda _ws, _fault: count_input_tokens(body))

    @app.get("/v1/messages/batches")
    async def list_batches(
        request: Request,
        limit: int = limits.LIST_PAGE_DEFAULT,
        after_id: str | None = None,
        before_id: str | None = None,
    ) -> Response:
        return await handle("list", request, lambda ws, _fault: emulator.list(ws, limit, after_id, before_id))

    @app.get("/v1/messages/batches/{batch_id}")
    async def retrieve_batch(batch_id: str, request: Request) -> Response:
        return await handle("retrieve", request, lambda ws, _fault: emulator.retrieve(batch_id, ws))

    @app.post("/v1/messages/batches/{batch_id}/cancel")
    async def cancel_batch(batch_id: str, request: Request) -> Response:
        return await handle("cancel", request, lambda ws, _fault: emulator.cancel(batch_id, ws))

    @app.delete("/v1/messages/batches/{batch_id}")
    async def delete_batch(batch_id: str, request: Request) -> Response:
        return await handle("delete", request, lambda ws, _fault: emulator.delete(batch_id, ws))

    @app.get("/v1/messages/batches/{batch_id}/results")
    async def batch_results(batch_id: str, request: Request) -> Response:
        def stream(workspace: str | None, fault: Fault | None) -> Response:
            path, size = emulator.results_file(batch_id, workspace)
            asked = request.headers.get("range") if emulator.config.results_ranges else None
            start, end = _byte_range(asked, size)
            headers = {"content-length": str(end - start)}
            if emulator.config.results_ranges:
                headers["accept-ranges"] = "bytes"
            status = 200
            if asked is not None:
                status = 206
                headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
                emulator.stats["results_ranges"] += 1
            return StreamingResponse(
                _file_chunks(emulator, path, start, end, fault),
                status_code=status,
                media_type="application/binary",
                headers=headers,
            )

        return await handle("results", request, stream)

    @app.get("/v1/models")
    async def list_models(
        request: Request, limit: int = 20, after_id: str | None = None, before_id: str | None = None
    ) -> Response:
        def page(_ws: str | None, _fault: Fault | None) -> dict[str, Any]:
            if not 1 <= limit <= limits.LIST_PAGE_MAX:
                raise EmulatorHTTPError(400, f"limit: Input should be between 1 and {limits.LIST_PAGE_MAX}")
            return models_page(limit, after_id, before_id)

        return await handle("models", request, page)

    @app.get("/v1/models/{model_id}")
    async def retrieve_model(model_id: str, request: Request) -> Response:
        def one(_ws: str | None, _fault: Fault | None) -> dict[str, Any]:
            found = find_model(model_id)
            if found is None:
                raise EmulatorHTTPError(404, f"model: {model_id}")
            return found

        return await handle("models", request, one)

    @app.post("/v1/oauth/token")
    async def exchange_token(request: Request) -> Response:
        """Workload identity federation's token exchange (no API key: the assertion is the credential)."""
        emulator.calls["token"] += 1
        request_id = new_request_id()
        headers = {"request-id": request_id}
        try:
            body = _json_decoder.decode(await request.body())
        except msgspec.DecodeError:
            body = None
        try:
            with emulator._lock:
                answer = emulator.tokens.exchange(body, emulator.config.federation, emulator.clock.now())
        except FederationError as exc:
            emulator.stats["token_exchange_failures"] += 1
            return JSONResponse(status_code=exc.status, content=exc.body(), headers=headers)
        emulator.stats["token_exchanges"] += 1
        return JSONResponse(content=answer, headers=headers)

    # Routes and methods the API does not have answer in its error shape, not FastAPI's.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        error_type = _STATUS_ERROR.get(exc.status_code, "invalid_request_error")
        message = f"{exc.detail}: {request.method} {request.url.path}"
        response = _error_response(EmulatorHTTPError(exc.status_code, message, error_type=error_type), new_request_id())
        if exc.headers:
            response.headers.update(exc.headers)  # e.g. the ``allow`` header of a 405
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body"))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return _error_response(EmulatorHTTPError(400, message), new_request_id())

    # ------------------------------------------------------------- control plane
    @app.get("/_emulator/state")
    async def control_state() -> dict[str, Any]:
        return emulator.snapshot()

    @app.post("/_emulator/faults")
    async def control_fault(request: Request) -> dict[str, Any]:
        fault = Fault(**(await request.json()))
        emulator.inject(fault)
        return {"injected": fault.endpoint}

    @app.post("/_emulator/advance")
    async def control_advance(seconds: float) -> dict[str, Any]:
        emulator.advance(seconds)
        return {"now": _rfc3339(emulator.clock.now())}

    @app.post("/_emulator/outcomes")
    async def control_outcomes(request: Request) -> dict[str, Any]:
        emulator.script_outcomes(await request.json())
        return {"ok": True}

    @app.post("/_emulator/config")
    async def control_config(request: Request) -> dict[str, Any]:
        for name, value in (await request.json()).items():
            if not hasattr(emulator.config, name):
                raise ValueError(f"unknown emulator setting {name!r}")
            if name == "reply_chars" and value:
                value = tuple(value)
            elif name == "federation":
                value = FederationRule(
                    **{**value, "trusted_identity_tokens": frozenset(value.get("trusted_identity_tokens", ()))}
                )
            setattr(emulator.config, name, value)
        return {"ok": True}

    @app.post("/_emulator/reset")
    async def control_reset() -> dict[str, Any]:
        emulator.reset()
        return {"ok": True}

    return app


def _stored_request(
    custom_id: str, model: Any, max_tokens: Any, has_messages: bool, prompt_bytes: bytes
) -> _StoredRequest:
    """One request as a batch keeps it. Invalid params are kept too: the API reports them as
    an errored result, not at create time."""
    invalid = None
    if not isinstance(model, str) or not model:
        invalid = "model: Field required"
    elif not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        invalid = "max_tokens: Input should be an integer greater than or equal to 1"
    elif not has_messages:
        invalid = "messages: List should have at least 1 item"
    return _StoredRequest(
        custom_id=custom_id,
        model=model if isinstance(model, str) and model else "unknown",
        max_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 1,
        input_chars=len(prompt_bytes),
        prompt_digest=_stable_int(prompt_bytes),
        invalid_reason=invalid,
    )


def _add_structure(stored: _StoredRequest, params: dict[str, Any], workspace: str | None) -> None:
    """What a valid request's ``output_config.format`` and ``cache_control`` ask for (an invalid
    format makes the request invalid: it ends errored, as in the API)."""
    output_config = params.get("output_config")
    output_format = output_config.get("format") if isinstance(output_config, dict) else None
    if isinstance(output_format, dict):
        schema = output_format.get("schema")
        stored.output_schema = schema if isinstance(schema, dict) else None
    if stored.invalid_reason is not None:
        return
    if output_format is not None:
        if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
            stored.invalid_reason = "output_config.format.type: Input should be 'json_schema'"
            return
        if not isinstance(output_format.get("schema"), dict):
            stored.invalid_reason = "output_config.format.schema: Field required"
            return
    stored.cache_point = breakpoint_of(params, workspace)
    stored.web_searches = _web_searches(params.get("tools"))


def _web_searches(tools: Any) -> int:
    """How many web searches the emulator reports for a request: with a web search server tool
    (``{"type": "web_search_20250305", ...}``), its ``max_uses`` (1 when not given), so a test
    knows each row's fee; the answer's text stays the emulator's usual one."""
    if not isinstance(tools, list):
        return 0
    for tool in tools:
        if isinstance(tool, dict) and str(tool.get("type", "")).startswith("web_search_"):
            uses = tool.get("max_uses")
            return uses if isinstance(uses, int) and not isinstance(uses, bool) and uses > 0 else 1
    return 0


def _byte_range(header: str | None, size: int) -> tuple[int, int]:
    """``[start, end)`` of a results body for a ``Range`` header (the whole file without one)."""
    if header is None:
        return 0, size
    match = _RANGE.match(header.strip())
    if match is None:
        raise EmulatorHTTPError(400, f"range: unsupported Range header {header!r}; use bytes=START- or START-END")
    start = int(match.group(1))
    end = min(size, int(match.group(2)) + 1) if match.group(2) else size
    if start >= size or start >= end:
        raise EmulatorHTTPError(
            416, f"range: {header!r} is outside the {size} bytes of the results", error_type="invalid_request_error"
        )
    return start, end


async def _file_chunks(emulator: Emulator, path: str, start: int, end: int, drop: Fault | None) -> AsyncIterator[bytes]:
    """Bytes ``[start, end)`` of a rendered results file in 1 MiB chunks; with a drop fault,
    the connection breaks after ``drop_after_bytes`` of this response's body."""
    limit = end - start
    if drop is not None and drop.drop_after_bytes is not None:
        limit = min(limit, drop.drop_after_bytes)
    sent = 0
    with open(path, "rb") as handle:
        handle.seek(start)
        while sent < limit:
            data = handle.read(min(RESULTS_CHUNK_BYTES, limit - sent))
            if not data:
                break
            sent += len(data)
            yield data
            await asyncio.sleep(0)
    if sent < end - start:
        emulator.stats["results_dropped"] += 1
        raise ConnectionAbortedError(f"{EMULATOR_TAG} dropped the results connection on purpose")


@dataclass
class RunningEmulator:
    """An emulator served on a loopback port in a background thread."""

    emulator: Emulator
    host: str
    port: int
    server: uvicorn.Server = field(repr=False)
    thread: threading.Thread = field(repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_key(self) -> str:
        return sorted(self.emulator.config.api_keys)[0]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _uvicorn_config(emulator: Emulator, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(emulator),
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        backlog=2048,
    )


def start_emulator(
    config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> RunningEmulator:
    """Serve a new emulator on ``host:port`` (0: a free port) in a daemon thread.

    The listening socket is bound before this returns, so clients can connect at once: the
    kernel queues their connections until the server's loop accepts them.
    """
    emulator = Emulator(config)
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    emulator.base_url = f"http://{host}:{bound_port}"
    server = uvicorn.Server(_uvicorn_config(emulator, log_level))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="claude-batch-emulator", daemon=True)
    thread.start()
    return RunningEmulator(emulator=emulator, host=host, port=bound_port, server=server, thread=thread)


def serve_forever(config: EmulatorConfig, *, host: str, port: int, log_level: str = "info") -> None:
    """Serve an emulator in the foreground (the command line entry point)."""
    emulator = Emulator(config)
    sock = bind_socket(host, port)
    emulator.base_url = f"http://{host}:{sock.getsockname()[1]}"
    # Printed once the socket listens: connections made from now on queue until served.
    print(f"Claude Message Batches emulator listening on {emulator.base_url}", flush=True)
    uvicorn.Server(_uvicorn_config(emulator, log_level)).run(sockets=[sock])
