"""The partition commit protocol on a real S3 API (moto's server over HTTP, through s3fs) and on
local disk: a reader never sees a mix of two landings, nor a landing that was not committed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.land.partitions import (
    COMMIT_NAME,
    commit,
    committed_files,
    discard,
    read_commit,
    read_partition,
    stage,
)


def land(destination: Any, version: int, rows_per_part: int = 50) -> dict[str, Any]:
    """One landing whose every row says which landing it belongs to; landings differ in size
    (3 to 5 parts), so a partial read shows."""
    parts = 3 + version % 3
    staged = stage(destination)
    names = []
    for part in range(parts):
        name = f"part-{part:05d}.parquet"
        table = pa.table(
            {"custom_id": [f"r{part}-{i}" for i in range(rows_per_part)], "landing": [version] * rows_per_part}
        )
        with (staged / name).open("wb") as out:
            pq.write_table(table, out)
        names.append(name)
    return commit(staged, destination, names, rows=parts * rows_per_part)


def assert_whole(table: pa.Table) -> int:
    landings = set(table.column("landing").to_pylist())
    assert len(landings) == 1, f"a mix of landings {landings}"
    (landing,) = landings
    expected = 3 + landing % 3  # as land() wrote it
    assert table.num_rows == expected * 50
    assert sorted(table.column("custom_id").to_pylist()) == sorted(
        f"r{p}-{i}" for p in range(expected) for i in range(50)
    )
    return int(landing)


@pytest.mark.parametrize("where", ["s3", "local", "local-without-exchange"])
def test_a_reader_in_a_loop_never_sees_a_mix_while_reruns_replace_the_partition(
    where: str, s3_partition: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if where == "local-without-exchange":  # a platform without renameat2: two renames, a gap between
        monkeypatch.setattr("airflow_provider_claude_batch.batching.state.storage._exchange", lambda *paths: False)
    destination = s3_partition if where == "s3" else tmp_path / "labels" / "ds=2026-11-02"
    land(destination, 0)
    seen: list[int] = []
    errors: list[BaseException] = []
    replacing = threading.Event()
    replacing.set()
    progress = threading.Condition()

    def reader() -> None:
        try:
            while replacing.is_set():
                landing = assert_whole(read_partition(destination, attempts=50))
                with progress:
                    seen.append(landing)
                    progress.notify_all()
        except BaseException as error:
            errors.append(error)
            with progress:
                progress.notify_all()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in range(1, 16):
            land(destination, version)
            # Let the reader finish a read before the next landing, which then overlaps its next one.
            with progress:
                progress.wait_for(lambda reads=len(seen): len(seen) > reads or bool(errors), timeout=30)
    finally:
        replacing.clear()
        thread.join(timeout=60)
    assert not errors, errors[0]
    assert assert_whole(read_partition(destination)) == 15
    assert len(seen) >= 15 and len(set(seen)) >= 10, seen  # it did read while the partition changed
    # Only the commit object and the last landing's files are left.
    names = sorted(p.name for p in destination.iterdir())
    if where == "s3":
        assert names == sorted([COMMIT_NAME, read_commit(destination)["version"]])
    else:
        assert names == sorted([COMMIT_NAME, "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"])
        assert not [p for p in destination.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_an_interrupted_landing_is_never_read_and_the_next_commit_removes_it(s3_partition: Any) -> None:
    first = land(s3_partition, 0)
    staged = stage(s3_partition)  # a landing killed before its commit
    with (staged / "part-00000.parquet").open("wb") as out:
        pq.write_table(pa.table({"custom_id": ["stranger"], "landing": [9]}), out)
    assert assert_whole(read_partition(s3_partition)) == 0
    assert [str(p) for p in committed_files(s3_partition)] == [str(s3_partition / f) for f in first["files"]]
    land(s3_partition, 1)
    assert not staged.exists()
    assert assert_whole(read_partition(s3_partition)) == 1


def test_a_failed_landing_is_discarded_and_the_partition_keeps_its_rows(s3_partition: Any) -> None:
    land(s3_partition, 0)
    staged = stage(s3_partition)
    (staged / "part-00000.parquet").write_bytes(b"half a file")
    discard(staged)
    assert not staged.exists()
    assert assert_whole(read_partition(s3_partition)) == 0


def test_a_partition_landed_before_commit_objects_is_read_from_its_parts(tmp_path: Path) -> None:
    folder = tmp_path / "ds=2026-10-01"
    folder.mkdir()
    pq.write_table(pa.table({"custom_id": ["a", "b"]}), folder / "part-00000.parquet")
    assert read_partition(folder).column("custom_id").to_pylist() == ["a", "b"]
    assert read_partition(tmp_path / "never-landed").num_rows == 0


def test_a_read_that_overlaps_the_two_renames_starts_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an atomic exchange the partition folder is missing between two renames. A reader
    whose check came just before the first rename finds no commit object and no files: it must
    start again, not return the partition as empty."""
    import os

    from airflow_provider_claude_batch.batching.land import partitions
    from airflow_provider_claude_batch.batching.state import storage

    destination = tmp_path / "labels" / "ds=2026-11-02"
    land(destination, 0)
    swaps: list[tuple[Path, Path]] = []
    monkeypatch.setattr(partitions, "replace_tree", lambda staged, target: swaps.append((Path(staged), Path(target))))
    land(destination, 1)  # staged with its commit object, not swapped in yet
    (staged, target), aside = swaps[0], destination.parent / f".{destination.name}.old-test"
    checks: list[bool] = []

    def writer_moves_between_the_readers_checks(path: Any) -> bool:
        checks.append(True)
        if len(checks) == 1:  # the reader has just checked: the writer's first rename
            os.replace(target, aside)
            return False
        if len(checks) == 2:  # the reader has read nothing: the writer's second rename, then its cleanup
            overlapped = aside.exists()
            os.replace(staged, target)
            storage.remove_tree(aside)
            return overlapped
        return bool(storage.replacing(path))

    monkeypatch.setattr(partitions, "replacing", writer_moves_between_the_readers_checks)
    assert assert_whole(read_partition(destination)) == 1
    assert len(checks) >= 3


def test_a_folder_left_aside_by_an_interrupted_replace_is_cleared_by_the_next_landing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replace without an atomic exchange killed between its two renames leaves the old folder
    aside (``.name.old-*``), which tells readers a replace is under way. The next landing removes
    it: readers then read, instead of waiting for a replace that will never end."""
    monkeypatch.setattr("airflow_provider_claude_batch.batching.state.storage._exchange", lambda *paths: False)
    destination = tmp_path / "labels" / "ds=2026-11-02"
    land(destination, 0)
    destination.rename(destination.parent / f".{destination.name}.old-interrupted")  # killed after this rename
    land(destination, 1)
    assert assert_whole(read_partition(destination)) == 1
    assert [p.name for p in destination.parent.iterdir()] == [destination.name]
