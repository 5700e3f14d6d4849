"""Citations as a column: each row's citations gathered across its blocks, in order, from the
``content`` JSON alone; the column exactly when the run's content asks for citations."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from airflow_provider_claude_batch.batching.schema.citations import (
    CITATIONS_COLUMN,
    CitedAnswers,
    asks_for_citations,
    citations_of,
)
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError


def _page(text: str, index: int = 0) -> dict[str, object]:
    return {"type": "page_location", "cited_text": text, "document_index": index, "document_title": "T"}


def _content(*blocks: dict[str, object]) -> str:
    return json.dumps(list(blocks))


def test_each_row_gets_its_own_citations_across_blocks_in_order() -> None:
    long_text = "x" * (3 << 20)  # one answer longer than a JSON reader block
    content = pa.array(
        [
            _content(
                {"type": "text", "text": "a", "citations": None},
                {"type": "text", "text": "b", "citations": [_page("one")]},
            ),
            None,  # errored: no answer
            _content({"type": "text", "text": "no cite"}),
            _content(
                {"type": "text", "text": "c", "citations": [_page("two", 1), _page("three", 2)]},
                {"type": "tool_use", "id": "t", "name": "n", "input": {"k": [1, {"x": 2}]}},
                {"type": "text", "text": long_text, "citations": [_page("four")]},
            ),
        ]
    )
    rows = citations_of(content).to_pylist()
    assert [[c["cited_text"] for c in row] if row is not None else None for row in rows] == [
        ["one"],
        None,
        [],
        ["two", "three", "four"],
    ]
    assert rows[3][1]["document_index"] == 2 and rows[3][1]["start_char_index"] is None
    # A slice (an offset into the buffers) reads the same rows.
    assert citations_of(content.slice(3)).to_pylist() == rows[3:]
    assert citations_of(pa.array([], pa.string())).to_pylist() == []


def test_the_column_is_there_when_the_content_asks_for_it_and_never_clashes() -> None:
    assert asks_for_citations({"content": ["prompt", {"kind": "document", "column": "d", "citations": True}]})
    assert not asks_for_citations({"content": [{"kind": "document", "column": "d", "citations": False}]})
    assert not asks_for_citations({"prompt": "no content"})
    table = pa.table(
        {"custom_id": ["r1"], "content": [_content({"type": "text", "text": "a", "citations": [_page("p")]})]}
    )
    added = CitedAnswers().add_columns(table)
    assert added.column_names == ["custom_id", "content", CITATIONS_COLUMN]
    with pytest.raises(ClaudeBatchInputError, match="rename it in keep_columns"):
        CitedAnswers().extend_schema(pa.schema([(CITATIONS_COLUMN, pa.string())]))
