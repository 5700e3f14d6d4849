"""The real deployment shared by the system tests (started once per session)."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from collections.abc import Generator, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.testing import RunningEmulator
from tests.helpers import TEST_API_KEY
from tests.system.stack import AirflowStack

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "claude_batch_support_tickets"
POKE_DAG_ID = "claude_batch_poke_sensor"
POKE_DAG = f"""
from datetime import datetime
from airflow.sdk import DAG
from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_provider_claude_batch.sensors.batch import ClaudeBatchSensor

with DAG({POKE_DAG_ID!r}, schedule=None, start_date=datetime(2026, 1, 1)):
    s = ClaudeBatchSubmitOperator(task_id="submit", source=["a", "b", "c"], model="claude-haiku-4-5", max_tokens=8)
    s >> ClaudeBatchSensor(task_id="wait", manifest=s.output, deferrable=False, mode="poke", poll_interval=0.5)
"""


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, emulator_server: RunningEmulator) -> Iterator[AirflowStack]:
    home = tmp_path_factory.mktemp("deployment")
    stack = AirflowStack(
        home / "airflow",
        {
            "AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT": json.dumps(
                {"conn_type": "claude_batch", "host": emulator_server.base_url, "password": TEST_API_KEY}
            ),
            "CLAUDE_BATCH_EXAMPLE_DATA": str(home / "lake"),
            "CLAUDE_BATCH_EXAMPLE_POLL_SECONDS": "1",
            "AIRFLOW__CLAUDE_BATCH__WORK_DIR": str(home / "work"),
        },
    )
    shutil.copy(ROOT / "example_dags" / f"{DAG_ID}.py", stack.home / "dags")
    for name in ("claude_batch_review_backfill.py", "claude_batch_label_report.py"):
        shutil.copy(ROOT / "example_dags" / name, stack.home / "dags")
    (stack.home / "dags" / f"{POKE_DAG_ID}.py").write_text(textwrap.dedent(POKE_DAG))
    stack.lake = home / "lake"
    sys.path.insert(0, str(ROOT / "example_dags"))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(autouse=True)
def _deployment_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each system test starts on a live deployment and leaves no run behind it: a run still
    queued or running (a scheduled run retrying, a killed sensor's run) is failed, so it cannot
    hold a slot or a DAG's max_active_runs in the next test."""
    if "stack" not in request.fixturenames:
        yield
        return
    stack: AirflowStack = request.getfixturevalue("stack")
    stack.check_alive()
    yield
    for run in stack.api("GET", "/dags/~/dagRuns", params={"state": ["queued", "running"]})["dag_runs"]:
        stack.api("PATCH", f"/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}", json={"state": "failed"})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(stack, AirflowStack):
        report.sections.append(("the Airflow deployment at the failure", stack.diagnostics()))
        emulator = item.funcargs.get("emulator")
        if isinstance(emulator, RunningEmulator):
            calls, stats = dict(emulator.emulator.calls), dict(emulator.emulator.stats)
            report.sections.append(("the emulator at the failure", f"calls {calls}\nstats {stats}"))
    return report


def tickets(stack: AirflowStack, ds: str, rows: int) -> pq.ParquetFile:
    from example_data import write_tickets

    return pq.read_table(write_tickets(stack.lake, ds, rows))
