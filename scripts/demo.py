"""The README's main job: the example pipeline end to end under real Airflow.

Runs ``example_dags/claude_batch_support_tickets.py`` with ``dag.test()``: 2,500 synthetic
tickets -> 3 batches -> a deferred wait -> Parquet. With ``ANTHROPIC_API_KEY`` set it uses
the real Message Batches API (and bills for it); without, it starts the local emulator.
Airflow's state for the demo lives in ``.airflow/`` beside this repository, and with it the
work directory and its answer store: run the demo again and the new DAG run (a new run id for
the same tickets) finds every answer there, so it creates no batch and pays nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "example_dags"
DAG_ID = "claude_batch_support_tickets"


def _prepare_environment(home: Path, data_dir: Path) -> None:
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    os.environ["CLAUDE_BATCH_EXAMPLE_DATA"] = str(data_dir)
    os.environ.setdefault("CLAUDE_BATCH_EXAMPLE_POLL_SECONDS", "1")
    home.mkdir(parents=True, exist_ok=True)


def _migrate(home: Path) -> None:
    if (home / "airflow.db").exists():
        return
    print("Creating the Airflow metadata database (once) ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_500, help="tickets to classify")
    parser.add_argument("--date", default=datetime.now(timezone.utc).strftime("%Y-%m-%d"), help="logical date")
    parser.add_argument("--home", type=Path, default=ROOT / ".airflow", help="AIRFLOW_HOME (and the work directory)")
    parser.add_argument("--output", type=Path, default=ROOT / "demo-output", help="where tickets and labels go")
    args = parser.parse_args()
    data_dir = args.output.resolve()
    _prepare_environment(args.home.resolve(), data_dir)

    running = None
    if os.environ.get("ANTHROPIC_API_KEY"):
        os.environ.setdefault("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", json.dumps({"conn_type": "claude_batch"}))
        print("ANTHROPIC_API_KEY is set: using the real Message Batches API (this is billed).")
    else:
        from airflow_provider_claude_batch.testing import EmulatorConfig, start_emulator

        running = start_emulator(EmulatorConfig(processing_seconds=3.0, errored_fraction=0.01, expired_fraction=0.005))
        os.environ["AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT"] = json.dumps(
            {"conn_type": "claude_batch", "host": running.base_url, "password": running.api_key}
        )
        print(f"No ANTHROPIC_API_KEY: using the local Message Batches emulator at {running.base_url}.")

    sys.path.insert(0, str(DAGS))
    from example_data import write_tickets

    tickets = write_tickets(data_dir, args.date, args.rows)
    print(f"Wrote {args.rows} tickets to {tickets}")
    _migrate(args.home.resolve())

    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS / f"{DAG_ID}.py")).get_dag(DAG_ID)
    assert dag is not None, f"{DAG_ID} did not load"
    logical_date = datetime.fromisoformat(args.date).replace(tzinfo=timezone.utc)
    print(f"Running {DAG_ID} for {args.date} with dag.test() ...", flush=True)
    # run_after defaults to now: every invocation is a new DAG run (a new run id) of the date.
    dag_run = dag.test(logical_date=logical_date)
    print(f"DAG run {dag_run.run_id}: {dag_run.state}")
    submitted, landed = _task_summary(dag_run, "submit"), _task_summary(dag_run, "land")
    if running is not None:
        state = running.emulator.snapshot()
        print(
            f"Emulator saw: {state['calls']}, {created_line(state['stats'].get('batches_created', 0), submitted, landed)}"
        )
        billed = state["billed"]
        print(
            f"Emulator billed: {billed['input_tokens']} input and {billed['output_tokens']} output tokens, "
            f"${billed['cost_usd'] or 0:.4f} at batch prices (as GET /_emulator/state reports it)"
        )
        running.stop()
    if str(dag_run.state) != "success":
        return 1
    budget = getattr(dag.get_task("submit"), "max_cost_usd", None)
    status = _report(data_dir / "support" / "ticket_labels" / f"ds={args.date}", submitted, budget)
    print(reuse_line(submitted, landed))
    return status


def _task_summary(dag_run: object, task_id: str) -> dict[str, object]:
    """A task's XCom: the submit's (manifest location, batches, cost ceiling) or the transfer's
    summary (rows by outcome and by answer source, cost, what reuse saved)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=dag_run.run_id,  # type: ignore[attr-defined]
            dag_ids=DAG_ID,
            task_ids=task_id,
            key="return_value",
        )
        row = session.scalars(query).first()
        return {} if row is None else dict(XComModel.deserialize_value(row))


def batch_counts(submitted: dict[str, Any], landed: dict[str, Any]) -> tuple[int, int]:
    """Batches the submit task created (one per chunk of requests), and batches the land task
    created in its resubmission rounds (requests that ended errored or expired for a transient
    reason, sent again: every batch the landing lists beyond the submit's)."""
    by_submit = len(submitted.get("batch_ids") or [])
    return by_submit, max(0, len(landed.get("by_batch") or {}) - by_submit)


def created_line(total: int, submitted: dict[str, Any], landed: dict[str, Any]) -> str:
    """``batches created: 8 (3 by the submit task, one per chunk; 5 by the land task's
    resubmission rounds of requests that failed transiently)``."""
    if not total:
        return "batches created: 0"
    by_submit, by_rounds = batch_counts(submitted, landed)
    return (
        f"batches created: {total} ({by_submit} by the submit task, one per chunk; {by_rounds} by the land "
        "task's resubmission rounds of requests that failed transiently)"
    )


def reuse_line(submitted: dict[str, Any], landed: dict[str, Any]) -> str:
    """``answers: 0 new, 2500 reused, 0 deduplicated; reuse saved $0.37; no batch created``,
    from the submit's batch ids and the transfer's ``by_answer_source``, ``by_batch`` and
    ``reuse_saved_usd``."""
    sources = landed.get("by_answer_source") or {}
    by_submit, by_rounds = batch_counts(submitted, landed)
    created = (
        "no batch created"
        if not by_submit
        else f"{by_submit} batch(es) created by the submit task, {by_rounds} more by resubmission rounds"
    )
    return (
        f"  answers: {sources.get('new', 0)} new, {sources.get('reused', 0)} reused, "
        f"{sources.get('deduplicated', 0)} deduplicated; reuse saved ${landed.get('reuse_saved_usd', 0.0):.4f}; "
        f"{created}"
    )


def _report(output: Path, submitted: dict[str, object], budget: float | None) -> int:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = ds.dataset(output, format="parquet").to_table()
    print(f"\nResults landed in {output} ({table.num_rows} rows, {len(list(output.glob('*.parquet')))} files)")
    for value, count in sorted((r["values"], r["counts"]) for r in pc.value_counts(table["result_type"]).to_pylist()):
        print(f"  {value:<10} {count:>7}")
    resubmitted = pc.sum(pc.greater(table["round"], 0)).as_py() or 0
    rounds = pc.max(table["round"]).as_py() + 1
    print(
        f"  rounds: {rounds} (round 0 is the submit's batches; each later round resubmits the requests that "
        f"failed transiently, in new batches; {resubmitted} requests landed from them)"
        if rounds > 1
        else "  rounds: 1 (the submit's batches; no request needed resubmitting)"
    )
    # What this run paid for: rows whose answer came from the store or a copy were not sent.
    sent = table.filter(pc.equal(table["answer_source"], "new"))
    tokens = {name: pc.sum(sent[name]).as_py() or 0 for name in ("input_tokens", "output_tokens")}
    print(
        f"  tokens billed: {tokens['input_tokens']} input, {tokens['output_tokens']} output; "
        f"cost ${pc.sum(table['cost_usd']).as_py() or 0:.4f} at batch prices"
    )
    ceiling = submitted.get("cost_ceiling_usd")
    if isinstance(ceiling, float):
        limit = f"; the DAG's max_cost_usd is ${budget:.2f}" if budget is not None else ""
        print(f"  cost ceiling checked before submitting: ${ceiling:.4f}{limit}")
    if "output_status" in table.column_names:  # structured answers: typed columns
        statuses = pc.value_counts(pc.drop_null(table["output_status"])).to_pylist()
        print("  typed answers: " + ", ".join(f"{r['counts']} {r['values']}" for r in statuses))
        columns = ["ticket_id", "product", "label", "confidence", "output_status"]
    else:
        columns = ["ticket_id", "product", "result_type", "text"]
    for row in table.slice(0, 3).select(columns).to_pylist():
        print(f"  {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
