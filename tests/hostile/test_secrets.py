"""The secrets sweep: a distinctive key goes through a full run (submit, deferred wait, land)
on the emulator, and is then searched for everywhere the run leaves something: the task logs
(``dag.test()`` prints them and writes no log file), every file of the work directory and the
destination, the Parquet, the metadata database file itself (XCom, the trigger's event,
rendered fields), each task's XCom read back, and the trigger row the deferral stored (its
kwargs, decrypted as the triggerer reads them). Files that live only while a run is under way
(requests in flight in the answer store) are swept from a copy of the work directory taken
between the wait and the landing. It must be found nowhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import run_dag, task_states, xcom
from tests.helpers import TEST_API_KEY

PIPELINE = """
from airflow.sdk import task

@task
def midway():
    import shutil
    shutil.copytree({work_dir!r}, {midway!r})

s = ClaudeBatchSubmitOperator(task_id="submit", source=["a", "b", "c"], model="claude-haiku-4-5", max_tokens=8)
w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={destination!r}, keep_columns={{"text": "prompt_text"}})
s >> w >> midway() >> l
"""


def _stored_triggers(batch_ids: list[str]) -> list[dict[str, Any]]:
    """The kwargs of the trigger rows of the metadata DB that wait for ``batch_ids``, as the
    triggerer reads them (decrypted)."""
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(Trigger).where(Trigger.classpath.like("%.ClaudeBatchTrigger"))).all()
        every = [row.kwargs for row in rows]
    return [kwargs for kwargs in every if set(kwargs.get("batch_ids", ())) & set(batch_ids)]


def _files_holding(key: str, *folders: Path) -> list[Path]:
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and key.encode() in path.read_bytes():
                found.append(path)
    return found


@pytest.mark.parametrize(
    "padding", [("", ""), ("  ", "\n"), ("\t", " \r\n")], ids=["plain", "spaces-newline", "tab-crlf"]
)
def test_a_key_never_leaves_the_client(
    padding: tuple[str, str],
    make_dag,
    connection_env,
    emulator: RunningEmulator,
    work_dir: Path,
    airflow_db: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    before, after = padding
    connection_env("claude_batch_default", password=f"{before}{TEST_API_KEY}{after}")
    emulator.emulator.config.processing_seconds = 1  # long enough for the sensor to defer
    destination, copy = tmp_path / "out", tmp_path / "midway"
    dag_run = run_dag(make_dag(PIPELINE.format(destination=str(destination), work_dir=str(work_dir), midway=str(copy))))

    # The padded key works (whitespace is stripped), so the run lands every row.
    assert task_states(dag_run) == {"submit": "success", "wait": "success", "midway": "success", "land": "success"}
    assert emulator.emulator.stats["batches_created"] == 1
    assert len(list(destination.glob("*.parquet"))) == 1
    printed = "".join(capfd.readouterr())
    assert "Created batch" in printed  # the logs were captured
    assert TEST_API_KEY not in printed
    # The answer store was written (in flight before the landing, answers after it) and swept.
    assert list((copy / "_answers" / "_inflight").glob("*.parquet"))
    assert list((work_dir / "_answers").rglob("*.parquet"))
    # What each task pushed, read back (an XCom never pushed would read as None).
    pushed = {task: xcom(dag_run, task) for task in ("submit", "wait", "land")}
    assert all(value is not None for value in pushed.values()), pushed
    assert TEST_API_KEY not in json.dumps(pushed, default=str)
    # The wait deferred: its trigger row names the connection, never the key.
    (stored,) = _stored_triggers(pushed["submit"]["batch_ids"])
    assert stored["claude_batch_conn_id"] == "claude_batch_default"
    assert stored["batch_ids"] == pushed["submit"]["batch_ids"]
    assert TEST_API_KEY not in json.dumps(stored, default=str)
    # Then every file the run left, the metadata DB's included.
    assert _files_holding(TEST_API_KEY, work_dir, copy, destination, airflow_db) == []


def test_a_malformed_key_is_refused_naming_the_connection_only(
    make_dag,
    connection_env,
    emulator: RunningEmulator,
    work_dir: Path,
    airflow_db: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    half = len(TEST_API_KEY) // 2
    broken = f"{TEST_API_KEY[:half]}\n{TEST_API_KEY[half:]}"
    connection_env("claude_batch_default", password=broken)
    dag_run = run_dag(
        make_dag('ClaudeBatchSubmitOperator(task_id="submit", source=["a"], model="claude-haiku-4-5", max_tokens=8)')
    )

    assert task_states(dag_run) == {"submit": "failed"}
    assert emulator.emulator.calls["create"] == 0 and emulator.emulator.stats["batches_created"] == 0
    printed = "".join(capfd.readouterr())
    assert "Connection 'claude_batch_default' has a malformed API key" in printed
    for fragment in (TEST_API_KEY[:half], TEST_API_KEY[half:]):
        assert fragment not in printed
        assert _files_holding(fragment, work_dir, airflow_db) == []
