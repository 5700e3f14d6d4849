"""What differs between the Airflow 3 minors this provider supports, in one place.

The Task SDK names (``BaseHook``, ``BaseOperator``, the task exceptions, ``conf``, the
decorator's base classes, ...) come from ``airflow.providers.common.compat.sdk``, as in the
Apache providers: it resolves each name wherever the installed minor keeps it. This module
holds what those shims do not cover:

* **The supported range.** Importing it on an Airflow outside ``SUPPORTED_AIRFLOW`` raises
  :class:`ClaudeBatchUnsupportedAirflowError` naming the installed and the supported versions, instead of
  an ``ImportError`` or a task that fails later for a reason nobody can connect to the version.
  Every module that talks to Airflow imports this one (the hook, which every operator, sensor
  and trigger uses; the links; the page), so the check runs before any of them works.
* **The api-server's names** the Claude Batches page uses (the request's user, the auth
  manager, the metadata database session and models): the same on every supported minor,
  imported only inside the api-server, and kept here so that a future move is one edit.
* **Capabilities a minor lacks**, each with one warning per process that names the minor and
  what is lost (:func:`warn_degraded`), never a silent difference:

  - ``TRIGGER_ON_KILL``: from 3.3 the triggerer calls a trigger's ``on_kill`` when a user kills
    a deferred task, which cancels its batches. Before 3.3 a killed *deferred* wait leaves its
    batches running (a wait in a worker, ``deferrable=False``, still cancels them).
  - ``PLUGIN_MENU_ENTRY``: from 3.1 a plugin's ``external_views`` puts the Claude Batches page
    in the Browse menu. On 3.0 the page is served at the same address without a menu entry.

Nothing here imports the ``anthropic`` SDK, pandas or pyarrow: importing it costs only
Airflow's version string.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION_STRING

from airflow_provider_claude_batch.exceptions import ClaudeBatchUnsupportedAirflowError

__all__ = [
    "AIRFLOW_VERSION",
    "PLUGIN_MENU_ENTRY",
    "SUPPORTED_AIRFLOW",
    "TRIGGER_ON_KILL",
    "aget_connection",
    "airflow_version",
    "check_supported",
    "metadata_session",
    "warn_degraded",
]

log = logging.getLogger(__name__)

#: The lowest supported release, the first minor above the tested ones, and the minors whose
#: smoke passes (pyproject says the same).
LOWEST_AIRFLOW = (3, 0, 6)
FIRST_UNTESTED_AIRFLOW = (3, 4, 0)
SUPPORTED_MINORS = ((3, 0), (3, 1), (3, 2), (3, 3))
SUPPORTED_AIRFLOW = ">=3.0.6,<3.4"


def airflow_version(version: str) -> tuple[int, int, int]:
    """``(major, minor, micro)`` of an Airflow version string. Pre-release and local parts
    (``3.4.0.dev0``, ``3.1.8+astro.1``) count as their release, so a development build of an
    untested minor is refused like its release; a string without a leading number is (0, 0, 0)."""
    match = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if match is None:
        return 0, 0, 0
    major, minor, micro = (int(part or 0) for part in match.groups())
    return major, minor, micro


def check_supported(version: str) -> tuple[int, int, int]:
    """The parsed ``version``, or :class:`ClaudeBatchUnsupportedAirflowError` naming it and the range."""
    parsed = airflow_version(version)
    if not (LOWEST_AIRFLOW <= parsed < FIRST_UNTESTED_AIRFLOW and parsed[:2] in SUPPORTED_MINORS):
        raise ClaudeBatchUnsupportedAirflowError(
            f"airflow-provider-claude-batch supports Apache Airflow {SUPPORTED_AIRFLOW} "
            f"(3.0 to 3.3); the installed Apache Airflow is {version}. Install a "
            "supported Airflow, or a release of this provider that supports yours."
        )
    return parsed


AIRFLOW_VERSION = check_supported(AIRFLOW_VERSION_STRING)

#: The triggerer calls ``BaseTrigger.on_kill`` when a user kills a deferred task (3.3+).
TRIGGER_ON_KILL = AIRFLOW_VERSION >= (3, 3, 0)
#: A plugin's ``external_views`` add entries to the UI's menus (3.1+).
PLUGIN_MENU_ENTRY = AIRFLOW_VERSION >= (3, 1, 0)

_warned: set[str] = set()


def warn_degraded(capability: str, lost: str, logger: logging.Logger | Any | None = None) -> bool:
    """Log once per process, as a warning, that this Airflow minor lacks ``capability`` and
    what is lost (``lost``, a sentence). Returns whether it logged (False: said already)."""
    if capability in _warned:
        return False
    _warned.add(capability)
    minor = f"{AIRFLOW_VERSION[0]}.{AIRFLOW_VERSION[1]}"
    (logger or log).warning("Airflow %s (%s) lacks %s: %s", minor, AIRFLOW_VERSION_STRING, capability, lost)
    return True


# --------------------------------------------------------------- connections in a trigger
async def aget_connection(hook: Any, conn_id: str) -> Any:
    """A connection looked up without blocking the triggerer's event loop: the hook's
    ``aget_connection`` (Airflow 3.1+), else, on 3.0, its ``get_connection`` in a thread (as
    the Apache providers do there). The same connection either way: nothing is lost."""
    getter = getattr(hook, "aget_connection", None)
    if getter is not None:
        return await getter(conn_id)
    return await asyncio.to_thread(hook.get_connection, conn_id)


# --------------------------------------------------------------- the api-server's names
def request_user_dependency() -> Callable[..., Any]:
    """The FastAPI dependency that resolves the request's Airflow user (api-server only)."""
    from airflow.api_fastapi.core_api.security import get_user

    return get_user


def auth_manager() -> Any:
    """The api-server's auth manager, asked which DAGs and connections a user may read."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def connection_details(conn_id: str) -> Any:
    """The auth manager's description of one connection, for ``is_authorized_connection``."""
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

    return ConnectionDetails(conn_id=conn_id)


def metadata_session() -> AbstractContextManager[Any]:
    """A session of the metadata database, committed and closed when the block ends."""
    from airflow.utils.session import create_session

    return create_session()


def metadata_models() -> tuple[Any, Any, Any]:
    """``(DagRun, TaskInstance, Connection)``: the metadata tables the page reads."""
    from airflow.models.connection import Connection
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance

    return DagRun, TaskInstance, Connection
