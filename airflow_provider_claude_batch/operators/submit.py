"""ClaudeBatchSubmitOperator: upstream rows -> as many Message Batches as the limits require."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from airflow.providers.common.compat.sdk import AirflowSkipException, Asset, BaseOperator

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.batching.api.column_names import TEXT_COLUMN
from airflow_provider_claude_batch.batching.api.request_params import check_prefill, check_prefill_allowed, check_turns
from airflow_provider_claude_batch.batching.schema.output_schema import OutputSchema, with_output_format
from airflow_provider_claude_batch.batching.state.manifest import check_policy
from airflow_provider_claude_batch.config import answer_max_age, price_table, queue_limit
from airflow_provider_claude_batch.conventions import (
    DEFAULT_CONN_ID,
    PROMPT_FILE_EXTENSIONS,
    age,
    one_of,
    pick_alias,
    positive,
)
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError
from airflow_provider_claude_batch.lineage import LineageRecord, operator_lineage, source_location
from airflow_provider_claude_batch.links import (
    ClaudeBatchConsoleLink,
    ClaudeBatchesPageLink,
    batches_page_url,
    console_url,
    persist_links,
)
from airflow_provider_claude_batch.metrics import emit_feeding
from airflow_provider_claude_batch.triggerer import may_defer
from airflow_provider_claude_batch.workdir import run_directory, warn_if_local_with_remote_executor

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
    from airflow_provider_claude_batch.batching.state.manifest import Manifest
    from airflow_provider_claude_batch.batching.state.run_dir import RunDir
    from airflow_provider_claude_batch.batching.submit.feeding import Fed, QueueSettings
    from airflow_provider_claude_batch.batching.submit.submission import (
        ReuseSettings,
        Submission,
        SubmitTask,
        Submitted,
    )
    from airflow_provider_claude_batch.batching.submit.uploads import UploadSettings
    from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
    from airflow_provider_claude_batch.triggers.queue import ClaudeBatchQueueTrigger


class _UntemplatedSource:
    """Holds a list or DataFrame source so that Airflow's templating leaves it alone (it
    would otherwise compile every string of a list as a Jinja template)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"<{type(self.value).__name__} source of {len(self.value)} rows>"


def _untemplated(source: Any) -> Any:
    """Rows given as data (a list, a DataFrame, an Arrow table) are never rendered as templates."""
    if isinstance(source, (list, tuple)) or type(source).__module__.startswith(("pandas", "pyarrow")):
        return _UntemplatedSource(source)
    return source


DEFAULT_CONN = DEFAULT_CONN_ID


def _content(documents: Any, images: Any, content: Any) -> tuple[Any, ...]:
    """The request's documents and images in order, checked when the DAG is parsed."""
    if not (documents or images or content):
        return ()
    from airflow_provider_claude_batch.batching.render.documents import content_spec

    return content_spec(documents, images, content)


def _upload(upload: str, min_bytes: int) -> tuple[str, int]:
    """``upload`` and ``upload_min_bytes`` checked when the DAG is parsed (see ``uploads``)."""
    one_of(upload, "upload", ("inline", "files", "auto"))
    return upload, int(positive(min_bytes, "upload_min_bytes", "number of bytes") or 0)


def _shape(
    output_schema: Any, messages: Any, prefill: Any, request_params: Mapping[str, Any] | None
) -> tuple[OutputSchema | None, list[dict[str, Any]], str | None]:
    """What shapes the answers: the output schema, the few-shot turns and the prefill, checked
    when the DAG is parsed (an unsupported schema never reaches a worker) and together: the API
    takes no prefill with a schema (or with thinking)."""
    schema = None if output_schema is None else OutputSchema.from_user(output_schema)
    turns = check_turns(messages, where="messages=")
    start = check_prefill(prefill, where="prefill=")
    if start is not None:
        check_prefill_allowed(with_output_format(request_params or {}, schema), where="prefill=")
    return schema, turns, start


class ClaudeBatchSubmitOperator(BaseOperator):
    """Render one Messages request per input row and submit them as Message Batches.

    Rows come from ``source``: a list of strings (column ``text``) or dicts, a pandas
    DataFrame (e.g. an upstream task's XCom), a Parquet/CSV/JSONL file or folder given as a
    path or URI (``s3://...`` and other fsspec URIs), or an :class:`~airflow.sdk.Asset`
    (its URI; the Asset becomes an inlet). Rows stream through in record batches and are
    split into as many batches as ``max_requests_per_batch`` and ``max_bytes_per_batch``
    require. Every request body is written to the work directory before any batch is
    created, and the manifest there records which batches exist, so a retry or a clear
    re-attaches to them instead of submitting (and paying for) the same work again.

    :param source: the input rows (templated when a string).
    :param prompt: the user message, with ``{column}`` fields filled from each row
        (templated: Jinja first, e.g. ``{{ ds }}``, then the fields). A value ending in
        ``.txt``, ``.md``, ``.j2``, ``.jinja`` or ``.jinja2`` is a file, found in the DAG's folder
        or ``template_searchpath``. See ``prompt_format`` for literal braces (JSON).
    :param model: model for every request; defaults to the connection's ``default_model``.
    :param max_tokens: ``max_tokens`` of every request.
    :param system: optional system prompt, may use ``{column}`` fields too (templated).
    :param request_params: extra Messages API parameters for every request (temperature,
        stop_sequences, metadata, ...).
    :param id_column: column with each row's custom_id (1-64 of ``[A-Za-z0-9_-]``, unique
        across the run). Without it, ids are ``{id_prefix}-{row number}``.
    :param params_column: optional column of per-row parameter dicts (or JSON strings)
        merged over ``request_params``; a row's ``messages`` and ``prefill`` keys replace the
        operator's (``[]`` and ``""``: none for that row).
    :param messages: few-shot turns sent before every row's prompt: a list of
        ``{"role": "user" | "assistant", "content": text or content blocks}``, the roles in turn
        from a user turn to an assistant turn (the row's prompt is the next user turn). Not
        templated.
    :param prefill: the start of every answer, sent as an assistant turn after the row's prompt
        (e.g. ``'{"label": "'``); not with ``output_schema`` or thinking, which the API refuses,
        nor ending in whitespace. Not templated.
    :param max_requests_per_batch: at most 100,000 (the API's limit).
    :param max_bytes_per_batch: serialized create body limit, at most 256 MB.
    :param work_dir: base folder or URI for manifests and request bodies; shared object
        storage in production. Defaults to ``[claude_batch] work_dir`` (airflow.cfg or
        ``AIRFLOW__CLAUDE_BATCH__WORK_DIR``), else ``$AIRFLOW_HOME/claude_batch``.
    :param source_format: ``parquet``, ``csv`` or ``jsonl`` when the file names do not say.
    :param input_columns: input columns kept beside the requests so the transfer can join
        them back to results: ``"all"`` (default), a list, or ``None``.
    :param on_empty: ``"skip"`` (default: the task is skipped) or ``"fail"`` when the
        source has no rows. Nothing is submitted either way.
    :param on_input_change: when a retry finds batches created for a different input:
        ``"fail"`` (default) or ``"resubmit"`` (cancel them, submit the new input).
    :param max_cost_usd: a budget for the run: when the most its requests could cost at batch
        prices (every input byte a token, every answer at ``max_tokens``) is above it, the task
        fails before submitting anything. The ceiling is logged and returned either way.
    :param prices: price table overrides for the ceiling, over ``[claude_batch] prices``.
    :param prompt_format: how ``prompt`` and ``system`` mark fields. ``"fields"`` (default):
        ``{name}`` (a column name, optionally with ``.attr``, ``[key]``, ``!r`` or ``:spec``) is
        a field and every other brace is literal text, so ``{"label": "..."}`` needs no
        escaping. ``"format"``: plain ``str.format``, where literal braces are doubled.
    :param conn_id: the ``claude_batch`` (or ``anthropic``) connection (templated).
        ``claude_batch_conn_id`` is accepted as the same parameter.
    :param allow_empty_prompt: send rows whose prompt columns hold empty (or whitespace-only)
        text; by default they fail the task before anything is submitted, naming the row.
    :param estimate_only: a dry run (the name ``dry_run`` is a BaseOperator method): render
        every request, count input tokens on a sample through the free ``count_tokens``
        endpoint, log and print the estimate (input tokens, output ceiling, cost at batch
        prices, requests, batches), push it as XCom ``estimate``, and skip: nothing is created
        or billed. With ``reuse_answers`` only the requests the reuse plan would send are
        counted and priced; rows reused, deduplicated or awaited are reported beside them at $0,
        and nothing is written to the answer store.
    :param count_tokens_sample: requests counted for the estimate (default 100). When given
        without ``estimate_only``, the run is counted too and ``max_cost_usd`` checks the counted
        estimate instead of the byte-for-token ceiling.
    :param reuse_answers: send only requests without a stored answer (default on). Each
        request's content key (everything that changes its answer, never the custom_id) is
        looked up in the work directory's answer store: rows with an answer younger than
        ``answer_max_age`` are landed from it at no cost, and identical requests in one run are
        sent once. Turn it off to pay for fresh samples of every row (e.g. ``temperature > 0``
        on purpose).
    :param answer_max_age: how old a stored answer may be (seconds, a ``timedelta`` or text
        like ``"7d"``); defaults to ``[claude_batch] answer_max_age`` (30 days).
    :param output_schema: a pydantic model class or a JSON schema dict the answers must match:
        every request carries it as the API's native ``output_config.format`` (adapted once to
        the API's rules), and the transfer lands each field as a typed column. A schema feature
        the API or a column type cannot take fails here, naming the field, before anything runs.
    :param documents: columns whose values (paths, URIs or bytes) become ``document`` blocks (PDF,
        plain text) before the prompt's text: ``documents=["path"]`` with a folder of PDFs as the
        source. Items may be ``DocumentBlock(column, title=, context=, citations=)``.
    :param images: the same for ``image`` blocks (JPEG, PNG, GIF, WebP): names or ``ImageBlock``.
    :param content: the blocks and ``PROMPT`` in the order the user turn holds them, instead of
        ``documents``/``images`` (see docs/documents.md). Media types come from the bytes; a
        file the API would refuse fails the task naming its row and file, before anything is sent.
    :param upload: how documents and images are sent: ``"inline"`` (base64 in each request, the
        default), ``"files"`` (each distinct file uploaded once per workspace through the Files
        API and referred to by ``file_id``; recorded in the work directory, so a rerun, a retry or
        another DAG uploads nothing again), or ``"auto"`` (files of at least ``upload_min_bytes``
        uploaded, smaller ones inline). Answers are reused across modes: the content key covers
        the bytes, never the file id. See docs/documents.md.
    :param upload_min_bytes: the size from which ``upload="auto"`` uploads a file (1 MiB).
    :param cache_system_prompt: put a prompt-caching breakpoint (1-hour TTL) on the system
        prompt, which must then be the same for every row: the first request writes it to the
        cache and the others read it at a tenth of the input price.

    Returns (XCom) a small summary: the manifest's location, the batch ids, chunk and
    request counts, the cost ceiling. Downstream tasks take it as ``manifest=submit.output``.

    Chunks go out while they fit the organisation's batch queue (the connection's
    ``queue_limit`` extra, else ``[claude_batch] queue_limit``, else learned from the API's
    refusals); the rest wait, deferred (no worker slot held), and a worker is used again only
    to create them. A full queue is a reason to wait, never to fail; the task succeeds once
    every chunk is sent (docs/queue.md).

    A run whose requests an earlier run has claimed (it plans or feeds the same rows) waits for
    that run to create its batches, then awaits their answers instead of paying for them again.
    It waits in the worker for ``claim_patience`` seconds (300: two runs planning at once settle
    well within it), then deferred, looking again every ``claim_recheck_interval`` seconds: a run
    feeding the queue keeps its claim for hours, and waiting runs must not fill the worker slots
    it needs (docs/answer-reuse.md).
    """

    #: Seconds between two looks at the batch queue while the run waits for room.
    queue_poll_interval: float = 60.0
    #: Seconds a submit waits in its worker for an earlier run's claim before it waits deferred:
    #: runs planning at once settle well within it, even on a slow object store; a run that
    #: feeds the batch queue keeps its claim for hours.
    claim_patience: float = 300.0
    #: Seconds between two looks at an earlier run's claim while the submit waits deferred.
    claim_recheck_interval: float = 300.0

    template_fields: Sequence[str] = (
        "source",
        "prompt",
        "system",
        "model",
        "work_dir",
        "id_column",
        "params_column",
        "request_params",
        "source_format",
        "conn_id",
    )
    #: A prompt or system given as a file name with one of these endings is read from the DAG's
    #: folder or ``template_searchpath`` and rendered (Jinja), like any templated file in Airflow.
    template_ext: Sequence[str] = PROMPT_FILE_EXTENSIONS
    template_fields_renderers = {"request_params": "json", "prompt": "py", "system": "py"}
    ui_color = "#e8d4c4"
    operator_extra_links = (ClaudeBatchConsoleLink(), ClaudeBatchesPageLink())

    #: Set when the task runs (the extra links and OpenLineage read them); None until then.
    console_link: str | None = None
    batches_page_link: str | None = None
    lineage: LineageRecord | None = None

    def __init__(
        self,
        *,
        source: Any,
        prompt: str = "{" + TEXT_COLUMN + "}",
        model: str | None = None,
        max_tokens: int = 1024,
        system: str | None = None,
        request_params: Mapping[str, Any] | None = None,
        id_column: str | None = None,
        params_column: str | None = None,
        id_prefix: str = "row",
        max_requests_per_batch: int = limits.MAX_REQUESTS_PER_BATCH,
        max_bytes_per_batch: int = limits.MAX_BYTES_PER_BATCH,
        work_dir: str | None = None,
        source_format: str | None = None,
        input_columns: list[str] | Literal["all"] | None = "all",
        on_empty: Literal["skip", "fail"] = "skip",
        on_input_change: Literal["fail", "resubmit"] = "fail",
        max_cost_usd: float | None = None,
        prices: dict[str, Any] | None = None,
        prompt_format: Literal["fields", "format"] = "fields",
        conn_id: str | None = None,
        claude_batch_conn_id: str | None = None,
        allow_empty_prompt: bool = False,
        output_schema: Any = None,
        cache_system_prompt: bool = False,
        estimate_only: bool = False,
        count_tokens_sample: int | None = None,
        reuse_answers: bool = True,
        answer_max_age: float | timedelta | str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        prefill: str | None = None,
        documents: Sequence[Any] | None = None,
        images: Sequence[Any] | None = None,
        content: Sequence[Any] | None = None,
        upload: Literal["inline", "files", "auto"] = "inline",
        upload_min_bytes: int = 1024 * 1024,
        **kwargs: Any,
    ) -> None:
        if isinstance(source, Asset):
            kwargs["inlets"] = [*(kwargs.get("inlets") or []), source]
        super().__init__(**kwargs)
        self.source = _untemplated(source)
        self.prompt = prompt
        self.model = model
        self.max_tokens = max_tokens
        self.system = system
        self.request_params = dict(request_params or {})
        self.id_column, self.params_column = id_column, params_column
        self.id_prefix = id_prefix
        self.max_requests_per_batch, self.max_bytes_per_batch = max_requests_per_batch, max_bytes_per_batch
        self.work_dir, self.source_format = work_dir, source_format
        self.input_columns = input_columns
        self.on_empty = one_of(on_empty, "on_empty", ("skip", "fail"))
        self.on_input_change = check_policy(on_input_change)
        self.max_cost_usd = positive(max_cost_usd, "max_cost_usd", "number of dollars")
        self.prices = prices
        self.prompt_format = one_of(prompt_format, "prompt_format", ("fields", "format"))
        self.conn_id = pick_alias("conn_id", conn_id, "claude_batch_conn_id", claude_batch_conn_id) or DEFAULT_CONN
        self.allow_empty_prompt = allow_empty_prompt
        self.output_schema, self.messages, self.prefill = _shape(output_schema, messages, prefill, request_params)
        self.cache_system_prompt = cache_system_prompt
        self.content = _content(documents, images, content)
        self.upload, self.upload_min_bytes = _upload(upload, upload_min_bytes)
        self.estimate_only = estimate_only
        self.count_tokens_sample = positive(count_tokens_sample, "count_tokens_sample", "number of requests")
        self.reuse_answers = reuse_answers
        # Checked when the DAG is parsed; None: the configured default, read when the task runs.
        self.answer_max_age = None if answer_max_age is None else age(answer_max_age, "answer_max_age")

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the source dataset read, with its row count (see ``lineage.py``)."""
        return operator_lineage(self.lineage or LineageRecord())

    @property
    def claude_batch_conn_id(self) -> str:
        """``conn_id`` (the older name of the parameter)."""
        return self.conn_id

    def _source_value(self) -> Any:
        source = self.source
        if isinstance(source, _UntemplatedSource):
            return source.value
        if isinstance(source, Asset):
            return source.uri
        return source

    def _spec(self, hook: ClaudeBatchHook) -> RequestSpec:
        from airflow_provider_claude_batch.batching.render.prompt_caching import cached_system
        from airflow_provider_claude_batch.batching.render.rendering import RequestSpec, fields_template

        as_template = fields_template if self.prompt_format == "fields" else str
        system = None if self.system is None else as_template(self.system)
        params = with_output_format(self.request_params, self.output_schema)
        if self.cache_system_prompt:
            system, params = cached_system(system, params)
        return RequestSpec(
            prompt=as_template(self.prompt),
            model=self.model or hook.settings.default_model or "",
            max_tokens=self.max_tokens,
            system=system,
            params=params,
            id_column=self.id_column,
            params_column=self.params_column,
            id_prefix=self.id_prefix,
            allow_empty_prompt=self.allow_empty_prompt,
            messages=self.messages,
            prefill=self.prefill,
            content=self.content,
        )

    def set_links(self, manifest: Manifest, hook: ClaudeBatchHook) -> None:
        """The Console and Claude Batches page links of the manifest's batches (none without one)."""
        if not manifest.batch_ids():
            return
        settings = hook.settings
        self.console_link = console_url(
            settings.console_url_template,
            manifest.batch_ids()[0],
            settings.workspace_id,
            base_url=settings.base_url,
        )
        self.batches_page_link = batches_page_url(manifest)

    def _reuse(self, run_dir: RunDir) -> ReuseSettings | None:
        from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerStore
        from airflow_provider_claude_batch.batching.submit.submission import ReuseSettings

        if not self.reuse_answers:
            return None
        max_age = self.answer_max_age if self.answer_max_age is not None else answer_max_age()
        return ReuseSettings(AnswerStore(run_dir.work_dir), max_age)

    def _queue(self, hook: ClaudeBatchHook, task: SubmitTask) -> QueueSettings:
        """This run's place at the batch queue: the connection's limit, else the configured one."""
        from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerStore
        from airflow_provider_claude_batch.batching.submit.feeding import QueueSettings

        limit = hook.settings.queue_limit
        return QueueSettings(
            conn_id=task.conn_id,
            owner=AnswerStore.owner_name(task.dag_id, task.run_id, task.task_id, task.map_index),
            limit=limit if limit is not None else queue_limit(),
            priority=int(getattr(self, "priority_weight", 1) or 1),
        )

    def _submission(self, context: Context) -> tuple[ClaudeBatchHook, RunDir, Submission]:
        """The hook, run folder and :class:`Submission` of this task instance."""
        from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
        from airflow_provider_claude_batch.batching.submit.submission import Submission, SubmitTask
        from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

        hook = ClaudeBatchHook(self.claude_batch_conn_id, wait_on_full_queue=True)
        ti = context["ti"]
        map_index = ti.map_index if ti.map_index is not None else -1
        run_dir = run_directory(self.work_dir, ti.dag_id, ti.run_id, ti.task_id, map_index)
        task = SubmitTask(
            ti.dag_id,
            ti.run_id,
            ti.task_id,
            map_index,
            self.claude_batch_conn_id,
            try_number=int(getattr(ti, "try_number", 0) or 0),
        )
        submission = Submission(
            run_dir,
            task,
            self._spec(hook),
            ChunkLimits(self.max_requests_per_batch, self.max_bytes_per_batch),
            hook,
            prices=price_table(self.prices),
            max_cost_usd=self.max_cost_usd,
            policy=self.on_input_change,
            output_schema=None if self.output_schema is None else self.output_schema.as_json(),
            count_tokens_sample=self.count_tokens_sample,
            reuse=self._reuse(run_dir),
            queue=self._queue(hook, task),
            uploads=self._uploads(),
            logger=self.log,
        )
        return hook, run_dir, submission

    def _uploads(self) -> UploadSettings | None:
        """How the documents and images are sent (None: inline, and for rows without any)."""
        from airflow_provider_claude_batch.batching.submit.uploads import UploadSettings

        if self.upload == "inline" or not self.content:
            return None
        mode: Any = self.upload  # one of the modes: checked by ``_upload``
        return UploadSettings(mode, self.upload_min_bytes)

    def execute(self, context: Context) -> dict[str, Any]:
        hook, run_dir, submission = self._submission(context)
        warn_if_local_with_remote_executor(run_dir, self.log)
        # One cheap call first: a wrong key fails here, not after every request is rendered and
        # written (the dry run too: its token counts need the same key).
        hook.check_credentials()
        ti = context["ti"]
        source = self._source_value()
        if self.estimate_only:
            estimate = submission.estimate(source, input_columns=self.input_columns, source_format=self.source_format)
            if estimate is not None:
                # The point of a dry run: shown by `airflow tasks test` too, not only in the log.
                print(f"Estimate only: {estimate.describe()}. Nothing was submitted.")
                ti.xcom_push(key="estimate", value=estimate.as_dict())
                raise AirflowSkipException("estimate_only=True: estimated, nothing submitted")
            submitted = None
        else:
            submitted = self._submit_or_defer(context, submission, source)
        if submitted is None:
            message = "The source has no rows: nothing to submit."
            if self.on_empty == "fail":
                raise ClaudeBatchInputError(message + " (on_empty='fail')")
            raise AirflowSkipException(message)
        return self._fed(context, hook, run_dir, submitted, submission)

    def _submit_or_defer(self, context: Context, submission: Submission, source: Any) -> Submitted | None:
        """``submission.submit``; while an earlier run's claim holds shared requests past
        ``claim_patience``, wait deferred and submit again when resumed (or, with no triggerer,
        wait here as long as it takes)."""
        from airflow_provider_claude_batch.exceptions import ClaudeBatchClaimHeldError

        def submit() -> Submitted | None:
            return submission.submit(
                source,
                input_columns=self.input_columns,
                source_format=self.source_format,
                source_location=source_location(source),
            )

        submission.claim_patience = self.claim_patience
        try:
            return submit()
        except ClaudeBatchClaimHeldError as held:
            looks = f"looking again every {self.claim_recheck_interval:g} s"
            if may_defer(self.log, f"Waiting for the earlier run's claim in this task ({looks})"):
                from datetime import timedelta

                from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

                self.log.info("%s: waiting deferred, %s; this run then awaits their answers.", held, looks)
                self.defer(
                    trigger=TimeDeltaTrigger(timedelta(seconds=self.claim_recheck_interval)),
                    method_name="resume_after_claim_wait",
                )
        submission.claim_patience = None  # no triggerer: wait here as long as it takes
        return submit()

    def resume_after_claim_wait(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resumed after waiting deferred for an earlier run's claim: submit again from the
        start (the input is rendered again; the claim is made again, later in the order)."""
        return self.execute(context)

    def resume_feeding(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resumed by the queue trigger: the next feeding step (on a worker only to create), then
        wait again, or finish once every chunk is sent. Everything comes from the run folder (the
        kwargs given to ``defer`` may be dropped)."""
        hook, run_dir, submission = self._submission(context)
        return self._fed(context, hook, run_dir, submission.continue_feeding(), submission)

    def _fed(
        self, context: Context, hook: ClaudeBatchHook, run_dir: RunDir, submitted: Submitted, submission: Submission
    ) -> dict[str, Any]:
        """After a feeding step: metrics, then wait for room (deferred, or here when no triggerer
        runs: never a deferral nobody picks up), or the task's summary."""
        fed = submitted.fed
        warned = False
        while fed is not None:
            self._emit(context, submitted.manifest, fed)
            if fed.done:
                break
            if may_defer(
                self.log, f"Waiting for room in the batch queue in this task ({self._looks})", warn=not warned
            ):
                self._defer_feeding(context, submitted.manifest, fed)
            warned = True
            self._wait_for_room_here(fed)
            submitted = submission.continue_feeding()
            fed = submitted.fed
        return self._summary(hook, run_dir, submitted)

    @property
    def _looks(self) -> str:
        return f"a look at the queue every {self.queue_poll_interval:g} s"

    def _queue_trigger(self, fed: Fed) -> ClaudeBatchQueueTrigger:
        """What the wait for room watches: the room for the next chunk, or the recheck time."""
        from airflow_provider_claude_batch.batching.submit.queue_turns import FEED_RECHECK_SECONDS
        from airflow_provider_claude_batch.triggers.queue import ClaudeBatchQueueTrigger

        return ClaudeBatchQueueTrigger(
            claude_batch_conn_id=self.claude_batch_conn_id,
            needed=fed.next_requests,
            limit=fed.limit,
            queued_at_start=fed.queued,
            poll_interval=self.queue_poll_interval,
            recheck_at=time.time() + max(FEED_RECHECK_SECONDS, self.queue_poll_interval),
        )

    def _wait_for_room_here(self, fed: Fed) -> None:
        """The queue trigger's wait, run in this task when no triggerer would run it: look at the
        queue every ``queue_poll_interval`` until the next chunk fits (a batch ended, with no
        limit known) or the recheck time passes; a failed look is logged and the wait goes on."""
        from airflow_provider_claude_batch.batching.api.queue_limit import queued_requests
        from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

        trigger, hook = self._queue_trigger(fed), ClaudeBatchHook(self.claude_batch_conn_id)
        recheck_at = trigger.recheck_at or time.time()
        self.log.info("Waiting for room in the batch queue (%s), %s.", fed.reason, self._looks)
        while time.time() < recheck_at:
            time.sleep(max(0.0, min(self.queue_poll_interval, recheck_at - time.time())))
            try:
                queued = queued_requests(hook.queue_states())
            except Exception as exc:  # a blip: the recheck bounds the wait
                self.log.warning("Could not read the batch queue: %s", exc)
                continue
            if trigger.has_room(queued):
                return

    def _emit(self, context: Context, manifest: Manifest, fed: Fed) -> None:
        created = set(fed.created)
        sent = sum(record.request_count for record in manifest.batches if record.batch_id in created)
        ti = context["ti"]
        emit_feeding(fed, sent, conn_id=self.claude_batch_conn_id, dag_id=ti.dag_id, task_id=ti.task_id)

    def _defer_feeding(self, context: Context, manifest: Manifest, fed: Fed) -> None:
        """Wait in the triggerer until the queue has room for the next chunk (or the recheck)."""
        from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

        self.set_links(manifest, ClaudeBatchHook(self.claude_batch_conn_id))
        persist_links(self, context)
        self.log.info("Waiting for room in the batch queue (%s).", fed.reason)
        self.defer(trigger=self._queue_trigger(fed), method_name="resume_feeding")

    def _summary(self, hook: ClaudeBatchHook, run_dir: RunDir, submitted: Submitted) -> dict[str, Any]:
        manifest, created = submitted.manifest, submitted.created
        ceiling = submitted.cost_ceiling
        summary = {"manifest": str(run_dir.manifest), "conn_id": self.claude_batch_conn_id, **manifest.summary()}
        summary["created_now"] = created
        summary["cost_ceiling_usd"] = None if ceiling is None else round(ceiling, 6)
        self.set_links(manifest, hook)
        self.lineage = LineageRecord(source=manifest.source, requests=manifest.rows)
        summary["rows"] = manifest.rows
        self.log.info(
            "%d batch(es) for %d requests: %d created now, %d re-attached. Manifest: %s",
            len(manifest.batch_ids()),
            manifest.total_requests,
            len(created),
            len(manifest.batch_ids()) - len(created),
            summary["manifest"],
        )
        return summary
