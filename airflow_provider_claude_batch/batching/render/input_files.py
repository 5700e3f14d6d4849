"""Line-level checks of CSV and JSONL input files, for what Arrow's readers do not report.

* Arrow's CSV reader accepts a quoted value that is never closed: the value silently runs to
  the end of the file, so every row after it becomes part of one prompt. :func:`check_csv_quotes`
  finds the line where such a value opens, reading the file once, line by line (bounded
  memory), before the reader sees it.
* Arrow's JSON reader names a row of its block, not a line of the file.
  :func:`first_invalid_json_line` finds the file line that is not a JSON object, for the error
  message, once the reader has failed.

Quoting follows Arrow's CSV defaults (RFC 4180): a quote opens a quoted value only at the start
of a field, ``""`` inside it is a literal quote, and any other quote closes it.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

_QUOTE = ord('"')


def check_csv_quotes(lines: Iterable[bytes], *, description: str, delimiter: bytes = b",") -> None:
    """Raise :class:`ClaudeBatchInputError` naming the line (1-based) where a quoted value opens
    and is never closed. ``lines`` are the file's lines without their line breaks."""
    field_start = ord(delimiter)
    in_quotes = False
    opened_at = 0
    for number, line in enumerate(lines, start=1):
        position = 0
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
