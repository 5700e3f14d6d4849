"""A local work directory with an executor that runs tasks on other machines is called out at
submit time; shared storage or a single-machine executor is not."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_claude_batch.workdir import as_storage_path, warn_if_local_with_remote_executor

LOG = logging.getLogger("test_workdir")


@pytest.mark.parametrize(
    ("executor", "work_dir", "warned"),
    [
        ("CeleryExecutor", "/data/claude_batch", True),
        ("LocalExecutor,KubernetesExecutor", "file:///data/claude_batch", True),
        ("LocalExecutor,my_edge:airflow.providers.edge3.executors.EdgeExecutor", "/data/claude_batch", True),
        ("LocalExecutor", "/data/claude_batch", False),
        ("CeleryExecutor", "memory://lake/_claude_batch", False),
    ],
)
def test_a_local_work_dir_with_a_remote_executor_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, executor: str, work_dir: str, warned: bool
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    with caplog.at_level(logging.WARNING, logger="test_workdir"):
        assert warn_if_local_with_remote_executor(as_storage_path(work_dir), LOG) is warned
    messages = [r.getMessage() for r in caplog.records if r.name == "test_workdir"]
    assert bool(messages) is warned
    if warned:
        assert "shared object storage" in messages[0] and executor.split(",")[-1] in messages[0]
