"""Which task created a batch, findable from the batch id alone, and whose a batch is.

When a batch is recorded in its manifest, a small JSON file is written at
``{work_dir}/_batches/{batch_id}.json`` (names: ``run_dir.WorkDir``) naming the task
instance, chunk and round. Whoever knows only batch ids (the Claude Batches page lists a connection's newest batches) reads one
file per batch instead of listing every run folder, which on object storage means listing
every request and results file ever written.

The same index decides ownership after an ambiguous create (:class:`BatchOwnership`). The API
has no idempotency key, so a create whose answer was lost is found again by ``list``: a batch
of the same size created since the intent. Every task of the work directory creates such
batches, so the rules are:

* A batch whose index entry names another record (task instance, chunk, round) is never a
  candidate: it is a stranger's, whatever its size and age.
* Between a create's answer and its index entry there is a gap. To cover it, every create
  first writes a *pending create* (``_batches/_pending/{owner}.json``: its size and the
  window in which its batch may appear) and drops it once the index entry exists. An
  unrecorded batch created inside another owner's pending window is *contested*: nobody
  adopts it until the other owner's entry settles it, and if that never happens the lookup
  fails rather than guessing.
* Residual risk: a task that died between its create and its pending-file write does not
  exist (the pending file is written first); a task whose work directory is a different one
  (another ``work_dir``, another Airflow) is invisible here. Landing checks every custom_id
  against the chunk, so a wrong adoption fails there instead of landing wrong answers.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_provider_claude_batch.batching.api.limits import CLOCK_SKEW
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir, WorkDir
from airflow_provider_claude_batch.batching.state.storage import StoragePath, children


def index_path(work_dir: WorkDir | StoragePath, batch_id: str) -> StoragePath | None:
    return WorkDir.of(work_dir).index_entry(batch_id)


def record_origin(manifest: Manifest, record: BatchRecord, run_dir: RunDir | StoragePath) -> None:
    """Write the index entry of ``record``'s batch (after the manifest names it), atomically."""
    path = RunDir.of(run_dir).for_manifest(manifest).work_dir.index_entry(record.batch_id or "")
    if path is None:
        return
    RunDir.write_atomic(path, json.dumps(BatchOwner.of(manifest, record).as_entry()).encode())


def read_origin(work_dir: WorkDir | StoragePath, batch_id: str) -> dict[str, Any] | None:
    """The index entry of ``batch_id``, or None when no manifest under ``work_dir`` recorded it.
    Raises ``ValueError`` for an entry that is not one."""
    path = index_path(work_dir, batch_id)
    if path is None or not path.exists():
        return None
    entry = json.loads(path.read_bytes())
    if not isinstance(entry, dict) or not {"dag_id", "run_id", "task_id"} <= entry.keys():
        raise ValueError(f"{path} is not a batch index entry")
    return entry


# --------------------------------------------------------------------------- ownership
@dataclass(frozen=True)
class BatchOwner:
    """The one create a batch belongs to: a manifest record of one task instance. Also what
    the Claude Batches page shows as a batch's origin."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    chunk: int
    round: int

    @classmethod
    def of(cls, manifest: Manifest, record: BatchRecord) -> BatchOwner:
        return cls(manifest.dag_id, manifest.run_id, manifest.task_id, manifest.map_index, record.chunk, record.round)

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> BatchOwner:
        """The owner an index or pending entry names (entries written before chunks and
        rounds were recorded name chunk 0 of round 0; an unmapped task has map index -1)."""
        return cls(
            # A foreign entry may lack a name: then it names no owner ("" is no Airflow id).
            entry.get("dag_id", ""),
            entry.get("run_id", ""),
            entry.get("task_id", ""),
            int(entry.get("map_index", -1)),
            int(entry.get("chunk", 0)),
            int(entry.get("round", 0)),
        )

    def as_entry(self) -> dict[str, Any]:
        """The fields an index entry (and a pending create) names its owner by."""
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "map_index": self.map_index,
            "chunk": self.chunk,
            "round": self.round,
        }

    def names_me(self, entry: dict[str, Any]) -> bool:
        """Whether an index or pending entry is this owner's."""
        return BatchOwner.from_entry(entry) == self

    def file_name(self) -> str:
        """A file name for this owner: run ids hold characters no object key should."""
        text = json.dumps([self.dag_id, self.run_id, self.task_id, self.map_index, self.chunk, self.round])
        return hashlib.sha256(text.encode()).hexdigest()[:40] + ".json"


def write_pending_create(
    work_dir: WorkDir, owner: BatchOwner, *, request_count: int, intent_at: datetime, until: datetime
) -> None:
    """Announce a create before sending it: a batch of ``request_count`` requests may appear
    between ``intent_at`` and ``until`` and is ``owner``'s."""
    entry = {
        **owner.as_entry(),
        "request_count": request_count,
        "intent_at": intent_at.isoformat(),
        "until": until.isoformat(),
    }
    RunDir.write_atomic(work_dir.pending_entry(owner.file_name()), json.dumps(entry).encode())


def drop_pending_create(work_dir: WorkDir, owner: BatchOwner) -> None:
    """Forget ``owner``'s pending create (its batch's index entry now says whose it is)."""
    path = work_dir.pending_entry(owner.file_name())
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def pending_creates(work_dir: WorkDir) -> list[dict[str, Any]]:
    """Every pending create under ``work_dir`` (unreadable entries are skipped: an entry is
    written whole, so only a foreign file can be unreadable)."""
    folder = work_dir.pending_folder
    if not folder.exists():
        return []
    entries: list[dict[str, Any]] = []
    for child in children(folder):
        if not child.name.endswith(".json"):
            continue
        try:
            entry = json.loads(child.read_bytes())
            entry["intent_at"] = datetime.fromisoformat(entry["intent_at"])
            entry["until"] = datetime.fromisoformat(entry["until"])
            entries.append(entry)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return entries


class Whose(enum.Enum):
    """Whose a listed batch is, as far as the work directory knows."""

    #: The index names this owner (another try of the same task instance recorded it).
    MINE = "mine"
    #: The index names another owner: never a candidate.
    OTHER = "other"
    #: Unrecorded, and no other owner's pending create could have made it.
    FREE = "free"
    #: Unrecorded, but created inside another owner's pending window: wait or refuse.
    CONTESTED = "contested"


@dataclass
class BatchOwnership:
    """Decides whose a batch found after an ambiguous create is, for one owner.

    Read afresh on every call, so a lookup that waits sees entries written meanwhile.
    """

    work_dir: WorkDir
    owner: BatchOwner
    request_count: int

    def whose(self, batch_id: str, created_at: datetime) -> tuple[Whose, datetime | None]:
        """Whose the batch is and, when it is contested, when the contest ends.

        The pending creates are read before the index, once: an owner writes its index entry
        before it drops its pending create, so a batch seen with neither was never another's to
        make, and one seen pending and then recorded is the recorder's. (Read the other way
        round, an owner recording in between made its batch look free, and adoptable.)"""
        ends = self.contest_ends(created_at)
        try:
            entry = read_origin(self.work_dir, batch_id)
        except ValueError:
            return Whose.OTHER, None  # something we cannot read is not ours to take
        if entry is not None:
            return (Whose.MINE if self.owner.names_me(entry) else Whose.OTHER), None
        return (Whose.CONTESTED, ends) if ends is not None else (Whose.FREE, None)

    def contest_ends(self, created_at: datetime) -> datetime | None:
        """When the other owners' creates that could have made a batch created at
        ``created_at`` have surely been answered (``None``: there are none)."""
        ends = [
            entry["until"]
            for entry in pending_creates(self.work_dir)
            if not self.owner.names_me(entry)
            and entry.get("request_count") == self.request_count
            and entry["intent_at"] - CLOCK_SKEW <= created_at <= entry["until"] + CLOCK_SKEW
        ]
        return max(ends) if ends else None
