"""The batch queue's metrics (metrics.py): every name sent is documented in docs/queue.md, and a
feeding step's figures reach Airflow's Stats facade."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import Stats

from airflow_provider_claude_batch.batching.submit.feeding import Fed
from airflow_provider_claude_batch.metrics import QUEUE_METRICS, emit_feeding

DOCS = Path(__file__).resolve().parents[2] / "docs" / "queue.md"


def test_every_metric_is_documented_and_only_those() -> None:
    documented = set(re.findall(r"`(claude_batch\.[a-z_.]+)`", DOCS.read_text()))
    assert documented == set(QUEUE_METRICS)


def test_a_feeding_step_sends_its_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, str, Any, dict[str, str]]] = []
    monkeypatch.setattr(Stats, "gauge", lambda name, value, **kw: sent.append(("gauge", name, value, kw["tags"])))
    monkeypatch.setattr(Stats, "incr", lambda name, count=1, **kw: sent.append(("incr", name, count, kw["tags"])))
    fed = Fed(created=["b1", "b2"], waiting_chunks=1, waiting_requests=10, queued=20, limit=40, refusals=1, in_queue=20)
    emit_feeding(fed, 20, conn_id="c", dag_id="d", task_id="t")
    values = {name: value for _, name, value, _ in sent}
    assert values["claude_batch.queue.fill_percent"] == 50.0 and values["claude_batch.feed.sent_requests"] == 20
    assert values["claude_batch.feed.created_batches"] == 2 and values["claude_batch.queue.refusals"] == 1
    assert set(values) <= set(QUEUE_METRICS) and len(values) == len(QUEUE_METRICS)
    assert all(tags["conn_id"] == "c" for *_, tags in sent)


def test_a_broken_metrics_backend_never_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("statsd is down")

    monkeypatch.setattr(Stats, "gauge", broken)
    emit_feeding(Fed(), 0, conn_id="c", dag_id="d", task_id="t")
