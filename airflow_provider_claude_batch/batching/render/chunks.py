"""Split request lines into chunks that each fit one batch, by count AND serialized bytes.

Each chunk is written as JSONL (``chunk-00000.jsonl``) as the rows stream by, together with
a Parquet file of the input columns to carry into the results (``inputs-00000.parquet``): the
chosen input columns in one Arrow type per logical type (:func:`standard_type`: a DataFrame's
``large_string`` is kept as the ``string`` a CSV gives), each row's place in the input
(``input_row``, 0-based) and its ``custom_id``, in request order.
Memory holds one record batch at a time plus 8 bytes per custom_id (for the run-wide
uniqueness check), never a whole chunk or the whole input.
"""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.batching.api.jsonl import iter_file_lines
from airflow_provider_claude_batch.batching.render.content_key import KEY_BYTES, content_keys, keys_of_column
from airflow_provider_claude_batch.batching.render.rendering import arrow_is
from airflow_provider_claude_batch.batching.state.run_dir import chunk_file_name, inputs_file_name
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

if TYPE_CHECKING:  # landing imports this module; it needs no renderer (nor the SDK's types behind it)
    from airflow_provider_claude_batch.batching.render.rendering import RequestRenderer

CUSTOM_ID_COLUMN = "custom_id"
#: Saved beside the input columns: each row's place in the input (0-based, the ``N`` of the
#: default custom_id ``row-N``), so that ``keep_columns`` can land it. An input column of that
#: name is saved instead.
INPUT_ROW_COLUMN = "input_row"


def standard_type(kind: pa.DataType) -> pa.DataType:
    """One Arrow type per logical type: ``large_string`` and ``string_view`` are ``string``,
    ``large_binary`` and ``binary_view`` are ``binary``, large and view lists are lists,
    dictionary-encoded values are their values' type, the same inside lists, structs and maps.
    Kept input columns are written in these types, whatever the source (a CSV file, a pandas
    DataFrame, Parquet written by another tool) gave."""
    if pa.types.is_dictionary(kind):
        return standard_type(kind.value_type)
    if pa.types.is_large_string(kind) or arrow_is(kind, "is_string_view"):
        return pa.string()
    if pa.types.is_large_binary(kind) or arrow_is(kind, "is_binary_view"):
        return pa.binary()
    if (
        pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or arrow_is(kind, "is_list_view")
        or arrow_is(kind, "is_large_list_view")
    ):
        return pa.list_(_standard_field(kind.value_field))
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(_standard_field(kind.value_field), kind.list_size)
    if pa.types.is_map(kind):
        return pa.map_(_standard_field(kind.key_field), _standard_field(kind.item_field), kind.keys_sorted)
    if pa.types.is_struct(kind):
        return pa.struct([_standard_field(kind.field(i)) for i in range(kind.num_fields)])
    return kind


def _standard_field(value: pa.Field) -> pa.Field:
    return value.with_type(standard_type(value.type))


def standard_columns(table: pa.Table) -> pa.Table:
    """``table`` with every column in its :func:`standard_type` (no copy for a column already
    in it); a cast that cannot be made (a text column past 2 GB in one record batch) is an
    error naming the column."""
    for index, column_field in enumerate(table.schema):
        wanted = _standard_field(column_field)
        if wanted.type == column_field.type:
            continue
        try:
            column = table.column(index).cast(wanted.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ClaudeBatchInputError(
                f"input column {column_field.name!r} ({column_field.type}) cannot be kept as {wanted.type}: {exc}"
            ) from None
        table = table.set_column(index, wanted, column)
    return table


_CUSTOM_ID_PREFIX = b'{"custom_id":"'


def request_id(line: bytes) -> str:
    """The custom_id of a request line (the renderer writes it first; any other line is parsed)."""
    if line.startswith(_CUSTOM_ID_PREFIX):
        return line[len(_CUSTOM_ID_PREFIX) : line.index(b'"', len(_CUSTOM_ID_PREFIX))].decode()
    return str(msgspec.json.decode(line)["custom_id"])


#: Powers of the FNV-1 64-bit prime, one per byte position of a custom_id (at most 64 bytes).
_POWERS = np.array([pow(1099511628211, k, 2**64) for k in range(limits.CUSTOM_ID_MAX_LENGTH + 1)], dtype=np.uint64)


def id_hashes(ids: pa.Array) -> np.ndarray:
    """A 64-bit hash per custom_id (valid ids: 1-64 ASCII bytes) for the run-wide uniqueness
    check, over the whole column at once: the sum of each byte times a prime's power for its
    position, mod 2**64. A collision only sends the check to the ids on disk."""
    ids = ids.cast(pa.binary())
    count = len(ids)
    if not count:
        return np.zeros(0, dtype=np.int64)
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32)[ids.offset : ids.offset + count + 1].astype(np.int64)
    data = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].astype(np.uint64)
    starts = offsets[:-1] - offsets[0]
    lengths = np.diff(offsets)
    positions = np.arange(len(data)) - np.repeat(starts, lengths)
    sums = np.add.reduceat(data * _POWERS[positions], starts)
    return (sums ^ (lengths.astype(np.uint64) << np.uint64(56))).view(np.int64)


def id_hash(custom_id: str) -> int:
    """:func:`id_hashes` of one custom_id (the rare path that looks for duplicates on disk)."""
    return int(id_hashes(pa.array([custom_id], pa.string()))[0])


@dataclass
class ChunkInfo:
    """What the manifest records about one written chunk."""

    index: int
    requests_file: str
    inputs_file: str | None
    request_count: int
    body_bytes: int  # size of the create body {"requests":[...]} built from this chunk
    sha256: str
    first_row: int


@dataclass
class ChunkLimits:
    max_requests: int = limits.MAX_REQUESTS_PER_BATCH
    max_bytes: int = limits.MAX_BYTES_PER_BATCH

    def __post_init__(self) -> None:
        if not 1 <= self.max_requests <= limits.MAX_REQUESTS_PER_BATCH:
            raise ClaudeBatchInputError(
                f"max_requests_per_batch must be between 1 and {limits.MAX_REQUESTS_PER_BATCH}, got {self.max_requests}"
            )
        if not limits.CREATE_ENVELOPE_BYTES < self.max_bytes <= limits.MAX_BYTES_PER_BATCH:
            raise ClaudeBatchInputError(
                f"max_bytes_per_batch must be at most {limits.MAX_BYTES_PER_BATCH}, got {self.max_bytes}"
            )


@dataclass
class ChunkBody:
    """Requests as one create call sends them: how many, the size of the body
    ``{"requests":[line,line,...]}`` they make, and the sha256 of their JSONL file.

    The one place a create body's size is counted: chunking checks ``max_bytes_per_batch``
    with it, and a resubmission round records its batches' sizes with it.
    """

    count: int = 0
    body_bytes: int = limits.CREATE_ENVELOPE_BYTES
    digest: Any = field(default_factory=hashlib.sha256)

    def added_bytes(self, line: bytes) -> int:
        """What ``line`` adds to the body: its bytes, plus the comma that joins it to the others."""
        return len(line) + (1 if self.count else 0)

    def add(self, line: bytes) -> bytes:
        """Count ``line`` in; returns it with its newline, as the JSONL file holds it."""
        self._count(line)
        jsonl = line + b"\n"
        self.digest.update(jsonl)
        return jsonl

    def write(self, line: bytes, out: IO[bytes]) -> None:
        """:meth:`add`, writing the line and its newline to ``out`` without joining them (a
        line with documents is megabytes: no copy of it)."""
        self._count(line)
        self.digest.update(line)
        self.digest.update(b"\n")
        out.write(line)
        out.write(b"\n")

    def _count(self, line: bytes) -> None:
        self.body_bytes += self.added_bytes(line)
        self.count += 1

    def count_in(self, lengths: np.ndarray) -> None:
        """Count in lines of these lengths (without newlines) at once: the whole-column path,
        which hashes their JSONL itself (:meth:`_OpenChunk.write`)."""
        if len(lengths):
            self.body_bytes += int(lengths.sum()) + len(lengths) - (0 if self.count else 1)
            self.count += len(lengths)

    @property
    def sha256(self) -> str:
        return str(self.digest.hexdigest())


@dataclass
class _OpenChunk:
    index: int
    first_row: int
    handle: IO[bytes]
    body: ChunkBody = field(default_factory=ChunkBody)
    inputs_writer: pq.ParquetWriter | None = None
    inputs_sink: IO[bytes] | None = None

    def write(self, jsonl: Any) -> None:
        """Write and hash JSONL lines already counted in with :meth:`ChunkBody.count_in`."""
        self.handle.write(jsonl)
        self.body.digest.update(jsonl)

    def close(self) -> None:
        self.handle.close()
        if self.inputs_writer is not None:
            self.inputs_writer.close()
        if self.inputs_sink is not None:
            self.inputs_sink.close()


class ChunkWriter:
    """Writes rendered requests into ``directory`` as consecutive chunks.

    ``directory`` is any path object with ``/`` and ``open`` (``pathlib.Path``,
    ``ObjectStoragePath``). ``input_columns``: columns of the input saved beside each chunk
    (``None``: none), keyed by custom_id, so results can be joined back later.
    """

    def __init__(
        self,
        directory: Any,
        chunk_limits: ChunkLimits,
        *,
        input_columns: list[str] | None = None,
        keys: bool = False,
    ) -> None:
        self.directory = directory
        self.limits = chunk_limits
        self.input_columns = input_columns
        #: With ``keys``: each row's content key (``content_key``), in row order, for reuse.
        self._keys: list[np.ndarray] | None = [] if keys else None
        self.chunks: list[ChunkInfo] = []
        self._open: _OpenChunk | None = None
        self._id_hashes: list[np.ndarray] = []
        self.rows = 0
        # Whole-column segments are written and hashed on one thread (both release the GIL),
        # in order, while the next record batch renders; at most two wait.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-writer")
        self._pending: deque[Future[None]] = deque()

    def _wait(self, most: int = 0) -> None:
        while len(self._pending) > most:
            self._pending.popleft().result()

    def _start(self, first_row: int) -> _OpenChunk:
        index = len(self.chunks)
        handle = (self.directory / chunk_file_name(index)).open("wb")
        self._open = _OpenChunk(index=index, first_row=first_row, handle=handle)
        return self._open

    def _finish(self) -> None:
        self._wait()
        chunk = self._open
        if chunk is None:
            return
        chunk.close()
        self.chunks.append(
            ChunkInfo(
                index=chunk.index,
                requests_file=chunk_file_name(chunk.index),
                inputs_file=inputs_file_name(chunk.index) if chunk.inputs_writer is not None else None,
                request_count=chunk.body.count,
                body_bytes=chunk.body.body_bytes,
                sha256=chunk.body.sha256,
                first_row=chunk.first_row,
            )
        )
        self._open = None

    def write_batch(self, renderer: RequestRenderer, batch: pa.RecordBatch) -> None:
        """Render and write one record batch of input rows (splitting across chunks as needed)."""
        first_row = self.rows
        columns = renderer.render_columns(batch, first_row=first_row)
        if columns is not None:
            self._write_lines(batch, *columns)
            return
        self._wait()  # the row path writes in place: earlier segments first
        rendered = list(renderer.render_batch(batch, first_row=first_row))  # one record batch at most
        ids = [request.custom_id for request in rendered]
        inputs = self._inputs_table(batch, ids)
        max_requests, max_bytes = self.limits.max_requests, self.limits.max_bytes
        chunk = self._open
        segment_start = 0  # where the open chunk's rows begin within this record batch
        for offset, request in enumerate(rendered):
            if ChunkBody().body_bytes + len(request.line) > max_bytes:
                raise ClaudeBatchInputError(
                    f"row {first_row + offset} (custom_id {request.custom_id!r}) serializes to {len(request.line)} "
                    f"bytes, more than max_bytes_per_batch ({max_bytes}) allows for one request"
                )
            if (
                chunk is None
                or chunk.body.count >= max_requests
                or chunk.body.body_bytes + chunk.body.added_bytes(request.line) > max_bytes
            ):
                if chunk is not None:
                    self._write_inputs(chunk, inputs, segment_start, offset)
                    self._finish()
                chunk = self._start(first_row + offset)
                segment_start = offset
            chunk.body.write(request.line, chunk.handle)
        if chunk is not None:
            self._write_inputs(chunk, inputs, segment_start, len(rendered))
        self.rows += batch.num_rows
        self._id_hashes.append(id_hashes(pa.array(ids, pa.string())))
        if self._keys is not None:
            self._keys.append(content_keys(request.line for request in rendered))

    def _write_lines(self, batch: pa.RecordBatch, ids: pa.Array, lines: pa.Array) -> None:
        """The whole-column twin of the row loop above: the same chunk boundaries and bytes,
        found with numpy over the line lengths and written as one slice of the lines' buffer
        per chunk segment."""
        self._write_rendered(ids, lines, self._inputs_table(batch, ids))

    def write_rendered(self, ids: pa.Array, lines: pa.Array, inputs: pa.Table | None) -> None:
        """Write request lines rendered before (newline-terminated, with their custom_ids and,
        when input columns are saved, those columns and ``custom_id``), e.g. what is left of a
        staging after reuse took some rows out."""
        if self.input_columns is not None and inputs is None:
            raise ValueError("this writer saves input columns: pass them")
        self._write_rendered(ids, lines, inputs)

    def _write_rendered(self, ids: pa.Array, lines: pa.Array, inputs: pa.Table | None) -> None:
        first_row, count = self.rows, len(lines)
        max_requests, max_bytes = self.limits.max_requests, self.limits.max_bytes
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + count + 1]
        data = memoryview(lines.buffers()[2])
        lengths = np.diff(offsets).astype(np.int64) - 1  # without the newline
        too_big = np.flatnonzero(ChunkBody().body_bytes + lengths > max_bytes)
        if too_big.size:
            offset = int(too_big[0])
            raise ClaudeBatchInputError(
                f"row {first_row + offset} (custom_id {ids[offset].as_py()!r}) serializes to {int(lengths[offset])} "
                f"bytes, more than max_bytes_per_batch ({max_bytes}) allows for one request"
            )
        chunk = self._open
        start = segment_start = 0
        while start < count:
            if (
                chunk is None
                or chunk.body.count >= max_requests
                or chunk.body.body_bytes + lengths[start] + 1 > max_bytes
            ):
                if chunk is not None:
                    self._write_inputs(chunk, inputs, segment_start, start)
                    self._finish()
                chunk = self._start(first_row + start)
                segment_start = start
            room = max_requests - chunk.body.count
            first = 1 if chunk.body.count == 0 else 0  # a chunk's first request always fits, comma-less
            body = chunk.body.body_bytes + (int(lengths[start]) if first else 0)
            following = np.cumsum(lengths[start + first : start + room] + 1) + body
            taken = first + int(np.searchsorted(following, max_bytes, side="right"))
            end = start + taken
            segment = data[offsets[start] : offsets[end]]
            self._wait(most=1)
            self._pending.append(self._io.submit(chunk.write, segment))
            chunk.body.count_in(lengths[start:end])
            start = end
        if chunk is not None:
            self._write_inputs(chunk, inputs, segment_start, count)
        self.rows += count
        self._id_hashes.append(id_hashes(ids))
        if self._keys is not None:
            self._keys.append(keys_of_column(lines))

    def keys(self) -> np.ndarray:
        """Every row's content key so far, in row order (a writer made with ``keys=True``)."""
        if self._keys is None:
            raise ValueError("this writer was made without keys=True")
        return np.concatenate(self._keys) if self._keys else np.zeros((0, KEY_BYTES), dtype=np.uint8)

    def _inputs_table(self, batch: pa.RecordBatch, ids: list[str] | pa.Array) -> pa.Table | None:
        """The input columns saved for one record batch of input rows (see the module docstring)."""
        if self.input_columns is None:
            return None
        names = [c for c in self.input_columns if c != CUSTOM_ID_COLUMN]
        id_array = ids.cast(pa.string()) if isinstance(ids, pa.Array) else pa.array(ids, pa.string())
        table = standard_columns(pa.Table.from_batches([batch]).select(names))
        if INPUT_ROW_COLUMN not in names:
            rows = np.arange(self.rows, self.rows + batch.num_rows, dtype=np.int64)
            table = table.append_column(pa.field(INPUT_ROW_COLUMN, pa.int64(), nullable=False), pa.array(rows))
        return table.append_column(CUSTOM_ID_COLUMN, id_array)

    def _write_inputs(self, chunk: _OpenChunk, inputs: pa.Table | None, start: int, end: int) -> None:
        if inputs is None or end <= start:
            return
        part = inputs.slice(start, end - start)
        if chunk.inputs_writer is None:
            chunk.inputs_sink = (self.directory / inputs_file_name(chunk.index)).open("wb")
            chunk.inputs_writer = pq.ParquetWriter(chunk.inputs_sink, part.schema)
        chunk.inputs_writer.write_table(part)

    def close(self) -> list[ChunkInfo]:
        """Finish the last chunk and check custom_ids are unique across all chunks."""
        self._finish()
        self._io.shutdown()
        self._check_unique_ids()
        return self.chunks

    def abort(self) -> None:
        for future in self._pending:
            future.cancel()
        self._io.shutdown(wait=True)
        self._pending.clear()
        if self._open is not None:
            self._open.close()
            self._open = None

    def _check_unique_ids(self) -> None:
        if not self._id_hashes:
            return
        hashes = np.concatenate(self._id_hashes)
        self._id_hashes = [hashes]
        ordered = np.sort(hashes, kind="stable")
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if repeated.size == 0:
            return
        suspects = set(repeated[:100].tolist())
        rows: dict[str, list[int]] = {}
        for chunk in self.chunks:  # rare path: find the offending ids and rows on disk
            with (self.directory / chunk.requests_file).open("rb") as handle:
                for offset, line in enumerate(iter_file_lines(handle)):
                    custom_id = request_id(line)
                    if id_hash(custom_id) in suspects:
                        rows.setdefault(custom_id, []).append(chunk.first_row + offset)
        duplicates = {cid: where for cid, where in rows.items() if len(where) > 1}
        if duplicates:
            shown = "; ".join(f"{cid!r} at rows {where[:5]}" for cid, where in list(duplicates.items())[:5])
            raise ClaudeBatchInputError(
                f"custom_id must be unique across the whole run: {len(duplicates)} duplicated, e.g. {shown}"
            )
