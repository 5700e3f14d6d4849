"""The manifest: the run-stable record of a submit task's chunks, batches and rounds.

Invariants (everything else in the provider relies on them):

* One manifest per task instance, at ``{work_dir}/{dag_id}/{run_id}/{task_id}[/{map_index}]/
  manifest.json``; it is the single source of truth. XCom only points at it, because XCom is
  cleared when a task retries and the manifest must survive that.
* The identity of a run's work is its **fingerprint**: a hash of the request settings, the
  chunk limits and every chunk's content hash. It never includes times, try numbers, paths or
  anything else that changes between tries, so an unchanged input on a retry, a clear or a
  rerun of a backfill yields the same fingerprint and re-attaches instead of billing again.
* Every create is bracketed by two writes: ``intent_at`` before the call, ``batch_id`` after.
  A record with an intent and no batch id is a possible orphan (the process died in between);
  it is resolved by looking the batch up, never by blindly creating again. While the intent
  is younger than the create window and not closed (``intent_closed_at``: its try saw the
  create fail) the create may still be in flight, and the lookup waits for it.
* Writes are atomic (temporary file, then rename): a reader sees the old or the new manifest,
  never half of one.
* Request bodies are immutable once written: chunk files are only ever read after the
  manifest names them, and later rounds write new files rather than rewriting old ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from airflow_provider_claude_batch.batching.api.batch_state import ENDED, BatchState
from airflow_provider_claude_batch.batching.state.run_dir import MANIFEST_NAME as MANIFEST_NAME
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.state.storage import StoragePath
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError, ClaudeBatchManifestError

MANIFEST_VERSION = 1
#: What a rerun does when its input no longer matches the manifest's fingerprint: fail, or
#: cancel the batches of the old input and submit the new one (``on_input_change``).
InputChangePolicy = Literal["fail", "resubmit"]
INPUT_CHANGE_POLICIES = ("fail", "resubmit")


def check_policy(policy: str) -> InputChangePolicy:
    """``on_input_change`` checked when the DAG is parsed (this module loads nothing heavy)."""
    if policy not in INPUT_CHANGE_POLICIES:
        raise ClaudeBatchInputError(f"on_input_change must be one of {INPUT_CHANGE_POLICIES}, got {policy!r}")
    return policy  # type: ignore[return-value]


def utcnow_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class BatchRecord:
    """One create: a chunk (round 0) or a resubmission of some of its requests (round > 0)."""

    chunk: int
    round: int
    requests_file: str
    request_count: int
    body_bytes: int
    sha256: str
    inputs_file: str | None = None
    intent_at: str | None = None
    #: When the try that stamped ``intent_at`` stopped waiting for its create (it failed): from
    #: then on that create is not in flight, so a later try looks for its batch once.
    intent_closed_at: str | None = None
    batch_id: str | None = None
    created_at: str | None = None
    processing_status: str | None = None
    request_counts: dict[str, int] | None = None
    ended_at: str | None = None
    results_file: str | None = None
    #: The sha256 of every file its create sent by reference (``uploads``), written before the
    #: files are checked or uploaded: the deletion of uploaded files keeps what an open run uses.
    files: list[str] | None = None

    @property
    def label(self) -> str:
        """How messages name this record: ``round R chunk C``."""
        return f"round {self.round} chunk {self.chunk}"

    def apply_state(self, state: BatchState) -> None:
        """Record a polled batch state."""
        recorded = state.as_json()
        self.processing_status = state.processing_status
        self.request_counts = recorded["request_counts"]
        self.ended_at = recorded["ended_at"]

    @property
    def needs_create(self) -> bool:
        return self.batch_id is None

    @property
    def is_open(self) -> bool:
        return self.batch_id is not None and self.processing_status != ENDED


@dataclass
class Manifest:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    conn_id: str
    fingerprint: str
    spec: dict[str, Any]
    max_requests_per_batch: int
    max_bytes_per_batch: int
    total_requests: int
    input_columns: list[str] | None
    batches: list[BatchRecord] = field(default_factory=list)
    created_at: str = field(default_factory=utcnow_iso)
    updated_at: str = field(default_factory=utcnow_iso)
    version: int = MANIFEST_VERSION
    notes: list[str] = field(default_factory=list)
    #: The most the run's batches could cost at batch prices, as the budget checked it before the
    #: first create (None: unknown, or an older run): a run fed through the batch queue reports
    #: it, and checks it again, at every later step.
    cost_ceiling_usd: float | None = None
    #: Where the rows came from (a path/URI or an Asset's URI; ``None`` for in-memory rows): lineage.
    source: str | None = None
    #: The answers' JSON schema as given (``output_schema=``), as JSON text so that its field
    #: order (the column order) survives this file's sorted keys; the transfer types by it.
    output_schema: str | None = None
    #: How the rows divided between sent, reused and deduplicated (``reuse.ReuseCounts``);
    #: ``None`` when every row was sent without looking (``reuse_answers=False``, older runs).
    reuse: dict[str, Any] | None = None
    #: How documents and images are sent (``uploads.UploadSettings.as_dict``); ``None``: inline.
    #: Not part of the fingerprint: the requests, and so the answers, are the same either way.
    uploads: dict[str, Any] | None = None

    # ------------------------------------------------------------------ queries
    def batch_ids(self) -> list[str]:
        return [b.batch_id for b in self.batches if b.batch_id]

    def open_batch_ids(self) -> list[str]:
        return [b.batch_id for b in self.batches if b.is_open and b.batch_id]

    def record_for(self, batch_id: str) -> BatchRecord:
        for record in self.batches:
            if record.batch_id == batch_id:
                return record
        raise ClaudeBatchManifestError(f"batch {batch_id!r} is not in the manifest of {self.task_id!r}")

    def apply_states(self, states: Mapping[str, BatchState]) -> None:
        """Record polled batch states in the records of their batches (others are left as
        they are); the caller saves."""
        for record in self.batches:
            state = states.get(record.batch_id or "")
            if state is not None:
                record.apply_state(state)

    @property
    def rows(self) -> int:
        """Input rows of the run: those sent and, with reuse, those answered without a batch."""
        return int(self.reuse["rows"]) if self.reuse is not None else self.total_requests

    @property
    def rounds(self) -> int:
        return 1 + max((b.round for b in self.batches), default=0)

    def summary(self) -> dict[str, Any]:
        return {
            "chunks": len({b.chunk for b in self.batches if b.round == 0}),
            "requests": self.total_requests,
            **({"reuse": self.reuse} if self.reuse is not None else {}),
            "batch_ids": self.batch_ids(),
            "rounds": self.rounds,
        }

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, *, where: str = "manifest") -> Manifest:
        try:
            raw = json.loads(data)
            if raw.get("version") != MANIFEST_VERSION:
                raise ClaudeBatchManifestError(
                    f"{where} has version {raw.get('version')!r}; this provider reads version {MANIFEST_VERSION}"
                )
            raw["batches"] = [BatchRecord(**b) for b in raw.get("batches", [])]
            return cls(**raw)
        except ClaudeBatchManifestError:
            raise
        except (ValueError, TypeError, AttributeError) as exc:
            raise ClaudeBatchManifestError(f"{where} is not a readable manifest: {exc}") from None

    def save(self, directory: RunDir | StoragePath) -> Any:
        """Write the manifest into its run folder (a ``RunDir``, path or URI), atomically."""
        self.updated_at = utcnow_iso()
        return RunDir.write_atomic(RunDir.of(directory).manifest, self.to_json())


def load_manifest(location: RunDir | StoragePath) -> Manifest:
    """Read a manifest from its run folder (a ``RunDir``, path or URI) or its file."""
    if isinstance(location, RunDir):
        path = location.manifest
    else:
        path = RunDir.of(location).path
        if path.name != MANIFEST_NAME:
            path = path / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ClaudeBatchManifestError(
            f"no manifest at {path}: has the submit task run for this DAG run (and is work_dir shared "
            "storage that this worker can read)?"
        ) from None
    except OSError as exc:
        raise ClaudeBatchManifestError(f"cannot read the manifest at {path}: {exc}") from None
    return Manifest.from_json(data, where=str(path))


def manifest_exists(directory: RunDir | StoragePath) -> bool:
    return bool(RunDir.of(directory).manifest.exists())


def fingerprint(spec: dict[str, Any], max_requests: int, max_bytes: int, chunk_hashes: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(
        json.dumps({"spec": spec, "max_requests": max_requests, "max_bytes": max_bytes}, sort_keys=True).encode()
    )
    for chunk_hash in chunk_hashes:
        digest.update(chunk_hash.encode())
    return digest.hexdigest()
