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

from airflow_provider_claude_batch.config_options import OPTIONS as OPTIONS
from airflow_provider_claude_batch.config_options import SECTION as SECTION


def setting(option: str) -> str | None:
    """The configured value of ``[claude_batch] option``, or None when unset or empty."""
    if option not in OPTIONS:
        raise KeyError(f"[{SECTION}] has no option {option!r}")
    from airflow.providers.common.compat.sdk import conf

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


def queue_limit() -> int | None:
    """``[claude_batch] queue_limit`` in requests (None when unset: learned from refusals)."""
    value = setting("queue_limit")
    if value is None:
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise ClaudeBatchParameterError(f"[{SECTION}] queue_limit must be a whole number of requests, got {value!r}")
    return int(value)


def answer_max_age() -> timedelta:
    """``[claude_batch] answer_max_age`` (30 days when unset)."""
    value = setting("answer_max_age") or OPTIONS["answer_max_age"]["default"]
    return age(value, f"[{SECTION}] answer_max_age")
