"""ClaudeBatchCompactAnswersOperator, called directly: it merges each partition of the answer
store and expires answers older than its ``max_age`` (given, or ``[claude_batch] answer_max_age``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerStore
from airflow_provider_claude_batch.exceptions import ClaudeBatchParameterError
from airflow_provider_claude_batch.operators.compact_answers import ClaudeBatchCompactAnswersOperator
from tests.unit.batching.reuse.test_answer_store import ORIGIN, _answers, _keys


def test_compaction_merges_files_and_expires_old_answers(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path)
    now = datetime.now(timezone.utc)
    store.add(_answers(range(40)), ORIGIN, name="old", answered_at=now - timedelta(days=10))
    store.add(_answers(range(40, 80)), ORIGIN, name="new", answered_at=now - timedelta(hours=1))
    store.add(_answers(range(60, 80), text="again"), ORIGIN, name="again", answered_at=now)
    before = sum(len(files) for files in store.files().values())

    operator = ClaudeBatchCompactAnswersOperator(task_id="compact", work_dir=str(tmp_path), max_age="7d")
    stats = operator.execute({})  # the operator reads nothing from its context

    assert stats["files_before"] == before
    after = store.files()
    assert stats["files_after"] == sum(len(files) for files in after.values()) < before
    assert all(len(files) <= 1 for files in after.values())  # one file per partition
    assert stats["expired"] == 40 and stats["duplicates"] == 20 and stats["answers_kept"] == 40
    assert store.lookup(_keys(range(40)), max_age=None).count == 0  # expired: deleted, not hidden
    assert store.lookup(_keys(range(40, 80)), max_age=None).count == 40


def test_without_max_age_the_configured_one_is_read_when_the_task_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AnswerStore(tmp_path)
    store.add(_answers(range(10)), ORIGIN, name="old", answered_at=datetime.now(timezone.utc) - timedelta(days=3))
    operator = ClaudeBatchCompactAnswersOperator(task_id="compact", work_dir=str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__ANSWER_MAX_AGE", "2d")
    assert operator.execute({})["expired"] == 10


def test_a_bad_max_age_fails_when_the_dag_is_parsed() -> None:
    with pytest.raises(ClaudeBatchParameterError, match="max_age"):
        ClaudeBatchCompactAnswersOperator(task_id="compact", max_age="-1d")
