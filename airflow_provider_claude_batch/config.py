"""The provider's ``[claude_batch]`` settings, read the way Airflow reads its own: the
environment (``AIRFLOW__CLAUDE_BATCH__<OPTION>``), then ``airflow.cfg``. The options, their
defaults and descriptions are declared once, in :data:`OPTIONS`, which ``get_provider_info``
publishes (so ``airflow config list`` shows them)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_claude_batch.conventions import age
from airflow_provider_claude_batch.exceptions import ClaudeBatchParameterError

if TYPE_CHECKING:
    from airflow_provider_claude_batch.batching.api.pricing import PriceTable

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
}


def setting(option: str) -> str | None:
    """The configured value of ``[claude_batch] option``, or None when unset or empty."""
    if option not in OPTIONS:
        raise KeyError(f"[{SECTION}] has no option {option!r}")
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # pragma: no cover - cores whose Task SDK has no configuration module
        from airflow.configuration import conf
    value = conf.get(SECTION, option, fallback=None)
    return str(value) if value not in (None, "") else None


def trigger_concurrency() -> int:
    value = setting("trigger_concurrency") or OPTIONS["trigger_concurrency"]["default"]
    if not value.strip().isdigit() or int(value) < 1:
        raise ClaudeBatchParameterError(
            f"[{SECTION}] trigger_concurrency must be a whole number of at least 1, got {value!r}"
        )
    return int(value)


def price_table(overrides: Mapping[str, Any] | None = None) -> PriceTable:
    """The price table with ``[claude_batch] prices`` applied, then an operator's ``overrides``."""
    # Imported here: the hook imports this module, and the triggerer needs no pyarrow.
    from airflow_provider_claude_batch.batching.api.pricing import PriceTable

    return PriceTable.load(setting("prices"), overrides)


def answer_max_age() -> timedelta:
    """``[claude_batch] answer_max_age`` (30 days when unset)."""
    value = setting("answer_max_age") or OPTIONS["answer_max_age"]["default"]
    return age(value, f"[{SECTION}] answer_max_age")
