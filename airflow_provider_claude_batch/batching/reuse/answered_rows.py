"""Landing what reuse did not send, and storing what was sent.

Two halves of reuse at landing time (the plan itself is ``reuse``'s):

* :class:`AnsweredRows` writes the rows that were not sent: each **reused** row from the
  answer copied into ``answered.parquet`` at submit, each **deduplicated** row from the final
  outcome of the sent row with the same request (``same_as``), collected while the chunks
  land. Both cost 0 in ``cost_usd``; what their answers had cost is counted as saved.
* :class:`NewAnswers` keeps the succeeded answers of the sent rows, keyed by their request
  line's content key, in a pending file per chunk of the run folder; the transfer adds them to
  the answer store only after the landing is committed, so nothing a failed landing read (a
  file that failed its identity check) is ever stored. Answers off an output schema are not
  stored: they are not answers anyone should get again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_provider_claude_batch.batching.api.column_names import ANSWER_COST_COLUMN as ANSWER_COST_COLUMN
from airflow_provider_claude_batch.batching.api.column_names import ANSWER_SOURCE_COLUMN as ANSWER_SOURCE_COLUMN
from airflow_provider_claude_batch.batching.api.jsonl import iter_file_lines
from airflow_provider_claude_batch.batching.render.chunks import CUSTOM_ID_COLUMN, request_id
from airflow_provider_claude_batch.batching.render.content_key import as_arrow, content_keys
from airflow_provider_claude_batch.batching.reuse.answer_store import (
    ANSWER_COLUMNS,
    AnswerOrigin,
    AnswerStore,
    storable,
)
from airflow_provider_claude_batch.batching.reuse.awaited import read_awaited_answers
from airflow_provider_claude_batch.batching.reuse.plan import (
    AWAITED,
    DEDUPLICATED,
    INPUT_PREFIX,
    NEW,
    REUSED,
    ReuseCounts,
)
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.state.storage import atomic_writer
from airflow_provider_claude_batch.exceptions import ClaudeBatchMissingResultsError

#: The last column of :meth:`AnsweredRows.tables`: each row's place in the input (``row`` of
#: ``answered.parquet``), by which the landing puts them in input order (never written).
ANSWERED_ROW_COLUMN = "__input_row"


def answer_source_column(rows: int, value: str) -> pa.Array:
    return pc.fill_null(pa.nulls(rows, pa.string()), value)


def answered_input_schema(run_dir: RunDir, manifest: Manifest) -> pa.Schema | None:
    """The saved input columns (and ``custom_id``) of a run whose rows were all answered
    without a batch: read from ``answered.parquet``, for the output schema."""
    counts = ReuseCounts.from_dict(manifest.reuse)
    if counts is None or counts.answered_file is None:
        return None
    with (run_dir / counts.answered_file).open("rb") as handle:
        schema = pq.read_schema(handle)
    fields = [f.with_name(f.name[len(INPUT_PREFIX) :]) for f in schema if f.name.startswith(INPUT_PREFIX)]
    return pa.schema([*fields, pa.field(CUSTOM_ID_COLUMN, pa.string())])


class AnsweredRows:
    """The rows of a run that were not sent (see the module docstring)."""

    def __init__(self, run_dir: RunDir, manifest: Manifest) -> None:
        self.run_dir = run_dir
        self.counts = ReuseCounts.from_dict(manifest.reuse)
        self._wanted: pa.Array = pa.array([], pa.string())
        self._senders: list[pa.Table] = []
        #: What awaited rows got from other runs (the rest went out in this run's chunks).
        self._awaited = None if self.counts is None else read_awaited_answers(run_dir, self.counts)
        if self.counts is not None and self.counts.deduplicated:
            with self._open() as parquet:
                same_as = parquet.read(columns=["same_as"]).column("same_as")
            self._wanted = pc.unique(same_as.filter(pc.is_valid(same_as)).combine_chunks())

    def _open(self) -> Any:
        assert self.counts is not None and self.counts.answered_file is not None
        return _ParquetFile(self.run_dir / self.counts.answered_file)

    @property
    def any(self) -> bool:
        return self.counts is not None and self.counts.answered_file is not None

    def collect(self, table: pa.Table) -> None:
        """Keep the final rows of sent requests that deduplicated rows copy."""
        if len(self._wanted):
            chosen = table.filter(pc.is_in(table.column(CUSTOM_ID_COLUMN), value_set=self._wanted))
            if chosen.num_rows:
                self._senders.append(chosen)

    def tables(
        self, schema: pa.Schema, keep_columns: list[str], rename: Mapping[str, str] | None, rows_per_group: int
    ) -> Iterator[pa.Table]:
        """The answered rows in ``schema`` (results, ``answer_source``, kept input columns), with
        ``saved_usd`` (what its answer had cost) and :data:`ANSWERED_ROW_COLUMN` (its input row)
        as the last two columns, both dropped before writing. The rows come in the file's order
        (the answer store's partitions), not in input order."""
        if not self.any:
            return
        rename = rename or {}
        senders = pa.concat_tables(self._senders) if self._senders else None
        sender_ids = senders.column(CUSTOM_ID_COLUMN).combine_chunks() if senders is not None else None
        with self._open() as parquet:
            for batch in parquet.iter_batches(rows_per_group):
                answered = pa.Table.from_batches([batch])
                reused = answered.filter(pc.equal(answered.column(ANSWER_SOURCE_COLUMN), REUSED))
                if reused.num_rows:
                    yield self._reused(reused, reused, schema, keep_columns, rename)
                awaited = answered.filter(pc.equal(answered.column(ANSWER_SOURCE_COLUMN), AWAITED))
                if awaited.num_rows and self._awaited is not None and self._awaited.num_rows:
                    where = pc.index_in(
                        awaited.column(CUSTOM_ID_COLUMN),
                        value_set=self._awaited.column(CUSTOM_ID_COLUMN).combine_chunks(),
                    )
                    got = pc.is_valid(where)
                    if pc.any(got).as_py():
                        answers = self._awaited.take(where.filter(got))
                        yield self._reused(awaited.filter(got), answers, schema, keep_columns, rename)
                copies = answered.filter(pc.equal(answered.column(ANSWER_SOURCE_COLUMN), DEDUPLICATED))
                if copies.num_rows:
                    yield self._copies(copies, senders, sender_ids, schema, keep_columns, rename)

    def _inputs(self, answered: pa.Table, keep_columns: list[str], rename: Mapping[str, str]) -> dict[str, Any]:
        return {
            rename.get(name, name): answered.column(f"{INPUT_PREFIX}{name}")
            for name in keep_columns
            if name != CUSTOM_ID_COLUMN
        }

    def _reused(
        self,
        answered: pa.Table,
        answers: pa.Table,
        schema: pa.Schema,
        keep_columns: list[str],
        rename: Mapping[str, str],
    ) -> pa.Table:
        """Rows answered by another run: ``answered``'s custom_ids and inputs, ``answers``'
        answer columns and ``origin_batch_id``, row for row."""
        rows = answered.num_rows
        columns: dict[str, Any] = {
            CUSTOM_ID_COLUMN: answered.column(CUSTOM_ID_COLUMN),
            "batch_id": pc.fill_null(answers.column("origin_batch_id"), ""),
            "round": pa.array(np.zeros(rows, dtype=np.int32)),
            "result_type": answer_source_column(rows, "succeeded"),
            **{name: answers.column(name) for name in ANSWER_COLUMNS},
            "cost_usd": pa.array(np.zeros(rows)),
            ANSWER_SOURCE_COLUMN: answer_source_column(rows, REUSED),
            ANSWER_COST_COLUMN: answers.column("cost_usd"),
            **self._inputs(answered, keep_columns, rename),
        }
        return _with_extras(_in_schema(columns, schema, rows), answers.column("cost_usd"), answered)

    def _copies(
        self,
        answered: pa.Table,
        senders: pa.Table | None,
        sender_ids: pa.Array | None,
        schema: pa.Schema,
        keep_columns: list[str],
        rename: Mapping[str, str],
    ) -> pa.Table:
        positions = None if sender_ids is None else pc.index_in(answered.column("same_as"), value_set=sender_ids)
        if senders is None or positions is None or positions.null_count:
            missing = answered.column(CUSTOM_ID_COLUMN)[0].as_py()
            raise ClaudeBatchMissingResultsError(
                f"row {missing!r} was deduplicated against a sent request whose result was not landed"
            )
        source = senders.take(positions)
        rows = answered.num_rows
        columns: dict[str, Any] = {name: source.column(name) for name in schema.names if name in source.column_names}
        columns[CUSTOM_ID_COLUMN] = answered.column(CUSTOM_ID_COLUMN)
        columns["cost_usd"] = pa.array(np.zeros(rows))
        columns[ANSWER_SOURCE_COLUMN] = answer_source_column(rows, DEDUPLICATED)
        columns[ANSWER_COST_COLUMN] = source.column("cost_usd")
        columns.update(self._inputs(answered, keep_columns, rename))
        return _with_extras(_in_schema(columns, schema, rows), source.column("cost_usd"), answered)


def _with_extras(table: pa.Table, saved_usd: Any, answered: pa.Table) -> pa.Table:
    """``table`` with the two columns :meth:`AnsweredRows.tables` adds: ``saved_usd`` and the input row."""
    return table.append_column("saved_usd", saved_usd).append_column(ANSWERED_ROW_COLUMN, answered.column("row"))


def _in_schema(columns: dict[str, Any], schema: pa.Schema, rows: int) -> pa.Table:
    arrays = []
    for field in schema:
        value = columns.get(field.name)
        arrays.append(pa.nulls(rows, field.type) if value is None else value.cast(field.type))
    return pa.Table.from_arrays(
        [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays], schema=schema
    )


class _ParquetFile:
    """An open Parquet file that closes its handle."""

    def __init__(self, path: Any) -> None:
        self._handle = path.open("rb")
        self._file = pq.ParquetFile(self._handle)

    def __enter__(self) -> pq.ParquetFile:
        return self._file

    def __exit__(self, *exc_info: object) -> None:
        self._handle.close()


class NewAnswers:
    """Succeeded answers of the sent rows, by content key, pending until the landing commits."""

    def __init__(self, run_dir: RunDir, manifest: Manifest) -> None:
        self.run_dir = run_dir
        self.manifest = manifest
        self.enabled = manifest.reuse is not None
        self.files: list[str] = []

    def for_chunk(self, chunk: int, record: BatchRecord) -> _PendingChunk | None:
        """A writer of one chunk's answers, keyed by its round-0 request lines (None when reuse
        is off or that request file is gone: then its answers are not stored)."""
        path = self.run_dir / record.requests_file
        if not self.enabled or not path.exists():
            return None
        with path.open("rb") as handle:
            lines = [line for line in iter_file_lines(handle) if line]
        ids = pa.array([request_id(line) for line in lines], pa.string())
        name = self.run_dir.pending_answers_file(chunk)
        self.files.append(name)
        return _PendingChunk(self.run_dir / name, ids, as_arrow(content_keys(lines)))

    def publish(self, store: AnswerStore, origin: AnswerOrigin) -> int:
        """Add the pending answers to the store (after the landing committed). Returns how many."""
        stored = 0
        batch_ids = self.manifest.batch_ids()
        owner = "/".join([origin.dag_id, origin.run_id, origin.task_id, str(origin.map_index)])
        for name in self.files:
            path = self.run_dir / name
            if not path.exists():
                continue
            with path.open("rb") as handle:
                table = pq.read_table(handle)
            stored += store.add(table, origin, name=AnswerStore.landing_name(f"{owner}/{name}", batch_ids))
        return stored


class _PendingChunk:
    """One chunk's storable answers, written as they land."""

    def __init__(self, path: Any, ids: pa.Array, keys: pa.Array) -> None:
        self.path = path
        self.ids = ids
        self.keys = keys
        self._context: Any = None
        self._writer: pq.ParquetWriter | None = None

    def add(self, table: pa.Table) -> None:
        table = table.filter(storable(table))
        where = pc.index_in(table.column(CUSTOM_ID_COLUMN), value_set=self.ids)
        known = pc.is_valid(where)
        table = table.filter(known).select([CUSTOM_ID_COLUMN, "batch_id", "result_type", *ANSWER_COLUMNS])
        if not table.num_rows:
            return
        table = table.append_column("key", self.keys.take(where.filter(known)))
        if self._writer is None:
            self._context = atomic_writer(self.path)
            self._writer = pq.ParquetWriter(self._context.__enter__(), table.schema, compression="zstd")
        self._writer.write_table(table)

    def close(self, failed: bool = False) -> None:
        if self._writer is None:
            if self.path.exists():
                self.path.unlink()  # an earlier landing's, with answers this one does not have
            return
        self._writer.close()
        error = RuntimeError("landing failed") if failed else None
        self._context.__exit__(type(error) if error else None, error, None)


__all__ = [
    "ANSWERED_ROW_COLUMN",
    "ANSWER_COST_COLUMN",
    "ANSWER_SOURCE_COLUMN",
    "NEW",
    "AnsweredRows",
    "NewAnswers",
    "answer_source_column",
    "answered_input_schema",
]
