"""The Airflow parameter conventions every operator of this provider follows, in one place.

* Durations (poll intervals, timeouts, answer ages) take seconds or a
  :class:`~datetime.timedelta`, as Airflow's own ``poke_interval``/``timeout``/``retry_delay``
  do; the answer ages, which are also ``[claude_batch]`` settings, take text with a unit
  (``30d``) too. :func:`duration` is the one rule for all of them.
* The connection is ``conn_id=``; ``claude_batch_conn_id=`` (the hook's name for it) stays
  accepted. Giving both with different values is an error at DAG parse time.
* A prompt given as a file name (``prompts/classify.txt``) is read through ``template_ext``
  and ``template_searchpath``, like any templated file in Airflow.
* ``deferrable`` is on unless the DAG author or the deployment turns it off (see
  :func:`default_deferrable` for why Airflow's own default does not count).

Errors here are raised while the DAG file is parsed, so they name the parameter to use.
"""

from __future__ import annotations

import math
import os
from datetime import timedelta
from typing import Any, TypeVar

from airflow_provider_claude_batch.exceptions import ClaudeBatchParameterError

#: ``template_ext`` of the prompt: a templated value ending so is a file to read and render.
PROMPT_FILE_EXTENSIONS: tuple[str, ...] = (".txt", ".md", ".j2", ".jinja", ".jinja2")
#: The connection every operator, sensor and hook uses when none is given (``ClaudeBatchHook.default_conn_name``).
DEFAULT_CONN_ID = "claude_batch_default"
#: Where Airflow reads ``[operators] default_deferrable`` from the environment.
DEFAULT_DEFERRABLE_ENV = "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"


#: The largest duration a ``timedelta`` holds, in whole seconds.
MAX_DURATION_SECONDS = float(timedelta.max.days * 86400)
#: The units of a duration given as text (``30d``, ``12h``, ``90m``, ``45s``, ``2w``).
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(value: Any, name: str, *, text: bool = False, zero: bool = False) -> timedelta:
    """What a duration may be, for every parameter and setting of the provider.

    A number of seconds (not a bool) or a ``timedelta``; with ``text``, also a number with a
    unit (``"30d"``, ``"12h"``; no unit means seconds), for values that come from
    configuration. It must be finite, not negative (zero only with ``zero``: an age of 0
    reuses nothing, an interval of 0 would spin) and at most what a ``timedelta`` holds
    (:data:`MAX_DURATION_SECONDS`). Anything else is a :class:`ClaudeBatchParameterError`
    naming ``name``: given to an operator, it fails the DAG's parse, not a worker's run.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif text and isinstance(value, str) and value.strip():
        seconds = _text_seconds(value, name)
    elif text:
        raise ClaudeBatchParameterError(f"{name} must be a timedelta, seconds or text like '30d', got {value!r}")
    else:
        raise ClaudeBatchParameterError(
            f"{name} must be a number of seconds or a datetime.timedelta, got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(seconds):
        raise ClaudeBatchParameterError(f"{name} must be a finite duration, got {value!r}")
    if seconds < 0 or (seconds == 0 and not zero):
        raise ClaudeBatchParameterError(
            f"{name} may not be negative, got {value!r}" if zero else f"{name} must be positive, got {value!r}"
        )
    if seconds > MAX_DURATION_SECONDS:
        raise ClaudeBatchParameterError(f"{name} may be at most {MAX_DURATION_SECONDS:.0f} seconds, got {value!r}")
    return timedelta(seconds=seconds)


def _text_seconds(value: str, name: str) -> float:
    """Seconds of a duration written as text: a number, optionally followed by one unit."""
    text = value.strip().lower()
    has_unit = text[-1].isalpha()
    unit = DURATION_UNITS.get(text[-1]) if has_unit else 1
    try:
        number = float(text[:-1] if has_unit else text)
    except ValueError:
        unit = None
    if unit is None:
        *units, last = DURATION_UNITS
        raise ClaudeBatchParameterError(
            f"{name} must be seconds or a number with {', '.join(units)} or {last} (e.g. '30d'), got {value!r}"
        )
    return number * unit


def as_seconds(value: float | timedelta, name: str) -> float:
    """A positive :func:`duration` (seconds or a ``timedelta``) in seconds, for the waits'
    ``poke_interval``/``poll_interval``/``timeout``/``wait_timeout``."""
    return duration(value, name).total_seconds()


def age(value: Any, name: str) -> timedelta:
    """An answer age (``answer_max_age``, the compaction's ``max_age``, their ``[claude_batch]``
    setting): a :func:`duration` that may be text with a unit, and 0 (nothing is young enough)."""
    return duration(value, name, text=True, zero=True)


def check_retry_rounds(value: int) -> int:
    """``max_retry_rounds`` of the transfer and of ``@task.claude_batch``: at least 0."""
    if value < 0:
        raise ClaudeBatchParameterError(f"max_retry_rounds must be >= 0, got {value}")
    return value


T = TypeVar("T")


Number = TypeVar("Number", int, float)


def one_of(value: T, name: str, allowed: tuple[T, ...]) -> T:
    """``value`` when it is one of ``allowed``, else a ``ClaudeBatchParameterError`` naming ``name``."""
    if value not in allowed:
        choices = " or ".join(repr(choice) for choice in allowed)
        raise ClaudeBatchParameterError(f"{name} must be {choices}, got {value!r}")
    return value


def positive(value: Number | None, name: str, unit: str) -> Number | None:
    """``value`` when it is None or above 0, else a ``ClaudeBatchParameterError`` naming
    ``name`` and its ``unit`` (``"number of dollars"``)."""
    if value is not None and not value > 0:
        raise ClaudeBatchParameterError(f"{name} must be a positive {unit}, got {value!r}")
    return value


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
    from airflow.providers.common.compat.sdk import conf

    return bool(conf.getboolean("operators", "default_deferrable", fallback=True))
