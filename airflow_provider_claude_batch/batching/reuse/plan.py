"""Which rows of a run are sent: the reuse plan, made at submit before anything is created.

Every row of a staged run has a content key (``content_key``). A row is

* **reused** when the answer store (``answer_store``) holds a succeeded answer for its key
  younger than the max age: the answer is copied into the run folder now, so landing needs
  neither the store nor the batch that paid for it, and a compaction or expiry in between
  changes nothing;
* **deduplicated** when an earlier row of the same run has the same key and is sent: it gets
  that row's final outcome when the run lands;
* **new** otherwise: only these go into the chunks that become batches.

Invariants: every input row is exactly one of the three; the new rows keep their order and
custom_ids; the run's fingerprint stays the one of *all* its rows (a retry that finds more
answers in the store meanwhile re-attaches instead of seeing changed input); the cost ceiling
and the budget count the new rows only.

The rows not sent are written to ``answered.parquet`` in the staging folder: ``row`` (the
input row), ``custom_id``, ``key``, ``answer_source``, ``same_as`` (for a deduplicated row,
the custom_id of the sent row whose answer it gets), the input columns, and for reused rows the stored answer
and its origin. Memory: the run's keys (16 bytes a row) and the reused answers of the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_provider_claude_batch.batching.api.pricing import RequestTally
from airflow_provider_claude_batch.batching.render.chunks import (
    CUSTOM_ID_COLUMN,
    ChunkInfo,
    ChunkLimits,
    ChunkWriter,
    request_id,
)
from airflow_provider_claude_batch.batching.render.content_key import as_arrow, as_numpy, partition_of
from airflow_provider_claude_batch.batching.reuse.answer_store import (
    ANSWER_COLUMNS,
    STORE_SCHEMA,
    AnswerStore,
    Hits,
    PartitionHits,
)
from airflow_provider_claude_batch.batching.state.run_dir import ANSWERED_FILE, RunDir

log = logging.getLogger(__name__)

NEW, REUSED, DEDUPLICATED = "new", "reused", "deduplicated"
ANSWER_SOURCES = (NEW, REUSED, DEDUPLICATED)
#: In ``answered.parquet`` only: a row whose request another run has in a batch not landed
#: yet; it lands as ``reused`` (that batch's answer) or ``new`` (sent after all).
AWAITED = "awaited"
#: How ``answered.parquet`` names the input columns (apart from the answer's own columns).
INPUT_PREFIX = "input."
#: Origin columns of a reused answer, as ``answered.parquet`` names them.
_ORIGIN = {"batch_id": "origin_batch_id", "run_id": "origin_run_id", "dag_id": "origin_dag_id"}


@dataclass
class ReuseCounts:
    """How a run's rows divide: sent, answered from the store, sent once for several rows."""

    rows: int = 0
    new: int = 0
    reused: int = 0
    deduplicated: int = 0
    #: What the reused answers cost the runs that paid for them (None: some had no price).
    reused_cost_usd: float | None = 0.0
    answered_file: str | None = None
    max_age_seconds: float | None = None
    #: Rows whose request another run had in a batch not landed yet, and those batches.
    awaited: int = 0
    awaited_batches: list[str] = field(default_factory=list)
    #: Set by the transfer once it has the awaited rows' answers (or sent them after all).
    awaited_resolved: bool = False
    awaited_answered: int = 0
    awaited_sent: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ReuseCounts | None:
        return None if data is None else cls(**data)

    def describe(self) -> str:
        saved = "" if not self.reused else f"; the reused answers had cost ${self.reused_cost_usd or 0:,.4f}"
        awaited = (
            f", {self.awaited} awaited from {len(self.awaited_batches)} batch(es) of other runs not landed yet"
            if self.awaited
            else ""
        )
        return (
            f"{self.rows} rows: {self.new} new (sent), {self.reused} reused from the answer store, "
            f"{self.deduplicated} deduplicated (same request as a row sent in this run){awaited}{saved}"
        )


@dataclass
class _Classified:
    new: np.ndarray  # bool per row
    reused: np.ndarray
    codes: np.ndarray  # per row: index of its distinct key
    first_row_of_code: np.ndarray  # per distinct key: its first row
    found: np.ndarray  # per distinct key: has a stored answer
    hits: Hits | None  # where the stored answers are (positions are distinct keys)
    awaited: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # per row
    #: Per distinct key: the batch and custom_id of another run that sent it (None: not awaited).
    awaited_from: list[tuple[str, str] | None] = field(default_factory=list)


def classify(
    keys: np.ndarray, store: AnswerStore | None, max_age: timedelta | None, owner: str | None = None
) -> _Classified:
    """Split rows into new, reused, deduplicated and awaited by their keys (see the module
    docstring). Looks answers up but fetches none: :func:`replan` fetches them a store
    partition at a time."""
    codes = pc.dictionary_encode(as_arrow(keys)).indices.to_numpy() if len(keys) else np.zeros(0, np.int32)
    distinct, first_row_of_code = np.unique(codes, return_index=True)
    first = np.zeros(len(keys), dtype=bool)
    first[first_row_of_code] = True
    found = np.zeros(len(distinct), dtype=bool)
    hits = None
    awaited_code = np.zeros(len(distinct), dtype=bool)
    awaited_from: list[tuple[str, str] | None] = [None] * len(distinct)
    flying: tuple[np.ndarray, pa.Table] | None = None
    if store is not None and owner is not None and len(distinct):
        # The requests in flight are read BEFORE the answers: a landing stores its answers, then
        # retires its batches from flight. Read in the other order, a landing between the two
        # reads hides its rows from both (not stored yet, no longer in flight) and they are sent
        # (and paid) again. In this order a row retired before the first read was stored before
        # it, so the second read finds its answer.
        flying = store.in_flight(keys[first_row_of_code], exclude=owner)
    if store is not None and len(distinct):
        hits = store.lookup(keys[first_row_of_code], max_age=max_age)
        found = hits.found
    if flying is not None:
        in_flight, entries = flying
        for code, batch_id, custom_id in zip(
            np.flatnonzero(in_flight).tolist(),
            entries.column("batch_id").to_pylist(),
            entries.column("custom_id").to_pylist(),
            strict=True,
        ):
            if not found[code]:  # answered meanwhile: reused, not awaited
                awaited_code[code] = True
                awaited_from[code] = (batch_id, custom_id)
    reused = found[codes] if len(keys) else np.zeros(0, dtype=bool)
    awaited = awaited_code[codes] if len(keys) else np.zeros(0, dtype=bool)
    return _Classified(
        new=first & ~reused & ~awaited,
        reused=reused,
        codes=codes,
        first_row_of_code=first_row_of_code,
        found=found,
        hits=hits,
        awaited=awaited,
        awaited_from=awaited_from,
    )


def _lines_of(data: bytes) -> pa.Array:
    """A JSONL file's bytes as an Arrow column of newline-terminated lines (no copy)."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    offsets = np.concatenate([[0], ends]).astype(np.int32)
    return pa.Array.from_buffers(pa.binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


class _Head(msgspec.Struct):
    model: str
    max_tokens: int


class _Request(msgspec.Struct):
    params: _Head


_decode_request = msgspec.json.Decoder(_Request).decode


def tally_lines(lines: pa.Array, tallies: dict[str, RequestTally]) -> None:
    """Add request lines to per-model tallies, as the renderer counts them (bytes without the newline)."""
    for line in lines.to_pylist():
        head = _decode_request(line).params
        tallies.setdefault(head.model, RequestTally()).add(line[:-1], head.max_tokens)


@dataclass
class Replanned:
    """A staging with only the new rows, and how the rows divided."""

    directory_name: str
    chunks: list[ChunkInfo]
    total_requests: int
    tally: dict[str, RequestTally]
    counts: ReuseCounts


def _counts(plan: _Classified, rows: int, max_age: timedelta | None) -> ReuseCounts:
    """How the plan divides ``rows``: new, reused, deduplicated and awaited (and from which batches)."""
    awaited = int(plan.awaited.sum())
    return ReuseCounts(
        rows=rows,
        new=int(plan.new.sum()),
        reused=int(plan.reused.sum()),
        deduplicated=int(rows - plan.new.sum() - plan.reused.sum() - awaited),
        max_age_seconds=None if max_age is None else max_age.total_seconds(),
        awaited=awaited,
        awaited_batches=sorted({source[0] for source in plan.awaited_from if source is not None}),
    )


def _read_chunk(run_dir: RunDir, staging_name: str, chunk: ChunkInfo) -> tuple[pa.Array, pa.Table | None]:
    """A staged chunk's request lines and (when saved) its input columns."""
    with (run_dir / RunDir.staged_file(staging_name, chunk.requests_file)).open("rb") as handle:
        lines = _lines_of(handle.read())
    inputs = None
    if chunk.inputs_file is not None:
        with (run_dir / RunDir.staged_file(staging_name, chunk.inputs_file)).open("rb") as handle:
            inputs = pq.read_table(handle)
    return lines, inputs


def replan(
    run_dir: RunDir,
    staging_name: str,
    chunks: list[ChunkInfo],
    keys: np.ndarray,
    chunk_limits: ChunkLimits,
    input_columns: list[str] | None,
    store: AnswerStore | None,
    max_age: timedelta | None,
    owner: str | None = None,
) -> Replanned | None:
    """Take the reused and deduplicated rows out of a full staging. None when every row is new
    (the staging is right as it is); otherwise the new rows are written to a fresh staging
    folder (the caller drops the old one) with ``answered.parquet`` beside them."""
    plan = classify(keys, store, max_age, owner)
    rows = len(keys)
    counts = _counts(plan, rows, max_age)
    if counts.new == rows:
        return None
    name = run_dir.new_staging_name()
    directory = run_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    writer = ChunkWriter(directory, chunk_limits, input_columns=input_columns)
    tally: dict[str, RequestTally] = {}
    # The rows not sent, split by the store partition of their key: each part then gets its
    # answers from one partition's fetch, so memory holds a sixteenth of them at a time.
    parts = _PartitionFiles(directory)
    # custom_id of the sent row of each key that deduplicated rows share (row order: it comes first).
    per_code = np.bincount(plan.codes, minlength=len(plan.found)) if rows else np.zeros(0, np.int64)
    awaited_code = np.array([source is not None for source in plan.awaited_from], dtype=bool)
    shared = (per_code > 1) & ~plan.found & ~awaited_code
    sender_ids: dict[int, str] = {}
    try:
        for chunk in chunks:
            start, end = chunk.first_row, chunk.first_row + chunk.request_count
            lines, inputs = _read_chunk(run_dir, staging_name, chunk)
            ids = pa.array([request_id(line) for line in lines.to_pylist()], pa.string())
            new = plan.new[start:end]
            senders = np.flatnonzero(new & shared[plan.codes[start:end]])
            for offset in senders.tolist():
                sender_ids[int(plan.codes[start + offset])] = ids[offset].as_py()
            if new.any():
                mask = pa.array(new)
                kept_lines = lines.filter(mask)
                writer.write_rendered(ids.filter(mask), kept_lines, None if inputs is None else inputs.filter(mask))
                tally_lines(kept_lines, tally)
            if not new.all():
                parts.write(_answered_rows(plan, start, end, ids, lines, keys, inputs, sender_ids))
        new_chunks = writer.close()
        parts.close()
        counts.reused_cost_usd = _write_answered(directory / ANSWERED_FILE, parts, plan, store)
    except BaseException:
        writer.abort()
        parts.close()
        run_dir.drop_staging(name)
        raise
    counts.answered_file = RunDir.staged_file(name, ANSWERED_FILE)
    return Replanned(name, new_chunks, counts.new, tally, counts)


#: The answer columns ``answered.parquet`` holds for reused rows, with their types.
_ANSWER_FIELDS = [STORE_SCHEMA.field(name) for name in ANSWER_COLUMNS] + [
    pa.field(renamed, pa.string()) for renamed in _ORIGIN.values()
]


class _PartitionFiles:
    """Temporary files of the rows not sent, one per store partition of their key."""

    def __init__(self, directory: Any) -> None:
        self.directory = directory
        self.names: dict[int, str] = {}
        self._writers: dict[int, tuple[Any, pq.ParquetWriter]] = {}

    def write(self, table: pa.Table) -> None:
        digits = partition_of(as_numpy(table.column("key")))
        for value in np.unique(digits).tolist():
            part = table.filter(pa.array(digits == value))
            if value not in self._writers:
                name = f".answered-p{value:x}.parquet"
                sink = (self.directory / name).open("wb")
                self._writers[value] = (sink, pq.ParquetWriter(sink, part.schema))
                self.names[value] = name
            self._writers[value][1].write_table(part)

    def close(self) -> None:
        for sink, writer in self._writers.values():
            writer.close()
            sink.close()
        self._writers.clear()

    def read(self, value: int) -> pa.Table:
        path = self.directory / self.names[value]
        with path.open("rb") as handle:
            table = pq.read_table(handle)
        path.unlink()
        return table


def _write_answered(target: Any, parts: _PartitionFiles, plan: _Classified, store: AnswerStore | None) -> float | None:
    """``answered.parquet`` from the partition files, each part's reused rows given their
    answers from that partition's fetch. Returns what the reused answers had cost (None when
    some had no price)."""
    hits_of = {int(part.digit, 16): part for part in (plan.hits.partitions if plan.hits is not None else [])}
    cost = 0.0
    unpriced = False
    writer = None
    with target.open("wb") as sink:
        try:
            for value in sorted(parts.names):
                table = parts.read(value)
                answers = _answers_for(table, hits_of.get(value), plan, store)
                for answer_field in _ANSWER_FIELDS:
                    table = table.append_column(answer_field, answers[answer_field.name])
                reused_costs = pc.filter(answers["cost_usd"], pc.equal(table.column("answer_source"), REUSED))
                unpriced |= bool(reused_costs.null_count)
                cost += float(pc.sum(reused_costs).as_py() or 0.0)
                if writer is None:
                    writer = pq.ParquetWriter(sink, table.schema, compression="zstd")
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
    return None if unpriced else cost


def _answers_for(
    table: pa.Table, hits: PartitionHits | None, plan: _Classified, store: AnswerStore | None
) -> dict[str, pa.Array]:
    """Per row of ``table``: its stored answer's columns (nulls for rows not reused)."""
    rows = table.num_rows
    nulls = {f.name: pa.nulls(rows, f.type) for f in _ANSWER_FIELDS}
    reused = pc.equal(table.column("answer_source"), REUSED)
    if hits is None or store is None or not pc.any(reused).as_py():
        return nulls
    codes = table.column("code").to_numpy()
    columns = ["batch_id", "run_id", "dag_id", *ANSWER_COLUMNS]
    found_codes, fetched = [], []
    for positions, answers in store.fetch(Hits(plan.found, [hits]), columns=columns):
        found_codes.append(positions)
        fetched.append(answers.select(columns).cast(pa.schema([STORE_SCHEMA.field(n) for n in columns])))
    answers = pa.concat_tables(fetched)
    row_of_code = np.full(len(plan.found), -1, dtype=np.int64)
    row_of_code[np.concatenate(found_codes)] = np.arange(answers.num_rows)
    take = row_of_code[codes]
    take_array = pa.array(np.where(take >= 0, take, 0))
    origin_of = {renamed: name for name, renamed in _ORIGIN.items()}
    out: dict[str, pa.Array] = {}
    for answer_field in _ANSWER_FIELDS:
        name = answer_field.name
        column = answers.column(origin_of.get(name, name)).take(take_array)
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        out[name] = pc.if_else(reused, column, nulls[name])
    return out


def _answered_rows(
    plan: _Classified,
    start: int,
    end: int,
    ids: pa.Array,
    lines: pa.Array,
    keys: np.ndarray,
    inputs: pa.Table | None,
    sender_ids: dict[int, str],
) -> pa.Table:
    """The rows of one chunk that are not sent, with what ``answered.parquet`` holds for them
    (the answers of reused rows are added per store partition, :func:`_write_answered`)."""
    local = np.flatnonzero(~plan.new[start:end])
    rows = local + start
    reused = plan.reused[rows]
    awaited = plan.awaited[rows]
    codes = plan.codes[rows]
    sources = np.where(reused, REUSED, np.where(awaited, AWAITED, DEDUPLICATED))
    awaited_from = [plan.awaited_from[int(code)] if flag else None for flag, code in zip(awaited, codes, strict=True)]
    columns: dict[str, pa.Array] = {
        "row": pa.array(rows.astype(np.int64)),
        "code": pa.array(codes.astype(np.int64)),
        CUSTOM_ID_COLUMN: ids.take(pa.array(local)),
        "key": as_arrow(keys[rows]),
        "answer_source": pa.array(sources.tolist(), pa.string()),
        # The sent row whose final outcome a deduplicated row gets.
        "same_as": pa.array(
            [
                sender_ids[int(code)] if source == DEDUPLICATED else None
                for source, code in zip(sources.tolist(), codes.tolist(), strict=True)
            ],
            pa.string(),
        ),
        # Where an awaited row's answer is (another run's batch and custom_id), and its own
        # request, sent after all when that batch did not answer it.
        "await_batch_id": pa.array([s[0] if s else None for s in awaited_from], pa.string()),
        "await_custom_id": pa.array([s[1] if s else None for s in awaited_from], pa.string()),
        "request": pc.if_else(pa.array(awaited), lines.take(pa.array(local)), pa.nulls(len(rows), pa.binary())),
    }
    table = pa.table({k: (v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v) for k, v in columns.items()})
    if inputs is not None:
        picked = inputs.take(pa.array(local))
        for name in picked.column_names:
            if name != CUSTOM_ID_COLUMN:
                table = table.append_column(f"{INPUT_PREFIX}{name}", picked.column(name))
    return table
