"""The geometry of the Claude Batches page's 30-day chart: cost per day as bars on the left
scale, the share of ended requests that succeeded as a line on the right scale (0-100%).
``templates/chart.svg.j2`` draws it as inline SVG (no script, no CDN).

Invariants: every number the template writes is formatted here (one decimal for positions),
so the SVG is the same for the same days. The cost scale tops at the costliest day (at $1
when every day cost nothing, so that no bar divides by zero). A day with a batch whose cost
is not known (still open, or ended with neither a landing summary nor raw results) is never
shown as if that batch cost $0: its bar gets a hatched cap and a ``+?`` above it. A day without
ended requests has a bar but no point: the line joins the days that have one, so a trend shows
across a quiet weekend. Every fifth day, and the last, is labelled under the axis.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_claude_batch.plugins.overview import DayPoint

WIDTH, HEIGHT = 900, 232
#: Margins around the plot: axis labels left and right, room above for the costliest day's
#: ``+?``, day labels and the legend below.
LEFT, RIGHT, TOP, BOTTOM = 64, 48, 28, 36
PLOT_WIDTH, PLOT_HEIGHT = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
#: Grid lines at these fractions of both scales.
GRID_FRACTIONS = (0.0, 0.5, 1.0)
#: Every this many days (and the last) gets a date under the axis.
DAY_LABEL_EVERY = 5
#: The height of the hatched cap on a bar whose day's cost is partly unknown.
UNKNOWN_CAP = 8


@dataclass(frozen=True)
class GridLine:
    """A horizontal grid line with its cost label (left) and share label (right)."""

    y: str
    label_y: str
    cost: str
    share: str


@dataclass(frozen=True)
class DayMark:
    """One day's bar and, when some of its requests ended, its point on the share line."""

    day: str
    x: str
    y: str
    width: str
    height: str
    #: The tooltip of the bar and the point (plain text: the template escapes it).
    tip: str
    point: tuple[str, str] | None = None
    #: For a day whose cost is partly unknown: the y of the hatched cap on its bar, and of
    #: the ``+?`` above it.
    unknown: tuple[str, str] | None = None


@dataclass(frozen=True)
class DayLabel:
    x: str
    text: str


@dataclass(frozen=True)
class Chart:
    """Everything ``chart.svg.j2`` draws, positions already formatted."""

    width: int
    height: int
    left: int
    right_edge: int
    days: int
    grid: list[GridLine]
    marks: list[DayMark]
    #: The share line's ``points`` attribute; empty below two points.
    line: str
    labels: list[DayLabel]
    labels_y: int
    legend_y: int
    cap_height: int = UNKNOWN_CAP


def _f(value: float) -> str:
    return f"{value:.1f}"


def day_tip(point: DayPoint) -> str:
    """``2026-11-07: $0.1234, 2 batch(es), 240 requests, 99.2% succeeded, 1 without a known cost``."""
    tip = f"{point.day}: ${point.cost_usd:,.4f}, {point.batches} batch(es), {point.requests:,} requests"
    share = point.succeeded_share
    if share is not None:
        tip += f", {share:.1%} succeeded"
    if point.unpriced_batches:
        tip += f", {point.unpriced_batches} without a known cost"
        if point.open_batches:
            tip += f" ({point.open_batches} still running)"
    return tip


def _grid(top_cost: float) -> list[GridLine]:
    lines = []
    for fraction in GRID_FRACTIONS:
        y = TOP + PLOT_HEIGHT * (1 - fraction)
        lines.append(GridLine(_f(y), _f(y + 4), f"${top_cost * fraction:,.2f}", f"{fraction:.0%}"))
    return lines


def _marks(points: list[DayPoint], step: float, top_cost: float) -> list[DayMark]:
    marks = []
    for i, point in enumerate(points):
        x = LEFT + i * step
        bar_height = PLOT_HEIGHT * point.cost_usd / top_cost
        share = point.succeeded_share
        dot = None if share is None else (_f(x + step / 2), _f(TOP + PLOT_HEIGHT * (1 - share)))
        cap_y = TOP + PLOT_HEIGHT - bar_height - UNKNOWN_CAP
        unknown = (_f(cap_y), _f(cap_y - 2)) if point.unpriced_batches else None
        marks.append(
            DayMark(
                day=point.day,
                x=_f(x + step * 0.15),
                y=_f(TOP + PLOT_HEIGHT - bar_height),
                width=_f(step * 0.7),
                height=_f(bar_height),
                tip=day_tip(point),
                point=dot,
                unknown=unknown,
            )
        )
    return marks


def _labels(points: list[DayPoint], step: float) -> list[DayLabel]:
    return [
        DayLabel(_f(LEFT + i * step + step / 2), point.day[5:])
        for i, point in enumerate(points)
        if i % DAY_LABEL_EVERY == 0 or i == len(points) - 1
    ]


def chart_of(points: list[DayPoint]) -> Chart:
    """The chart of ``points`` (oldest day first), one bar per day."""
    step = PLOT_WIDTH / max(1, len(points))
    top_cost = max((p.cost_usd for p in points), default=0.0) or 1.0
    marks = _marks(points, step, top_cost)
    line = [f"{mark.point[0]},{mark.point[1]}" for mark in marks if mark.point is not None]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right_edge=LEFT + PLOT_WIDTH,
        days=len(points),
        grid=_grid(top_cost),
        marks=marks,
        line=" ".join(line) if len(line) > 1 else "",
        labels=_labels(points, step),
        labels_y=HEIGHT - BOTTOM + 16,
        legend_y=HEIGHT - 4,
    )


__all__ = ["Chart", "DayLabel", "DayMark", "GridLine", "chart_of", "day_tip"]
