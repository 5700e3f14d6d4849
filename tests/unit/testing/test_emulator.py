"""The emulator's entry module: its public names, and serving an emulator in a thread.

Invariants: every public name is importable from ``testing.emulator`` (and the package's from
``testing``) as the very object its own module defines; a started emulator listens before
``start_emulator`` returns, so the first call needs no wait; each start serves a new emulator on
a port of its own; stopping ends the server's thread.
"""

from __future__ import annotations

import socket

import anthropic
import httpx
import pytest

import airflow_provider_claude_batch.testing as package
from airflow_provider_claude_batch.testing import emulator as entry
from airflow_provider_claude_batch.testing import emulator_app, emulator_requests, emulator_results, emulator_state
from airflow_provider_claude_batch.testing.emulator import (
    DEFAULT_API_KEY,
    EmulatorConfig,
    bind_socket,
    start_emulator,
)
from tests.helpers import make_requests

#: name -> the module that defines it.
HOMES = {
    "DEFAULT_API_KEY": emulator_state,
    "ENDPOINTS": emulator_state,
    "Clock": emulator_state,
    "Emulator": emulator_state,
    "EmulatorConfig": emulator_state,
    "Fault": emulator_state,
    "EmulatorHTTPError": emulator_requests,
    "count_input_tokens": emulator_requests,
    "EMULATOR_TAG": emulator_results,
    "RESULTS_CHUNK_BYTES": emulator_app,
    "create_app": emulator_app,
}


@pytest.mark.parametrize("name", sorted(entry.__all__))
def test_every_public_name_is_importable_from_the_entry_module(name: str) -> None:
    home = HOMES.get(name, entry)
    assert getattr(entry, name) is getattr(home, name)


@pytest.mark.parametrize("name", sorted(package.__all__))
def test_the_packages_names_are_the_entry_modules(name: str) -> None:
    assert getattr(package, name) is getattr(entry, name)


def test_a_started_emulator_answers_at_once_and_stops() -> None:
    with start_emulator() as running:
        # No wait: the socket listened before start_emulator returned.
        client = anthropic.Anthropic(api_key=running.api_key, base_url=running.base_url, max_retries=0)
        batch = client.messages.batches.create(requests=make_requests(2))
        assert len(list(client.messages.batches.results(batch.id))) == 2
        assert running.api_key == DEFAULT_API_KEY
        assert running.base_url == f"http://127.0.0.1:{running.port}" == running.emulator.base_url
        assert running.thread.is_alive()
    assert not running.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{running.base_url}/_emulator/state")


def test_each_start_serves_a_new_emulator_on_its_own_port() -> None:
    config = EmulatorConfig(api_keys=frozenset({"key-b", "key-a"}))
    with start_emulator(config) as one, start_emulator() as other:
        assert one.port != other.port and one.emulator is not other.emulator
        assert one.emulator.config is config and one.api_key == "key-a"  # the first in order
        httpx.post(f"{one.base_url}/_emulator/advance", params={"seconds": 1}).raise_for_status()
        assert httpx.get(f"{other.base_url}/_emulator/state").json()["batches"] == 0


def test_bind_socket_listens_on_a_free_port() -> None:
    with bind_socket() as listening:
        host, port = listening.getsockname()
        assert host == "127.0.0.1" and port > 0
        with socket.create_connection((host, port), timeout=5):
            pass  # accepted into the queue, before anything serves it
