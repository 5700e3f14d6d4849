"""The hostile suite runs real Airflow: the fixtures of tests/airflow (metadata DB, DAG files,
work directory)."""

from tests.airflow.conftest import airflow_db, make_dag, work_dir  # noqa: F401
