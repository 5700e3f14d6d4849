"""A part's rows put back in input order, in bounded memory.

Rows reach a part in no useful order: the API returns a batch's results in any order, a later
round's rows come after the earlier round's, and the rows answered without a request come in
the order of the answer store's partitions. :class:`RowSorter` takes them in any order, each
with its place in the input (an integer column), and hands them back in that order, in tables
of at most ``rows_per_group`` rows.

Memory: up to ``rows_per_group`` rows are held and sorted in memory (a chunk of at most one
row group, the common case, costs no more than before). Past that, every table is appended as
it comes to a temporary Arrow file on the local disk, and only the places stay in memory (8
bytes a row, and 16 for their order); each group is then taken from the memory-mapped file, so
the heap holds one group at a time however large the part. The file is removed on close.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class RowSorter:
    """Tables with a ``key`` column in, the same rows in ``key`` order (without it) out."""

    def __init__(self, key: str, rows_per_group: int) -> None:
        self.key = key
        self.rows_per_group = max(1, rows_per_group)
        self._held: list[pa.Table] = []
        self._held_rows = 0
        self._schema: pa.Schema | None = None
        # Spilled: the file, its writer, and per record batch its keys.
        self._path: str | None = None
        self._sink: Any = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._keys: list[np.ndarray] = []
        self._source: Any = None

    @property
    def spilled(self) -> bool:
        return self._path is not None

    def add(self, table: pa.Table) -> None:
        """Take ``table``'s rows (any order, ``key`` column included)."""
        if not table.num_rows:
            return
        if self._schema is None:
            self._schema = table.schema
        elif not table.schema.equals(self._schema):
            table = table.cast(self._schema)
        if self._writer is None and self._held_rows + table.num_rows <= self.rows_per_group:
            self._held.append(table)
            self._held_rows += table.num_rows
            return
        if self._writer is None:
            self._spill_start()
            held, self._held, self._held_rows = self._held, [], 0
            for earlier in held:
                self._spill(earlier)
        self._spill(table)

    def _spill_start(self) -> None:
        assert self._schema is not None
        handle, self._path = tempfile.mkstemp(prefix="claude-batch-rows-", suffix=".arrow")
        os.close(handle)
        self._sink = pa.OSFile(self._path, "wb")
        self._writer = pa.ipc.new_file(self._sink, self._schema)

    def _spill(self, table: pa.Table) -> None:
        assert self._writer is not None
        for batch in table.to_batches():
            if batch.num_rows:
                self._writer.write_batch(batch)
                self._keys.append(batch.column(self.key).to_numpy(zero_copy_only=False).astype(np.int64))

    def tables(self) -> Iterator[pa.Table]:
        """Every row taken, in ``key`` order, in tables of at most ``rows_per_group`` rows."""
        if self._writer is None:
            if self._held:
                table = pa.concat_tables(self._held)
                self._held, self._held_rows = [], 0
                yield self._ordered(table)
            return
        self._writer.close()
        self._sink.close()
        self._writer = None
        self._source = pa.memory_map(self._path, "r")
        batches = list(_file_batches(self._source))
        sizes = np.array([len(keys) for keys in self._keys], dtype=np.int64)
        batch_of = np.repeat(np.arange(len(sizes)), sizes)
        offset = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        order = np.argsort(np.concatenate(self._keys), kind="stable")
        self._keys = []
        for start in range(0, len(order), self.rows_per_group):
            taken = order[start : start + self.rows_per_group]
            # Read each record batch's rows of this group in file order, then order the group.
            by_place = taken[np.lexsort((offset[taken], batch_of[taken]))]
            cuts = np.flatnonzero(np.diff(batch_of[by_place])) + 1
            pieces = [batches[int(batch_of[part[0]])].take(pa.array(offset[part])) for part in np.split(by_place, cuts)]
            yield self._ordered(pa.Table.from_batches(pieces, schema=self._schema))

    def _ordered(self, table: pa.Table) -> pa.Table:
        order = pc.sort_indices(table.column(self.key))
        return table.take(order).drop_columns([self.key])

    def close(self) -> None:
        """Drop what is held and remove the file, if one was written."""
        self._held = []
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        for handle in (self._sink, self._source):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
        self._sink = self._source = None
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            self._path = None

    def __enter__(self) -> RowSorter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _file_batches(source: Any) -> Iterator[pa.RecordBatch]:
    reader = pa.ipc.open_file(source)
    for index in range(reader.num_record_batches):
        yield reader.get_batch(index)
