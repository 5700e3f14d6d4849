"""The emulator in its own process, so it never counts against a measured case."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from benchmarks.common import ROOT

API_KEY = "bench-key"


@contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_claude_batch.testing",
            "--port",
            "0",
            "--api-key",
            API_KEY,
            "--processing-seconds",
            "0",
            "--log-level",
            "warning",
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip().rsplit(" ", 1)[-1]  # printed once it listens
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)


def connection_env(base_url: str) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT": json.dumps(
            {"conn_type": "claude_batch", "host": base_url, "password": API_KEY, "extra": {"timeout": 3600}}
        )
    }


def configure(base_url: str, **settings: object) -> None:
    httpx.post(f"{base_url}/_emulator/config", json=settings, timeout=30).raise_for_status()
