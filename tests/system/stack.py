"""A real Airflow deployment for system tests: api-server, scheduler, dag-processor and
triggerer as background processes on loopback, with their own AIRFLOW_HOME (SQLite).

The distributed tests start more components (Celery workers, a second triggerer) on another
database through ``components`` and ``component_env``."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: The components whose log ends a failed test shows.
DIAGNOSED = ("scheduler", "triggerer", "worker")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], Any], *, timeout: float, interval: float = 0.5, what: str = "condition") -> Any:
    """Poll ``condition`` (an external process's state) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class AirflowStack:
    def __init__(
        self,
        home: Path,
        extra_env: dict[str, str],
        *,
        components: dict[str, list[str]] | None = None,
        component_env: dict[str, dict[str, str]] | None = None,
    ) -> None:
        #: name -> the ``airflow`` command line of that process (several may run one command).
        self.components = components or {name: [name] for name in COMPONENTS}
        self.component_env = component_env or {}
        self.home = home
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "6",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            # Log servers on free ports too: two deployments may run at once (the suite runs on
            # two workers), and Airflow's fixed defaults (8793, 8794) would collide.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "1",
            # A trigger that fires within a second of its deferral can race the scheduler
            # (Airflow then retries the task); keep such retries quick in tests.
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "2",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "tests.system.sqlite_connect_args.SYNC",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "tests.system.sqlite_connect_args.ASYNC",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")])
            ),
            **extra_env,
        }
        self.sqlite = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in extra_env
        if not self.sqlite:  # the connect arguments below are SQLite's
            self.env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS")
            self.env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        (home / "dags").mkdir(parents=True, exist_ok=True)

    def airflow(self, *args: str) -> str:
        for _ in range(3):  # SQLite shared by five processes: a CLI write can still lose the lock
            done = subprocess.run(
                [sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, text=True
            )
            # A lock message in the log of a command that succeeded is not a failure: running
            # it again would repeat a write that already happened.
            if done.returncode == 0 or "database is locked" not in done.stderr:
                break
        if done.returncode:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def create_backfill(self, dag_id: str, *args: str) -> None:
        """``airflow backfill create``, made whole. Airflow commits the backfill row before it writes
        the backfill's runs; a create that loses the SQLite lock in between (in WAL mode a read that
        turns into a write fails at once, whatever the busy timeout) can leave a backfill without
        runs, which the scheduler never completes. That orphan is removed, as Airflow's own cleanup
        does when it can, and the create is tried again. A try that failed after writing its runs
        leaves a backfill that will run, which is the outcome wanted. A try that lost the lock and
        left nothing behind (Airflow removes a partial backfill when it can) is tried again too: on
        a loaded machine the create's transaction is slow and can lose the lock several times."""
        for _ in range(5):
            try:
                self.airflow("backfill", "create", "--dag-id", dag_id, *args)
            except RuntimeError as error:
                if not self.active_backfills(dag_id):
                    if "database is locked" in str(error):
                        continue
                    raise
            if not self._remove_backfills_without_runs(dag_id):
                return
        raise RuntimeError(f"airflow backfill create of {dag_id} left no backfill with runs in five tries")

    def _remove_backfills_without_runs(self, dag_id: str) -> int:
        """Delete ``dag_id``'s unfinished backfills that have no runs; how many there were."""
        if not self.sqlite:
            return 0
        with sqlite3.connect(self.home / "airflow.db", timeout=60) as db:
            orphans = db.execute(
                "DELETE FROM backfill WHERE dag_id = ? AND completed_at IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM backfill_dag_run r WHERE r.backfill_id = backfill.id)",
                (dag_id,),
            ).rowcount
        return orphans

    def active_backfills(self, dag_id: str) -> list[dict[str, Any]]:
        backfills = self.api("GET", "/backfills", params={"dag_id": dag_id})["backfills"]
        return [b for b in backfills if not b["completed_at"]]

    def start(self, timeout: float = 120) -> None:
        self.airflow("db", "migrate")
        if self.sqlite:
            self._use_write_ahead_log()
        for component in self.components:
            self.start_component(component)
        wait_until(self._healthy, timeout=timeout, what="a healthy api-server, scheduler and triggerer")

    def start_component(self, component: str) -> None:
        log = (self.home / f"{component}.log").open("ab")
        # Its own process group: stopping or killing it reaches the processes it forked too.
        self.processes[component] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *self.components[component]],
            env={**self.env, **self.component_env.get(component, {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop_component(self, component: str) -> None:
        process = self.processes.pop(component)
        process.terminate()
        process.wait(timeout=60)

    def kill_component(self, component: str) -> None:
        """SIGKILL the component and everything it forked, as when its machine is lost."""
        process = self.processes.pop(component)
        _kill_group(process)
        process.wait(timeout=30)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        listing = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in listing}

    def wait_deferred(self, dag_id: str, run_id: str, task_id: str, timeout: float = 120) -> None:
        """Wait until ``task_id`` is deferred *and* the worker process that deferred it is gone.

        The API says "deferred" as soon as the task reports it, but the LocalExecutor's
        supervisor may notice its process's exit up to ``[workers] min_heartbeat_interval``
        later. If the trigger fires inside that window, Airflow 3 takes the late "success" of
        the deferring process for the resumed try and marks the task failed ("state changed
        externally"). A test that ends a batch right after the deferral waits for this first.
        """

        def settled() -> bool:
            listing = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
            (ti,) = [t for t in listing if t["task_id"] == task_id]
            if ti["state"] != "deferred":
                return False
            log = (self.home / "scheduler.log").read_text(errors="replace")
            return any(
                "Workload finished" in line and "final_state=deferred" in line and ti["id"] in line
                for line in log.splitlines()
            )

        wait_until(settled, timeout=timeout, what=f"{task_id} of {run_id} to defer and its worker to exit")

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def trigger(self, dag_id: str, logical_date: str) -> str:
        wait_until(lambda: self.has_dag(dag_id), timeout=90, what=f"the dag-processor to parse {dag_id}")
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": logical_date})["dag_run_id"])

    def has_dag(self, dag_id: str) -> bool:
        try:
            self.api("GET", f"/dags/{dag_id}")
        except httpx.HTTPStatusError:
            return False
        return True

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180) -> str:
        def finished() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        return str(wait_until(finished, timeout=timeout, what=f"run {run_id} of {dag_id} to finish"))

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", json={"new_state": state})

    def _use_write_ahead_log(self) -> None:
        """WAL lets the five processes read while one writes (the mode is kept in the file), so a
        busy scheduler loop does not stall every other component on the SQLite lock."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            db.execute("PRAGMA journal_mode=WAL")

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {process.returncode}:\n{self.log_tail(name)}")

    def diagnostics(self) -> str:
        """What a failed system test needs to say: which component is down, which runs and task
        instances are stuck in which state, and the end of the scheduler's and triggerer's logs."""
        lines = [
            f"{name}: {'running' if p.poll() is None else f'exited with {p.returncode}'}"
            for name, p in self.processes.items()
        ]
        try:
            runs = self._api("GET", "/dags/~/dagRuns", params={"state": ["queued", "running"]})["dag_runs"]
            lines += [f"run {r['dag_id']} {r['dag_run_id']}: {r['state']}" for r in runs]
            unfinished = ["queued", "scheduled", "running", "deferred", "up_for_retry", "restarting"]
            tis = self._api("GET", "/dags/~/dagRuns/~/taskInstances", params={"state": unfinished})["task_instances"]
            lines += [f"task {t['dag_id']}.{t['task_id']} {t['dag_run_id']}: {t['state']}" for t in tis]
        except (httpx.HTTPError, ValueError) as error:
            lines.append(f"api-server did not answer: {error!r}")
        if self.sqlite:
            with sqlite3.connect(self.home / "airflow.db", timeout=10) as db:
                lines += [
                    f"backfill {id_} of {dag_id}: not completed, {runs} run(s)"
                    for id_, dag_id, runs in db.execute(
                        "SELECT id, dag_id, (SELECT count(*) FROM backfill_dag_run r WHERE r.backfill_id = b.id)"
                        " FROM backfill b WHERE completed_at IS NULL"
                    )
                ]
        for component in [c for c in self.components if c.startswith(DIAGNOSED)]:
            tail = [line[:300] for line in self.log_tail(component, 25).splitlines()]
            lines += [f"--- {component}.log (end)", *tail]
        return "\n".join(lines)

    def _healthy(self) -> bool:
        self.check_alive()
        try:
            health = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        return all(
            health.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler", "triggerer")
        )

    def log_tail(self, component: str, lines: int = 40) -> str:
        path = self.home / f"{component}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        self.check_alive()  # a dead component fails the test now, not at the end of a long wait
        return self._api(method, path, **kwargs)

    def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.base_url}/api/v2{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            _kill_group(process)  # what the component forked and left behind (a Celery pool, a task)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
