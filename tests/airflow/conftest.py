"""Real Airflow for the tests: a migrated metadata DB (once per session) and DAG files in the
dags folder, run with ``dag.test()``."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "work"
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__WORK_DIR", str(path))
    return path


@pytest.fixture
def make_dag(airflow_db: Path) -> Callable[..., Any]:
    """Write a DAG file into the dags folder and load it: ``make_dag(body, dag_id=...)``.

    ``body`` is the code inside ``with DAG(...):``; the provider's classes are imported.
    """

    def make(body: str, *, dag_id: str | None = None, header: str = "") -> Any:
        from airflow.dag_processing.dagbag import DagBag

        dag_id = dag_id or f"test_{uuid.uuid4().hex[:10]}"
        source = (
            "from datetime import datetime\n"
            "from airflow.sdk import DAG, Asset\n"
            "from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator\n"
            "from airflow_provider_claude_batch.sensors.batch import ClaudeBatchSensor\n"
            "from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator\n"
            + textwrap.dedent(header)
            + f"\nwith DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):\n"
            + textwrap.indent(textwrap.dedent(body), "    ")
        )
        path = airflow_db / "dags" / f"{dag_id}.py"
        path.write_text(source)
        bag = DagBag(dag_folder=str(path))
        assert not bag.import_errors, bag.import_errors
        return bag.get_dag(dag_id)

    return make


def run_dag(dag: Any, logical_date: datetime | None = None) -> Any:
    """``dag.test()`` with a run id that depends only on the logical date (so a second call
    for the same date reruns the same run, like a clear)."""
    logical_date = logical_date or datetime(2026, 11, 1, tzinfo=timezone.utc)
    return dag.test(logical_date=logical_date, run_after=logical_date)


def task_states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def xcom(dag_run: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key="return_value")
        row = session.scalars(query).first()
        return None if row is None else XComModel.deserialize_value(row)
