"""Where a DAG run stands on the page: a failed run or task is never shown as done, a run lands
only when every submit task has its landing summary, and what is not known is said."""

from __future__ import annotations

import pytest

from airflow_provider_claude_batch.plugins.run_state import AirflowState, as_dict, landing_words, verdict

SUCCESS = AirflowState("success", {"submit": "success", "wait": "success", "land": "success"})
LAND_FAILED = AirflowState("failed", {"submit": "success", "wait": "success", "land": "failed"})


@pytest.mark.parametrize(
    ("airflow", "landed", "tasks", "batches_open", "expected"),
    [
        (SUCCESS, 1, 1, False, ("landed", "good", "run success, landed")),
        (LAND_FAILED, 0, 1, False, ("failed", "bad", "run failed, land failed, not landed")),
        # A downstream task failed after the landing: the run failed all the same.
        (AirflowState("failed", {"land": "success"}), 1, 1, False, ("failed", "bad", "run failed, landed")),
        # The run still going, its transfer not failed yet: a task that failed fails it.
        (AirflowState("running", {"wait": "upstream_failed"}), 0, 1, True, ("failed", "bad", None)),
        (AirflowState("running", {"land": "running"}), 0, 1, False, ("running", "busy", "run running, not landed")),
        (None, 0, 1, True, ("running", "busy", "run not in the metadata database, not landed")),
        # Batches ended, no landing, Airflow says nothing more: not landed, never green.
        (None, 0, 1, False, ("not landed", "warn", "run not in the metadata database, not landed")),
        (AirflowState("success", {}), 0, 1, False, ("not landed", "warn", "run success, not landed")),
        (SUCCESS, 1, 2, False, ("not landed", "warn", "run success, landed 1 of 2 tasks")),
        # The run folders were not read: Airflow's word, or the batches' status.
        (SUCCESS, 0, 0, False, ("success", "good", "run success, landing not known")),
        (None, 0, 0, False, ("ended", "neutral", "run not in the metadata database, landing not known")),
    ],
)
def test_the_verdict_of_a_run(
    airflow: AirflowState | None, landed: int, tasks: int, batches_open: bool, expected: tuple[str, str, str | None]
) -> None:
    found = verdict(airflow, landed, tasks, batches_open=batches_open, batch_status="ended")
    word, tone, detail = expected
    assert (found.word, found.tone) == (word, tone)
    if detail is not None:
        assert found.detail == detail


def test_failed_tasks_are_named_then_counted() -> None:
    mapped = AirflowState("failed", {f"submit [{i}]": "failed" for i in range(5)})
    found = verdict(mapped, 0, 5, batches_open=False, batch_status="ended")
    assert found.detail == (
        "run failed, submit [0] failed, submit [1] failed, submit [2] failed, 2 more task(s) failed, not landed"
    )


def test_landing_words_and_the_json_view() -> None:
    assert [landing_words(*n) for n in ((0, 0), (0, 3), (3, 3), (2, 3))] == [
        "landing not known",
        "not landed",
        "landed",
        "landed 2 of 3 tasks",
    ]
    assert as_dict(None) == {"dag_run_state": None, "task_states": {}}
    assert as_dict(LAND_FAILED)["task_states"]["land"] == "failed"
