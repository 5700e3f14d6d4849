"""P4: many batch waits on one event loop: our trigger (shared async client, bounded
concurrency) vs a trigger that polls with ``asyncio.to_thread(sync retrieve)`` per batch (the
public Anthropic provider's pattern). Both run the same loop shape; only the polling differs.

    python -m benchmarks.p4_triggerer case IMPL TRIGGERS BATCHES_PER_TRIGGER SECONDS IDS_FILE
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import report


class ThreadPerPollTrigger:
    """The baseline: the same loop as ClaudeBatchTrigger, one blocking retrieve per batch in a thread."""

    def __init__(self, batch_ids: list[str], client: Any) -> None:
        self.batch_ids = batch_ids
        self.client = client

    async def run(self) -> Any:
        while True:
            batches = await asyncio.gather(
                *(asyncio.to_thread(self.client.messages.batches.retrieve, b) for b in self.batch_ids)
            )
            if all(b.processing_status == "ended" for b in batches):
                yield batches
                return
            await asyncio.sleep(0)


async def _measure(triggers: list[Any], seconds: float) -> dict[str, Any]:
    lags: list[float] = []
    stop = asyncio.Event()

    async def monitor() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(0.05)
            lags.append(max(0.0, loop.time() - before - 0.05))

    async def drain(trigger: Any) -> None:
        async for _ in trigger.run():
            return

    tasks = [asyncio.create_task(drain(t)) for t in triggers]
    watcher = asyncio.create_task(monitor())
    await asyncio.sleep(seconds)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, watcher, return_exceptions=True)
    ordered = sorted(lags)
    return {
        "lag_p50_ms": 1000 * statistics.median(ordered),
        "lag_p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
    }


def main(argv: list[str]) -> None:
    import logging

    import httpx

    impl, triggers, per_trigger, seconds, ids_file = argv[2], int(argv[3]), int(argv[4]), float(argv[5]), Path(argv[6])
    logging.disable(logging.INFO)  # one log line per poll and per HTTP call is not what is measured
    ids = ids_file.read_text().split()[: triggers * per_trigger]
    groups = [ids[i * per_trigger : (i + 1) * per_trigger] for i in range(triggers)]
    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
    from airflow_provider_claude_batch.triggers.batch import ClaudeBatchTrigger

    if impl == "ours":
        instances: list[Any] = [ClaudeBatchTrigger(group, poll_interval=0.0) for group in groups]
    else:
        import anthropic

        client = anthropic.Anthropic(**ClaudeBatchHook().settings.client_kwargs())
        instances = [ThreadPerPollTrigger(group, client) for group in groups]
    base_url = ClaudeBatchHook().settings.base_url
    before = httpx.get(f"{base_url}/_emulator/state").json()["calls"].get("retrieve", 0)
    started, cpu_started = time.perf_counter(), time.process_time()
    lags = asyncio.run(_measure(instances, seconds))
    elapsed = time.perf_counter() - started
    polls = httpx.get(f"{base_url}/_emulator/state").json()["calls"].get("retrieve", 0) - before
    report(
        {
            "polls": polls,
            "polls_per_second": polls / elapsed,
            "cpu_percent": 100 * (time.process_time() - cpu_started) / elapsed,
            **lags,
        },
        started=started,
        cpu_started=cpu_started,
    )


if __name__ == "__main__":
    main(sys.argv)
