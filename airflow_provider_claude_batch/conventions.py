"""The Airflow parameter conventions every operator of this provider follows, in one place.

* Durations (poll intervals, timeouts) take seconds or a :class:`~datetime.timedelta`, as
  Airflow's own ``poke_interval``/``timeout``/``retry_delay`` do.
* The connection is ``conn_id=``; ``claude_batch_conn_id=`` (the hook's name for it) stays
  accepted. Giving both with different values is an error at DAG parse time.
* A prompt given as a file name (``prompts/classify.txt``) is read through ``template_ext``
  and ``template_searchpath``, like any templated file in Airflow.
* ``deferrable`` is on unless the DAG author or the deployment turns it off (see
  :func:`default_deferrable` for why Airflow's own default does not count).

Errors here are raised while the DAG file is parsed, so they name the parameter to use.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TypeVar

from airflow_provider_claude_batch.exceptions import ClaudeBatchParameterError

#: ``template_ext`` of the prompt: a templated value ending so is a file to read and render.
PROMPT_FILE_EXTENSIONS: tuple[str, ...] = (".txt", ".md", ".j2", ".jinja", ".jinja2")
#: Where Airflow reads ``[operators] default_deferrable`` from the environment.
DEFAULT_DEFERRABLE_ENV = "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"


def as_seconds(value: float | timedelta, name: str) -> float:
    """``value`` in seconds, from a number or a ``timedelta``; positive, or an error naming ``name``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ClaudeBatchParameterError(
            f"{name} must be a number of seconds or a datetime.timedelta, got {type(value).__name__} {value!r}"
        )
    if seconds <= 0:
        raise ClaudeBatchParameterError(f"{name} must be positive, got {value!r}")
    return seconds


def check_retry_rounds(value: int) -> int:
    """``max_retry_rounds`` of the transfer and of ``@task.claude_batch``: at least 0."""
    if value < 0:
        raise ClaudeBatchParameterError(f"max_retry_rounds must be >= 0, got {value}")
    return value


T = TypeVar("T")


def pick_alias(primary: str, value: T | None, alias: str, alias_value: T | None, default: T | None = None) -> T | None:
    """The value given as ``primary`` or its older name ``alias``; both, differing, is an error."""
    if value is not None and alias_value is not None and value != alias_value:
        raise ClaudeBatchParameterError(
            f"{primary}={value!r} and {alias}={alias_value!r} name the same setting: give only {primary}="
        )
    if value is not None:
        return value
    return alias_value if alias_value is not None else default


def default_deferrable() -> bool:
    """Whether an operator waits in the triggerer when its DAG does not say.

    Airflow's ``[operators] default_deferrable`` defaults to ``false`` and a fresh
    ``airflow.cfg`` spells that default out, so its value alone cannot tell "the deployment
    chose to poke" from "nobody chose". A batch takes up to 24 hours: poking holds a worker
    slot for all of it, deferring holds none. So the default is on, and the deployment turns
    it off (or on) with ``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE`` (or its ``_CMD``/``_SECRET``
    forms), which Airflow reads as that option.
    """
    if not any(os.environ.get(DEFAULT_DEFERRABLE_ENV + suffix) for suffix in ("", "_CMD", "_SECRET")):
        return True
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # pragma: no cover - cores whose Task SDK has no configuration module
        from airflow.configuration import conf
    return bool(conf.getboolean("operators", "default_deferrable", fallback=True))
