"""The core's API Protocols (batching/api/client.py) name calls the hook really has, with the
same parameters: mypy checks it in hooks/claude_batch.py; this checks it at run time too, so a
Protocol cannot drift from the hook unnoticed where the lint is not run."""

from __future__ import annotations

import inspect

import pytest

from airflow_provider_claude_batch.batching.api import client
from airflow_provider_claude_batch.batching.submit.create_once import BatchCreator
from airflow_provider_claude_batch.batching.submit.submission import SubmitClient
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook

PROTOCOLS = [
    client.BatchReader,
    client.BatchCanceller,
    client.AsyncBatchCanceller,
    client.ResultsReader,
    client.TokenCounter,
    BatchCreator,
    SubmitClient,
]


def _calls(protocol: type) -> dict[str, object]:
    return {
        name: member
        for klass in protocol.__mro__
        if klass not in (object,) and getattr(klass, "_is_protocol", False)
        for name, member in vars(klass).items()
        if not name.startswith("_")
    }


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_the_hook_has_every_call_of_the_protocol_with_its_parameters(protocol: type) -> None:
    calls = _calls(protocol)
    assert calls, f"{protocol.__name__} names no call"
    for name, member in calls.items():
        actual = inspect.getattr_static(ClaudeBatchHook, name)
        if isinstance(member, property):
            assert isinstance(actual, property), name
            continue
        assert callable(member) and callable(actual)
        wanted = list(inspect.signature(member).parameters)
        has = list(inspect.signature(actual).parameters)
        assert wanted == has[: len(wanted)], f"{name}: the Protocol says {wanted}, the hook has {has}"
        assert inspect.iscoroutinefunction(member) == inspect.iscoroutinefunction(actual), name
