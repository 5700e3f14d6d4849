"""Results JSONL -> Arrow record batches with one schema, in bounded memory.

Lines are decoded with msgspec into small typed structs, a block of ``rows_per_batch`` lines
per decode call (content blocks stay raw bytes and are decoded once more, again a block at a
time, only for their text), then turned column by column into one ``pyarrow.RecordBatch``.
Nothing holds more than one block.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from airflow_provider_claude_batch.batching.errors import ClaudeBatchError
from airflow_provider_claude_batch.batching.pricing import BATCH_DISCOUNT, PER_TOKEN, PriceTable

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
    ]
)
#: Lines decoded per msgspec call: small enough to stay in cache (measured fastest at 2-4k).
DEFAULT_ROWS_PER_BATCH = 4_096


class ClaudeBatchResultsError(ClaudeBatchError):
    """A results file holds a line that is not a batch result."""


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


class _Line(msgspec.Struct, gc=False):
    custom_id: str
    result: _Result


class _Block(msgspec.Struct, gc=False):
    type: str
    text: str | None = None


_line_decoder = msgspec.json.Decoder(_Line)
_lines_decoder = msgspec.json.Decoder(list[_Line])
_contents_decoder = msgspec.json.Decoder(list[list[_Block]])
_NO_USAGE = _Usage()
_TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def _texts(contents: list[bytes]) -> list[str | None]:
    """Joined text blocks of many ``content`` arrays, decoded in one call."""
    blocks_per_row = _contents_decoder.decode(b"[" + b",".join(contents) + b"]")
    texts: list[str | None] = []
    for blocks in blocks_per_row:
        if len(blocks) == 1:
            texts.append(blocks[0].text if blocks[0].type == "text" else None)
        else:
            parts = [block.text for block in blocks if block.type == "text" and block.text is not None]
            texts.append("".join(parts) if parts else None)
    return texts


class ResultParser:
    """Turns result lines of one batch into record batches of :data:`RESULT_SCHEMA`."""

    def __init__(
        self, batch_id: str, round_number: int, prices: PriceTable, *, rows_per_batch: int = DEFAULT_ROWS_PER_BATCH
    ):
        self.batch_id = batch_id
        self.round = round_number
        self.prices = prices
        self.rows_per_batch = rows_per_batch
        self.rows = 0

    def parse(self, lines: Iterable[bytes], *, source: str = "results") -> Iterator[pa.RecordBatch]:
        """Record batches from result lines (each without its newline)."""
        block: list[bytes] = []
        first_line = 1
        for line_number, raw_line in enumerate(lines, 1):
            if not block:
                first_line = line_number
            block.append(raw_line)
            if len(block) >= self.rows_per_batch:
                yield self._decode(b"\n".join(block), first_line, source)
                block = []
        if block:
            yield self._decode(b"\n".join(block), first_line, source)

    def parse_file(
        self, handle: Any, *, source: str = "results", block_bytes: int = 1 << 21
    ) -> Iterator[pa.RecordBatch]:
        """Record batches from a results file, read in blocks cut at line ends; each block is
        decoded in one call without splitting it into lines."""
        pending = b""
        first_line = 1
        while True:
            data = handle.read(block_bytes)
            if not data:
                break
            data = pending + data if pending else data
            cut = data.rfind(b"\n")
            if cut < 0:
                pending = data
                continue
            block, pending = data[:cut], data[cut + 1 :]
            yield self._decode(block, first_line, source)
            first_line += block.count(b"\n") + 1
        if pending.strip():
            yield self._decode(pending, first_line, source)

    def _decode(self, block: bytes, first_line: int, source: str) -> pa.RecordBatch:
        """Decode newline-separated result lines as one JSON array (JSON text never holds a
        raw newline, so newlines are exactly the separators)."""
        try:
            decoded = _lines_decoder.decode(b"[" + block.replace(b"\n", b",") + b"]")
        except msgspec.DecodeError as block_error:
            decoded = []
            for offset, raw_line in enumerate(block.split(b"\n")):  # rare path: blank or bad lines
                if not raw_line.strip():
                    continue
                try:
                    decoded.append(_line_decoder.decode(raw_line))
                except msgspec.DecodeError as exc:
                    raise ClaudeBatchResultsError(
                        f"{source}, line {first_line + offset} of batch {self.batch_id!r} is not a batch result: {exc}"
                    ) from None
            if not decoded:
                raise ClaudeBatchResultsError(f"{source} of batch {self.batch_id!r}: {block_error}") from None
        return self._emit(decoded)

    def _emit(self, decoded: list[_Line]) -> pa.RecordBatch:
        count = len(decoded)
        results = [line.result for line in decoded]
        messages = [result.message for result in results]
        texts: list[str | None] = [None] * count
        contents: list[str | None] = [None] * count
        with_message = [i for i, message in enumerate(messages) if message is not None]
        if with_message:
            raw_contents = [bytes(messages[i].content) for i in with_message]  # type: ignore[union-attr]
            for i, text, raw in zip(with_message, _texts(raw_contents), raw_contents, strict=True):
                texts[i] = text
                contents[i] = raw.decode()
        usages = [(message.usage or _NO_USAGE) if message is not None else None for message in messages]
        models = [message.model if message is not None else None for message in messages]
        envelopes = [result.error for result in results]
        columns: dict[str, list[Any]] = {
            "custom_id": [line.custom_id for line in decoded],
            "batch_id": [self.batch_id] * count,
            "round": [self.round] * count,
            "result_type": [result.type for result in results],
            "text": texts,
            "content": contents,
            "stop_reason": [message.stop_reason if message is not None else None for message in messages],
            "model": models,
            "input_tokens": [u.input_tokens if u is not None else None for u in usages],
            "output_tokens": [u.output_tokens if u is not None else None for u in usages],
            "cache_creation_input_tokens": [
                (u.cache_creation_input_tokens or 0) if u is not None else None for u in usages
            ],
            "cache_read_input_tokens": [(u.cache_read_input_tokens or 0) if u is not None else None for u in usages],
            "error_type": [None if e is None else (e.error.type if e.error is not None else e.type) for e in envelopes],
            "error_message": [
                None if e is None else (e.error.message if e.error is not None else e.message) for e in envelopes
            ],
        }
        arrays = {name: pa.array(values, RESULT_SCHEMA.field(name).type) for name, values in columns.items()}
        arrays["cost_usd"] = self._costs(models, arrays)
        self.rows += count
        return pa.RecordBatch.from_arrays([arrays[name] for name in RESULT_SCHEMA.names], schema=RESULT_SCHEMA)

    def _costs(self, models: list[str | None], arrays: dict[str, pa.Array]) -> pa.Array:
        """cost_usd per row: tokens times the row's model prices, at the batch discount (null
        without usage or for a model missing from the price table)."""
        rates = np.full((len(models), 4), np.nan)
        for model in {m for m in models if m is not None}:
            price = self.prices.price(model)
            if price is not None:
                mask = np.fromiter((m == model for m in models), dtype=bool, count=len(models))
                rates[mask] = (price.input, price.output, price.cache_write, price.cache_read)
        tokens = np.stack(
            [arrays[name].to_numpy(zero_copy_only=False).astype(np.float64) for name in _TOKEN_COLUMNS], axis=1
        )
        cost = (tokens * rates).sum(axis=1) * (BATCH_DISCOUNT * PER_TOKEN)
        return pa.array(cost, pa.float64(), from_pandas=True)  # NaN -> null


def iter_file_lines(handle: Any, block_size: int = 1 << 22) -> Iterator[bytes]:
    """Lines of a binary file handle, read in large blocks (faster than line iteration on
    remote file systems)."""
    pending = b""
    while True:
        block = handle.read(block_size)
        if not block:
            break
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        yield from lines
    if pending:
        yield pending
