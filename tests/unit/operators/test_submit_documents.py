"""Documents and images end to end against the emulator over HTTP: a folder of files becomes one
request per file, each answered about its own bytes; answers are reused by content (not by
name); chunks are cut by the base64 bytes sent; and every bad input fails before anything is
sent, naming its row and file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowSkipException

from airflow_provider_claude_batch.batching.api.media import PDF_TOKENS_PER_PAGE
from airflow_provider_claude_batch.batching.render.documents import PROMPT, DocumentBlock, ImageBlock
from airflow_provider_claude_batch.exceptions import ClaudeBatchBudgetError, ClaudeBatchInputError
from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_provider_claude_batch.testing import RunningEmulator
from airflow_provider_claude_batch.testing.sample_files import make_pdf, make_png
from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator


def _context(run: str = "run") -> Any:
    return {"ti": SimpleNamespace(dag_id="dag", run_id=run, task_id="submit", map_index=-1)}


def _invoices(folder: Path, count: int, *, padding: int = 0) -> dict[str, str]:
    """``count`` PDFs (page counts 1-3) in ``folder``; their sha256 by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for n in range(count):
        data = make_pdf([[f"Invoice {n}", f"Total {n}.00"]] * (1 + n % 3), padding=padding)
        (folder / f"inv-{n:03d}.pdf").write_bytes(data)
        hashes[f"inv-{n:03d}.pdf"] = hashlib.sha256(data).hexdigest()
    return hashes


def _submit(work: Path, source: Any, run: str = "run", **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("documents", ["path"])
    operator = ClaudeBatchSubmitOperator(
        task_id="submit",
        source=source,
        prompt="Extract the invoice fields.",
        model="claude-haiku-4-5",
        max_tokens=200,
        work_dir=str(work),
        **kwargs,
    )
    return operator.execute(_context(run))


def _land(summary: dict[str, Any], destination: Path) -> dict[str, dict[str, Any]]:
    ClaudeBatchToParquetOperator(
        task_id="land", manifest=summary, destination=str(destination), keep_columns=["name"], deferrable=False
    ).execute({})
    rows = pq.read_table(destination).to_pylist()
    return {row["name"]: row for row in rows}


def _facts(row: dict[str, Any]) -> list[dict[str, Any]]:
    facts, _ = json.JSONDecoder().raw_decode(row["text"].split("documents: ", 1)[1])
    return list(facts)


def test_a_folder_of_pdfs_lands_each_row_with_its_own_document(tmp_path: Path, emulator: RunningEmulator) -> None:
    hashes = _invoices(tmp_path / "in", 6)
    summary = _submit(tmp_path / "work", str(tmp_path / "in" / "*.pdf"))
    assert summary["requests"] == 6
    rows = _land(summary, tmp_path / "out")
    assert sorted(rows) == sorted(hashes)
    for name, row in rows.items():
        (facts,) = _facts(row)
        assert facts["sha256"] == hashes[name]  # every row got the answer for its own document
        assert facts["pages"] == 1 + int(name[4:7]) % 3
    assert emulator.emulator.snapshot()["files"].get("uploads", 0) == 0  # inline: nothing uploaded


def test_the_same_bytes_under_another_name_reuse_the_answer_and_a_changed_file_is_sent(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    _invoices(tmp_path / "in", 3)
    _land(_submit(tmp_path / "work", str(tmp_path / "in")), tmp_path / "out1")
    received = emulator.emulator.stats["requests_received"]
    assert received == 3
    # Renamed copies: the same bytes, so the same content keys: nothing is sent.
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for item in (tmp_path / "in").iterdir():
        shutil.copy(item, renamed / f"scan-{item.name}")
    again = _submit(tmp_path / "work", str(renamed), source_format="files", run="run2")
    assert again["created_now"] == [] and emulator.emulator.stats["requests_received"] == received
    rows = _land(again, tmp_path / "out2")
    assert {row["answer_source"] for row in rows.values()} == {"reused"}
    # A changed file at the same path is a new request; the others are still reused.
    (renamed / "scan-inv-001.pdf").write_bytes(make_pdf([["Invoice 1, corrected"]]))
    third = _submit(tmp_path / "work", str(renamed), source_format="files", run="run3")
    assert emulator.emulator.stats["requests_received"] == received + 1
    rows = _land(third, tmp_path / "out3")
    assert rows["scan-inv-001.pdf"]["answer_source"] == "new"
    assert (
        _facts(rows["scan-inv-001.pdf"])[0]["sha256"]
        == hashlib.sha256((renamed / "scan-inv-001.pdf").read_bytes()).hexdigest()
    )


def test_chunks_are_cut_by_the_base64_bytes_sent(tmp_path: Path, emulator: RunningEmulator) -> None:
    _invoices(tmp_path / "in", 5, padding=30_000)  # about 40 KB of base64 each
    summary = _submit(tmp_path / "work", str(tmp_path / "in"), source_format="files", max_bytes_per_batch=100_000)
    assert summary["chunks"] == 3 and summary["requests"] == 5  # two requests fit a 100 KB body
    assert emulator.emulator.stats["batches_created"] == 3
    assert 5 * 40_000 < emulator.emulator.stats["create_bytes"] <= 3 * 100_000


def test_columns_of_paths_and_bytes_with_images_titles_and_citations(tmp_path: Path, emulator: RunningEmulator) -> None:
    pdf = make_pdf([["ACME Corp", "Total 12.50"]])
    (tmp_path / "a.pdf").write_bytes(pdf)
    png = make_png(300, 150)
    table = pa.table({"doc": [str(tmp_path / "a.pdf")], "photo": [png], "name": ["a"]})
    content = [ImageBlock("photo"), PROMPT, DocumentBlock("doc", title="invoice", citations=True)]
    summary = _submit(tmp_path / "work", table, documents=None, content=content)
    rows = _land(summary, tmp_path / "out")
    image, document = _facts(rows["a"])
    assert (image["kind"], image["width"], document["sha256"]) == ("image", 300, hashlib.sha256(pdf).hexdigest())
    assert document["title"] == "invoice"


def test_citations_land_as_a_typed_column_for_new_and_reused_answers(tmp_path: Path, emulator: RunningEmulator) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, first_line in (("acme.pdf", "ACME Corp"), ("globex.pdf", "Globex Inc")):
        (folder / name).write_bytes(make_pdf([[first_line, "Total 1.00"]]))
    (folder / "notes.txt").write_bytes(b"Initech memo\nsecond line")
    content = [DocumentBlock("path", title="source", citations=True), PROMPT]
    first = _land(_submit(tmp_path / "work", str(folder), documents=None, content=content), tmp_path / "out1")
    # A second run reuses every answer from the store: its citations come from the same content.
    again = _submit(tmp_path / "work", str(folder), run="run2", documents=None, content=content)
    assert again["created_now"] == []
    second = _land(again, tmp_path / "out2")
    assert {row["answer_source"] for row in second.values()} == {"reused"}
    for rows in (first, second):
        acme, notes = rows["acme.pdf"]["citations"], rows["notes.txt"]["citations"]
        assert [(c["type"], c["cited_text"], c["document_title"]) for c in acme] == [
            ("page_location", "ACME Corp", "source")
        ]
        assert (acme[0]["document_index"], acme[0]["start_page_number"], acme[0]["end_page_number"]) == (0, 1, 2)
        assert acme[0]["start_char_index"] is None
        assert [(c["type"], c["cited_text"], c["start_char_index"], c["end_char_index"]) for c in notes] == [
            ("char_location", "Initech memo", 0, 12)
        ]
        assert rows["globex.pdf"]["citations"][0]["cited_text"] == "Globex Inc"
    # Without citations asked, no such column (the schema never depends on the answers).
    plain = _land(_submit(tmp_path / "work2", str(folder), documents=["path"]), tmp_path / "out3")
    assert "citations" not in plain["acme.pdf"]


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Any, dict[str, Any], str]]:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "ok.pdf").write_bytes(make_pdf([["fine"]]))
    files = {
        "empty.pdf": b"",
        "png.pdf": make_png(4, 4),
        "zip.pdf": b"PK\x03\x04 an office file",
        "encrypted.pdf": make_pdf([["x"]], encrypted=True),
        "cut.pdf": make_pdf([["x"]])[:-20],
        "long.pdf": make_pdf([["x"]] * 101),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "huge.png").write_bytes(make_png(9000, 1))
    (folder / "ok.png").write_bytes(make_png(9, 1))
    cases: dict[str, tuple[Any, dict[str, Any], str]] = {
        name: (pa.table({"path": [str(folder / "ok.pdf"), str(folder / name)]}), {}, message)
        for name, message in [
            ("empty.pdf", "empty (0 bytes)"),
            ("png.pdf", "it is image/png, which a document block"),
            ("zip.pdf", "ZIP archive"),
            ("encrypted.pdf", "encrypted"),
            ("cut.pdf", "corrupt"),
            ("long.pdf", "101 pages"),
        ]
    }
    cases["missing"] = (pa.table({"path": [str(folder / "ok.pdf"), str(folder / "gone.pdf")]}), {}, "does not exist")
    cases["huge.png"] = (
        pa.table({"path": [str(folder / "ok.png"), str(folder / "huge.png")]}),
        {"documents": None, "images": ["path"]},
        "9000x1 pixels",
    )
    return cases


@pytest.mark.parametrize(
    "case", ["empty.pdf", "png.pdf", "zip.pdf", "encrypted.pdf", "cut.pdf", "long.pdf", "missing", "huge.png"]
)
def test_bad_input_names_row_and_file_and_sends_nothing(tmp_path: Path, emulator: RunningEmulator, case: str) -> None:
    source, kwargs, message = _bad_inputs(tmp_path)[case]
    with pytest.raises(ClaudeBatchInputError) as refused:
        _submit(tmp_path / "work", source, **kwargs)
    text = str(refused.value)
    assert message in text and "row 1 (custom_id 'row-1')" in text and "column 'path'" in text
    assert case.split(".")[0] in text or case == "missing"
    assert emulator.emulator.stats["batches_created"] == 0
    assert emulator.emulator.snapshot()["files"].get("uploads", 0) == 0


def test_a_column_of_mixed_paths_and_bytes_names_its_row(tmp_path: Path, emulator: RunningEmulator) -> None:
    with pytest.raises(ClaudeBatchInputError, match=r"row 1, column 'path'.*bytes among values of another type"):
        _submit(tmp_path / "work", [{"path": str(tmp_path / "a.pdf")}, {"path": b"%PDF-1.4"}])
    assert emulator.emulator.stats["batches_created"] == 0


def test_an_unreadable_file_names_its_row(tmp_path: Path, emulator: RunningEmulator) -> None:
    locked = tmp_path / "locked.pdf"
    locked.write_bytes(make_pdf([["x"]]))
    os.chmod(locked, 0)
    if os.access(locked, os.R_OK):
        pytest.skip("running as a user who reads any file")
    with pytest.raises(ClaudeBatchInputError, match=r"row 0 .*locked.pdf cannot be read: PermissionError"):
        _submit(tmp_path / "work", pa.table({"path": [str(locked)]}))
    assert emulator.emulator.stats["batches_created"] == 0


def test_the_cost_ceiling_counts_pages_not_base64(tmp_path: Path, emulator: RunningEmulator) -> None:
    padded = tmp_path / "padded"
    padded.mkdir()
    for n in range(3):  # one page, 300 KB of bytes each: cheap by pages, dear by base64 bytes
        (padded / f"p{n}.pdf").write_bytes(make_pdf([[f"p{n}"]], padding=300_000))
    summary = _submit(tmp_path / "work", str(padded), max_cost_usd=0.01)
    assert summary["requests"] == 3
    long = tmp_path / "long"
    long.mkdir()
    for n in range(3):  # 100 small pages each: a few KB, but 300,000 tokens of pages
        (long / f"l{n}.pdf").write_bytes(make_pdf([[f"l{n}"]] * 100))
    with pytest.raises(ClaudeBatchBudgetError):
        _submit(tmp_path / "work", str(long), max_cost_usd=0.01, run="run2")
    assert emulator.emulator.stats["batches_created"] == 1


def test_estimate_only_counts_pages_and_pixels(tmp_path: Path, emulator: RunningEmulator) -> None:
    _invoices(tmp_path / "in", 3)  # 1, 2 and 3 pages
    pushed: dict[str, Any] = {}
    context = _context()
    context["ti"].xcom_push = lambda key, value: pushed.setdefault(key, value)
    operator = ClaudeBatchSubmitOperator(
        task_id="submit",
        source=str(tmp_path / "in"),
        prompt="Extract.",
        documents=["path"],
        model="claude-haiku-4-5",
        max_tokens=100,
        work_dir=str(tmp_path / "work"),
        estimate_only=True,
    )
    with pytest.raises(AirflowSkipException):
        operator.execute(context)
    tokens = pushed["estimate"]["input_tokens"]
    assert 6 * PDF_TOKENS_PER_PAGE <= tokens < 6 * PDF_TOKENS_PER_PAGE + 300
    assert emulator.emulator.stats["batches_created"] == 0


def test_a_glob_on_object_storage_is_read_through_the_storage_layer(tmp_path: Path, emulator: RunningEmulator) -> None:
    import uuid

    import fsspec
    from airflow.sdk.io import attach

    fs = fsspec.filesystem("memory")
    attach("memory", fs=fs)  # what a provider's file system registration does for s3://
    root = f"bucket-{uuid.uuid4().hex[:8]}"
    hashes = {}
    for n in range(3):
        data = make_pdf([[f"Remote invoice {n}"]] * (n + 1))
        fs.pipe(f"/{root}/in/r-{n}.pdf", data)
        hashes[f"r-{n}.pdf"] = hashlib.sha256(data).hexdigest()
    fs.pipe(f"/{root}/in/notes.csv", b"a,b\n")  # not matched by the glob
    try:
        summary = _submit(tmp_path / "work", f"memory://{root}/in/*.pdf")
        rows = _land(summary, tmp_path / "out")
    finally:
        fs.rm(f"/{root}", recursive=True)
    assert {name: _facts(row)[0]["sha256"] for name, row in rows.items()} == hashes
