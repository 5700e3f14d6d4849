"""The work directory's layout: every file and folder name the provider writes, in one place.

```
{work_dir}/                                    WorkDir
  _batches/{batch_id}.json                     which task created the batch (batch_index)
  _batches/_pending/{owner}.json               a create sent and not yet recorded
  _answers/p={h}/{file}.parquet                the answer store, by the key's first hex digit
  _answers/_inflight/{owner}.parquet           requests sent and not landed yet (by key)
  _answers/_inflight/{owner}.claim-keys|.json  a run's claim on its keys before it plans (claims)
  _files/{workspace}/{sha256}.json             a file uploaded through the Files API (uploads)
  {dag_id}/{run_id}/{task_id}[/{map_index}]/   RunDir: one submit task instance's run folder
    manifest.json                              the manifest
    manifest.replaced-<time>.json              an earlier manifest, kept when the input changed
    _tries/try-NNNNN.json                      the tries that took the folder (the newest creates)
    requests-<id>/chunk-NNNNN.jsonl            the request lines of each chunk (round 0)
    requests-<id>/inputs-NNNNN.parquet         the input columns, for keep_columns
    requests-<id>/answered.parquet             rows not sent: reused, deduplicated or awaited
    requests-<id>/awaited.parquet              the answers awaited rows got from other runs
    awaited/chunk-NNNNN.jsonl                  awaited rows sent after all (no answer came)
    round-RR/chunk-NNNNN.jsonl                 requests sent again in round RR
    raw/{batch_id}.jsonl                       each batch's results, as downloaded
    new-answers/part-NNNNN.parquet             a chunk's answers, until they are in the store
    landing.json                               the transfer's summary (rows, tokens, cost)
    output/                                    @task.claude_batch's Parquet when no destination is given
```

Invariants:

* Names are built here and nowhere else. The manifest stores file names *relative* to its run
  folder (``requests-<id>/chunk-00000.jsonl``), so a run folder can be read wherever it is
  mounted; :meth:`RunDir.file` turns them back into paths.
* A run folder knows its work directory: it is either made from one (:meth:`WorkDir.run`) or
  located from a manifest's task instance (:meth:`RunDir.located`), which checks that the
  folder's last names are the ones the layout gives that task instance. A folder outside the
  layout still reads and writes its own files; only the batch index needs the work directory,
  and asking for it then fails with the expected layout in the message.
* Every small JSON file of the layout (manifest, landing summary, index and pending entries,
  replaced manifests) is written atomically (:meth:`RunDir.write_atomic`): readers on other
  machines see the old file or the new one, never half of one.
* Names from outside (dag, run and task ids; batch ids) never climb out of their folder: ids
  are sanitised, and a batch id that is not one the API issues is never made into a path.

Nothing here imports Airflow; paths are whatever :func:`storage.as_path` makes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from airflow_provider_claude_batch.batching.state.storage import (
    StoragePath,
    as_path,
    children,
    is_local,
    remove_tree,
    write_whole,
)
from airflow_provider_claude_batch.exceptions import ClaudeBatchManifestError

TRIES_FOLDER = "_tries"
_TRY_MARKER = re.compile(r"try-(\d{5,})\.json")

MANIFEST_NAME = "manifest.json"
LANDING_SUMMARY_NAME = "landing.json"
STAGING_PREFIX = "requests-"
RAW_FOLDER = "raw"
#: Where ``@task.claude_batch`` lands its Parquet when it is given no destination.
OUTPUT_FOLDER = "output"
INDEX_FOLDER = "_batches"
#: Creates sent and not yet recorded, under the index folder.
PENDING_FOLDER = "_pending"
#: The answer store (``answer_store``): answers by content key, shared by every run.
ANSWERS_FOLDER = "_answers"
#: Awaited rows sent after all, in the run folder; their answers from other runs, in the staging.
AWAITED_FOLDER = "awaited"
AWAITED_ANSWERS_FILE = "awaited.parquet"
#: Requests in batches not landed yet, under the answers folder.
IN_FLIGHT_FOLDER = "_inflight"
#: A run's claim before it plans (``claims``), beside the in-flight files: its keys (Parquet) and
#: its state (JSON). Neither ends in ``.parquet``, so readers of in-flight files never see them.
CLAIM_KEYS_SUFFIX = ".claim-keys"
CLAIM_STATE_SUFFIX = ".claim.json"
#: The batch queue's turns: one folder per connection, its runs waiting to send, one lock.
QUEUE_FOLDER = "_queue"
QUEUE_LOCK_NAME = "_lock.json"
QUEUE_LEARNED_NAME = "_learned_limit.json"
#: Files uploaded through the Files API (``uploads``): one record per workspace and content hash.
FILES_FOLDER = "_files"
#: The work directory's own folders: never a DAG's folder of run folders.
RESERVED_FOLDERS = frozenset({INDEX_FOLDER, ANSWERS_FOLDER, QUEUE_FOLDER, FILES_FOLDER})
#: The rows of a run that are not sent (``reuse``), in its staging folder.
ANSWERED_FILE = "answered.parquet"
#: Answers of a landing not yet added to the answer store, in the run folder.
PENDING_ANSWERS_FOLDER = "new-answers"
#: Characters a dag, run or task id may keep in a folder name; the rest become ``_``.
_UNSAFE = re.compile(r"[^A-Za-z0-9._:+=@-]")
#: Batch ids as the API issues them; anything else is never turned into a path.
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def chunk_file_name(index: int) -> str:
    """A chunk's request lines, inside a staging or round folder."""
    return f"chunk-{index:05d}.jsonl"


def inputs_file_name(index: int) -> str:
    """A chunk's input columns, inside its staging folder."""
    return f"inputs-{index:05d}.parquet"


def safe_name(value: str) -> str:
    """A dag, run or task id as one folder name (nothing that could climb out of the folder)."""
    return _UNSAFE.sub("_", value)


def is_batch_id(value: str) -> bool:
    return bool(_BATCH_ID.fullmatch(value))


def task_folder_names(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> list[str]:
    """The folder names from the work directory down to a task instance's run folder."""
    names = [safe_name(dag_id), safe_name(run_id), safe_name(task_id)]
    if map_index is not None and map_index >= 0:
        names.append(str(map_index))
    return names


class WorkDir:
    """The work directory: every task instance's run folder, and the batch index beside them."""

    def __init__(self, location: Any) -> None:
        self.path: StoragePath = as_path(location)

    @classmethod
    def of(cls, location: Any) -> WorkDir:
        return location if isinstance(location, WorkDir) else cls(location)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"WorkDir({str(self.path)!r})"

    def dag_run_folder(self, dag_id: str, run_id: str) -> StoragePath:
        """The folder of one DAG run: its submit tasks' run folders are below it."""
        return self.path / safe_name(dag_id) / safe_name(run_id)

    def run(self, dag_id: str, run_id: str, task_id: str, map_index: int | None = -1) -> RunDir:
        """The run folder of one task instance."""
        path = self.path
        for name in task_folder_names(dag_id, run_id, task_id, map_index):
            path = path / name
        return RunDir(path, work_dir=self)

    # ------------------------------------------------------------------ the batch index
    @property
    def index_folder(self) -> StoragePath:
        return self.path / INDEX_FOLDER

    def index_entry(self, batch_id: str) -> StoragePath | None:
        """Where the index entry of ``batch_id`` lives (None for a string that is no batch id)."""
        if not is_batch_id(batch_id):
            return None
        return self.index_folder / f"{batch_id}.json"

    @property
    def pending_folder(self) -> StoragePath:
        return self.index_folder / PENDING_FOLDER

    def pending_entry(self, file_name: str) -> StoragePath:
        return self.pending_folder / file_name

    # ------------------------------------------------------------------ the answer store
    @property
    def answers_folder(self) -> StoragePath:
        return self.path / ANSWERS_FOLDER

    @property
    def in_flight_folder(self) -> StoragePath:
        return self.answers_folder / IN_FLIGHT_FOLDER

    def claim_keys_file(self, owner: str) -> StoragePath:
        return self.in_flight_folder / f"{owner}{CLAIM_KEYS_SUFFIX}"

    def claim_state_file(self, owner: str) -> StoragePath:
        return self.in_flight_folder / f"{owner}{CLAIM_STATE_SUFFIX}"

    def claim_owners(self) -> list[str]:
        """The owners with a claim state file (see ``claims``)."""
        folder = self.in_flight_folder
        if not folder.exists():
            return []
        return sorted(
            c.name.removesuffix(CLAIM_STATE_SUFFIX) for c in children(folder) if c.name.endswith(CLAIM_STATE_SUFFIX)
        )

    # ------------------------------------------------------------------ the batch queue
    def queue_folder(self, conn_id: str) -> StoragePath:
        """The runs of connection ``conn_id`` waiting to send chunks (see ``queue_turns``)."""
        return self.path / QUEUE_FOLDER / safe_name(conn_id)

    def queue_entry(self, conn_id: str, owner: str) -> StoragePath:
        return self.queue_folder(conn_id) / f"{safe_name(owner)}.json"

    def queue_lock(self, conn_id: str) -> StoragePath:
        return self.queue_folder(conn_id) / QUEUE_LOCK_NAME

    def queue_learned_limit(self, conn_id: str) -> StoragePath:
        return self.queue_folder(conn_id) / QUEUE_LEARNED_NAME

    def queue_entries(self, conn_id: str) -> list[StoragePath]:
        """The waiting runs' entries (not the lock or the learned limit)."""
        folder = self.queue_folder(conn_id)
        if not folder.exists():
            return []
        return sorted(
            (c for c in children(folder) if c.name.endswith(".json") and not c.name.startswith("_")),
            key=lambda c: c.name,
        )

    # ------------------------------------------------------------------ uploaded files
    @property
    def files_folder(self) -> StoragePath:
        return self.path / FILES_FOLDER

    def file_record(self, workspace: str, sha256: str) -> StoragePath:
        """The record of the file with these bytes (``sha256``, hex) uploaded in ``workspace``."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError(f"{sha256!r} is not a sha256 in hex")
        return self.files_folder / safe_name(workspace) / f"{sha256}.json"

    def file_records(self, workspace: str) -> list[StoragePath]:
        """Every upload record of ``workspace``."""
        folder = self.files_folder / safe_name(workspace)
        if not folder.exists():
            return []
        return sorted((c for c in children(folder) if c.name.endswith(".json")), key=lambda c: c.name)

    def manifest_files(self) -> Iterator[StoragePath]:
        """Every run folder's manifest (``{dag}/{run}/{task}[/{map_index}]/manifest.json``)."""
        for dag in children(self.path) if self.path.exists() else []:
            if dag.name in RESERVED_FOLDERS or not dag.is_dir():
                continue
            for run in children(dag):
                for task in children(run) if run.is_dir() else []:
                    if (task / MANIFEST_NAME).exists():
                        yield task / MANIFEST_NAME
                    for mapped in children(task) if task.is_dir() else []:
                        if mapped.name.isdigit() and (mapped / MANIFEST_NAME).exists():
                            yield mapped / MANIFEST_NAME

    def answers_partition(self, digit: str) -> StoragePath:
        """The folder of the answers whose key starts with hex digit ``digit``."""
        if len(digit) != 1 or digit not in "0123456789abcdef":
            raise ValueError(f"{digit!r} is not a hex digit")
        return self.answers_folder / f"p={digit}"


class RunDir:
    """One submit task instance's run folder: the names of its files, and how they are written.

    ``run_dir / relative_name`` and :meth:`file` give the path of a file the manifest names.
    """

    def __init__(self, location: Any, work_dir: WorkDir | None = None) -> None:
        self.path: StoragePath = as_path(location)
        self._work_dir = work_dir

    @classmethod
    def of(cls, location: Any) -> RunDir:
        """``location`` as a run folder (a ``RunDir`` is kept; a path or URI is wrapped, its work
        directory unknown until :meth:`located`)."""
        return location if isinstance(location, RunDir) else cls(location)

    @classmethod
    def located(cls, location: Any, dag_id: str, run_id: str, task_id: str, map_index: int | None) -> RunDir:
        """The run folder at ``location`` of the given task instance. When the folder's last names
        are the ones the layout gives that task instance, the folder above them is its work
        directory; otherwise the work directory stays unknown (see :attr:`work_dir`)."""
        run_dir = cls.of(location)
        if run_dir._work_dir is not None:
            return run_dir
        path = run_dir.path
        for name in reversed(task_folder_names(dag_id, run_id, task_id, map_index)):
            if path.name != name:
                return RunDir(run_dir.path)
            path = path.parent
        return RunDir(run_dir.path, work_dir=WorkDir(path))

    def for_manifest(self, manifest: Any) -> RunDir:
        """This folder located by the task instance ``manifest`` names (a ``Manifest``)."""
        return RunDir.located(self, manifest.dag_id, manifest.run_id, manifest.task_id, manifest.map_index)

    @property
    def work_dir(self) -> WorkDir:
        if self._work_dir is None:
            raise ClaudeBatchManifestError(
                f"the run folder {self.path} is not at {{work_dir}}/{{dag_id}}/{{run_id}}/{{task_id}}[/{{map_index}}] "
                "for the task instance its manifest names, so its work directory (and batch index) is unknown; "
                "keep run folders where the submit task wrote them"
            )
        return self._work_dir

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, relative: str) -> StoragePath:
        return self.file(relative)

    def file(self, relative: str) -> StoragePath:
        """The path of a file named relative to the run folder (as the manifest names them)."""
        return self.path / relative

    @property
    def is_local(self) -> bool:
        return is_local(self.path)

    def exists(self) -> bool:
        return bool(self.path.exists())

    def mkdir(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ names
    @property
    def manifest(self) -> StoragePath:
        return self.path / MANIFEST_NAME

    def replaced_manifest(self, when: datetime) -> StoragePath:
        """Where a manifest replaced by changed input is kept."""
        return self.path / f"manifest.replaced-{when.strftime('%Y%m%dT%H%M%S')}.json"

    @property
    def landing_summary(self) -> StoragePath:
        return self.path / LANDING_SUMMARY_NAME

    @property
    def default_output(self) -> StoragePath:
        return self.path / OUTPUT_FOLDER

    @property
    def tries_folder(self) -> StoragePath:
        """One marker per try of the task instance that took the folder (``try_fence``)."""
        return self.path / TRIES_FOLDER

    @staticmethod
    def try_marker(try_number: int) -> str:
        return f"try-{try_number:05d}.json"

    @staticmethod
    def try_of_marker(name: str) -> int | None:
        """The try number a marker's name carries (None: not a marker)."""
        match = _TRY_MARKER.fullmatch(name)
        return int(match.group(1)) if match else None

    @staticmethod
    def new_staging_name() -> str:
        """A fresh staging folder name: every try renders into its own."""
        return f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"

    @staticmethod
    def staged_file(staging_name: str, file_name: str) -> str:
        """A staged chunk file's name relative to the run folder."""
        return f"{staging_name}/{file_name}"

    @staticmethod
    def staging_name_of(relative: str) -> str:
        """The staging (or round) folder a relative file name is in."""
        return relative.split("/", 1)[0]

    def staging_names(self) -> Iterator[str]:
        """The staging folders present in the run folder."""
        if not self.path.exists():
            return
        for child in children(self.path):
            if child.name.startswith(STAGING_PREFIX):
                yield child.name

    def drop_staging(self, staging_name: str) -> None:
        """Delete a staging folder and what it holds (nothing when it does not exist)."""
        if not staging_name.startswith(STAGING_PREFIX) or "/" in staging_name:
            raise ValueError(f"{staging_name!r} is not a staging folder name")
        remove_tree(self.path / staging_name)

    @staticmethod
    def round_requests_file(round_number: int, chunk: int) -> str:
        """The request lines a resubmission round sends for one chunk, relative to the run folder."""
        return f"round-{round_number:02d}/{chunk_file_name(chunk)}"

    @staticmethod
    def pending_answers_file(chunk: int) -> str:
        """A chunk's landed answers waiting to be added to the answer store, relative to the run folder."""
        return f"{PENDING_ANSWERS_FOLDER}/part-{chunk:05d}.parquet"

    @property
    def raw_folder(self) -> StoragePath:
        return self.path / RAW_FOLDER

    @staticmethod
    def raw_results_file(batch_id: str) -> str:
        """A batch's results as downloaded, relative to the run folder."""
        if not is_batch_id(batch_id):
            raise ClaudeBatchManifestError(f"{batch_id!r} is not a batch id; its results get no file name")
        return f"{RAW_FOLDER}/{batch_id}.jsonl"

    # ------------------------------------------------------------------ writes
    @staticmethod
    def write_atomic(target: StoragePath, data: bytes) -> StoragePath:
        """Write ``data`` to ``target`` whole or not at all, replacing it without a moment where
        it is missing (see ``storage.write_whole``)."""
        write_whole(target, data)
        return target
