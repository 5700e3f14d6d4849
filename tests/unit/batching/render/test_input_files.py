"""Line checks of CSV and JSONL input that Arrow's readers do not report."""

from __future__ import annotations

import io

import pytest

from airflow_provider_claude_batch.batching.render.input_files import (
    BLANK_CHECK_BYTES,
    check_csv_quotes,
    first_invalid_json_line,
    is_blank,
)
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


def test_a_csv_of_blank_lines_holds_nothing_and_a_small_blank_file_is_blank() -> None:
    assert check_csv_quotes([b"id,text"], description="f.csv") is True
    assert check_csv_quotes([], description="f.csv") is False
    assert check_csv_quotes([b"  ", b"\r"], description="f.csv") is False
    assert is_blank(io.BytesIO(b""), 0) and is_blank(io.BytesIO(b" \n\n"), 3) and is_blank(io.BytesIO(b"\n"), None)
    assert not is_blank(io.BytesIO(b'\n{"a": 1}'), 9)
    assert not is_blank(io.BytesIO(b" " * (BLANK_CHECK_BYTES + 1)), None)
    unread = io.BytesIO(b" ")
    assert not is_blank(unread, BLANK_CHECK_BYTES + 1) and unread.tell() == 0
