"""The ``[claude_batch]`` options as plain data: their names, defaults and descriptions.

Invariant: this module imports nothing. ``get_provider_info`` publishes it, and Airflow calls
``get_provider_info`` in every process that imports ``airflow`` (the scheduler, every task,
every DAG-file parse, every ``airflow`` command), whether or not a DAG uses this provider: an
import here (the ``anthropic`` SDK, pyarrow, pandas) would cost all of them seconds. Reading
the options is ``config.py``'s.
"""

from __future__ import annotations

from typing import Any

SECTION = "claude_batch"

OPTIONS: dict[str, dict[str, Any]] = {
    "work_dir": {
        "description": "Where submit tasks keep manifests, request bodies and raw results "
        "(``{work_dir}/{dag_id}/{run_id}/{task_id}/``): a local path or an object storage URI. Every "
        "worker must reach it, so use shared object storage (s3://, gs://, ...) when tasks run on several "
        "machines. Empty: ``$AIRFLOW_HOME/claude_batch``.\n",
        "version_added": "0.1.0",
        "type": "string",
        "example": "s3://aws_default@lake/_claude_batch/",
        "default": "",
    },
    "prices": {
        "description": "Overrides of the price table used for cost_usd: a JSON object (or the path of a JSON "
        "file) of model -> USD per million tokens for input, output, cache_write and cache_read, before "
        "the batch discount. An operator's own ``prices`` apply on top.\n",
        "version_added": "0.1.0",
        "type": "string",
        "example": '{"my-model": {"input": 3, "output": 15, "cache_write": 3.75, "cache_read": 0.3}}',
        "default": "",
    },
    "trigger_concurrency": {
        "description": "API calls in flight at once per triggerer event loop, across every Claude batch "
        "trigger on it.\n",
        "version_added": "0.1.0",
        "type": "integer",
        "example": "64",
        "default": "128",
    },
    "triggerer": {
        "description": "Whether the sensor, the transfer and a submit waiting for room in the batch queue may "
        "defer: ``auto`` asks the api-server's health endpoint before each deferral and, when it reports no "
        "running triggerer, waits without deferring (the sensor in reschedule mode, the transfer and the "
        "submit polling in place) with one warning instead of hanging; "
        "``yes`` always defers; ``no`` never does. An endpoint that cannot be read counts as a triggerer.\n",
        "version_added": "0.2.0",
        "type": "string",
        "example": "no",
        "default": "auto",
    },
    "answer_max_age": {
        "description": "How old a stored answer may be and still be reused instead of sending its request "
        "again (submit's ``reuse_answers``), as seconds or with a unit (``30d``, ``12h``, ``90m``); ``0`` "
        "reuses nothing. Thirty days by default: a nightly or weekly job re-running last month's rows pays "
        "nothing for them, while an answer never outlives a month of model and prompt updates behind a "
        "model alias. Also the age beyond which compaction deletes answers.\n",
        "version_added": "0.2.0",
        "type": "string",
        "example": "7d",
        "default": "30d",
    },
    "queue_limit": {
        "description": "The organisation's batch queue, in requests: how many may wait in batches still "
        "processing (by usage tier, about 100000 to 500000). Submit tasks send chunks only while they fit and "
        "wait, deferred, for room. A connection's ``queue_limit`` extra takes precedence. Empty: learned "
        "from the API's refusals.\n",
        "version_added": "0.2.0",
        "type": "integer",
        "example": "500000",
        "default": "",
    },
}
