"""The hostile suite runs real Airflow: the fixtures of tests/airflow (metadata DB, DAG files,
work directory)."""

from tests.airflow.conftest import make_dag, work_dir  # noqa: F401
