"""Rows put back in input order in bounded memory (batching/land/row_order.py)."""

from __future__ import annotations

import os
import random

import pyarrow as pa
import pytest

from airflow_provider_claude_batch.batching.land.row_order import RowSorter


def _shuffled(rows: int, seed: int = 7) -> list[pa.Table]:
    places = list(range(rows))
    random.Random(seed).shuffle(places)
    table = pa.table(
        {
            "custom_id": [f"id-{p}" for p in places],
            "text": [("t" * (p % 50)) or None for p in places],
            "place": pa.array(places, pa.int64()),
        }
    )
    return [table.slice(start, 97) for start in range(0, rows, 97)]


@pytest.mark.parametrize("rows_per_group", [1000, 64])  # held in memory; spilled to a local file
def test_rows_come_back_in_key_order_in_groups_of_at_most_rows_per_group(rows_per_group: int) -> None:
    with RowSorter("place", rows_per_group) as sorter:
        for table in _shuffled(900):
            sorter.add(table)
        assert sorter.spilled == (rows_per_group < 900)
        path = sorter._path
        out = list(sorter.tables())
    assert all(t.num_rows <= rows_per_group for t in out)
    assert all(t.column_names == ["custom_id", "text"] for t in out)
    landed = pa.concat_tables(out)
    assert landed.column("custom_id").to_pylist() == [f"id-{p}" for p in range(900)]
    assert landed.column("text").to_pylist() == [("t" * (p % 50)) or None for p in range(900)]
    if path is not None:
        assert not os.path.exists(path)  # the spill file is gone once closed


def test_nothing_in_nothing_out_and_an_error_removes_the_file() -> None:
    with RowSorter("place", 10) as sorter:
        assert list(sorter.tables()) == []
    with pytest.raises(RuntimeError), RowSorter("place", 10) as sorter:
        for table in _shuffled(50):
            sorter.add(table)
        path = sorter._path
        raise RuntimeError("the landing failed")
    assert path is not None and not os.path.exists(path)
