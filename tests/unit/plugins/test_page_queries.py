"""What the Claude Batches page asks Airflow: DAG runs and connections from a real, migrated
metadata database (runs made by ``dag.test()``), connections from the environment, and the
auth manager's answers turned into the page's ``may_read`` checks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_claude_batch.plugins.page_load import load_overview
from airflow_provider_claude_batch.plugins.page_queries import (
    PROVIDER_TASK_TYPES,
    claude_connections,
    connection_reader,
    dag_reader,
    env_conn_type,
    recent_runs_from_db,
    run_dates_from_db,
    run_states_from_db,
)
from airflow_provider_claude_batch.plugins.page_render import render_page
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import make_dag  # noqa: F401  (real Airflow fixtures)
from tests.unit.plugins.conftest import RunDatesOf

#: DAGs without a task: their runs are all the queries need, and ``dag.test()`` makes them fast.
NO_TASK = "pass"
EMPTY_OPERATOR = "from airflow.providers.standard.operators.empty import EmptyOperator\n"


def test_runs_are_found_with_their_logical_dates_newest_first(make_dag: Any) -> None:  # noqa: F811
    dag, other = make_dag(NO_TASK), make_dag(NO_TASK)
    day = datetime(2026, 11, 24, tzinfo=timezone.utc)
    nightly = dag.test(logical_date=day, run_after=day)
    later = dag.test(logical_date=day + timedelta(days=1), run_after=day + timedelta(days=1))
    undated = dag.test(logical_date=None, run_after=day + timedelta(days=2))  # e.g. asset-triggered
    elsewhere = other.test(logical_date=day, run_after=day)

    asked = [(dag.dag_id, nightly.run_id), (dag.dag_id, undated.run_id), (dag.dag_id, "gone"), (dag.dag_id, "gone")]
    dates = run_dates_from_db(asked)
    assert dates == {
        (dag.dag_id, nightly.run_id): day.isoformat(),
        (dag.dag_id, undated.run_id): (day + timedelta(days=2)).isoformat(),  # its run_after stands in
    }
    assert run_dates_from_db([]) == {}

    recent = recent_runs_from_db([dag.dag_id, other.dag_id], day + timedelta(hours=1), 10)
    assert recent == [(dag.dag_id, undated.run_id), (dag.dag_id, later.run_id)]  # since, newest first
    assert recent_runs_from_db([dag.dag_id, other.dag_id], day, 2) == recent  # the limit
    assert (other.dag_id, elsewhere.run_id) in recent_runs_from_db([other.dag_id], day, 10)
    assert recent_runs_from_db([], day, 10) == []


def test_run_states_come_with_the_providers_tasks_only(make_dag: Any) -> None:  # noqa: F811
    """A run's state, and the states of its task instances of the provider's types only: a
    task of another type says nothing about the batches (the page's own test runs the
    provider's tasks: ``test_a_run_whose_transfer_failed_shows_failed_not_green``)."""
    dag = make_dag('EmptyOperator(task_id="other")', header=EMPTY_OPERATOR)
    day = datetime(2026, 11, 24, tzinfo=timezone.utc)
    run = dag.test(logical_date=day, run_after=day)
    states = run_states_from_db([(dag.dag_id, run.run_id), (dag.dag_id, "gone")])
    assert set(states) == {(dag.dag_id, run.run_id)}
    found = states[(dag.dag_id, run.run_id)]
    assert (found.run, found.tasks) == ("success", {})
    assert run_states_from_db([]) == {}


def test_the_provider_task_types_are_the_providers_class_names() -> None:
    """``TaskInstance.operator`` records a task's class name: the names must follow the classes."""
    from airflow_provider_claude_batch.decorators.claude_batch import _ClaudeBatchDecoratedOperator
    from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator
    from airflow_provider_claude_batch.sensors.batch import ClaudeBatchSensor
    from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator

    classes = (
        ClaudeBatchSubmitOperator,
        ClaudeBatchSensor,
        ClaudeBatchToParquetOperator,
        _ClaudeBatchDecoratedOperator,
    )
    assert tuple(cls.__name__ for cls in classes) == PROVIDER_TASK_TYPES


@pytest.fixture
def connection_in_db(airflow_db: Path) -> Iterator[str]:
    """A claude_batch connection kept in the metadata database (and a postgres one beside it)."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    ids = ("claude_in_db", "warehouse_in_db")
    with create_session() as session:
        session.add(Connection(conn_id=ids[0], conn_type="claude_batch", host="http://127.0.0.1:9"))
        session.add(Connection(conn_id=ids[1], conn_type="postgres", host="db"))
    yield ids[0]
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id.in_(ids)).delete(synchronize_session=False)


def test_connections_in_the_metadata_database_are_offered(connection_in_db: str) -> None:
    assert claude_connections(lambda conn_id: True, "typed_in") == [connection_in_db, "typed_in"]
    assert claude_connections(lambda conn_id: conn_id != connection_in_db, "typed_in") == ["typed_in"]


def test_the_connection_picker_lists_readable_claude_connections(
    emulator: RunningEmulator, work_dir: Path, connection_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection_env("claude_nightly")
    connection_env("claude_secret_team")
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_URI", "claude-batch://:key@localhost")
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", "postgres://user:pw@db/warehouse")
    monkeypatch.setenv("AIRFLOW_CONN_BROKEN", "{not json")
    picked = claude_connections(lambda conn_id: conn_id != "claude_secret_team", "typed_in")
    assert picked == ["claude_batch_default", "claude_nightly", "claude_uri", "typed_in"]
    page = render_page(load_overview("claude_batch_default", 10, run_dates=RunDatesOf({})), 10, connections=picked)
    picker = page.split('<select name="conn_id">', 1)[1].split("</select>", 1)[0]
    assert '<option value="claude_batch_default" selected>' in picker and "claude_secret_team" not in picker
    assert '<input name="conn_id"' not in page


def test_an_environment_connection_type_is_read_without_its_secrets() -> None:
    assert env_conn_type('{"conn_type": "claude_batch", "password": "k"}') == "claude_batch"
    assert env_conn_type("claude-batch://:key@localhost") == "claude_batch"
    assert env_conn_type('{"conn_type": 3}') is None and env_conn_type("[1]") is None
    assert env_conn_type("{not json") is None and env_conn_type("no scheme") is None


class CountingAuthManager:
    """Airflow's auth manager as the page calls it: allows the connection ``mine`` and the DAG
    ``visible`` (which of them it allows is Airflow's business, not what is tested here)."""

    def __init__(self) -> None:
        self.dag_questions = 0

    def is_authorized_connection(self, *, method: str, details: Any, user: Any) -> bool:
        return method == "GET" and details.conn_id == "mine" and user == "someone"

    def get_authorized_dag_ids(self, *, user: Any, method: str = "GET") -> set[str]:
        self.dag_questions += 1
        return {"visible"} if method == "GET" and user == "someone" else set()


def test_the_viewers_dags_are_asked_for_once_and_only_when_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.api_fastapi.app as api_app

    auth = CountingAuthManager()
    monkeypatch.setattr(api_app, "get_auth_manager", lambda: auth)
    may_read_dag = dag_reader("someone")
    assert auth.dag_questions == 0
    assert may_read_dag("visible") and not may_read_dag("secret") and may_read_dag("visible")
    assert auth.dag_questions == 1
    may_read_connection = connection_reader("someone")
    assert may_read_connection("mine") and not may_read_connection("theirs")
    assert not connection_reader("somebody else")("mine")
