"""What the Claude Batches page asks Airflow itself: the metadata database (the logical dates of
DAG runs, their states and those of the provider's task instances in them, the recent runs of
some DAGs, the claude_batch connections) and the auth manager (which DAGs and which
connections the viewer may read).

Invariants:

* Read only: nothing here writes to the metadata database.
* Airflow's ORM, the auth manager and SQLAlchemy are imported inside the functions (the ORM
  and the auth manager through :mod:`airflow_provider_claude_batch.compat`): Airflow imports
  the plugin module in every process that loads plugins (scheduler, workers, the api-server),
  and only the api-server, serving a page, needs them.
* Runs are looked up by ``(dag_id, run_id)`` in chunks of :data:`RUNS_PER_QUERY`, so a page
  with many runs never builds one unbounded ``IN`` clause.
* The auth manager is asked for the viewer's DAGs at most once per request, and only when a
  DAG is checked (``dag_reader``); connections are checked one by one, as the picker needs.
* Connections come from the metadata database and the ``AIRFLOW_CONN_*`` environment
  variables (other secrets backends cannot be listed: their connections are reached by typing
  ``?conn_id=``). An environment value's type is read without parsing its secrets; a missing
  metadata database leaves the environment's connections.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_claude_batch.compat import auth_manager, connection_details, metadata_models, metadata_session
from airflow_provider_claude_batch.plugins.overview import RunDates
from airflow_provider_claude_batch.plugins.run_reuse import RunKey
from airflow_provider_claude_batch.plugins.run_state import AirflowState, RunStates

log = logging.getLogger(__name__)

#: The connection type the page lists in its picker.
CONN_TYPE = "claude_batch"
#: ``(dag_id, run_id)`` pairs per query of :func:`run_dates_from_db` and :func:`run_states_from_db`.
RUNS_PER_QUERY = 500
#: The provider's task types as the metadata database records them (``TaskInstance.operator``):
#: the tasks whose states say whether a run's batches were submitted, waited for and landed.
PROVIDER_TASK_TYPES = (
    "ClaudeBatchSubmitOperator",
    "ClaudeBatchSensor",
    "ClaudeBatchToParquetOperator",
    "_ClaudeBatchDecoratedOperator",
)


def run_dates_from_db(runs: Iterable[RunKey]) -> RunDates:
    """The logical date (or, for a run without one, its run_after) of each DAG run, from the
    metadata database the api-server uses. Runs the database does not know are absent."""
    from sqlalchemy import select, tuple_

    DagRun, _, _ = metadata_models()

    wanted = list(set(runs))
    dates: RunDates = {}
    with metadata_session() as session:
        for start in range(0, len(wanted), RUNS_PER_QUERY):
            chunk = wanted[start : start + RUNS_PER_QUERY]
            query = select(DagRun.dag_id, DagRun.run_id, DagRun.logical_date, DagRun.run_after).where(
                tuple_(DagRun.dag_id, DagRun.run_id).in_(chunk)
            )
            for dag_id, run_id, logical_date, run_after in session.execute(query):
                moment = logical_date or run_after
                dates[(dag_id, run_id)] = moment.isoformat() if moment else None
    return dates


def run_states_from_db(runs: Iterable[RunKey]) -> RunStates:
    """The state of each DAG run and of the provider's task instances in it (a mapped one as
    ``task [index]``), from the metadata database. Runs the database does not know are absent."""
    from sqlalchemy import select, tuple_

    DagRun, TaskInstance, _ = metadata_models()

    wanted = list(set(runs))
    run_states: dict[RunKey, str | None] = {}
    tasks: dict[RunKey, dict[str, str | None]] = {}
    with metadata_session() as session:
        for start in range(0, len(wanted), RUNS_PER_QUERY):
            chunk = wanted[start : start + RUNS_PER_QUERY]
            query = select(DagRun.dag_id, DagRun.run_id, DagRun.state).where(
                tuple_(DagRun.dag_id, DagRun.run_id).in_(chunk)
            )
            for dag_id, run_id, state in session.execute(query):
                run_states[(dag_id, run_id)] = None if state is None else str(state)
            query = select(
                TaskInstance.dag_id,
                TaskInstance.run_id,
                TaskInstance.task_id,
                TaskInstance.map_index,
                TaskInstance.state,
            ).where(
                tuple_(TaskInstance.dag_id, TaskInstance.run_id).in_(chunk),
                TaskInstance.operator.in_(PROVIDER_TASK_TYPES),
            )
            for dag_id, run_id, task_id, map_index, state in session.execute(query):
                label = task_id if map_index is None or map_index < 0 else f"{task_id} [{map_index}]"
                tasks.setdefault((dag_id, run_id), {})[label] = None if state is None else str(state)
    return {key: AirflowState(state, tasks.get(key, {})) for key, state in run_states.items()}


def recent_runs_from_db(dag_ids: Iterable[str], since: datetime, limit: int) -> list[RunKey]:
    """The newest ``limit`` DAG runs of ``dag_ids`` due since ``since`` (by ``run_after``),
    newest first: where the page looks for runs that created no batch."""
    from sqlalchemy import select

    DagRun, _, _ = metadata_models()

    wanted = sorted(set(dag_ids))
    if not wanted:
        return []
    with metadata_session() as session:
        query = (
            select(DagRun.dag_id, DagRun.run_id)
            .where(DagRun.dag_id.in_(wanted), DagRun.run_after >= since)
            .order_by(DagRun.run_after.desc())
            .limit(limit)
        )
        return [(dag_id, run_id) for dag_id, run_id in session.execute(query)]


def dag_reader(user: Any) -> Callable[[str], bool]:
    """``may_read(dag_id)`` for the request's user, asking the auth manager once per request
    (on the first call: a page that checks no DAG never asks)."""
    readable: set[str] | None = None

    def may_read(dag_id: str) -> bool:
        nonlocal readable
        if readable is None:
            readable = set(auth_manager().get_authorized_dag_ids(user=user, method="GET"))
        return dag_id in readable

    return may_read


def connection_reader(user: Any) -> Callable[[str], bool]:
    """``may_read(conn_id)`` for the request's user: the page needs it for the connection it
    shows, and the picker offers only such connections."""

    def may_read(conn_id: str) -> bool:
        return bool(
            auth_manager().is_authorized_connection(method="GET", details=connection_details(conn_id), user=user)
        )

    return may_read


def env_conn_type(value: str) -> str | None:
    """The connection type of an ``AIRFLOW_CONN_*`` value (JSON or URI), without parsing secrets."""
    if value.lstrip().startswith("{"):
        try:
            conn_type = json.loads(value).get("conn_type")
        except (ValueError, AttributeError):
            return None
        return conn_type if isinstance(conn_type, str) else None
    return urlsplit(value).scheme.replace("-", "_") or None


def _connections_in_db() -> set[str]:
    """Ids of the claude_batch connections in the metadata database (none without one)."""
    try:
        from sqlalchemy import select

        _, _, Connection = metadata_models()
        with metadata_session() as session:
            return set(session.scalars(select(Connection.conn_id).where(Connection.conn_type == CONN_TYPE)))
    except Exception as exc:  # no metadata database here: the environment's connections still count
        log.debug("Claude Batches page: connections not listed from the database: %s", type(exc).__name__)
        return set()


def claude_connections(may_read: Callable[[str], bool], current: str) -> list[str]:
    """Ids of the claude_batch connections in the metadata database and the environment that
    ``may_read`` allows, sorted, with ``current`` always among them."""
    found = {
        key[len("AIRFLOW_CONN_") :].lower()
        for key, value in os.environ.items()
        if key.startswith("AIRFLOW_CONN_") and env_conn_type(value) == CONN_TYPE
    }
    found |= _connections_in_db()
    return sorted({conn_id for conn_id in found if may_read(conn_id)} | {current})


__all__ = [
    "CONN_TYPE",
    "PROVIDER_TASK_TYPES",
    "claude_connections",
    "connection_reader",
    "dag_reader",
    "env_conn_type",
    "recent_runs_from_db",
    "run_dates_from_db",
    "run_states_from_db",
]
