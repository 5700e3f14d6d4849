"""Which task created a batch, findable from the batch id alone.

When a batch is recorded in its manifest, a small JSON file is written at
``{work_dir}/_batches/{batch_id}.json`` naming the task instance, chunk and round. Whoever
knows only batch ids (the Claude Batches page lists a connection's newest batches) reads one
file per batch instead of listing every run folder, which on object storage means listing
every request and results file ever written.
"""

from __future__ import annotations

import json
import re
from typing import Any

from airflow_provider_claude_batch.batching.manifest import BatchRecord, Manifest

INDEX_FOLDER = "_batches"
#: Batch ids as the API issues them; anything else is never turned into a path.
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def work_dir_of(run_dir: Any, map_index: int) -> Any:
    """The work directory a run folder (``{work_dir}/dag/run/task[/map_index]``) lives in."""
    path = run_dir
    for _ in range(4 if map_index >= 0 else 3):
        path = path.parent
    return path


def index_path(work_dir: Any, batch_id: str) -> Any | None:
    if not _BATCH_ID.fullmatch(batch_id):
        return None
    return work_dir / INDEX_FOLDER / f"{batch_id}.json"


def record_origin(manifest: Manifest, record: BatchRecord, run_dir: Any) -> None:
    """Write the index entry of ``record``'s batch (after the manifest names it)."""
    path = index_path(work_dir_of(run_dir, manifest.map_index), record.batch_id or "")
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "dag_id": manifest.dag_id,
        "run_id": manifest.run_id,
        "task_id": manifest.task_id,
        "map_index": manifest.map_index,
        "chunk": record.chunk,
        "round": record.round,
    }
    path.write_bytes(json.dumps(entry).encode())


def read_origin(work_dir: Any, batch_id: str) -> dict[str, Any] | None:
    """The index entry of ``batch_id``, or None when no manifest under ``work_dir`` recorded it.
    Raises ``ValueError`` for an entry that is not one."""
    path = index_path(work_dir, batch_id)
    if path is None or not path.exists():
        return None
    entry = json.loads(path.read_bytes())
    if not isinstance(entry, dict) or not {"dag_id", "run_id", "task_id"} <= entry.keys():
        raise ValueError(f"{path} is not a batch index entry")
    return entry
