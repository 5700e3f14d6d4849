"""Run seeds on one deployment: write each seed's rows, start its runs, strike its faults, wait
for every run to end, act as a person would on a failed run (one clear), check the invariants.

One deployment serves every seed (its start is a minute; a seed is tens of seconds); each
seed starts from a reset emulator and days of its own, so seeds are independent and replay.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_claude_batch.testing import EmulatorConfig, start_emulator
from tests.distributed.deployment import Deployment, start_deployment
from tests.helpers import TEST_API_KEY
from tests.soak import oracles
from tests.soak.deployment_dags import dag_files, source_key
from tests.soak.faults import CLIENT_TIMEOUT, CREATE_SETTLE_SECONDS, Run, Striker, api
from tests.soak.schedule import Schedule, draw, replay_command

#: The longest a seed's runs may take before the seed counts as hung, beside the time its
#: batches take (:func:`run_timeout`).
RUN_TIMEOUT = 300.0


def run_timeout(schedule: Schedule) -> float:
    """A seed's timeout: :data:`RUN_TIMEOUT` plus eight batch processing times (a first batch,
    two resubmission rounds, rows awaited and sent after all, each waited on twice by a clear
    or a rerun): a seed whose batches take 30 s each is slow, not hung, at 300 s."""
    return RUN_TIMEOUT + 8 * float(schedule.emulator.get("processing_seconds", 0.0))


@dataclass
class SeedResult:
    seed: int
    seconds: float
    violations: list[str]
    kinds_fired: list[str]
    kinds_drawn: list[str]
    notes: list[str] = field(default_factory=list)
    #: How often the seed met the known limits' situations (``oracles.limits``).
    limits: dict[str, int] = field(default_factory=dict)

    @property
    def held(self) -> bool:
        return not self.violations


@contextmanager
def soak_deployment(home: Path, shape: str) -> Iterator[Deployment]:
    emulator = start_emulator(EmulatorConfig(api_keys=frozenset({TEST_API_KEY}), answer_digest=True))
    try:
        # The connection's timeout bounds how long a lost create is looked for (timeout plus
        # settle): short, so a killed create costs a seed seconds, not the default minutes.
        extra = {"timeout": CLIENT_TIMEOUT, "create_settle_seconds": CREATE_SETTLE_SECONDS}
        with start_deployment(home, emulator, executor=shape, dags=dag_files(), connection_extra=extra) as deployment:
            yield deployment
    finally:
        emulator.stop()


def _rows(schedule: Schedule) -> list[dict[str, str]]:
    """Each run's rows (row_id -> body); shared rows are run 0's own, same id, same body."""
    result: list[dict[str, str]] = []
    for k, plan in enumerate(schedule.runs):
        shared = dict(list(result[0].items())[: plan.shared]) if k else {}
        own = {
            f"S{schedule.seed}-{k}-{i:04d}": f"seed {schedule.seed} run {k} row {i}"
            for i in range(plan.rows - plan.shared)
        }
        result.append({**shared, **own})
    return result


def _write_rows(deployment: Deployment, dag_id: str, day: str, rows: dict[str, str]) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"row_id": list(rows), "body": list(rows.values())}), buffer)
    with deployment.s3().open(source_key(dag_id, day), "wb") as out:
        out.write(buffer.getvalue())


def _configure(deployment: Deployment, schedule: Schedule) -> None:
    emulator = deployment.emulator.emulator
    emulator.reset()
    base = EmulatorConfig(api_keys=frozenset({TEST_API_KEY}), answer_digest=True)
    for name in ("processing_seconds", "list_lag_seconds", "errored_fraction", "expired_fraction", "queue_limit"):
        setattr(emulator.config, name, schedule.emulator.get(name, getattr(base, name)))
    deployment.proxy.latency_seconds = schedule.s3.get("latency_seconds", 0.0)
    deployment.proxy.fail_every = int(schedule.s3.get("fail_every", 0))


def _clear(deployment: Deployment, run: Run, task_ids: list[str] | None, only_failed: bool = False) -> None:
    body: dict[str, Any] = {
        "dry_run": False,
        "dag_run_id": run.run_id,
        "only_failed": only_failed,
        "reset_dag_runs": True,
    }
    if task_ids is not None:
        body |= {"task_ids": task_ids, "include_downstream": True}
    api(deployment, "POST", f"/dags/{run.dag_id}/clearTaskInstances", json=body)


def _wait_all(deployment: Deployment, runs: list[Run], deadline: float) -> None:
    """Until every run ended, or the deadline: a run still going then is left ``running``."""
    while time.monotonic() < deadline:
        for run in runs:
            run.state = str(api(deployment, "GET", f"/dags/{run.dag_id}/dagRuns/{run.run_id}")["state"])
        if all(run.state in ("success", "failed") for run in runs):
            return
        time.sleep(0.5)  # polling the API's view of the runs, not synchronising with them


def _wait_left(deployment: Deployment, runs: list[Run], ended: str, deadline: float) -> None:
    """Until every cleared run has left ``ended`` (the state it ended in before the clear): a
    clear with ``reset_dag_runs`` queues the run again, and only then may its end be awaited."""
    while time.monotonic() < deadline:
        states = [api(deployment, "GET", f"/dags/{run.dag_id}/dagRuns/{run.run_id}")["state"] for run in runs]
        if ended not in states:
            return
        time.sleep(0.2)  # polling the API's view of the runs, not synchronising with them


def _failed_tasks(deployment: Deployment, run: Run) -> list[str]:
    tis = api(deployment, "GET", f"/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances")["task_instances"]
    return [f"{ti['task_id']}:{ti['state']}" for ti in tis if ti["state"] not in ("success",)]


def _trigger(deployment: Deployment, run: Run) -> None:
    api(deployment, "PATCH", f"/dags/{run.dag_id}", json={"is_paused": False})
    body = {"logical_date": f"{run.day}T00:00:00Z", "dag_run_id": f"soak__{run.day}"}
    run.run_id = str(api(deployment, "POST", f"/dags/{run.dag_id}/dagRuns", json=body)["dag_run_id"])


def _billed_requests(deployment: Deployment) -> int:
    deployment.emulator.emulator.snapshot()  # renders (and bills) every batch that has ended
    return sum(billed["requests"] for billed in deployment.emulator.emulator.billing.by_model.values())


def _rerun(deployment: Deployment, striker: Striker, run: Run, deadline: float) -> list[str]:
    """A person clears a run that succeeded: it must land the same rows and bill nothing new."""
    billed = _billed_requests(deployment)
    _clear(deployment, run, None)
    striker.fired["rerun-after-success"] = True
    _wait_left(deployment, [run], "success", deadline)
    _wait_all(deployment, [run], deadline)
    after = _billed_requests(deployment)
    if run.state != "success":
        return [f"the rerun of {run.dag_id} {run.day} ended {run.state}: {_failed_tasks(deployment, run)}"]
    return [] if after == billed else [f"the rerun of {run.dag_id} {run.day} billed {after - billed} requests again"]


def _recover(deployment: Deployment, striker: Striker, runs: list[Run], deadline: float, timeout: float) -> list[str]:
    """Runs that failed get what a person gives them: the faults stop, one clear of what failed.
    A run that hung (still running at the deadline) is a violation."""
    problems = []
    failed = [run for run in runs if run.state == "failed"]
    hung = [run for run in runs if run.state not in ("success", "failed")]
    problems += [f"{run.dag_id} {run.day} hung ({run.state}): {_failed_tasks(deployment, run)}" for run in hung]
    if failed:
        deployment.emulator.emulator.clear_faults()
        deployment.proxy.fail_every = 0
        for run in failed:
            run.failed_tasks = _failed_tasks(deployment, run)
            run.recovered_by_clear = True
            _clear(deployment, run, None, only_failed=True)
        _wait_left(deployment, failed, "failed", deadline + timeout / 2)
        _wait_all(deployment, failed, deadline + timeout / 2)
        problems += [
            f"{run.dag_id} {run.day} failed ({run.failed_tasks}) and again after a clear: {_failed_tasks(deployment, run)}"
            for run in failed
            if run.state != "success"
        ]
    return problems


def run_seed(deployment: Deployment, seed: int, *, small: bool, every_body: dict[str, str]) -> SeedResult:
    started = time.monotonic()
    wall_started = time.time()
    schedule = draw(seed, small=small)
    _configure(deployment, schedule)
    rows = _rows(schedule)
    runs = [Run(plan.dag, plan.day) for plan in schedule.runs]
    for run, run_rows in zip(runs, rows, strict=True):
        _write_rows(deployment, run.dag_id, run.day, run_rows)
        every_body.update(run_rows)
    striker = Striker(deployment, runs)
    # The stalls that mark a process fault's moment first: the emulator gives a call the first
    # injected fault that matches it, and an API fault still skipping calls would hide them.
    for kind in schedule.process_faults:
        striker.process(kind)
    striker.inject_api(schedule.api_faults)
    for run in runs:
        _trigger(deployment, run)
    for kind in schedule.people_faults:
        striker.people(kind, lambda run, tasks: _clear(deployment, run, tasks))
    timeout = run_timeout(schedule)
    deadline = started + timeout
    _wait_all(deployment, runs, deadline)
    violations = _recover(deployment, striker, runs, deadline, timeout)
    if "rerun-after-success" in schedule.people_faults and runs[0].state == "success":
        violations += _rerun(deployment, striker, runs[0], time.monotonic() + timeout)
    striker.finish()
    for run, run_rows in zip(runs, rows, strict=True):
        violations += oracles.landed_rows(deployment, run.dag_id, run.day, run_rows)
    seed_runs = [(run.dag_id, run.run_id) for run in runs]
    documented = oracles.sent_after_all(deployment, seed_runs)
    violations += oracles.billed_twice(deployment, documented)
    violations += oracles.answer_store(deployment, every_body)
    violations += oracles.key_nowhere(deployment, TEST_API_KEY, wall_started)
    fired = _fired_kinds(schedule, striker)
    notes = [
        f"{run.dag_id} {run.day} failed before a clear: {run.failed_tasks}" for run in runs if run.recovered_by_clear
    ]
    notes += striker.errors
    measured = oracles.limits(deployment, seed_runs, documented)
    return SeedResult(seed, time.monotonic() - started, violations, fired, schedule.kinds(), notes, measured)


def _fired_kinds(schedule: Schedule, striker: Striker) -> list[str]:
    """The drawn kinds that struck: API faults the emulator took, moments that came."""
    kinds = schedule.kinds()
    taken = [fired for _, fired in striker.api_fired()]
    fired = [kind for kind, hit in zip(kinds, taken, strict=False) if hit]
    for kind in kinds[len(taken) :]:
        name = kind.split(":", 1)[1]
        if striker.fired.get(name, True):
            fired.append(kind)
    return fired


def as_dict(result: SeedResult) -> dict[str, Any]:
    return dataclasses.asdict(result) | {"held": result.held}


def describe_failure(result: SeedResult, shape: str, small: bool) -> str:
    schedule = draw(result.seed, small=small)
    lines = [f"  violation: {v}" for v in result.violations]
    lines += [f"  note: {n}" for n in result.notes]
    lines.append(schedule.describe())
    lines.append(f"  replay: {replay_command(result.seed, shape)}{' --small' if small else ''}")
    return "\n".join(lines)
