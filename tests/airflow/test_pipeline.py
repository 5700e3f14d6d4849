"""The pipeline under real Airflow (``dag.test()``: metadata DB, task runner, inline trigger)
against the emulator over HTTP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.api.results import RESULT_SCHEMA
from airflow_provider_claude_batch.batching.state.batch_index import read_origin
from airflow_provider_claude_batch.batching.state.manifest import load_manifest
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import run_dag, task_states, xcom

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def example_dag(airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, work_dir: Path):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("CLAUDE_BATCH_EXAMPLE_DATA", str(tmp_path / "lake"))
    monkeypatch.setenv("CLAUDE_BATCH_EXAMPLE_POLL_SECONDS", "0.2")
    target = airflow_db / "dags" / "claude_batch_support_tickets.py"
    shutil.copy(ROOT / "example_dags" / "claude_batch_support_tickets.py", target)
    monkeypatch.syspath_prepend(str(ROOT / "example_dags"))
    dag = DagBag(dag_folder=str(target)).get_dag("claude_batch_support_tickets")
    assert dag is not None
    return dag, tmp_path / "lake"


def test_example_dag_lands_one_row_per_ticket(example_dag, emulator: RunningEmulator) -> None:
    from example_data import write_tickets

    dag, lake = example_dag
    emulator.emulator.config.processing_seconds = 0.5  # long enough for the sensor to defer
    emulator.emulator.config.errored_fraction = 0.02
    emulator.emulator.config.expired_fraction = 0.01
    write_tickets(lake, "2026-11-01", 2_500)
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"submit": "success", "wait": "success", "land": "success"}

    summary = xcom(dag_run, "submit")
    assert summary["chunks"] == 3 and summary["requests"] == 2_500 and len(summary["batch_ids"]) == 3
    manifest = load_manifest(summary["manifest"])
    assert [b.request_count for b in manifest.batches if b.round == 0] == [1000, 1000, 500]
    assert {b.processing_status for b in manifest.batches} == {"ended"}
    # Round 0 plus resubmissions of the transient failures; nothing else was created.
    assert emulator.emulator.stats["batches_created"] == len(manifest.batches) > 3
    # Each batch, the resubmitted ones too, can be traced back to its task from its id alone.
    work_dir = Path(summary["manifest"]).parents[3]
    for record in manifest.batches:
        assert read_origin(work_dir, record.batch_id) == {
            "dag_id": manifest.dag_id,
            "run_id": manifest.run_id,
            "task_id": "submit",
            "map_index": -1,
            "chunk": record.chunk,
            "round": record.round,
        }

    output = lake / "support" / "ticket_labels" / "ds=2026-11-01"
    table = ds.dataset(output, format="parquet").to_table()
    tickets = pq.read_table(lake / "support" / "tickets" / "ds=2026-11-01" / "tickets.parquet")
    assert table.num_rows == 2_500
    assert sorted(table.column("custom_id").to_pylist()) == sorted(tickets.column("ticket_id").to_pylist())
    assert table.column("custom_id").to_pylist() == table.column("ticket_id").to_pylist()
    typed = ["output_status", "output_error", "label", "confidence"]
    assert table.schema.names == [
        *RESULT_SCHEMA.names,
        "answer_source",
        "answer_cost_usd",
        "ticket_id",
        "product",
        *typed,
    ]
    succeeded = table.filter(pc.equal(table.column("result_type"), "succeeded"))
    assert set(succeeded.column("output_status").to_pylist()) == {"valid"}
    assert set(succeeded.column("label").to_pylist()) <= {"Billing", "Technical", "Account", "Other"}
    by_id = dict(zip(tickets.column("ticket_id").to_pylist(), tickets.column("product").to_pylist(), strict=True))
    assert all(by_id[row["ticket_id"]] == row["product"] for row in table.select(["ticket_id", "product"]).to_pylist())
    kinds = table.column("result_type").to_pylist()
    assert kinds.count("succeeded") > 2_490  # most transient failures succeeded when resubmitted
    assert max(table.column("round").to_pylist()) >= 1
    landed = xcom(dag_run, "land")
    assert landed["rows"] == 2_500 and landed["by_result_type"]["succeeded"] == kinds.count("succeeded")

    # The summary's dollars are rounded to 6 places, each on its own.
    assert landed["cost_usd"] == pytest.approx(pc.sum(table.column("cost_usd")).as_py(), abs=1e-6)
    assert landed["cost_usd_sync_api"] == pytest.approx(2 * landed["cost_usd"], abs=2e-6)
    assert landed["saving_usd"] == pytest.approx(landed["cost_usd"], abs=2e-6)
    assert sum(b["rows"] for b in landed["by_batch"].values()) == 2_500
    assert set(landed["by_batch"]) == set(table.column("batch_id").to_pylist())
    assert landed["tokens"]["input_tokens"] == sum(b["input_tokens"] for b in landed["by_batch"].values())
    assert sorted(p.name for p in output.iterdir()) == [
        "_commit.json",  # names the parts: what readers on object storage read (batching/land/partitions.py)
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]


def test_dataframe_and_list_sources(make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path) -> None:
    dag = make_dag(
        f"""
        import pandas as pd
        frame = pd.DataFrame({{"id": ["a", "b", "c"], "q": ["1+1?", "2+2?", "3+3?"]}})
        s1 = ClaudeBatchSubmitOperator(task_id="from_df", source=frame, id_column="id", prompt="{{q}}",
                                       model="claude-haiku-4-5", max_tokens=8, max_requests_per_batch=2)
        s2 = ClaudeBatchSubmitOperator(task_id="from_list", source=["x", "y"], model="claude-haiku-4-5", max_tokens=8)
        w = ClaudeBatchSensor(task_id="wait", manifest=s1.output, poll_interval=0.1)
        ClaudeBatchToParquetOperator(task_id="land", manifest=s1.output, destination={str(tmp_path / "out")!r}, keep_columns=["q"])
        s1 >> w
        """
    )
    dag_run = run_dag(dag)
    states = task_states(dag_run)
    assert states["from_df"] == states["from_list"] == states["land"] == "success"
    assert xcom(dag_run, "from_df")["chunks"] == 2
    assert xcom(dag_run, "from_list")["requests"] == 2
    out = ds.dataset(tmp_path / "out", format="parquet").to_table()
    assert sorted(zip(out.column("custom_id").to_pylist(), out.column("q").to_pylist(), strict=True)) == [
        ("a", "1+1?"),
        ("b", "2+2?"),
        ("c", "3+3?"),
    ]


def test_the_saving_counts_web_search_fees_once(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    """Web searches cost a fee per call that batches do not halve: the synchronous API charges
    the same fee, so the sync cost is twice the tokens plus the fees and the saving the tokens."""
    rows = [{"id": f"q{i}", "q": f"What happened on day {i}?"} for i in range(20)]
    tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]
    dag_run = run_dag(
        make_dag(
            f"""
            s = ClaudeBatchSubmitOperator(task_id="submit", source={rows!r}, id_column="id", prompt="{{q}}",
                                          model="claude-sonnet-4-6", max_tokens=64, request_params={{"tools": {tools!r}}})
            w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
            l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={str(tmp_path / "out")!r})
            s >> w >> l
            """
        )
    )
    assert task_states(dag_run) == {"submit": "success", "wait": "success", "land": "success"}
    table = ds.dataset(tmp_path / "out", format="parquet").to_table()
    assert table.column("web_search_requests").to_pylist() == [2] * 20  # the emulator searched max_uses times
    fees = 20 * 2 * 10 / 1000  # $10 per 1,000 searches, not discounted
    cost = pc.sum(table.column("cost_usd")).as_py()
    tokens = cost - fees
    assert tokens > 0
    landed = xcom(dag_run, "land")
    assert landed["web_search_fee_usd"] == pytest.approx(fees, abs=1e-6)
    assert landed["cost_usd_sync_api"] == pytest.approx(2 * tokens + fees, abs=2e-6)
    assert landed["saving_usd"] == pytest.approx(tokens, abs=2e-6)
    # landing.json, beside the manifest, says the same.
    summary = json.loads((Path(xcom(dag_run, "submit")["manifest"]).parent / "landing.json").read_text())
    assert {k: summary[k] for k in ("web_search_fee_usd", "cost_usd_sync_api", "saving_usd")} == {
        k: landed[k] for k in ("web_search_fee_usd", "cost_usd_sync_api", "saving_usd")
    }


def test_mapped_tasks_keep_one_manifest_and_output_per_map_index(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    dag = make_dag(
        f"""
        s = ClaudeBatchSubmitOperator.partial(task_id="submit", model="claude-haiku-4-5", max_tokens=8).expand(
            source=[["a", "b"], ["c", "d", "e"]])
        w = ClaudeBatchSensor.partial(task_id="wait", poll_interval=0.1).expand(manifest=s.output)
        l = ClaudeBatchToParquetOperator.partial(
            task_id="land", destination={str(out)!r} + "/group={{{{ ti.map_index }}}}",
            keep_columns={{"text": "input_text"}}
        ).expand(manifest=s.output)
        w >> l
        """
    )
    dag_run = run_dag(dag)
    assert {(ti.task_id, ti.map_index, str(ti.state)) for ti in dag_run.get_task_instances()} == {
        (task, index, "success") for task in ("submit", "wait", "land") for index in (0, 1)
    }
    for index, texts in ((0, ["a", "b"]), (1, ["c", "d", "e"])):
        table = ds.dataset(out / f"group={index}", format="parquet").to_table()
        # The input joined back per map index, under a name that does not clash with the answer.
        assert sorted(table.column("input_text").to_pylist()) == texts
        assert all(text.startswith("[claude-batch emulator]") for text in table.column("text").to_pylist())
        manifest = load_manifest(work_dir / dag.dag_id / dag_run.run_id / "submit" / str(index))
        assert manifest.map_index == index and manifest.total_requests == len(texts)
        (batch_id,) = manifest.batch_ids()
        assert read_origin(work_dir, batch_id)["map_index"] == index
    assert emulator.emulator.stats["batches_created"] == 2
    run_dag(dag)  # a clear of the whole run re-attaches every map index
    assert emulator.emulator.stats["batches_created"] == 2


def test_bad_input_fails_before_anything_is_submitted(make_dag, emulator: RunningEmulator, work_dir: Path) -> None:
    dag = make_dag(
        """
        ClaudeBatchSubmitOperator(task_id="submit", source=[{"id": "a", "text": "x"}, {"id": "b", "text": "y"}],
                                  id_column="id", prompt="{body}", model="claude-haiku-4-5", max_tokens=8)
        """
    )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"submit": "failed"}
    assert emulator.emulator.calls["create"] == 0
    assert not list(work_dir.rglob("chunk-*.jsonl"))  # the partial staging was removed


def test_empty_input_skips_without_submitting(make_dag, emulator: RunningEmulator, work_dir: Path) -> None:
    dag = make_dag(
        """
        ClaudeBatchSubmitOperator(task_id="skip", source=[], model="claude-haiku-4-5", max_tokens=8)
        ClaudeBatchSubmitOperator(task_id="fail", source=[], model="claude-haiku-4-5", max_tokens=8, on_empty="fail")
        """
    )
    assert task_states(run_dag(dag)) == {"skip": "skipped", "fail": "failed"}
    assert emulator.emulator.calls["create"] == 0


def test_poke_mode_sensor(make_dag, emulator: RunningEmulator, work_dir: Path) -> None:
    import math
    import threading
    import time

    emulator.emulator.config.processing_seconds = math.inf

    def end_after_two_pokes() -> None:  # driven by the emulator's counter, bounded
        deadline = time.monotonic() + 120
        while emulator.emulator.calls["retrieve"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        emulator.emulator.end_all()

    threading.Thread(target=end_after_two_pokes, daemon=True).start()
    dag = make_dag(
        """
        s = ClaudeBatchSubmitOperator(task_id="submit", source=["a", "b", "c"], model="claude-haiku-4-5", max_tokens=8)
        w = ClaudeBatchSensor(task_id="wait", manifest=s.output, deferrable=False, mode="poke", poll_interval=0.2)
        s >> w
        """
    )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"submit": "success", "wait": "success"}
    result = xcom(dag_run, "wait")
    assert result["totals"]["succeeded"] == 3
    assert emulator.emulator.calls["retrieve"] >= 2


def test_partial_failure_policy(make_dag, emulator: RunningEmulator, work_dir: Path) -> None:
    emulator.emulator.script_outcomes({"row-0": "errored:invalid_request_error", "row-1": "expired"})
    dag = make_dag(
        """
        s = ClaudeBatchSubmitOperator(task_id="submit", source=["a", "b", "c", "d"], model="claude-haiku-4-5", max_tokens=8)
        strict = ClaudeBatchSensor(task_id="strict", manifest=s.output, poll_interval=0.1, max_failed_fraction=0.25)
        lenient = ClaudeBatchSensor(task_id="lenient", manifest=s.output, poll_interval=0.1, max_failed_fraction=0.5)
        s >> [strict, lenient]
        """
    )
    states = task_states(run_dag(dag))
    assert states == {"submit": "success", "strict": "failed", "lenient": "success"}


def test_rerun_of_the_same_run_reattaches_instead_of_billing_again(
    make_dag, emulator: RunningEmulator, work_dir: Path
) -> None:
    dag = make_dag(
        """
        ClaudeBatchSubmitOperator(task_id="submit", source=[f"t{i}" for i in range(7)], model="claude-haiku-4-5",
                                  max_tokens=8, max_requests_per_batch=3)
        """
    )
    first = xcom(run_dag(dag), "submit")
    second = xcom(run_dag(dag), "submit")
    assert emulator.emulator.stats["batches_created"] == 3
    assert first["batch_ids"] == second["batch_ids"]
    assert second["created_now"] == []


def test_a_budget_stops_the_run_before_anything_is_billed(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path
) -> None:
    """The guard in a real run (its message: tests/unit/batching/submit/test_submission.py)."""
    body = """
        s = ClaudeBatchSubmitOperator(task_id="submit", source=[f"ticket {{i}}: the app crashes on login" for i in range(200)],
                                      model="claude-haiku-4-5", max_tokens=64, max_cost_usd={budget})
        w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
        l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={out!r})
        s >> w >> l
        """
    dag_run = run_dag(make_dag(body.format(budget=0.001, out=str(tmp_path / "out"))))
    assert task_states(dag_run)["submit"] == "failed"
    assert emulator.emulator.calls["create"] == 0
    assert not list(work_dir.rglob("chunk-*.jsonl"))

    # Within budget: the ceiling is reported, and what the run cost stays under it.
    dag_run = run_dag(make_dag(body.format(budget=1, out=str(tmp_path / "out"))))
    assert task_states(dag_run) == {"submit": "success", "wait": "success", "land": "success"}
    ceiling = xcom(dag_run, "submit")["cost_ceiling_usd"]
    assert 0 < xcom(dag_run, "land")["cost_usd"] <= ceiling < 1


def test_a_budget_refuses_server_tools_before_anything_is_submitted(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Requests with a server tool (web search: its results come back as input tokens, and each
    search has a fee) have no cost ceiling, so a budget cannot hold: a real run with one refuses
    in its submit task, and the emulator receives no create. (The same requests without a
    budget run: test_the_saving_counts_web_search_fees_once.)"""
    tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]
    dag_run = run_dag(
        make_dag(
            f"""
            s = ClaudeBatchSubmitOperator(task_id="submit", source=["What happened today?", "And yesterday?"],
                                          model="claude-sonnet-4-6", max_tokens=64, max_cost_usd=100,
                                          request_params={{"tools": {tools!r}}})
            w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
            l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={str(tmp_path / "out")!r})
            s >> w >> l
            """
        )
    )
    assert task_states(dag_run) == {"submit": "failed", "wait": "upstream_failed", "land": "upstream_failed"}
    assert emulator.emulator.calls["create"] == 0
    assert emulator.emulator.stats["batches_created"] == 0
    assert not list(work_dir.rglob("chunk-*.jsonl"))
    assert not (tmp_path / "out").exists()
    printed = "".join(capfd.readouterr())
    assert "server tools (web_search_20250305)" in printed and "Nothing was submitted" in printed


def test_sensor_does_not_defer_when_the_batches_already_ended(
    make_dag, emulator: RunningEmulator, work_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dag = make_dag(
        """
        s = ClaudeBatchSubmitOperator(task_id="submit", source=["a"], model="claude-haiku-4-5", max_tokens=8)
        w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
        s >> w
        """
    )
    with caplog.at_level("INFO"):
        dag_run = run_dag(dag)
    assert task_states(dag_run) == {"submit": "success", "wait": "success"}
    assert "running trigger in line" not in caplog.text
    emulator.emulator.config.processing_seconds = 30
    caplog.clear()
    with caplog.at_level("INFO"):
        deferred = make_dag(
            """
            s = ClaudeBatchSubmitOperator(task_id="submit", source=["b"], model="claude-haiku-4-5", max_tokens=8)
            w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1, timeout=0.3)
            s >> w
            """
        )
        run_dag(deferred)
    assert "running trigger in line" in caplog.text


def test_extra_links_point_at_the_batch_and_the_output(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path, connection_env
) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    connection_env(
        "linked",
        extra={"console_url_template": "https://console.example/{workspace_id}/b/{batch_id}", "workspace_id": "wrk_1"},
    )
    connection_env("broken_template", extra={"console_url_template": "https://console.example/{nope}"})
    dag = make_dag(
        f"""
        s = ClaudeBatchSubmitOperator(task_id="submit", source=["a"], model="claude-haiku-4-5", max_tokens=8,
                                      claude_batch_conn_id="linked")
        w = ClaudeBatchSensor(task_id="wait", manifest=s.output, poll_interval=0.1)
        l = ClaudeBatchToParquetOperator(task_id="land", manifest=s.output, destination={str(tmp_path / "out")!r})
        b = ClaudeBatchSubmitOperator(task_id="broken", source=["b"], model="claude-haiku-4-5", max_tokens=8,
                                      claude_batch_conn_id="broken_template")
        u = ClaudeBatchSubmitOperator(task_id="unlinked", source=["c"], model="claude-haiku-4-5", max_tokens=8)
        s >> w >> l
        """
    )
    dag_run = run_dag(dag)
    assert set(task_states(dag_run).values()) == {"success"}  # a bad template never fails a task
    batch_id = xcom(dag_run, "submit")["batch_ids"][0]

    def link(task_id: str, name: str) -> object:
        with create_session() as session:
            query = XComModel.get_many(
                run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key=f"_link_{name}"
            )
            row = session.scalars(query).first()
            return None if row is None else XComModel.deserialize_value(row)

    assert link("submit", "ClaudeBatchConsoleLink") == f"https://console.example/wrk_1/b/{batch_id}"
    assert link("wait", "ClaudeBatchConsoleLink") == f"https://console.example/wrk_1/b/{batch_id}"
    assert link("land", "ClaudeBatchOutputLink") == ""  # a browser cannot open a local folder from a web page
    assert link("broken", "ClaudeBatchConsoleLink") == ""
    assert link("unlinked", "ClaudeBatchConsoleLink") == ""  # the emulator's batches are not in the Console
    from urllib.parse import urlencode

    page = "/claude-batches/?" + urlencode(
        {"conn_id": "linked", "dag_id": dag_run.dag_id, "run_id": dag_run.run_id, "task_id": "submit"}
    )
    assert link("submit", "ClaudeBatchesPageLink") == page
    assert link("wait", "ClaudeBatchesPageLink") == page  # the sensor links the submit task's batches
