"""The emulator's Files API: files uploaded once and referenced by ``file_id`` in requests.

Invariants:

* A file belongs to the workspace of the key that uploaded it: every call of another workspace
  (metadata, delete, a reference in a batch request) finds no such file, as in the API.
* The content of an uploaded file is never served (``downloadable`` is false; a download is a
  400 ``invalid_request_error``), as the API does for files a user uploaded.
* Counters are the tests' oracle for "uploads nothing again": ``uploads`` and
  ``upload_bytes`` count every upload received, ``deletes`` every file deleted.
* Files live in memory (tests upload small files); :meth:`FileStore.clear` forgets them all.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.testing.emulator_requests import EmulatorHTTPError


@dataclass
class StoredFile:
    id: str
    workspace: str | None
    filename: str
    mime_type: str
    data: bytes
    created_at: datetime

    def as_json(self, rfc3339: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "file",
            "filename": self.filename,
            "mime_type": self.mime_type,
            "size_bytes": len(self.data),
            "created_at": rfc3339(self.created_at),
            "downloadable": False,
        }


class FileStore:
    """Uploaded files by id, scoped by workspace, with the counters tests assert on."""

    def __init__(self) -> None:
        self._files: dict[str, StoredFile] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._seed = secrets.token_hex(4)
        self.stats: Counter[str] = Counter()

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            self.stats.clear()

    def upload(self, workspace: str | None, filename: str, mime_type: str, data: bytes, now: datetime) -> StoredFile:
        """``POST /v1/files``: store the bytes as a new file (the same bytes twice are two files)."""
        if not data:
            raise EmulatorHTTPError(400, "file: the uploaded file is empty")
        if len(data) > limits.MAX_UPLOAD_BYTES:
            raise EmulatorHTTPError(413, f"file: larger than {limits.MAX_UPLOAD_BYTES} bytes")
        with self._lock:
            stored = StoredFile(
                f"file_01emu{self._seed}{next(self._ids):012d}", workspace, filename, mime_type, data, now
            )
            self._files[stored.id] = stored
            self.stats["uploads"] += 1
            self.stats["upload_bytes"] += len(data)
        return stored

    def find(self, file_id: str, workspace: str | None) -> StoredFile | None:
        """The file of that id in ``workspace``; ``None`` for an unknown id or another workspace's."""
        found = self._files.get(file_id)
        return found if found is not None and found.workspace == workspace else None

    def resolve(self, file_id: str, workspace: str | None) -> bytes | None:
        """The bytes a request's ``file_id`` refers to in ``workspace`` (``None``: none)."""
        found = self.find(file_id, workspace)
        return None if found is None else found.data

    def list_all(self) -> list[StoredFile]:
        """Every stored file of every workspace."""
        return list(self._files.values())

    def get(self, file_id: str, workspace: str | None) -> StoredFile:
        found = self.find(file_id, workspace)
        if found is None:
            raise EmulatorHTTPError(404, f"File not found: {file_id}")
        return found

    def delete(self, file_id: str, workspace: str | None) -> dict[str, Any]:
        self.get(file_id, workspace)
        with self._lock:
            del self._files[file_id]
            self.stats["deletes"] += 1
        return {"id": file_id, "type": "file_deleted"}

    def list(self, workspace: str | None) -> list[StoredFile]:
        """This workspace's files, newest first."""
        mine = [item for item in self._files.values() if item.workspace == workspace]
        return sorted(mine, key=lambda item: item.id, reverse=True)

    def download(self, file_id: str, workspace: str | None) -> None:
        """Always refused for uploaded files, as in the API."""
        self.get(file_id, workspace)
        raise EmulatorHTTPError(400, f"File {file_id} is not downloadable: only files created by the API can be")
