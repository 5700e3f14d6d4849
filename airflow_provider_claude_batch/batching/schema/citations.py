"""Citations as a typed column: what each answer cited, when the run asked for citations.

A document block with ``citations=True`` makes the API answer in text blocks that carry
``citations``: the cited text and where it is (the document's index and title, and a page
range for a PDF, a character range for plain text, a block range for custom content). The
``text`` column joins the blocks' text and drops them; this module lands them as one column,
``citations``, a list per row of :data:`CITATION` structs in answer order, so that a DAG can
check or show the sources of every answer without parsing the ``content`` JSON.

Invariants:

* The column exists exactly when the run's content asks for citations
  (:func:`asks_for_citations`, from the manifest's request spec), so a run's schema never
  depends on what the answers happened to hold. Citations do not go with an output schema (the
  API refuses the pair), so a run lands either typed columns or this one.
* It is derived from the ``content`` column alone, so answers reused from the answer store, or
  awaited from another run's batch, get their citations as new answers do.
* A row without an answer (errored, expired) has a null list; an answer that cited nothing
  has an empty one.

Speed: one pass of Arrow's JSON reader over the rows' ``content`` (C++, no Python object per
citation), then offsets arithmetic to gather each row's citations across its blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

CITATIONS_COLUMN = "citations"
#: One citation: the fields of the API's ``char_location``, ``page_location`` and
#: ``content_block_location`` citations (a field another type lacks is null).
CITATION = pa.struct(
    [
        ("type", pa.string()),
        ("cited_text", pa.string()),
        ("document_index", pa.int64()),
        ("document_title", pa.string()),
        ("start_page_number", pa.int64()),
        ("end_page_number", pa.int64()),
        ("start_char_index", pa.int64()),
        ("end_char_index", pa.int64()),
        ("start_block_index", pa.int64()),
        ("end_block_index", pa.int64()),
    ]
)
CITATIONS_TYPE = pa.list_(CITATION)
_READ = pa_json.ParseOptions(
    explicit_schema=pa.schema([("c", pa.list_(pa.struct([("citations", CITATIONS_TYPE)])))]),
    unexpected_field_behavior="ignore",
)


def asks_for_citations(spec: Mapping[str, Any]) -> bool:
    """Whether a run's request spec (``RequestSpec.describe``, kept in its manifest) has a
    document block that asks for citations."""
    content = spec.get("content") or []
    return any(isinstance(item, Mapping) and item.get("citations") for item in content)


class CitedAnswers:
    """Adds the ``citations`` column to result tables (the same interface as
    ``TypedAnswers``: ``extend_schema`` then ``add_columns``)."""

    def extend_schema(self, schema: pa.Schema) -> pa.Schema:
        """``schema`` plus ``citations``; a kept column of that name is an error naming it."""
        if CITATIONS_COLUMN in schema.names:
            raise ClaudeBatchInputError(
                f"the run asks for citations, which land as a {CITATIONS_COLUMN!r} column: a kept input column "
                "has that name (rename it in keep_columns)"
            )
        return schema.append(pa.field(CITATIONS_COLUMN, CITATIONS_TYPE))

    def add_columns(self, table: pa.Table) -> pa.Table:
        """``table`` (with the results' ``content`` column) with ``citations`` appended."""
        column = citations_of(table.column("content").combine_chunks().cast(pa.string()))
        return pa.Table.from_arrays([*table.columns, column], schema=self.extend_schema(table.schema))


def citations_of(content: pa.Array) -> pa.Array:
    """Each row's citations, in answer order, from its ``content`` (the JSON array of the
    answer's blocks; null for a row without an answer)."""
    count = len(content)
    if count == 0:
        return pa.array([], CITATIONS_TYPE)
    # One JSON object per line: {"c": <content>}; a row without content reads as {"c": null}.
    wrapped = pc.binary_join_element_wise(
        pa.scalar('{"c":'), pc.fill_null(content, "null"), pa.scalar("}"), pa.scalar("")
    )
    data = _joined_lines(wrapped)
    # One block of the whole buffer: a line must not straddle two (an answer may be long).
    read = pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1)
    blocks_per_row = pa_json.read_json(pa.BufferReader(data), read, _READ).column("c").combine_chunks()
    blocks = pc.list_flatten(blocks_per_row)
    cited = blocks.field("citations")
    cited_counts = pc.fill_null(pc.list_value_length(cited), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    # Row r's blocks are blocks[row_starts[r]:row_starts[r+1]]; its citations are those blocks'.
    block_counts = pc.fill_null(pc.list_value_length(blocks_per_row), 0).to_numpy(zero_copy_only=False)
    row_starts = np.concatenate([[0], np.cumsum(block_counts)]).astype(np.int64)
    cited_starts = np.concatenate([[0], np.cumsum(cited_counts)]).astype(np.int64)
    offsets = cited_starts[row_starts]
    values = cited.flatten()  # the cited lists' items, skipping null lists
    mask = pc.invert(blocks_per_row.is_valid())
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32), pa.int32()), values, mask=mask)


def _joined_lines(lines: pa.Array) -> bytes:
    """The strings of ``lines`` as one newline-separated buffer (JSON text holds no raw newline)."""
    one_list = pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines)
    joined: bytes = pc.binary_join(one_list, "\n").cast(pa.binary())[0].as_py()
    return joined
