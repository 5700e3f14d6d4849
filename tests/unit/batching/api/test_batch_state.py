"""The one typed batch state (batching/api/batch_state.py): built from a real SDK batch and from a
real ``list`` page's JSON, both read over HTTP from the emulator, and validated when read back."""

from __future__ import annotations

import asyncio
from datetime import timezone

import msgspec
import pytest

from airflow_provider_claude_batch.batching.api.batch_state import (
    COUNT_KINDS,
    ENDED,
    PROCESSING_STATUSES,
    BatchState,
    RequestCounts,
    states_json,
    sum_counts,
)
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.helpers import make_requests


def test_the_state_of_a_real_batch_and_its_json(emulator: RunningEmulator) -> None:
    hook = ClaudeBatchHook(retry_backoff=0)
    batch = hook.create_batch(make_requests(3))
    state = BatchState.from_batch(hook.retrieve_batch(batch.id))
    assert state.id == batch.id and state.ended and state.processing_status == ENDED
    assert state.created_at.tzinfo is not None and state.created_at.utcoffset() == timezone.utc.utcoffset(None)
    data = state.as_json()
    assert data["request_counts"] == {"succeeded": 3, "errored": 0, "expired": 0, "canceled": 0, "processing": 0}
    assert data["ended_at"] is not None
    assert BatchState.from_json(data) == state


def test_a_list_page_decodes_to_the_same_states_as_retrieve(emulator: RunningEmulator) -> None:
    hook = ClaudeBatchHook(retry_backoff=0)
    ids = [hook.create_batch(make_requests(2, prefix=f"b{i}")).id for i in range(3)]
    page = asyncio.run(hook.alist_batch_states(limit=10))
    listed = {state.id: state for state in page.data}
    assert set(ids) <= set(listed)
    for batch_id in ids:
        assert listed[batch_id] == BatchState.from_batch(hook.retrieve_batch(batch_id))


@pytest.mark.parametrize(
    ("field", "value"),
    [("processing_status", "finished"), ("request_counts", {"succeeded": -1}), ("created_at", "yesterday")],
)
def test_reading_back_rejects_an_unknown_status_a_negative_count_or_a_bad_time(field: str, value: object) -> None:
    data = {
        "id": "msgbatch_a",
        "processing_status": "ended",
        "request_counts": {},
        "created_at": "2026-01-01T00:00:00Z",
    }
    BatchState.from_json(data)  # the unchanged one is fine
    with pytest.raises(msgspec.ValidationError, match=field):
        BatchState.from_json({**data, field: value})


def test_totals_add_up_every_batch_and_missing_kinds_count_zero() -> None:
    data = {"processing_status": "ended", "created_at": "2026-01-01T00:00:00Z"}
    a = BatchState.from_json({**data, "id": "a", "request_counts": {"succeeded": 2, "errored": 1}})
    b = BatchState.from_json({**data, "id": "b", "request_counts": {"processing": 7}})
    totals = sum_counts([a, b])
    assert totals.as_dict() == {"succeeded": 2, "errored": 1, "expired": 0, "canceled": 0, "processing": 7}
    assert (totals.total, totals.failed, totals.done) == (10, 1, 3)
    assert list(states_json({"a": a})["a"]) == ["processing_status", "request_counts", "created_at", "ended_at"]


def test_the_vocabulary() -> None:
    assert PROCESSING_STATUSES == ("in_progress", "canceling", "ended")
    assert set(COUNT_KINDS) == set(RequestCounts.__struct_fields__)
