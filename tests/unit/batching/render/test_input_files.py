"""Line checks of CSV and JSONL input that Arrow's readers do not report."""

from __future__ import annotations

import pytest

from airflow_provider_claude_batch.batching.render.input_files import check_csv_quotes, first_invalid_json_line
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError


def test_a_quoted_value_never_closed_is_named_by_the_line_it_opens_on() -> None:
    lines = [b"id,text", b'1,"fine, with a comma"', b'2,"say ""hi"" twice"', b'3,"open', b"4,swallowed", b"5,too"]
    with pytest.raises(ClaudeBatchInputError, match=r"tickets.csv, line 4: a quoted value opens there"):
        check_csv_quotes(lines, description="tickets.csv")


def test_quotes_that_rfc_4180_allows_pass() -> None:
    check_csv_quotes(
        [b"id,text", b'1,"two\nlines"'.split(b"\n")[0], b'lines"', b'2,5" screen', b"3;x"], description="f.csv"
    )
    check_csv_quotes([b'1;"a;b"', b'2;x"y'], description="f.csv", delimiter=b";")
    with pytest.raises(ClaudeBatchInputError, match="line 1"):
        check_csv_quotes([b'1;"a,b'], description="f.csv", delimiter=b";")


def test_the_first_line_of_jsonl_that_is_not_an_object() -> None:
    assert first_invalid_json_line([b'{"a": 1}', b"", b'{"b": 2}']) is None
    assert first_invalid_json_line([b'{"a": 1}', b"  ", b"[1, 2]"]) == (3, "a JSON list, not an object")
    number, why = first_invalid_json_line([b'{"a": 1}', b'{"a": ']) or (0, "")
    assert number == 2 and why.startswith("not valid JSON")
