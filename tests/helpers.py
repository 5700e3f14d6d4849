"""Shared test helpers."""

from __future__ import annotations

import secrets
import subprocess
import sys
from typing import Any

#: The key every test uses; random per run, so that any leak is caught exactly.
TEST_API_KEY = f"test-key-{secrets.token_hex(16)}"


def make_requests(count: int, *, prefix: str = "req", max_tokens: int = 16) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{prefix}-{i}",
            "params": {
                "model": "claude-sonnet-4-6",
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": f"Say something about item {i}"}],
            },
        }
        for i in range(count)
    ]


def airflow_cli(*args: str) -> str:
    """What ``airflow <args>`` prints (it must succeed), in this test session's AIRFLOW_HOME."""
    return subprocess.run([sys.executable, "-m", "airflow", *args], capture_output=True, text=True, check=True).stdout
