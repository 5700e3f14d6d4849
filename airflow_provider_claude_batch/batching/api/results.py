"""Results JSONL -> Arrow record batches with one schema, in bounded memory.

A block of lines at a time: pyarrow's JSON reader (C++, multi-threaded) reads the fields that
become columns, msgspec cuts out each ``content`` array as raw JSON, and Arrow compute joins
the text blocks and prices the tokens. No Python object is built per field, and nothing
holds more than one block.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from airflow_provider_claude_batch.batching.api.jsonl import line_blocks, read_blocks
from airflow_provider_claude_batch.batching.api.pricing import ModelPrice, PriceTable
from airflow_provider_claude_batch.exceptions import ClaudeBatchResultsError

_STOP_DETAILS = pa.struct([("type", pa.string()), ("category", pa.string()), ("explanation", pa.string())])
#: Usage details beyond the token columns, each an int64 column: (column, path in ``usage``).
USAGE_DETAILS = (
    ("cache_creation_5m_input_tokens", ("cache_creation", "ephemeral_5m_input_tokens")),
    ("cache_creation_1h_input_tokens", ("cache_creation", "ephemeral_1h_input_tokens")),
    ("thinking_tokens", ("output_tokens_details", "thinking_tokens")),
    ("web_search_requests", ("server_tool_use", "web_search_requests")),
    ("web_fetch_requests", ("server_tool_use", "web_fetch_requests")),
)
DETAIL_COLUMNS = tuple(name for name, _ in USAGE_DETAILS)
#: The results schema, once. Input columns joined back by custom_id are appended after it.
RESULT_SCHEMA = pa.schema(
    [
        pa.field("custom_id", pa.string(), nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("round", pa.int32(), nullable=False),
        pa.field("result_type", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("content", pa.string()),
        pa.field("stop_reason", pa.string()),
        pa.field("model", pa.string()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("cache_creation_input_tokens", pa.int64()),
        pa.field("cache_read_input_tokens", pa.int64()),
        pa.field("error_type", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("cost_usd", pa.float64()),
        # Why an answer stopped, when the API says more than stop_reason (a refusal's category).
        pa.field("stop_details", _STOP_DETAILS),
        # The usage breakdown: cache writes by TTL (their sum is cache_creation_input_tokens),
        # reasoning tokens (part of output_tokens), server tool calls, and the tier that served it.
        *[pa.field(name, pa.int64()) for name in DETAIL_COLUMNS],
        pa.field("service_tier", pa.string()),
    ]
)
#: Lines per block when the lines come one by one (``parse``); files are cut by bytes.
DEFAULT_ROWS_PER_BATCH = 4_096
#: Token usage columns of the results schema, in price-table order.
TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class _Usage(msgspec.Struct, gc=False):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _Message(msgspec.Struct, gc=False):
    model: str | None = None
    content: msgspec.Raw = msgspec.Raw(b"[]")
    stop_reason: str | None = None
    usage: _Usage | None = None


class _ErrorDetail(msgspec.Struct, gc=False):
    type: str | None = None
    message: str | None = None


class _ErrorEnvelope(msgspec.Struct, gc=False):
    type: str | None = None
    error: _ErrorDetail | None = None
    message: str | None = None


class _Result(msgspec.Struct, gc=False):
    type: str
    message: _Message | None = None
    error: _ErrorEnvelope | None = None


class ResultLine(msgspec.Struct, gc=False):
    """One result line as the API defines it: the check that names a bad line, and what
    resubmission rounds read to decide which requests to send again."""

    custom_id: str
    result: _Result

    @property
    def error_type(self) -> str | None:
        """The error's type (``overloaded_error``, ...), else the envelope's; the same rule as
        the ``error_type`` column."""
        envelope = self.result.error
        if envelope is None:
            return None
        detail = envelope.error.type if envelope.error is not None else None
        return detail if detail is not None else envelope.type

    @property
    def error_message(self) -> str | None:
        """The error's message, else the envelope's (the ``error_message`` column's rule)."""
        envelope = self.result.error
        if envelope is None:
            return None
        detail = envelope.error.message if envelope.error is not None else None
        return detail if detail is not None else envelope.message


class _ContentOnlyMessage(msgspec.Struct, gc=False):
    content: msgspec.Raw = msgspec.Raw(b"[]")


class _ContentOnlyResult(msgspec.Struct, gc=False):
    message: _ContentOnlyMessage | None = None


class _ContentOnlyLine(msgspec.Struct, gc=False):
    result: _ContentOnlyResult


_line_decoder = msgspec.json.Decoder(ResultLine)
#: One result line (bytes, without its newline) -> :class:`ResultLine`; raises ``msgspec.DecodeError``.
decode_result_line = _line_decoder.decode
_contents_decoder = msgspec.json.Decoder(list[_ContentOnlyLine])

_USAGE = pa.struct(
    [
        *[(name, pa.int64()) for name in TOKEN_COLUMNS],
        (
            "cache_creation",
            pa.struct([(key, pa.int64()) for key in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")]),
        ),
        ("output_tokens_details", pa.struct([("thinking_tokens", pa.int64())])),
        ("server_tool_use", pa.struct([("web_search_requests", pa.int64()), ("web_fetch_requests", pa.int64())])),
        ("service_tier", pa.string()),
    ]
)
_MESSAGE = pa.struct(
    [
        ("model", pa.string()),
        ("content", pa.list_(pa.struct([("type", pa.string()), ("text", pa.string())]))),
        ("stop_reason", pa.string()),
        ("stop_details", _STOP_DETAILS),
        ("usage", _USAGE),
    ]
)
_DETAIL = pa.struct([("type", pa.string()), ("message", pa.string())])
_ERROR = pa.struct([("type", pa.string()), ("error", _DETAIL), ("message", pa.string())])
#: The fields of a result line that land in columns; everything else is skipped by the reader.
_LINE_SCHEMA = pa.schema(
    [
        ("custom_id", pa.string()),
        ("result", pa.struct([("type", pa.string()), ("message", _MESSAGE), ("error", _ERROR)])),
    ]
)
_JSON_PARSE = pa_json.ParseOptions(explicit_schema=_LINE_SCHEMA, unexpected_field_behavior="ignore")
_JSON_READ = pa_json.ReadOptions(use_threads=True, block_size=1 << 20)
_NULL_STRING = pa.scalar(None, pa.string())


class ResultParser:
    """Turns result lines of one batch into record batches of :data:`RESULT_SCHEMA`.

    Each block of lines is read twice, both times in C: pyarrow's JSON reader (multi-threaded)
    turns the fields that become columns into Arrow arrays, and msgspec cuts out each
    ``content`` array as raw JSON for the ``content`` column. A block either reader rejects is
    checked line by line, so the error names the line.
    """

    def __init__(
        self, batch_id: str, round_number: int, prices: PriceTable, *, rows_per_batch: int = DEFAULT_ROWS_PER_BATCH
    ):
        self.batch_id = batch_id
        self.round = round_number
        self.prices = prices
        self.rows_per_batch = rows_per_batch
        self.rows = 0

    def parse(self, lines: Iterable[bytes], *, source: str = "results") -> Iterator[pa.RecordBatch]:
        """Record batches of at most ``rows_per_batch`` rows from result lines (each without
        its newline)."""

        def blocks() -> Iterator[tuple[bytes, int]]:
            block: list[bytes] = []
            first_line = 1
            for line_number, raw_line in enumerate(lines, 1):
                if not block:
                    first_line = line_number
                block.append(raw_line)
                if len(block) >= self.rows_per_batch:
                    yield b"\n".join(block), first_line
                    block = []
            if block:
                yield b"\n".join(block), first_line

        return self._decode_all(blocks(), source)

    def parse_file(
        self, handle: Any, *, source: str = "results", block_bytes: int = 1 << 22
    ) -> Iterator[pa.RecordBatch]:
        """Record batches from a results file, read in blocks of about ``block_bytes`` cut at
        line ends."""

        def blocks() -> Iterator[tuple[bytes, int]]:
            first_line = 1
            for block in line_blocks(read_blocks(handle, block_bytes)):
                yield block, first_line
                first_line += block.count(b"\n") + 1

        return self._decode_all(blocks(), source)

    def _decode_all(self, blocks: Iterator[tuple[bytes, int]], source: str) -> Iterator[pa.RecordBatch]:
        """Decode blocks in order, pyarrow's reading of the next block (which releases the GIL)
        overlapping the msgspec pass and the compute of the current one."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="results-reader") as reader:
            current: tuple[bytes, int, Future[pa.Table]] | None = None
            for block, first_line in blocks:
                ahead = (block, first_line, reader.submit(_read_columns, block))
                if current is not None:
                    yield self._decode(*current, source)
                current = ahead
            if current is not None:
                yield self._decode(*current, source)

    def _decode(self, block: bytes, first_line: int, table: Future[pa.Table], source: str) -> pa.RecordBatch:
        try:
            return self._columns(table.result(), block)
        except (pa.ArrowInvalid, msgspec.DecodeError, _IncompleteLine):
            checked = self._checked(block, first_line, source)
            return self._columns(_read_columns(checked), checked)

    def _checked(self, block: bytes, first_line: int, source: str) -> bytes:
        """The block's non-blank lines, each checked against the result shape (rare path)."""
        good: list[bytes] = []
        for offset, raw_line in enumerate(block.split(b"\n")):
            if not raw_line.strip():
                continue
            try:
                _line_decoder.decode(raw_line)
            except msgspec.DecodeError as exc:
                raise ClaudeBatchResultsError(
                    f"{source}, line {first_line + offset} of batch {self.batch_id!r} is not a batch result: {exc}"
                ) from None
            good.append(raw_line.strip())
        if not good:
            raise ClaudeBatchResultsError(f"{source} of batch {self.batch_id!r}: no result lines in a block")
        return b"\n".join(good)

    def _columns(self, table: pa.Table, block: bytes) -> pa.RecordBatch:
        count = table.num_rows
        result = table.column("result").combine_chunks()
        custom_id = table.column("custom_id").combine_chunks()
        result_type = _field(result, "type")
        if custom_id.null_count or result_type.null_count:
            raise _IncompleteLine
        # Newlines separate the lines exactly: JSON text never holds a raw newline.
        lines = _contents_decoder.decode(b"[" + block.replace(b"\n", b",") + b"]")
        if len(lines) != count:
            raise _IncompleteLine
        raw_contents = [None if line.result.message is None else bytes(line.result.message.content) for line in lines]
        message = _field(result, "message")
        has_message = message.is_valid()
        usage = _field(message, "usage")
        envelope = _field(result, "error")
        detail = _field(envelope, "error")
        columns: dict[str, pa.Array] = {
            "custom_id": custom_id,
            "batch_id": pa.array(np.full(count, self.batch_id, dtype=object), pa.string()),
            "round": pa.array(np.full(count, self.round, dtype=np.int32)),
            "result_type": result_type,
            "text": _joined_text(_field(message, "content")),
            "content": pa.array(raw_contents, pa.binary()).cast(pa.string()),
            "stop_reason": _field(message, "stop_reason"),
            "model": _field(message, "model"),
            "error_type": pc.coalesce(_field(detail, "type"), _field(envelope, "type")),
            "error_message": pc.coalesce(_field(detail, "message"), _field(envelope, "message")),
        }
        for name in TOKEN_COLUMNS:
            # A message without usage counts zero tokens; a row without a message has none.
            tokens = pc.fill_null(_field(usage, name), 0)
            columns[name] = pc.if_else(has_message, tokens, pa.scalar(None, pa.int64()))
        for name, (group, key) in USAGE_DETAILS:
            columns[name] = _field(_field(usage, group), key)
        columns["stop_details"] = _field(message, "stop_details")
        columns["service_tier"] = _field(usage, "service_tier")
        columns["cost_usd"] = self._costs(columns)
        self.rows += count
        return pa.RecordBatch.from_arrays([columns[name] for name in RESULT_SCHEMA.names], schema=RESULT_SCHEMA)

    def _costs(self, columns: dict[str, pa.Array]) -> pa.Array:
        """cost_usd per row: tokens times the row's model prices, at the batch discount, plus
        the web search fee (null without usage or for a model missing from the price table)."""
        models = columns["model"]
        # Null tokens (no message) become NaN, and so does their cost.
        tokens = [columns[name].to_numpy(zero_copy_only=False).astype(np.float64) for name in TOKEN_COLUMNS]
        # 1-hour cache writes are counted in cache_creation_input_tokens too, at the 5-minute rate.
        one_hour = pc.fill_null(columns["cache_creation_1h_input_tokens"], 0).to_numpy(zero_copy_only=False)
        searches = pc.fill_null(columns["web_search_requests"], 0).to_numpy(zero_copy_only=False)
        cost = np.full(len(models), np.nan)
        for price, mask in _priced_models(models, self.prices):
            cost[mask] = price.cost(
                *(kind[mask] for kind in tokens),
                cache_write_1h_tokens=one_hour[mask].astype(np.float64),
                web_search_requests=searches[mask].astype(np.float64),
            )
        return pa.array(cost, pa.float64(), from_pandas=True)  # NaN -> null


def _priced_models(models: pa.Array | pa.ChunkedArray, prices: PriceTable) -> Iterator[tuple[ModelPrice, np.ndarray]]:
    """Each model of ``models`` that has a price, with the mask of its rows (a model without
    a price, or no model, is left out: its rows have no cost)."""
    for model in pc.unique(models).to_pylist():
        price = None if model is None else prices.price(model)
        if price is not None:
            yield price, pc.fill_null(pc.equal(models, model), False).to_numpy(zero_copy_only=False)


def web_search_fee_usd(table: pa.Table, prices: PriceTable) -> float:
    """The web search fees included in ``table``'s ``cost_usd`` (result rows): the searches of
    each priced model times its fee. Rows of a model without a price have no ``cost_usd`` and
    add no fee either, so the fees stay a part of the summed cost."""
    searches = pc.fill_null(table.column("web_search_requests"), 0).to_numpy(zero_copy_only=False)
    if not searches.any():
        return 0.0
    return float(
        sum(
            price.web_search_fee(float(searches[mask].sum()))
            for price, mask in _priced_models(table.column("model"), prices)
        )
    )


def _read_columns(block: bytes) -> pa.Table:
    """The fields of a block's result lines that become columns (pyarrow's JSON reader)."""
    return pa_json.read_json(pa.BufferReader(block), read_options=_JSON_READ, parse_options=_JSON_PARSE)


def _field(struct: pa.Array, name: str) -> pa.Array:
    """A struct's child, null wherever the struct itself is null."""
    return pc.struct_field(struct, name)


class _IncompleteLine(Exception):
    """A line lacks a field every result has: re-check the block line by line."""


def _joined_text(content: pa.ListArray) -> pa.Array:
    """The text blocks of each row's content joined; null where a row has no text block."""
    offsets = content.offsets.to_numpy()
    blocks = content.values.slice(offsets[0], offsets[-1] - offsets[0])
    offsets = offsets - offsets[0]
    is_text = pc.fill_null(pc.equal(_field(blocks, "type"), "text"), False)
    texts = pc.fill_null(pc.if_else(is_text, _field(blocks, "text"), _NULL_STRING), "")
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), texts), "")
    has_text = np.zeros(len(content), dtype=bool)
    rows = np.repeat(np.arange(len(content)), np.diff(offsets))
    has_text[rows[is_text.to_numpy(zero_copy_only=False)]] = True
    return pc.if_else(pc.and_(pa.array(has_text), content.is_valid()), joined, _NULL_STRING)
