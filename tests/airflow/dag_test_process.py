"""Run ``dag.test()`` for one DAG file in a separate process (so a test can kill it):
``python -m tests.airflow.dag_test_process DAG_FILE DAG_ID ISO_DATE``."""

from __future__ import annotations

import sys
from datetime import datetime


def main(dag_file: str, dag_id: str, date: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=dag_file).get_dag(dag_id)
    assert dag is not None
    logical_date = datetime.fromisoformat(date)
    dag.test(logical_date=logical_date, run_after=logical_date)


if __name__ == "__main__":
    main(*sys.argv[1:4])
