"""Whole-column rendering writes the same bytes, chunks and errors as the row path."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits, ChunkWriter
from airflow_provider_claude_batch.batching.render.prompt_caching import cached_system
from airflow_provider_claude_batch.batching.render.rendering import RequestRenderer, RequestSpec
from airflow_provider_claude_batch.batching.schema.output_schema import OutputSchema, with_output_format
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

TRICKY = [
    'He said "hi"',
    "back\\slash \\n not a newline",
    "".join(chr(c) for c in range(32)) + "\x7f",
    "línea\nnueva\ttab\r\n",
    "emoji 😀 and CJK 漢字 and \u2028",
    "",
    "{braces} and }{",
]


def _table(rows: int) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([f"t-{i}" for i in range(rows)], pa.large_string()),  # as pandas gives them
            "body": [TRICKY[i % len(TRICKY)] + str(i) for i in range(rows)],
            "tag": pa.array([TRICKY[(i + 3) % len(TRICKY)] for i in range(rows)], pa.large_string()),
        }
    )


def _render(tmp_path: Path, name: str, spec: RequestSpec, table: pa.Table, *, columns: bool) -> tuple:
    renderer = RequestRenderer(spec)
    used: list[bool] = []
    if not columns:
        renderer._columns = None  # the row path, for comparison
    render_columns = renderer.render_columns

    def recording(batch: pa.RecordBatch, *, first_row: int) -> tuple | None:
        rendered = render_columns(batch, first_row=first_row)
        used.append(rendered is not None)
        return rendered

    renderer.render_columns = recording
    directory = tmp_path / name
    directory.mkdir()
    writer = ChunkWriter(directory, ChunkLimits(max_requests=40, max_bytes=9_000), input_columns=["tag"])
    for batch in table.to_batches(max_chunksize=64):
        writer.write_batch(renderer, batch)
    chunks = writer.close()
    files = [(directory / c.requests_file).read_bytes() for c in chunks]
    inputs = [(directory / c.inputs_file).read_bytes() for c in chunks if c.inputs_file]
    return (
        [(c.request_count, c.body_bytes, c.sha256, c.first_row) for c in chunks],
        files,
        inputs,
        renderer.tally(),
        used,
    )


@pytest.mark.parametrize("id_column", ["id", None])
def test_columns_and_rows_write_identical_chunks(tmp_path: Path, id_column: str | None) -> None:
    spec = RequestSpec(
        prompt='Tag "{tag}": {body} \\ {body}',
        system="Answer in one word.",
        model="m",
        max_tokens=8,
        id_column=id_column,
        params={"temperature": 0.5},
        allow_empty_prompt=True,
    )
    table = _table(500)
    fast = _render(tmp_path, "fast", spec, table, columns=True)
    slow = _render(tmp_path, "slow", spec, table, columns=False)
    assert fast[:4] == slow[:4]
    assert len(fast[0]) > 3  # split by count and by bytes
    assert fast[4] and all(fast[4])  # the column path did the work
    assert not any(slow[4])


def test_a_null_or_bad_id_gets_the_row_paths_error(tmp_path: Path) -> None:
    spec = RequestSpec(prompt="{body}", model="m", max_tokens=8, id_column="id")
    bad = pa.table({"id": ["a", "b", "c"], "body": ["x", None, "z"]})
    with pytest.raises(ClaudeBatchInputError, match=r"row 1 \(custom_id 'b'\): column 'body' is null"):
        _render(tmp_path, "null", spec, bad, columns=True)
    empty = pa.table({"id": ["a", "b"], "body": ["x", " "]})
    with pytest.raises(ClaudeBatchInputError, match=r"row 1.*'body'.*empty"):
        _render(tmp_path, "empty", spec, empty, columns=True)
    bad_id = pa.table({"id": ["a", "b c", "d"], "body": ["x", "y", "z"]})
    with pytest.raises(ClaudeBatchInputError, match="row 1, column 'id'"):
        _render(tmp_path, "id", spec, bad_id, columns=True)


def test_templates_beyond_concatenation_use_str_format(tmp_path: Path) -> None:
    for prompt in ("{body!r}", "{body:>10}", "{body[0]}", "no columns"):
        assert RequestRenderer(RequestSpec(prompt=prompt, model="m", max_tokens=8))._columns is None
    assert RequestRenderer(RequestSpec(prompt="{body}", model="m", max_tokens=8))._columns is not None


def test_output_schema_and_a_cached_system_prompt_render_the_same_bytes(tmp_path: Path) -> None:
    """Typed answers and prompt caching live in the params every request shares: the column
    path writes them exactly as the row path does."""
    schema = OutputSchema.from_user(
        {"type": "object", "properties": {"label": {"type": "string", "enum": ["a", "b"]}}, "required": ["label"]}
    )
    system, params = cached_system("Answer in one word.", with_output_format({"temperature": 0.5}, schema))
    spec = RequestSpec(
        prompt="Tag {tag}: {body}", system=system, model="m", max_tokens=8, params=params, allow_empty_prompt=True
    )
    table = _table(200)
    fast = _render(tmp_path, "fast", spec, table, columns=True)
    slow = _render(tmp_path, "slow", spec, table, columns=False)
    assert fast[:4] == slow[:4]
    assert fast[4] and all(fast[4])
    first_line = fast[1][0].split(b"\n", 1)[0]
    assert b'"output_config":{"format":{"type":"json_schema"' in first_line
    assert b'"cache_control":{"type":"ephemeral","ttl":"1h"}' in first_line


def test_few_shot_turns_and_a_prefill_render_the_same_bytes(tmp_path: Path) -> None:
    """The turns around the prompt are the same for every row: the column path writes them
    exactly as the row path does, escapes and non-ASCII text included."""
    turns = [
        {"role": "user", "content": TRICKY[0] + TRICKY[4]},
        {"role": "assistant", "content": [{"type": "text", "text": TRICKY[2]}]},
    ]
    spec = RequestSpec(
        prompt="Tag {tag}: {body}",
        model="m",
        max_tokens=8,
        messages=turns,
        prefill='{"tag": "',
        allow_empty_prompt=True,
    )
    table = _table(200)
    fast = _render(tmp_path, "fast", spec, table, columns=True)
    slow = _render(tmp_path, "slow", spec, table, columns=False)
    assert fast[:4] == slow[:4]
    assert fast[4] and all(fast[4])
    first_line = fast[1][0].split(b"\n", 1)[0]
    assert b'"messages":[{"role":"user","content":"He said' in first_line
    assert first_line.endswith(b'},{"role":"assistant","content":"{\\"tag\\": \\""}]}}')


def test_per_row_params_or_system_use_the_row_path() -> None:
    per_row = RequestSpec(prompt="{body}", model="m", max_tokens=8, params_column="params")
    assert RequestRenderer(per_row)._columns is None
    system_template = RequestSpec(prompt="{body}", system="As {tag}", model="m", max_tokens=8)
    assert RequestRenderer(system_template)._columns is None
