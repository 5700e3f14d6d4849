"""The 30-day chart's geometry: one bar per day scaled to the costliest day, a point only for
days whose requests ended (the line joins across the others), and day labels every fifth day
and on the last."""

from __future__ import annotations

from airflow_provider_claude_batch.plugins.overview import DayPoint
from airflow_provider_claude_batch.plugins.page_chart import LEFT, PLOT_HEIGHT, TOP, chart_of, day_tip


def _days(count: int) -> list[DayPoint]:
    return [DayPoint(f"2026-11-{day:02d}") for day in range(1, count + 1)]


def test_bars_scale_to_the_costliest_day_and_points_skip_quiet_days() -> None:
    points = _days(30)
    points[0] = DayPoint("2026-11-01", batches=1, requests=4, ended_requests=4, succeeded=4, cost_usd=2.0)
    points[1] = DayPoint("2026-11-02", batches=1, requests=4, ended_requests=0, cost_usd=1.0)  # still open
    points[5] = DayPoint("2026-11-06", batches=1, requests=4, ended_requests=4, succeeded=1, cost_usd=0.5)
    chart = chart_of(points)

    assert chart.days == 30 and len(chart.marks) == 30 and chart.right_edge == LEFT + 788
    full, half, quarter = chart.marks[0], chart.marks[1], chart.marks[5]
    assert float(full.height) == PLOT_HEIGHT and float(full.y) == TOP  # the costliest day fills the plot
    assert float(half.height) == PLOT_HEIGHT / 2 and float(quarter.height) == PLOT_HEIGHT / 4
    assert chart.marks[2].height == "0.0"
    assert full.point is not None and float(full.point[1]) == TOP  # 100% succeeded: the top
    assert quarter.point is not None and float(quarter.point[1]) == TOP + PLOT_HEIGHT * 0.75
    assert half.point is None  # nothing ended that day: no point, the line goes on
    assert chart.line == f"{full.point[0]},{full.point[1]} {quarter.point[0]},{quarter.point[1]}"
    assert [line.cost for line in chart.grid] == ["$0.00", "$1.00", "$2.00"]
    assert [line.share for line in chart.grid] == ["0%", "50%", "100%"]
    assert [label.text for label in chart.labels] == ["11-01", "11-06", "11-11", "11-16", "11-21", "11-26", "11-30"]


def test_a_chart_of_free_or_no_days_still_has_a_scale() -> None:
    free = chart_of(_days(3))
    assert [mark.height for mark in free.marks] == ["0.0"] * 3 and free.line == ""
    assert [line.cost for line in free.grid] == ["$0.00", "$0.50", "$1.00"]
    assert [label.text for label in free.labels] == ["11-01", "11-03"]
    empty = chart_of([])
    assert empty.days == 0 and empty.marks == [] and empty.labels == [] and len(empty.grid) == 3


def test_a_day_tip_says_what_the_day_cost_and_how_it_went() -> None:
    assert day_tip(DayPoint("2026-11-01")) == "2026-11-01: $0.0000, 0 batch(es), 0 requests"
    busy = DayPoint("2026-11-02", batches=3, requests=12345, ended_requests=1000, succeeded=999, cost_usd=1234.5)
    assert day_tip(busy) == "2026-11-02: $1,234.5000, 3 batch(es), 12,345 requests, 99.9% succeeded"
    unpriced = DayPoint("2026-11-03", batches=2, requests=2, unpriced_batches=1)
    assert day_tip(unpriced).endswith(", 2 requests, 1 without a known cost")
