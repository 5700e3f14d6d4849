"""Every error is in one module, in one of two families, and the module exports them all."""

from __future__ import annotations

import inspect
import pkgutil
from importlib import import_module

import airflow_provider_claude_batch
from airflow_provider_claude_batch import exceptions
from airflow_provider_claude_batch.exceptions import (
    ClaudeBatchError,
    ClaudeBatchInputError,
    ClaudeBatchJobError,
    ClaudeBatchUnsupportedAirflowError,
)


def _provider_errors() -> dict[str, type[BaseException]]:
    """Every public exception class defined anywhere in the package (the emulator's aside)."""
    found: dict[str, type[BaseException]] = {}
    for module in pkgutil.walk_packages(airflow_provider_claude_batch.__path__, "airflow_provider_claude_batch."):
        if ".testing" in module.name or module.name.endswith("__main__"):
            continue
        for name, value in vars(import_module(module.name)).items():
            is_error = inspect.isclass(value) and issubclass(value, BaseException) and not name.startswith("_")
            if is_error and value.__module__.startswith("airflow_provider_claude_batch"):
                found[name] = value
    return found


def test_every_error_lives_in_exceptions_and_is_exported() -> None:
    errors = _provider_errors()
    assert {error.__module__ for error in errors.values()} == {exceptions.__name__}
    assert set(errors) == set(exceptions.__all__)


def test_every_error_is_an_input_error_or_a_job_error() -> None:
    for name in exceptions.__all__:
        error = getattr(exceptions, name)
        assert issubclass(error, ClaudeBatchError), name
        # Raised at import on an unsupported Airflow, before anything ran: neither family.
        if error not in (
            ClaudeBatchError,
            ClaudeBatchInputError,
            ClaudeBatchJobError,
            ClaudeBatchUnsupportedAirflowError,
        ):
            assert issubclass(error, ClaudeBatchInputError) != issubclass(error, ClaudeBatchJobError), name
    # Input errors are ValueErrors, as Python's own checks of arguments are.
    assert issubclass(ClaudeBatchInputError, ValueError) and not issubclass(ClaudeBatchJobError, ValueError)
