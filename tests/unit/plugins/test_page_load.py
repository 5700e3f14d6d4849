"""Loading what the Claude Batches page shows, against the emulator over real HTTP and a real
work directory: origins from the batch index, costs from landing summaries, runs and their
dates, the one-task view, and every broken source shown as a note (never an exception, never
the key)."""

from __future__ import annotations

import html
import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_claude_batch.batching.reuse.plan import ReuseCounts
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.plugins.overview import PageFilter
from airflow_provider_claude_batch.plugins.page_load import TaskFilter, load_overview
from airflow_provider_claude_batch.plugins.page_render import render_chart, render_page
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.helpers import TEST_API_KEY, make_requests
from tests.unit.plugins.conftest import RunDatesOf, create_batches, write_manifest

NIGHTLY_RUN = "scheduled__2026-11-01T00:00:00+00:00"


def test_rows_carry_the_creating_task_and_the_landed_cost(emulator: RunningEmulator, work_dir: Path) -> None:
    emulator.emulator.config.processing_seconds = 3600
    first, second, third = create_batches(3)
    emulator.emulator.end_all()
    write_manifest(work_dir, "nightly", "scheduled__2026-11-01T00:00:00+00:00", [first], cost=0.0125)
    write_manifest(work_dir, "pricing_gap", "manual__1", [second], cost=None)
    (work_dir / "_batches" / f"{third}.json").write_text("{not json")

    overview = load_overview("claude_batch_default", 10)

    rows = {row.id: row for row in overview.rows}
    assert [row.id for row in overview.rows] == [third, second, first]  # newest first
    assert rows[first].origin is not None and rows[first].origin.dag_id == "nightly"
    assert rows[first].cost_usd == 0.0125 and rows[first].landed
    assert rows[second].cost_usd is None and rows[second].landed  # landed, unpriced model
    assert rows[third].origin is None and not rows[third].landed
    assert rows[first].processing_status == "ended" and rows[first].request_counts["succeeded"] == 2
    assert rows[first].expires_in_seconds is not None and rows[first].expires_in_seconds > 23 * 3600
    assert any(third in note for note in overview.notes)  # its index entry is broken

    page = render_page(overview, 10)
    assert 'http-equiv="refresh"' not in page  # every batch has ended
    assert "$0.0125" in page and "unknown price" in page and "not landed" in page
    assert "nightly / submit" in page and "scheduled__2026-11-01T00:00:00+00:00" in page
    assert "../dags/nightly/runs/scheduled__2026-11-01T00%3A00%3A00%2B00%3A00/tasks/submit" in page


def test_limit_takes_the_newest_and_a_running_batch_refreshes_the_page(
    emulator: RunningEmulator, work_dir: Path
) -> None:
    emulator.emulator.config.processing_seconds = 3600
    ids = create_batches(3)
    overview = load_overview("claude_batch_default", 2)
    assert [row.id for row in overview.rows] == ids[::-1][:2]
    assert '<meta http-equiv="refresh" content="30">' in render_page(overview, 2)


def test_a_missing_connection_is_a_note_not_an_error(emulator: RunningEmulator, work_dir: Path) -> None:
    overview = load_overview("no_such_connection", 10)
    assert overview.rows == []
    assert "no_such_connection" in overview.notes[0]
    assert "no_such_connection" in render_page(overview, 10)


def test_an_unreachable_api_is_a_note_without_the_key(
    emulator: RunningEmulator, work_dir: Path, connection_env: Any
) -> None:
    connection_env("claude_down", host="http://127.0.0.1:9", extra=json.dumps({"max_retries": 0, "timeout": 5}))
    overview = load_overview("claude_down", 10)
    assert overview.rows == [] and "claude_down" in overview.notes[0]
    assert TEST_API_KEY not in json.dumps(overview.as_dict())


def test_a_wrong_key_is_a_note(emulator: RunningEmulator, work_dir: Path, connection_env: Any) -> None:
    connection_env("claude_badkey", password="not-the-key")
    overview = load_overview("claude_badkey", 10)
    assert overview.rows == [] and "claude_badkey" in overview.notes[0]
    assert "not-the-key" not in overview.notes[0]


def test_a_console_template_that_does_not_render_gives_no_link(
    emulator: RunningEmulator, work_dir: Path, connection_env: Any
) -> None:
    connection_env("claude_tpl", extra=json.dumps({"console_url_template": "https://console/{nope}/{batch_id}"}))
    (batch_id,) = create_batches(1)
    (row,) = load_overview("claude_tpl", 10).rows
    assert row.id == batch_id and row.console_url is None
    assert f"<code>{batch_id}</code>" in render_page(load_overview("claude_tpl", 10), 10)


def test_a_task_filter_shows_exactly_that_tasks_batches(emulator: RunningEmulator, work_dir: Path) -> None:
    first, second, third = create_batches(3)
    write_manifest(work_dir, "nightly", "run_1", [first, third])
    write_manifest(work_dir, "other", "run_1", [second])
    task = TaskFilter("nightly", "run_1", "submit")
    overview = load_overview("claude_batch_default", 10, task)
    assert [row.id for row in overview.rows] == [third, first]
    assert all(row.origin is not None and row.origin.dag_id == "nightly" for row in overview.rows)
    page = render_page(overview, 10, task)
    assert "nightly / run_1 / submit" in page and ">all batches</a>" in page and second not in page


def test_a_task_without_a_manifest_is_a_note(emulator: RunningEmulator, work_dir: Path) -> None:
    overview = load_overview("claude_batch_default", 10, TaskFilter("nightly", "never_ran", "submit"))
    assert overview.rows == [] and "no manifest at" in overview.notes[0]


def test_one_row_per_run_with_its_batches_beneath(emulator: RunningEmulator, work_dir: Path) -> None:
    emulator.emulator.config.processing_seconds = 3600
    first, second, other, stray = create_batches(4)
    emulator.emulator.script_outcomes({"b1-0": "errored:api_error"})
    emulator.emulator.advance(600)
    emulator.emulator.end_all()
    write_manifest(work_dir, "nightly", NIGHTLY_RUN, [first, second], cost=0.02)
    write_manifest(work_dir, "nightly", "manual__2026-11-02T08:00:00+00:00", [other])
    lookup = RunDatesOf({("nightly", NIGHTLY_RUN): "2026-11-01T00:00:00+00:00"})

    overview = load_overview("claude_batch_default", 10, run_dates=lookup)

    assert lookup.asked == [{("nightly", NIGHTLY_RUN), ("nightly", "manual__2026-11-02T08:00:00+00:00")}]
    runs = overview.runs()
    assert [(r.dag_id, r.run_id) for r in runs] == [
        ("nightly", "manual__2026-11-02T08:00:00+00:00"),  # newest batch first
        ("nightly", NIGHTLY_RUN),
        (None, None),  # the batch no manifest here names
    ]
    manual, nightly, unknown = runs
    assert [row.id for row in nightly.batches] == [second, first] and [row.id for row in unknown.batches] == [stray]
    totals = nightly.totals()
    assert totals["total"] == 4 and totals["request_counts"]["errored"] == 1 and totals["percent_done"] == 100.0
    assert totals["cost_usd"] == pytest.approx(0.04) and manual.totals()["cost_usd"] is None  # not landed
    assert totals["duration_seconds"] == pytest.approx(600, abs=5)
    created = datetime.fromisoformat(totals["created_at"])
    assert datetime.fromisoformat(totals["results_until"]) == created + timedelta(days=29)
    assert nightly.logical_date == "2026-11-01T00:00:00+00:00" and manual.logical_date is None

    now = emulator.emulator.clock.now()
    page = render_page(overview, 10, now=now)
    run_row = page.split(f'data-run="nightly/{NIGHTLY_RUN}"', 1)[1].split("</tr>", 1)[0]
    assert "2026-11-01 00:00" in run_row and NIGHTLY_RUN not in run_row.split("title=")[0]  # the date, not the id
    assert '<span class="ok" style="width:75.00%">' in run_row and 'class="failed" style="width:25.00%"' in run_row
    assert "$0.0400" in run_row and "reused" not in run_row  # rows reused: not recorded
    assert (created + timedelta(days=29)).strftime("%Y-%m-%d") in run_row and "10 min" in run_row
    assert page.index(f'data-batch-id="{second}"') < page.index(f'data-batch-id="{first}"')
    assert page.index(f'data-run="nightly/{NIGHTLY_RUN}"') < page.index(f'data-batch-id="{second}"')
    # A run the database no longer knows shows its run id instead of a date.
    assert ">manual__2026-11-02T08:00:00+00:00</a>" in page


def test_filters_by_dag_status_and_logical_date(emulator: RunningEmulator, work_dir: Path) -> None:
    emulator.emulator.config.processing_seconds = 3600
    ended_ok, ended_failed, running = create_batches(3)
    emulator.emulator.script_outcomes({"b1-1": "expired"})
    emulator.emulator.end_all()
    write_manifest(work_dir, "nightly", "r1", [ended_ok])
    write_manifest(work_dir, "nightly", "r2", [ended_failed])
    emulator.emulator.config.processing_seconds = 3600
    write_manifest(work_dir, "weekly", "r3", [running])
    # ``running`` ended too (end_all); make a fresh open batch for the weekly run instead.
    (open_batch,) = [ClaudeBatchHook().create_batch(make_requests(2, prefix="open")).id]
    write_manifest(work_dir, "weekly", "r4", [open_batch])
    lookup = RunDatesOf(
        {
            ("nightly", "r1"): "2026-11-01T00:00:00+00:00",
            ("nightly", "r2"): "2026-11-02T00:00:00+00:00",
            ("weekly", "r3"): "2026-10-26T00:00:00+00:00",
            ("weekly", "r4"): "2026-11-02T00:00:00+00:00",
        }
    )
    overview = load_overview("claude_batch_default", 10, run_dates=lookup)

    def runs(**kwargs: Any) -> list[str | None]:
        return [run.run_id for run in overview.runs(PageFilter(**kwargs))]

    assert runs() == ["r4", "r3", "r2", "r1"]
    assert runs(dag_id="nightly") == ["r2", "r1"]
    assert runs(status="in_progress") == ["r4"]
    assert runs(status="failed") == ["r2"]
    assert runs(status="ended", dag_id="weekly") == ["r3"]
    assert runs(since=date(2026, 11, 2)) == ["r4", "r2"]
    assert runs(since=date(2026, 11, 1), until=date(2026, 11, 1)) == ["r1"]
    with pytest.raises(ValueError, match="status must be one of"):
        PageFilter(status="done")


def test_the_chart_sums_cost_and_success_per_day_over_30_days(emulator: RunningEmulator, work_dir: Path) -> None:
    emulator.emulator.config.processing_seconds = 60
    hook = ClaudeBatchHook()
    old = hook.create_batch(make_requests(2, prefix="old")).id  # 40 days ago: outside
    emulator.emulator.advance(15 * 86400)
    early = hook.create_batch(make_requests(4, prefix="early")).id  # 25 days ago
    emulator.emulator.advance(23 * 86400)
    emulator.emulator.script_outcomes({"late-0": "errored:api_error"})
    late = hook.create_batch(make_requests(4, prefix="late")).id
    late_open = hook.create_batch(make_requests(2, prefix="open")).id
    emulator.emulator.advance(2 * 86400)
    emulator.emulator.config.processing_seconds = 3600
    today = hook.create_batch(make_requests(3, prefix="today")).id  # still open
    write_manifest(work_dir, "nightly", "r_early", [early], cost=0.5)
    write_manifest(work_dir, "nightly", "r_late", [late, late_open], cost=0.25)
    write_manifest(work_dir, "weekly", "r_old", [old], cost=9.0)
    now = emulator.emulator.clock.now()
    overview = load_overview("claude_batch_default", 1, run_dates=RunDatesOf({}), now=now)
    assert [row.id for row in overview.rows] == [today]  # the table: the newest ``limit``
    assert {row.id for row in overview.chart_rows} == {late_open, late, early}  # 30 days, not the 40-day-old one

    points = overview.chart(now.date())
    assert len(points) == 30 and points[-1].day == now.date().isoformat()
    by_day = {p.day: p for p in points}
    late_day = by_day[(now - timedelta(days=2)).date().isoformat()]
    assert (late_day.batches, late_day.requests, late_day.cost_usd) == (2, 6, pytest.approx(0.5))
    assert late_day.succeeded_share == pytest.approx(5 / 6)
    assert by_day[(now - timedelta(days=25)).date().isoformat()].cost_usd == pytest.approx(0.5)
    today_point = by_day[now.date().isoformat()]
    assert today_point.succeeded_share is None and today_point.unpriced_batches == 1  # open, not landed
    assert sum(p.cost_usd for p in points) == pytest.approx(1.0)
    # The DAG filter narrows the chart too.
    assert sum(p.batches for p in overview.chart(now.date(), PageFilter(dag_id="weekly"))) == 0

    svg = render_chart(points)
    assert svg.count('<rect class="cost"') == 30 and "<polyline" in svg and "cdn" not in svg.lower()
    assert f'data-day="{late_day.day}"' in svg and "83.3% succeeded" in svg


def test_the_steps_after_the_listing_fail_on_their_own(
    emulator: RunningEmulator, work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metadata database down: the batches and their origins still show, the runs by their
    id; a work directory that cannot be opened: the batches still show, without their runs."""
    (batch_id,) = create_batches(1)
    write_manifest(work_dir, "nightly", "run_1", [batch_id])

    def database_down(*_: Any) -> Any:
        raise ConnectionError("the metadata database is unreachable")

    overview = load_overview(
        "claude_batch_default", 10, run_dates=database_down, recent_runs=database_down, run_states=database_down
    )
    (row,) = overview.rows
    assert row.id == batch_id and row.origin is not None and row.origin.run_id == "run_1"
    assert overview.notes == [
        "Runs that created no batch, rows, rows reused and landings are not shown (ConnectionError).",
        "Logical dates are not available (ConnectionError); runs show their run id.",
        "DAG run states are not available (ConnectionError); runs are judged by their landing only.",
    ]
    assert ">run_1</a>" in render_page(overview, 10)

    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__WORK_DIR", "nosuchstore://bucket/work")
    overview = load_overview("claude_batch_default", 10, run_dates=RunDatesOf({}), recent_runs=database_down)
    (row,) = overview.rows
    assert row.id == batch_id and row.origin is None and not row.landed
    assert overview.notes[0].startswith("The work directory cannot be opened (") and "nosuchstore" in overview.notes[0]
    assert overview.notes[1] == (
        "Runs that created no batch, rows, rows reused and landings are not shown (ValueError)."
    )


def _run_row(page: str, key: str) -> str:
    """The run row of ``dag_id/run_id`` in a page, its entities unescaped."""
    return html.unescape(page.split(f'data-run="{key}"', 1)[1].split("</tr>", 1)[0])


def test_a_run_whose_rows_were_all_awaited_shows_them_awaited_not_answered(
    emulator: RunningEmulator, work_dir: Path
) -> None:
    """Issue 23: a run whose 3,000 rows were all in another run's open batch showed "no batch:
    every row answered" beside "rows reused 0 of 3,000". Awaited rows are counted as awaited:
    answered by another run's batch once the transfer resolved them, waiting until then."""
    answered = ReuseCounts(rows=3000, awaited=3000, awaited_batches=["msgbatch_theirs"])
    answered.awaited_resolved, answered.awaited_answered = True, 3000
    write_manifest(work_dir, "nightly", "r_answered", [], reuse=answered.as_dict())
    waiting = ReuseCounts(rows=3000, reused=1000, awaited=2000, awaited_batches=["msgbatch_theirs"])
    write_manifest(work_dir, "nightly", "r_waiting", [], reuse=waiting.as_dict())

    overview = load_overview(
        "claude_batch_default",
        10,
        run_dates=RunDatesOf({}),
        recent_runs=lambda dags, since, limit: [("nightly", "r_answered"), ("nightly", "r_waiting")],
    )
    page = render_page(overview, 10)

    done = _run_row(page, "nightly/r_answered")
    assert "awaited 3,000 of 3,000 (answered by another run's batch)" in done
    assert "reused 0 of 3,000" in done and "every row answered" not in done
    assert "no batch of its own: rows awaited from another run's batch" in done and "100.0%" in done
    open_ = _run_row(page, "nightly/r_waiting")
    assert "awaited 2,000 of 3,000 (waiting for another run's batch)" in open_ and "reused 1,000 of 3,000" in open_
    assert "33.3%" in open_ and "every row answered" not in open_  # only the reused third is answered
    runs = {run["run_id"]: run for run in overview.as_dict()["runs"]}
    assert runs["r_waiting"]["reuse"]["awaited_waiting"] == 2000 and runs["r_waiting"]["percent_done"] < 34
    assert runs["r_answered"]["reuse"]["awaited_answered"] == 3000 and runs["r_answered"]["rows_reused"] == 0


def _billed(raw: Path) -> float:
    """What results of claude-sonnet-4-6 cost at batch prices ($3 and $15 per million tokens, halved)."""
    usages = [json.loads(line)["result"]["message"]["usage"] for line in raw.read_text().splitlines()]
    return sum(u["input_tokens"] * 1.5 + u["output_tokens"] * 7.5 for u in usages) / 1e6


def test_the_chart_counts_what_ended_batches_billed_landed_or_not(emulator: RunningEmulator, work_dir: Path) -> None:
    """Issue 23: the 30-day chart summed landed costs only, so a batch whose transfer failed
    was missing. A batch that ended is counted by its landing summary, else by its raw results
    once downloaded; with neither, the day's cost is marked partly unknown, never $0."""
    landed, failed, lost = create_batches(3)
    emulator.emulator.end_all()
    write_manifest(work_dir, "nightly", "r_landed", [landed], cost=0.5)
    folder = write_manifest(work_dir, "nightly", "r_failed", [failed])  # its transfer failed after downloading
    raw = folder / "raw" / f"{failed}.jsonl"
    ClaudeBatchHook().download_results(failed, raw)
    write_manifest(work_dir, "nightly", "r_lost", [lost])  # its transfer failed before downloading
    now = emulator.emulator.clock.now()

    overview = load_overview("claude_batch_default", 10, run_dates=RunDatesOf({}), now=now)

    rows = {row.id: row for row in overview.rows}
    assert _billed(raw) > 0 and rows[failed].cost_usd == pytest.approx(_billed(raw), abs=1e-6)
    assert rows[failed].cost_source == "raw results" and not rows[failed].landed
    assert rows[lost].cost_usd is None and rows[landed].cost_source == "landed"
    (today,) = [p for p in overview.chart(now.date()) if p.batches]
    assert today.batches == 3 and today.cost_usd == pytest.approx(0.5 + _billed(raw), abs=1e-6)
    assert today.unpriced_batches == 1 and today.open_batches == 0  # ``lost``: ended, cost not known
    svg = render_chart(overview.chart(now.date()))
    assert svg.count('<rect class="unknown"') == 1 and ">+?</text>" in svg and "1 without a known cost" in svg
    page = render_page(overview, 10, now=now)
    failed_row = page.split(f'data-batch-id="{failed}"', 1)[1].split("</tr>", 1)[0]
    assert "billed, not landed" in failed_row
    assert "billed, not landed" in _run_row(page, "nightly/r_failed")
    # The one-task view prices it the same way.
    (row,) = load_overview("claude_batch_default", 10, TaskFilter("nightly", "r_failed", "submit")).rows
    assert row.cost_source == "raw results" and row.cost_usd == pytest.approx(_billed(raw), abs=1e-6)
