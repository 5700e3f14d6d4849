"""The answer store: every succeeded answer, by content key, shared by all runs of a work directory.

Layout (names from ``run_dir``)::

    {work_dir}/_answers/p={h}/seg-<name>.parquet     answers one landing added
    {work_dir}/_answers/p={h}/base-<time>-<id>.parquet  a compaction's merge
    {work_dir}/_answers/_inflight/<owner>.parquet     requests a run sent and has not landed

``h`` is the first hex digit of the key (:mod:`content_key`): sixteen partitions, so a lookup
holds one partition's keys at a time, never the whole store.

Invariants:

* **Files are immutable.** A landing writes new files (atomically: a temporary name, then
  one rename or copy), a compaction writes one new file per partition and only then deletes
  the files it merged. Two runs landing at once, or a landing during a compaction, never
  corrupt the store and need no lock: a reader may see an answer twice (the newest counts),
  never half of a file.
* **A landing's file name is a function of what it lands** (the run folder and its batch
  ids), so a retried landing replaces its own file instead of adding a copy.
* **Only succeeded answers are stored**; errored, expired and canceled results are not
  answers.
* **An unreadable file costs only its own answers.** Lookups and compactions skip it with a
  warning; compaction neither merges nor deletes it.
* **Lookups take the newest answer per key that is younger than the max age.** A file that
  disappears under a lookup (a compaction merged it) makes the lookup of that partition start
  over; the merged file holds the same answers.

Each answer keeps what landing needs to write its row again (text, content, stop reason,
model, usage, the cost it had) and where it came from (batch, DAG, run, task, custom_id,
time), so a reused row says which run paid for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_provider_claude_batch.batching.api.results import RESULT_SCHEMA
from airflow_provider_claude_batch.batching.render.content_key import KEY_TYPE, as_arrow, as_numpy, partition_of
from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
from airflow_provider_claude_batch.batching.state.storage import (
    StoragePath,
    atomic_writer,
    children,
    parquet_bytes,
    write_whole,
)

log = logging.getLogger(__name__)

PARTITIONS = "0123456789abcdef"
#: Result columns an answer keeps (those that describe the answer, not the row of a run).
ANSWER_COLUMNS = tuple(
    name
    for name in RESULT_SCHEMA.names
    if name not in ("custom_id", "batch_id", "round", "result_type", "error_type", "error_message")
)
ORIGIN_SCHEMA = pa.schema(
    [
        pa.field("batch_id", pa.string()),
        pa.field("custom_id", pa.string()),
        pa.field("dag_id", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("task_id", pa.string()),
        pa.field("map_index", pa.int32()),
    ]
)
STORE_SCHEMA = pa.schema(
    [
        pa.field("key", KEY_TYPE, nullable=False),
        pa.field("answered_at", pa.timestamp("us", tz="UTC"), nullable=False),
        *[RESULT_SCHEMA.field(name) for name in ANSWER_COLUMNS],
        *ORIGIN_SCHEMA,
    ]
)
IN_FLIGHT_SCHEMA = pa.schema(
    [
        pa.field("key", KEY_TYPE, nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("custom_id", pa.string(), nullable=False),
        pa.field("sent_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
#: The API keeps a batch's results 29 days: older requests in flight cannot be waited for.
IN_FLIGHT_MAX_AGE = timedelta(days=28)
#: Rows per row group: a fetch reads whole row groups, so smaller groups read less per hit.
ROW_GROUP_ROWS = 16_384
#: How answer files are written. Keys are hash digests: they neither compress nor repeat, so
#: the key column is stored plain (no dictionary, no zstd), which a lookup reads about 7x
#: faster than the writer's defaults for no more bytes. Everything else: zstd, dictionaries.
WRITE_OPTIONS: dict[str, Any] = {
    "compression": {name: "none" if name == "key" else "zstd" for name in STORE_SCHEMA.names},
    "use_dictionary": [name for name in STORE_SCHEMA.names if name != "key"],
}
#: A lookup that loses a file to a compaction tries the partition again this many times.
_ATTEMPTS = 4
#: Partitions with more files than this are worth compacting after a landing.
COMPACT_AFTER_FILES = 64


@dataclass(frozen=True)
class AnswerOrigin:
    """The task instance that paid for the answers a landing adds."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _files(folder: StoragePath) -> list[StoragePath]:
    """The Parquet files of ``folder`` now (none when it does not exist). Listed, never checked
    with ``exists()`` first: on object storage that may answer from a listing the process cached
    before another worker wrote the folder (and a run would miss requests in flight)."""
    try:
        entries = children(folder)
    except (FileNotFoundError, NotADirectoryError):  # (UPath on object storage: the latter)
        return []
    return sorted(
        (child for child in entries if child.name.endswith(".parquet") and not child.name.startswith(".")),
        key=lambda child: child.name,
    )


def _cutoff(max_age: timedelta | None, now: datetime | None) -> pa.Scalar | None:
    if max_age is None:
        return None
    return pa.scalar((now or utcnow()) - max_age, pa.timestamp("us", tz="UTC"))


def _read_index(path: StoragePath) -> pa.Table | None:
    """A store file's ``key`` and ``answered_at``; None (with a warning) when it is not a
    readable Parquet file of answers. The store is a cache: an unreadable file costs the
    answers it held, never the lookups, landings and compactions of its partition. A file
    that is gone raises ``FileNotFoundError`` (a compaction merged it: the caller lists again)."""
    try:
        with path.open("rb") as handle:
            return pq.read_table(handle, columns=["key", "answered_at"])
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        log.warning("Skipping %s in the answer store: it is not a readable file of answers (%s).", path, exc)
        return None


def _indexed(files: list[StoragePath]) -> tuple[list[StoragePath], pa.Table | None]:
    """The readable ones of ``files`` and their keys and times, with each row's ``file`` (its
    position in the readable list) and ``row`` (its row in that file)."""
    readable: list[StoragePath] = []
    tables: list[pa.Table] = []
    for path in files:
        table = _read_index(path)
        if table is None:
            continue
        number = len(readable)
        readable.append(path)
        tables.append(
            table.append_column("file", pa.array(np.full(table.num_rows, number, dtype=np.int32))).append_column(
                "row", pa.array(np.arange(table.num_rows, dtype=np.int64))
            )
        )
    return readable, (pa.concat_tables(tables) if tables else None)


@dataclass
class PartitionHits:
    """Where the answers of some looked-up keys of one partition are: per hit, the position of
    the key in the lookup, the file and the row in it."""

    digit: str
    positions: np.ndarray
    files: list[StoragePath]
    file_of_hit: np.ndarray
    row_of_hit: np.ndarray


@dataclass
class Hits:
    """The result of :meth:`AnswerStore.lookup`: which looked-up keys have an answer."""

    found: np.ndarray  # bool per looked-up key
    partitions: list[PartitionHits] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.found.sum())


@dataclass
class CompactStats:
    files_before: int = 0
    files_after: int = 0
    answers_kept: int = 0
    expired: int = 0
    duplicates: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def storable(rows: pa.Table) -> pa.ChunkedArray | pa.Array:
    """Which landed rows may be stored as answers: succeeded ones, and under an output schema
    only those whose answer is valid (``output_status``), so that a rerun sends an invalid
    answer again instead of reusing it. The one rule for the landing's pending answers and
    for :meth:`AnswerStore.add`."""
    wanted = pc.equal(rows.column("result_type"), "succeeded")
    if "output_status" in rows.column_names:
        wanted = pc.and_(wanted, pc.equal(rows.column("output_status"), "valid"))
    return wanted


class AnswerStore:
    """The answers of one work directory (see the module docstring)."""

    def __init__(self, work_dir: WorkDir | StoragePath) -> None:
        self.work_dir = WorkDir.of(work_dir)

    def partition(self, digit: str) -> StoragePath:
        return self.work_dir.answers_partition(digit)

    def files(self) -> dict[str, list[StoragePath]]:
        return {digit: _files(self.partition(digit)) for digit in PARTITIONS}

    def needs_compaction(self) -> bool:
        """Whether partitions have grown past :data:`COMPACT_AFTER_FILES` files. Keys spread
        evenly, so one partition (``0``) stands for all: one listing, not sixteen."""
        return len(_files(self.partition(PARTITIONS[0]))) > COMPACT_AFTER_FILES

    # ------------------------------------------------------------------ writing
    def add(self, answers: pa.Table, origin: AnswerOrigin, *, name: str, answered_at: datetime | None = None) -> int:
        """Store the succeeded rows of ``answers`` (result columns plus ``key``). ``name``
        identifies the landing: adding again under the same name replaces its files.
        Returns how many answers were stored."""
        answers = answers.filter(storable(answers))
        if not answers.num_rows:
            return 0
        when = answered_at or utcnow()
        count = answers.num_rows
        columns: dict[str, Any] = {
            "key": answers.column("key"),
            "answered_at": pa.array(np.full(count, int(when.timestamp() * 1_000_000), dtype=np.int64)).cast(
                STORE_SCHEMA.field("answered_at").type
            ),
        }
        for column in ANSWER_COLUMNS:
            columns[column] = answers.column(column)
        columns["batch_id"] = answers.column("batch_id")
        columns["custom_id"] = answers.column("custom_id")
        for key, value in (("dag_id", origin.dag_id), ("run_id", origin.run_id), ("task_id", origin.task_id)):
            columns[key] = pa.array([value] * count, pa.string())
        columns["map_index"] = pa.array(np.full(count, origin.map_index, dtype=np.int32))
        table = pa.Table.from_pydict(columns, schema=STORE_SCHEMA)
        digits = partition_of(as_numpy(table.column("key")))
        for value in np.unique(digits):
            part = table.filter(pa.array(digits == value))
            target = self.partition(PARTITIONS[int(value)]) / f"seg-{name}.parquet"
            write_whole(target, parquet_bytes(part, row_group_size=ROW_GROUP_ROWS, **WRITE_OPTIONS))
        return count

    @staticmethod
    def landing_name(run_folder: str, batch_ids: list[str]) -> str:
        """The file name stem of one landing's answers: the same landing, the same name."""
        digest = hashlib.sha256("\n".join([run_folder, *sorted(batch_ids)]).encode()).hexdigest()
        return digest[:24]

    # ------------------------------------------------------------------ reading
    def lookup(self, keys: np.ndarray, *, max_age: timedelta | None, now: datetime | None = None) -> Hits:
        """Which of ``keys`` (an ``(n, 16)`` array) have an answer younger than ``max_age``
        (``None``: any age), and where the newest one is. Memory: one partition's keys and
        times at a time."""
        found = np.zeros(len(keys), dtype=bool)
        hits = Hits(found)
        if not len(keys):
            return hits
        digits = partition_of(keys)
        cutoff = _cutoff(max_age, now)
        for value in np.unique(digits):
            positions = np.flatnonzero(digits == value)
            part = self._lookup_partition(PARTITIONS[int(value)], keys[positions], positions, cutoff)
            if part is not None:
                found[part.positions] = True
                hits.partitions.append(part)
        return hits

    def _lookup_partition(
        self, digit: str, keys: np.ndarray, positions: np.ndarray, cutoff: pa.Scalar | None
    ) -> PartitionHits | None:
        for attempt in range(_ATTEMPTS):
            try:
                return self._try_lookup(digit, keys, positions, cutoff)
            except FileNotFoundError:
                if attempt == _ATTEMPTS - 1:
                    raise
                log.info("A file of answer partition %s went away (compacted); looking it up again.", digit)
        return None

    def _try_lookup(
        self, digit: str, keys: np.ndarray, positions: np.ndarray, cutoff: pa.Scalar | None
    ) -> PartitionHits | None:
        files = _files(self.partition(digit))
        if not files:
            return None
        # The looked-up keys are the hash table and the stored keys probe it, not the other
        # way round: a run's keys are far fewer than a partition's, and a hash table of them
        # stays in cache (about 20x faster at 1M keys against 10M answers than hashing the
        # partition). Each looked-up key stands for the first looked-up key equal to it.
        wanted = as_arrow(keys)
        first_equal = pc.index_in(wanted, value_set=wanted).to_numpy()
        limit = None if cutoff is None else cutoff.value
        found_key, found_at, found_file, found_row = [], [], [], []
        for number, path in enumerate(files):
            table = _read_index(path)
            if table is None:
                continue
            where = pc.index_in(table.column("key"), value_set=wanted)
            if where.null_count == len(where):
                continue
            rows = np.flatnonzero(pc.is_valid(where).to_numpy(zero_copy_only=False))
            at = table.column("answered_at").take(pa.array(rows)).cast(pa.int64()).to_numpy()
            fresh = slice(None) if limit is None else at >= limit
            found_key.append(pc.drop_null(where).to_numpy()[fresh])
            found_at.append(at[fresh])
            found_row.append(rows[fresh])
            found_file.append(np.full(len(found_row[-1]), number, dtype=np.int32))
        if not found_key or not sum(len(part) for part in found_key):
            return None
        key_of, at_of = np.concatenate(found_key), np.concatenate(found_at)
        file_of, row_of = np.concatenate(found_file), np.concatenate(found_row)
        # The newest answer per key: by key, newest first (stable, so among answers of the
        # same time the file that sorts first wins), then each key's first.
        order = np.lexsort((-at_of, key_of))
        key_of, file_of, row_of = key_of[order], file_of[order], row_of[order]
        newest = np.ones(len(key_of), dtype=bool)
        newest[1:] = key_of[1:] != key_of[:-1]
        answer_of_key = np.full(len(keys), -1, dtype=np.int64)
        answer_of_key[key_of[newest]] = np.flatnonzero(newest)
        answer = answer_of_key[first_equal]
        matched = answer >= 0
        return PartitionHits(
            digit=digit,
            positions=positions[matched],
            files=files,
            file_of_hit=file_of[answer[matched]],
            row_of_hit=row_of[answer[matched]],
        )

    def fetch(self, hits: Hits, *, columns: list[str] | None = None) -> Iterator[tuple[np.ndarray, pa.Table]]:
        """The answers of ``hits``, as (positions in the lookup, rows) per row group read.
        Reads only the row groups that hold a hit."""
        for part in hits.partitions:
            yield from self._fetch_partition(part, columns)

    def _fetch_partition(self, part: PartitionHits, columns: list[str] | None) -> Iterator[tuple[np.ndarray, pa.Table]]:
        for number in np.unique(part.file_of_hit):
            in_file = part.file_of_hit == number
            rows = part.row_of_hit[in_file]
            positions = part.positions[in_file]
            with part.files[int(number)].open("rb") as handle:
                parquet = pq.ParquetFile(handle)
                sizes = [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)]
                starts = np.concatenate([[0], np.cumsum(sizes)])
                groups = np.searchsorted(starts, rows, side="right") - 1
                for group in np.unique(groups):
                    chosen = groups == group
                    table = parquet.read_row_group(int(group), columns=columns)
                    yield positions[chosen], table.take(pa.array(rows[chosen] - starts[group]))

    # ------------------------------------------------------------------ requests in flight
    @staticmethod
    def owner_name(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
        """The file name stem of one task instance's in-flight entry."""
        return hashlib.sha256(f"{dag_id}\n{run_id}\n{task_id}\n{map_index}".encode()).hexdigest()[:24]

    def mark_in_flight(self, owner: str, entries: pa.Table) -> None:
        """Record that ``owner`` sent these requests (``key``, ``batch_id``, ``custom_id``) and
        has not landed them yet; another run that needs the same requests waits for them."""
        table = pa.Table.from_arrays(
            [
                entries.column("key"),
                entries.column("batch_id"),
                entries.column("custom_id"),
                pa.array(np.full(entries.num_rows, int(utcnow().timestamp() * 1_000_000), dtype=np.int64)).cast(
                    IN_FLIGHT_SCHEMA.field("sent_at").type
                ),
            ],
            schema=IN_FLIGHT_SCHEMA,
        )
        write_whole(self.work_dir.in_flight_folder / f"{owner}.parquet", parquet_bytes(table))

    def landed(self, owner: str) -> None:
        """``owner``'s requests are landed (their answers are in the store, or are not answers)."""
        path = self.work_dir.in_flight_folder / f"{owner}.parquet"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # not after exists(): a cached listing may deny what is there

    def retire_batch(self, batch_id: str) -> int:
        """Forget the requests in flight in ``batch_id``, whoever sent them: its batch has ended
        and its answers are in the store now (stored by whoever downloaded them: the run that
        sent them, or a run that awaited them), so later runs reuse them instead of awaiting a
        batch whose owner may never land. Returns how many entries were dropped."""
        dropped = 0
        for path in _files(self.work_dir.in_flight_folder):
            if not path.name.endswith(".parquet"):
                continue
            with contextlib.suppress(FileNotFoundError):
                with path.open("rb") as handle:
                    entries = pq.read_table(handle)
                if "batch_id" not in entries.column_names:
                    continue
                others = pc.not_equal(entries.column("batch_id"), batch_id)
                kept = entries.filter(others)
                if kept.num_rows == entries.num_rows:
                    continue
                dropped += entries.num_rows - kept.num_rows
                if kept.num_rows:
                    write_whole(path, parquet_bytes(kept))
                else:
                    path.unlink()
        return dropped

    def in_flight(self, keys: np.ndarray, *, exclude: str) -> tuple[np.ndarray, pa.Table]:
        """Which of ``keys`` another task instance (not ``exclude``) sent and has not landed,
        in a batch younger than the API keeps results. Returns a bool per key and, per found
        key in order, its ``batch_id`` and ``custom_id`` there."""
        found = np.zeros(len(keys), dtype=bool)
        empty = pa.table({"batch_id": pa.array([], pa.string()), "custom_id": pa.array([], pa.string())})
        if not len(keys):
            return found, empty
        tables = []
        for path in _files(self.work_dir.in_flight_folder):
            if path.name == f"{exclude}.parquet":
                continue
            with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
                tables.append(pq.read_table(handle).cast(IN_FLIGHT_SCHEMA))
        if not tables:
            return found, empty
        entries = pa.concat_tables(tables)
        entries = entries.filter(pc.greater_equal(entries.column("sent_at"), _cutoff(IN_FLIGHT_MAX_AGE, None)))
        where = pc.index_in(as_arrow(keys), value_set=entries.column("key").combine_chunks())
        found = pc.is_valid(where).to_numpy(zero_copy_only=False)
        rows = where.filter(pc.is_valid(where))
        return found, entries.select(["batch_id", "custom_id"]).take(rows)

    # ------------------------------------------------------------------ upkeep
    def compact(self, *, max_age: timedelta | None, now: datetime | None = None, min_files: int = 2) -> CompactStats:
        """Merge each partition's files into one, dropping answers older than ``max_age`` and
        all but the newest answer per key. Safe while runs land and look up: the merged file is
        written before the files it replaces are deleted, and a file written meanwhile is left
        for the next compaction. Partitions with fewer than ``min_files`` files and nothing
        expired are left as they are."""
        stats = CompactStats()
        cutoff = _cutoff(max_age, now)
        for digit in PARTITIONS:
            files = _files(self.partition(digit))
            stats.files_before += len(files)
            if not files:
                continue
            try:
                kept_files = self._compact_partition(digit, files, cutoff, min_files, stats)
            except FileNotFoundError:
                # Another compaction merged (and deleted) some of these files first: its merged
                # file holds their answers, and the next compaction takes this partition.
                log.info("Answer partition %s is being compacted elsewhere; left as it is.", digit)
                kept_files = len(_files(self.partition(digit)))
            stats.files_after += kept_files
        self._drop_stale_in_flight(now)
        return stats

    def _drop_stale_in_flight(self, now: datetime | None) -> None:
        """In-flight entries of runs that never landed, older than a batch's results live."""
        cutoff = _cutoff(IN_FLIGHT_MAX_AGE, now)
        for path in _files(self.work_dir.in_flight_folder):
            with contextlib.suppress(FileNotFoundError):
                with path.open("rb") as handle:
                    sent_at = pq.read_table(handle, columns=["sent_at"]).column("sent_at")
                newest = pc.max(sent_at)
                if not newest.is_valid or pc.less(newest, cutoff).as_py():
                    path.unlink()

    def _compact_partition(
        self, digit: str, files: list[StoragePath], cutoff: pa.Scalar | None, min_files: int, stats: CompactStats
    ) -> int:
        listed = len(files)
        # An unreadable file is neither merged nor deleted: it stays for a person to look at.
        files, indexed = _indexed(files)
        unreadable = listed - len(files)
        if indexed is None:
            return unreadable
        stored = indexed
        total = stored.num_rows
        fresh = stored if cutoff is None else stored.filter(pc.greater_equal(stored.column("answered_at"), cutoff))
        expired = total - fresh.num_rows
        # Newest answer per key: sort by key then newest first, keep each key's first row.
        ordered = fresh.take(pc.sort_indices(fresh, [("key", "ascending"), ("answered_at", "descending")]))
        keys = as_numpy(ordered.column("key")) if ordered.num_rows else np.zeros((0, 16), np.uint8)
        first = np.ones(len(keys), dtype=bool)
        if len(keys) > 1:
            first[1:] = (keys[1:] != keys[:-1]).any(axis=1)
        winners = ordered.filter(pa.array(first))
        duplicates = ordered.num_rows - winners.num_rows
        if len(files) < min_files and not expired and not duplicates:
            stats.answers_kept += winners.num_rows
            return listed
        stats.expired += expired
        stats.duplicates += duplicates
        stats.answers_kept += winners.num_rows
        file_of = winners.column("file").to_numpy()
        row_of = winners.column("row").to_numpy()
        written = 0
        if winners.num_rows:
            target = self.partition(digit) / f"base-{utcnow().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
            with atomic_writer(target) as sink:
                writer = pq.ParquetWriter(sink, STORE_SCHEMA, **WRITE_OPTIONS)
                try:
                    for number, path in enumerate(files):
                        rows = np.sort(row_of[file_of == number])
                        if not len(rows):
                            continue
                        with path.open("rb") as handle:
                            source = pq.ParquetFile(handle)
                            start = 0
                            for group in range(source.num_row_groups):
                                size = source.metadata.row_group(group).num_rows
                                inside = rows[(rows >= start) & (rows < start + size)] - start
                                if len(inside):
                                    table = source.read_row_group(group).cast(STORE_SCHEMA)
                                    writer.write_table(table.take(pa.array(inside)), row_group_size=ROW_GROUP_ROWS)
                                start += size
                finally:
                    writer.close()
            written = 1
        for path in files:
            with contextlib.suppress(FileNotFoundError):  # another compaction got there first
                path.unlink()
        return written + unreadable
