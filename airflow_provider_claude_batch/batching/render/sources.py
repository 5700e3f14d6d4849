"""Input sources as a stream of Arrow record batches (bounded memory for files of any size).

A source is a list of strings or dicts, a pandas DataFrame, an Arrow table, or a file or
folder of Parquet, CSV or JSONL given as a path object or URI (local paths and fsspec URIs
such as ``s3://...``). Files are scanned with ``pyarrow.dataset`` in record batches.

A file with no bytes (any format) or only blank lines (CSV, JSONL) holds no rows, like a
header-only CSV: it is left out of a folder, and a source of nothing else has no rows (it
knows no columns, so none is missing from it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow.fs import FSSpecHandler, LocalFileSystem, PyFileSystem

from airflow_provider_claude_batch.batching.api.jsonl import iter_file_lines
from airflow_provider_claude_batch.batching.render.file_rows import (
    FILES_SCHEMA,
    file_batches,
    list_files,
    looks_like_files,
    split_glob,
)
from airflow_provider_claude_batch.batching.render.input_files import (
    BLANK_CHECK_BYTES,
    check_csv_quotes,
    first_invalid_json_line,
    is_blank,
)
from airflow_provider_claude_batch.batching.render.rendering import (
    NO_COLUMNS,
    bad_value_message,
    first_bad_value,
    rows_to_table,
)
from airflow_provider_claude_batch.batching.state.storage import as_path, is_local, local_os_path
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

FORMATS = ("parquet", "csv", "jsonl", "files")
_EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
DEFAULT_BATCH_ROWS = 65_536


@dataclass
class Source:
    description: str
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]


def _table_source(table: pa.Table, description: str, batch_rows: int) -> Source:
    return Source(description, table.schema, iter(table.to_batches(max_chunksize=batch_rows)))


def _detect_format(path: Any, files: Sequence[str]) -> str:
    names = files or [str(path)]
    found = {_EXTENSIONS.get("." + name.rsplit(".", 1)[-1].lower()) for name in names if "." in name.rsplit("/", 1)[-1]}
    found.discard(None)
    if len(found) == 1:
        return found.pop()  # type: ignore[return-value]
    if not found and all(looks_like_files(name) for name in names):
        return "files"  # a folder of documents and images: one row per file
    if not found:
        raise ClaudeBatchInputError(
            f"cannot tell the format of source {path}: name a file ending in "
            f"{sorted(_EXTENSIONS)} or pass source_format (one of {FORMATS})"
        )
    raise ClaudeBatchInputError(f"source {path} mixes formats {sorted(found)}: pass source_format to choose one")  # type: ignore[type-var]


def _filesystem(path: Any) -> tuple[Any, str]:
    if is_local(path):
        return LocalFileSystem(), local_os_path(path)
    return PyFileSystem(FSSpecHandler(path.fs)), path.path


def open_source(
    source: Any,
    *,
    source_format: str | None = None,
    columns: Sequence[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Source:
    """Open ``source`` for streaming; ``columns`` limits what is read from files. A path of
    documents or images (``*.pdf``, a folder with ``source_format="files"``) is one row per file."""
    if source_format is not None and source_format not in FORMATS:
        raise ClaudeBatchInputError(f"unknown source_format {source_format!r}; use one of {FORMATS}")
    if isinstance(source, pa.Table):
        return _table_source(source, "the Arrow table", batch_rows)
    if type(source).__module__.startswith("pandas") and hasattr(source, "columns"):
        try:
            table = pa.Table.from_pandas(source, preserve_index=False)
        except (pa.ArrowException, UnicodeEncodeError) as exc:
            raise ClaudeBatchInputError(_dataframe_error(source, exc)) from None
        return _table_source(table, "the DataFrame", batch_rows)
    if isinstance(source, (list, tuple)):
        return _table_source(rows_to_table(source), "the list", batch_rows)
    if isinstance(source, (bytes, bytearray)) or source is None:
        raise ClaudeBatchInputError(f"unsupported source of type {type(source).__name__}")
    if isinstance(source, str) and not source.strip():
        # Path("") is the working folder: never read whatever happens to lie there.
        raise ClaudeBatchInputError(
            f"source is an empty string ({source!r}); did its template render to nothing? "
            "Give a file, folder or URI, a list, a DataFrame or an Asset"
        )
    if source_format == "files" or (source_format is None and looks_like_files(str(source))):
        return _files_source(as_path(source))
    return _file_source(as_path(source), source_format, columns, batch_rows)


def _files_source(path: Any) -> Source:
    """Documents and images, one row per file (:mod:`file_rows`)."""
    description = f"source {path}"
    filesystem, location = _filesystem(path)
    try:
        files = list_files(filesystem, location, description)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise ClaudeBatchInputError(f"{description} cannot be listed: {type(exc).__name__}: {exc}") from None
    text = str(path)
    prefix = text[: len(text) - len(location)] if not is_local(path) and text.endswith(location) else ""
    base, pattern = split_glob(location)
    if pattern is None and len(files) == 1 and files[0].path == location:
        base = location.rsplit("/", 1)[0]
    return Source(description, FILES_SCHEMA, file_batches(filesystem, files, base, lambda name: prefix + name))


def _file_source(path: Any, source_format: str | None, columns: Sequence[str] | None, batch_rows: int) -> Source:
    description = f"source {path}"
    filesystem, location = _filesystem(path)
    try:
        info = filesystem.get_file_info(location)
        if info.type.name == "NotFound":
            raise ClaudeBatchInputError(f"{description} does not exist")
        if info.type.name == "Directory":
            selector = pa.fs.FileSelector(location, recursive=True)
            sizes = {
                f.path: f.size
                for f in filesystem.get_file_info(selector)
                if f.type.name == "File"
                and not any(part.startswith((".", "_")) for part in f.path[len(location) :].split("/"))
            }
            if not sizes:
                raise ClaudeBatchInputError(f"{description} is an empty folder")
        else:
            sizes = {location: info.size}
        files = list(sizes)
        fmt = source_format or _detect_format(path, files if info.type.name == "Directory" else [])
        if fmt == "files":
            return _files_source(path)
        files = [
            name for name in sorted(files) if not _holds_no_rows(filesystem, name, sizes[name], fmt, path, location)
        ]
        if not files:
            return _no_rows(description, columns)
        file_format: ds.FileFormat | str = "json" if fmt == "jsonl" else fmt
        located = _JsonlLocator(path, location, filesystem, files) if fmt == "jsonl" else None
        try:
            dataset = ds.dataset(files, filesystem=filesystem, format=file_format)
        except pa.ArrowException:
            if located is not None:
                located.raise_first_invalid_line()
            raise
        wanted = [c for c in columns if c in dataset.schema.names] if columns is not None else None
        scanner = dataset.scanner(columns=wanted, batch_size=batch_rows)
        # The full schema, so that a missing column is reported with every column that exists.
        return Source(description, dataset.schema, _guarded(scanner.to_batches(), description, located))
    except ClaudeBatchInputError:
        raise
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise ClaudeBatchInputError(f"{description} cannot be read: {type(exc).__name__}: {exc}") from None


def _holds_no_rows(filesystem: Any, name: str, size: int | None, fmt: str, path: Any, location: str) -> bool:
    """Whether a file holds no rows and no columns: no bytes (any format), or only blank lines
    (CSV, JSONL). Arrow's readers fail on such a file where a header-only CSV gives no rows;
    both are "no rows". CSV files are checked for quotes never closed on the way (read once)."""
    if size == 0:
        return True
    if fmt == "csv":
        with filesystem.open_input_stream(name) as stream:
            return not check_csv_quotes(iter_file_lines(stream), description=_file_description(path, location, name))
    if fmt == "jsonl" and (size is None or size <= BLANK_CHECK_BYTES):
        with filesystem.open_input_stream(name) as stream:
            return is_blank(stream, size)
    return False


def _no_rows(description: str, columns: Sequence[str] | None) -> Source:
    """The source of files that hold no rows and name no columns: the columns asked for (of type
    null) and no record batch, marked so that no column counts as missing from it."""
    fields = [pa.field(name, pa.null()) for name in columns or ()]
    return Source(description, pa.schema(fields, metadata=NO_COLUMNS), iter(()))


def _file_description(path: Any, location: str, name: str) -> str:
    """``source <path>`` for a file source, ``source <folder>, file <name>`` for one in a folder."""
    if name == location:
        return f"source {path}"
    return f"source {path}, file {name[len(location) :].lstrip('/')}"


@dataclass
class _JsonlLocator:
    """After Arrow's JSON reader failed: find the file and line that is not a JSON object."""

    path: Any
    location: str
    filesystem: Any
    files: list[str]

    def raise_first_invalid_line(self) -> None:
        for name in self.files:
            with self.filesystem.open_input_stream(name) as stream:
                found = first_invalid_json_line(iter_file_lines(stream))
            if found is not None:
                line, why = found
                raise ClaudeBatchInputError(f"{_file_description(self.path, self.location, name)}, line {line}: {why}")


def _guarded(
    batches: Iterator[pa.RecordBatch], description: str, located: _JsonlLocator | None = None
) -> Iterator[pa.RecordBatch]:
    try:
        for batch in batches:
            if batch.num_rows:
                yield batch
    except (OSError, pa.ArrowException) as exc:
        if located is not None:
            located.raise_first_invalid_line()
        raise ClaudeBatchInputError(f"{description} cannot be read: {type(exc).__name__}: {exc}") from None


def _dataframe_error(frame: Any, exc: BaseException) -> str:
    """Name the first row and column of a DataFrame that Arrow could not convert."""
    for name in frame.columns:
        values = frame[name].tolist()
        if first_bad_value(values) is not None:
            return bad_value_message("the DataFrame", str(name), values, exc)
    return f"the DataFrame cannot be converted to Arrow: {exc}"
