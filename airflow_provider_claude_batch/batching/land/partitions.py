"""How a landed partition becomes visible, and how to read one without ever seeing a mix.

A partition is the destination folder of one transfer (e.g. ``.../ticket_labels/ds=2026-11-02/``).
A rerun replaces it whole. Its **commit object**, ``_commit.json`` in the folder, names the one
landing readers should see::

    {"format": 1, "version": "v-20261102T031500-1a2b3c4d", "rows": 2100,
     "files": ["v-20261102T031500-1a2b3c4d/part-00000.parquet", ...]}

Invariants (what a reader may rely on):

* Every file a commit object names was completely written before the commit object was, and
  is never changed afterwards (a new landing writes new files under a new name).
* Object storage (S3, GCS, ...) has no folder rename, but one PUT of a small object is atomic
  and read-after-write consistent. So a landing writes its parts under a new version folder
  ``v-<time>-<random>/``, then writes the commit object (the single step that makes it
  visible), then deletes every other version. A reader that reads the commit object and then
  exactly the files it names sees one landing, whole. If a newer landing deleted those files
  meanwhile, the read fails with a missing file: :func:`read_partition` starts again from the
  new commit object, so the caller still gets one whole landing.
* Local disk keeps the folder rename (the partition is staged under a hidden sibling and
  swapped in, ``storage.replace_tree``: one atomic exchange on Linux) with its commit object
  inside, and the parts directly in the folder. A reader that opens the files one by one can still straddle a
  rename, so :func:`read_partition` checks the commit object again after reading (everywhere).
* A reader that lists the folder itself on object storage can see two versions for the moment
  between a commit and the cleanup, or the version folder of a landing that was interrupted
  (never committed, deleted by the next landing). Use the commit object.

Partitions landed before commit objects existed (``part-*.parquet`` directly in the folder,
no ``_commit.json``) are read by listing those files. Nothing here imports Airflow.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_claude_batch.batching.state.storage import (
    as_path,
    children,
    is_local,
    remove_tree,
    replace_tree,
    replacing,
)
from airflow_provider_claude_batch.exceptions import ClaudeBatchPartitionError as ClaudeBatchPartitionError

COMMIT_NAME = "_commit.json"
COMMIT_FORMAT = 1
VERSION_PREFIX = "v-"
#: Data files of a landing: ``part-NNNNN.parquet``, one per chunk, then one for the rows not sent.
PART_PREFIX = "part-"


def part_file_name(index: int) -> str:
    """The name of a landing's ``index``-th data file."""
    return f"{PART_PREFIX}{index:05d}.parquet"


def new_version() -> str:
    """A version folder name: sortable by time, unique across concurrent landings."""
    return f"{VERSION_PREFIX}{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def stage(destination: Any) -> Any:
    """The folder a landing writes its parts into before :func:`commit`.

    Local disk: a hidden sibling, renamed in whole. Object storage: the new version's folder
    inside the destination, where the parts stay (a rename there would copy every object)."""
    destination = as_path(destination)
    if is_local(destination):
        staged = destination.parent / f".{destination.name}.tmp-{uuid.uuid4().hex[:12]}"
    else:
        staged = destination / new_version()
    staged.mkdir(parents=True, exist_ok=True)
    return staged


def commit(staged: Any, destination: Any, files: list[str], *, rows: int) -> dict[str, Any]:
    """Make the parts ``files`` (names inside ``staged``) the partition's content, whole.

    Returns the commit record, whose ``files`` are relative to ``destination``."""
    destination = as_path(destination)
    local = is_local(destination)
    version = staged.name if not local else new_version()
    record = {
        "format": COMMIT_FORMAT,
        "version": version,
        "rows": rows,
        "committed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": list(files) if local else [f"{version}/{name}" for name in files],
    }
    body = json.dumps(record, indent=1).encode()
    if local:
        (staged / COMMIT_NAME).write_bytes(body)
        replace_tree(staged, destination)
        return record
    with (destination / COMMIT_NAME).open("wb") as out:  # one PUT: the moment it becomes visible
        out.write(body)
    for child in children(destination):
        if child.name not in (COMMIT_NAME, version):
            remove_tree(child) if child.is_dir() else child.unlink()
    return record


def discard(staged: Any) -> None:
    """Remove a landing that failed before :func:`commit` (readers never saw it)."""
    remove_tree(staged)


def read_commit(destination: Any) -> dict[str, Any] | None:
    """The partition's commit record, or ``None`` when it has none (never landed, or landed
    before commit objects existed)."""
    path = as_path(destination) / COMMIT_NAME
    try:
        # One GET: s3fs's open() checks the ETag it saw first, so an object replaced between
        # its HEAD and its GET would fail the read.
        raw = path.read_bytes() if is_local(path) else path.fs.cat_file(path.path)
    except FileNotFoundError:
        return None
    try:
        record: dict[str, Any] = json.loads(raw)
        if not isinstance(record.get("files"), list):
            raise ValueError("no 'files' list")
    except ValueError as error:
        raise ClaudeBatchPartitionError(f"the commit object {path} cannot be read: {error}") from error
    return record


def committed_files(destination: Any) -> list[Any]:
    """The files a reader of the partition should read, as path objects: those its commit object
    names, or for a partition without one, its ``part-*.parquet`` files. Empty when the
    partition does not exist. For engines of your own (Spark, DuckDB, Trino): read exactly these."""
    destination = as_path(destination)
    record = read_commit(destination)
    if record is not None:
        return [destination / name for name in record["files"]]
    if not destination.exists():
        return []
    return sorted((p for p in children(destination) if p.name.startswith(PART_PREFIX)), key=lambda p: p.name)


def read_partition(destination: Any, *, columns: list[str] | None = None, attempts: int = 5) -> pa.Table:
    """The partition's rows, all from one landing, as a pyarrow Table (``.to_pandas()`` for pandas).

    ``destination`` is the transfer's destination (a path, an ``s3://``/``gs://`` URI, or a path
    object). A landing that replaces the partition during the read makes it start again
    from the new commit object, up to ``attempts`` times."""
    return _read_consistently(destination, lambda path: pq.read_table(path, columns=columns), attempts)


def _read_consistently(destination: Any, read: Callable[[Any], pa.Table], attempts: int) -> pa.Table:
    """Optimistic: read the commit object, the files it names, then the commit object again;
    a different commit object (versions are unique) means a landing replaced the partition
    while we read, so we start again. On local disk this is what keeps a reader whole: the
    folder rename is atomic, but a reader opening its files one by one can straddle it. Without
    an atomic exchange the folder is missing between two renames: a read that overlapped them
    (the old folder set aside still exists, or the commit object changed) starts again too, so
    a partition caught missing is never returned as an empty one."""
    folder = as_path(destination)
    local = is_local(folder)
    for attempt in range(attempts):
        if local and replacing(folder):
            time.sleep(0.01 * (attempt + 1))  # between the two renames of a platform without an exchange
            continue
        before = read_commit(destination)
        files = committed_files(destination) if before is None else [folder / f for f in before["files"]]
        try:
            tables = []
            for path in files:
                with path.open("rb") as handle:
                    tables.append(read(handle))
        except OSError:  # FileNotFoundError, or s3fs's "no longer exists"
            if read_commit(destination) != before:
                continue
            raise
        if read_commit(destination) != before or (local and replacing(folder)):
            continue
        return pa.concat_tables(tables) if tables else pa.table({})
    raise ClaudeBatchPartitionError(
        f"the partition {destination} was replaced {attempts} times while it was being read; try again"
    )
