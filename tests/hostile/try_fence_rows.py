"""The input both tries of the fence test submit: 5 rows in chunks of 2, so 3 batches."""

from __future__ import annotations

from airflow_provider_claude_batch.batching.render.rendering import RequestSpec

SPEC = RequestSpec(prompt="{text}", model="claude-haiku-4-5", max_tokens=8)
ROWS = [{"text": f"question {i}"} for i in range(5)]
