"""P6: the answer store. Lookups of a run's keys against a large store, the fetch of the
answers found, the store's size on disk, and what content keys and the reuse plan cost at submit.

The store is built once per size and cached (``benchmarks/out/cache/``, ignored by git): the
store's own ``add`` in landings of 100k answers (so the files are those real landings write),
answered over the 25 days before the build, then one ``compact``. Answers are 200-400 bytes of
text drawn from a Zipf-distributed vocabulary (so they compress like prose, not like noise or
like one repeated string), with ``content`` holding the same text as JSON blocks, as landing
stores them. Store keys are uniform random 16-byte strings: a BLAKE2b digest is
indistinguishable from that, and building 10M rendered requests only to hash them would
measure the renderer. The keys hashed from rendered lines are measured on their own (cases
``keys`` and ``stage``).

    python -m benchmarks.p6_answer_store lookup STORE QUERIES [fetch]   (one measured process)
    python -m benchmarks.p6_answer_store keys STAGING_DIR
    python -m benchmarks.p6_answer_store stage INPUT.parquet MODE [WORK_DIR STORE]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.common import ROOT, report

CACHE = ROOT / "benchmarks" / "out" / "cache"
#: Answers per landing while building the store.
LANDING_ROWS = 100_000
#: How old the store's answers are (spread evenly over landings) and the max age looked up with.
SPREAD_DAYS = 25
MAX_AGE = timedelta(days=30)
HIT_RATE = 0.9
#: Bump when the generated store changes, so an old cache is not measured by mistake.
CACHE_VERSION = 2
_VOCABULARY = 5_000


def _vocabulary(rng: np.random.Generator) -> tuple[pa.Array, np.ndarray]:
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    lengths = rng.integers(2, 10, _VOCABULARY)
    words = [letters[rng.integers(0, 26, n)].tobytes().decode() for n in lengths]
    weights = 1.0 / np.arange(1, _VOCABULARY + 1) ** 1.1  # Zipf: a few words are most of the text
    return pa.array(words), weights / weights.sum()


def answers_table(rng: np.random.Generator, first: int, count: int, words: tuple[pa.Array, np.ndarray]) -> pa.Table:
    """``count`` succeeded results (the result schema plus ``key``), 200-400 bytes of text each."""
    from airflow_provider_claude_batch.batching.api.results import RESULT_SCHEMA
    from airflow_provider_claude_batch.batching.render.content_key import as_arrow

    vocabulary, weights = words
    per_answer = rng.integers(30, 59, count)  # about 5.7 bytes a word with its space: 200-400 bytes
    offsets = np.concatenate([[0], np.cumsum(per_answer)]).astype(np.int32)
    picked = vocabulary.take(pa.array(rng.choice(_VOCABULARY, int(offsets[-1]), p=weights)))
    text = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), picked), " ")
    content = pc.binary_join_element_wise('[{"type":"text","text":"', text, '"}]', "")
    output_tokens = pa.array(per_answer * 4 // 3)
    input_tokens = rng.integers(50, 800, count)
    columns: dict[str, Any] = {name: pa.nulls(count, RESULT_SCHEMA.field(name).type) for name in RESULT_SCHEMA.names}
    zeros = pa.array(np.zeros(count, dtype=np.int64))
    columns.update(
        custom_id=pa.array([f"row-{i}" for i in range(first, first + count)]),
        batch_id=pa.array([f"msgbatch_{first // LANDING_ROWS:024d}"] * count),
        round=pa.array(np.zeros(count, dtype=np.int32)),
        result_type=pa.array(["succeeded"] * count),
        text=text,
        content=content,
        stop_reason=pa.array(["end_turn"] * count),
        model=pa.array(["claude-sonnet-4-6"] * count),
        input_tokens=pa.array(input_tokens),
        output_tokens=output_tokens,
        cache_creation_input_tokens=zeros,
        cache_read_input_tokens=zeros,
        cost_usd=pa.array(input_tokens * 1.5e-6 + per_answer * 4 // 3 * 7.5e-6),
        service_tier=pa.array(["batch"] * count),
    )
    table = pa.Table.from_pydict(columns, schema=RESULT_SCHEMA)
    return table.append_column("key", as_arrow(np.frombuffer(rng.bytes(16 * count), np.uint8).reshape(-1, 16)))


def build_store(answers: int, queries: int) -> Path:
    """The cached store of ``answers`` answers and ``queries`` keys to look up (``HIT_RATE`` of
    them stored). Built once; ``meta.json`` says how it was built and what it measures."""
    folder = CACHE / f"store-v{CACHE_VERSION}-{answers}-{queries}"
    if (folder / "meta.json").exists():
        return folder
    from airflow_provider_claude_batch.batching.render.content_key import as_numpy
    from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerOrigin, AnswerStore

    CACHE.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=CACHE))
    rng = np.random.default_rng(6)
    words = _vocabulary(rng)
    store = AnswerStore(building / "work")
    landing = min(LANDING_ROWS, max(1, answers // 10))
    landings = -(-answers // landing)
    built_at = datetime(2026, 11, 26, tzinfo=timezone.utc)
    hits_per_landing = -(-int(queries * HIT_RATE) // landings)
    picked: list[np.ndarray] = []
    add_seconds = 0.0
    text_bytes = 0
    for number in range(landings):
        count = min(landing, answers - number * landing)
        table = answers_table(rng, number * landing, count, words)
        text_bytes += pc.sum(pc.binary_length(table.column("text"))).as_py()
        keys = as_numpy(table.column("key"))
        picked.append(keys[rng.choice(count, min(count, hits_per_landing), replace=False)].copy())
        when = built_at - timedelta(days=SPREAD_DAYS) * (1 - number / landings)
        started = time.perf_counter()
        store.add(
            table, AnswerOrigin("bench", f"run-{number}", "submit", -1), name=f"landing-{number:05d}", answered_at=when
        )
        add_seconds += time.perf_counter() - started
    files_before = sum(len(files) for files in store.files().values())
    started = time.perf_counter()
    stats = store.compact(max_age=None)
    compact_seconds = time.perf_counter() - started
    stored = np.concatenate(picked)[: int(queries * HIT_RATE)]
    misses = np.frombuffer(rng.bytes(16 * (queries - len(stored))), np.uint8).reshape(-1, 16)
    lookup_keys = np.concatenate([stored, misses])
    lookup_keys = lookup_keys[rng.permutation(len(lookup_keys))]
    np.save(building / "queries.npy", lookup_keys)
    files = [path for part in store.files().values() for path in part]
    size = sum(Path(str(path)).stat().st_size for path in files)
    meta = {
        "answers": answers,
        "queries": queries,
        "expected_hits": len(stored),
        "built_at": built_at.isoformat(),
        "landings": landings,
        "files_before_compaction": files_before,
        "files": len(files),
        "answers_kept": stats.answers_kept,
        "bytes": size,
        "bytes_per_answer": size / stats.answers_kept,
        "text_bytes_per_answer": text_bytes / answers,
        "add_seconds": add_seconds,
        "add_answers_per_second": answers / add_seconds,
        "compact_seconds": compact_seconds,
    }
    (building / "meta.json").write_text(json.dumps(meta, indent=1))
    if folder.exists():
        shutil.rmtree(folder)
    building.rename(folder)
    print(f"  P6 store built: {meta}", flush=True)
    return folder


def store_meta(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "meta.json").read_text())


def prepare_rerun(store_folder: Path, source: Path, tmp: Path) -> Path:
    """A work directory whose store is the cached one (hard links, nothing copied) plus the
    answers of ``HIT_RATE`` of ``source``'s rows, as if an earlier run had landed them: what a
    rerun of the same input finds."""
    from airflow_provider_claude_batch.batching.render.content_key import as_arrow
    from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerOrigin, AnswerStore
    from airflow_provider_claude_batch.batching.submit.staging import stage_requests

    work = tmp / "rerun-work"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(store_folder / "work", work, copy_function=os.link)
    staged = stage_requests(source, _spec(), _limits(), tmp / "first-run", input_columns=None, keys=True)
    assert staged.keys is not None
    rng = np.random.default_rng(7)
    rows = len(staged.keys)
    answered = np.sort(rng.choice(rows, int(rows * HIT_RATE), replace=False))
    words = _vocabulary(rng)
    store = AnswerStore(work)
    built_at = datetime.fromisoformat(store_meta(store_folder)["built_at"])
    for start in range(0, len(answered), LANDING_ROWS):
        part = answered[start : start + LANDING_ROWS]
        table = answers_table(rng, start, len(part), words).drop_columns(["key"])
        table = table.append_column("key", as_arrow(staged.keys[part]))
        store.add(table, AnswerOrigin("bench", "first-run", "submit", -1), name=f"first-{start}", answered_at=built_at)
    shutil.rmtree(tmp / "first-run")
    return work


def _spec() -> Any:
    from airflow_provider_claude_batch.batching.render.rendering import RequestSpec

    # P2's request, so that "render alone" here is P2's figure.
    return RequestSpec(
        prompt="Product: {product}. Classify this ticket (Billing/Technical/Account/Other): {body}",
        system="Answer with one word.",
        model="claude-haiku-4-5",
        max_tokens=8,
        id_column="ticket_id",
    )


def _limits() -> Any:
    from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits

    return ChunkLimits(max_requests=100_000)


def case_lookup(argv: list[str]) -> None:
    from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerStore

    folder = Path(argv[2])
    fetch = len(argv) > 3 and argv[3] == "fetch"
    meta = store_meta(folder)
    keys = np.load(folder / "queries.npy")
    store = AnswerStore(folder / "work")
    now = datetime.fromisoformat(meta["built_at"])
    started, cpu_started = time.perf_counter(), time.process_time()
    hits = store.lookup(keys, max_age=MAX_AGE, now=now)
    seconds = time.perf_counter() - started
    if hits.count != meta["expected_hits"]:
        raise AssertionError(f"{hits.count} hits, expected {meta['expected_hits']}")
    extra: dict[str, Any] = {"rows": len(keys), "hits": hits.count, "lookup_seconds": seconds}
    extra["rows_per_second"] = len(keys) / seconds
    if fetch:
        # The columns the reuse plan fetches; each part is dropped once counted (the reuse plan
        # keeps them: its memory is the stage-and-plan case's).
        from airflow_provider_claude_batch.batching.reuse.answer_store import ANSWER_COLUMNS

        fetch_started = time.perf_counter()
        fetched = 0
        for positions, table in store.fetch(hits, columns=["key", *ANSWER_COLUMNS, "batch_id", "run_id", "dag_id"]):
            fetched += len(positions)
            del table
        extra["fetch_seconds"] = time.perf_counter() - fetch_started
        extra["fetched"] = fetched
        extra["answers_per_second"] = fetched / extra["fetch_seconds"]
        if fetched != hits.count:
            raise AssertionError(f"fetched {fetched} of {hits.count} answers")
    extra["load_1min"] = os.getloadavg()[0]
    report(extra, started=started, cpu_started=cpu_started)


def case_keys(argv: list[str]) -> None:
    """``keys_of_column`` over every line of a staging's chunk files (read before the clock)."""
    from airflow_provider_claude_batch.batching.render.content_key import keys_of_column
    from airflow_provider_claude_batch.batching.reuse.plan import _lines_of

    columns = [_lines_of(path.read_bytes()) for path in sorted(Path(argv[2]).glob("**/*.jsonl"))]
    started, cpu_started = time.perf_counter(), time.process_time()
    rows = sum(len(keys_of_column(lines)) for lines in columns)
    seconds = time.perf_counter() - started
    report(
        {"rows": rows, "rows_per_second": rows / seconds, "load_1min": os.getloadavg()[0]},
        started=started,
        cpu_started=cpu_started,
    )


def case_stage(argv: list[str]) -> None:
    """Stage a source the submit operator's way: ``render`` (no keys), ``keys`` (keys, no plan),
    ``plan`` (keys, then the reuse plan against WORK_DIR's store, at the time the cached STORE
    was built)."""
    from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerStore
    from airflow_provider_claude_batch.batching.state.run_dir import RunDir
    from airflow_provider_claude_batch.batching.submit.staging import stage_requests
    from airflow_provider_claude_batch.batching.submit.submission import ReuseSettings, plan_reuse

    source, mode = Path(argv[2]), argv[3]
    store = AnswerStore(Path(argv[4])) if mode == "plan" else None
    with tempfile.TemporaryDirectory(prefix="bench-p6-") as tmp:
        run_dir = RunDir.of(Path(tmp))
        started, cpu_started = time.perf_counter(), time.process_time()
        staged = stage_requests(source, _spec(), _limits(), run_dir, input_columns=None, keys=mode != "render")
        stage_seconds = time.perf_counter() - started
        extra: dict[str, Any] = {"rows": staged.total_requests, "stage_seconds": stage_seconds}
        if store is not None:
            # The cached store's answers are as old as its build says, whenever this runs.
            from airflow_provider_claude_batch.batching.reuse import answer_store

            built = datetime.fromisoformat(store_meta(Path(argv[5]))["built_at"])
            answer_store.utcnow = lambda: built  # type: ignore[assignment]
            planned = plan_reuse(staged, run_dir, ReuseSettings(store, MAX_AGE), _limits())
            assert planned.reuse is not None
            extra["plan_seconds"] = time.perf_counter() - started - stage_seconds
            extra.update(new=planned.reuse.new, reused=planned.reuse.reused, deduplicated=planned.reuse.deduplicated)
        seconds = time.perf_counter() - started
        extra["rows_per_second"] = staged.total_requests / seconds
        extra["load_1min"] = os.getloadavg()[0]
        report(extra, started=started, cpu_started=cpu_started)


if __name__ == "__main__":
    {"lookup": case_lookup, "keys": case_keys, "stage": case_stage}[sys.argv[1]](sys.argv)
