"""Where a task's run folder is and how later tasks find its manifest (workdir.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.state.storage import as_path
from airflow_provider_claude_batch.exceptions import ClaudeBatchManifestError
from airflow_provider_claude_batch.workdir import (
    default_work_dir,
    manifest_location,
    open_manifest,
    run_directory,
    warn_if_local_with_remote_executor,
)
from tests.unit.conftest import SubmitRun


def test_the_run_folder_is_work_dir_dag_run_task_and_map_index(tmp_path: Path) -> None:
    plain = run_directory(str(tmp_path), "dag", "manual__2026-01-01T00:00:00+00:00", "submit")
    assert str(plain) == f"{tmp_path}/dag/manual__2026-01-01T00:00:00+00:00/submit"
    assert str(run_directory(str(tmp_path), "dag", "run", "submit", 2)).endswith("/dag/run/submit/2")
    # Anything that could climb out of the work directory is replaced.
    assert str(run_directory(str(tmp_path), "../x", "r/../y", "t")).endswith("/.._x/r_.._y/t")
    assert run_directory("s3://lake/_cb/", "d", "r", "t").path.protocol == "s3"


def test_the_default_work_dir_is_the_option_else_airflow_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__WORK_DIR", "s3://lake/_cb/")
    assert default_work_dir() == "s3://lake/_cb/"
    monkeypatch.delenv("AIRFLOW__CLAUDE_BATCH__WORK_DIR")
    monkeypatch.setenv("AIRFLOW_HOME", "/srv/airflow")
    assert default_work_dir() == "/srv/airflow/claude_batch"


def test_a_manifest_is_found_from_the_xcom_a_folder_or_the_file(submit_run: SubmitRun) -> None:
    manifest, run_dir = submit_run(["a", "b"])
    for value in ({"manifest": str(run_dir / "manifest.json")}, str(run_dir), str(run_dir / "manifest.json")):
        found, folder = open_manifest(value)
        assert found.batch_ids() == manifest.batch_ids() and str(folder) == str(run_dir)


def test_what_is_not_a_manifest_location_is_explained() -> None:
    with pytest.raises(ClaudeBatchManifestError, match="has no 'manifest' key"):
        manifest_location({"batch_ids": []})
    with pytest.raises(ClaudeBatchManifestError, match="did the submit task run"):
        manifest_location(None)


def test_a_local_work_dir_with_a_distributed_executor_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("tests.workdir")
    local = run_directory(str(tmp_path), "d", "r", "t")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    warn_if_local_with_remote_executor(local, log)
    assert not caplog.records
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    warn_if_local_with_remote_executor(run_directory("s3://lake/", "d", "r", "t"), log)
    assert not caplog.records
    warn_if_local_with_remote_executor(local, log)
    assert "is on local disk but the executor (CeleryExecutor)" in caplog.text


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
        assert warn_if_local_with_remote_executor(as_path(work_dir), LOG) is warned
    messages = [r.getMessage() for r in caplog.records if r.name == "test_workdir"]
    assert bool(messages) is warned
    if warned:
        assert "shared object storage" in messages[0] and executor.split(",")[-1] in messages[0]
