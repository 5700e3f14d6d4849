"""Whether a triggerer runs, asked before a task defers: defer, or wait without deferring.

A deferred task waits until a triggerer runs its trigger. A deployment without one (a
triggerer never added on a managed service, one that crashed) leaves the task deferred until
its timeout, 26 hours for the sensor, with nothing in its log saying why; Airflow has no
fallback of its own. So before deferring, the sensor and the transfer ask
(``[claude_batch] triggerer``):

* ``auto`` (the default): the api-server's public health endpoint
  (``/api/v2/monitor/health``, no authentication, on the server the task already reports to
  through ``[core] execution_api_server_url``). A healthy triggerer: defer. None ever started,
  or none with a recent heartbeat: wait without deferring. An endpoint that cannot be read
  (no answer within five seconds, not the expected JSON): defer, as Airflow would; the check
  only avoids a hang it can see.
* ``yes``: always defer, without the check.
* ``no``: never defer, without the check.

Waiting without deferring is what every sensor can do: the sensor pokes in ``reschedule``
mode (a worker slot only while it polls), the transfer polls resubmitted batches in place.
The reason is logged once per task try, as a warning naming the check's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_claude_batch.config import setting
from airflow_provider_claude_batch.exceptions import ClaudeBatchParameterError

#: ``[claude_batch] triggerer`` values.
MODES = ("auto", "yes", "no")
#: The api-server's public health endpoint (Airflow 3.0 and later).
HEALTH_PATH = "/api/v2/monitor/health"
#: How long the check waits for the api-server's answer.
TIMEOUT_SECONDS = 5.0


class _Log(Protocol):
    """A task's logger (``logging.Logger`` or the Task SDK's structured one)."""

    def warning(self, msg: str, /, *args: Any) -> Any: ...


@dataclass(frozen=True)
class TriggererCheck:
    """The answer: may a task defer, and why (logged when it may not)."""

    running: bool
    why: str


def triggerer_mode() -> str:
    """``[claude_batch] triggerer``: ``auto`` when not set."""
    mode = (setting("triggerer") or "auto").strip().lower()
    if mode not in MODES:
        raise ClaudeBatchParameterError(f"[claude_batch] triggerer must be one of {MODES}, got {mode!r}")
    return mode


def health_url() -> str:
    """The health endpoint of the api-server this task reports to: ``[core]
    execution_api_server_url`` without its ``/execution/`` path; unset, Airflow's own default
    (``[api] base_url``, else ``http://localhost:8080``)."""
    from airflow.providers.common.compat.sdk import conf

    execution = conf.get("core", "execution_api_server_url", fallback=None)
    if execution:
        base = execution.rstrip("/").removesuffix("/execution")
    else:
        base = conf.get("api", "base_url", fallback=None) or "http://localhost:8080"
    return base.rstrip("/") + HEALTH_PATH


def check_triggerer(*, timeout: float = TIMEOUT_SECONDS) -> TriggererCheck:
    """Whether a deferral here would be picked up (see the module docstring)."""
    mode = triggerer_mode()
    if mode != "auto":
        return TriggererCheck(mode == "yes", f"[claude_batch] triggerer = {mode}")
    import httpx  # Airflow's own dependency, loaded by every task already

    url = health_url()
    try:
        health = httpx.get(url, timeout=timeout).json()["triggerer"]
        status, heartbeat = health["status"], health.get("latest_triggerer_heartbeat")
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return TriggererCheck(True, f"the health endpoint {url} could not be read ({type(exc).__name__})")
    if status == "healthy":
        return TriggererCheck(True, f"{url} reports a healthy triggerer")
    if status is None:
        return TriggererCheck(False, f"the api-server ({url}) reports that no triggerer has run in this deployment")
    return TriggererCheck(False, f"the api-server ({url}) reports the triggerer {status}, last heartbeat {heartbeat}")


def may_defer(log: _Log, instead: str, *, warn: bool = True) -> bool:
    """True when the caller may defer; else ``False`` after one warning (unless ``warn`` is
    off: the caller already warned in this try) naming why and what it does ``instead``."""
    check = check_triggerer()
    if not check.running and warn:
        log.warning(
            "No triggerer to defer to: %s. %s instead of deferring. Run a triggerer (`airflow triggerer`) "
            "to wait without a worker, or set [claude_batch] triggerer = yes to defer without this check.",
            check.why,
            instead,
        )
    return check.running
