"""Documents and images sent by reference: each file uploaded once per content and workspace
through the Files API, and the request lines of a create made to refer to it by ``file_id``.

Request lines are staged inline (base64) whatever the mode, and a create's body is turned into
references only as it is sent (:func:`prepare_create`, called by ``create_once`` for every
create: first rounds, resubmission rounds, awaited rows sent after all). So:

* the content key, a hash of the staged line, covers the document's bytes and never a file
  id: an inline run and an uploaded run of the same documents share their answers, and a
  file uploaded again under a new id changes no key;
* chunks are cut by the inline size (a conservative bound: references are smaller);
* bad input fails while staging, before anything is uploaded.

Records: ``_files/{workspace}/{sha256}.json`` (``run_dir``) holds the file id of those bytes in
that workspace, their size, media type and upload time, written once the upload answered. A
recorded id is checked with the files metadata endpoint before a create refers to it; an id the
API no longer knows (deleted, expired, another server) is uploaded again, never a failed run.
Two runs needing the same missing bytes at the same moment upload them once: they claim the
bytes' hashes with the answer store's claims protocol (``claims``) and the later one finds the
earlier one's record. Uploads and checks run on a few threads, each holding one file.

Deleting uploads (:func:`delete_uploads`) keeps every file a run not landed yet refers to: a
create writes the hashes it sends (``BatchRecord.files``) to its manifest before checking or
uploading anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.batching.render.content_key import KEY_BYTES
from airflow_provider_claude_batch.batching.render.documents import file_source, inline_sources
from airflow_provider_claude_batch.batching.reuse.claims import claim_and_wait
from airflow_provider_claude_batch.batching.state.manifest import Manifest
from airflow_provider_claude_batch.batching.state.run_dir import LANDING_SUMMARY_NAME, RunDir, WorkDir

log = logging.getLogger(__name__)

UploadMode = Literal["inline", "files", "auto"]
UPLOAD_MODES: tuple[str, ...] = ("inline", "files", "auto")
#: ``auto`` uploads files of at least this many bytes and sends smaller ones inline.
DEFAULT_UPLOAD_MIN_BYTES = 1024 * 1024
#: Uploads and metadata checks in flight at once, each holding one file in memory.
UPLOAD_THREADS = 4
_EXTENSIONS = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg", "image/gif": "gif"}
_EXTENSIONS["image/webp"] = "webp"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class UploadSettings:
    """How a run sends its documents and images: ``files`` uploads each, ``auto`` those of at
    least ``min_bytes`` (the others inline); ``inline`` is no settings at all (``None``)."""

    mode: UploadMode = "files"
    min_bytes: int = DEFAULT_UPLOAD_MIN_BYTES

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "min_bytes": self.min_bytes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UploadSettings:
        return cls(mode=data.get("mode", "files"), min_bytes=int(data.get("min_bytes", DEFAULT_UPLOAD_MIN_BYTES)))

    def uploads(self, size: int) -> bool:
        """Whether a file of ``size`` bytes is sent by reference."""
        return self.mode == "files" or (self.mode == "auto" and size >= self.min_bytes)


class FileClient(Protocol):
    """The Files API calls uploads make (``ClaudeBatchHook`` implements them)."""

    @property
    def files_workspace(self) -> str:
        """The workspace uploaded files belong to (records are kept per workspace)."""
        ...

    def upload_file(self, data: bytes, media_type: str, filename: str) -> str:
        """Upload ``data``; returns the new file's id."""
        ...

    def file_exists(self, file_id: str) -> bool:
        """Whether the API still knows ``file_id`` (its metadata; a 404 is False)."""
        ...

    def delete_file(self, file_id: str) -> bool:
        """Delete ``file_id``; False when the API did not know it."""
        ...


@dataclass(frozen=True)
class FileRecord:
    """One uploaded file of a workspace: the id of those bytes there."""

    sha256: str
    file_id: str
    workspace: str
    size: int
    media_type: str
    uploaded_at: str

    @classmethod
    def read(cls, path: Any) -> FileRecord | None:
        """The record at ``path``; ``None`` when it is missing or unreadable (uploaded again)."""
        try:
            return cls(**json.loads(path.read_bytes()))
        except (OSError, ValueError, TypeError):
            return None

    def write(self, work_dir: WorkDir) -> None:
        RunDir.write_atomic(work_dir.file_record(self.workspace, self.sha256), json.dumps(asdict(self)).encode())


@dataclass
class _File:
    """One distinct file of a create body: where its first copy's base64 is, and its id."""

    sha256: str
    media_type: str
    start: int
    end: int
    size: int
    file_id: str | None = None


@dataclass
class Prepared:
    """A create body ready to send: references in place of the uploaded files' base64."""

    body: bytes
    #: Distinct files sent by reference, uploaded now, and found recorded and alive.
    files: int = 0
    uploaded: int = 0
    reused: int = 0
    upload_bytes: int = 0
    #: The beta flags the create needs (the Files API's when any reference is sent).
    betas: list[str] = field(default_factory=list)


def _decoded_size(b64_chars: int, tail: bytes) -> int:
    return b64_chars // 4 * 3 - tail.count(b"=")


def find_files(body: bytes, settings: UploadSettings) -> tuple[dict[str, _File], list[tuple[int, int, str]]]:
    """The distinct files of ``body`` to send by reference (by sha256 of their bytes), and every
    source to replace ``(start, end, sha256)``. One file decoded at a time."""
    files: dict[str, _File] = {}
    spans: list[tuple[int, int, str]] = []
    for match in inline_sources(body):
        start, end = match.span(2)
        size = _decoded_size(end - start, body[max(start, end - 2) : end])
        if not settings.uploads(size):
            continue
        digest = hashlib.sha256(base64.b64decode(memoryview(body)[start:end])).hexdigest()
        if digest not in files:
            files[digest] = _File(digest, match.group(1).decode(), start, end, size)
        spans.append((match.start(), match.end(), digest))
    return files, spans


def _parallel(work: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``work`` over ``items`` on at most ``UPLOAD_THREADS`` threads, in order."""
    items = list(items)
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(UPLOAD_THREADS, len(items)), thread_name_prefix="upload") as pool:
        return list(pool.map(work, items))


def _alive_records(files: Iterable[_File], work_dir: WorkDir, client: FileClient) -> None:
    """Give each file the id of its record, when the API still knows that id."""
    workspace = client.files_workspace

    def check(item: _File) -> None:
        record = FileRecord.read(work_dir.file_record(workspace, item.sha256))
        if record is not None and client.file_exists(record.file_id):
            item.file_id = record.file_id

    _parallel(check, files)


def _upload(body: bytes, items: list[_File], work_dir: WorkDir, client: FileClient) -> None:
    """Upload each file (decoded from ``body``, one per thread) and record it."""
    workspace = client.files_workspace

    def upload(item: _File) -> None:
        data = base64.b64decode(memoryview(body)[item.start : item.end])
        name = f"{item.sha256[:16]}.{_EXTENSIONS.get(item.media_type, 'bin')}"
        item.file_id = client.upload_file(data, item.media_type, name)
        uploaded_at = datetime.now(timezone.utc).isoformat()
        FileRecord(item.sha256, item.file_id, workspace, item.size, item.media_type, uploaded_at).write(work_dir)

    _parallel(upload, items)


def _claim_keys(hashes: Iterable[str]) -> np.ndarray:
    joined = b"".join(bytes.fromhex(digest)[:KEY_BYTES] for digest in hashes)
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, KEY_BYTES)


def upload_owner(manifest: Manifest) -> str:
    """The claim owner of a task instance's uploads (apart from its claim on its requests)."""
    ident = f"{manifest.dag_id}\n{manifest.run_id}\n{manifest.task_id}\n{manifest.map_index}"
    return "files-" + hashlib.sha256(ident.encode()).hexdigest()[:24]


def ensure_uploaded(
    body: bytes, files: dict[str, _File], work_dir: WorkDir, client: FileClient, owner: str, logger: Any = log
) -> list[_File]:
    """Give every file an id that the API knows: its record's, else a new upload (claimed first,
    so that two runs needing the same bytes upload them once). Returns the files uploaded now."""
    _alive_records(files.values(), work_dir, client)
    missing = [item for item in files.values() if item.file_id is None]
    if not missing:
        return []
    claim = claim_and_wait(work_dir, owner, _claim_keys(item.sha256 for item in missing), logger=logger)[0]
    try:
        _alive_records(missing, work_dir, client)  # an earlier claim may have uploaded them meanwhile
        still = [item for item in missing if item.file_id is None]
        _upload(body, still, work_dir, client)
    finally:
        claim.drop()
    return still


def refer(body: bytes, files: dict[str, _File], spans: list[tuple[int, int, str]]) -> bytes:
    """``body`` with each span's source replaced by a reference to its file."""
    parts: list[bytes] = []
    position = 0
    view = memoryview(body)
    for start, end, digest in spans:
        file_id = files[digest].file_id
        assert file_id is not None
        parts += [view[position:start].tobytes(), file_source(file_id)]
        position = end
    parts.append(view[position:].tobytes())
    return b"".join(parts)


def prepare_create(
    body: bytes,
    manifest: Manifest,
    files_of_record: Callable[[list[str]], None],
    work_dir: WorkDir,
    client: Any,
    logger: Any = log,
) -> Prepared:
    """The body a create of ``manifest`` sends: unchanged without uploads; else with every file
    the settings send by reference uploaded (or found) and referred to. ``files_of_record`` is
    given the hashes first, to record them in the manifest before anything is checked or sent."""
    if manifest.uploads is None:
        return Prepared(body)
    settings = UploadSettings.from_dict(manifest.uploads)
    files, spans = find_files(body, settings)
    if not files:
        return Prepared(body)
    if not all(hasattr(client, name) for name in ("upload_file", "file_exists", "files_workspace")):
        raise TypeError(f"{type(client).__name__} cannot upload files: it has no Files API calls")
    files_of_record(sorted(files))
    uploaded = ensure_uploaded(body, files, work_dir, client, upload_owner(manifest), logger)
    upload_bytes = sum(item.size for item in uploaded)
    logger.info(
        "Files API: %d file(s) sent by reference; %d uploaded now (%d bytes), %d uploaded before.",
        len(files),
        len(uploaded),
        upload_bytes,
        len(files) - len(uploaded),
    )
    return Prepared(
        refer(body, files, spans),
        len(files),
        len(uploaded),
        len(files) - len(uploaded),
        upload_bytes,
        [limits.FILES_API_BETA],
    )


# ---------------------------------------------------------------------- deleting uploads
@dataclass
class DeletedUploads:
    """What :func:`delete_uploads` did."""

    deleted: int = 0
    already_gone: int = 0
    kept_in_use: int = 0
    kept_young: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def files_in_use(work_dir: WorkDir) -> set[str]:
    """The hashes of the files any run not landed yet sends by reference (its manifest has no
    ``landing.json`` beside it); an unreadable manifest keeps every file (raises)."""
    used: set[str] = set()
    for path in work_dir.manifest_files():
        if (path.parent / LANDING_SUMMARY_NAME).exists():
            continue
        manifest = Manifest.from_json(path.read_bytes(), where=str(path))
        for record in manifest.batches:
            used.update(record.files or ())
    return used


def delete_uploads(
    work_dir: WorkDir | Any, client: FileClient, *, max_age: timedelta, now: datetime | None = None
) -> DeletedUploads:
    """Delete the files this work directory uploaded in the client's workspace that are at least
    ``max_age`` old, except those a run not landed yet refers to; their records go with them. A
    run that needs a deleted file later uploads it again."""
    work_dir = WorkDir.of(work_dir)
    now = now or datetime.now(timezone.utc)
    in_use = files_in_use(work_dir)
    stats = DeletedUploads()
    for path in work_dir.file_records(client.files_workspace):
        record = FileRecord.read(path)
        if record is None:
            continue
        if record.sha256 in in_use:
            stats.kept_in_use += 1
            continue
        if now - datetime.fromisoformat(record.uploaded_at) < max_age:
            stats.kept_young += 1
            continue
        if client.delete_file(record.file_id):
            stats.deleted += 1
        else:
            stats.already_gone += 1
        path.unlink()
    return stats
