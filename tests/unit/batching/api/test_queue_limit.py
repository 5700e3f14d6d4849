"""The batch queue's arithmetic (batching/api/queue_limit.py): what is queued, what a refusal
and an acceptance teach, the order runs take room in, and the room each may use."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from airflow_provider_claude_batch.batching.api.batch_state import BatchState, ProcessingStatus, RequestCounts
from airflow_provider_claude_batch.batching.api.queue_limit import (
    LearnedLimit,
    Waiting,
    ahead_of,
    fill_fraction,
    fits,
    is_queue_full,
    queued_requests,
    refusal_kind,
    room_for,
    turn_order,
)

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _state(batch_id: str, status: ProcessingStatus, **counts: int) -> BatchState:
    return BatchState(id=batch_id, processing_status=status, request_counts=RequestCounts(**counts), created_at=NOW)


def test_a_queue_full_refusal_is_a_429_rate_limit_that_speaks_of_the_queue() -> None:
    assert is_queue_full(429, "rate_limit_error", "... exceed your organization's batch queue limit ...")
    assert not is_queue_full(429, "rate_limit_error", "Number of requests per minute exceeded")
    assert not is_queue_full(529, "overloaded_error", "queue")
    assert not is_queue_full(429, "rate_limit_error", None)


@pytest.mark.parametrize(
    ("message", "headers", "kind"),
    [
        ("Your organization's batch queue is full", None, "queue"),
        ("Too many requests enqueued for this organization", None, "queue"),
        ("Too many requests in batches still processing", None, "queue"),
        ("Number of requests per minute exceeded", None, "rate"),
        ("Number of batch requests per minute exceeded", None, "rate"),  # the rate, not the queue
        ("Number of request tokens has exceeded your per-minute rate limit", None, "rate"),
        ("This request would exceed your account's rate limit.", None, "unknown"),
        ("Rate limited", {"anthropic-ratelimit-requests-remaining": "0"}, "rate"),
        ("Rate limited", {"anthropic-ratelimit-requests-remaining": "41"}, "queue"),  # calls were left
        ("Rate limited", {"anthropic-ratelimit-requests-remaining": "n/a"}, "unknown"),
        (None, None, "unknown"),
    ],
)
def test_a_429_is_read_as_the_queue_a_request_rate_or_unclear(
    message: str | None, headers: dict[str, str] | None, kind: str
) -> None:
    assert refusal_kind(429, "rate_limit_error", message, headers) == kind
    assert refusal_kind(429, None, message, headers) == kind  # a 429 with no error body
    assert is_queue_full(429, "rate_limit_error", message, headers) == (kind == "queue")


def test_only_a_429_rate_limit_error_is_a_refusal() -> None:
    assert refusal_kind(529, "overloaded_error", "queue") is None
    assert refusal_kind(429, "invalid_request_error", "queue") is None
    assert refusal_kind(500, "api_error", "queue") is None


def test_queued_requests_count_processing_requests_of_batches_not_ended() -> None:
    states = [
        _state("a", "in_progress", processing=40),
        _state("b", "canceling", processing=5, canceled=5),
        _state("c", "ended", succeeded=100),
    ]
    assert queued_requests(states) == 45
    assert queued_requests([]) == 0


def test_a_refusal_bounds_the_limit_and_an_acceptance_lifts_a_stale_bound() -> None:
    learned = LearnedLimit()
    assert learned.limit is None
    learned = learned.refused(queued=80, requests=30)  # the limit is below 110
    assert learned.limit == 109
    assert learned.refused(queued=50, requests=30).limit == 79  # the lowest refusal wins
    accepted = learned.accepted(queued=100, requests=20)  # 120 fit: the refusal's reading was stale
    assert accepted.limit is None and accepted.at_least == 120
    assert accepted.refused(queued=100, requests=30).limit == 129
    assert LearnedLimit.from_dict(learned.as_dict()) == learned
    assert LearnedLimit.from_dict({"at_least": "x"}) == LearnedLimit()


def test_runs_take_room_first_come_then_by_priority_then_by_name() -> None:
    early = Waiting("b", "2026-01-01T00:00:00", priority=1, next_requests=30)
    late_high = Waiting("a", "2026-01-01T00:00:05", priority=10, next_requests=20)
    late_low = Waiting("c", "2026-01-01T00:00:05", priority=1, next_requests=10)
    assert [run.owner for run in turn_order([late_low, late_high, early])] == ["b", "a", "c"]
    waiting = [late_low, late_high, early]
    assert ahead_of("b", waiting) == 0 and ahead_of("a", waiting) == 30 and ahead_of("c", waiting) == 50
    assert ahead_of("stranger", waiting) == 60  # not in line: behind everyone


def test_room_is_the_limit_less_the_queue_less_the_runs_ahead() -> None:
    waiting = [Waiting("first", "1", next_requests=30), Waiting("second", "2", next_requests=30)]
    assert room_for("first", waiting, queued=50, limit=100) == 50
    assert room_for("second", waiting, queued=50, limit=100) == 20
    assert room_for("second", waiting, queued=90, limit=100) == 0
    assert room_for("second", waiting, queued=50, limit=None) is None
    assert fits(20, 20) and not fits(21, 20) and fits(10**9, None)


def test_fill_is_a_fraction_of_a_known_limit() -> None:
    assert fill_fraction(50, 200) == 0.25
    assert fill_fraction(300, 200) == 1.0
    assert fill_fraction(5, None) is None
