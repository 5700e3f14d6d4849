"""Turns at the batch queue, kept in the work directory: which runs of a connection wait to send
chunks, one lock over "read the queue, then create", and the limit learned from refusals.

Several runs feeding through one queue (a backfill, two DAGs on one connection, mapped tasks)
each see the same free room; if each created into it, together they would go over the limit
(the API then refuses, but only after they sent). So:

* a run that has chunks not sent keeps an entry (``_queue/{conn_id}/{owner}.json``): when it
  started waiting (kept across its feeding steps: its place in line), its ``priority_weight``,
  its next chunk's size and all its requests not sent. The order and the room each may use are
  ``batching/api/queue_limit``'s (first come, then priority);
* the decision and the creates it allows happen under one lock (``_lock.json``, created only if
  absent). Two workers racing for the last room therefore take turns: the first creates, the
  second reads the queue after that create and waits. A lock whose holder shows no sign of life
  for ``LOCK_TIMEOUT`` (killed mid-create) is broken; the same owner (its next try) takes it at
  once;
* an entry not refreshed for ``ENTRY_TIMEOUT`` is a dead run's and is passed over.

Limits: the lock is exclusive on local disk (``O_EXCL``); on object storage it is written only
if absent where the file system supports it, else written and read back (a narrow race remains:
at worst one create too many, which the API refuses and the run waits). Worker clocks are assumed
to agree (NTP), as for claims.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_claude_batch.batching.api.queue_limit import LearnedLimit, Waiting
from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
from airflow_provider_claude_batch.batching.state.storage import atomic_writer, is_local, local_os_path

log = logging.getLogger(__name__)

#: A lock not refreshed for this long was left by a killed worker: it is broken.
LOCK_TIMEOUT = timedelta(minutes=10)
#: An entry not refreshed for this long is a dead run's (a deferred run refreshes it whenever
#: it wakes, at least every ``FEED_RECHECK_SECONDS``).
ENTRY_TIMEOUT = timedelta(minutes=30)
#: The longest a feeding run waits in its trigger before it looks again on a worker (its turn
#: may have come without the queue emptying, and its entry needs a sign of life).
FEED_RECHECK_SECONDS = 300.0
#: Pauses while another worker holds the lock (doubling), and the longest wait for it.
_FIRST_PAUSE, _MAX_PAUSE, LOCK_WAIT_SECONDS = 0.05, 1.0, 30.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _read_json(path: Any) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class QueueTurns:
    """The turns of one connection's runs at the queue, in ``work_dir``."""

    work_dir: WorkDir
    conn_id: str

    # ------------------------------------------------------------------ entries
    def enter(self, owner: str, *, priority: int, next_requests: int, waiting_requests: int) -> Waiting:
        """Record (or refresh) ``owner``'s entry; its place (``since``) is kept from an earlier one."""
        path = self.work_dir.queue_entry(self.conn_id, owner)
        earlier = _read_json(path)
        now = _now().isoformat()
        since = str(earlier["since"]) if earlier and earlier.get("since") else now
        entry = Waiting(owner, since, int(priority), int(next_requests), int(waiting_requests))
        with atomic_writer(path) as out:
            out.write(json.dumps({**asdict(entry), "alive_at": now}).encode())
        return entry

    def leave(self, owner: str) -> None:
        """Drop ``owner``'s entry (every chunk sent, or the run gave up); never raises."""
        with contextlib.suppress(OSError):
            path = self.work_dir.queue_entry(self.conn_id, owner)
            if path.exists():
                path.unlink()

    def waiting(self) -> list[Waiting]:
        """The live entries (a dead run's, not refreshed for ``ENTRY_TIMEOUT``, passed over)."""
        now, found = _now(), []
        for path in self.work_dir.queue_entries(self.conn_id):
            data = _read_json(path)
            if data is None:
                continue
            try:
                alive_at = datetime.fromisoformat(str(data.pop("alive_at")))
                entry = Waiting(**data)
            except (KeyError, TypeError, ValueError):
                continue
            if now - alive_at < ENTRY_TIMEOUT:
                found.append(entry)
        return found

    # ------------------------------------------------------------------ the learned limit
    def learned(self) -> LearnedLimit:
        data = _read_json(self.work_dir.queue_learned_limit(self.conn_id))
        return LearnedLimit() if data is None else LearnedLimit.from_dict(data)

    def learn(self, learned: LearnedLimit) -> None:
        with atomic_writer(self.work_dir.queue_learned_limit(self.conn_id)) as out:
            out.write(json.dumps(learned.as_dict()).encode())

    # ------------------------------------------------------------------ the lock
    @contextlib.contextmanager
    def locked(self, owner: str, *, wait_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[bool]:
        """Hold the connection's queue lock (True), or give up after ``wait_seconds`` (False:
        another run is creating; come back later). Released on leaving the block."""
        token = self._acquire(owner, wait_seconds)
        try:
            yield token is not None
        finally:
            if token is not None:
                self._release(token)

    def refresh_lock(self, owner: str) -> None:
        """A sign of life of the holder between two creates."""
        path = self.work_dir.queue_lock(self.conn_id)
        data = _read_json(path)
        if data and data.get("owner") == owner:
            with atomic_writer(path) as out:
                out.write(json.dumps({**data, "alive_at": _now().isoformat()}).encode())

    def _acquire(self, owner: str, wait_seconds: float) -> str | None:
        path = self.work_dir.queue_lock(self.conn_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        deadline, pause = time.monotonic() + wait_seconds, _FIRST_PAUSE
        while True:
            if self._create_exclusive(path, {"owner": owner, "token": token, "alive_at": _now().isoformat()}):
                return token
            holder = _read_json(path)
            if holder is None and self._unreadable_and_old(path):
                log.warning("Taking over the batch queue lock: it cannot be read and is older than %s.", LOCK_TIMEOUT)
                self._break(path)
                continue
            if holder is not None and (holder.get("owner") == owner or self._stale(holder)):
                log.warning(
                    "Taking over the batch queue lock of %s (%s).",
                    holder.get("owner"),
                    "same run" if holder.get("owner") == owner else "no sign of life",
                )
                self._break(path)
                continue
            if time.monotonic() >= deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE)

    @staticmethod
    def _unreadable_and_old(path: Any) -> bool:
        """A lock file that is there but holds no holder (a worker killed, or a disk full, between
        creating it and writing it) and was last written ``LOCK_TIMEOUT`` ago: nobody holds it,
        and without this every run of the connection would wait on it for ever."""
        try:
            written = path.stat().st_mtime
        except (OSError, ValueError, AttributeError, TypeError):  # gone since, or no time known
            return False
        return time.time() - float(written) >= LOCK_TIMEOUT.total_seconds()

    @staticmethod
    def _stale(holder: dict[str, Any]) -> bool:
        try:
            return _now() - datetime.fromisoformat(str(holder["alive_at"])) >= LOCK_TIMEOUT
        except (KeyError, ValueError):
            return True

    @staticmethod
    def _create_exclusive(path: Any, data: dict[str, Any]) -> bool:
        body = json.dumps(data).encode()
        if is_local(path):
            try:
                handle = os.open(local_os_path(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(handle, "wb") as out:
                out.write(body)
            return True
        try:
            with path.open("xb") as out:
                out.write(body)
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError):  # no exclusive create: write, then read back
            if path.exists():
                return False
            path.write_bytes(body)
            return (_read_json(path) or {}).get("token") == data["token"]
        return True

    @staticmethod
    def _break(path: Any) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            path.unlink()

    def _release(self, token: str) -> None:
        path = self.work_dir.queue_lock(self.conn_id)
        holder = _read_json(path)
        if holder is not None and holder.get("token") == token:
            self._break(path)
