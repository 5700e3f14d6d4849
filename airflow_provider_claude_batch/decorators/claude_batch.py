"""``@task.claude_batch``: a function returning rows (or prompts) becomes submit, wait and land.

Design: one task, not a group of three. The decorated operator *is* the submit operator
(so it renders, budgets, chunks and re-attaches exactly like it), and after submitting it
lands through the transfer operator's code, which defers to the triggerer while any batch
is open and resubmits transient failures in rounds. Why one task:

* ``@task.claude_batch(...)(...)`` and ``.expand(...)`` then behave like any TaskFlow task:
  one mapped task per input, one XCom (the landing summary) to pass on.
* The wait holds no worker slot (it is a deferral, like the sensor's), and everything
  that must survive a retry lives in the manifest, so a retry of the whole task calls the
  function again, finds the same fingerprint and re-attaches instead of billing twice.
* The cost of fusing: the steps cannot be cleared one by one. Use the three operators
  when a pipeline needs that (or a sensor timeout separate from the landing's).

Invariants: the function runs once per try, in ``execute`` and never on resume from a
deferral; a resume only creates the chunks still waiting for room in the batch queue (from the
manifest, see docs/queue.md) or lands (the manifest's location is derived from the task
instance, because ``dag.test()`` drops the kwargs given to ``defer``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import (
    SET_DURING_EXECUTION,
    DecoratedOperator,
    TaskDecorator,
    context_merge,
    determine_kwargs,
    task_decorator_factory,
)

from airflow_provider_claude_batch.batching.land.kept_columns import KeepColumns
from airflow_provider_claude_batch.batching.schema.output_schema import check_on_invalid_output
from airflow_provider_claude_batch.batching.state.manifest import load_manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.state.storage import as_path
from airflow_provider_claude_batch.batching.wait.poller import DEFAULT_TIMEOUT_SECONDS
from airflow_provider_claude_batch.conventions import as_seconds, check_retry_rounds, default_deferrable
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError
from airflow_provider_claude_batch.operators.submit import ClaudeBatchSubmitOperator, _UntemplatedSource
from airflow_provider_claude_batch.transfers.batch_to_parquet import ClaudeBatchToParquetOperator, check_keep_columns
from airflow_provider_claude_batch.workdir import run_directory

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class _ClaudeBatchDecoratedOperator(DecoratedOperator, ClaudeBatchSubmitOperator):
    """Calls the function for its rows, submits them, waits deferred and lands them as Parquet.

    :param destination: output folder (templated); default ``output/`` in the task's work
        directory.
    :param keep_columns, row_group_size, compression, max_retry_rounds, poll_interval,
        wait_timeout, deferrable, on_invalid_output: as on :class:`ClaudeBatchToParquetOperator`.

    Every other argument is the submit operator's. Returns the landing summary (destination,
    rows per outcome, tokens, cost, and per batch under ``by_batch``) plus the manifest's location.
    """

    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *(f for f in ClaudeBatchSubmitOperator.template_fields if f != "source"),
        "destination",
        "keep_columns",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **ClaudeBatchSubmitOperator.template_fields_renderers,
    }
    custom_operator_name: str = "@task.claude_batch"
    operator_extra_links: tuple[Any, ...] = (
        *ClaudeBatchSubmitOperator.operator_extra_links,
        *ClaudeBatchToParquetOperator.operator_extra_links,
    )

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        destination: str | None = None,
        keep_columns: KeepColumns | None = None,
        row_group_size: int = 65_536,
        compression: str = "zstd",
        max_retry_rounds: int = 2,
        poll_interval: float | timedelta = 60.0,
        wait_timeout: float | timedelta = DEFAULT_TIMEOUT_SECONDS,
        deferrable: bool | None = None,
        on_invalid_output: str = "keep",
        **kwargs: Any,
    ) -> None:
        if "source" in kwargs:
            raise TypeError("@task.claude_batch takes its rows from the function's return value, not source=")
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            source=SET_DURING_EXECUTION,
            **kwargs,
        )
        self.destination = destination
        self.keep_columns = keep_columns
        self.landing: dict[str, Any] = {
            "row_group_size": row_group_size,
            "compression": compression,
            "max_retry_rounds": max_retry_rounds,
            # Checked and resolved now, as the transfer does: a wrong duration fails at DAG parse.
            "poll_interval": as_seconds(poll_interval, "poll_interval"),
            "wait_timeout": as_seconds(wait_timeout, "wait_timeout"),
            "deferrable": default_deferrable() if deferrable is None else deferrable,
            "on_invalid_output": check_on_invalid_output(on_invalid_output),
        }
        self.output_link: str | None = None
        # Wrong landing arguments fail when the DAG is parsed, as on the transfer operator.
        check_keep_columns(keep_columns, self)
        check_retry_rounds(max_retry_rounds)

    def execute(self, context: Context) -> dict[str, Any]:
        context_merge(context, self.op_kwargs)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        rows = self.python_callable(*self.op_args, **kwargs)
        if rows is None:
            raise ClaudeBatchInputError(
                f"The @task.claude_batch function {self.python_callable.__name__}() returned None: return the rows "
                "(a list of prompts or dicts, a DataFrame) or a file/folder path of them."
            )
        self.source = rows if isinstance(rows, str) else _UntemplatedSource(rows)
        # The submit operator's execute, named: Airflow 3.0's DecoratedOperator has an execute of
        # its own (it pushes the return value through an xcom_push operators no longer have).
        submitted = ClaudeBatchSubmitOperator.execute(self, context)
        self.log.info("Submitted; landing (deferring while batches are open).")
        return self._land(context, submitted["manifest"], lambda lander: lander.execute(context))

    def resume_feeding(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resumed while feeding the batch queue: the next chunks (deferring again while some wait
        for room), then land as after a plain submit."""
        submitted = super().resume_feeding(context, event)
        self.log.info("Every chunk sent; landing (deferring while batches are open).")
        return self._land(context, submitted["manifest"], lambda lander: lander.execute(context))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resumed by the trigger: land (possibly deferring again for resubmitted requests)."""
        ti = context["ti"]
        manifest = run_directory(self.work_dir, ti.dag_id, ti.run_id, ti.task_id, ti.map_index).manifest
        from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

        # This instance never ran execute: set the submit's links again (the lander sets its own).
        self.set_links(load_manifest(manifest), ClaudeBatchHook(self.claude_batch_conn_id))
        return self._land(context, str(manifest), lambda lander: lander.execute_complete(context, event))

    def _land(
        self, context: Context, manifest: str, step: Callable[[ClaudeBatchToParquetOperator], dict[str, Any]]
    ) -> dict[str, Any]:
        destination = self.destination or str(RunDir(as_path(manifest).parent).default_output)
        lander = self._lander(destination, manifest)
        landed = step(lander)
        self.output_link = lander.output_link
        self.lineage = lander.lineage  # the function's source (when a path) in, the Parquet out
        summary = dict(landed)
        summary["manifest"] = manifest
        return summary

    def _lander(self, destination: str, manifest: str | None = None) -> ClaudeBatchToParquetOperator:
        """The landing step, built on the fly (not part of the DAG): its defers name this task's
        ``execute_complete``, which builds it again."""
        return ClaudeBatchToParquetOperator(
            task_id=f"{self.task_id}__land",
            manifest=manifest,
            destination=destination,
            keep_columns=self.keep_columns,
            prices=self.prices,
            claude_batch_conn_id=self.claude_batch_conn_id,
            outlets=list(self.outlets or []),
            **self.landing,
        )


def claude_batch_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """``@task.claude_batch(prompt=..., model=..., destination=...)``: see
    :class:`_ClaudeBatchDecoratedOperator`. Registered with Airflow under ``task-decorators``."""
    return task_decorator_factory(
        python_callable=python_callable,
        decorated_operator_class=_ClaudeBatchDecoratedOperator,
        **kwargs,
    )
