"""Create bodies from bytes, ``list`` paging, ``retry-after`` and resumed downloads: no calls."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from airflow_provider_claude_batch.batching.api.limits import CREATE_ENVELOPE_BYTES
from airflow_provider_claude_batch.hooks.wire import (
    jsonl_to_create_body,
    page_params,
    range_start,
    requests_to_create_body,
    retry_after_seconds,
    whole_size,
)


def test_a_create_body_from_a_chunk_file_is_the_body_the_sdk_would_send() -> None:
    requests = [{"custom_id": f"r{i}", "params": {"text": "a\nb \u00e9"}} for i in range(3)]
    jsonl = b"".join(json.dumps(r).encode() + b"\n" for r in requests)
    body = jsonl_to_create_body(jsonl)
    assert json.loads(body) == {"requests": requests}
    assert len(body) == CREATE_ENVELOPE_BYTES + len(jsonl) - 1  # newlines become commas, the last goes
    built, count = requests_to_create_body(requests)
    assert count == 3 and json.loads(built) == json.loads(body)


def test_list_pages_ask_after_the_last_id_only_when_there_is_one() -> None:
    assert page_params(100, None) == {"limit": 100}
    assert page_params(100, "msgbatch_9") == {"limit": 100, "after_id": "msgbatch_9"}


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        (None, None),
        ({}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": "not a date"}, None),
    ],
)
def test_retry_after_is_read_in_every_form_the_api_sends(headers: dict[str, str] | None, seconds: float | None) -> None:
    assert retry_after_seconds(headers) == seconds


def test_retry_after_as_an_http_date() -> None:
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    waited = retry_after_seconds({"retry-after": later})
    assert waited is not None and 25 < waited <= 30


def test_a_resumed_download_continues_only_from_the_byte_it_asked_for() -> None:
    assert range_start(200, {}, 0) == 0
    assert range_start(206, {"content-range": "bytes 100-199/200"}, 100) == 100
    assert range_start(200, {"content-length": "200"}, 100) == 0  # sent whole again: start over
    assert range_start(206, {"content-range": "bytes 50-199/200"}, 100) is None
    assert whole_size(200, {"content-length": "200"}) == 200
    assert whole_size(206, {"content-length": "100"}) is None
