"""Rows -> request lines (no Airflow, no network)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from airflow_provider_claude_batch.batching.render.rendering import (
    PromptTemplate,
    RequestRenderer,
    RequestSpec,
    rows_to_table,
)
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError


def _render(spec: RequestSpec, table: pa.Table, first_row: int = 0) -> list[dict]:
    renderer = RequestRenderer(spec)
    renderer.check_schema(table.schema, source="the test table")
    out = []
    for batch in table.to_batches():
        out += [json.loads(r.line) for r in renderer.render_batch(batch, first_row=first_row)]
        first_row += batch.num_rows
    return out


def test_renders_the_api_request_shape() -> None:
    table = pa.table({"id": ["a-1", "b_2"], "body": ['say "hi"\nnow', "ünïcode ✓"]})
    spec = RequestSpec(
        prompt="Classify: {body}",
        model="claude-sonnet-4-6",
        max_tokens=16,
        system="One word.",
        params={"temperature": 0},
        id_column="id",
    )
    assert _render(spec, table) == [
        {
            "custom_id": "a-1",
            "params": {
                "model": "claude-sonnet-4-6",
                "max_tokens": 16,
                "temperature": 0,
                "system": "One word.",
                "messages": [{"role": "user", "content": 'Classify: say "hi"\nnow'}],
            },
        },
        {
            "custom_id": "b_2",
            "params": {
                "model": "claude-sonnet-4-6",
                "max_tokens": 16,
                "temperature": 0,
                "system": "One word.",
                "messages": [{"role": "user", "content": "Classify: ünïcode ✓"}],
            },
        },
    ]


FEW_SHOT = [
    {"role": "user", "content": "Classify: my card was charged twice"},
    {"content": [{"type": "text", "text": "Billing"}], "role": "assistant"},  # any key order
]


def test_few_shot_turns_come_before_the_prompt_and_the_prefill_after_it() -> None:
    table = pa.table({"body": ["login fails"]})
    spec = RequestSpec(prompt="Classify: {body}", model="m", max_tokens=8, messages=FEW_SHOT, prefill='{"label": "')
    (request,) = _render(spec, table)
    assert request["params"]["messages"] == [
        {"role": "user", "content": "Classify: my card was charged twice"},
        {"role": "assistant", "content": [{"type": "text", "text": "Billing"}]},
        {"role": "user", "content": "Classify: login fails"},
        {"role": "assistant", "content": '{"label": "'},
    ]
    assert spec.describe()["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "Billing"}]}
    assert "messages" not in RequestSpec(prompt="{body}", model="m", max_tokens=8).describe()  # fingerprints kept


def test_a_rows_params_may_set_its_own_turns_and_prefill() -> None:
    rows = [
        None,  # the operator's turns and prefill
        {"messages": [{"role": "user", "content": "2+2"}, {"role": "assistant", "content": "4"}]},
        {"messages": [], "prefill": ""},  # none for this row
        json.dumps({"prefill": "Answer:", "temperature": 0.2}),
    ]
    opts = [row if row is None or isinstance(row, str) else json.dumps(row) for row in rows]
    table = pa.table({"body": ["a", "b", "c", "d"], "opts": opts})
    spec = RequestSpec(
        prompt="{body}", model="m", max_tokens=8, params_column="opts", messages=FEW_SHOT, prefill="The label is"
    )
    few_shot = [{"role": t["role"], "content": t["content"]} for t in FEW_SHOT]
    out = [r["params"] for r in _render(spec, table)]
    assert out[0]["messages"] == [*few_shot, {"role": "user", "content": "a"}, _assistant("The label is")]
    # Its own turns; no prefill of its own: the operator's.
    assert out[1]["messages"] == [*rows[1]["messages"], {"role": "user", "content": "b"}, _assistant("The label is")]
    assert out[2]["messages"] == [{"role": "user", "content": "c"}]
    assert out[3]["messages"] == [*few_shot, {"role": "user", "content": "d"}, _assistant("Answer:")]
    assert out[3]["temperature"] == 0.2 and "prefill" not in out[3]


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


@pytest.mark.parametrize(
    ("opts", "needle"),
    [
        ({"messages": "hi"}, r"row 1 \(custom_id 'row-1'\), params_column 'opts': messages must be a list of turns"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, r"row 1 .*messages\[0\]\.role must be 'user'"),
        ({"messages": [{"role": "user", "content": "x"}]}, r"row 1 .*must end with an assistant turn"),
        ({"messages": [{"role": "user", "content": " "}, _assistant("y")]}, r"messages\[0\]\.content must be text"),
        ({"messages": [{"role": "user", "text": "x"}]}, r"messages\[0\] must have exactly the keys role and content"),
        ({"prefill": 3}, r"row 1 .*prefill must be a string"),
        ({"prefill": "Answer: "}, r"row 1 .*prefill must not end in whitespace"),
        (
            {"prefill": "{", "output_config": {"format": {"type": "json_schema", "schema": {}}}},
            r"row 1 .*prefill cannot be combined with output_schema",
        ),
        (
            {"prefill": "{", "thinking": {"type": "enabled", "budget_tokens": 1024}},
            r"row 1 .*prefill cannot .*thinking",
        ),
    ],
)
def test_a_rows_bad_turns_or_prefill_name_the_row_and_field(opts: dict, needle: str) -> None:
    table = pa.table({"text": ["fine", "bad"], "opts": [None, json.dumps(opts)]})
    with pytest.raises(ClaudeBatchInputError, match=needle):
        _render(RequestSpec(prompt="{text}", model="m", max_tokens=5, params_column="opts"), table)


def test_system_template_and_per_row_params() -> None:
    table = pa.table({"lang": ["French", "German"], "text": ["hello", "bye"], "opts": ['{"temperature": 0.5}', None]})
    spec = RequestSpec(prompt="{text}", system="Answer in {lang}.", model="m", max_tokens=5, params_column="opts")
    first, second = _render(spec, table)
    assert first["params"]["system"] == "Answer in French."
    assert first["params"]["temperature"] == 0.5
    assert second["params"]["system"] == "Answer in German."
    assert "temperature" not in second["params"]


def test_derived_ids_follow_the_row_position_stably() -> None:
    table = pa.table({"text": ["a", "b", "c"]})
    spec = RequestSpec(prompt="{text}", model="m", max_tokens=5)
    assert [r["custom_id"] for r in _render(spec, table)] == ["row-0", "row-1", "row-2"]
    assert [r["custom_id"] for r in _render(spec, table, first_row=10)] == ["row-10", "row-11", "row-12"]


def test_template_features() -> None:
    template = PromptTemplate("{a} and {b:>3} and {a!r} {{literal}}")
    assert template.fields == ("a", "b")
    assert template.render(["x", "y"]) == "x and   y and 'x' {literal}"
    with pytest.raises(ClaudeBatchInputError, match="positional"):
        PromptTemplate("{0}")
    with pytest.raises(ClaudeBatchInputError, match="not a valid format string"):
        PromptTemplate("{unclosed")


def test_missing_template_column_names_it_and_the_columns() -> None:
    renderer = RequestRenderer(RequestSpec(prompt="{body}", model="m", max_tokens=5))
    with pytest.raises(
        ClaudeBatchInputError,
        match=r"column 'body' used by the prompt/system template is not in the test table; its columns are \['text'\]",
    ):
        renderer.check_schema(pa.schema([("text", pa.string())]), source="the test table")
    renderer = RequestRenderer(RequestSpec(prompt="{text}", model="m", max_tokens=5, id_column="key"))
    with pytest.raises(ClaudeBatchInputError, match="'key' used by id_column"):
        renderer.check_schema(pa.schema([("text", pa.string())]), source="t")


def test_null_prompt_value_names_row_and_field() -> None:
    table = pa.table({"id": ["a", "b"], "body": ["ok", None]})
    with pytest.raises(ClaudeBatchInputError, match=r"row 1 \(custom_id 'b'\): column 'body' is null"):
        _render(RequestSpec(prompt="{body}", model="m", max_tokens=5, id_column="id"), table)


@pytest.mark.parametrize(
    ("value", "needle"),
    [("has space", "row 0, column 'id'"), ("x" * 65, "1-64"), (None, "row 0: id_column 'id' is null")],
)
def test_invalid_custom_id_names_the_row(value: object, needle: str) -> None:
    table = pa.table({"id": pa.array([value], pa.string()), "body": ["ok"]})
    with pytest.raises(ClaudeBatchInputError, match=needle):
        _render(RequestSpec(prompt="{body}", model="m", max_tokens=5, id_column="id"), table)


def test_numeric_ids_become_strings() -> None:
    table = pa.table({"id": [101, 102], "body": ["a", "b"]})
    assert [
        r["custom_id"] for r in _render(RequestSpec(prompt="{body}", model="m", max_tokens=5, id_column="id"), table)
    ] == ["101", "102"]


def test_integers_dates_and_finite_floats_are_inserted_as_they_print() -> None:
    """A ticket number or a date in a prompt is ordinary text; only NaN/inf floats, lists and
    structs (unless formatted explicitly) are refused."""
    import datetime as dt

    table = pa.table({"n": [7, 8], "day": [dt.date(2026, 11, 1), dt.date(2026, 11, 2)], "x": [1.5, 2.0]})
    rendered = _render(RequestSpec(prompt="Ticket {n} of {day}: {x}", model="m", max_tokens=5), table)
    assert [r["params"]["messages"][0]["content"] for r in rendered] == [
        "Ticket 7 of 2026-11-01: 1.5",
        "Ticket 8 of 2026-11-02: 2.0",
    ]
    with pytest.raises(ClaudeBatchInputError, match=r"row 1 \(custom_id 'row-1'\): column 'x' is not a finite number"):
        _render(RequestSpec(prompt="{x}", model="m", max_tokens=5), pa.table({"x": [1.0, float("nan")]}))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"model": ""}, "model is required"),
        ({"max_tokens": 0}, "max_tokens must be a positive integer"),
        ({"params": {"messages": []}}, "params may not set.*messages="),
        (
            {"messages": [{"role": "user", "content": "q"}]},
            r"operator's arguments: messages must end with an assistant",
        ),
        ({"prefill": "x\n"}, "prefill must not end in whitespace"),
        (
            {"prefill": "{", "params": {"output_config": {"format": {"type": "json_schema", "schema": {}}}}},
            "prefill cannot be combined with output_schema",
        ),
        ({"system": "a", "params": {"system": "b"}}, "either as system= or in params"),
        ({"id_prefix": "bad prefix"}, "id_prefix"),
    ],
)
def test_spec_validation(kwargs: dict, needle: str) -> None:
    base = {"prompt": "{text}", "model": "m", "max_tokens": 5}
    with pytest.raises(ClaudeBatchInputError, match=needle):
        RequestSpec(**{**base, **kwargs})


def test_bad_per_row_params_name_the_row() -> None:
    table = pa.table({"text": ["a"], "opts": ["not json"]})
    with pytest.raises(ClaudeBatchInputError, match="row 0 .*params_column is not valid JSON"):
        _render(RequestSpec(prompt="{text}", model="m", max_tokens=5, params_column="opts"), table)


def test_bad_per_row_max_tokens_names_the_row() -> None:
    table = pa.table({"text": ["a", "b"], "opts": [None, '{"max_tokens": "lots"}']})
    with pytest.raises(ClaudeBatchInputError, match="row 1 .*max_tokens must be a positive integer, got 'lots'"):
        _render(RequestSpec(prompt="{text}", model="m", max_tokens=5, params_column="opts"), table)


def test_the_tally_counts_bytes_and_output_limits_per_model() -> None:
    table = pa.table(
        {
            "text": ["short", "a longer question", "third"],
            "opts": [None, '{"model": "big", "max_tokens": 100}', '{"temperature": 0}'],
        }
    )
    renderer = RequestRenderer(RequestSpec(prompt="{text}", model="small", max_tokens=5, params_column="opts"))
    lines = [r.line for batch in table.to_batches() for r in renderer.render_batch(batch, first_row=0)]
    tally = renderer.tally()
    assert set(tally) == {"small", "big"}
    assert (tally["small"].requests, tally["small"].max_output_tokens) == (2, 10)
    assert tally["small"].input_bytes == len(lines[0]) + len(lines[2])
    assert (tally["big"].requests, tally["big"].input_bytes, tally["big"].max_output_tokens) == (1, len(lines[1]), 100)


def test_the_tally_notes_what_changes_a_ceiling_in_the_base_and_in_a_rows_params() -> None:
    """The base's 1-hour breakpoint reaches every row; a row's own server tool only its model."""
    system = [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    search = '{"model": "big", "tools": [{"type": "web_search_20250305", "name": "web_search"}]}'
    table = pa.table({"text": ["a", "b"], "opts": [None, search]})
    spec = RequestSpec(prompt="{text}", model="small", max_tokens=5, params={"system": system}, params_column="opts")
    renderer = RequestRenderer(spec)
    for batch in table.to_batches():
        list(renderer.render_batch(batch, first_row=0))
    tally = renderer.tally()
    assert tally["small"].hour_cache_writes and tally["small"].server_tools == set()
    assert tally["big"].hour_cache_writes and tally["big"].server_tools == {"web_search_20250305"}


def test_rows_to_table() -> None:
    assert rows_to_table(["a", "b"]).column_names == ["text"]
    assert rows_to_table([{"x": 1, "y": "a"}]).column_names == ["x", "y"]
    with pytest.raises(ClaudeBatchInputError, match="only strings or only dicts"):
        rows_to_table(["a", {"x": 1}])
