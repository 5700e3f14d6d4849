"""The typed event of a deferred wait (batching/wait/wait_event.py): what the poller builds is what the
task reads back, and anything else fails the task with a clear error."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_claude_batch.batching.api.batch_state import BatchState
from airflow_provider_claude_batch.batching.wait.poller import Poller, retrieve_states
from airflow_provider_claude_batch.batching.wait.wait_event import WaitEvent
from airflow_provider_claude_batch.exceptions import (
    ClaudeBatchAPIError,
    ClaudeBatchAuthError,
    ClaudeBatchNotFoundError,
    ClaudeBatchWaitEventError,
)
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.helpers import make_requests


def _success_payload(emulator: RunningEmulator) -> dict[str, Any]:
    hook = ClaudeBatchHook(retry_backoff=0)
    batch_id = hook.create_batch(make_requests(2)).id
    event = Poller([batch_id]).observe(retrieve_states(hook, [batch_id]))
    assert event is not None
    return event.payload()


def test_the_payload_reads_back_to_the_same_event(emulator: RunningEmulator) -> None:
    payload = _success_payload(emulator)
    event = WaitEvent.from_payload(payload)
    assert event.payload() == payload and event.status == "success"
    (state,) = event.batches.values()
    assert isinstance(state, BatchState) and state.ended and state.request_counts.succeeded == 2


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda p: p.pop("status"), "status"),
        (lambda p: p.update(status="done"), "status"),
        (lambda p: next(iter(p["batches"].values())).update(processing_status="in_progress"), "had not ended"),
        (lambda p: next(iter(p["batches"].values())).update(request_counts={"succeeded": "2"}), "succeeded"),
        (lambda p: p.update(status="error", message="boom"), "without an error_kind"),
        (lambda p: p.update(batches={"msgbatch_other": next(iter(p["batches"].values()))}), "other batch ids"),
    ],
)
def test_a_malformed_event_fails_with_a_clear_error(emulator: RunningEmulator, change: Any, complaint: str) -> None:
    payload = _success_payload(emulator)
    change(payload)
    with pytest.raises(ClaudeBatchWaitEventError, match=complaint):
        WaitEvent.from_payload(payload)


@pytest.mark.parametrize(
    "error",
    [
        ClaudeBatchAuthError("rejected", status_code=401, error_type="authentication_error"),
        ClaudeBatchNotFoundError("gone", status_code=404, error_type="not_found_error"),
        ClaudeBatchAPIError("down", status_code=529, error_type="overloaded_error"),
    ],
)
def test_an_error_keeps_its_type_through_the_payload(error: ClaudeBatchAPIError) -> None:
    payload = WaitEvent.failed(error, {}).payload()
    raised = WaitEvent.from_payload(payload).error()
    assert type(raised) is type(error)
    assert (raised.status_code, raised.error_type) == (error.status_code, error.error_type)
    assert str(error) in str(raised)
