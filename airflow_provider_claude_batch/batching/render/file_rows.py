"""A folder or glob of documents and images as a source: one row per file.

Each row holds ``path`` (what the renderer reads back: an OS path, or the URI on object
storage), ``name`` (the path below the folder or the glob's fixed part), ``size`` (bytes),
``modified`` (UTC) and ``media_type`` (sniffed from the file's first bytes, never from its
extension; null when it is no type the API takes, which the renderer then refuses naming the
row and file). Rows come in name order, in small record batches, so that a run renders and
sends its files a few at a time.

Invariants: the listing is taken once, when the source opens (a file added during the run is
not in it); hidden files and folders (``.``, ``_``) are left out as for table folders; only
the first :data:`media.SNIFF_BYTES` of each file are read here.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from datetime import timezone
from typing import Any

import pyarrow as pa
from pyarrow.fs import FileSelector, FileType

from airflow_provider_claude_batch.batching.api import media
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

#: Extensions that make a path a files source without ``source_format="files"``.
FILE_EXTENSIONS = frozenset({".pdf", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".txt"})
#: Rows per record batch: the renderer holds one record batch's files at most.
FILES_PER_BATCH = 4
FILES_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("name", pa.string()),
        ("size", pa.int64()),
        ("modified", pa.timestamp("us", tz="UTC")),
        ("media_type", pa.string()),
    ]
)
_GLOB = frozenset("*?[")


def looks_like_files(location: str) -> bool:
    """Whether a path names documents or images by its extension (or glob pattern's)."""
    tail = location.rstrip("/").rsplit("/", 1)[-1].lower()
    return "." in tail and "." + tail.rsplit(".", 1)[-1] in FILE_EXTENSIONS


def split_glob(location: str) -> tuple[str, str | None]:
    """``(folder, pattern)``: the fixed part of a glob and the pattern below it (``None``: no glob)."""
    parts = location.split("/")
    for index, part in enumerate(parts):
        if _GLOB & set(part):
            return "/".join(parts[:index]) or "/", "/".join(parts[index:])
    return location, None


def glob_match(parts: list[str], pattern: list[str]) -> bool:
    """Whether path ``parts`` match glob ``pattern`` parts: ``*`` within one folder name,
    ``**`` any number of folders (as in ``pathlib``)."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(glob_match(parts[skip:], pattern[1:]) for skip in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and glob_match(parts[1:], pattern[1:])


def list_files(filesystem: Any, location: str, description: str) -> list[Any]:
    """The files a location names (a file, a folder, or a glob), in name order, with their
    sizes and times (pyarrow ``FileInfo``)."""
    base, pattern = split_glob(location)
    info = filesystem.get_file_info(base)
    if info.type == FileType.NotFound:
        raise ClaudeBatchInputError(f"{description} does not exist")
    if info.type == FileType.File and pattern is None:
        return [info]
    found = [
        item
        for item in filesystem.get_file_info(FileSelector(base, recursive=True))
        if item.type == FileType.File
        and not any(part.startswith((".", "_")) for part in item.path[len(base) :].split("/"))
        and (pattern is None or glob_match(item.path[len(base) :].lstrip("/").split("/"), pattern.split("/")))
    ]
    if not found:
        raise ClaudeBatchInputError(f"{description} holds no files" + (f" matching {pattern!r}" if pattern else ""))
    return sorted(found, key=lambda item: item.path)


def file_batches(filesystem: Any, files: list[Any], base: str, uri_of: Any) -> Iterator[pa.RecordBatch]:
    """Record batches of one row per file (see the module docstring); ``uri_of`` turns a
    filesystem path into the ``path`` value the renderer reads back."""
    for start in range(0, len(files), FILES_PER_BATCH):
        chunk = files[start : start + FILES_PER_BATCH]
        columns: dict[str, list[Any]] = {name: [] for name in FILES_SCHEMA.names}
        for item in chunk:
            columns["path"].append(uri_of(item.path))
            columns["name"].append(item.path[len(base) :].lstrip("/") or item.path.rsplit("/", 1)[-1])
            columns["size"].append(item.size)
            modified = item.mtime
            columns["modified"].append(modified.astimezone(timezone.utc) if modified is not None else None)
            columns["media_type"].append(_sniff(filesystem, item.path))
        yield pa.RecordBatch.from_pydict(columns, schema=FILES_SCHEMA)


def _sniff(filesystem: Any, path: str) -> str | None:
    try:
        with filesystem.open_input_stream(path) as stream:
            return media.sniff(stream.read(media.SNIFF_BYTES))
    except OSError:
        return None  # unreadable: the renderer names the row and file when it reads it
