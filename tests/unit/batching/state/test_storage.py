"""Path helpers on local disk and on an fsspec file system (``memory://``) (batching/state/storage.py)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fsspec import register_implementation
from fsspec.implementations.memory import MemoryFileSystem
from upath import UPath

from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.state.storage import (
    as_path,
    atomic_writer,
    is_local,
    remove_tree,
    replace_tree,
)
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError


@pytest.fixture(params=["local", "memory"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        return tmp_path
    return as_path(f"memory://storage-test-{uuid.uuid4().hex[:8]}")


def _names(folder: Any) -> list[str]:
    return sorted(child.name for child in folder.iterdir())


def test_as_path_picks_the_path_type_by_scheme(tmp_path: Path) -> None:
    assert as_path(str(tmp_path)) == tmp_path and as_path(f"file://{tmp_path}") == tmp_path
    remote = as_path("memory://bucket/key")
    assert isinstance(remote, UPath) and not is_local(remote)
    assert is_local(tmp_path)


def test_atomic_writer_shows_the_file_only_when_whole(base: Any) -> None:
    target = base / "sub" / "file.json"
    with atomic_writer(target) as out:
        out.write(b"first")
        assert not target.exists()  # nothing under the final name while writing
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError), atomic_writer(target) as out:
        out.write(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"first"  # the old content stays, no temporary is left
    assert _names(target.parent) == ["file.json"]


def test_replace_tree_swaps_a_folder_whole_and_remove_tree_deletes_it(base: Any) -> None:
    """Local folders swap whole; on object storage replace_tree refuses (see batching/land/partitions.py)."""
    target, staged = base / "out", base / ".out.tmp"
    for folder, names in ((target, ["old-1", "old-2"]), (staged, ["new-1"])):
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            (folder / name).write_bytes(name.encode())
    if not is_local(target):
        # Object stores have no folder rename: partitions are committed by one object instead.
        with pytest.raises(ValueError, match="partitions.commit"):
            replace_tree(staged, target)
        remove_tree(staged)
        remove_tree(target)
        assert not target.exists() and not staged.exists()
        return
    replace_tree(staged, target)
    assert _names(target) == ["new-1"] and (target / "new-1").read_bytes() == b"new-1"
    assert not staged.exists()
    remove_tree(target)
    assert not target.exists()
    remove_tree(target)  # already gone: no error


@pytest.mark.parametrize("location", ["", "  ", "\n"])
def test_an_empty_location_is_an_error_never_the_working_folder(location: str) -> None:
    """``Path("")`` is the process's working folder: as a destination its files would be
    replaced, as a source they would be read. Every location goes through ``as_path``."""
    with pytest.raises(ClaudeBatchInputError, match="a location is an empty string"):
        as_path(location)


def test_a_listing_on_s3_sees_what_other_workers_wrote_since(s3_partition: Any, s3_endpoint: str) -> None:
    """s3fs keeps a folder's listing for the life of the process: listed again, a folder on S3
    missed the files other workers wrote meanwhile (a run waiting on others' claims, or planning
    after the wait, would have missed their batches in flight and sent the same requests)."""
    import boto3

    from airflow_provider_claude_batch.batching.state.storage import children

    folder = s3_partition / "_inflight"
    (folder / "mine.parquet").write_bytes(b"1")
    assert [p.name for p in children(folder)] == ["mine.parquet"]
    bucket, _, prefix = folder.path.partition("/")
    other_worker = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    other_worker.put_object(Bucket=bucket, Key=f"{prefix}/theirs.parquet", Body=b"2")
    assert sorted(p.name for p in children(folder)) == ["mine.parquet", "theirs.parquet"]


def _airflow_s3(s3_partition: Any, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials and endpoint as a task finds them in its environment; the test bucket."""
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    return str(s3_partition.path.split("/")[0])


def test_a_listing_through_airflows_path_type_sees_what_other_workers_wrote_since(
    s3_partition: Any, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same through Airflow's ``ObjectStoragePath``, the type ``as_path`` gives for s3:// in
    a task: a proxy whose ``fs`` is not the file system its wrapped path lists with, so dropping
    only the proxy's cache left every later listing of the folder stale (the fault soak found it:
    a second DAG's run missed the first's requests in flight and sent them again)."""
    import boto3

    from airflow_provider_claude_batch.batching.state.storage import as_path, children

    bucket = _airflow_s3(s3_partition, s3_endpoint, monkeypatch)
    folder = as_path(f"s3://{bucket}/workdir/_inflight")
    assert type(folder).__name__ == "ObjectStoragePath"
    (folder / "mine.claim.json").write_bytes(b"{}")
    assert [p.name for p in children(folder)] == ["mine.claim.json"]
    other_worker = boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1"
    )
    other_worker.put_object(Bucket=bucket, Key="workdir/_inflight/theirs.parquet", Body=b"2")
    assert sorted(p.name for p in children(folder)) == ["mine.claim.json", "theirs.parquet"]


class _WatchedMemory(MemoryFileSystem):
    """The in-memory file system, looking after every change whether a watched file is there:
    a replace on object storage must never pass through a moment without it."""

    protocol = "watchedmem"
    root_marker = "/"
    watched: str | None = None
    missing: list[str] = []

    def _look(self, operation: str) -> None:
        if self.watched is not None and not self.exists(self.watched):
            self.missing.append(operation)

    def rm_file(self, path: str) -> None:
        super().rm_file(path)
        self._look(f"rm_file {path}")

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        super().rm(path, recursive=recursive, maxdepth=maxdepth)
        self._look(f"rm {path}")

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        super().cp_file(path1, path2, **kwargs)
        self._look(f"cp_file {path1} {path2}")


def test_a_file_replaced_on_object_storage_is_never_missing_for_a_reader() -> None:
    """The soak's defect: replacing a claim's state on S3 deleted the old object before copying
    the new one in, so another run listing the claims in that moment found none and planned
    alone (both paid for the shared requests). Oracle: after every change the file system
    makes, the file is there; with a delete first, the rewrite is seen missing."""
    register_implementation("memory", _WatchedMemory, clobber=True)  # memory:// paths, watched
    missing: list[str] = []
    _WatchedMemory.missing = missing
    try:
        # A plain UPath: in a process where Airflow is set up, as_path gives Airflow's path
        # type, whose file systems Airflow makes itself (not the watched one).
        target = UPath(f"memory://claims-{uuid.uuid4().hex[:8]}/owner.claim.json")
        assert isinstance(target.fs, _WatchedMemory)
        RunDir.write_atomic(target, b'{"state": "choosing"}')
        _WatchedMemory.watched = target.path
        RunDir.write_atomic(target, b'{"state": "claimed"}')  # one upload
        with atomic_writer(target) as out:  # a stream: a temporary, then a copy over the file
            out.write(b'{"state": "claimed again"}')
    finally:
        _WatchedMemory.watched = None
        register_implementation("memory", MemoryFileSystem, clobber=True)
    assert missing == []
    assert target.read_bytes() == b'{"state": "claimed again"}'
    left = target.fs.ls(target.parent.path, detail=False)
    assert [name.rsplit("/", 1)[-1] for name in left] == ["owner.claim.json"]  # no temporary left


def test_a_file_replaced_on_s3_reads_back_new_in_the_same_process(
    s3_partition: Any, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that read a file, listed its folder, then replaced the file (the queue lock:
    read, refreshed, read again to release it) must read the new file. s3fs reads with the
    ETag it knows: a replace that left a cached, older ETag behind made the next read fail
    with 412 (the soak's seed 4: the lock could not be read to be released, and every run of
    the connection waited ten minutes for it to go stale)."""
    from airflow_provider_claude_batch.batching.state.storage import as_path, atomic_writer, children

    bucket = _airflow_s3(s3_partition, s3_endpoint, monkeypatch)
    lock = as_path(f"s3://{bucket}/workdir/_queue/conn/_lock.json")
    assert type(lock).__name__ == "ObjectStoragePath"
    RunDir.write_atomic(lock, b'{"v": 1}')
    seen = [lock.read_bytes()]
    children(lock.parent)  # a listing caches each file's details, its ETag among them
    lock.exists()
    with atomic_writer(lock) as out:  # a streamed replace (the lock's refresh)
        out.write(b'{"v": 2}')
    seen.append(lock.read_bytes())
    RunDir.write_atomic(lock, b'{"v": 3}')  # one upload
    seen.append(lock.read_bytes())
    assert seen == [b'{"v": 1}', b'{"v": 2}', b'{"v": 3}']
