"""Token-counted estimates: ``estimate_only`` (a dry run) and a budget checked on counted
tokens, against the emulator's ``count_tokens`` over HTTP (``dag.test()``)."""

from __future__ import annotations

import random
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
