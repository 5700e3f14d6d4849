"""What the emulator accepts: the requests of a create body, a ``count_tokens`` body, and the
API's error answer (:class:`EmulatorHTTPError`) that every layer of the emulator raises.

Invariants:

* A create is refused as a whole (a 400 naming the first thing wrong) only for what the API
  refuses at create time: a body that is not JSON, no requests or more than the limit, a
  custom_id that does not match the pattern or repeats, a request without params. Invalid
  params (model, max_tokens, messages, the output format) are kept: the request ends
  ``errored`` with an ``invalid_request_error`` naming them, as in the API.
* A batch keeps a few scalars of each request (:class:`StoredRequest`), never its params, so a
  create of 100k requests stays small in memory and in the state file.
* Two parses, one answer. The lean parse decodes into msgspec structs and keeps ``messages``
  and ``system`` as raw JSON bytes (no dict or list per message); any body not of that shape
  goes through the general parse, whose errors name what is wrong. For compact JSON both store
  the same request: the prompt is the JSON of ``[system, messages]``.
* Input tokens are a quarter of the prompt's JSON characters, in usage and in ``count_tokens``.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import msgspec

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.testing.emulator_documents import BlockError, FileResolver, read_blocks
from airflow_provider_claude_batch.testing.prompt_cache import Breakpoint, CacheUse, breakpoint_of

#: The API's error type for each HTTP status it answers errors with.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class EmulatorHTTPError(Exception):
    """An answer in the API's error shape: ``status``, ``error_type`` and ``message``."""

    def __init__(self, status: int, message: str, *, error_type: str | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or ERROR_TYPES.get(status, "api_error")
        self.retry_after = retry_after


def stable_int(*parts: object) -> int:
    """A 64-bit hash of ``parts`` that is the same in every process (unlike ``hash``)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class StoredRequest(msgspec.Struct, gc=False):
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
    #: The facts of the image and document blocks received (``emulator_documents``), in order.
    documents: list[dict[str, Any]] | None = None
    #: Their estimated input tokens (their data is not counted as prompt characters).
    media_tokens: int = 0
    #: With ``answer_digest``: the digest of the last user text, echoed at the end of the answer.
    text_digest: str | None = None


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
            or b'"source"' in bytes(self.messages)
        )

    def decoded(self) -> dict[str, Any]:
        """The params as the general parse sees them (only the fields the emulator reads)."""
        params: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens}
        for name in ("messages", "system", "tools", "output_config"):
            value = _decoder.decode(bytes(getattr(self, name)))
            if value is not None:
                params[name] = value
        return params


class _WireRequest(msgspec.Struct, gc=False):
    custom_id: Any = None
    params: _WireParams | None = None


class _WireBody(msgspec.Struct, gc=False):
    requests: list[_WireRequest]


_create_decoder = msgspec.json.Decoder(_WireBody)


def parse_create(
    body: bytes, workspace: str | None, max_requests: int, resolve: FileResolver | None = None
) -> list[StoredRequest]:
    """The requests of a create body as a batch keeps them, or the API's 400 (the body's size
    is checked before: a 413 comes first). ``resolve`` finds uploaded files by id."""
    try:
        return _parse_lean(body, workspace, max_requests, resolve)
    except msgspec.DecodeError:
        # Not the shape the lean parse expects: the general parse names what is wrong.
        return _parse_general(body, workspace, max_requests, resolve)


def _parse_lean(
    body: bytes, workspace: str | None, max_requests: int, resolve: FileResolver | None = None
) -> list[StoredRequest]:
    """A create body decoded into minimal structs (messages and system kept as raw JSON);
    raises ``msgspec.DecodeError`` for any body not of that shape."""
    requests = _create_decoder.decode(body).requests
    _check_count(len(requests), max_requests)
    stored: list[StoredRequest] = []
    seen: set[str] = set()
    for index, item in enumerate(requests):
        custom_id = _check_custom_id(index, item.custom_id, seen)
        params = item.params
        if params is None:
            raise EmulatorHTTPError(400, f"requests.{index}.params: Field required")
        messages = bytes(params.messages)
        stripped = messages.strip()
        has_messages = stripped.startswith(b"[") and stripped[1:].lstrip() != b"]"
        # The same bytes as encoding [system, messages] again, for compact JSON.
        prompt = b"[" + bytes(params.system).strip() + b"," + stripped + b"]"
        stored.append(_stored_request(custom_id, params.model, params.max_tokens, has_messages, prompt))
        if params.structured():
            _add_structure(stored[-1], params.decoded(), workspace, resolve)
    return stored


def _parse_general(
    body: bytes, workspace: str | None, max_requests: int, resolve: FileResolver | None = None
) -> list[StoredRequest]:
    payload = decode_body(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
        raise EmulatorHTTPError(400, "requests: Field required (a list of requests)")
    raw_requests = payload["requests"]
    _check_count(len(raw_requests), max_requests)
    seen: set[str] = set()
    return [_validate_request(index, item, seen, workspace, resolve) for index, item in enumerate(raw_requests)]


def _check_count(count: int, max_requests: int) -> None:
    if not count:
        raise EmulatorHTTPError(400, "requests: List should have at least 1 item")
    if count > max_requests:
        raise EmulatorHTTPError(400, f"requests: a batch may hold at most {max_requests} requests (got {count}).")


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


def _validate_request(
    index: int, item: Any, seen: set[str], workspace: str | None, resolve: FileResolver | None
) -> StoredRequest:
    if not isinstance(item, dict):
        raise EmulatorHTTPError(400, f"requests.{index}: Input should be an object")
    custom_id = _check_custom_id(index, item.get("custom_id"), seen)
    params = item.get("params")
    if not isinstance(params, dict):
        raise EmulatorHTTPError(400, f"requests.{index}.params: Field required")
    messages = params.get("messages")
    has_messages = isinstance(messages, list) and bool(messages)
    stored = _stored_request(
        custom_id, params.get("model"), params.get("max_tokens"), has_messages, prompt_bytes(params)
    )
    _add_structure(stored, params, workspace, resolve)
    return stored


def _stored_request(custom_id: str, model: Any, max_tokens: Any, has_messages: bool, prompt: bytes) -> StoredRequest:
    """One request as a batch keeps it. Invalid params are kept too: the API reports them as
    an errored result, not at create time."""
    invalid = None
    if not isinstance(model, str) or not model:
        invalid = "model: Field required"
    elif not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        invalid = "max_tokens: Input should be an integer greater than or equal to 1"
    elif not has_messages:
        invalid = "messages: List should have at least 1 item"
    return StoredRequest(
        custom_id=custom_id,
        model=model if isinstance(model, str) and model else "unknown",
        max_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 1,
        input_chars=len(prompt),
        prompt_digest=stable_int(prompt),
        invalid_reason=invalid,
    )


def _add_structure(
    stored: StoredRequest, params: dict[str, Any], workspace: str | None, resolve: FileResolver | None = None
) -> None:
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
    _add_documents(stored, params, workspace, resolve)


def _add_documents(
    stored: StoredRequest, params: dict[str, Any], workspace: str | None, resolve: FileResolver | None
) -> None:
    """The request's image and document blocks: checked (a bad one makes the request invalid),
    their facts kept for the answer, their data counted as their tokens, not as characters.
    Citations do not go with an output format, as in the API."""
    try:
        documents, tokens, data_chars = read_blocks(params.get("messages"), workspace, resolve)
    except BlockError as exc:
        stored.invalid_reason = str(exc)
        return
    if not documents:
        return
    if stored.output_schema is not None and any(item.get("citations") for item in documents):
        stored.invalid_reason = "citations: Citations are not supported together with output_config.format"
        return
    stored.documents = documents
    stored.media_tokens = tokens
    stored.input_chars = max(1, stored.input_chars - data_chars)


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


def prompt_bytes(params: dict[str, Any]) -> bytes:
    """What the emulator counts input tokens of: the system prompt and the messages."""
    return _encoder.encode([params.get("system"), params.get("messages")])


def answer_digest(text: str) -> str:
    """The digest an ``answer_digest`` emulator echoes for a request whose last user text is
    ``text``: 16 hex digits of its SHA-256 (a test computes the same from its own rows)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _last_user_text(params: Any) -> str:
    messages = params.get("messages") if isinstance(params, dict) else None
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(
                    block.get("text", "")
                    for block in content
                    if isinstance(block, dict) and block.get("type") == "text"
                )
    return ""


def text_digests(body: bytes) -> list[str]:
    """The :func:`answer_digest` of each request of a create body, in order (a second decode
    of the body, paid only by an emulator that echoes digests)."""
    requests = decode_body(body)["requests"]
    return [answer_digest(_last_user_text(item.get("params"))) for item in requests]


def decode_body(body: bytes) -> Any:
    """A request body as JSON, or the API's 400 for one that is not."""
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise EmulatorHTTPError(400, f"Request body is not valid JSON: {exc}") from None


def count_input_tokens(body: bytes) -> dict[str, Any]:
    """``POST /v1/messages/count_tokens``: the input tokens a request's params would use, counted
    as the emulator's usage counts them (a quarter of the prompt's JSON characters)."""
    params = decode_body(body)
    if not isinstance(params, dict) or not isinstance(params.get("model"), str):
        raise EmulatorHTTPError(400, "model: Field required")
    if not isinstance(params.get("messages"), list) or not params["messages"]:
        raise EmulatorHTTPError(400, "messages: List should have at least 1 item")
    if "max_tokens" in params:
        raise EmulatorHTTPError(400, "max_tokens: Extra inputs are not permitted")
    try:
        _, tokens, data_chars = read_blocks(params["messages"], None, None)
    except BlockError as exc:
        raise EmulatorHTTPError(400, str(exc)) from None
    return {"input_tokens": max(1, math.ceil((len(prompt_bytes(params)) - data_chars) / 4)) + tokens}
