"""Results JSONL -> Arrow record batches with one schema, in bounded memory.

Lines are decoded with msgspec into small typed structs (content blocks stay raw bytes and
are only re-read for their text), accumulated column-wise for ``rows_per_batch`` lines and
emitted as one ``pyarrow.RecordBatch``. Nothing holds more than one record batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
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
DEFAULT_ROWS_PER_BATCH = 65_536


class ClaudeBatchResultsError(ClaudeBatchError):
    """A results file holds a line that is not a batch result."""


class _Usage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _Message(msgspec.Struct):
    model: str | None = None
    content: msgspec.Raw = msgspec.Raw(b"[]")
    stop_reason: str | None = None
    usage: _Usage | None = None


class _ErrorDetail(msgspec.Struct):
    type: str | None = None
    message: str | None = None


class _ErrorEnvelope(msgspec.Struct):
    type: str | None = None
    error: _ErrorDetail | None = None
    message: str | None = None


class _Result(msgspec.Struct):
    type: str
    message: _Message | None = None
    error: _ErrorEnvelope | None = None


class _Line(msgspec.Struct):
    custom_id: str
    result: _Result


class _Block(msgspec.Struct):
    type: str
    text: str | None = None


_line_decoder = msgspec.json.Decoder(_Line)
_blocks_decoder = msgspec.json.Decoder(list[_Block])


def _text_of(content: bytes) -> str | None:
    blocks = _blocks_decoder.decode(content)
    texts = [block.text for block in blocks if block.type == "text" and block.text is not None]
    return "".join(texts) if texts else None


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
        columns: dict[str, list[Any]] = {name: [] for name in RESULT_SCHEMA.names if name not in ("batch_id", "round")}
        custom_id = columns["custom_id"]
        result_type = columns["result_type"]
        text = columns["text"]
        content = columns["content"]
        stop_reason = columns["stop_reason"]
        model = columns["model"]
        input_tokens = columns["input_tokens"]
        output_tokens = columns["output_tokens"]
        cache_write = columns["cache_creation_input_tokens"]
        cache_read = columns["cache_read_input_tokens"]
        error_type = columns["error_type"]
        error_message = columns["error_message"]
        cost = columns["cost_usd"]
        price_of = self.prices.price
        dollars_per_token = BATCH_DISCOUNT * PER_TOKEN
        line_number = 0
        for raw_line in lines:
            line_number += 1
            if not raw_line or raw_line == b"\n":
                continue
            try:
                line = _line_decoder.decode(raw_line)
            except msgspec.DecodeError as exc:
                raise ClaudeBatchResultsError(
                    f"{source}, line {line_number} of batch {self.batch_id!r} is not a batch result: {exc}"
                ) from None
            result = line.result
            custom_id.append(line.custom_id)
            result_type.append(result.type)
            message = result.message
            if message is not None:
                raw_content = bytes(message.content)
                text.append(_text_of(raw_content))
                content.append(raw_content.decode())
                stop_reason.append(message.stop_reason)
                model.append(message.model)
                usage = message.usage or _Usage()
                cw = usage.cache_creation_input_tokens or 0
                cr = usage.cache_read_input_tokens or 0
                input_tokens.append(usage.input_tokens)
                output_tokens.append(usage.output_tokens)
                cache_write.append(cw)
                cache_read.append(cr)
                price = price_of(message.model)
                cost.append(
                    None
                    if price is None
                    else dollars_per_token
                    * (
                        usage.input_tokens * price.input
                        + usage.output_tokens * price.output
                        + cw * price.cache_write
                        + cr * price.cache_read
                    )
                )
            else:
                text.append(None)
                content.append(None)
                stop_reason.append(None)
                model.append(None)
                input_tokens.append(None)
                output_tokens.append(None)
                cache_write.append(None)
                cache_read.append(None)
                cost.append(None)
            envelope = result.error
            if envelope is not None:
                detail = envelope.error
                error_type.append(detail.type if detail is not None else envelope.type)
                error_message.append(detail.message if detail is not None else envelope.message)
            else:
                error_type.append(None)
                error_message.append(None)
            if len(custom_id) >= self.rows_per_batch:
                yield self._emit(columns)
        if custom_id:
            yield self._emit(columns)

    def _emit(self, columns: dict[str, list[Any]]) -> pa.RecordBatch:
        count = len(columns["custom_id"])
        arrays = []
        for field in RESULT_SCHEMA:
            if field.name == "batch_id":
                arrays.append(pa.array([self.batch_id] * count, pa.string()))
            elif field.name == "round":
                arrays.append(pa.array([self.round] * count, pa.int32()))
            else:
                arrays.append(pa.array(columns[field.name], field.type))
                columns[field.name].clear()
        self.rows += count
        return pa.RecordBatch.from_arrays(arrays, schema=RESULT_SCHEMA)


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
