"""Input sources stream as record batches (no Airflow, no network)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.render.sources import open_source
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

TABLE = pa.table({"id": ["a", "b", "c"], "body": ["x", "y", "z"]})


def _rows(source, **kwargs) -> list[dict]:
    opened = open_source(source, **kwargs)
    return [row for batch in opened.batches for row in batch.to_pylist()]


def test_lists_dataframes_and_tables() -> None:
    assert _rows(["p", "q"]) == [{"text": "p"}, {"text": "q"}]
    assert _rows([{"id": "a", "body": "x"}]) == [{"id": "a", "body": "x"}]
    assert _rows(pd.DataFrame({"id": ["a"], "body": ["x"]})) == [{"id": "a", "body": "x"}]
    assert _rows(TABLE) == TABLE.to_pylist()


def test_files_of_each_format(tmp_path: Path) -> None:
    pq.write_table(TABLE, tmp_path / "t.parquet")
    pacsv.write_csv(TABLE, tmp_path / "t.csv")
    (tmp_path / "t.jsonl").write_text(
        "".join(f'{{"id": "{r["id"]}", "body": "{r["body"]}"}}\n' for r in TABLE.to_pylist())
    )
    for name in ("t.parquet", "t.csv", "t.jsonl"):
        assert _rows(str(tmp_path / name)) == TABLE.to_pylist(), name
    assert _rows(f"file://{tmp_path}/t.parquet") == TABLE.to_pylist()


def test_folder_of_parquet_skips_hidden_files(tmp_path: Path) -> None:
    (tmp_path / "ds=1").mkdir()
    pq.write_table(TABLE.slice(0, 2), tmp_path / "ds=1" / "part-0.parquet")
    pq.write_table(TABLE.slice(2), tmp_path / "ds=1" / "part-1.parquet")
    (tmp_path / "ds=1" / "_SUCCESS").write_text("")
    (tmp_path / "ds=1" / ".part-2.parquet.crc").write_text("junk")
    assert _rows(tmp_path / "ds=1") == TABLE.to_pylist()


def test_columns_limit_what_is_read(tmp_path: Path) -> None:
    pq.write_table(TABLE, tmp_path / "t.parquet")
    opened = open_source(tmp_path / "t.parquet", columns=["body"])
    assert opened.schema.names == ["id", "body"]  # the full schema, for error messages
    assert next(opened.batches).schema.names == ["body"]


def test_memory_is_streamed_in_record_batches(tmp_path: Path) -> None:
    pq.write_table(pa.table({"n": list(range(10_000))}), tmp_path / "big.parquet", row_group_size=1000)
    sizes = [b.num_rows for b in open_source(tmp_path / "big.parquet", batch_rows=1000).batches]
    assert sum(sizes) == 10_000
    assert max(sizes) <= 1000


def test_errors_name_the_source(tmp_path: Path) -> None:
    with pytest.raises(ClaudeBatchInputError, match="does not exist"):
        open_source(tmp_path / "missing.parquet")
    (tmp_path / "data.bin").write_bytes(b"\x00\x01")
    with pytest.raises(ClaudeBatchInputError, match=r"cannot tell the format of source .*data.bin"):
        open_source(tmp_path / "data.bin")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ClaudeBatchInputError, match="broken.parquet cannot be read"):
        list(open_source(tmp_path / "broken.parquet").batches)
    (tmp_path / "mixed").mkdir()
    pq.write_table(TABLE, tmp_path / "mixed" / "a.parquet")
    pacsv.write_csv(TABLE, tmp_path / "mixed" / "b.csv")
    with pytest.raises(ClaudeBatchInputError, match="mixes formats"):
        open_source(tmp_path / "mixed")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClaudeBatchInputError, match="empty folder"):
        open_source(tmp_path / "empty")
    with pytest.raises(ClaudeBatchInputError, match="unknown source_format"):
        open_source(tmp_path / "mixed", source_format="xml")
    with pytest.raises(ClaudeBatchInputError, match="unsupported source"):
        open_source(None)


def test_a_file_with_no_bytes_or_only_blank_lines_has_no_rows_like_a_header_only_csv(tmp_path: Path) -> None:
    (tmp_path / "header.csv").write_text("id,body\n")
    for name in ("empty.csv", "empty.jsonl", "empty.parquet"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "blank.csv").write_text("\n\n")
    (tmp_path / "blank.jsonl").write_text(" \n\n")
    assert _rows(tmp_path / "header.csv") == []
    for name in ("empty.csv", "empty.jsonl", "empty.parquet", "blank.csv", "blank.jsonl"):
        opened = open_source(tmp_path / name, columns=["id", "body"])
        assert list(opened.batches) == [], name
        # Only the columns asked for, since the file names none.
        assert opened.schema.names == ["id", "body"], name
    assert open_source(tmp_path / "empty.csv").schema.names == []


def test_a_folder_leaves_out_its_files_with_no_bytes(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    pacsv.write_csv(TABLE, tmp_path / "csv" / "a.csv")
    (tmp_path / "csv" / "b.csv").write_bytes(b"")
    (tmp_path / "csv" / "0.csv").write_bytes(b"")  # sorted first: the one Arrow takes the schema from
    assert _rows(tmp_path / "csv") == TABLE.to_pylist()
    (tmp_path / "jsonl").mkdir()
    (tmp_path / "jsonl" / "a.jsonl").write_text('{"id": "a", "body": "x"}\n')
    (tmp_path / "jsonl" / "b.jsonl").write_bytes(b"")
    assert _rows(tmp_path / "jsonl") == [{"id": "a", "body": "x"}]
    (tmp_path / "parquet").mkdir()
    pq.write_table(TABLE, tmp_path / "parquet" / "a.parquet")
    (tmp_path / "parquet" / "b.parquet").write_bytes(b"")
    assert _rows(tmp_path / "parquet") == TABLE.to_pylist()
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "a.csv").write_bytes(b"")
    assert _rows(tmp_path / "nothing") == []
