"""ClaudeBatchSensor: wait until every batch of a submit task has ended."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
)

from airflow_provider_claude_batch.batching.api.batch_state import BatchState, states_json, sum_counts
from airflow_provider_claude_batch.batching.wait.cancel import cancel_batches
from airflow_provider_claude_batch.batching.wait.poller import (
    DEFAULT_MAX_POLL_ERRORS,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT_SECONDS,
    Poller,
    check_failed_fraction,
    retrieve_states,
    started_at_of,
)
from airflow_provider_claude_batch.batching.wait.progress import summary_table
from airflow_provider_claude_batch.batching.wait.wait_event import WaitEvent
from airflow_provider_claude_batch.conventions import DEFAULT_CONN_ID, as_seconds, default_deferrable, pick_alias
from airflow_provider_claude_batch.exceptions import (
    ClaudeBatchError,
    ClaudeBatchFailedRequestsError,
    ClaudeBatchParameterError,
)
from airflow_provider_claude_batch.links import (
    ClaudeBatchConsoleLink,
    ClaudeBatchesPageLink,
    batches_page_url,
    console_url,
    persist_links,
)
from airflow_provider_claude_batch.triggerer import may_defer
from airflow_provider_claude_batch.workdir import open_manifest

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

__all__ = ["DEFAULT_POKE_INTERVAL", "DEFAULT_TIMEOUT_SECONDS", "ClaudeBatchFailedRequestsError", "ClaudeBatchSensor"]

#: The older name of ``batching.poller.DEFAULT_POLL_INTERVAL``.
DEFAULT_POKE_INTERVAL = DEFAULT_POLL_INTERVAL
#: Up to this many batches, the sensor checks once in the worker before deferring.
QUICK_CHECK_MAX_BATCHES = 50


def _hook(conn_id: str) -> ClaudeBatchHook:
    """The connection's hook, imported when the task runs: it loads the SDK, which parsing a
    DAG file must not (``tests/unit/test_import_cost.py``)."""
    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

    return ClaudeBatchHook(conn_id)


def _is_timeout(exc: BaseException) -> bool:
    """The sensor's own timeout: ``AirflowSensorTimeout``, or with ``soft_fail`` the skip that
    BaseSensorOperator raises in its place (a fresh exception; skips for a failed poke wrap it)."""
    if isinstance(exc, AirflowSensorTimeout):
        return True
    return isinstance(exc, AirflowSkipException) and exc.__cause__ is None and exc.__context__ is None


class ClaudeBatchSensor(BaseSensorOperator):
    """Wait for every batch of a manifest (or explicit batch ids) to end.

    Deferrable by default: the wait runs in the triggerer and holds no worker slot (one
    trigger per task; all triggers of a connection on a triggerer share ``list`` pages, so
    thousands of waits cost a few API calls per poll). With
    ``deferrable=False`` it pokes like any sensor (``mode="poke"`` or ``"reschedule"``).

    :param manifest: the submit task's output (``submit.output``) or a manifest path/URI.
    :param batch_ids: explicit batch ids instead of a manifest.
    :param conn_id: the connection (templated); defaults to the manifest's connection.
        ``claude_batch_conn_id`` is accepted as the same parameter.
    :param poke_interval: seconds (or a ``timedelta``) between polls, in every mode
        (``poll_interval`` is accepted as the same parameter). ``exponential_backoff`` and
        ``max_wait`` apply to the poke and reschedule modes; a deferred wait polls evenly.
    :param timeout: seconds (or a ``timedelta``) to wait, counted from the first poke in
        every mode (26 hours by default: a batch ends within 24 hours of its creation).
        ``soft_fail=True`` skips instead of failing at the timeout; the batches are
        canceled first either way when ``cancel_on_timeout``.
    :param deferrable: wait in the triggerer (no worker slot held). Defaults to on, or to
        ``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE`` when the deployment sets it. A ``mode=``
        written on the sensor without ``deferrable`` is followed (it pokes in that mode): the
        author asked for it. ``deferrable=True`` wins over a ``mode``.
    :param max_failed_fraction: fail when more than this fraction of requests ended
        errored, expired or canceled (``None``: never fail on outcomes; the transfer still
        lands every row with its outcome).
    :param cancel_on_timeout: cancel the batches still running when the sensor times out.
    :param cancel_on_kill: cancel them when the task is killed (also while deferred).
    :param max_poll_errors: consecutive failed polls tolerated before failing.

    Returns (XCom) per-batch request counts and totals; with a manifest, it also records
    the final state of every batch there.
    """

    template_fields: Sequence[str] = ("manifest", "batch_ids", "conn_id")
    ui_color = "#f3e3d3"
    operator_extra_links = (ClaudeBatchConsoleLink(), ClaudeBatchesPageLink())

    def __init__(
        self,
        *,
        manifest: Any = None,
        batch_ids: list[str] | None = None,
        conn_id: str | None = None,
        claude_batch_conn_id: str | None = None,
        poke_interval: float | timedelta | None = None,
        poll_interval: float | timedelta | None = None,
        deferrable: bool | None = None,
        max_failed_fraction: float | None = None,
        cancel_on_timeout: bool = True,
        cancel_on_kill: bool = True,
        max_poll_errors: int = DEFAULT_MAX_POLL_ERRORS,
        timeout: float | timedelta = DEFAULT_TIMEOUT_SECONDS,
        **kwargs: Any,
    ) -> None:
        interval = cast(
            "float | timedelta | None", pick_alias("poke_interval", poke_interval, "poll_interval", poll_interval)
        )
        super().__init__(
            poke_interval=as_seconds(DEFAULT_POKE_INTERVAL if interval is None else interval, "poke_interval"),
            timeout=as_seconds(timeout, "timeout"),
            **kwargs,
        )
        if manifest is None and not batch_ids:
            raise ClaudeBatchParameterError(
                "ClaudeBatchSensor needs manifest= (the submit task's output) or batch_ids="
            )
        if max_failed_fraction is not None and not 0 <= max_failed_fraction <= 1:
            raise ClaudeBatchParameterError(f"max_failed_fraction must be between 0 and 1, got {max_failed_fraction}")
        self.manifest = manifest
        self.batch_ids = batch_ids
        self.conn_id = pick_alias("conn_id", conn_id, "claude_batch_conn_id", claude_batch_conn_id)
        if deferrable is None:
            # ``mode`` written on this sensor (not one from default_args, which Airflow applies in
            # BaseSensorOperator's own __init__) is a choice of how to poke: follow it.
            deferrable = "mode" not in kwargs and default_deferrable()
        self.deferrable = deferrable
        self.max_failed_fraction = max_failed_fraction
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self.max_poll_errors = max_poll_errors
        #: The wait of the poke path (poke mode keeps this instance, and so its failed polls,
        #: between pokes).
        self._poller: Poller | None = None
        self.console_link: str | None = None
        self.batches_page_link: str | None = None

    @property
    def poll_interval(self) -> float:
        """``poke_interval`` in seconds (the older name of the parameter)."""
        return float(self.poke_interval)

    @property
    def claude_batch_conn_id(self) -> str | None:
        """``conn_id`` (the older name of the parameter)."""
        return self.conn_id

    # ------------------------------------------------------------------ targets
    def _targets(self) -> tuple[list[str], str]:
        if self.manifest is not None:
            manifest, _ = open_manifest(self.manifest)
            ids = manifest.batch_ids()
            missing = [b.label for b in manifest.batches if b.batch_id is None]
            if missing:
                raise ClaudeBatchError(
                    f"the manifest of {manifest.task_id!r} has {len(missing)} record(s) without a batch "
                    f"({', '.join(missing[:5])}): the submit task did not finish (it may still be feeding them "
                    "through the batch queue: wait for it, see docs/queue.md); if it failed, clear it to create them"
                )
            self.batches_page_link = batches_page_url(manifest)
            return ids, self.claude_batch_conn_id or manifest.conn_id
        return list(self.batch_ids or []), self.claude_batch_conn_id or DEFAULT_CONN_ID

    # ------------------------------------------------------------------ deferrable path
    def execute(self, context: Context) -> Any:
        ids, conn_id = self._targets()
        if not ids and self.manifest is not None:
            # Every row's answer was reused or deduplicated: the submit task sent nothing.
            self.log.info("Nothing to wait for: the submit task created no batch (every row was answered).")
            return {"batches": {}, "totals": sum_counts([]).as_dict()}
        if not ids:
            raise ClaudeBatchError("there are no batches to wait for")
        self._set_console_link(ids[0], conn_id)
        if self.deferrable and not may_defer(
            self.log,
            f"Waiting in reschedule mode (a poll every {self.poll_interval:g} s, no worker slot held in between)",
            warn=not context.get("task_reschedule_count"),  # once per try, not at every poke
        ):
            self.deferrable, self.mode = False, "reschedule"
        if not self.deferrable:
            try:
                return super().execute(context)
            except (AirflowSensorTimeout, AirflowSkipException) as exc:
                if self.cancel_on_timeout and _is_timeout(exc):
                    still_open = self._poller.to_cancel() if self._poller is not None else ids
                    self._cancel_open(still_open, conn_id, reason="the sensor timed out")
                raise
        started_at = None
        if len(ids) <= QUICK_CHECK_MAX_BATCHES:
            # Already ended (a rerun, a late sensor): no deferral round trip needed.
            poller = Poller(ids, max_poll_errors=self.max_poll_errors)
            event = poller.observe(retrieve_states(_hook(conn_id), ids))
            problem = event.message if event is not None and event.status == "error" else "; ".join(poller.last_errors)
            if problem:
                self.log.warning("Could not check the batches before deferring (%s); the trigger will.", problem)
            if event is not None and event.status == "success":
                return self._finish(event.batches)
            started_at = started_at_of(poller.states.values())
        self.log.info("Deferring: waiting for %d batch(es) in the triggerer.", len(ids))
        persist_links(self, context)  # the instance that resumes never sets them
        from airflow_provider_claude_batch.triggers.batch import ClaudeBatchTrigger

        self.defer(
            trigger=ClaudeBatchTrigger(
                batch_ids=ids,
                claude_batch_conn_id=conn_id,
                poll_interval=self.poll_interval,
                deadline=time.time() + float(self.timeout),
                max_poll_errors=self.max_poll_errors,
                cancel_on_kill=self.cancel_on_kill,
                started_at=started_at,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        ids, conn_id = self._targets()  # this instance never ran execute: set its links again
        if ids:
            self._set_console_link(ids[0], conn_id)
        ended = WaitEvent.from_payload(event)
        self._record(ended.batches)
        if ended.status == "timeout":
            if self.cancel_on_timeout:
                self._cancel_open(ended.open or ids, conn_id, reason="the sensor timed out")
            raise AirflowSensorTimeout(f"Claude batches did not end in time: {ended.message}")
        if ended.status == "error":
            raise ended.error()
        return self._finish(ended.batches)

    # ------------------------------------------------------------------ poke path
    def poke(self, context: Context) -> bool | PokeReturnValue:
        ids, conn_id = self._targets()
        if self._poller is None or self._poller.batch_ids != ids:
            # The sensor's own timeout applies in poke and reschedule mode: no deadline here.
            self._poller = Poller(ids, max_poll_errors=self.max_poll_errors)
        poller = self._poller
        event = poller.observe(retrieve_states(_hook(conn_id), poller.pending()))
        if poller.last_errors:
            # Like the trigger: a blip (5xx, a dropped connection) is retried at the next poke,
            # up to max_poll_errors in a row.
            self.log.warning("Poll %d failed: %s", poller.failed_polls, "; ".join(poller.last_errors[:3]))
        if event is not None and event.status == "error":
            raise event.error()
        started = started_at_of(poller.states.values())
        if started is not None:
            poller.started_at = started
        self.log.info("%s", poller.progress_line())
        if event is not None:
            return PokeReturnValue(is_done=True, xcom_value=self._finish(event.batches))
        return False

    # ------------------------------------------------------------------ shared
    def _record(self, states: dict[str, BatchState]) -> None:
        if self.manifest is None or not states:
            return
        manifest, run_dir = open_manifest(self.manifest)
        manifest.apply_states(states)
        manifest.save(run_dir)

    def _finish(self, states: dict[str, BatchState]) -> dict[str, Any]:
        """Record the final states, log them, and fail on too many failed requests."""
        self._record(states)
        self.log.info("All %d batch(es) ended:\n%s", len(states), summary_table(states))
        check_failed_fraction(states, self.max_failed_fraction)
        return {"batches": states_json(states), "totals": sum_counts(states.values()).as_dict()}

    def _cancel_open(self, ids: list[str], conn_id: str, *, reason: str) -> None:
        cancel_batches(_hook(conn_id), ids, reason=reason, log=self.log)

    def _set_console_link(self, batch_id: str, conn_id: str) -> None:
        try:
            settings = _hook(conn_id).settings
        except Exception:  # the link is a convenience; the wait must not fail for it
            return
        self.console_link = console_url(
            settings.console_url_template, batch_id, settings.workspace_id, base_url=settings.base_url
        )

    def on_kill(self) -> None:
        if not self.cancel_on_kill:
            return
        try:
            ids, conn_id = self._targets()
        except Exception as exc:
            self.log.warning("Task killed, but its batches could not be determined: %s", exc)
            return
        if self._poller is not None and self._poller.batch_ids == ids:
            ids = self._poller.to_cancel()
        self._cancel_open(ids, conn_id, reason="the task was killed")
