"""Rows awaited from another run: the answers of requests that another run had in a batch
not landed yet when this run was submitted (``reuse`` marks them ``awaited``).

The transfer resolves them once those batches have ended, before anything is landed:

1. an answer the other run has stored since (the answer store) is taken;
2. otherwise the other batch's results are downloaded (into this run's ``raw/``) and the
   row takes the succeeded result of the request it waited for (with an output schema, only
   an answer that validates: the store would not have kept another);
3. a row that got neither (that request errored, expired or was canceled, or the batch is
   gone) is sent after all: its own request line goes into a chunk of this run under
   ``awaited/``, recorded in the manifest as a round-0 batch record without a batch id, which
   the transfer's creates (intent, create, id: never twice) then send like any other.

The answers taken in 2. are added to the answer store at once (their identity is that of the
request they answered: its content key) and that batch's requests are retired from
``_answers/_inflight/``, whatever becomes of the run that sent them: a run whose landing
failed would otherwise leave them awaited by every later run until the API drops them.

Invariants: every awaited row ends as exactly one of an answer in ``awaited.parquet`` (beside
``answered.parquet``) or a request of an ``awaited/`` chunk; resolution is recorded in the
manifest (``reuse.awaited_resolved``) in the same save that adds those chunks, so a retry
either redoes it from the start (nothing was recorded) or skips it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.batching.api.results import ResultParser
from airflow_provider_claude_batch.batching.render.chunks import CUSTOM_ID_COLUMN, ChunkLimits, ChunkWriter
from airflow_provider_claude_batch.batching.render.content_key import as_numpy
from airflow_provider_claude_batch.batching.reuse.answer_store import ANSWER_COLUMNS, AnswerOrigin, AnswerStore
from airflow_provider_claude_batch.batching.reuse.plan import AWAITED, INPUT_PREFIX, ReuseCounts
from airflow_provider_claude_batch.batching.schema.output_schema import OutputSchema
from airflow_provider_claude_batch.batching.schema.typed_columns import TypedAnswers
from airflow_provider_claude_batch.batching.state.batch_index import read_origin
from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest
from airflow_provider_claude_batch.batching.state.run_dir import AWAITED_ANSWERS_FILE, AWAITED_FOLDER, RunDir
from airflow_provider_claude_batch.batching.state.storage import parquet_bytes, remove_tree

log = logging.getLogger(__name__)

#: The columns ``awaited.parquet`` holds per answered row.
AWAITED_COLUMNS = [CUSTOM_ID_COLUMN, "origin_batch_id", *ANSWER_COLUMNS]


def awaited_rows(run_dir: RunDir, counts: ReuseCounts) -> pa.Table:
    """The awaited rows of ``answered.parquet``."""
    assert counts.answered_file is not None
    with (run_dir / counts.answered_file).open("rb") as handle:
        table = pq.read_table(handle)
    return table.filter(pc.equal(table.column("answer_source"), AWAITED))


def resolve_awaited(
    run_dir: RunDir,
    manifest: Manifest,
    store: AnswerStore,
    download: Callable[[str, Any], Any],
    prices: PriceTable,
) -> ReuseCounts:
    """Resolve the awaited rows (see the module docstring); returns the updated counts after
    saving the manifest. ``download(batch_id, path)`` saves a batch's results."""
    counts = ReuseCounts.from_dict(manifest.reuse)
    assert counts is not None and counts.answered_file is not None
    rows = awaited_rows(run_dir, counts)
    resolved = np.zeros(rows.num_rows, dtype=bool)
    # 1. From the store: the other run may have landed since.
    answers = _from_store(rows, store, resolved)
    # 2. From the other batches' results: succeeded answers (that match the output schema, if any).
    typed = None if manifest.output_schema is None else TypedAnswers(OutputSchema.from_user(manifest.output_schema))
    for batch_id in counts.awaited_batches:
        taken = _from_their_batch(batch_id, rows, resolved, run_dir, download, prices, typed)
        answers.extend(answer for answer, _ in taken)
        _store_their_answers(store, batch_id, [stored for _, stored in taken])
    _save_awaited_answers(run_dir, counts.answered_file, answers)
    # 3. The rest is sent after all, in chunks of this run.
    unresolved = rows.filter(pa.array(~resolved))
    remove_tree(run_dir / AWAITED_FOLDER)
    if unresolved.num_rows:
        manifest.batches.extend(_chunks_for(unresolved, run_dir, manifest))
        manifest.total_requests += unresolved.num_rows
    counts.awaited_resolved = True
    counts.awaited_answered = int(resolved.sum())
    counts.awaited_sent = unresolved.num_rows
    manifest.reuse = counts.as_dict()
    manifest.save(run_dir)
    return counts


def _from_store(rows: pa.Table, store: AnswerStore, resolved: np.ndarray) -> list[pa.Table]:
    """Awaited rows whose answer is in the store now; marks them in ``resolved``."""
    answers: list[pa.Table] = []
    if rows.num_rows:
        hits = store.lookup(as_numpy(rows.column("key")), max_age=None)
        for positions, table in store.fetch(hits, columns=["batch_id", *ANSWER_COLUMNS]):
            resolved[positions] = True
            answers.append(_answer_rows(rows.column(CUSTOM_ID_COLUMN).take(pa.array(positions)), table))
    return answers


def _from_their_batch(
    batch_id: str,
    rows: pa.Table,
    resolved: np.ndarray,
    run_dir: RunDir,
    download: Callable[[str, Any], Any],
    prices: PriceTable,
    typed: TypedAnswers | None,
) -> list[tuple[pa.Table, pa.Table]]:
    """Awaited rows answered (succeeded, and valid with an output schema) in another run's
    batch ``batch_id``, whose results are saved in this run folder first; marks them in
    ``resolved``. A batch that is gone or unreadable answers nothing: its rows are sent.
    Returns, per part, the rows' answers and the same answers as the store keeps them."""
    answers: list[tuple[pa.Table, pa.Table]] = []
    wanted = np.flatnonzero(~resolved & pc.equal(rows.column("await_batch_id"), batch_id).to_numpy(False))
    if not len(wanted):
        return answers
    their_ids = rows.column("await_custom_id").take(pa.array(wanted)).combine_chunks()
    raw = run_dir / run_dir.raw_results_file(batch_id)
    try:
        if not raw.exists():
            download(batch_id, raw)
    except Exception:  # gone, or not ours to read: send those rows after all
        return answers
    with raw.open("rb") as handle:
        for batch in ResultParser(batch_id, 0, prices).parse_file(handle, source=str(raw)):
            table = pa.Table.from_batches([batch])
            table = table.filter(pc.equal(table.column("result_type"), "succeeded"))
            if typed is not None and table.num_rows:
                table = table.filter(pc.equal(typed.add_columns(table).column("output_status"), "valid"))
            where = pc.index_in(their_ids, value_set=table.column(CUSTOM_ID_COLUMN).combine_chunks())
            found = pc.is_valid(where).to_numpy(zero_copy_only=False) & ~resolved[wanted]
            if not found.any():
                continue
            positions = wanted[found]
            taken = table.take(pa.array(where.to_numpy(zero_copy_only=False)[found].astype(np.int64)))
            resolved[positions] = True
            keys = rows.column("key").take(pa.array(positions))
            answers.append(
                (
                    _answer_rows(rows.column(CUSTOM_ID_COLUMN).take(pa.array(positions)), taken),
                    taken.append_column("key", keys),
                )
            )
    return answers


def _store_their_answers(store: AnswerStore, batch_id: str, tables: list[pa.Table]) -> None:
    """The answers taken from another run's ended batch go into the store now, whatever
    becomes of that run's landing (it may have failed, and the API drops results after 29
    days), and the batch's requests are no longer in flight: later runs reuse them. Stored
    under the batch's own name, so storing them again replaces them; the origin is the task
    that created the batch (it paid), from the batch index. Never fails the landing."""
    if not tables:
        return
    try:
        entry = read_origin(store.work_dir, batch_id) or {}
        origin = AnswerOrigin(
            str(entry.get("dag_id", "")),
            str(entry.get("run_id", "")),
            str(entry.get("task_id", "")),
            int(entry.get("map_index", -1)),
        )
        stored = 0
        for index, table in enumerate(tables):
            name = AnswerStore.landing_name(f"awaited/{batch_id}/{index}", [batch_id])
            stored += store.add(table, origin, name=name)
        store.retire_batch(batch_id)
        log.info(
            "Stored %d answers of batch %s, awaited from another run; it is no longer in flight.", stored, batch_id
        )
    except Exception as exc:  # the rows are answered; a later run may pay for them again
        log.warning("Could not store the answers awaited from batch %s: %s", batch_id, exc)


def _save_awaited_answers(run_dir: RunDir, answered_file: str, answers: list[pa.Table]) -> None:
    """The answers awaited rows got from other runs, beside ``answered.parquet``, written whole
    (an empty table when none was answered)."""
    staging = RunDir.staging_name_of(answered_file)
    schema = pa.schema([pa.field(CUSTOM_ID_COLUMN, pa.string()), pa.field("origin_batch_id", pa.string())]).append(
        pa.field("text", pa.string())
    )
    table = pa.concat_tables([a.cast(answers[0].schema) for a in answers]) if answers else schema.empty_table()
    RunDir.write_atomic(run_dir / RunDir.staged_file(staging, AWAITED_ANSWERS_FILE), parquet_bytes(table))


def _answer_rows(custom_ids: pa.Array, answers: pa.Table) -> pa.Table:
    columns = {CUSTOM_ID_COLUMN: custom_ids, "origin_batch_id": answers.column("batch_id")}
    columns.update({name: answers.column(name) for name in ANSWER_COLUMNS})
    return pa.table(columns)


def _chunks_for(rows: pa.Table, run_dir: RunDir, manifest: Manifest) -> list[BatchRecord]:
    inputs = [name for name in rows.column_names if name.startswith(INPUT_PREFIX)]
    input_columns = [name[len(INPUT_PREFIX) :] for name in inputs] if inputs else None
    directory = run_dir / AWAITED_FOLDER
    directory.mkdir(parents=True, exist_ok=True)
    writer = ChunkWriter(
        directory,
        ChunkLimits(manifest.max_requests_per_batch, manifest.max_bytes_per_batch),
        input_columns=input_columns,
    )
    table = None
    if inputs:
        table = rows.select(inputs).rename_columns(input_columns or [])
        table = table.append_column(CUSTOM_ID_COLUMN, rows.column(CUSTOM_ID_COLUMN))
    try:
        writer.write_rendered(
            rows.column(CUSTOM_ID_COLUMN).combine_chunks(), rows.column("request").combine_chunks(), table
        )
        chunks = writer.close()
    except BaseException:
        writer.abort()
        raise
    first = 1 + max((record.chunk for record in manifest.batches), default=-1)
    return [
        BatchRecord(
            chunk=first + chunk.index,
            round=0,
            requests_file=f"{AWAITED_FOLDER}/{chunk.requests_file}",
            inputs_file=f"{AWAITED_FOLDER}/{chunk.inputs_file}" if chunk.inputs_file else None,
            request_count=chunk.request_count,
            body_bytes=chunk.body_bytes,
            sha256=chunk.sha256,
        )
        for chunk in chunks
    ]


def read_awaited_answers(run_dir: RunDir, counts: ReuseCounts) -> pa.Table | None:
    """The answers resolution found for awaited rows (None before it ran or without any)."""
    if not counts.awaited_resolved or counts.answered_file is None:
        return None
    path = run_dir / RunDir.staged_file(RunDir.staging_name_of(counts.answered_file), AWAITED_ANSWERS_FILE)
    if not path.exists():
        return None
    with path.open("rb") as handle:
        return pq.read_table(handle)
