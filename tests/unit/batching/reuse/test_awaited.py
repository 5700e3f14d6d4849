"""Rows awaited from another run (batching/reuse/awaited.py), on runs really submitted to the emulator
that share one work directory: run ``a`` sends its requests, run ``b`` is submitted while they
are in flight and awaits the same requests. Every awaited row must end as exactly one of an
answer in ``awaited.parquet`` or a request of an ``awaited/`` chunk, recorded in the manifest
in the same save."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq

from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerStore
from airflow_provider_claude_batch.batching.reuse.awaited import awaited_rows, read_awaited_answers, resolve_awaited
from airflow_provider_claude_batch.batching.reuse.plan import ReuseCounts
from airflow_provider_claude_batch.batching.state.manifest import Manifest, load_manifest
from airflow_provider_claude_batch.batching.state.run_dir import AWAITED_FOLDER, RunDir
from airflow_provider_claude_batch.exceptions import ClaudeBatchNotFoundError
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator
from airflow_provider_claude_batch.workdir import open_manifest

A_ROWS = [{"id": f"a{i}", "text": f"question {i}"} for i in range(4)]
#: b1..b3 ask what a1..a3 asked (awaited while a's batch is in flight); b9 is new.
B_ROWS = [{"id": f"b{i}", "text": f"question {i}"} for i in (1, 2, 3, 9)]


def _submit(work: Path, task_id: str, rows: list[dict[str, str]]) -> tuple[Manifest, RunDir]:
    operator = ClaudeBatchSubmitOperator(
        task_id=task_id, source=rows, id_column="id", model="claude-haiku-4-5", max_tokens=8, work_dir=str(work)
    )
    ti = SimpleNamespace(dag_id="dag", run_id="run", task_id=task_id, map_index=-1)
    return open_manifest(operator.execute({"ti": ti})["manifest"])


class _Downloads:
    """The hook's real download, counted."""

    def __init__(self) -> None:
        self.batch_ids: list[str] = []

    def __call__(self, batch_id: str, path: Any) -> Any:
        self.batch_ids.append(batch_id)
        return ClaudeBatchHook().download_results(batch_id, path)


def _awaited_chunk_requests(run_dir: RunDir, manifest: Manifest) -> dict[str, str]:
    """custom_id -> the text asked, over the ``awaited/`` chunks the manifest records."""
    sent: dict[str, str] = {}
    for record in manifest.batches:
        if record.requests_file.startswith(f"{AWAITED_FOLDER}/"):
            assert (record.round, record.batch_id) == (0, None)  # created later, like any round-0 record
            for line in (run_dir / record.requests_file).read_text().splitlines():
                request = json.loads(line)
                sent[request["custom_id"]] = request["params"]["messages"][0]["content"]
    return sent


def _texts_of(raw: Any) -> dict[str, str]:
    """custom_id -> answer text of a saved results file's succeeded lines."""
    texts = {}
    for line in raw.read_text().splitlines():
        result = json.loads(line)
        if result["result"]["type"] == "succeeded":
            texts[result["custom_id"]] = result["result"]["message"]["content"][0]["text"]
    return texts


def _answered(run_dir: RunDir, counts: ReuseCounts) -> dict[str, dict[str, Any]]:
    table = read_awaited_answers(run_dir, counts)
    assert table is not None
    return {row["custom_id"]: row for row in table.to_pylist()}


def test_each_awaited_row_gets_the_other_runs_answer_or_is_sent_after_all(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    emulator.emulator.script_outcomes({"a2": "errored:overloaded_error"})
    a_manifest, _ = _submit(tmp_path, "a", A_ROWS)
    manifest, run_dir = _submit(tmp_path, "b", B_ROWS)
    counts = ReuseCounts.from_dict(manifest.reuse)
    assert counts is not None and counts.awaited == 3 and counts.awaited_batches == a_manifest.batch_ids()
    assert read_awaited_answers(run_dir, counts) is None  # nothing resolved yet
    downloads = _Downloads()

    counts = resolve_awaited(run_dir, manifest, AnswerStore(tmp_path), downloads, PriceTable())

    assert downloads.batch_ids == a_manifest.batch_ids()  # the other batch's results, once
    assert (run_dir / run_dir.raw_results_file(a_manifest.batch_ids()[0])).exists()
    answered = _answered(run_dir, counts)
    assert sorted(answered) == ["b1", "b3"]  # a1 and a3 succeeded
    assert {row["origin_batch_id"] for row in answered.values()} == set(a_manifest.batch_ids())
    theirs = _texts_of(run_dir / run_dir.raw_results_file(a_manifest.batch_ids()[0]))
    assert theirs["a1"] != theirs["a3"]
    assert (answered["b1"]["text"], answered["b3"]["text"]) == (theirs["a1"], theirs["a3"])  # row for row
    sent = _awaited_chunk_requests(run_dir, manifest)
    assert sent == {"b2": "question 2"}  # a2 errored: b2 is sent in this run after all
    awaited_ids = set(awaited_rows(run_dir, counts).column("custom_id").to_pylist())
    assert set(answered) | set(sent) == awaited_ids and not set(answered) & set(sent)
    assert (counts.awaited_answered, counts.awaited_sent) == (2, 1)
    assert manifest.total_requests == 1 + 1  # b9, and b2 now
    assert emulator.emulator.stats["batches_created"] == 2  # nothing created here: the transfer creates


def test_resolution_is_saved_with_the_chunks_it_adds(emulator: RunningEmulator, tmp_path: Path) -> None:
    emulator.emulator.script_outcomes({"a1": "expired"})
    _submit(tmp_path, "a", A_ROWS)
    manifest, run_dir = _submit(tmp_path, "b", B_ROWS)
    resolve_awaited(run_dir, manifest, AnswerStore(tmp_path), _Downloads(), PriceTable())
    saved = load_manifest(run_dir)
    counts = ReuseCounts.from_dict(saved.reuse)
    assert counts is not None and counts.awaited_resolved and counts.awaited_sent == 1
    assert _awaited_chunk_requests(run_dir, saved) == {"b1": "question 1"}
    assert saved.total_requests == manifest.total_requests


def test_answers_the_other_run_has_stored_are_taken_without_a_download(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    a_manifest, a_run = _submit(tmp_path, "a", A_ROWS)
    manifest, run_dir = _submit(tmp_path, "b", B_ROWS)
    ClaudeBatchToParquetOperator(
        task_id="land_a", manifest=str(a_run), destination=str(tmp_path / "out_a"), deferrable=False
    ).execute({})  # a lands and stores its answers
    results_before = emulator.emulator.calls["results"]
    downloads = _Downloads()

    counts = resolve_awaited(run_dir, manifest, AnswerStore(tmp_path), downloads, PriceTable())

    assert downloads.batch_ids == [] and emulator.emulator.calls["results"] == results_before
    answered = _answered(run_dir, counts)
    assert sorted(answered) == ["b1", "b2", "b3"]
    assert {row["origin_batch_id"] for row in answered.values()} == set(a_manifest.batch_ids())
    assert _awaited_chunk_requests(run_dir, manifest) == {}
    assert (counts.awaited_answered, counts.awaited_sent) == (3, 0)


def test_rows_of_a_batch_that_cannot_be_read_are_sent_after_all(emulator: RunningEmulator, tmp_path: Path) -> None:
    _submit(tmp_path, "a", A_ROWS)
    manifest, run_dir = _submit(tmp_path, "b", B_ROWS)

    def gone(batch_id: str, path: Any) -> None:
        raise ClaudeBatchNotFoundError(f"{batch_id} was deleted")

    counts = resolve_awaited(run_dir, manifest, AnswerStore(tmp_path), gone, PriceTable())

    assert _answered(run_dir, counts) == {}
    assert _awaited_chunk_requests(run_dir, manifest) == {f"b{i}": f"question {i}" for i in (1, 2, 3)}
    assert (counts.awaited_answered, counts.awaited_sent) == (0, 3)


def test_a_run_awaiting_nothing_reads_no_awaited_answers(emulator: RunningEmulator, tmp_path: Path) -> None:
    manifest, run_dir = _submit(tmp_path, "b", B_ROWS)  # no other run: every row is new
    counts = ReuseCounts.from_dict(manifest.reuse)
    assert counts is not None and counts.awaited == 0
    assert read_awaited_answers(run_dir, counts) is None


def test_answers_awaited_from_a_run_that_never_lands_are_stored_and_no_longer_awaited(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Run a sends its requests and never lands (its transfer failed). Run b awaits them and
    takes their answers: they go into the store at once and a's batch is retired from the
    requests in flight, so run c reuses them: nothing awaited, nothing downloaded, nothing
    billed. Before, every later run awaited a's batch and downloaded it again, storing
    nothing, until the API dropped the results and the rows were paid again."""
    work = tmp_path / "work"
    a_manifest, _ = _submit(work, "a", A_ROWS)
    b_manifest, b_run_dir = _submit(work, "b", B_ROWS)
    store = AnswerStore(b_run_dir.for_manifest(b_manifest).work_dir)
    downloads = _Downloads()
    resolve_awaited(b_run_dir, b_manifest, store, downloads, PriceTable())
    assert downloads.batch_ids == a_manifest.batch_ids()
    in_flight = {
        b for f in (work / "_answers" / "_inflight").glob("*.parquet") for b in pq.read_table(f)["batch_id"].to_pylist()
    }
    assert in_flight == set(b_manifest.batch_ids())  # a's batch is retired, b's own is in flight
    created = emulator.emulator.stats["batches_created"]
    c_manifest, _ = _submit(work, "c", [{"id": f"c{i}", "text": f"question {i}"} for i in (1, 2, 3)])
    counts = ReuseCounts.from_dict(c_manifest.reuse)
    assert counts is not None and (counts.reused, counts.awaited, counts.new) == (3, 0, 0)
    assert emulator.emulator.stats["batches_created"] == created
    assert len(downloads.batch_ids) == 1
