"""The reuse plan (which rows are sent), and the answer store it reads under hostile
conditions: a listing made stale by a concurrent compaction, a file that is not Parquet, and
object storage (fsspec's in-memory file system: no atomic rename, no real folders) instead
of local disk."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.reuse import answer_store
from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerStore
from tests.unit.batching.reuse.test_answer_store import NOW, ORIGIN, _answers, _keys, _texts


def _stored_rows(store: AnswerStore) -> int:
    total = 0
    for files in store.files().values():
        for path in files:
            with path.open("rb") as handle:
                total += pq.read_metadata(handle).num_rows
    return total


@pytest.fixture(params=["local", "memory"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A work directory on local disk, or on object storage (``memory://``)."""
    if request.param == "local":
        yield tmp_path
        return
    import fsspec
    from airflow.sdk.io import attach

    fs = fsspec.filesystem("memory")
    attach("memory", fs=fs)
    root = f"bucket-{uuid.uuid4().hex[:8]}"
    yield f"memory://{root}/_claude_batch"
    fs.rm(f"/{root}", recursive=True)


def test_compaction_over_a_listing_another_compaction_made_stale(
    location: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two landings compact at once: one lists a partition's files, the other merges and deletes
    them. The late one lists again instead of failing, and no answer is lost."""
    store = AnswerStore(location)
    for number in range(4):
        store.add(_answers(range(number * 30, number * 30 + 40)), ORIGIN, name=f"run{number}")
    stale = {str(store.partition(digit)): answer_store._files(store.partition(digit)) for digit in "0123456789abcdef"}
    store.compact(max_age=None)  # the other compaction: every file listed above is gone now
    real_files = answer_store._files
    served: set[str] = set()

    def listing(folder: Any) -> Any:
        if str(folder) in stale and str(folder) not in served:
            served.add(str(folder))
            return stale[str(folder)]
        return real_files(folder)

    monkeypatch.setattr(answer_store, "_files", listing)
    store.compact(max_age=None)  # no error: the partitions whose listing went stale are left
    assert set(_texts(store, _keys(range(130)))) == set(range(130))


def test_lookup_add_and_compact_on_object_storage(location: Any) -> None:
    store = AnswerStore(location)
    store.add(_answers(range(50)), ORIGIN, name="a", answered_at=NOW - timedelta(days=3))
    store.add(_answers(range(25, 75), text="newer"), ORIGIN, name="b", answered_at=NOW - timedelta(days=1))
    found = _texts(store, _keys(range(80)), max_age=timedelta(days=2))
    assert found == {i: f"newer {i}" for i in range(25, 75)}
    stats = store.compact(max_age=timedelta(days=2), now=NOW)
    assert (stats.answers_kept, stats.expired) == (50, 50)
    assert sum(len(files) for files in store.files().values()) == stats.files_after
    assert _texts(store, _keys(range(80))) == {i: f"newer {i}" for i in range(25, 75)}
    # Nothing half-written or temporary is left behind.
    assert all(
        path.name.startswith("base-") and not path.name.startswith(".")
        for files in store.files().values()
        for path in files
    )


def test_an_unreadable_store_file_costs_its_answers_not_every_run(location: Any) -> None:
    """A file of the store that is not Parquet (cut short by a writer outside this provider, a
    stray upload) must not stop every lookup, landing and compaction of its partition: its
    answers are lost, the others are found, and compaction leaves it for a person to look at."""
    store = AnswerStore(location)
    store.add(_answers(range(200)), ORIGIN, name="good")
    digit = "0123456789abcdef"[int(_keys(range(1))[0][0]) >> 4]
    broken = store.partition(digit) / "seg-broken.parquet"
    with broken.open("wb") as handle:
        handle.write(b"PAR1 this is not a parquet file")
    assert set(_texts(store, _keys(range(200)))) == set(range(200))
    assert store.add(_answers(range(200, 210)), ORIGIN, name="more") == 10
    stats = store.compact(max_age=None, min_files=1)
    assert stats.answers_kept == 210
    assert broken.exists()
    assert set(_texts(store, _keys(range(210)))) == set(range(210))


def test_the_plan_sends_only_new_rows_and_writes_the_others_down(tmp_path: Path) -> None:
    """Stored answers are reused, a repeat of a sent row is deduplicated, the rest is sent;
    every row is exactly one of them and the tally counts only what is sent."""
    from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
    from airflow_provider_claude_batch.batching.render.content_key import as_arrow
    from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
    from airflow_provider_claude_batch.batching.state.run_dir import ANSWERED_FILE, RunDir, WorkDir
    from airflow_provider_claude_batch.batching.submit.staging import stage_requests
    from airflow_provider_claude_batch.batching.submit.submission import ReuseSettings, plan_reuse

    work_dir = WorkDir(tmp_path)
    run_dir = work_dir.run("dag", "run", "submit")
    hour_cache = {"type": "ephemeral", "ttl": "1h"}
    spec = RequestSpec(
        prompt="{text}",
        model="claude-haiku-4-5",
        max_tokens=8,
        params={"system": [{"type": "text", "text": "be brief", "cache_control": hour_cache}]},
    )
    limits = ChunkLimits(max_requests=2)
    texts = ["q0", "q1", "q2", "q1", "q4", "q5"]
    staged = stage_requests(texts, spec, limits, run_dir, keys=True)
    assert staged.keys is not None
    store = AnswerStore(work_dir)
    stored = _answers(range(2)).set_column(
        len(_answers(range(2)).column_names) - 1, "key", as_arrow(staged.keys[[0, 4]])
    )
    store.add(stored, ORIGIN, name="earlier")  # answers for q0 and q4

    planned = plan_reuse(staged, run_dir, ReuseSettings(store, None), limits)

    counts = planned.reuse
    assert counts is not None
    assert (counts.rows, counts.new, counts.reused, counts.deduplicated) == (6, 3, 2, 1)
    assert planned.fingerprint == staged.fingerprint  # the identity of every row, not of those sent
    assert planned.total_requests == 3 and sum(chunk.request_count for chunk in planned.chunks) == 3
    sent = [
        line
        for chunk in planned.chunks
        for line in (run_dir / RunDir.staged_file(planned.directory_name, chunk.requests_file))
        .read_bytes()
        .splitlines()
    ]
    assert [b'"q1"' in line or b'"q2"' in line or b'"q5"' in line for line in sent] == [True] * 3
    assert planned.tally["claude-haiku-4-5"].requests == 3  # the budget counts the new rows only
    assert planned.tally["claude-haiku-4-5"].hour_cache_writes  # and prices them as they are sent
    answered = pq.read_table(run_dir / planned.directory_name / ANSWERED_FILE).sort_by("row")
    assert answered.column("row").to_pylist() == [0, 3, 4]
    assert answered.column("answer_source").to_pylist() == ["reused", "deduplicated", "reused"]
    sender = answered.column("same_as").to_pylist()[1]  # the sent row whose outcome the repeat gets
    assert sender is not None and any(f'"custom_id":"{sender}"'.encode() in line and b'"q1"' in line for line in sent)
    assert list(run_dir.staging_names()) == [planned.directory_name]  # the full staging is gone
