"""The spellings an Airflow user reaches for, under real Airflow (DAG files parsed by a DagBag,
run with ``dag.test()``) against the emulator over HTTP."""

from __future__ import annotations

import json
import math
import re
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import run_dag, task_states, xcom

HEADER = (
    "from datetime import datetime, timedelta\n"
    "from airflow.sdk import DAG\n"
    "from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator\n"
    "from airflow_provider_claude_batch.sensors.batch import ClaudeBatchSensor\n"
    "from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator\n"
)


def _import_errors(airflow_db: Path, body: str) -> str:
    """Parse a DAG file with ``body`` inside ``with DAG(...)`` and return its import errors."""
    from airflow.dag_processing.dagbag import DagBag

    dag_id = f"bad_{uuid.uuid4().hex[:8]}"
    path = airflow_db / "dags" / f"{dag_id}.py"
    path.write_text(
        HEADER
        + f"with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1)):\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
    )
    try:
        return "\n".join(DagBag(dag_folder=str(path)).import_errors.values())
    finally:
        path.unlink()


def _request_lines(manifest_path: str) -> list[dict[str, object]]:
    """Every request body the submit task rendered (what was sent), from its work directory."""
    run_dir = Path(manifest_path).parent
    return [json.loads(line) for f in sorted(run_dir.glob("requests-*/chunk-*.jsonl")) for line in f.open()]


# ---------------------------------------------------------------------------------- sensor parameters
def test_sensor_takes_base_sensor_parameters(make_dag) -> None:
    dag = make_dag(
        """
        ClaudeBatchSensor(task_id="plain", batch_ids=["msgbatch_1"], poke_interval=5, mode="reschedule",
                          soft_fail=True, exponential_backoff=True, max_wait=timedelta(minutes=10),
                          timeout=timedelta(hours=2))
        ClaudeBatchSensor(task_id="old_name", batch_ids=["msgbatch_1"], poll_interval=timedelta(seconds=3))
        """,
        header="from datetime import timedelta\n",
    )
    plain = dag.get_task("plain")
    assert (plain.poke_interval, plain.timeout, plain.mode) == (5, 7200, "reschedule")
    assert plain.soft_fail and plain.exponential_backoff and plain.max_wait == timedelta(minutes=10)
    old_name = dag.get_task("old_name")
    assert old_name.poke_interval == old_name.poll_interval == 3.0


def test_contradicting_names_fail_at_parse_naming_the_parameter(airflow_db: Path) -> None:
    errors = _import_errors(
        airflow_db, 'ClaudeBatchSensor(task_id="w", batch_ids=["b"], poke_interval=5, poll_interval=10)\n'
    )
    assert "give only poke_interval=" in errors
    errors = _import_errors(
        airflow_db,
        'ClaudeBatchSubmitOperator(task_id="s", source=["a"], conn_id="x", claude_batch_conn_id="y")\n',
    )
    assert "give only conn_id=" in errors
    errors = _import_errors(
        airflow_db, 'ClaudeBatchToParquetOperator(task_id="l", manifest="m", destination="d", poll_interval="5s")\n'
    )
    assert "poll_interval must be a number of seconds or a datetime.timedelta, got str '5s'" in errors


# ---------------------------------------------------------------------------------- durations
def test_every_duration_takes_a_timedelta(make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path) -> None:
    emulator.emulator.config.processing_seconds = 0.3  # the sensor defers, polls with a timedelta interval
    emulator.emulator.script_outcomes({"row-1": "expired"})  # the transfer waits for a resubmitted round
    dag = make_dag(
        f"""
        s = ClaudeBatchSubmitOperator(task_id="submit", source=["a", "b"], model="claude-haiku-4-5", max_tokens=8)
        w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=timedelta(seconds=0.1),
                              timeout=timedelta(minutes=5))
        l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={str(tmp_path / "out")!r},
                                         poll_interval=timedelta(seconds=0.1), wait_timeout=timedelta(minutes=5))
        s >> w >> l
        """,
        header="from datetime import timedelta\n",
    )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"submit": "success", "wait": "success", "land": "success"}
    assert dag.get_task("land").poll_interval == 0.1 and dag.get_task("land").wait_timeout == 300
    assert xcom(dag_run, "land")["rows"] == 2
    assert emulator.emulator.stats["batches_created"] == 2  # round 0, and the expired row resubmitted


def test_the_decorator_and_the_answer_ages_take_seconds_or_a_timedelta(make_dag, airflow_db: Path) -> None:
    header = (
        "from datetime import timedelta\n"
        "from airflow.sdk import task\n"
        "from airflow_provider_claude_batch.operators.compact_answers import ClaudeBatchCompactAnswersOperator\n"
    )
    dag = make_dag(
        """
        ClaudeBatchSubmitOperator(task_id="submit", source=["a"], answer_max_age=timedelta(days=7))
        ClaudeBatchSubmitOperator(task_id="submit_seconds", source=["a"], answer_max_age=3600)
        ClaudeBatchCompactAnswersOperator(task_id="compact", max_age=timedelta(days=30))
        ClaudeBatchCompactAnswersOperator(task_id="compact_seconds", max_age=86400)

        @task.claude_batch(prompt="{text}", poll_interval=timedelta(seconds=30), wait_timeout=timedelta(hours=2))
        def labels():
            return ["a"]

        labels()
        """,
        header=header,
    )
    assert dag.get_task("submit").answer_max_age == timedelta(days=7)
    assert dag.get_task("submit_seconds").answer_max_age == timedelta(hours=1)
    assert dag.get_task("compact").max_age == timedelta(days=30)
    assert dag.get_task("compact_seconds").max_age == timedelta(days=1)
    landing = dag.get_task("labels").landing
    assert (landing["poll_interval"], landing["wait_timeout"]) == (30.0, 7200.0)
    # The landing step the decorator builds gets plain seconds, as the transfer operator resolves them.
    lander = dag.get_task("labels")._lander("/tmp/out")
    assert (lander.poll_interval, lander.wait_timeout) == (30.0, 7200.0)

    for body, message in (
        (
            "@task.claude_batch(poll_interval='30s')\ndef f():\n    return ['a']\nf()\n",
            "poll_interval must be a number of seconds or a datetime.timedelta, got str '30s'",
        ),
        (
            "@task.claude_batch(wait_timeout=-timedelta(hours=1))\ndef f():\n    return ['a']\nf()\n",
            "wait_timeout must be positive",
        ),
        ("ClaudeBatchCompactAnswersOperator(task_id='c', max_age=[30])\n", "max_age must be a timedelta"),
        ("ClaudeBatchSubmitOperator(task_id='s', source=['a'], answer_max_age='soon')\n", "answer_max_age must be"),
    ):
        errors = _import_errors(airflow_db, "from airflow.sdk import task\n" + header + body)
        assert message in errors, errors


# ---------------------------------------------------------------------------------- deferrable default
def test_deferrable_follows_the_deployment_and_defaults_to_on(make_dag, monkeypatch: pytest.MonkeyPatch) -> None:
    body = """
        ClaudeBatchSensor(task_id="wait", batch_ids=["msgbatch_1"])
        ClaudeBatchToParquetOperator(task_id="land", manifest="m", destination="d")
        ClaudeBatchSensor(task_id="explicit", batch_ids=["msgbatch_1"], deferrable=True)

        @task.claude_batch(prompt="{text}")
        def labels():
            return ["a"]

        labels()
        """
    header = "from airflow.sdk import task\n"
    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    dag = make_dag(body, header=header)
    assert dag.get_task("wait").deferrable and dag.get_task("land").deferrable
    assert dag.get_task("labels").landing["deferrable"]
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    dag = make_dag(body, header=header)
    assert not dag.get_task("wait").deferrable and not dag.get_task("land").deferrable
    assert not dag.get_task("labels").landing["deferrable"]
    assert dag.get_task("explicit").deferrable


def test_a_mode_written_on_the_sensor_is_followed(make_dag, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    dag = make_dag(
        """
        ClaudeBatchSensor(task_id="reschedule", batch_ids=["msgbatch_1"], mode="reschedule")
        ClaudeBatchSensor(task_id="poke", batch_ids=["msgbatch_1"], mode="poke")
        ClaudeBatchSensor(task_id="both", batch_ids=["msgbatch_1"], mode="reschedule", deferrable=True)
        ClaudeBatchSensor(task_id="dag_wide", batch_ids=["msgbatch_1"], default_args={"mode": "reschedule"})
        """
    )
    modes = {t.task_id: (t.mode, t.deferrable) for t in dag.tasks}
    assert modes == {
        "reschedule": ("reschedule", False),  # pokes in reschedule mode, as written
        "poke": ("poke", False),
        "both": ("reschedule", True),  # an explicit deferrable wins
        "dag_wide": ("reschedule", True),  # a default for every sensor of a DAG does not turn deferral off
    }


# ---------------------------------------------------------------------------------- reschedule timeout
@pytest.mark.parametrize(("soft_fail", "final_state"), [(False, "failed"), (True, "skipped")])
def test_reschedule_mode_timeout_cancels_and_logs_the_real_elapsed_time(
    make_dag,
    emulator: RunningEmulator,
    work_dir: Path,
    capfd: pytest.CaptureFixture[str],
    soft_fail: bool,
    final_state: str,
) -> None:
    emulator.emulator.config.processing_seconds = math.inf
    dag = make_dag(
        f"""
        s = ClaudeBatchSubmitOperator(task_id="submit", source=["a", "b"], model="claude-haiku-4-5", max_tokens=8)
        w = ClaudeBatchSensor(task_id="wait", manifest=s.output, deferrable=False, mode="reschedule",
                              poke_interval=0.5, timeout=timedelta(seconds=2.5), soft_fail={soft_fail})
        s >> w
        """,
        header="from datetime import timedelta\n",
    )
    dag_run = run_dag(dag)
    task_log = "".join(capfd.readouterr())  # the task runner logs to the process's output
    assert task_states(dag_run) == {"submit": "success", "wait": final_state}
    assert emulator.emulator.stats["batches_created"] == 1
    assert emulator.emulator.stats["batches_canceled"] == 1
    # Each reschedule is a new process; elapsed counts from the batch's creation, not from the poke.
    # At least two pokes (the timeout is checked after a poke, the first is at 0 s); how many more
    # fit in the 2.5 s depends on the machine's load.
    elapsed = [int(m) for m in re.findall(r"elapsed 0:00:(\d\d)", task_log)]
    assert len(elapsed) >= 2 and max(elapsed) >= 2, task_log[-3000:]
    assert "the sensor timed out: canceled batch" in task_log


# ---------------------------------------------------------------------------------- prompts
def test_a_prompt_asking_for_json_needs_no_escaping(make_dag, emulator: RunningEmulator, work_dir: Path) -> None:
    dag = make_dag(
        """
        ClaudeBatchSubmitOperator(
            task_id="submit",
            source=[{"id": "t1", "body": "card declined"}],
            id_column="id",
            prompt='Reply as JSON {"label": "Billing|Technical", "scores": {"confidence": 0.9}} for ({{ ds }}): {body}',
            system='Only JSON like {"label": ...}, nothing else.',
            model="claude-haiku-4-5",
            max_tokens=8,
        )
        """
    )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"submit": "success"}
    (request,) = _request_lines(xcom(dag_run, "submit")["manifest"])
    params = request["params"]
    assert params["messages"][0]["content"] == (
        'Reply as JSON {"label": "Billing|Technical", "scores": {"confidence": 0.9}} for (2026-11-01): card declined'
    )
    assert params["system"] == 'Only JSON like {"label": ...}, nothing else.'


def test_prompt_files_are_read_through_template_searchpath(
    airflow_db: Path, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompt_library"
    (prompts / "prompts").mkdir(parents=True)
    (prompts / "prompts" / "classify.txt").write_text('Classify ({{ ds }}) as {"label": ...}: {body}\n')
    (prompts / "prompts" / "system.md").write_text("Answer in {{ params.language }}.")
    dag_id = f"test_{uuid.uuid4().hex[:10]}"
    from airflow.dag_processing.dagbag import DagBag

    path = airflow_db / "dags" / f"{dag_id}.py"
    path.write_text(
        HEADER
        + f"with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), "
        + f"template_searchpath=[{str(prompts)!r}], params={{'language': 'French'}}):\n"
        + "    ClaudeBatchSubmitOperator(task_id='submit', source=[{'body': 'my card was declined'}],\n"
        + "        prompt='prompts/classify.txt', system='prompts/system.md', model='claude-haiku-4-5', max_tokens=8)\n"
    )
    bag = DagBag(dag_folder=str(path))
    assert not bag.import_errors, bag.import_errors
    dag_run = run_dag(bag.get_dag(dag_id))
    assert task_states(dag_run) == {"submit": "success"}
    (request,) = _request_lines(xcom(dag_run, "submit")["manifest"])
    params = request["params"]
    assert params["messages"][0]["content"] == 'Classify (2026-11-01) as {"label": ...}: my card was declined'
    assert params["system"] == "Answer in French."


# ---------------------------------------------------------------------------------- connections
def test_conn_id_is_the_natural_templated_name(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path, connection_env
) -> None:
    connection_env("claude_eu", extra={"default_model": "claude-haiku-4-5"})
    dag = make_dag(
        f"""
        s = ClaudeBatchSubmitOperator(task_id="submit", source=["a"], max_tokens=8, conn_id="{{{{ 'claude_' ~ 'eu' }}}}")
        w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poke_interval=0.1, conn_id="{{{{ 'claude_' ~ 'eu' }}}}")
        l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={str(tmp_path / "out")!r},
                                         conn_id="{{{{ 'claude_' ~ 'eu' }}}}")
        s >> w >> l
        """
    )
    for task_id in ("submit", "wait", "land"):
        assert "conn_id" in dag.get_task(task_id).template_fields
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"submit": "success", "wait": "success", "land": "success"}
    assert xcom(dag_run, "submit")["conn_id"] == "claude_eu"
    assert ds.dataset(tmp_path / "out", format="parquet").to_table().num_rows == 1


def test_an_anthropic_connection_gives_its_model(
    make_dag, emulator: RunningEmulator, work_dir: Path, connection_env
) -> None:
    # The public Anthropic provider's connection type keeps the default model in extra "model".
    connection_env("anthropic_default", conn_type="anthropic", extra={"model": "claude-sonnet-4-6"})
    dag = make_dag(
        """
        ClaudeBatchSubmitOperator(task_id="submit", source=["a"], max_tokens=8, conn_id="anthropic_default")
        """
    )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"submit": "success"}
    (request,) = _request_lines(xcom(dag_run, "submit")["manifest"])
    assert request["params"]["model"] == "claude-sonnet-4-6"
