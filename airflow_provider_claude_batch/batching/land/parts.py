"""Saved raw results -> Parquet, with chosen input columns joined back by custom_id.

Each batch's raw JSONL is parsed in record batches (bounded memory) and written to one
Parquet part per chunk in row groups. Before any of it is parsed, each batch's results are
checked against the requests it was sent (:func:`check_identity`): every custom_id exactly
once and no stranger; a count alone would let a duplicated row hide a lost one.

Row order: a chunk's part holds its rows in request order, which is input order (the API
returns results in any order, and a later round's after the earlier's; ``row_order`` puts
them back). Chunks hold consecutive rows, so the parts of a run that sent every row read in
input order. The rows answered without a request (reused, deduplicated, awaited) are in one
last part, in input order too: interleaving them with the chunks' rows would mean cutting
parts by input rows instead of by batch, so a reader that needs the exact input order of a
run with reuse sorts by ``input_row`` (a ``keep_columns`` entry: each row's place in the
input, saved at staging).

Kept input columns are landed in one Arrow type per logical type (``chunks.standard_type``),
also from a staging saved before that rule.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_provider_claude_batch.batching.api.jsonl import iter_file_lines
from airflow_provider_claude_batch.batching.api.pricing import PriceTable, batch_saving, sync_api_cost
from airflow_provider_claude_batch.batching.api.results import (
    RESULT_SCHEMA,
    TOKEN_COLUMNS,
    ResultParser,
    web_search_fee_usd,
)
from airflow_provider_claude_batch.batching.land.kept_columns import KeepColumns as KeepColumns
from airflow_provider_claude_batch.batching.land.kept_columns import check_kept_names as check_kept_names
from airflow_provider_claude_batch.batching.land.kept_columns import keep_columns_spec as keep_columns_spec
from airflow_provider_claude_batch.batching.land.partitions import part_file_name
from airflow_provider_claude_batch.batching.land.rounds import final_rounds, records_by_chunk
from airflow_provider_claude_batch.batching.land.row_order import RowSorter
from airflow_provider_claude_batch.batching.render.chunks import CUSTOM_ID_COLUMN, request_id, standard_type
from airflow_provider_claude_batch.batching.reuse.answered_rows import (
    ANSWER_COST_COLUMN,
    ANSWER_SOURCE_COLUMN,
    ANSWERED_ROW_COLUMN,
    AnsweredRows,
    NewAnswers,
    answer_source_column,
    answered_input_schema,
)
from airflow_provider_claude_batch.batching.reuse.plan import ANSWER_SOURCES, NEW
from airflow_provider_claude_batch.batching.schema.citations import CitedAnswers
from airflow_provider_claude_batch.batching.schema.typed_columns import TypedAnswers
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.batching.state.run_dir import LANDING_SUMMARY_NAME as LANDING_SUMMARY_NAME
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.state.storage import StoragePath
from airflow_provider_claude_batch.exceptions import (
    ClaudeBatchInputError,
    ClaudeBatchMissingResultsError,
)

#: What adds the answer's own columns after the results: typed fields (an output schema) or
#: citations (a run that asked for them); the API takes one or the other, never both.
AnswerColumns = TypedAnswers | CitedAnswers


@dataclass
class LandingStats:
    rows: int = 0
    by_result_type: Counter[str] = field(default_factory=Counter)
    tokens: Counter[str] = field(default_factory=Counter)
    cost_usd: float = 0.0
    rows_without_cost: int = 0
    files: list[str] = field(default_factory=list)
    rounds: int = 1
    resubmitted: int = 0
    #: batch_id -> rows, tokens by kind and cost of the rows landed from that batch (every
    #: batch of the run, zero rows for one whose requests all went out again).
    by_batch: dict[str, Counter[str]] = field(default_factory=dict)
    #: Rows by where their answer came from (new, reused, deduplicated).
    by_answer_source: Counter[str] = field(default_factory=Counter)
    #: What the answers of reused and deduplicated rows had cost: what reuse saved.
    reuse_saved_usd: float = 0.0
    #: How many new answers went to the answer store.
    answers_stored: int = 0
    #: The part of ``cost_usd`` that is web search fees: per call, not halved for batches, so
    #: the synchronous API would charge the same (see ``pricing.sync_api_cost``).
    web_search_fee_usd: float = 0.0
    #: Prices the fees are read from (the same table that priced ``cost_usd``).
    prices: PriceTable = field(default_factory=PriceTable, repr=False)

    def add(self, batch: pa.Table) -> None:
        self.rows += batch.num_rows
        for entry in pc.value_counts(batch.column(ANSWER_SOURCE_COLUMN)).to_pylist():
            self.by_answer_source[entry["values"]] += entry["counts"]
        for entry in pc.value_counts(batch.column("result_type")).to_pylist():
            self.by_result_type[entry["values"]] += entry["counts"]
        # Tokens and cost are what this run billed: its sent rows only.
        batch = batch.filter(pc.equal(batch.column(ANSWER_SOURCE_COLUMN), NEW))
        sums = batch.group_by("batch_id").aggregate(
            [
                ("custom_id", "count"),
                ("input_tokens", "count"),
                ("cost_usd", "count"),
                *[(name, "sum") for name in (*TOKEN_COLUMNS, "cost_usd")],
            ]
        )
        for row in sums.to_pylist():
            totals = self.by_batch.setdefault(row["batch_id"], Counter())
            totals["rows"] += row["custom_id_count"]
            # Rows with usage but no price (a model missing from the price table).
            totals["unpriced"] += row["input_tokens_count"] - row["cost_usd_count"]
            for name in (*TOKEN_COLUMNS, "cost_usd"):
                totals[name] += row[f"{name}_sum"] or 0
        for name in TOKEN_COLUMNS:
            self.tokens[name] += int(pc.sum(batch.column(name)).as_py() or 0)
        cost = batch.column("cost_usd")
        self.cost_usd += float(pc.sum(cost).as_py() or 0.0)
        self.web_search_fee_usd += web_search_fee_usd(batch, self.prices)
        self.rows_without_cost += int(
            pc.sum(pc.and_(pc.is_null(cost), pc.equal(batch.column("result_type"), "succeeded"))).as_py() or 0
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "by_result_type": dict(self.by_result_type),
            "tokens": dict(self.tokens),
            "cost_usd": round(self.cost_usd, 6),
            "web_search_fee_usd": round(self.web_search_fee_usd, 6),
            # What the same requests would have cost on the synchronous Messages API: twice the
            # tokens, the same fees; the saving is the tokens' share only.
            "cost_usd_sync_api": round(sync_api_cost(self.cost_usd, per_call_fees=self.web_search_fee_usd), 6),
            "saving_usd": round(batch_saving(self.cost_usd, per_call_fees=self.web_search_fee_usd), 6),
            "rows_without_cost": self.rows_without_cost,
            "by_batch": {batch_id: _batch_totals(totals) for batch_id, totals in self.by_batch.items()},
            "files": self.files,
            "rounds": self.rounds,
            "resubmitted_requests": self.resubmitted,
            "by_answer_source": {source: int(self.by_answer_source[source]) for source in ANSWER_SOURCES},
            "reuse_saved_usd": round(self.reuse_saved_usd, 6),
            # What every row's answer cost when it was bought: this run's bill plus what the rows
            # it did not send had cost (a rerun's partition keeps its cost, not $0).
            "answer_cost_usd": round(self.cost_usd + self.reuse_saved_usd, 6),
            "answers_stored": self.answers_stored,
        }


#: How many ids an identity error shows of each kind.
SHOWN_IDS = 5


@dataclass
class IdentityCheck:
    """How a batch's saved results compare with the requests it was sent: each custom_id
    of the requests exactly once, and no other."""

    batch_id: str
    record: str
    missing: list[str]
    duplicated: list[str]
    strangers: list[str]
    counts: tuple[int, int, int]  # missing, duplicated, strangers (the lists hold the first few)

    @property
    def ok(self) -> bool:
        return not any(self.counts)

    def message(self, raw_file: StoragePath) -> str:
        parts = [
            f"{count} {what} (e.g. {ids})"
            for count, what, ids in zip(
                self.counts,
                ("missing", "returned more than once", "not among its requests"),
                (self.missing, self.duplicated, self.strangers),
                strict=True,
            )
            if count
        ]
        return (
            f"batch {self.batch_id!r} ({self.record}): its results do not match its requests one to one, "
            f"also when downloaded again: custom_ids {'; '.join(parts)}. Nothing was landed; the raw "
            f"results are kept at {raw_file}."
        )


def expected_ids(run_dir: RunDir | StoragePath, record: BatchRecord, inputs_record: BatchRecord) -> pa.Array | None:
    """The custom_ids a batch was sent: from its request file, else (first round) from the
    chunk's saved input columns; ``None`` when neither is kept any more."""
    run_dir = RunDir.of(run_dir)
    requests = run_dir / record.requests_file
    if requests.exists():
        with requests.open("rb") as handle:
            return pa.array([request_id(line) for line in iter_file_lines(handle) if line], pa.string())
    if record.round == 0 and inputs_record.inputs_file and (run_dir / inputs_record.inputs_file).exists():
        with (run_dir / inputs_record.inputs_file).open("rb") as handle:
            return pq.read_table(handle, columns=[CUSTOM_ID_COLUMN]).column(CUSTOM_ID_COLUMN).combine_chunks()
    return None


def check_identity(
    run_dir: RunDir | StoragePath, record: BatchRecord, inputs_record: BatchRecord, raw_file: StoragePath
) -> IdentityCheck:
    """Compare the custom_ids of a batch's raw results with those it was sent.

    One pass over the raw file reads only each line's custom_id. Memory is the ids of one
    batch (at most 100,000), held as Arrow strings, never the results. Without the request
    ids (expired from the work directory) only repeats and the count can be checked.
    """
    with raw_file.open("rb") as handle:
        seen = pa.array([request_id(line) for line in iter_file_lines(handle) if line], pa.string())
    counts = pc.value_counts(seen)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    expected = expected_ids(run_dir, record, inputs_record)
    if expected is None:
        missing = pa.array([], pa.string())
        strangers = pa.array([], pa.string())
        shortfall = max(0, record.request_count - (len(seen) - len(repeated)))
    else:
        missing = expected.filter(pc.invert(pc.is_in(expected, value_set=seen)))
        strangers = seen.filter(pc.invert(pc.is_in(seen, value_set=expected))).unique()
        shortfall = len(missing)
    return IdentityCheck(
        batch_id=record.batch_id or "",
        record=record.label,
        missing=_first_ids(missing),
        duplicated=_first_ids(repeated),
        strangers=_first_ids(strangers),
        counts=(shortfall, len(repeated), len(strangers)),
    )


def _first_ids(ids: pa.Array) -> list[str]:
    """The first few ids in sorted order (results come in no particular order)."""
    return pc.take(ids, pc.array_sort_indices(ids)[:SHOWN_IDS]).to_pylist() if len(ids) else []


def _batch_totals(totals: Counter[str]) -> dict[str, Any]:
    """One batch's rows, tokens and cost; the cost is unknown (None), never a partial sum, when
    some of its rows are of a model missing from the price table."""
    out: dict[str, Any] = {name: int(totals[name]) for name in ("rows", *TOKEN_COLUMNS)}
    out["cost_usd"] = None if totals["unpriced"] else round(totals["cost_usd"], 6)
    return out


def _kept(keep_columns: list[str]) -> list[str]:
    return [CUSTOM_ID_COLUMN, *[c for c in keep_columns if c != CUSTOM_ID_COLUMN]]


@contextmanager
def _open_inputs(run_dir: RunDir, record: BatchRecord, keep_columns: list[str]) -> Iterator[IO[bytes]]:
    """The chunk's saved input columns, open for reading."""
    if record.inputs_file is None:
        raise ClaudeBatchInputError(
            f"keep_columns {keep_columns} were asked for, but the submit task saved no input columns "
            "(input_columns=None); set input_columns on the submit operator"
        )
    path = run_dir / record.inputs_file
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise ClaudeBatchInputError(
            f"the input columns for keep_columns, saved at {path}, are gone (expired from the work directory?); "
            "clear the submit task too, so that it renders them again"
        ) from None
    with handle:
        yield handle


def _input_lookup(run_dir: RunDir, record: BatchRecord, keep_columns: list[str]) -> pa.Table | None:
    """custom_id and the kept input columns of one chunk (checked by :func:`output_schema`)."""
    if not keep_columns:
        return None
    with _open_inputs(run_dir, record, keep_columns) as handle:
        return pq.read_table(handle, columns=_kept(keep_columns))


def output_schema(
    run_dir: RunDir | StoragePath, manifest: Manifest, keep_columns: list[str], rename: Mapping[str, str] | None = None
) -> pa.Schema:
    """The results schema plus the kept input columns (named as ``rename`` says), read from
    the first chunk's Parquet footer; a missing or clashing column is an error before anything
    is written."""
    schema = landed_schema()
    if not keep_columns:
        return schema
    rename = rename or {}
    if manifest.batches:
        with _open_inputs(RunDir.of(run_dir), manifest.batches[0], keep_columns) as handle:
            saved = pq.read_schema(handle)
    else:  # every row answered without a batch
        answered = answered_input_schema(RunDir.of(run_dir), manifest)
        if answered is None:
            return schema
        if len(answered.names) == 1:
            raise ClaudeBatchInputError(
                f"keep_columns {keep_columns} were asked for, but the submit task saved no input columns "
                "(input_columns=None); set input_columns on the submit operator"
            )
        saved = answered
    missing = [c for c in keep_columns if c not in saved.names]
    if missing:
        raise ClaudeBatchInputError(f"keep_columns {missing} are not among the saved input columns {saved.names[:-1]}")
    kept = _kept(keep_columns)[1:]
    names = check_kept_names(kept, rename, schema.names)
    for name, output_name in zip(kept, names, strict=True):
        kept_field = saved.field(name)
        schema = schema.append(kept_field.with_name(output_name).with_type(standard_type(kept_field.type)))
    return schema


def result_column_names(typed: AnswerColumns | None = None) -> list[str]:
    """Every column the output has besides the kept ones: the results, the answer's source and,
    with an output schema, its status, error and field columns."""
    schema = landed_schema()
    return list(schema.names if typed is None else typed.extend_schema(schema).names)


def landed_schema() -> pa.Schema:
    """The columns every landed row has before the kept ones: the results, where its answer
    came from (``answer_source``) and what that answer cost when it was bought
    (``answer_cost_usd``; ``cost_usd`` is what this run paid)."""
    return RESULT_SCHEMA.append(pa.field(ANSWER_SOURCE_COLUMN, pa.string(), nullable=False)).append(
        pa.field(ANSWER_COST_COLUMN, pa.float64())
    )


def _grouped(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Tables of about ``rows`` rows from small record batches (no copies)."""
    buffer: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        buffer.append(batch)
        size += batch.num_rows
        if size >= rows:
            yield pa.Table.from_batches(buffer)
            buffer, size = [], 0
    if buffer:
        yield pa.Table.from_batches(buffer)


def parse_record(
    run_dir: RunDir,
    inputs_record: BatchRecord,
    record: BatchRecord,
    raw_file: StoragePath,
    schema: pa.Schema,
    keep_columns: list[str],
    prices: PriceTable,
    rows_per_group: int,
) -> Iterator[pa.Table]:
    """Tables of ``rows_per_group`` results of one batch, with the chunk's input columns
    joined, checked one to one against the batch's request count."""
    inputs = _input_lookup(run_dir, inputs_record, keep_columns)
    input_ids = inputs.column(CUSTOM_ID_COLUMN) if inputs is not None else None
    parser = ResultParser(record.batch_id or "", record.round, prices)
    seen = 0
    with raw_file.open("rb") as handle:
        for table in _grouped(parser.parse_file(handle, source=str(raw_file)), rows_per_group):
            table = table.append_column(
                pa.field(ANSWER_SOURCE_COLUMN, pa.string(), nullable=False), answer_source_column(table.num_rows, NEW)
            ).append_column(pa.field(ANSWER_COST_COLUMN, pa.float64()), table.column("cost_usd"))
            if inputs is not None and input_ids is not None:
                positions = pc.index_in(table.column("custom_id"), value_set=input_ids)
                if positions.null_count:
                    stray = table.column("custom_id").filter(pc.is_null(positions))[0].as_py()
                    raise ClaudeBatchMissingResultsError(
                        f"batch {record.batch_id!r} returned a result for custom_id {stray!r}, which is not among "
                        f"the requests of {record.label}"
                    )
                joined = inputs.take(positions)
                kept_fields = list(schema)[table.num_columns :]
                table = pa.Table.from_arrays(
                    table.columns
                    + [
                        joined.column(name).cast(kept_field.type)
                        for name, kept_field in zip(joined.column_names[1:], kept_fields, strict=True)
                    ],
                    schema=schema,
                )
            seen += table.num_rows
            yield table
    if seen != record.request_count:
        raise ClaudeBatchMissingResultsError(
            f"batch {record.batch_id!r} ({record.label}) returned {seen} results for {record.request_count} "
            f"requests; the raw results are kept at {raw_file}. Delete that file and rerun the task to download "
            "them again."
        )


#: A row's place in its part while the part is put in input order (never written).
_PLACE_COLUMN = "__place"


def request_order(run_dir: RunDir, base: BatchRecord) -> pa.Array | None:
    """A chunk's custom_ids in request order, which is its rows' input order: from the saved
    input columns (one column read), else the request file; ``None`` when neither is kept."""
    if base.inputs_file and (run_dir / base.inputs_file).exists():
        with (run_dir / base.inputs_file).open("rb") as handle:
            return pq.read_table(handle, columns=[CUSTOM_ID_COLUMN]).column(CUSTOM_ID_COLUMN).combine_chunks()
    requests = run_dir / base.requests_file
    if base.requests_file and requests.exists():
        with requests.open("rb") as handle:
            return pa.array([request_id(line) for line in iter_file_lines(handle) if line], pa.string())
    return None


def _places(table: pa.Table, order: pa.Array, record: BatchRecord) -> pa.Array:
    """Each row's place among the chunk's requests (checked: a stranger is an error)."""
    places = pc.index_in(table.column(CUSTOM_ID_COLUMN), value_set=order)
    if places.null_count:
        stray = table.column(CUSTOM_ID_COLUMN).filter(pc.is_null(places))[0].as_py()
        raise ClaudeBatchMissingResultsError(
            f"batch {record.batch_id!r} returned a result for custom_id {stray!r}, which is not among the requests "
            f"of {record.label}"
        )
    return places.combine_chunks() if isinstance(places, pa.ChunkedArray) else places


def _keep_final(
    batch: pa.RecordBatch, round_number: int, retried: pa.Array, retried_rounds: pa.Array
) -> pa.RecordBatch:
    """Only the rows whose request's final outcome comes from ``round_number``."""
    if len(retried) == 0:
        return batch
    position = pc.index_in(batch.column("custom_id"), value_set=retried)
    final = pc.fill_null(pc.take(retried_rounds, position), 0)
    return batch.filter(pc.equal(final, round_number))


class _BackgroundWriter:
    """A Parquet writer whose row groups are encoded and compressed on a thread of their own
    (pyarrow releases the GIL there) while the next ones are parsed. At most one row group
    waits, so memory stays bounded; a write error surfaces at the next write or on close."""

    _MAX_PENDING = 1

    def __init__(self, sink: Any, schema: pa.Schema, compression: str) -> None:
        self._writer = pq.ParquetWriter(sink, schema, compression=compression)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-writer")
        self._pending: deque[Future[None]] = deque()

    def write(self, table: pa.Table, row_group_size: int) -> None:
        while len(self._pending) >= self._MAX_PENDING:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._writer.write_table, table, row_group_size=row_group_size))

    def __enter__(self) -> _BackgroundWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            while self._pending:
                future = self._pending.popleft()
                if exc_info[0] is None:
                    future.result()
                else:
                    future.cancel()
        finally:
            self._pool.shutdown(wait=True)
            self._writer.close()


@contextmanager
def _landing_memory_pool() -> Iterator[None]:
    """Arrow allocations of a landing go to jemalloc (or the system allocator): with pyarrow's
    default mimalloc, parsing block after block measured 30% slower and kept 25% more memory
    resident (docs/benchmarks.md). The previous default comes back afterwards."""
    previous = pa.default_memory_pool()
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow build without jemalloc
        pool = pa.system_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def write_parts(
    run_dir: RunDir | StoragePath,
    manifest: Manifest,
    raw_files: dict[str, StoragePath],
    staged_dir: StoragePath,
    *,
    keep_columns: list[str],
    prices: PriceTable,
    rename: Mapping[str, str] | None = None,
    row_group_size: int = 65_536,
    compression: str = "zstd",
    answer_columns: AnswerColumns | None = None,
    new_answers: NewAnswers | None = None,
) -> LandingStats:
    """Write ``part-NNNNN.parquet`` per chunk into ``staged_dir`` and return the totals.

    Each request's row comes from the last round it was submitted in. With ``answer_columns``,
    each final row also gets its answer's typed columns (``typed_columns``) or citations
    (``citations``).
    """
    run_dir = RunDir.of(run_dir)
    with _landing_memory_pool():
        parsed_schema = output_schema(run_dir, manifest, keep_columns, rename)
        parts = _ChunkParts(
            run_dir=run_dir,
            raw_files=raw_files,
            staged_dir=staged_dir,
            keep_columns=keep_columns,
            prices=prices,
            row_group_size=row_group_size,
            compression=compression,
            answer_columns=answer_columns,
            parsed_schema=parsed_schema,
            schema=parsed_schema if answer_columns is None else answer_columns.extend_schema(parsed_schema),
            stats=LandingStats(prices=prices),
            answered=AnsweredRows(run_dir, manifest),
            new_answers=new_answers if new_answers is not None else NewAnswers(run_dir, manifest),
        )
        for chunk, records in records_by_chunk(manifest).items():
            parts.write_chunk(chunk, records)
        stats = parts.stats
        if parts.answered.any:
            _write_answered(
                parts.answered,
                staged_dir,
                manifest,
                parsed_schema,
                parts.schema,
                keep_columns,
                rename,
                answer_columns,
                stats,
                row_group_size=row_group_size,
                compression=compression,
            )
        stats.rounds = max((r.round for r in manifest.batches), default=0) + 1
        stats.resubmitted = sum(r.request_count for r in manifest.batches if r.round > 0)
        return stats


@dataclass
class _ChunkParts:
    """What writing every chunk's part shares: where results are, the schemas, the totals and
    the rows and answers collected on the way (see :func:`write_parts`)."""

    run_dir: RunDir
    raw_files: dict[str, StoragePath]
    staged_dir: StoragePath
    keep_columns: list[str]
    prices: PriceTable
    row_group_size: int
    compression: str
    answer_columns: AnswerColumns | None
    parsed_schema: pa.Schema
    schema: pa.Schema
    stats: LandingStats
    answered: AnsweredRows
    new_answers: NewAnswers

    def write_chunk(self, chunk: int, records: list[BatchRecord]) -> None:
        """One chunk's part: each request's row from the last round it went out in, in request
        order when the chunk's requests are still there; every request exactly once."""
        base = records[0]
        final = final_rounds(self.run_dir, records)
        retried = pa.array(list(final), pa.string())
        retried_rounds = pa.array(list(final.values()), pa.int32())
        name = part_file_name(chunk)
        rows = 0
        pending = self.new_answers.for_chunk(chunk, base)
        order = request_order(self.run_dir, base)
        failed = True
        with (
            (self.staged_dir / name).open("wb") as sink,
            _BackgroundWriter(sink, self.schema, self.compression) as writer,
            RowSorter(_PLACE_COLUMN, self.row_group_size) as in_order,
        ):
            for record in records:
                # Listed even when every row of it was superseded by a later round: it was
                # landed, with nothing (and nothing billed) left from it.
                self.stats.by_batch.setdefault(record.batch_id or "", Counter())
                for kept in self._final_rows(base, record, retried, retried_rounds):
                    if pending is not None:
                        pending.add(kept)
                    rows += kept.num_rows
                    if order is None:  # the chunk's requests are gone: as the API sent them
                        writer.write(kept, self.row_group_size)
                    else:
                        in_order.add(kept.append_column(_PLACE_COLUMN, _places(kept, order, record)))
            for table in in_order.tables():
                writer.write(table, self.row_group_size)
            failed = False
        if pending is not None:
            pending.close(failed=failed)
        if rows != base.request_count:
            raise ClaudeBatchMissingResultsError(
                f"chunk {chunk} has {base.request_count} requests but {rows} final results across "
                f"{len(records)} round(s); the raw results are kept under {self.run_dir.raw_folder}"
            )
        self.stats.files.append(name)

    def _final_rows(
        self, base: BatchRecord, record: BatchRecord, retried: pa.Array, retried_rounds: pa.Array
    ) -> Iterator[pa.Table]:
        """``record``'s rows that are final (not sent again in a later round), typed, counted."""
        raw = self.raw_files[record.batch_id or ""]
        for table in parse_record(
            self.run_dir,
            base,
            record,
            raw,
            self.parsed_schema,
            self.keep_columns,
            self.prices,
            self.row_group_size,
        ):
            kept = _keep_final(table, record.round, retried, retried_rounds)
            if kept.num_rows:
                self.answered.collect(kept)
                if self.answer_columns is not None:
                    kept = self.answer_columns.add_columns(kept)
                self.stats.add(kept)
                yield kept


def _write_answered(
    answered: AnsweredRows,
    staged_dir: StoragePath,
    manifest: Manifest,
    parsed_schema: pa.Schema,
    schema: pa.Schema,
    keep_columns: list[str],
    rename: Mapping[str, str] | None,
    answer_columns: AnswerColumns | None,
    stats: LandingStats,
    *,
    row_group_size: int,
    compression: str,
) -> None:
    """The part of the rows that were not sent (reused and deduplicated), after the chunks', in
    input order."""
    name = part_file_name(1 + max((r.chunk for r in manifest.batches), default=-1))
    rows = 0
    with (
        (staged_dir / name).open("wb") as sink,
        _BackgroundWriter(sink, schema, compression) as writer,
        RowSorter(_PLACE_COLUMN, row_group_size) as in_order,
    ):
        for table in answered.tables(parsed_schema, keep_columns, rename, row_group_size):
            stats.reuse_saved_usd += float(pc.sum(table.column("saved_usd")).as_py() or 0.0)
            place = table.column(ANSWERED_ROW_COLUMN)
            table = table.drop_columns(["saved_usd", ANSWERED_ROW_COLUMN])
            if answer_columns is not None:
                table = answer_columns.add_columns(table)
            stats.add(table)
            rows += table.num_rows
            in_order.add(table.append_column(_PLACE_COLUMN, place))
        for table in in_order.tables():
            writer.write(table, row_group_size)
    counts = answered.counts
    expected = (counts.reused + counts.deduplicated + counts.awaited_answered) if counts else 0
    if rows != expected:
        raise ClaudeBatchMissingResultsError(
            f"{expected} rows were answered without being sent, but {rows} were landed from "
            f"{answered.counts.answered_file if answered.counts else 'nowhere'}"
        )
    stats.files.append(name)


def cost_table(stats: LandingStats) -> str:
    """Per-batch tokens and cost, for the task log."""
    header = (
        f"{'batch':<40} {'rows':>8} {'input':>12} {'output':>12} {'cache write':>12} {'cache read':>12} {'cost $':>10}"
    )
    lines = [header, "-" * len(header)]
    for batch_id, totals in stats.by_batch.items():
        lines.append(
            f"{batch_id:<40} {int(totals['rows']):>8} "
            + " ".join(f"{int(totals[name]):>12}" for name in TOKEN_COLUMNS)
            + (f" {totals['cost_usd']:>10.4f}" if not totals["unpriced"] else f" {'unknown':>10}")
        )
    lines.append(
        f"{'total':<40} {stats.rows:>8} "
        + " ".join(f"{int(stats.tokens[name]):>12}" for name in TOKEN_COLUMNS)
        + f" {stats.cost_usd:>10.4f}"
    )
    fees = stats.web_search_fee_usd
    lines.append(
        f"At synchronous API prices the same requests cost ${sync_api_cost(stats.cost_usd, per_call_fees=fees):.4f}"
        + (f" (web search fees ${fees:.4f}, not discounted, the same on both)" if fees else "")
        + f": the batch discount saved ${batch_saving(stats.cost_usd, per_call_fees=fees):.4f}."
    )
    return "\n".join(lines)
