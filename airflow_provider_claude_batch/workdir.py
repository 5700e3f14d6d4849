"""Where a task's manifest, request bodies and raw results live, and how later tasks find it.

``{work_dir}/{dag_id}/{run_id}/{task_id}[/{map_index}]/``. In production ``work_dir`` must be
shared object storage (S3, GCS, ...) that every worker can read: retries and the sensor and
transfer tasks may run on other machines than the submit task.
"""

from __future__ import annotations

import os
import re
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_claude_batch.batching.errors import ClaudeBatchManifestError
from airflow_provider_claude_batch.batching.manifest import MANIFEST_NAME, Manifest, load_manifest
from airflow_provider_claude_batch.config import setting

_UNSAFE = re.compile(r"[^A-Za-z0-9._:+=@-]")


def default_work_dir() -> str:
    """``[claude_batch] work_dir`` (environment or airflow.cfg), else ``$AIRFLOW_HOME/claude_batch``."""
    configured = setting("work_dir")
    if configured:
        return configured
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return os.path.join(home, "claude_batch")


def as_storage_path(location: Any) -> ObjectStoragePath:
    if isinstance(location, ObjectStoragePath):
        return location
    return ObjectStoragePath(str(location))


def run_directory(
    work_dir: Any, dag_id: str, run_id: str, task_id: str, map_index: int | None = -1
) -> ObjectStoragePath:
    base = as_storage_path(work_dir or default_work_dir())
    path = base / _UNSAFE.sub("_", dag_id) / _UNSAFE.sub("_", run_id) / _UNSAFE.sub("_", task_id)
    return path / str(map_index) if map_index is not None and map_index >= 0 else path


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


def open_manifest(value: Any) -> tuple[Manifest, ObjectStoragePath]:
    """Load the manifest named by ``value``; returns it and its run folder."""
    path = as_storage_path(manifest_location(value))
    if path.name != MANIFEST_NAME:
        path = path / MANIFEST_NAME
    return load_manifest(path), path.parent


def warn_if_local_with_remote_executor(path: ObjectStoragePath, log: Any) -> None:
    protocol = getattr(path, "protocol", "") or ""
    if protocol not in ("", "file", "local"):
        return
    executor = os.environ.get("AIRFLOW__CORE__EXECUTOR", "")
    if any(name in executor for name in ("Celery", "Kubernetes", "Edge", "Ecs", "Batch")):
        log.warning(
            "work_dir %s is on local disk but the executor (%s) may run tasks on other machines: retries, the "
            "sensor and the transfer need to read it. Use shared object storage (s3://, gs://, ...) for work_dir.",
            path,
            executor,
        )
