"""Byte streams -> JSONL lines (batching/api/jsonl.py), the one place a stream is cut at newlines."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.api.jsonl import iter_file_lines, iter_lines, line_blocks, read_blocks

LINES = [f"line-{i}".encode() for i in range(1000)]
STREAM = b"".join(line + b"\n" for line in LINES)


def _cut(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_iter_file_lines_handles_block_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(STREAM)
    with path.open("rb") as handle:
        assert list(iter_file_lines(handle, block_bytes=7)) == LINES


@pytest.mark.parametrize("size", [1, 3, 7, 8, 64, 10_000])
def test_a_stream_cut_anywhere_gives_the_same_lines(size: int) -> None:
    assert list(iter_lines(_cut(STREAM, size))) == LINES


def test_blank_lines_and_a_missing_last_newline() -> None:
    assert list(iter_lines([b"a\n\nb", b"\n", b"", b"c"])) == [b"a", b"b", b"c"]
    assert list(iter_lines([b"a\n", b"  "])) == [b"a"]  # a blank tail is no line
    assert list(iter_lines([])) == []


def test_blocks_end_at_line_ends_and_keep_every_byte_between() -> None:
    blocks = list(line_blocks(_cut(STREAM, 1000)))
    assert len(blocks) > 1
    assert all(not block.endswith(b"\n") for block in blocks)
    # Re-joined with the newlines that were cut, the blocks are the stream again.
    assert b"".join(block + b"\n" for block in blocks) == STREAM


def test_read_blocks_reads_a_handle_in_blocks_of_the_size_asked() -> None:
    assert [len(block) for block in read_blocks(io.BytesIO(b"x" * 10), 4)] == [4, 4, 2]
