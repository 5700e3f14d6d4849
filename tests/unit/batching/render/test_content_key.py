from __future__ import annotations

import json

import pyarrow as pa

from airflow_provider_claude_batch.batching.render.content_key import (
    as_arrow,
    as_numpy,
    content_key,
    content_keys,
    keys_of_column,
    params_bytes,
    partition_of,
)
from airflow_provider_claude_batch.batching.render.rendering import RequestRenderer, RequestSpec


def _line(custom_id: str, params: str) -> bytes:
    return f'{{"custom_id":"{custom_id}","params":{params}}}'.encode()


def test_the_key_ignores_the_custom_id_and_covers_every_param() -> None:
    params = '{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}'
    assert content_key(_line("a", params)) == content_key(_line("other-id", params) + b"\n")
    for changed in (
        params.replace('"m"', '"m2"'),
        params.replace("8", "9"),
        params.replace("hi", "hi!"),
        params[:-1] + ',"temperature":0.5}',
        params[:-1] + ',"system":"be brief"}',
        params[:-1] + ',"output_config":{"format":{"type":"json_schema","schema":{}}}}',
    ):
        assert content_key(_line("a", changed)) != content_key(_line("a", params)), changed


def test_a_line_in_another_shape_is_parsed() -> None:
    params = '{"model":"m","max_tokens":8}'
    spaced = f'{{"params": {params}, "custom_id": "x"}}'.encode()
    assert params_bytes(spaced) == params.encode()
    assert content_key(spaced) == content_key(_line("y", params))


def test_column_and_row_rendering_give_the_same_keys() -> None:
    renderer = RequestRenderer(RequestSpec(prompt="Label {body}", model="m", max_tokens=8))
    batch = pa.record_batch({"body": ["a", "b", "a"]})
    _ids, lines = renderer.render_columns(batch, first_row=0)
    by_column = keys_of_column(lines)
    by_row = content_keys(r.line for r in renderer.render_batch(batch, first_row=0))
    assert (by_column == by_row).all()
    assert (by_column[0] == by_column[2]).all() and not (by_column[0] == by_column[1]).all()


def test_rows_differing_only_in_a_few_shot_turn_or_the_prefill_get_other_keys() -> None:
    shot = [{"role": "user", "content": "2+2"}, {"role": "assistant", "content": "4"}]
    other_shot = [{"role": "user", "content": "2+2"}, {"role": "assistant", "content": "four"}]
    rows = [None, {"messages": other_shot}, {"prefill": "It is"}, None]
    table = pa.table({"body": ["3+3"] * 4, "opts": [None if r is None else json.dumps(r) for r in rows]})
    spec = RequestSpec(prompt="{body}", model="m", max_tokens=8, params_column="opts", messages=shot)
    keys = content_keys(r.line for r in RequestRenderer(spec).render_batch(table.to_batches()[0], first_row=0))
    assert (keys[0] == keys[3]).all()  # the same request
    assert len({bytes(k) for k in keys[:3]}) == 3  # a changed turn, a prefill: other answers
    # The operator's turns and prefill are keyed too, on the column path as on the row path.
    plain = RequestRenderer(RequestSpec(prompt="{body}", model="m", max_tokens=8))
    with_turns = RequestRenderer(RequestSpec(prompt="{body}", model="m", max_tokens=8, messages=shot, prefill="="))
    batch = pa.record_batch({"body": ["3+3"]})
    assert plain.render_columns(batch, first_row=0) is not None
    with_lines = with_turns.render_columns(batch, first_row=0)
    assert with_lines is not None
    assert not (keys_of_column(plain.render_columns(batch, first_row=0)[1]) == keys_of_column(with_lines[1])).all()


def test_keys_round_trip_through_arrow_and_partition_by_first_hex_digit() -> None:
    keys = content_keys([_line(str(i), f'{{"n":{i}}}') for i in range(64)])
    column = as_arrow(keys)
    assert column.type == pa.binary(16)
    assert (as_numpy(column) == keys).all()
    assert (as_numpy(column.slice(5, 3)) == keys[5:8]).all()
    digits = partition_of(keys)
    assert [f"{d:x}" for d in digits] == [bytes(k).hex()[0] for k in keys]
