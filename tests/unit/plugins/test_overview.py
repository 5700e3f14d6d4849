"""What the Claude Batches page shows, from batches as ``list`` returns them: rows with their
origin and cost, runs, the filters and the 30-day chart (no API, no Airflow)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_claude_batch.batching.state.batch_index import BatchOwner
from airflow_provider_claude_batch.plugins.overview import PageFilter, build_overview, daily_chart, group_runs

NOW = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)


def _batch(batch_id: str, hours_ago: float, *, ended: bool = True, errored: int = 0) -> Any:
    created = NOW - timedelta(hours=hours_ago)
    counts = SimpleNamespace(
        processing=0 if ended else 10, succeeded=10 - errored if ended else 0, errored=errored, canceled=0, expired=0
    )
    return SimpleNamespace(
        id=batch_id,
        processing_status="ended" if ended else "in_progress",
        request_counts=counts,
        created_at=created,
        ended_at=created + timedelta(minutes=30) if ended else None,
        expires_at=created + timedelta(hours=24),
    )


BATCHES = [
    _batch("msgbatch_c", 1, ended=False),
    _batch("msgbatch_b", 30, errored=4),
    _batch("msgbatch_a", 50),
    _batch("msgbatch_x", 60),
]
ORIGINS = {
    "msgbatch_c": BatchOwner("tickets", "run2", "submit", -1, 0, 0),
    "msgbatch_b": BatchOwner("tickets", "run1", "submit", -1, 1, 0),
    "msgbatch_a": BatchOwner("tickets", "run1", "submit", -1, 0, 0),
    "msgbatch_x": BatchOwner("secret", "run9", "submit", -1, 0, 0),
}


def test_rows_carry_origin_cost_and_progress_and_hide_dags_the_viewer_may_not_read() -> None:
    overview = build_overview(
        "claude",
        BATCHES,
        ORIGINS,
        {"msgbatch_a": 0.5, "msgbatch_b": None},
        may_read_dag=lambda d: d != "secret",
        now=NOW,
    )
    rows = {row.id: row for row in overview.rows}
    assert [row.id for row in overview.rows] == ["msgbatch_c", "msgbatch_b", "msgbatch_a", "msgbatch_x"]
    assert rows["msgbatch_a"].origin == ORIGINS["msgbatch_a"] and rows["msgbatch_a"].cost_usd == 0.5
    assert rows["msgbatch_b"].landed and rows["msgbatch_b"].cost_usd is None  # landed, model unpriced
    assert not rows["msgbatch_c"].landed and rows["msgbatch_c"].percent_done == 0.0
    assert rows["msgbatch_b"].failed == 4 and rows["msgbatch_b"].duration_seconds == 1800
    assert rows["msgbatch_x"].origin is None and rows["msgbatch_x"].origin_hidden


def test_runs_group_batches_newest_first_and_the_filter_narrows_them() -> None:
    rows = build_overview("claude", BATCHES, ORIGINS, {}, may_read_dag=lambda d: d != "secret", now=NOW).rows
    dates = {("tickets", "run1"): "2026-11-24T00:00:00+00:00", ("tickets", "run2"): "2026-11-26T00:00:00+00:00"}
    runs = group_runs(rows, dates)
    assert [(r.dag_id, r.run_id, len(r.batches)) for r in runs] == [
        ("tickets", "run2", 1),
        ("tickets", "run1", 2),
        (None, None, 1),  # hidden or unknown: one group at the end
    ]
    failed = group_runs(rows, dates, PageFilter(status="failed"))
    assert [(r.run_id, [b.id for b in r.batches]) for r in failed] == [("run1", ["msgbatch_b"])]
    recent = group_runs(rows, dates, PageFilter(dag_id="tickets", since=date(2026, 11, 25)))
    assert [r.run_id for r in recent] == ["run2"]
    with pytest.raises(ValueError, match="status must be one of"):
        PageFilter(status="done")


def test_the_chart_sums_each_utc_day_and_counts_unpriced_batches() -> None:
    rows = build_overview("claude", BATCHES, ORIGINS, {"msgbatch_a": 0.25, "msgbatch_x": 0.5}, now=NOW).rows
    points = {p.day: p for p in daily_chart(rows, NOW.date())}
    assert len(points) == 30
    day = points["2026-11-24"]  # msgbatch_a (50 h ago) and msgbatch_x (60 h ago)
    assert (day.batches, day.requests, day.cost_usd, day.unpriced_batches) == (2, 20, 0.75, 0)
    today = points["2026-11-26"]  # msgbatch_c: open, not landed
    assert today.unpriced_batches == 1 and today.succeeded_share is None
    assert points["2026-11-25"].succeeded_share == pytest.approx(0.6)
