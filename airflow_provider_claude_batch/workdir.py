"""Which work directory a task uses, and how later tasks find a submit task's run folder.

The layout inside the work directory is ``batching.run_dir``'s. In production ``work_dir`` must be
shared object storage (S3, GCS, ...) that every worker can read: retries and the sensor and
transfer tasks may run on other machines than the submit task.
"""

from __future__ import annotations

import os
from typing import Any

from airflow_provider_claude_batch.batching.state.manifest import MANIFEST_NAME, Manifest, load_manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir, WorkDir
from airflow_provider_claude_batch.batching.state.storage import StoragePath, as_path, is_local
from airflow_provider_claude_batch.config import setting
from airflow_provider_claude_batch.exceptions import ClaudeBatchManifestError


def default_work_dir() -> str:
    """``[claude_batch] work_dir`` (environment or airflow.cfg), else ``$AIRFLOW_HOME/claude_batch``."""
    configured = setting("work_dir")
    if configured:
        return configured
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return os.path.join(home, "claude_batch")


def work_directory(work_dir: WorkDir | StoragePath | None = None) -> WorkDir:
    """The work directory ``work_dir`` names (a path or URI), else the configured default."""
    return WorkDir.of(work_dir or default_work_dir())


def run_directory(
    work_dir: WorkDir | StoragePath | None, dag_id: str, run_id: str, task_id: str, map_index: int | None = -1
) -> RunDir:
    """The run folder of a task instance in ``work_dir`` (the configured default when empty)."""
    return work_directory(work_dir).run(dag_id, run_id, task_id, map_index)


def manifest_location(value: Any) -> str:
    """The manifest's location from what a DAG author passes: the submit task's XCom (a dict
    with ``manifest``), or a path/URI of the manifest or of its folder."""
    if isinstance(value, dict):
        location = value.get("manifest")
        if not location:
            raise ClaudeBatchManifestError(
                f"the value given as manifest has no 'manifest' key (keys: {sorted(value)}); pass the submit "
                "task's output, e.g. manifest=submit.output"
            )
        return str(location)
    if isinstance(value, (str, os.PathLike)) and str(value):
        return str(value)
    raise ClaudeBatchManifestError(
        f"manifest must be the submit task's output or a path, got {type(value).__name__} {value!r}; did the "
        "submit task run and push its XCom?"
    )


def open_manifest(value: Any) -> tuple[Manifest, RunDir]:
    """Load the manifest named by ``value``; returns it and its run folder, located in its work
    directory by the task instance the manifest names."""
    path = as_path(manifest_location(value))
    if path.name != MANIFEST_NAME:
        path = path / MANIFEST_NAME
    manifest = load_manifest(path)
    return manifest, RunDir(path.parent).for_manifest(manifest)


#: Executors that run tasks on other machines (by class name), so a local work directory
#: written by one task is not there for the next.
REMOTE_EXECUTORS = ("Celery", "Kubernetes", "Edge", "Ecs", "AwsBatch", "AwsLambda", "Batch", "Lambda")


def configured_executors() -> list[str]:
    """``[core] executor`` as a list (Airflow 3 accepts several, comma separated, with aliases)."""
    try:
        from airflow.providers.common.compat.sdk import conf

        value = conf.get("core", "executor", fallback="") or ""
    except Exception:  # a task runtime without the core configuration
        value = os.environ.get("AIRFLOW__CORE__EXECUTOR", "")
    return [name.strip() for name in value.split(",") if name.strip()]


def remote_executors() -> list[str]:
    return [
        name for name in configured_executors() if any(kind in name.rsplit(".", 1)[-1] for kind in REMOTE_EXECUTORS)
    ]


def warn_if_local_with_remote_executor(path: RunDir | StoragePath, log: Any) -> bool:
    """Warn (at submit time, before anything is created) when ``work_dir`` is on local disk but
    an executor that runs tasks on other machines is configured: the sensor, the transfer and
    any retry would find no manifest there. Returns whether it warned."""
    if not (path.is_local if isinstance(path, RunDir) else is_local(path)):
        return False
    remote = remote_executors()
    if not remote:
        return False
    log.warning(
        "work_dir %s is on local disk but the executor (%s) may run tasks on other machines: retries, the "
        "sensor and the transfer need to read it. Use shared object storage (s3://, gs://, ...) for work_dir.",
        path,
        ", ".join(remote),
    )
    return True
