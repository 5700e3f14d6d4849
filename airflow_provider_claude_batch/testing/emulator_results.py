"""The emulator's results: one JSONL line per request of an ended batch, and the file of them.

Invariants:

* Deterministic. A line depends only on the batch id, the stored request, its outcome and the
  answer settings: the reply text on a hash of the prompt, spoiled structured answers on a hash
  of the batch and custom_id (so a resubmission draws again), ``request_id`` of an errored line
  on the same hash. Downloading twice gives the same bytes.
* Every text says it comes from the emulator (:data:`EMULATOR_TAG`), except a structured answer,
  which is JSON for its schema (or spoiled on purpose: not valid, refused, truncated).
* Usage is counted as everywhere in the emulator (a quarter of the characters); cached prefix
  tokens are reported apart from ``input_tokens``, web searches in ``server_tool_use``, and
  ``output_tokens`` never exceed ``max_tokens`` (the text is cut, ``stop_reason`` "max_tokens").
* The file is not in request order (:func:`results_order` interleaves the two halves), as the
  API promises no order: consumers that assume one are caught by the tests.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from airflow_provider_claude_batch.testing.emulator_documents import citation_of
from airflow_provider_claude_batch.testing.emulator_requests import StoredRequest, stable_int
from airflow_provider_claude_batch.testing.structured_answers import REFUSAL_DETAILS, answer

EMULATOR_TAG = "[claude-batch emulator]"

#: Lines encoded and written together.
_LINES_PER_WRITE = 4096

_encoder = msgspec.json.Encoder()

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


class AnswerSettings(Protocol):
    """The settings answers depend on (an :class:`EmulatorConfig` has them)."""

    @property
    def reply_chars(self) -> tuple[int, int] | None: ...

    @property
    def invalid_output_fraction(self) -> float: ...

    @property
    def refusal_fraction(self) -> float: ...

    @property
    def truncated_fraction(self) -> float: ...


def results_order(count: int) -> list[int]:
    """The order of a batch's requests in its results file: the second half interleaved with
    the first (``[h, 0, h+1, 1, ...]``), never request order for two requests or more."""
    half = (count + 1) // 2
    return [i for pair in itertools.zip_longest(range(half, count), range(half)) for i in pair if i is not None]


def write_results(
    path: str,
    batch_id: str,
    pairs: list[tuple[StoredRequest, str]],
    settings: AnswerSettings,
    on_line: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Write the results JSONL of a batch whose requests ended with these outcomes; ``on_line``
    sees every line written (the emulator bills them)."""
    order = results_order(len(pairs))
    with open(path, "wb") as out:
        for start in range(0, len(order), _LINES_PER_WRITE):
            lines = [result_line(batch_id, *pairs[i], settings) for i in order[start : start + _LINES_PER_WRITE]]
            if on_line is not None:
                for line in lines:
                    on_line(line)
            out.write(b"".join(_encoder.encode(line) + b"\n" for line in lines))


def result_line(batch_id: str, request: StoredRequest, outcome: str, settings: AnswerSettings) -> dict[str, Any]:
    """One line of the results: ``outcome`` is ``succeeded``, ``errored:<type>``, ``canceled`` or
    ``expired``."""
    kind, _, error_type = outcome.partition(":")
    if kind == "succeeded":
        message = _message(batch_id, request, settings)
        return {"custom_id": request.custom_id, "result": {"type": "succeeded", "message": message}}
    if kind == "errored":
        error = _error(batch_id, request, error_type or "api_error")
        return {"custom_id": request.custom_id, "result": {"type": "errored", "error": error}}
    return {"custom_id": request.custom_id, "result": {"type": kind}}


def spoiled(batch_id: str, request: StoredRequest, settings: AnswerSettings) -> str | None:
    """How a structured answer is spoiled on purpose: ``invalid``, ``refused``, ``truncated``
    (``None``: it is valid, and so is every answer without a schema)."""
    if request.output_schema is None:
        return None
    draw = (stable_int("output", batch_id, request.custom_id) % 1_000_000) / 1_000_000
    for spoil, fraction in (
        ("invalid", settings.invalid_output_fraction),
        ("refused", settings.refusal_fraction),
        ("truncated", settings.truncated_fraction),
    ):
        if draw < fraction:
            return spoil
        draw -= fraction
    return None


def reply_text(request: StoredRequest, reply_chars: tuple[int, int] | None) -> str:
    """The text answer of a request without a schema: the tag and three words, or a length drawn
    from ``reply_chars`` by the prompt's hash."""
    echo = f" #{request.text_digest}" if request.text_digest else ""
    if reply_chars is None:
        words = [_FILLER_WORDS[(request.prompt_digest >> (5 * k)) % len(_FILLER_WORDS)] for k in range(3)]
        return f"{EMULATOR_TAG} {' '.join(words)}{echo}"
    low, high = reply_chars
    target = low + request.prompt_digest % max(1, high - low + 1)
    text = EMULATOR_TAG
    k = 0
    while len(text) < target:
        text += " " + _FILLER_WORDS[(request.prompt_digest + k * 7919) % len(_FILLER_WORDS)]
        k += 1
    return text[:target] + echo


def _message(batch_id: str, request: StoredRequest, settings: AnswerSettings) -> dict[str, Any]:
    """The ``message`` of a succeeded line."""
    spoil = spoiled(batch_id, request, settings)
    stop_details = REFUSAL_DETAILS if spoil == "refused" else None
    text, stop_reason, output_tokens = _answer(request, spoil, settings)
    return {
        "id": f"msg_emu{request.prompt_digest:016x}",
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": _content(request, text),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        **({"stop_details": stop_details} if stop_details else {}),
        "usage": _usage(request, output_tokens),
    }


def documents_text(request: StoredRequest) -> str:
    """The answer to a request with documents or images: the tag, then the facts of each one
    received, as JSON (so a test reads back which document a row's request held)."""
    facts = [
        {k: v for k, v in item.items() if k not in ("first_line", "citations")} for item in request.documents or ()
    ]
    return f"{EMULATOR_TAG} documents: {_encoder.encode(facts).decode()}"


def _content(request: StoredRequest, text: str) -> list[dict[str, Any]]:
    """The answer's blocks: its text, then one cited sentence per document with citations."""
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text, "citations": None}]
    for index, document in enumerate(request.documents or ()):
        if document.get("citations"):
            cited = citation_of(index, document)
            blocks.append({"type": "text", "text": f" It reads: {cited['cited_text']}", "citations": [cited]})
    return blocks


def _answer(request: StoredRequest, spoil: str | None, settings: AnswerSettings) -> tuple[str, str, int]:
    """The answer's text, ``stop_reason`` and ``output_tokens``, cut at ``max_tokens``."""
    if request.output_schema is None and request.documents:
        text = documents_text(request)
    elif request.output_schema is None:
        text = reply_text(request, settings.reply_chars)
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
    return text, stop_reason, output_tokens


def _usage(request: StoredRequest, output_tokens: int) -> dict[str, Any]:
    cache = request.cache_use
    return {
        # Cached prefix tokens are reported apart from input_tokens, as the API does.
        "input_tokens": max(1, math.ceil(request.input_chars / 4) + request.media_tokens - cache.written - cache.read),
        "output_tokens": output_tokens,
        **cache.usage(),
        **(
            {"server_tool_use": {"web_search_requests": request.web_searches, "web_fetch_requests": 0}}
            if request.web_searches
            else {}
        ),
        "service_tier": "batch",
    }


def _error(batch_id: str, request: StoredRequest, error_type: str) -> dict[str, Any]:
    """The ``error`` of an errored line: invalid params name themselves, other errors say they
    were injected."""
    message = (
        request.invalid_reason
        if error_type == "invalid_request_error" and request.invalid_reason
        else f"{EMULATOR_TAG} injected {error_type}"
    )
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": f"req_emu{stable_int(batch_id, request.custom_id):016x}",
    }
