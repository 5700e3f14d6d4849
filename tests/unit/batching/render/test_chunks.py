"""Chunking by request count and by serialized bytes (no Airflow, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits, ChunkWriter
from airflow_provider_claude_batch.batching.render.rendering import RequestRenderer, RequestSpec
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError
from airflow_provider_claude_batch.hooks.claude_batch import jsonl_to_create_body

SPEC = RequestSpec(prompt="{body}", model="claude-sonnet-4-6", max_tokens=16, id_column="id")


def _write(tmp_path: Path, table: pa.Table, limits: ChunkLimits, *, batch_rows: int = 700, input_columns=None):
    writer = ChunkWriter(tmp_path, limits, input_columns=input_columns)
    renderer = RequestRenderer(SPEC)
    for batch in table.to_batches(max_chunksize=batch_rows):
        writer.write_batch(renderer, batch)
    return writer.close()


def _table(rows: int, body: str = "ticket text") -> pa.Table:
    return pa.table(
        {"id": [f"t-{i}" for i in range(rows)], "body": [f"{body} {i}" for i in range(rows)], "product": ["web"] * rows}
    )


def test_splits_by_request_count(tmp_path: Path) -> None:
    chunks = _write(tmp_path, _table(2500), ChunkLimits(max_requests=1000))
    assert [c.request_count for c in chunks] == [1000, 1000, 500]
    assert [c.first_row for c in chunks] == [0, 1000, 2000]
    lines = [json.loads(line) for c in chunks for line in (tmp_path / c.requests_file).read_bytes().splitlines()]
    assert [line["custom_id"] for line in lines] == [f"t-{i}" for i in range(2500)]


def test_splits_by_bytes_and_body_size_is_exact(tmp_path: Path) -> None:
    max_bytes = 20_000
    chunks = _write(tmp_path, _table(1000, body="x" * 50), ChunkLimits(max_requests=100_000, max_bytes=max_bytes))
    assert len(chunks) > 1
    for chunk in chunks:
        body = jsonl_to_create_body((tmp_path / chunk.requests_file).read_bytes())
        assert len(body) == chunk.body_bytes
        assert chunk.body_bytes <= max_bytes
    assert sum(c.request_count for c in chunks) == 1000


def test_one_request_larger_than_the_byte_limit_names_the_row(tmp_path: Path) -> None:
    table = pa.table({"id": ["a", "b"], "body": ["short", "y" * 5000]})
    with pytest.raises(
        ClaudeBatchInputError,
        match=r"row 1 \(custom_id 'b'\) serializes to \d+ bytes, more than max_bytes_per_batch \(2000\)",
    ):
        _write(tmp_path, table, ChunkLimits(max_bytes=2000))


def test_duplicate_ids_across_chunks_are_found(tmp_path: Path) -> None:
    table = pa.table({"id": ["a", "b", "c", "d", "a"], "body": ["1", "2", "3", "4", "5"]})
    with pytest.raises(
        ClaudeBatchInputError, match=r"unique across the whole run: 1 duplicated, e.g. 'a' at rows \[0, 4\]"
    ):
        _write(tmp_path, table, ChunkLimits(max_requests=2), batch_rows=2)


def test_input_columns_are_saved_per_chunk_aligned_with_ids(tmp_path: Path) -> None:
    chunks = _write(tmp_path, _table(2500), ChunkLimits(max_requests=1000), input_columns=["id", "product"])
    for chunk in chunks:
        inputs = pq.read_table(tmp_path / chunk.inputs_file)
        ids = [json.loads(line)["custom_id"] for line in (tmp_path / chunk.requests_file).read_bytes().splitlines()]
        assert inputs.column("custom_id").to_pylist() == ids
        assert inputs.column_names == ["id", "product", "input_row", "custom_id"]
        # Each row's place in the input, the N of the default custom_id row-N.
        assert inputs.column("input_row").to_pylist() == list(range(chunk.first_row, chunk.first_row + len(ids)))


@pytest.mark.parametrize("spec", [SPEC, RequestSpec(prompt="{body!s}", model="claude-sonnet-4-6", max_tokens=16)])
def test_input_columns_are_saved_in_one_arrow_type_per_logical_type(tmp_path: Path, spec: RequestSpec) -> None:
    """A DataFrame's large_string is saved as the string a CSV gives (whole-column and row paths)."""
    table = pa.table(
        {
            "id": pa.array(["a", "b"], pa.large_string()),
            "body": pa.array(["x", "y"], pa.large_string()),
            "note": pa.array(["n", None], pa.string_view()),
            "tags": pa.array([["p"], None], pa.large_list(pa.large_string())),
            "kind": pa.array(["k", "k"]).dictionary_encode(),
            "blob": pa.array([b"1", b"2"], pa.large_binary()),
            "input_row": pa.array([7, 8]),  # an input column of that name is kept as it is
        }
    )
    writer = ChunkWriter(tmp_path, ChunkLimits(), input_columns=table.column_names)
    writer.write_batch(RequestRenderer(spec), table.to_batches()[0])
    (chunk,) = writer.close()
    saved = pq.read_table(tmp_path / chunk.inputs_file)
    assert saved.schema.names == [*table.column_names, "custom_id"]
    assert [saved.schema.field(n).type for n in ("id", "body", "note", "tags", "kind", "blob", "input_row")] == [
        pa.string(),
        pa.string(),
        pa.string(),
        pa.list_(pa.string()),
        pa.string(),
        pa.binary(),
        pa.int64(),
    ]
    assert saved.column("input_row").to_pylist() == [7, 8]
    assert saved.drop_columns(["custom_id"]).to_pylist() == table.to_pylist()


def test_same_input_gives_the_same_hashes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _write(tmp_path / "a", _table(300), ChunkLimits(max_requests=100))
    second = _write(tmp_path / "b", _table(300), ChunkLimits(max_requests=100), batch_rows=33)
    assert [c.sha256 for c in first] == [c.sha256 for c in second]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"max_requests": 0}, "max_requests_per_batch"),
        ({"max_requests": 100_001}, "max_requests_per_batch"),
        ({"max_bytes": 300 * 1024 * 1024}, "max_bytes_per_batch"),
    ],
)
def test_limits_are_checked(kwargs: dict, needle: str) -> None:
    with pytest.raises(ClaudeBatchInputError, match=needle):
        ChunkLimits(**kwargs)
