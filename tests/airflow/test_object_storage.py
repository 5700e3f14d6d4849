"""The pipeline with its work directory and destination on object storage, not local disk.

fsspec's in-memory file system stands in for S3/GCS: like them it has no atomic rename and no
real folders, so every non-local branch (staging, manifest saves, the batch index, raw results,
the partition swap) runs as it would in production.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import run_dag, task_states, xcom


@pytest.fixture
def object_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    import fsspec
    from airflow.sdk.io import attach

    fs = fsspec.filesystem("memory")
    attach("memory", fs=fs)  # what a provider's file system registration does for s3://
    root = f"bucket-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__WORK_DIR", f"memory://{root}/_claude_batch")
    yield fs, root
    fs.rm(f"/{root}", recursive=True)


def test_the_pipeline_runs_on_object_storage_and_reruns_cleanly(
    make_dag: Any, emulator: RunningEmulator, object_store: tuple[Any, str], tmp_path: Path
) -> None:
    fs, root = object_store
    emulator.emulator.config.errored_fraction = 0.2  # resubmission rounds write there too
    dag = make_dag(
        f"""
        s = ClaudeBatchSubmitOperator(task_id="submit", source=[{{"id": f"t{{i}}", "q": f"q{{i}}"}} for i in range(30)],
                                      id_column="id", prompt="{{q}}", model="claude-haiku-4-5", max_tokens=8,
                                      max_requests_per_batch=10)
        w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
        l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, keep_columns=["q"], poll_interval=0.1,
                                         destination="memory://{root}/labels/ds={{{{ ds }}}}")
        s >> w >> l
        """
    )

    def landed() -> list[dict[str, Any]]:
        from airflow_provider_claude_batch.batching.land.partitions import read_commit, read_partition
        from airflow_provider_claude_batch.batching.state.storage import as_path

        partition = as_path(f"memory://{root}/labels/ds=2026-11-01")
        version = read_commit(partition)["version"]
        files = sorted(fs.find(f"/{root}/labels"))
        # The commit object and one version's parts: no staging and no earlier version left behind.
        assert files[0].endswith("/ds=2026-11-01/_commit.json"), files
        assert all(f"/ds=2026-11-01/{version}/part-" in f for f in files[1:]), files
        rows = [row for f in files[1:] for row in pq.read_table(io.BytesIO(fs.cat_file(f))).to_pylist()]
        assert sorted(rows, key=lambda r: r["custom_id"]) == sorted(
            read_partition(partition).to_pylist(), key=lambda r: r["custom_id"]
        )
        return sorted(rows, key=lambda r: r["custom_id"])

    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"submit": "success", "wait": "success", "land": "success"}
    first = landed()
    assert [(r["custom_id"], r["q"]) for r in first] == sorted((f"t{i}", f"q{i}") for i in range(30))
    summary = xcom(dag_run, "land")
    assert summary["destination"] == f"memory://{root}/labels/ds=2026-11-01"
    assert all(
        f.startswith(f"memory://{root}/labels/ds=2026-11-01/{summary['version']}/part-") for f in summary["files"]
    )
    created = emulator.emulator.stats["batches_created"]
    assert created > 3  # three chunks and their resubmissions
    index = fs.find(f"/{root}/_claude_batch/_batches")
    assert len(index) == created
    # The Claude Batches page finds each batch's task and cost there.
    from airflow_provider_claude_batch.plugins.batches_page import load_overview

    overview = load_overview("claude_batch_default", 50)
    assert len(overview.rows) == created and not overview.notes
    assert {row.origin.dag_id for row in overview.rows if row.origin} == {dag.dag_id}
    # Every batch counts as landed, also one whose requests all went out again in a later
    # round (no rows of it are left, and errored requests are not billed).
    assert all(row.origin and row.landed and row.cost_usd is not None for row in overview.rows)
    assert any(row.origin and row.origin.round and row.cost_usd == 0 for row in overview.rows)

    # A clear of the whole run after a lifecycle rule expired everything big from the work
    # directory (raw results, request bodies, input columns, resubmission requests): no batch is
    # created again, the results are downloaded again, the requests rendered again, and the
    # partition is replaced whole with the same rows.
    run_folder = f"/{root}/_claude_batch/{dag.dag_id}/{dag_run.run_id}/submit"
    expired = sorted(fs.ls(run_folder, detail=False))
    expired = [f for f in expired if f.rsplit("/", 1)[1].startswith(("raw", "requests-", "round-"))]
    assert len(expired) >= 3
    for folder in expired:
        fs.rm(folder, recursive=True)
    downloads = emulator.emulator.calls["results"]
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"submit": "success", "wait": "success", "land": "success"}
    assert emulator.emulator.stats["batches_created"] == created
    assert emulator.emulator.calls["results"] == downloads + created
    assert landed() == first

    # Only the transfer cleared after they expired again: its keep_columns input is gone.
    for folder in fs.ls(run_folder, detail=False):
        if folder.rsplit("/", 1)[1].startswith("requests-"):
            fs.rm(folder, recursive=True)
    from airflow_provider_claude_batch.batching.land.parts import output_schema
    from airflow_provider_claude_batch.batching.state.manifest import load_manifest
    from airflow_provider_claude_batch.batching.state.storage import as_path
    from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

    run_dir = as_path(f"memory://{run_folder.lstrip('/')}")
    with pytest.raises(ClaudeBatchInputError, match="are gone .*clear the submit task too"):
        output_schema(run_dir, load_manifest(run_dir), ["q"])


@pytest.mark.parametrize(("executor", "warned"), [("CeleryExecutor", True), ("LocalExecutor", False)])
def test_a_local_work_dir_under_a_remote_executor_is_warned_about_at_submit(
    make_dag: Any,
    emulator: RunningEmulator,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    executor: str,
    warned: bool,
) -> None:
    """The submit task of a real run says so in its log, before it creates anything, when the
    deployment's executor runs tasks on other machines and the work directory is local disk."""
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    dag = make_dag('ClaudeBatchSubmitOperator(task_id="submit", source=["a"], model="claude-haiku-4-5", max_tokens=8)')
    dag_run = run_dag(dag)
    task_log = "".join(capfd.readouterr())  # the task runner logs to the process's output
    assert task_states(dag_run) == {"submit": "success"}
    message = f"is on local disk but the executor ({executor}) may run tasks on other machines"
    assert (message in task_log) is warned, task_log[-3000:]
    if warned:
        assert task_log.index(message) < task_log.index("msgbatch_")  # before the batch was created
