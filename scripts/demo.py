"""The README's main job: a full round trip through ClaudeBatchHook.

With ``ANTHROPIC_API_KEY`` set it talks to the real API; otherwise it starts the local
emulator and talks to that. (The pipeline DAG replaces this round trip once it lands.)
"""

from __future__ import annotations

import json
import os
import time

from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import EmulatorConfig, start_emulator

TICKETS = [
    "I can't log into my account after resetting my password.",
    "I was charged twice for my subscription this month.",
    "The mobile app crashes when I try to upload images.",
]


def main() -> None:
    running = None
    if os.environ.get("ANTHROPIC_API_KEY"):
        os.environ.setdefault("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", json.dumps({"conn_type": "claude_batch"}))
        print("ANTHROPIC_API_KEY is set: using the real Message Batches API.")
    else:
        running = start_emulator(EmulatorConfig(processing_seconds=2.0))
        os.environ["AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT"] = json.dumps(
            {"conn_type": "claude_batch", "host": running.base_url, "password": running.api_key}
        )
        print(f"No ANTHROPIC_API_KEY: using the local emulator at {running.base_url}.")
    hook = ClaudeBatchHook()
    requests = [
        {
            "custom_id": f"ticket-{i:03d}",
            "params": {
                "model": "claude-sonnet-4-6",
                "max_tokens": 16,
                "system": "Answer with one word.",
                "messages": [{"role": "user", "content": f"Classify (Billing/Technical/Account/Other): {text}"}],
            },
        }
        for i, text in enumerate(TICKETS, 1)
    ]
    batch = hook.create_batch(requests)
    print(f"created {batch.id}: {batch.processing_status}, {len(requests)} requests")
    while (batch := hook.retrieve_batch(batch.id)).processing_status != "ended":
        print(f"  {batch.processing_status}: {batch.request_counts.processing} processing")
        time.sleep(1)
    print(f"ended: {batch.request_counts}")
    for line in hook.iter_results_lines(batch.id):
        result = json.loads(line)
        outcome = result["result"]
        text = outcome["message"]["content"][0]["text"] if outcome["type"] == "succeeded" else outcome["type"]
        print(f"  {result['custom_id']}: {text}")
    if running is not None:
        print(f"emulator counters: {running.emulator.snapshot()['calls']}")
        running.stop()


if __name__ == "__main__":
    main()
