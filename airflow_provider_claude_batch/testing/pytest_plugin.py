"""pytest fixtures for DAG authors' own tests (registered as the ``claude_batch`` plugin).

``claude_batch_emulator`` serves a fresh emulator on a free loopback port for one test and
points the ``claude_batch_default`` connection at it through ``AIRFLOW_CONN_*``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from airflow_provider_claude_batch.testing.emulator import EmulatorConfig, RunningEmulator, start_emulator


def connection_uri_json(running: RunningEmulator, **extra: object) -> str:
    """The JSON form of an Airflow connection pointing at ``running``."""
    return json.dumps(
        {"conn_type": "claude_batch", "host": running.base_url, "password": running.api_key, "extra": extra}
    )


@pytest.fixture(scope="session")
def claude_batch_emulator_server() -> Iterator[RunningEmulator]:
    """One emulator for the whole session (reset it per test with ``claude_batch_emulator``)."""
    running = start_emulator(EmulatorConfig())
    yield running
    running.stop()


@pytest.fixture
def claude_batch_emulator(
    claude_batch_emulator_server: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningEmulator]:
    """A clean emulator, wired to the ``claude_batch_default`` connection for this test."""
    running = claude_batch_emulator_server
    running.emulator.reset()
    running.emulator.config = EmulatorConfig()
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", connection_uri_json(running))
    yield running
    running.emulator.reset()
