"""Striking a schedule's faults at their moments on the running deployment.

API faults go to the emulator before the runs start (it consumes them in call order). Each
process or people fault runs in a thread of its own that waits for its moment (a fault taken
by the emulator, a wait deferred, a run succeeded), strikes once, and records that it did:
a fault whose moment never came is reported as not fired, never counted as held.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_claude_batch.testing import Fault
from tests.distributed.deployment import Deployment
from tests.soak.schedule import MAX_LIST_LAG_SECONDS

#: How long a stalled call is held (the moment to strike), and the client's timeout it must
#: exceed for a create that lands after the timeout (the soak's connection: 15 s).
STALL_SECONDS = 8.0
CLIENT_TIMEOUT = 15.0
#: How long after the client's timeout a late create makes its batch.
CREATE_LATENESS = 2.0
#: How long the soak's connection looks for a lost create after its timeout
#: (``create_settle_seconds``): past the lateness and the longest ``list`` lag a seed draws, as
#: the default (at least 120 s) is past a real API's. Shorter, a late create that ``list``
#: shows late is missed and made again: the documented limit "a server that makes a batch
#: later than the timeout plus the settle time", which the soak then draws by its own setting.
CREATE_SETTLE_SECONDS = CREATE_LATENESS + MAX_LIST_LAG_SECONDS + 4.0


def api(deployment: Deployment, method: str, path: str, **kwargs: Any) -> Any:
    """The Airflow REST API, patient: an api-server on a loaded machine may miss a timeout, and
    the soak's own reads must not be what fails a seed."""
    import httpx

    for attempt in range(6):
        try:
            return deployment.stack.api(method, path, **kwargs)
        except httpx.TransportError:
            if attempt == 5:
                raise
            time.sleep(2)  # a back-off before asking again, not synchronisation
    raise AssertionError("unreachable")


@dataclass
class Run:
    dag_id: str
    day: str
    run_id: str = ""
    state: str = ""
    recovered_by_clear: bool = False
    failed_tasks: list[str] = field(default_factory=list)


@dataclass
class Striker:
    """The faults of one seed and what became of them."""

    deployment: Deployment
    runs: list[Run]
    fired: dict[str, bool] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    api_faults: list[tuple[dict[str, Any], Fault]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ API
    def inject_api(self, specs: list[dict[str, Any]]) -> None:
        emulator = self.deployment.emulator.emulator
        for spec in specs:
            self.api_faults.append((spec, emulator.inject(Fault(**spec))))

    def api_fired(self) -> list[tuple[dict[str, Any], bool]]:
        return [(spec, fault.times < spec.get("times", 1)) for spec, fault in self.api_faults]

    # ------------------------------------------------------------------ moments
    def _in_thread(self, name: str, body: Callable[[], bool]) -> None:
        self.fired[name] = False

        def run() -> None:
            try:
                self.fired[name] = body()
            except Exception as exc:  # a fault that could not strike is reported, not raised
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")

        thread = threading.Thread(target=run, name=f"soak-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def _until(self, condition: Callable[[], Any], timeout: float = 240) -> Any:
        deadline = time.monotonic() + timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            self.stop.wait(0.2)
        return None

    def _ti(self, run: Run, task_id: str) -> dict[str, Any]:
        """The task instance as the API shows it ({} before the run exists)."""
        if not run.run_id:
            return {}
        return api(self.deployment, "GET", f"/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/{task_id}")

    def _kill_running(self, task_id: str) -> bool:
        """SIGKILL the process of every running ``task_id`` of the seed's runs (as the kernel's
        OOM killer or a lost pod would): its supervisor reports it failed, Airflow retries."""
        killed = False
        for run in self.runs:
            ti = self._ti(run, task_id)
            if ti.get("state") == "running" and ti.get("pid"):
                try:
                    os.kill(int(ti["pid"]), signal.SIGKILL)
                    killed = True
                except ProcessLookupError:
                    pass
        return killed

    def _stalled_then_kill(self, name: str, spec: dict[str, Any], task_id: str | None) -> None:
        fault = self.deployment.emulator.emulator.inject(Fault(**spec))

        def strike() -> bool:
            if not self._until(lambda: fault.times == 0):
                return False
            return True if task_id is None else self._kill_running(task_id)

        self._in_thread(name, strike)

    # ------------------------------------------------------------------ process faults
    def process(self, kind: str) -> None:
        if kind == "kill-submit-before-create":  # the create fails, late: no batch was made
            self._stalled_then_kill(
                kind, {"endpoint": "create", "status": 500, "delay_seconds": STALL_SECONDS}, "submit"
            )
        elif kind == "kill-submit-after-create":  # the batch is made, its answer late
            spec = {"endpoint": "create", "status": 500, "after_commit": True, "delay_seconds": STALL_SECONDS}
            self._stalled_then_kill(kind, spec, "submit")
        elif kind == "create-after-timeout":  # made after the client gave up: the lookup must adopt it
            self._stalled_then_kill(
                kind, {"endpoint": "create", "delay_seconds": CLIENT_TIMEOUT + CREATE_LATENESS}, None
            )
        elif kind == "kill-land-in-download":
            self._stalled_then_kill(kind, {"endpoint": "results", "delay_seconds": STALL_SECONDS}, "land")
        elif kind == "kill-triggerer":
            self._in_thread(kind, self._kill_triggerer)
        else:
            raise ValueError(f"unknown process fault {kind!r}")

    def _kill_triggerer(self) -> bool:
        stack = self.deployment.stack
        if not self._until(lambda: self._ti(self.runs[0], "wait").get("state") == "deferred"):
            return False
        stack.kill_component("triggerer")
        self.stop.wait(1.0)  # down for a moment, then back, as a restarted pod
        stack.start_component("triggerer")
        return True

    # ------------------------------------------------------------------ people
    def people(self, kind: str, clear: Callable[[Run, list[str] | None], None]) -> None:
        first = self.runs[0]
        if kind == "clear-submit-in-wait":

            def strike() -> bool:
                if not self._until(lambda: self._ti(first, "wait").get("state") == "deferred"):
                    return False
                clear(first, ["submit"])
                return True

            self._in_thread(kind, strike)
        elif kind == "rerun-after-success":
            self.fired[kind] = False  # struck by the runner once the run has succeeded
        else:
            raise ValueError(f"unknown people fault {kind!r}")

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)
