"""A batch's raw results, saved to the work directory while they are parsed.

:class:`SavingDownload` stands where a saved raw results file would (it has ``open("rb")``
and prints as the file's path), so landing code reads from it exactly as from the file.
A thread pulls the download's chunks, appends each to a temporary sibling of the raw file
and hands it to the reader through a short queue: the network, the disk write and the parse
overlap, and memory holds at most :data:`QUEUED_CHUNKS` chunks.

Invariants:

* The reader sees every byte of the stream once, in order (the chunk source resumes a
  dropped connection without repeating or losing a byte: ``ClaudeBatchHook.iter_results_bytes``).
* The raw file takes its final name only when the whole stream has been written, before
  ``open()``'s block ends, so a landing that commits always has its raw file complete. A
  broken download leaves no file (the next try downloads again); a parse that rejects the
  results keeps them, whole, for a look.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from airflow_provider_claude_batch.batching.state.storage import atomic_writer
from airflow_provider_claude_batch.exceptions import ClaudeBatchError

#: Chunks (about 1 MiB each) downloaded ahead of the parse.
QUEUED_CHUNKS = 8
_END = object()


class SavingDownload:
    """The raw results of one batch, downloaded on first ``open()`` and saved to ``target``
    as they are read. ``chunks`` makes the byte stream (called once per ``open``)."""

    def __init__(self, chunks: Callable[[], Iterator[bytes]], target: Any) -> None:
        self._chunks = chunks
        self.target = target
        self.saved_bytes: int | None = None

    def __str__(self) -> str:
        return str(self.target)

    def __fspath__(self) -> str:
        return str(self.target)

    @contextmanager
    def open(self, mode: str = "rb") -> Iterator[_TeeReader]:
        if mode != "rb":
            raise ValueError(f"a download is read in binary mode, not {mode!r}")
        rejected: ClaudeBatchError | None = None
        with atomic_writer(self.target) as out:
            reader = _TeeReader(self._chunks(), out)
            try:
                try:
                    yield reader
                except ClaudeBatchError as exc:
                    if reader.broken:
                        raise
                    rejected = exc  # the results, not the download: keep them whole for a look
                reader.drain()
            finally:
                reader.stop()
            self.saved_bytes = reader.size
        if rejected is not None:
            raise rejected


class _TeeReader:
    """``read(n)`` over a chunk stream that a thread saves to ``out`` while it downloads."""

    def __init__(self, chunks: Iterator[bytes], out: IO[bytes]) -> None:
        self.size = 0
        self.broken = False
        self._queue: queue.Queue[Any] = queue.Queue(QUEUED_CHUNKS)
        self._stopping = threading.Event()
        self._pending = b""
        self._done = False
        self._thread = threading.Thread(target=self._pump, args=(chunks, out), name="results-download", daemon=True)
        self._thread.start()

    def _pump(self, chunks: Iterator[bytes], out: IO[bytes]) -> None:
        try:
            for chunk in chunks:
                out.write(chunk)
                if not self._put(chunk):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the reader, raised there
            self._put(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _put(self, item: Any) -> bool:
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _next(self) -> bytes:
        item = self._queue.get()
        if item is _END:
            self._done = True
            return b""
        if isinstance(item, BaseException):
            self._done = self.broken = True
            raise item
        self.size += len(item)
        return bytes(item)

    def read(self, size: int = -1) -> bytes:
        parts = [self._pending] if self._pending else []
        have = len(self._pending)
        while not self._done and (size < 0 or have < size):
            chunk = self._next()
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        if size < 0 or len(data) <= size:
            self._pending = b""
            return data
        self._pending = data[size:]
        return data[:size]

    def drain(self) -> None:
        """Read (and so save) the rest of the stream."""
        while not self._done:
            self._next()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
