"""Test session setup: an isolated AIRFLOW_HOME, a secret-looking API key, and a guard that
fails the run if that key ever shows up in a log record."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Must happen before anything imports Airflow.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="claude-batch-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_AIRFLOW_HOME / "dags")
# dag.test() runs the triggers itself: defer without asking a health endpoint, which on a
# developer's machine may be some other Airflow's (the check has its own tests).
os.environ.setdefault("AIRFLOW__CLAUDE_BATCH__TRIGGERER", "yes")
os.environ.pop("ANTHROPIC_API_KEY", None)
os.environ.pop("ANTHROPIC_BASE_URL", None)

from airflow_provider_claude_batch.testing import EmulatorConfig, RunningEmulator, start_emulator  # noqa: E402
from airflow_provider_claude_batch.testing.pytest_plugin import connection_uri_json  # noqa: E402
from tests.helpers import TEST_API_KEY  # noqa: E402


class _KeyLeakDetector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += repr(record.exc_info[1])
        if TEST_API_KEY in text:
            self.leaks.append(f"{record.name}: {text[:200]}")


KEY_LEAKS = _KeyLeakDetector()


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.addHandler(KEY_LEAKS)
    root.setLevel(logging.DEBUG)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if KEY_LEAKS.leaks:
        print("\nAPI KEY LEAKED INTO LOG RECORDS:\n  " + "\n  ".join(KEY_LEAKS.leaks[:20]))
        session.exitstatus = 1


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[RunningEmulator]:
    running = start_emulator(EmulatorConfig(api_keys=frozenset({TEST_API_KEY})))
    yield running
    running.stop()


@pytest.fixture
def emulator(emulator_server: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningEmulator]:
    """A clean emulator behind the ``claude_batch_default`` connection."""
    emulator_server.emulator.reset()
    emulator_server.emulator.config = EmulatorConfig(api_keys=frozenset({TEST_API_KEY}))
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", connection_uri_json(emulator_server, max_retries=2))
    yield emulator_server
    emulator_server.emulator.reset()


@pytest.fixture
def connection_env(emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch):
    """Set ``AIRFLOW_CONN_<ID>`` for another connection id: ``connection_env("x", password=...)``."""

    def define(conn_id: str, **fields: object) -> None:
        value = {"conn_type": "claude_batch", "host": emulator.base_url, "password": TEST_API_KEY}
        value.update(fields)
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))

    return define


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """The metadata DB, migrated once per session, and its dags folder."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    (airflow_home / "dags").mkdir(exist_ok=True)
    return airflow_home


@pytest.fixture(scope="session", autouse=True)
def _metadata_db_migrated_first(request: pytest.FixtureRequest) -> None:
    """When any collected test needs the metadata DB, migrate it before the first test runs.

    Migrating is a subprocess that rewrites the SQLite file. Done lazily, it ran after tests that
    had already opened the same file in this process (a connection lookup falls back to the
    metastore), and their open connections then read the migrated file as malformed."""
    if any("airflow_db" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("airflow_db")
