"""Request lines for a whole record batch at once, with Arrow's string kernels.

A prompt template that is a plain concatenation of text and columns (``"Classify: {body}"``:
no ``!r``, no format spec, no ``.attr`` or ``[key]``) over string columns renders without a
Python object per row: each column is JSON-escaped whole and the lines are joined element
wise. The result is byte for byte what :class:`~.rendering.RequestRenderer`'s row path
writes (msgspec's escaping: ``\\"``, ``\\\\``, ``\\b \\f \\n \\r \\t``, ``\\u00XX`` for other
control characters, UTF-8 as is). Anything else returns ``None`` and the row path renders
the batch, with its row-numbered errors: a null value, an id that breaks the pattern, a
non-string column, a per-row params column or system template.
"""

from __future__ import annotations

import string

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_claude_batch.batching.api import limits

_SHORT_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
#: The characters msgspec escapes inside a JSON string, and how.
_ESCAPES = {"\\": "\\\\", '"': '\\"'} | {chr(code): _SHORT_ESCAPES.get(code, f"\\u{code:04x}") for code in range(0x20)}
_STRING_TYPES = (pa.string(), pa.large_string())
_ID_PATTERN = limits.CUSTOM_ID_PATTERN.pattern


def concatenation_parts(template: str) -> list[str | int] | None:
    """The template as literal texts and column positions (in the order of first use), or
    None when a field is more than a plain column name."""
    parts: list[str | int] = []
    columns: list[str] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if literal:
            parts.append(literal)
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            return None
        if name not in columns:
            columns.append(name)
        parts.append(columns.index(name))
    return parts


def _value_bytes(values: pa.Array) -> np.ndarray:
    """The UTF-8 bytes of a string column's values, as one numpy view (no copy)."""
    offset_type = np.int64 if pa.types.is_large_string(values.type) else np.int32
    offsets = np.frombuffer(values.buffers()[1], dtype=offset_type)[values.offset : values.offset + len(values) + 1]
    data = values.buffers()[2]
    if data is None or not len(offsets) or offsets[-1] == offsets[0]:
        return np.zeros(0, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]


def json_escaped(values: pa.Array) -> pa.Array:
    """A string column's values escaped as inside a JSON string (without the quotes). One
    numpy pass finds which characters need escaping; only those get a replace kernel, the
    backslash first (the escapes add backslashes of their own)."""
    counts = np.bincount(_value_bytes(values), minlength=256)
    present = [code for code in (0x5C, 0x22, *range(0x20)) if counts[code]]
    out = values
    for code in present:
        out = pc.replace_substring(out, chr(code), _ESCAPES[chr(code)])
    return out


def _literal(text: str) -> str:
    return msgspec.json.encode(text).decode()[1:-1]


class ColumnRenderer:
    """Renders the record batches it can; :meth:`lines` says None for the others."""

    def __init__(self, parts: list[str | int], columns: tuple[str, ...], before: str, between: str, after: str) -> None:
        self._parts = [part if isinstance(part, int) else _literal(part) for part in parts]
        self._columns = columns
        #: JSON text before the custom_id, between it and the prompt, after the prompt.
        self._before, self._between, self._after = before, between, after

    def lines(
        self, batch: pa.RecordBatch, first_row: int, id_column: str | None, id_prefix: str
    ) -> tuple[pa.Array, pa.Array] | None:
        """custom_ids and request lines (each ending in a newline) of every row of ``batch``."""
        values = [batch.column(name) for name in self._columns]
        if any(v.type not in _STRING_TYPES or v.null_count for v in values):
            return None
        values = [v.cast(pa.string()) for v in values]  # large_string (from pandas) too: one kernel
        if id_column is not None:
            ids = batch.column(id_column)
            if ids.type not in _STRING_TYPES or ids.null_count:
                return None
            ids = ids.cast(pa.string())
            if not pc.all(pc.match_substring_regex(ids, _ID_PATTERN)).as_py():
                return None
        else:
            rows = pa.array(np.arange(first_row, first_row + batch.num_rows, dtype=np.int64))
            ids = pc.binary_join_element_wise(f"{id_prefix}-", pc.cast(rows, pa.string()), "")
        escaped = [json_escaped(v) for v in values]
        pieces = [escaped[part] if isinstance(part, int) else part for part in self._parts]
        lines = pc.binary_join_element_wise(self._before, ids, self._between, *pieces, self._after, "")
        return ids, lines.cast(pa.binary())


def column_renderer(
    template: str, head: bytes, middle: bytes, tail: bytes, *, before: bytes = b"", after: bytes = b""
) -> ColumnRenderer | None:
    """A :class:`ColumnRenderer` for ``template``, or None when it is not a plain concatenation.

    ``head + "<id>" + middle + "messages..." + tail`` is the row path's line layout, where the
    messages are ``[`` + ``before`` (few-shot turns, each followed by a comma) + the row's user
    turn + ``after`` (a comma and the prefill's assistant turn) + ``]``: constant bytes around
    the prompt, the same for every row.
    """
    parts = concatenation_parts(template)
    if parts is None or not any(isinstance(part, int) for part in parts):
        return None
    names: list[str] = []
    for _literal_text, name, _spec, _conversion in string.Formatter().parse(template):
        if name is not None and name not in names:
            names.append(name)
    return ColumnRenderer(
        parts,
        tuple(names),
        head.decode() + '"',
        '"' + middle.decode() + '"messages":[' + before.decode() + '{"role":"user","content":"',
        '"}' + after.decode() + "]" + tail.decode() + "\n",
    )
