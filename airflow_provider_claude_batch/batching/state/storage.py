"""Small helpers over path objects (``pathlib.Path``, ``ObjectStoragePath``, any ``UPath``).

Nothing here needs Airflow (``as_path`` uses its ``ObjectStoragePath`` when installed): callers pass path objects, so the same code writes to local
disk in tests and to S3/GCS in production.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

#: A path object: ``pathlib.Path``, any ``UPath`` or Airflow's ``ObjectStoragePath`` (a ``UPath``
#: proxy that mypy does not see as one, hence ``Any``). Each supports ``/``, ``open``, ``exists``,
#: ``mkdir``, ``iterdir`` and ``unlink``; the helpers below cover what they do differently.
StoragePath = Any


def as_path(location: Any) -> StoragePath:
    """The one path type for a location: a path object is kept, a string becomes one.

    A local path (or ``file://`` URI) becomes a local ``UPath`` (also a ``pathlib.Path``).
    Any other URI becomes Airflow's ``ObjectStoragePath`` when Airflow is installed and has a
    file system for its scheme, so that Airflow's connections sign the requests (the default
    one of the scheme, or one named in the URI: ``s3://aws_default@bucket/...``); otherwise a
    plain ``UPath`` with fsspec's own settings (the core runs without Airflow). An empty string
    is an error: as a path it would mean the process's working folder.
    """
    if not isinstance(location, str):
        return location
    if not location.strip():
        raise ClaudeBatchInputError(f"a location is an empty string ({location!r}), not a path")
    from upath import UPath

    if "://" in location and not location.startswith("file://"):
        try:
            from airflow.providers.common.compat.sdk import ObjectStoragePath
        except ImportError:
            return UPath(location)
        path = ObjectStoragePath(location)
        try:
            path.fs  # noqa: B018 - Airflow raises ValueError when no provider serves the scheme
        except ValueError:
            return UPath(location)
        return path
    return UPath(location.removeprefix("file://"))


def is_local(path: Any) -> bool:
    if isinstance(path, Path):
        return True
    protocol = getattr(path, "protocol", "") or ""
    return protocol in ("", "file", "local")


def local_os_path(path: Any) -> str:
    """The local file system path of a local path object (``ObjectStoragePath`` keeps it in ``.path``)."""
    return str(getattr(path, "path", path))


def replace(source: Any, target: Any) -> None:
    """Move ``source`` to ``target``, replacing it: a reader finds the old ``target`` or the new
    one at every moment, never none. On local disk one ``os.replace``; on object storage a
    server-side copy onto ``target`` (an object store replaces an object in one step), then the
    source is deleted. Never a delete of ``target`` first: for the moment between that delete
    and the copy the file would be missing, and a reader would take a run's claim for dropped
    (two runs then planned alone and paid for their shared requests twice)."""
    if isinstance(source, Path) and isinstance(target, Path):
        os.replace(source, target)
        return
    if is_local(source) and is_local(target):
        os.replace(
            str(source.path if hasattr(source, "path") else source),
            str(target.path if hasattr(target, "path") else target),
        )
        return
    fs = source.fs
    fs.copy(source.path, target.path)
    fs.rm(source.path)
    forget_listings(target)  # see write_whole


@contextmanager
def atomic_writer(target: Any, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write to a temporary sibling of ``target``; it takes the final name only when the
    block finishes without an error, so readers never see a half-written file."""
    target = as_path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with temporary.open(mode) as handle:
            yield handle
        replace(temporary, target)
    except BaseException:
        try:
            if temporary.exists():
                temporary.unlink()
        except OSError:
            pass
        raise


def write_whole(target: Any, data: bytes) -> None:
    """Write ``data`` as ``target`` so that readers see all of the old file or all of the new
    one, never half of one and never none: on local disk through :func:`atomic_writer`; on
    object storage as one upload, which an object store makes visible only once complete and
    which replaces an existing object in one step (it saves the copy and the delete a rename
    costs there). Streams too large to hold in memory use :func:`atomic_writer` everywhere.
    Either way the caches of the path are dropped after the write, so this process reads the
    new file next."""
    target = as_path(target)
    if is_local(target):
        with atomic_writer(target) as out:
            out.write(data)
    else:
        target.write_bytes(data)
        # Every file system the path answers through forgets what it knew of the old file: s3fs
        # reads with the ETag it cached (from a listing, an earlier read), and a stale one makes
        # the next read of the new file fail (412), in this process, until the cache is dropped.
        forget_listings(target)


def children(folder: Any) -> list[Any]:
    """The entries of ``folder`` as they are now. fsspec's object-store file systems cache a
    folder's listing for the life of the process (s3fs never expires it), so a process that
    lists a folder again (a wait on other runs' claims, the page's web server) would miss what
    other workers wrote meanwhile. Every listing drops that cache first (local disk has none)."""
    if not is_local(folder):
        forget_listings(folder)
    return list(folder.iterdir())


def forget_listings(path: Any) -> None:
    """Drop every cached listing of ``path`` and its parents, in each file system object the
    path answers through. Airflow's ``ObjectStoragePath`` (on universal-pathlib 0.3) is a proxy
    whose ``fs`` is not the one its wrapped path lists with: both caches must go."""
    seen: set[int] = set()
    while path is not None:
        fs = getattr(path, "fs", None)
        if fs is not None and id(fs) not in seen and hasattr(fs, "invalidate_cache"):
            seen.add(id(fs))
            fs.invalidate_cache(getattr(path, "path", str(path)))
        path = getattr(path, "__wrapped__", None)


def parquet_bytes(table: Any, **write_options: Any) -> bytes:
    """A whole Parquet file of ``table`` (zstd unless ``write_options`` say otherwise), for the
    small files written in one piece (:func:`write_whole`, ``RunDir.write_atomic``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **{"compression": "zstd", **write_options})
    return bytes(sink.getvalue().to_pybytes())


def remove_tree(path: Any) -> None:
    """Delete a folder and everything below it (no error when it does not exist)."""
    if not path.exists():
        return
    if is_local(path):
        import shutil

        shutil.rmtree(local_os_path(path), ignore_errors=True)
    else:
        path.fs.rm(path.path, recursive=True)


def replace_tree(staged: Any, target: Any) -> None:
    """Make the local folder ``staged`` take the place of ``target``, replacing it whole.

    On Linux the two folders are exchanged in one ``renameat2(RENAME_EXCHANGE)``, so a reader
    finds the old or the new folder at every moment. Elsewhere (or on a file system without it)
    the old folder is first renamed aside: for that instant ``target`` is missing, while a
    sibling ``.{name}.old-*`` exists (``replacing`` tells). Object stores have no folder
    rename: a landed partition is made visible there by its commit object instead
    (``partitions.commit``).
    """
    if not (is_local(staged) and is_local(target)):
        raise ValueError(f"replace_tree needs local folders; {target} is on object storage (see partitions.commit)")
    staged_os = local_os_path(staged)
    target_os = local_os_path(target)
    # An old folder left aside by a replace that was interrupted (or could not be removed) would
    # make ``replacing`` true for ever, and every reader wait in vain: it is garbage, remove it.
    parent, name = os.path.split(target_os.rstrip(os.sep))
    with contextlib.suppress(OSError):
        for entry in os.listdir(parent or "."):
            if entry.startswith(f".{name}.old-"):
                _remove_local(os.path.join(parent, entry))
    if os.path.isdir(target_os) and _exchange(staged_os, target_os):
        _remove_local(staged_os)  # now the old folder
        return
    aside = None
    if os.path.lexists(target_os):
        aside = os.path.join(os.path.dirname(target_os), f".{os.path.basename(target_os)}.old-{uuid.uuid4().hex[:12]}")
        os.replace(target_os, aside)
    os.replace(staged_os, target_os)
    if aside is not None:
        _remove_local(aside)


def replacing(target: Any) -> bool:
    """Whether a ``replace_tree`` of the local folder ``target`` is between its two renames."""
    parent, name = os.path.split(local_os_path(target).rstrip(os.sep))
    try:
        return any(entry.startswith(f".{name}.old-") for entry in os.listdir(parent or "."))
    except OSError:
        return False


def _exchange(first: str, second: str) -> bool:
    """Swap two paths atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where
    the platform or the file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0


def _remove_local(path: str) -> None:
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        os.unlink(path)
