"""Line-level checks of CSV and JSONL input files, for what Arrow's readers do not report.

* Arrow's CSV reader accepts a quoted value that is never closed: the value silently runs to
  the end of the file, so every row after it becomes part of one prompt. :func:`check_csv_quotes`
  finds the line where such a value opens, reading the file once, line by line (bounded
  memory), before the reader sees it.
* Arrow's JSON reader names a row of its block, not a line of the file.
  :func:`first_invalid_json_line` finds the file line that is not a JSON object, for the error
  message, once the reader has failed.

* A file with no bytes, or only blank lines, holds no rows (and for CSV no header): Arrow's
  readers fail on it ("Empty CSV file", "Empty JSON stream") where a header-only CSV gives no
  rows. :func:`check_csv_quotes` says whether a CSV file holds a line that is not blank (the
  pass it makes anyway), and :func:`is_blank` reads a small JSONL file up to its first byte
  that is not whitespace.

Quoting follows Arrow's CSV defaults (RFC 4180): a quote opens a quoted value only at the start
of a field, ``""`` inside it is a literal quote, and any other quote closes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

_QUOTE = ord('"')


def check_csv_quotes(lines: Iterable[bytes], *, description: str, delimiter: bytes = b",") -> bool:
    """Raise :class:`ClaudeBatchInputError` naming the line (1-based) where a quoted value opens
    and is never closed. ``lines`` are the file's lines without their line breaks.

    Returns whether the file holds a line that is not blank: ``False`` for a file with no
    header and no rows (no bytes, or only blank lines)."""
    field_start = ord(delimiter)
    in_quotes = False
    opened_at = 0
    written = False
    for number, line in enumerate(lines, start=1):
        position = 0
        if not written and line.strip():
            written = True
        if not in_quotes and b'"' not in line:
            continue  # the common case: nothing to track on this line
        while True:
            found = line.find(b'"', position)
            if found < 0:
                break
            if in_quotes:
                if found + 1 < len(line) and line[found + 1] == _QUOTE:
                    position = found + 2  # "" is a quote inside the value
                    continue
                in_quotes = False
            elif found == 0 or line[found - 1] == field_start:
                in_quotes = True
                opened_at = number
            position = found + 1  # a quote inside an unquoted value is a literal
    if in_quotes:
        raise ClaudeBatchInputError(
            f"{description}, line {opened_at}: a quoted value opens there and is never closed (a missing "
            "closing quote?); every later line would have become part of it"
        )
    return written


#: A text file at most this long is read to see whether it is blank (see :func:`is_blank`); a
#: longer one is not whitespace alone in practice, and is not read twice.
BLANK_CHECK_BYTES = 4096


def is_blank(handle: Any, size: int | None) -> bool:
    """Whether a binary file handle of ``size`` bytes (``None``: unknown) holds nothing but
    whitespace: ``True`` for a 0-byte file without reading it; a file longer than
    :data:`BLANK_CHECK_BYTES` is never read and is not blank."""
    if size == 0:
        return True
    if size is not None and size > BLANK_CHECK_BYTES:
        return False
    data = handle.read(BLANK_CHECK_BYTES + 1)
    return len(data) <= BLANK_CHECK_BYTES and not data.strip()


def first_invalid_json_line(lines: Iterable[bytes]) -> tuple[int, str] | None:
    """The first line (1-based) of a JSONL file that is not one JSON object, and why; ``None``
    when every non-blank line is one."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            return number, f"not valid JSON ({exc})"
        if not isinstance(value, dict):
            return number, f"a JSON {type(value).__name__}, not an object"
    return None
