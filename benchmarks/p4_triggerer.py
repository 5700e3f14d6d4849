"""P4: many batch waits on one event loop: our trigger (states from list pages shared by all
triggers of the loop) vs a trigger that polls with ``asyncio.to_thread(sync retrieve)`` per
batch (the public Anthropic provider's pattern). Both run the same loop shape; only the
polling differs. "polls" counts batch states handed to triggers, whatever the API calls.

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

STATES_SEEN = [0]


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
            STATES_SEEN[0] += len(batches)
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
        from airflow_provider_claude_batch.triggers.shared_states import SharedBatchStates

        shared_states = SharedBatchStates.states

        async def counted(self: SharedBatchStates, batch_ids: Any) -> Any:
            answer = await shared_states(self, batch_ids)
            STATES_SEEN[0] += len(answer)
            return answer

        SharedBatchStates.states = counted  # type: ignore[method-assign]
        instances: list[Any] = [ClaudeBatchTrigger(group, poll_interval=0.0) for group in groups]
    else:
        import anthropic

        client = anthropic.Anthropic(**ClaudeBatchHook().settings.client_kwargs())
        instances = [ThreadPerPollTrigger(group, client) for group in groups]
    base_url = ClaudeBatchHook().settings.base_url

    def api_calls() -> int:
        calls = httpx.get(f"{base_url}/_emulator/state").json()["calls"]
        return int(calls.get("retrieve", 0) + calls.get("list", 0))

    before = api_calls()
    started, cpu_started = time.perf_counter(), time.process_time()
    lags = asyncio.run(_measure(instances, seconds))
    elapsed = time.perf_counter() - started
    calls = api_calls() - before
    report(
        {
            "polls": STATES_SEEN[0],
            "polls_per_second": STATES_SEEN[0] / elapsed,
            "api_calls_per_second": calls / elapsed,
            "cpu_percent": 100 * (time.process_time() - cpu_started) / elapsed,
            **lags,
        },
        started=started,
        cpu_started=cpu_started,
    )


if __name__ == "__main__":
    main(sys.argv)
