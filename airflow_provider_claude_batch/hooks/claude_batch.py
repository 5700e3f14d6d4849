"""ClaudeBatchHook: an Airflow connection -> ``Anthropic`` / ``AsyncAnthropic`` clients.

The hook owns every call to the Message Batches API. Two rules shape it:

* A create is never blindly retried. The SDK retries a failed POST with no idempotency key,
  so a create whose answer was lost can bill a duplicate batch. Creates go out with
  ``max_retries=0``; after an ambiguous failure the hook lists recent batches and adopts the
  one that was created, and only creates again when none was.
* The API key never leaves the client: it is not logged, not put into exception text,
  trigger kwargs, XCom or files. Errors name the connection id instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

import anthropic
from airflow.providers.common.compat.sdk import BaseHook
from anthropic.types import MessageCountTokensParams
from anthropic.types.messages import DeletedMessageBatch, MessageBatch

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.batching.api.batch_state import BatchState, BatchStatesPage, decode_states_page
from airflow_provider_claude_batch.batching.api.jsonl import iter_lines
from airflow_provider_claude_batch.batching.api.limits import CLOCK_SKEW
from airflow_provider_claude_batch.batching.api.queue_limit import QUEUE as QUEUE_REFUSAL
from airflow_provider_claude_batch.batching.api.queue_limit import UNKNOWN as UNKNOWN_REFUSAL
from airflow_provider_claude_batch.batching.api.queue_limit import refusal_kind
from airflow_provider_claude_batch.batching.state.batch_index import BatchOwnership, Whose
from airflow_provider_claude_batch.compat import aget_connection  # also refuses an unsupported Airflow
from airflow_provider_claude_batch.config import trigger_concurrency
from airflow_provider_claude_batch.conventions import DEFAULT_CONN_ID
from airflow_provider_claude_batch.exceptions import (
    ClaudeBatchAPIError,
    ClaudeBatchAuthError,
    ClaudeBatchCreateAmbiguousError,
    ClaudeBatchNotFoundError,
    ClaudeBatchQueueFullError,
)
from airflow_provider_claude_batch.hooks.credentials import (
    FEDERATION_EXTRAS,
    FederationSettings,
    federated_credentials,
)
from airflow_provider_claude_batch.hooks.loop_registry import LoopRegistry
from airflow_provider_claude_batch.hooks.wire import (
    jsonl_to_create_body,
    page_params,
    range_start,
    requests_to_create_body,
    retry_after_seconds,
    whole_size,
)

#: The request params ``count_tokens`` takes (the SDK's own list).
_COUNT_TOKENS_PARAMS = frozenset(MessageCountTokensParams.__annotations__)

try:  # anthropic >= 2 ships its own fork of httpx
    import httpx2 as _httpx
except ImportError:  # pragma: no cover - older SDKs
    import httpx as _httpx  # type: ignore[no-redef]


def quiet_transport_logs() -> None:
    """Airflow keeps ``httpx`` at WARN in task and triggerer logs ("too chatty even at info");
    the SDK's fork logs as ``httpx2``, one INFO line per call. Treat it the same unless a
    logging config already chose its level."""
    transport = logging.getLogger(_httpx.__name__)
    if transport.level == logging.NOTSET:
        transport.setLevel(logging.WARNING)


#: Failures of a stream that was already answering (a dropped connection mid-body).
#: Broken connections a results download survives (each resumes where the last one ended).
DOWNLOAD_ATTEMPTS = 5
STREAM_ERRORS: tuple[type[BaseException], ...] = (_httpx.TransportError, anthropic.APIConnectionError)
#: First and longest pause between lookups for a create that may still be running.
_LOOKUP_FIRST_PAUSE = 0.25
_LOOKUP_MAX_PAUSE = 10.0

#: The longest ``retry-after`` a create waits out in the task (a worker slot is held meanwhile).
DEFAULT_MAX_RETRY_AFTER = 300.0

#: An API key is printable ASCII without spaces (it travels in an HTTP header).
_KEY_CHARACTERS = (0x21, 0x7E)


def _extra(extra: dict[str, Any], name: str) -> Any:
    """A connection extra, stored plainly or with the UI form's ``extra__claude_batch__`` prefix."""
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(f"extra__claude_batch__{name}")
    return None if value == "" else value


@dataclass(frozen=True)
class ClaudeBatchSettings:
    """What a hook needs from its connection. ``repr`` never shows the key."""

    conn_id: str
    api_key: str | None = field(repr=False)
    base_url: str | None = None
    workspace_id: str | None = None
    default_model: str | None = None
    timeout: float = 600.0
    max_retries: int = 2
    anthropic_beta: str | None = None
    console_url_template: str | None = None
    #: How long past ``timeout`` a create that got no answer is looked for (None: the default).
    create_settle_seconds: float | None = None
    #: Workload identity federation instead of an API key (see ``hooks/credentials.py``).
    federation: FederationSettings | None = None
    #: The organisation's batch queue, in requests (None: learned from refusals; see docs/queue.md).
    queue_limit: int | None = None

    @classmethod
    def from_connection(cls, conn: Any) -> ClaudeBatchSettings:
        extra = conn.extra_dejson or {}
        host = (conn.host or "").strip() or None
        if host and "://" not in host:
            host = f"https://{host}"
        if host and conn.port:
            host = f"{host}:{conn.port}"
        timeout = _extra(extra, "timeout")
        max_retries = _extra(extra, "max_retries")
        settle = _extra(extra, "create_settle_seconds")
        queue_limit = _extra(extra, "queue_limit")
        federation = FederationSettings.from_extras(
            conn.conn_id, {name: _extra(extra, name) for name in FEDERATION_EXTRAS}
        )
        # A connection set up for federation does not fall back to a key from the environment.
        fallback_key = None if federation else os.environ.get("ANTHROPIC_API_KEY")
        return cls(
            conn_id=conn.conn_id,
            # Surrounding whitespace is a copy-paste artefact (a trailing newline from a secrets
            # file); sent as is, it makes an illegal header whose text carries the key.
            api_key=(conn.password or fallback_key or "").strip() or None,
            base_url=host,
            workspace_id=_extra(extra, "workspace_id"),
            # ``model`` is where the public Anthropic provider's ``anthropic`` connections keep theirs.
            default_model=_extra(extra, "default_model") or _extra(extra, "model"),
            timeout=float(timeout) if timeout is not None else 600.0,
            max_retries=int(max_retries) if max_retries is not None else 2,
            anthropic_beta=_extra(extra, "anthropic_beta"),
            console_url_template=_extra(extra, "console_url_template"),
            create_settle_seconds=float(settle) if settle is not None else None,
            federation=federation,
            queue_limit=int(queue_limit) if queue_limit is not None else None,
        )

    def client_kwargs(self) -> dict[str, Any]:
        if not self.api_key and self.federation is not None:
            return self._federated_client_kwargs()
        if not self.api_key:
            raise ClaudeBatchAuthError(
                f"Connection {self.conn_id!r} has no API key: put it in the connection's password "
                "(or set ANTHROPIC_API_KEY for connections that have none)."
            )
        if not all(_KEY_CHARACTERS[0] <= ord(c) <= _KEY_CHARACTERS[1] for c in self.api_key):
            # Checked before any client exists: such a key cannot be sent in a header, and the
            # transport's error about it would quote the header, key included.
            raise ClaudeBatchAuthError(
                f"Connection {self.conn_id!r} has a malformed API key: it holds whitespace, control or "
                "non-ASCII characters inside it. Paste the key again into the connection's password."
            )
        headers = {"anthropic-workspace-id": self.workspace_id} if self.workspace_id else {}
        return self._transport_kwargs(headers, api_key=self.api_key)

    def _federated_client_kwargs(self) -> dict[str, Any]:
        """Keyless: the SDK exchanges the identity token; the workspace is the token's own."""
        assert self.federation is not None
        credentials = federated_credentials(self.conn_id, self.federation, self.workspace_id)
        return self._transport_kwargs({}, credentials=credentials)

    def _transport_kwargs(self, headers: dict[str, str], **auth: Any) -> dict[str, Any]:
        """The client arguments every sign-in shares: timeout, SDK retries, beta header, base URL."""
        if self.anthropic_beta:
            headers["anthropic-beta"] = self.anthropic_beta
        kwargs: dict[str, Any] = {
            **auth,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "default_headers": headers,
        }
        if self.base_url:
            kwargs["base_url"] = self.base_url
        return kwargs

    def cache_key(self) -> tuple[Any, ...]:
        key_digest = hashlib.sha256((self.api_key or "").encode()).hexdigest()
        return (
            self.conn_id,
            key_digest,
            self.base_url,
            self.workspace_id,
            self.anthropic_beta,
            self.timeout,
            self.federation,
        )


#: One ``AsyncAnthropic`` per connection per event loop.
_ASYNC_CLIENTS: LoopRegistry[anthropic.AsyncAnthropic] = LoopRegistry()
#: One semaphore per event loop: API calls in flight across every trigger on it.
_SEMAPHORES: LoopRegistry[asyncio.Semaphore] = LoopRegistry()


def _create_body(requests: Sequence[dict[str, Any]] | bytes, request_count: int | None) -> tuple[bytes, int]:
    """The create body and its request count: a JSONL chunk is wrapped as it is (never parsed
    or re-serialized), request dicts are serialized."""
    if isinstance(requests, (bytes, bytearray)):
        body = jsonl_to_create_body(bytes(requests))
        return body, request_count if request_count is not None else bytes(requests).rstrip(b"\n").count(b"\n") + 1
    return requests_to_create_body(requests)


def loop_semaphore() -> asyncio.Semaphore:
    """In-flight API calls per event loop, across all the triggers that share it
    (``[claude_batch] trigger_concurrency``). Bounded so that answers arrive no faster than
    the loop can parse them: past that, every other trigger on the loop waits (see
    docs/benchmarks.md, P4)."""
    return _SEMAPHORES.get(None, lambda: asyncio.Semaphore(trigger_concurrency()))


class ClaudeBatchHook(BaseHook):
    """Interact with Claude's Message Batches API.

    :param claude_batch_conn_id: Airflow connection of type ``claude_batch``. The API key is
        its password (``ANTHROPIC_API_KEY`` is used only when it has none); the host, when
        set, is the base URL; extras: ``workspace_id``, ``default_model``, ``timeout``,
        ``max_retries``, ``anthropic_beta``, ``console_url_template``, ``create_settle_seconds``,
        ``queue_limit`` (the organisation's batch queue in requests, see docs/queue.md).
        Without a key, the extras
        ``federation_rule_id``, ``organization_id`` (and optionally ``service_account_id``,
        ``identity_token_file``) sign in with workload identity federation instead.
    :param create_attempts: how many times a create that was rejected (429/529) or failed
        without creating anything is sent, in all.
    :param retry_backoff: first wait between create attempts, in seconds (doubles, capped
        at 60 s). A rejected create is never sent again before its ``retry-after`` allows.
    :param max_retry_after: the longest ``retry-after`` a create waits out, in seconds; when the
        API asks for longer, the create fails (nothing was created) and the task's own retry
        takes over.
    :param create_settle_seconds: after a create that got no answer (a timeout, a dropped
        connection, a gateway error), how long past the connection's ``timeout`` the hook keeps
        looking for its batch before sending it again. Default: the connection's extra of the
        same name, else the ``timeout`` itself but never less than
        ``limits.CREATE_SETTLE_FLOOR_SECONDS`` (120 s): a server may commit a create late
        whatever timeout the client chose.
    :param wait_on_full_queue: a create refused because the batch queue is full (a 429 read as
        the queue's, see ``queue_limit.refusal_kind``) raises :class:`ClaudeBatchQueueFullError`
        at once, without the attempts and sleeps of other rejections: the caller waits for room,
        deferred. A 429 that says neither is retried as usual; refused every time, it raises
        the same error with ``certain=False`` instead of failing.
    """

    conn_name_attr = "claude_batch_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "claude_batch"
    hook_name = "Claude Message Batches"

    def __init__(
        self,
        claude_batch_conn_id: str = default_conn_name,
        *,
        create_attempts: int = 4,
        retry_backoff: float = 2.0,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        create_settle_seconds: float | None = None,
        wait_on_full_queue: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.claude_batch_conn_id = claude_batch_conn_id
        self.create_attempts = max(1, create_attempts)
        self.retry_backoff = retry_backoff
        self.max_retry_after = max_retry_after
        self.create_settle_seconds = create_settle_seconds
        self.wait_on_full_queue = wait_on_full_queue
        self._settings: ClaudeBatchSettings | None = None

    # ------------------------------------------------------------------ connection
    @property
    def settings(self) -> ClaudeBatchSettings:
        if self._settings is None:
            self._settings = ClaudeBatchSettings.from_connection(self.get_connection(self.claude_batch_conn_id))
        return self._settings

    async def asettings(self) -> ClaudeBatchSettings:
        if self._settings is None:
            conn = await aget_connection(self, self.claude_batch_conn_id)
            self._settings = ClaudeBatchSettings.from_connection(conn)
        return self._settings

    @cached_property
    def client(self) -> anthropic.Anthropic:
        """The synchronous client (built once per hook)."""
        kwargs = self.settings.client_kwargs()
        quiet_transport_logs()
        return anthropic.Anthropic(**kwargs)

    async def shared_async_client(self) -> anthropic.AsyncAnthropic:
        """The async client shared by every hook of this connection on the running loop."""
        settings = await self.asettings()

        def build() -> anthropic.AsyncAnthropic:
            kwargs = settings.client_kwargs()
            quiet_transport_logs()
            return anthropic.AsyncAnthropic(**kwargs)

        return _ASYNC_CLIENTS.get(settings.cache_key(), build)

    def get_conn(self) -> anthropic.Anthropic:
        return self.client

    def test_connection(self) -> tuple[bool, str]:
        """The UI's *Test* button: one cheap authenticated call."""
        try:
            page = self.list_batches(limit=1)
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected: the API answered ({len(page.data)} recent batch(es) visible)."

    # ------------------------------------------------------------------ errors
    def _describe(self, exc: anthropic.APIError, action: str, batch_id: str | None) -> ClaudeBatchAPIError:
        conn_id = self.claude_batch_conn_id
        if isinstance(exc, anthropic.APIStatusError):
            body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {}
            error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
            error_type = error.get("type") or type(exc).__name__
            message = error.get("message") or ""
            request_id = exc.request_id or body.get("request_id")
            where = f" (request-id {request_id})" if request_id else ""
            if exc.status_code in (401, 403):
                return ClaudeBatchAuthError(
                    f"Connection {conn_id!r} was rejected by the Claude API while trying to {action}: "
                    f"{exc.status_code} {error_type}: {message}{where}. Check the API key (the connection's "
                    "password) and its workspace.",
                    status_code=exc.status_code,
                    error_type=error_type,
                )
            if exc.status_code == 404 and batch_id:
                return ClaudeBatchNotFoundError(
                    f"Message batch {batch_id!r} was not found for connection {conn_id!r} while trying to "
                    f"{action}{where}: it does not exist in this workspace, or was deleted.",
                    status_code=404,
                    error_type=error_type,
                )
            return ClaudeBatchAPIError(
                f"Could not {action} (connection {conn_id!r}): {exc.status_code} {error_type}: {message}{where}",
                status_code=exc.status_code,
                error_type=error_type,
            )
        # A connection error's cause is the transport's exception, whose text may quote the
        # request's headers: name its type only.
        cause = f" ({type(exc.__cause__).__name__})" if exc.__cause__ is not None else ""
        return ClaudeBatchAPIError(
            self._scrubbed(f"Could not {action} (connection {conn_id!r}): {type(exc).__name__}{cause}: {exc}")
        )

    def _scrubbed(self, text: str) -> str:
        """``text`` with the connection's key masked, should any layer below have quoted it."""
        key = self._settings.api_key if self._settings is not None else None
        return text.replace(key, "***") if key else text

    @staticmethod
    def _chained(exc: anthropic.APIError) -> BaseException | None:
        """What a translated error may chain to: an answer from the API, never a transport
        exception (its text and traceback may carry the request's headers, key included)."""
        return exc if isinstance(exc, anthropic.APIStatusError) else None

    @contextmanager
    def _translated(self, action: str, batch_id: str | None = None) -> Iterator[None]:
        try:
            yield
        except anthropic.APIError as exc:
            raise self._describe(exc, action, batch_id) from self._chained(exc)

    @asynccontextmanager
    async def _atranslated(self, action: str, batch_id: str | None = None) -> AsyncIterator[None]:
        try:
            yield
        except anthropic.APIError as exc:
            raise self._describe(exc, action, batch_id) from self._chained(exc)

    def count_tokens(self, params: Mapping[str, Any]) -> int:
        """Input tokens of one request's params (``POST /v1/messages/count_tokens``, free of
        charge). Params that endpoint does not take (``max_tokens``, ``temperature``, ...) are
        left out."""
        accepted = {key: value for key, value in params.items() if key in _COUNT_TOKENS_PARAMS}
        with self._translated("count tokens"):
            return int(self.client.messages.count_tokens(**accepted).input_tokens)

    # ------------------------------------------------------------------ create
    @property
    def create_window(self) -> timedelta:
        """How long after a create is sent its batch may still appear: the request's own
        timeout, then the settle time for a server that finishes late (see
        ``create_settle_seconds``)."""
        settings = self.settings
        settle = self.create_settle_seconds
        if settle is None:
            settle = settings.create_settle_seconds
        if settle is None:
            settle = max(settings.timeout, limits.CREATE_SETTLE_FLOOR_SECONDS)
        return timedelta(seconds=self.settings.timeout + settle)

    def create_batch(
        self,
        requests: Sequence[dict[str, Any]] | bytes,
        *,
        request_count: int | None = None,
        intent_at: datetime | None = None,
        known_batch_ids: Iterable[str] = (),
        ownership: BatchOwnership | None = None,
        betas: Sequence[str] = (),
    ) -> MessageBatch:
        """Create one batch, never twice.

        A rejection (429/529) is sent again once the server allows it (``retry-after``). After an
        ambiguous failure the batch may exist: an answered 500 is looked up once; a timeout, a
        dropped connection or a gateway error (the server may still be working on it) is looked
        up until :attr:`create_window` has passed since sending; only then is it sent again.

        :param requests: request dicts, or a JSONL chunk of them (bytes, one per line), which
            is sent without being parsed or re-serialized.
        :param request_count: the number of requests (counted when not given).
        :param intent_at: when the caller decided to create (e.g. recorded in a manifest);
            batches created before it are never adopted. Defaults to now.
        :param known_batch_ids: batches the caller already owns: never adopted.
        :param ownership: whose a found batch is (see ``batching.batch_index``); without it,
            any batch of the same size created since the intent is a candidate.
        :param betas: beta flags the requests need (``file_id`` sources need the Files API's).
        """
        body, count = _create_body(requests, request_count)
        headers = self._json_headers(betas)
        intent_at = intent_at or datetime.now(timezone.utc)
        known = set(known_batch_ids)
        last_error: ClaudeBatchAPIError | None = None
        refused_every_attempt = unclear_every_attempt = True  # unclear: 429s naming no queue or rate
        client = self.client  # built first: the window below counts from the request, not the setup
        for attempt in range(1, self.create_attempts + 1):
            sent_at = datetime.now(timezone.utc)
            try:
                batch = client.post(
                    "/v1/messages/batches",
                    cast_to=MessageBatch,
                    content=body,
                    options={"headers": headers, "max_retries": 0},
                )
                self.log.info("Created batch %s with %d requests (%d bytes).", batch.id, count, len(body))
                return batch
            except anthropic.APIStatusError as exc:
                last_error = self._describe(exc, f"create a batch of {count} requests", None)
                last_error.created_nothing = refused_every_attempt
                unclear_every_attempt &= self._raise_if_queue_full(exc, last_error, count) == UNKNOWN_REFUSAL
                if exc.status_code in limits.REJECTED_CREATE_STATUSES:
                    self.log.warning("Create attempt %d was rejected: %s", attempt, last_error)
                    self._wait_before_resend(attempt, exc.response.headers, last_error)
                    continue
                if exc.status_code not in limits.AMBIGUOUS_CREATE_STATUSES:
                    raise last_error from exc
                answered = exc.status_code in limits.ANSWERED_CREATE_STATUSES
            except anthropic.APIConnectionError as exc:  # includes timeouts
                last_error = self._describe(exc, f"create a batch of {count} requests", None)
                answered = False
            refused_every_attempt = last_error.created_nothing = unclear_every_attempt = False
            # The batch may exist even though we got no answer: look before creating again.
            until = None if answered else sent_at + self.create_window
            adopted = self._look_for_lost_create(attempt, last_error, count, intent_at, known, ownership, until)
            if adopted is not None:
                return adopted
            self._wait_before_resend(attempt, None, last_error)
        assert last_error is not None
        if self.wait_on_full_queue and unclear_every_attempt:
            raise self._unclear_full_queue(last_error, count)
        raise last_error

    @staticmethod
    def _unclear_full_queue(error: ClaudeBatchAPIError, count: int) -> ClaudeBatchQueueFullError:
        """Every attempt refused by a 429 that named neither the queue nor a rate: most likely
        the queue. A feeding run waits for room instead of failing, but learns no limit."""
        full = ClaudeBatchQueueFullError(
            str(error),
            status_code=error.status_code,
            error_type=error.error_type,
            created_nothing=True,
            request_count=count,
            certain=False,
        )
        full.__cause__ = error
        return full

    def _raise_if_queue_full(self, exc: anthropic.APIStatusError, error: ClaudeBatchAPIError, count: int) -> str | None:
        """With ``wait_on_full_queue``: a queue-full refusal ends the create at once (no attempts
        and sleeps in a worker slot); it created nothing if every attempt was refused. Returns
        what the refusal was (``refusal_kind``: None when not a 429 ``rate_limit_error``)."""
        body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {}
        detail = body.get("error") if isinstance(body.get("error"), dict) else {}
        message = str(detail.get("message") or "") if isinstance(detail, dict) else ""
        kind = refusal_kind(exc.status_code, error.error_type, message, exc.response.headers)
        if self.wait_on_full_queue and kind == QUEUE_REFUSAL:
            raise ClaudeBatchQueueFullError(
                str(error),
                status_code=exc.status_code,
                error_type=error.error_type,
                created_nothing=error.created_nothing,
                request_count=count,
            ) from exc
        return kind

    def _look_for_lost_create(
        self,
        attempt: int,
        error: ClaudeBatchAPIError,
        count: int,
        intent_at: datetime,
        known: set[str],
        ownership: BatchOwnership | None,
        until: datetime | None,
    ) -> MessageBatch | None:
        """After an ambiguous failure: the batch the failed attempt may have made (looked up
        once when the API answered, else until ``until``), or None when there is none."""
        self.log.warning(
            "Create attempt %d failed ambiguously (%s); looking for the batch%s.",
            attempt,
            error,
            f" until {until.isoformat(timespec='seconds')}" if until else "",
        )
        adopted = self.find_created_batch(
            count, created_after=intent_at, exclude=known, ownership=ownership, until=until
        )
        if adopted is not None:
            self.log.warning("Adopted batch %s, created by the failed attempt; not creating again.", adopted.id)
        return adopted

    def _wait_before_resend(self, attempt: int, headers: Mapping[str, str] | None, error: ClaudeBatchAPIError) -> None:
        """Back off before the next create attempt, never less than the server asked for."""
        if attempt >= self.create_attempts:
            return
        delay = min(60.0, self.retry_backoff * 2 ** (attempt - 1))
        allowed = retry_after_seconds(headers)
        if allowed is not None:
            if allowed > self.max_retry_after:
                raise ClaudeBatchAPIError(
                    f"{error} The API asked to wait {allowed:g} s before creating again, longer than "
                    f"max_retry_after ({self.max_retry_after:g} s); nothing was created. Retry the task later.",
                    status_code=error.status_code,
                    error_type=error.error_type,
                    created_nothing=error.created_nothing,
                )
            delay = max(delay, allowed)
        if delay > 0:
            time.sleep(delay)

    def find_created_batches(
        self, request_count: int, *, created_after: datetime, exclude: Iterable[str] = ()
    ) -> list[MessageBatch]:
        """Batches with ``request_count`` requests created since ``created_after`` (less clock
        skew), newest first, minus ``exclude``: candidates for a create whose answer was lost."""
        excluded = set(exclude)
        since = created_after - CLOCK_SKEW
        found: list[MessageBatch] = []
        for batch in self.iter_batches():  # newest first: stop at the first one that is too old
            if batch.created_at < since:
                break
            counts = batch.request_counts
            total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
            if total == request_count and batch.id not in excluded:
                found.append(batch)
        return found

    def find_created_batch(
        self,
        request_count: int,
        *,
        created_after: datetime,
        exclude: Iterable[str] = (),
        ownership: BatchOwnership | None = None,
        until: datetime | None = None,
    ) -> MessageBatch | None:
        """The one batch a lost create made, ``None`` when there is none.

        Looks once, or until ``until`` while nothing is found (a create that may still be
        running). A batch another task recorded is never a candidate; one that another
        task's pending create may have made is adopted by nobody until its owner records it
        (waiting for that, up to the end of that create's window). Raises
        :class:`ClaudeBatchCreateAmbiguousError` when several candidates remain or a contest
        does not settle: adopting the wrong batch would land another input's answers.
        """
        pause = _LOOKUP_FIRST_PAUSE
        while True:
            mine, free, contested, settles_by = self._candidates(request_count, created_after, exclude, ownership)
            if mine:
                return mine[0]
            if len(free) > 1:
                raise ClaudeBatchCreateAmbiguousError(
                    f"A create of {request_count} requests failed without an answer and "
                    f"{len(free)} batches of that size were created since "
                    f"{created_after.isoformat()}: {', '.join(b.id for b in free)}. Refusing to "
                    "guess which one is ours; cancel the ones that are not and retry."
                )
            now = datetime.now(timezone.utc)
            if free and not contested:
                return free[0]
            deadline = max(until or now, settles_by or now)
            if now >= deadline:
                if contested:
                    raise ClaudeBatchCreateAmbiguousError(
                        f"A create of {request_count} requests failed without an answer; batch(es) "
                        f"{', '.join(b.id for b in [*free, *contested])} of that size appeared, but another "
                        "task's create of the same size was pending then and has not recorded whose they "
                        "are. Refusing to guess; retry the task to look again."
                    )
                return None
            time.sleep(min(pause, (deadline - now).total_seconds()))
            pause = min(pause * 2, _LOOKUP_MAX_PAUSE)

    def _candidates(
        self,
        request_count: int,
        created_after: datetime,
        exclude: Iterable[str],
        ownership: BatchOwnership | None,
    ) -> tuple[list[MessageBatch], list[MessageBatch], list[MessageBatch], datetime | None]:
        """One lookup: the candidates sorted by claim, and when the contested ones settle."""
        try:
            found = self.find_created_batches(request_count, created_after=created_after, exclude=exclude)
        except ClaudeBatchAPIError as exc:
            raise ClaudeBatchCreateAmbiguousError(
                f"A create of {request_count} requests failed without an answer, and the lookup that "
                f"decides whether it created a batch failed too: {exc}. Nothing was created again; "
                "retry the task to look again."
            ) from exc
        mine: list[MessageBatch] = []
        free: list[MessageBatch] = []
        contested: list[MessageBatch] = []
        settles_by: datetime | None = None
        for batch in found:
            whose, ends = ownership.whose(batch.id, batch.created_at) if ownership else (Whose.FREE, None)
            if whose is Whose.MINE:
                mine.append(batch)
            elif whose is Whose.FREE:
                free.append(batch)
            elif whose is Whose.CONTESTED:
                contested.append(batch)
                if ends is not None and (settles_by is None or ends > settles_by):
                    settles_by = ends
            else:
                self.log.info("Batch %s has the same size but belongs to another task; not a candidate.", batch.id)
        return mine, free, contested, settles_by

    # ------------------------------------------------------------------ read / cancel / delete
    def retrieve_batch(self, batch_id: str) -> MessageBatch:
        with self._translated(f"retrieve batch {batch_id!r}", batch_id):
            return self.client.messages.batches.retrieve(batch_id)

    def list_batches(self, *, limit: int = limits.LIST_PAGE_DEFAULT, after_id: str | None = None) -> Any:
        """One page (``.data``, ``.has_more``, ``.last_id``) of batches, newest first."""
        with self._translated("list batches"):
            return self.client.messages.batches.list(**page_params(limit, after_id))

    def iter_batches(self, *, page_size: int = limits.LIST_PAGE_MAX) -> Iterator[MessageBatch]:
        """Every batch of the workspace, newest first, page by page."""
        after_id: str | None = None
        while True:
            page = self.list_batches(limit=page_size, after_id=after_id)
            yield from page.data
            if not page.has_more or not page.last_id:
                return
            after_id = page.last_id

    def queue_states(self) -> list[BatchState]:
        """Every batch of the workspace that may still be processing (created within the last
        24 hours and a little), from ``list`` pages: what is in the organisation's batch queue,
        as far as this workspace can see it."""
        horizon = datetime.now(timezone.utc) - timedelta(hours=limits.BATCH_EXPIRY_HOURS) - CLOCK_SKEW
        found: list[BatchState] = []
        for batch in self.iter_batches():  # newest first
            if batch.created_at < horizon:
                break
            found.append(BatchState.from_batch(batch))
        return found

    def cancel_batch(self, batch_id: str) -> MessageBatch:
        with self._translated(f"cancel batch {batch_id!r}", batch_id):
            return self.client.messages.batches.cancel(batch_id)

    def delete_batch(self, batch_id: str) -> DeletedMessageBatch:
        with self._translated(f"delete batch {batch_id!r}", batch_id):
            return self.client.messages.batches.delete(batch_id)

    # ------------------------------------------------------------------ the Files API (uploads)
    def _betas(self, *wanted: str) -> list[str]:
        """The connection's beta flags and ``wanted``, once each (a call's own ``anthropic-beta``
        replaces the connection's default header, so both are sent)."""
        own = [flag.strip() for flag in (self.settings.anthropic_beta or "").split(",") if flag.strip()]
        return list(dict.fromkeys([*own, *wanted]))

    def _json_headers(self, betas: Sequence[str]) -> dict[str, str]:
        """A JSON body's headers, with ``betas`` (and the connection's) when there are any."""
        headers = {"Content-Type": "application/json"}
        if betas:
            headers["anthropic-beta"] = ",".join(self._betas(*betas))
        return headers

    @property
    def files_workspace(self) -> str:
        """The workspace this connection's uploads belong to (``default`` without a
        ``workspace_id``): upload records are kept per workspace."""
        return self.settings.workspace_id or "default"

    def upload_file(self, data: bytes, media_type: str, filename: str) -> str:
        """Upload one file through the Files API (beta); returns its id."""
        with self._translated(f"upload a file of {len(data)} bytes"):
            uploaded = self.client.beta.files.upload(
                file=(filename, data, media_type), betas=self._betas(limits.FILES_API_BETA)
            )
        return str(uploaded.id)

    def file_exists(self, file_id: str) -> bool:
        """Whether the API still knows ``file_id`` (its metadata): False on a 404."""
        try:
            with self._translated(f"read the metadata of file {file_id!r}"):
                self.client.beta.files.retrieve_metadata(file_id, betas=self._betas(limits.FILES_API_BETA))
        except ClaudeBatchAPIError as error:
            if error.status_code == 404:
                return False
            raise
        return True

    def delete_file(self, file_id: str) -> bool:
        """Delete an uploaded file; False when the API did not know it (already gone)."""
        try:
            with self._translated(f"delete file {file_id!r}"):
                self.client.beta.files.delete(file_id, betas=self._betas(limits.FILES_API_BETA))
        except ClaudeBatchAPIError as error:
            if error.status_code == 404:
                return False
            raise
        return True

    # ------------------------------------------------------------------ results
    def iter_results_bytes(
        self, batch_id: str, *, chunk_size: int = 1 << 20, attempts: int = DOWNLOAD_ATTEMPTS
    ) -> Iterator[bytes]:
        """The raw results JSONL of an ended batch, streamed: every byte exactly once, in order.

        A connection dropped mid-body is resumed where it broke off: the next request asks for
        the rest with ``Range: bytes=N-``; a server that answers with the whole body again (200
        instead of 206) has its first N bytes skipped. So a consumer never sees a byte twice or
        misses one, and no object is built per line. After ``attempts`` broken connections in
        all, the error says so.
        """
        offset = 0
        total: int | None = None
        for attempt in range(1, attempts + 1):
            try:
                with self._translated(f"read the results of batch {batch_id!r}", batch_id):
                    headers = {"Range": f"bytes={offset}-"} if offset else None
                    streaming = self.client.messages.batches.with_streaming_response
                    with streaming.results(batch_id, extra_headers=headers) as response:
                        http = response.http_response
                        start = range_start(http.status_code, http.headers, offset)
                        if start is None:
                            raise ClaudeBatchAPIError(
                                f"Asked for the results of batch {batch_id!r} from byte {offset} but got "
                                f"Content-Range {http.headers.get('content-range')!r}"
                            )
                        skip = offset - start
                        if total is None:
                            total = whole_size(http.status_code, http.headers)
                        for chunk in response.iter_bytes(chunk_size):
                            if skip:
                                if len(chunk) <= skip:
                                    skip -= len(chunk)
                                    continue
                                chunk, skip = chunk[skip:], 0
                            offset += len(chunk)
                            yield chunk
                if skip:
                    break  # the file changed under us: no resume can fix that
                return
            except STREAM_ERRORS as exc:
                if total is not None and offset == total:
                    return  # every byte arrived; only the connection's close failed
                if attempt == attempts:
                    raise ClaudeBatchAPIError(
                        f"The results download of batch {batch_id!r} broke off {attempts} times "
                        f"(last: {type(exc).__name__}: {exc}); retry the task to download again."
                    ) from exc
                self.log.warning(
                    "The results download of batch %s broke off at byte %d (%s); resuming there (%d/%d).",
                    batch_id,
                    offset,
                    type(exc).__name__,
                    attempt + 1,
                    attempts,
                )
            except ClaudeBatchAPIError as exc:
                if attempt == attempts or (
                    exc.status_code is not None and exc.status_code not in limits.RETRYABLE_READ_STATUSES
                ):
                    raise
        raise ClaudeBatchAPIError(
            f"The results of batch {batch_id!r} came back shorter than the {offset} bytes already read; "
            "retry the task to download them again."
        )

    def iter_results_lines(self, batch_id: str) -> Iterator[bytes]:
        """The raw results JSONL, one line (without its newline) at a time."""
        return iter_lines(self.iter_results_bytes(batch_id))

    def download_results(self, batch_id: str, destination: Any, *, attempts: int = DOWNLOAD_ATTEMPTS) -> int:
        """Save the results JSONL to ``destination`` (a path or ``ObjectStoragePath``).

        A dropped connection resumes where it broke off (:meth:`iter_results_bytes`), so the
        saved file has every byte once; it appears under its final name only once whole.
        Returns the number of bytes saved.
        """
        from airflow_provider_claude_batch.batching.state.storage import atomic_writer

        with atomic_writer(destination) as out:
            size = 0
            for chunk in self.iter_results_bytes(batch_id, attempts=attempts):
                out.write(chunk)
                size += len(chunk)
        self.log.info("Saved the results of batch %s (%d bytes) to %s.", batch_id, size, destination)
        return size

    # ------------------------------------------------------------------ async (triggers)
    async def aretrieve_batch(self, batch_id: str) -> MessageBatch:
        client = await self.shared_async_client()
        async with loop_semaphore():
            async with self._atranslated(f"retrieve batch {batch_id!r}", batch_id):
                return await client.messages.batches.retrieve(batch_id)

    async def alist_batches(self, *, limit: int = limits.LIST_PAGE_MAX, after_id: str | None = None) -> Any:
        client = await self.shared_async_client()
        async with loop_semaphore(), self._atranslated("list batches"):
            return await client.messages.batches.list(**page_params(limit, after_id))

    async def alist_batch_states(
        self, *, limit: int = limits.LIST_PAGE_MAX, after_id: str | None = None
    ) -> BatchStatesPage:
        """One ``list`` page decoded straight from its JSON into the fields a wait needs: a
        page of 1,000 batches costs the event loop about a millisecond this way, against tens
        of milliseconds as SDK models."""
        client = await self.shared_async_client()
        async with loop_semaphore(), self._atranslated("list batches"):
            raw = await client.messages.batches.with_raw_response.list(**page_params(limit, after_id))
        return decode_states_page(raw.http_response.content)

    async def aqueue_states(self) -> list[BatchState]:
        """:meth:`queue_states` for triggers: decoded ``list`` pages, newest first, to the horizon."""
        horizon = datetime.now(timezone.utc) - timedelta(hours=limits.BATCH_EXPIRY_HOURS) - CLOCK_SKEW
        found: list[BatchState] = []
        after_id: str | None = None
        while True:
            page = await self.alist_batch_states(after_id=after_id)
            found.extend(state for state in page.data if state.created_at >= horizon)
            if not page.has_more or not page.data or page.data[-1].created_at < horizon:
                return found
            after_id = page.last_id or page.data[-1].id

    async def acancel_batch(self, batch_id: str) -> MessageBatch:
        client = await self.shared_async_client()
        async with loop_semaphore():
            async with self._atranslated(f"cancel batch {batch_id!r}", batch_id):
                return await client.messages.batches.cancel(batch_id)

    # ------------------------------------------------------------------ before work
    def check_credentials(self) -> bool:
        """One cheap authenticated call (a one-model page of ``GET /v1/models``, free) before
        work that is long to redo, so that a wrong key fails first and not after rendering and
        writing every request.

        Raises :class:`ClaudeBatchAuthError` (the same error as any call's) when the connection
        has no usable key or the API rejects it (401/403). Any other failure (a busy API, a
        gateway that does not serve the models list) proves nothing about the key: it is logged
        and ``False`` returned, and the work goes on to meet the API at its first real call.
        """
        try:
            with self._translated("check its credentials"):
                self.client.models.list(limit=1)
        except ClaudeBatchAuthError:
            raise
        except ClaudeBatchAPIError as error:
            self.log.warning("Could not check the credentials before the work (going on): %s", error)
            return False
        return True


if TYPE_CHECKING:
    from airflow_provider_claude_batch.batching.api.client import AsyncBatchCanceller, ResultsReader
    from airflow_provider_claude_batch.batching.submit.submission import SubmitClient
    from airflow_provider_claude_batch.batching.submit.uploads import FileClient

    def _implements_the_core_protocols(
        hook: ClaudeBatchHook,
    ) -> tuple[SubmitClient, ResultsReader, AsyncBatchCanceller, FileClient]:
        """Checked by mypy only: the hook is what the core's Protocols describe, so a changed
        signature on either side fails the lint, not a run."""
        return hook, hook, hook, hook
