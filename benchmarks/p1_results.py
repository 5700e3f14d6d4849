"""P1: batch results -> Parquet. Ours vs the tutorial's path vs pyarrow's JSON reader.

python -m benchmarks.p1_results case IMPL SOURCE ...   (one measured process)
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import report


def _requests(count: int) -> Any:
    for i in range(count):
        yield {
            "custom_id": f"r-{i}",
            "params": {
                "model": "claude-sonnet-4-6",
                "max_tokens": 512,
                "messages": [{"role": "user", "content": f"Summarize review number {i} of our product."}],
            },
        }


def prepare(base_url: str, rows: int, workdir: Path) -> tuple[str, Path]:
    """Create one batch of ``rows`` requests on the emulator (97% succeeded with 50-500 character
    answers, 2% errored, 1% expired) and save its results JSONL once."""
    from benchmarks.emulator_process import configure, connection_env

    os.environ.update(connection_env(base_url))
    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

    configure(
        base_url,
        reply_chars=[50, 500],
        errored_fraction=0.02,
        expired_fraction=0.01,
        max_requests_per_batch=max(rows, 100_000),
        max_bytes_per_batch=2**31,
    )
    hook = ClaudeBatchHook()
    batch = hook.create_batch(list(_requests(rows)))
    raw = workdir / f"results-{rows}.jsonl"
    hook.download_results(batch.id, raw)
    return batch.id, raw


def ours(batch_id: str, raw: Path | None, out: Path, rows: int) -> int:
    """The transfer operator's path: pyarrow's JSON reader + msgspec -> Arrow -> Parquet row
    groups, over HTTP while the raw bytes download and are saved. ``rows`` is the batch's
    request count, which the manifest knows in production."""
    from airflow_provider_claude_batch.batching.api.pricing import PriceTable
    from airflow_provider_claude_batch.batching.land.parts import write_parts
    from airflow_provider_claude_batch.batching.state.manifest import BatchRecord, Manifest

    source: Any = raw
    if raw is None:
        from airflow_provider_claude_batch.batching.land.raw_results import SavingDownload
        from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

        hook = ClaudeBatchHook()
        source = SavingDownload(lambda: hook.iter_results_bytes(batch_id), out / "raw.jsonl")
    manifest = Manifest(
        dag_id="bench",
        run_id="bench",
        task_id="bench",
        map_index=-1,
        conn_id="claude_batch_default",
        fingerprint="",
        spec={},
        max_requests_per_batch=rows,
        max_bytes_per_batch=0,
        total_requests=rows,
        input_columns=None,
        batches=[
            BatchRecord(
                chunk=0, round=0, requests_file="", request_count=rows, body_bytes=0, sha256="", batch_id=batch_id
            )
        ],
    )
    stats = write_parts(out, manifest, {batch_id: source}, out, keep_columns=[], prices=PriceTable())
    return stats.rows


def download(batch_id: str, raw: Path | None, out: Path, rows: int) -> int:
    """The wire alone: the results streamed through the SDK into a file, nothing parsed."""
    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

    target = out / "raw.jsonl"
    ClaudeBatchHook().download_results(batch_id, target)
    with target.open("rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 22), b""))


def tutorial(batch_id: str, raw: Path | None, out: Path, rows: int) -> int:
    """The tutorial's path: one SDK object per line -> list of dicts -> pandas -> Parquet."""
    import json

    import pandas as pd

    if raw is None:
        import anthropic

        from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

        hook = ClaudeBatchHook()
        client = anthropic.Anthropic(**hook.settings.client_kwargs())
        results = client.messages.batches.results(batch_id)
    else:
        from anthropic._models import construct_type_unchecked
        from anthropic.types.messages import MessageBatchIndividualResponse

        results = (
            construct_type_unchecked(value=json.loads(line), type_=MessageBatchIndividualResponse)
            for line in raw.open("rb")
        )
    records = []
    for result in results:
        record: dict[str, Any] = {"custom_id": result.custom_id, "type": result.result.type}
        if result.result.type == "succeeded":
            record["response"] = result.result.message.content[0].text
            record["input_tokens"] = result.result.message.usage.input_tokens
            record["output_tokens"] = result.result.message.usage.output_tokens
        elif result.result.type == "errored":
            record["error"] = result.result.error.error.type
            record["error_message"] = result.result.error.error.message
        records.append(record)
    frame = pd.DataFrame(records)
    frame.to_parquet(out / "tutorial.parquet")
    return len(frame)


def floor(batch_id: str, raw: Path | None, out: Path, rows: int) -> int:
    """pyarrow's JSON reader over the same file (read only: no schema, no Parquet)."""
    import pyarrow.json as pj

    assert raw is not None
    return pj.read_json(raw).num_rows


def _preimport(impl: str, over_http: bool) -> None:
    """Import what each path needs before the clock starts: a worker has them loaded already,
    and Airflow's own import time would otherwise dwarf the work being compared. pandas is
    imported for every path because pyarrow imports it lazily on its first conversion."""
    modules = ["pandas", "pyarrow.json", "pyarrow.parquet"]
    if impl == "ours":
        modules += [
            "airflow_provider_claude_batch.batching.land.parts",
            "airflow_provider_claude_batch.batching.land.raw_results",
        ]
    if over_http or impl == "download":
        modules += ["airflow_provider_claude_batch.hooks.claude_batch"]
    if impl == "tutorial":
        modules += ["anthropic", "anthropic._models", "anthropic.types.messages"]
    for module in modules:
        importlib.import_module(module)


def main(argv: list[str]) -> None:
    impl, batch_id, raw_arg, expected_rows = argv[2], argv[3], argv[4], int(argv[5])
    raw = None if raw_arg == "-" else Path(raw_arg)
    _preimport(impl, raw is None)
    started, cpu_started = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="bench-p1-") as tmp:
        rows = {"ours": ours, "tutorial": tutorial, "floor": floor, "download": download}[impl](
            batch_id, raw, Path(tmp), expected_rows
        )
    report({"rows": rows}, started=started, cpu_started=cpu_started)


if __name__ == "__main__":
    main(sys.argv)
