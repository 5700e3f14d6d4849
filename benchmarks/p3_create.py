"""P3: posting one 100k-request batch: our hook (the saved JSONL bytes, sent as they are) vs
the SDK's plain ``create`` of the same requests as dicts.

    python -m benchmarks.p3_create case IMPL CHUNK.jsonl   (one measured process)
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

from benchmarks.common import report


def make_chunk(path: Path, rows: int) -> Path:
    """``rows`` requests of about 500 bytes each, as the submit operator writes them."""
    body = "Please classify the following support ticket, which describes a problem with an order. " * 4
    with path.open("w") as out:
        for i in range(rows):
            request = {
                "custom_id": f"r-{i}",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": f"{body} (ticket {i})"}],
                },
            }
            out.write(json.dumps(request, separators=(",", ":")) + "\n")
    return path


def main(argv: list[str]) -> None:
    impl, chunk = argv[2], Path(argv[3])
    for module in ("anthropic", "airflow_provider_claude_batch.hooks.claude_batch"):
        importlib.import_module(module)
    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

    hook = ClaudeBatchHook()
    if impl == "sdk":
        import anthropic

        client = anthropic.Anthropic(**hook.settings.client_kwargs())
        requests = [json.loads(line) for line in chunk.open("rb")]  # the user's dicts, in memory
        started, cpu_started = time.perf_counter(), time.process_time()
        batch = client.with_options(max_retries=0).messages.batches.create(requests=requests)
    else:
        assert hook.client is not None  # built before the clock starts, like the SDK's client
        started, cpu_started = time.perf_counter(), time.process_time()
        batch = hook.create_batch(chunk.read_bytes())
    report(
        {"requests": batch.request_counts.processing, "bytes": chunk.stat().st_size},
        started=started,
        cpu_started=cpu_started,
    )


if __name__ == "__main__":
    main(sys.argv)
