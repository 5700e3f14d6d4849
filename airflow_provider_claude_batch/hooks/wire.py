"""What goes over the wire besides the SDK's own models: create bodies built from bytes,
``list`` paging arguments, ``retry-after`` headers and where a resumed results download
starts. No connection, no calls."""

from __future__ import annotations

import email.utils
from collections.abc import Iterable, Mapping
from contextlib import suppress
from datetime import datetime, timezone
from typing import Any

import msgspec

_json = msgspec.json.Encoder()


def page_params(limit: int, after_id: str | None) -> dict[str, Any]:
    """Arguments of one ``list`` call: the page size, and where the previous page ended."""
    return {"limit": limit, "after_id": after_id} if after_id else {"limit": limit}


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """How long the server asked to wait (``retry-after-ms``, or ``retry-after`` in seconds or
    as an HTTP date), ``None`` when it did not say."""
    if not headers:
        return None
    with suppress(TypeError, ValueError):
        milliseconds = headers.get("retry-after-ms")
        if milliseconds is not None:
            return max(0.0, float(milliseconds) / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    with suppress(ValueError):
        return max(0.0, float(value))
    with suppress(TypeError, ValueError):
        moment = email.utils.parsedate_to_datetime(value)
        return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())
    return None


def jsonl_to_create_body(jsonl: bytes) -> bytes:
    """``{"requests":[...]}`` from a JSONL chunk of request objects, without re-serializing.

    JSON text never holds a raw newline, so the line breaks are exactly the separators.
    """
    return b'{"requests":[' + jsonl.rstrip(b"\n").replace(b"\n", b",") + b"]}"


def requests_to_create_body(requests: Iterable[dict[str, Any]]) -> tuple[bytes, int]:
    lines = [_json.encode(request) for request in requests]
    return b'{"requests":[' + b",".join(lines) + b"]}", len(lines)


def range_start(status_code: int, headers: Mapping[str, str], asked: int) -> int | None:
    """Where the body of a results response starts in the whole file, after asking for it
    from byte ``asked``: ``asked`` for a 206 whose ``Content-Range`` says so, 0 for any other
    answer (the server sent everything again), ``None`` for a 206 of another range."""
    if not asked or status_code != 206:
        return 0
    unit, _, rest = headers.get("content-range", "").partition(" ")
    start = rest.split("-", 1)[0]
    return asked if unit == "bytes" and start.isdigit() and int(start) == asked else None


def whole_size(status_code: int, headers: Mapping[str, str]) -> int | None:
    """The whole results file's size, from a 200's ``Content-Length`` (``None`` otherwise)."""
    length = headers.get("content-length", "")
    return int(length) if status_code == 200 and length.isdigit() else None
