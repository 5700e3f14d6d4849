"""A folder or glob of files as a source: one row per file, media types sniffed from the bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.render.file_rows import FILES_PER_BATCH, looks_like_files, split_glob
from airflow_provider_claude_batch.batching.render.sources import open_source
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError
from airflow_provider_claude_batch.testing.sample_files import make_pdf, make_png


def _rows(source: str, **kwargs: str) -> list[dict[str, object]]:
    opened = open_source(source, **kwargs)
    return [row for batch in opened.batches for row in batch.to_pylist()]


def test_one_row_per_file_with_the_type_from_the_bytes(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.pdf").write_bytes(make_pdf([["a"]]))
    (tmp_path / "sub" / "b.pdf").write_bytes(make_png(3, 3))  # named .pdf, holds a PNG
    (tmp_path / "c.txt").write_bytes(b"notes")
    (tmp_path / ".hidden.pdf").write_bytes(b"x")
    rows = _rows(str(tmp_path), source_format="files")
    assert [(r["name"], r["media_type"]) for r in rows] == [
        ("a.pdf", "application/pdf"),
        ("c.txt", "text/plain"),
        ("sub/b.pdf", "image/png"),
    ]
    assert rows[0]["path"] == str(tmp_path / "a.pdf") and rows[0]["size"] == len(make_pdf([["a"]]))
    assert rows[0]["modified"] is not None
    assert [r["name"] for r in _rows(str(tmp_path / "*.pdf"))] == ["a.pdf"]
    assert [r["name"] for r in _rows(str(tmp_path / "**" / "*.pdf"))] == ["a.pdf", "sub/b.pdf"]
    assert [r["name"] for r in _rows(str(tmp_path / "sub" / "*.pdf"))] == ["b.pdf"]


def test_rows_come_a_few_at_a_time_and_an_empty_glob_is_an_error(tmp_path: Path) -> None:
    for n in range(FILES_PER_BATCH * 2 + 1):
        (tmp_path / f"{n:02d}.png").write_bytes(make_png(1, 1))
    assert [b.num_rows for b in open_source(str(tmp_path / "*.png")).batches] == [4, 4, 1]
    with pytest.raises(ClaudeBatchInputError, match="holds no files matching"):
        open_source(str(tmp_path / "*.pdf"))
    with pytest.raises(ClaudeBatchInputError, match="does not exist"):
        open_source(str(tmp_path / "nowhere" / "*.pdf"))


def test_globs_and_extensions() -> None:
    assert split_glob("/data/in/*.pdf") == ("/data/in", "*.pdf")
    assert split_glob("/data/in") == ("/data/in", None)
    assert looks_like_files("s3://b/x/*.JPG") and not looks_like_files("/data/x.csv")
