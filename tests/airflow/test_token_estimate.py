"""Token-counted estimates: ``estimate_only`` (a dry run) and a budget checked on counted
tokens, against the emulator's ``count_tokens`` over HTTP (``dag.test()``)."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path

import msgspec
import pytest

from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.testing.emulator import count_input_tokens
from tests.airflow.conftest import run_dag, task_states, xcom

SYSTEM = "Classify the ticket as Billing, Technical, Account or Other."


def _rows(count: int) -> list[dict[str, str]]:
    rng = random.Random(7)
    words = ["refund", "login", "broken", "invoice", "password", "slow", "charged", "twice", "error", "app"]
    return [{"id": f"t{i}", "body": " ".join(rng.choices(words, k=rng.randint(3, 120)))} for i in range(count)]


def _submit(rows: list[dict[str, str]], **extra: object) -> str:
    args = "".join(f", {key}={value!r}" for key, value in extra.items())
    return f"""
    import json
    ClaudeBatchSubmitOperator(task_id="submit", source=json.loads({msgspec.json.encode(rows).decode()!r}),
                              id_column="id", prompt="Ticket: {{body}}", system={SYSTEM!r},
                              model="claude-haiku-4-5", max_tokens=16, max_requests_per_batch=4000,
                              reuse_answers=False{args})  # each run its own work: the budget is the subject
    """


def test_estimate_only_counts_a_sample_and_creates_nothing(make_dag, emulator: RunningEmulator, work_dir: Path) -> None:
    rows = _rows(10_000)
    dag_run = run_dag(make_dag(_submit(rows, estimate_only=True)))
    assert task_states(dag_run) == {"submit": "skipped"}
    assert emulator.emulator.calls["create"] == 0 and emulator.emulator.stats["batches_created"] == 0
    assert emulator.emulator.calls["count_tokens"] == 100
    # Oracle: the emulator's own count of every one of the 10,000 requests.
    counted = sum(
        count_input_tokens(
            msgspec.json.encode(
                {
                    "model": "claude-haiku-4-5",
                    "system": SYSTEM,
                    "messages": [{"role": "user", "content": f"Ticket: {row['body']}"}],
                }
            )
        )["input_tokens"]
        for row in rows
    )
    estimate = xcom_estimate(dag_run)
    assert abs(estimate["input_tokens"] - counted) <= 0.10 * counted, (estimate["input_tokens"], counted)
    assert (estimate["requests"], estimate["batches"], estimate["sampled"]) == (10_000, 3, 100)
    assert estimate["output_tokens_ceiling"] == 10_000 * 16
    # Haiku 4.5 at batch prices: input (as a cache write, the dearer) $1.25, output $5 per MTok, halved.
    assert estimate["cost_usd"] == pytest.approx(0.5 * (estimate["input_tokens"] * 1.25 + 10_000 * 16 * 5) / 1e6)
    assert not any(work_dir.rglob("*.jsonl"))  # the staged requests are gone too


def xcom_estimate(dag_run):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids="submit", key="estimate")
        return XComModel.deserialize_value(session.scalars(query).first())


def test_a_budget_checks_the_counted_estimate_when_tokens_are_counted(
    make_dag, emulator: RunningEmulator, work_dir: Path
) -> None:
    rows = _rows(300)
    bytes_ceiling = xcom(run_dag(make_dag(_submit(rows))), "submit")["cost_ceiling_usd"]
    assert emulator.emulator.stats["batches_created"] == 1
    budget = bytes_ceiling * 0.6
    # Counted, the same requests fit the budget: they are submitted.
    counted = run_dag(make_dag(_submit(rows, max_cost_usd=budget, count_tokens_sample=50)))
    assert task_states(counted) == {"submit": "success"}
    assert xcom(counted, "submit")["cost_ceiling_usd"] < budget
    assert emulator.emulator.stats["batches_created"] == 2
    # Uncounted, the byte-for-token ceiling is over it: nothing is submitted.
    uncounted = run_dag(make_dag(_submit(rows, max_cost_usd=budget)))
    assert task_states(uncounted) == {"submit": "failed"}
    assert emulator.emulator.stats["batches_created"] == 2


PIPELINE = """
s = ClaudeBatchSubmitOperator(task_id="submit", source={rows!r}, id_column="id", prompt="{{body}}",
                              model="claude-haiku-4-5", max_tokens=16, max_requests_per_batch=40)
w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={destination!r}, poll_interval=0.1)
s >> w >> l
"""

ESTIMATE = """
ClaudeBatchSubmitOperator(task_id="submit", source={rows!r}, id_column="id", prompt="{{body}}",
                          model="claude-haiku-4-5", max_tokens=16, max_requests_per_batch=40, estimate_only=True)
"""


def _tickets(ids: range, prefix: str = "ticket") -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i}", "body": f"Label {prefix} number {i}"} for i in ids]


def _store_files(work_dir: Path) -> list[Path]:
    return sorted(path for path in (work_dir / "_answers").rglob("*") if path.is_file())


def test_an_estimate_prices_only_the_rows_a_submit_would_send(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    answered = _tickets(range(60))
    first = run_dag(make_dag(PIPELINE.format(rows=answered, destination=str(tmp_path / "out"))))
    assert task_states(first)["land"] == "success"
    assert emulator.emulator.stats["requests_received"] == 60
    stored = _store_files(work_dir)
    assert stored, "the first run stored its answers"
    calls = dict(emulator.emulator.calls)

    # Tonight: yesterday's 60 rows under new ids, 5 new ones, and a copy of one of them.
    new = _tickets(range(5), prefix="new")
    rows = [{**row, "id": f"d2-{row['id']}"} for row in answered] + new + [{**new[4], "id": "copy"}]
    dag_run = run_dag(make_dag(ESTIMATE.format(rows=rows)), datetime(2026, 11, 2, tzinfo=timezone.utc))
    assert task_states(dag_run) == {"submit": "skipped"}
    estimate = xcom_estimate(dag_run)
    assert (estimate["rows"], estimate["reused"], estimate["deduplicated"], estimate["awaited"]) == (66, 60, 1, 0)
    assert (estimate["requests"], estimate["batches"], estimate["sampled"]) == (5, 1, 5)
    # Every sent request was counted, so the input tokens are the emulator's own count of the 5.
    counted = sum(
        count_input_tokens(
            msgspec.json.encode({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": r["body"]}]})
        )["input_tokens"]
        for r in new
    )
    assert abs(estimate["input_tokens"] - counted) <= 2, (estimate["input_tokens"], counted)
    assert estimate["output_tokens_ceiling"] == 5 * 16
    assert estimate["cost_usd"] == pytest.approx(0.5 * (estimate["input_tokens"] * 1.25 + 5 * 16 * 5) / 1e6)
    assert estimate["reused_cost_usd"] > 0
    # Nothing happened: no create, tokens counted for the sent requests only, the store as it was,
    # nothing marked in flight, no manifest and no staging left.
    assert emulator.emulator.calls["create"] == calls["create"]
    assert emulator.emulator.calls["count_tokens"] - calls.get("count_tokens", 0) == 5
    assert emulator.emulator.stats["requests_received"] == 60
    assert _store_files(work_dir) == stored
    assert not (work_dir / "_answers" / "_inflight").exists() or not any(
        (work_dir / "_answers" / "_inflight").iterdir()
    )
    estimate_dir = work_dir / dag_run.dag_id
    assert not list(estimate_dir.rglob("manifest.json"))
    assert not [p for p in estimate_dir.rglob("*") if p.is_file()]


def test_an_estimate_with_nothing_to_send_says_so_and_creates_nothing(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path, capfd
) -> None:
    rows = _tickets(range(30))
    assert task_states(run_dag(make_dag(PIPELINE.format(rows=rows, destination=str(tmp_path / "out")))))["land"] == (
        "success"
    )
    calls = dict(emulator.emulator.calls)
    stored = _store_files(work_dir)
    dag_run = run_dag(make_dag(ESTIMATE.format(rows=rows)), datetime(2026, 11, 2, tzinfo=timezone.utc))
    assert task_states(dag_run) == {"submit": "skipped"}
    estimate = xcom_estimate(dag_run)
    assert (estimate["rows"], estimate["reused"], estimate["requests"], estimate["batches"]) == (30, 30, 0, 0)
    assert (estimate["cost_usd"], estimate["input_tokens"], estimate["output_tokens_ceiling"]) == (0.0, 0, 0)
    assert "nothing to send: all 30 rows are answered" in capfd.readouterr().out
    assert {k: emulator.emulator.calls[k] for k in ("create", "count_tokens")} == {
        k: calls.get(k, 0) for k in ("create", "count_tokens")
    }
    assert _store_files(work_dir) == stored
    assert not [p for p in (work_dir / dag_run.dag_id).rglob("*") if p.is_file()]
