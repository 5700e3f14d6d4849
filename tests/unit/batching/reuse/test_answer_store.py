from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_claude_batch.batching.api.results import RESULT_SCHEMA
from airflow_provider_claude_batch.batching.render.content_key import as_arrow, content_keys
from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerOrigin, AnswerStore

NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)
ORIGIN = AnswerOrigin("dag", "run", "task", -1)


def _keys(ids: range) -> np.ndarray:
    return content_keys([f'{{"custom_id":"r{i}","params":{{"n":{i}}}}}'.encode() for i in ids])


def _answers(ids: range, *, text: str = "answer", result_type: str = "succeeded") -> pa.Table:
    n = len(ids)
    columns = {name: pa.nulls(n, RESULT_SCHEMA.field(name).type) for name in RESULT_SCHEMA.names}
    columns.update(
        custom_id=pa.array([f"r{i}" for i in ids]),
        batch_id=pa.array(["msgbatch_1"] * n),
        round=pa.array([0] * n, pa.int32()),
        result_type=pa.array([result_type] * n),
        text=pa.array([f"{text} {i}" for i in ids]),
        cost_usd=pa.array([0.001] * n),
    )
    return pa.Table.from_pydict(columns, schema=RESULT_SCHEMA).append_column("key", as_arrow(_keys(ids)))


def _texts(store: AnswerStore, keys: np.ndarray, max_age: timedelta | None = None) -> dict[int, str]:
    hits = store.lookup(keys, max_age=max_age, now=NOW)
    found: dict[int, str] = {}
    for positions, table in store.fetch(hits, columns=["text"]):
        found.update(zip(positions.tolist(), table.column("text").to_pylist(), strict=True))
    assert len(found) == hits.count
    return found


def test_lookup_finds_the_newest_answer_and_only_succeeded_ones(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path)
    assert store.add(_answers(range(100)), ORIGIN, name="one", answered_at=NOW - timedelta(days=2)) == 100
    assert store.add(_answers(range(50), text="newer"), ORIGIN, name="two", answered_at=NOW - timedelta(days=1)) == 50
    assert store.add(_answers(range(200, 210), result_type="errored"), ORIGIN, name="three") == 0
    keys = _keys(range(0, 220, 10))
    found = _texts(store, keys)
    assert found == {
        0: "newer 0",
        1: "newer 10",
        2: "newer 20",
        3: "newer 30",
        4: "newer 40",
        5: "answer 50",
        6: "answer 60",
        7: "answer 70",
        8: "answer 80",
        9: "answer 90",
    }


def test_max_age_hides_old_answers_and_compaction_expires_them(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path)
    store.add(_answers(range(10)), ORIGIN, name="old", answered_at=NOW - timedelta(days=40))
    store.add(_answers(range(10, 20)), ORIGIN, name="new", answered_at=NOW - timedelta(days=1))
    keys = _keys(range(20))
    assert sorted(_texts(store, keys, timedelta(days=30))) == list(range(10, 20))
    assert len(_texts(store, keys)) == 20
    stats = store.compact(max_age=timedelta(days=30), now=NOW)
    assert (stats.expired, stats.answers_kept) == (10, 10)
    assert sorted(_texts(store, keys)) == list(range(10, 20))
    assert all(len(files) <= 1 for files in store.files().values())


def test_adding_the_same_landing_again_replaces_its_files(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path)
    store.add(_answers(range(40)), ORIGIN, name="same")
    before = sorted(str(p) for files in store.files().values() for p in files)
    store.add(_answers(range(40)), ORIGIN, name="same")
    assert sorted(str(p) for files in store.files().values() for p in files) == before


def _stored(store: AnswerStore) -> Counter[bytes]:
    """How many times each key is written in the store's files, read from the files themselves
    (not through the store's lookups or a compaction's own count)."""
    stored: Counter[bytes] = Counter()
    for files in store.files().values():
        for path in files:
            with path.open("rb") as handle:
                stored.update(pq.read_table(handle, columns=["key"]).column("key").to_pylist())
    return stored


def test_runs_landing_at_once_and_a_compaction_lose_nothing(tmp_path: Path) -> None:
    """Eight landings (overlapping answers) and compactions at the same time. Once they are
    done, nothing is lost: every answer is in the files, nothing else is, and lookups find each
    once. Stored once is not tested there: it does not hold then, by design (overlapping
    landings each write their answers, and two compactions at once may both merge the same
    files; a reader takes the newest). It is what the next compaction makes, checked by reading
    the files after it. The store reads at every moment."""
    store = AnswerStore(tmp_path)
    errors: list[BaseException] = []
    start = threading.Barrier(10)
    landings = [range(n * 100 + part * 40, n * 100 + part * 40 + 60) for n in range(8) for part in range(5)]

    def land(number: int) -> None:
        try:
            start.wait()
            for part in range(5):
                store.add(_answers(landings[number * 5 + part]), ORIGIN, name=f"run{number}-{part}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def compact_and_read() -> None:
        try:
            start.wait()
            for _ in range(5):
                store.compact(max_age=None)
                store.lookup(_keys(range(0, 1000, 7)), max_age=None)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=land, args=(n,)) for n in range(8)]
    threads += [threading.Thread(target=compact_and_read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    added = {i for ids in landings for i in ids}
    span = range(min(added), max(added) + 1)
    assert added == set(span)  # the landings cover one span of ids
    once = Counter(bytes(key) for key in _keys(span))
    keys = _keys(range(1100))
    assert set(_stored(store)) == set(once)  # nothing lost, nothing else
    assert set(_texts(store, keys)) == added
    stats = store.compact(max_age=None)
    assert _stored(store) == once  # each answer once
    assert stats.answers_kept == len(added)
    assert set(_texts(store, keys)) == added


def test_requests_in_flight_are_found_until_landed_and_stale_ones_are_dropped(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path)
    entries = pa.table(
        {
            "key": as_arrow(_keys(range(5))),
            "batch_id": pa.array(["msgbatch_a"] * 5),
            "custom_id": pa.array([f"r{i}" for i in range(5)]),
        }
    )
    store.mark_in_flight("run-a", entries)
    found, where = store.in_flight(_keys(range(3, 8)), exclude="run-b")
    assert found.tolist() == [True, True, False, False, False]
    assert where.column("custom_id").to_pylist() == ["r3", "r4"]
    assert not store.in_flight(_keys(range(5)), exclude="run-a")[0].any()  # never its own
    store.compact(max_age=None, now=NOW)  # recent: kept
    assert store.in_flight(_keys(range(5)), exclude="run-b")[0].all()
    store.compact(max_age=None, now=datetime.now(timezone.utc) + timedelta(days=40))  # stale: dropped
    assert not store.in_flight(_keys(range(5)), exclude="run-b")[0].any()
    store.mark_in_flight("run-a", entries)
    store.landed("run-a")
    assert not store.in_flight(_keys(range(5)), exclude="run-b")[0].any()


def test_every_copy_of_a_looked_up_key_gets_the_newest_answer_whatever_file_holds_it(tmp_path: Path) -> None:
    """The newer answer is in the file that sorts first, an older one after it, and keys are
    looked up more than once: each copy finds the newest answer, within the max age only."""
    store = AnswerStore(tmp_path)
    store.add(_answers(range(20), text="newest"), ORIGIN, name="a", answered_at=NOW - timedelta(days=1))
    store.add(_answers(range(20), text="older"), ORIGIN, name="b", answered_at=NOW - timedelta(days=3))
    store.add(_answers(range(20, 30), text="stale"), ORIGIN, name="c", answered_at=NOW - timedelta(days=40))
    wanted = [5, 999, 5, 12, 25, 5, 12]
    keys = _keys(wanted)
    assert _texts(store, keys, timedelta(days=30)) == {
        0: "newest 5",
        2: "newest 5",
        3: "newest 12",
        5: "newest 5",
        6: "newest 12",
    }
    assert _texts(store, keys)[4] == "stale 25"


def test_key_column_is_stored_plain(tmp_path: Path) -> None:
    """Digests do not compress: the key column is written without dictionary or zstd, which
    lookups read several times faster (benchmarks/p6_answer_store.py)."""
    store = AnswerStore(tmp_path)
    store.add(_answers(range(300)), ORIGIN, name="one")
    store.add(_answers(range(300)), ORIGIN, name="two")
    store.compact(max_age=None)
    for files in store.files().values():
        for path in files:
            column = pq.ParquetFile(str(path)).metadata.row_group(0).column(0)
            assert column.path_in_schema == "key"
            assert (column.compression, column.has_dictionary_page) == ("UNCOMPRESSED", False)


def test_an_answer_that_failed_its_output_schema_is_never_stored(tmp_path: Path) -> None:
    """Under an output schema only valid answers are kept, so a rerun sends an invalid one again
    instead of reusing it (the same rule as the landing's pending answers)."""
    store = AnswerStore(tmp_path)
    answers = _answers(range(4))
    answers = answers.append_column("output_status", pa.array(["valid", "invalid", "refused", "valid"]))
    assert store.add(answers, ORIGIN, name="typed", answered_at=NOW) == 2
    assert sorted(_texts(store, _keys(range(4)))) == [0, 3]


def test_requests_another_process_put_in_flight_are_found_on_s3_after_a_listing(s3_partition: Any) -> None:
    """Two processes on one work directory on S3 (each its own file system object, as two
    workers). s3fs caches a folder's listing for its life: a reader that looked up answers
    before the other wrote its in-flight file must still find that file (the run planning
    after a claim would otherwise send requests the other already sent: billed twice)."""
    from upath import UPath

    options = dict(s3_partition.storage_options) | {"skip_instance_cache": True}
    work = f"s3://{s3_partition.path.split('/')[0]}/work"
    reader, writer = AnswerStore(UPath(work, **options)), AnswerStore(UPath(work, **options))
    writer.add(_answers(range(100, 101)), ORIGIN, name="seed")  # the store exists, no request in flight
    assert _texts(reader, _keys(range(3))) == {}  # the reader lists the store's folders now
    assert reader.files() and not reader.needs_compaction()
    assert not reader.in_flight(_keys(range(3)), exclude="run-a")[0].any()
    entries = pa.table(
        {
            "key": as_arrow(_keys(range(3))),
            "batch_id": pa.array(["msgbatch_b"] * 3),
            "custom_id": pa.array([f"r{i}" for i in range(3)]),
        }
    )
    writer.mark_in_flight("run-b", entries)
    assert reader.in_flight(_keys(range(3)), exclude="run-a")[0].all()
    writer.landed("run-b")
    assert not reader.in_flight(_keys(range(3)), exclude="run-a")[0].any()
