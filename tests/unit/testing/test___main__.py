"""The emulator's command line (``python -m airflow_provider_claude_batch.testing``).

Invariants: each flag lands in the ``EmulatorConfig`` it names (unset limits keep the API's,
``inf`` processing never ends, ``--reply-chars`` takes ``LOW-HIGH`` or one length, ``--api-key``
repeats), it serves on ``127.0.0.1:8765`` by default, and with ``--port 0`` it prints the base URL
of the port it bound, once that socket listens, so a caller can connect at once.
"""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import anthropic
import pytest

import airflow_provider_claude_batch.testing.__main__ as command_line
from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.testing import DEFAULT_API_KEY, EmulatorConfig
from tests.helpers import TEST_API_KEY, make_requests


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ``main`` would serve: ``serve_forever``'s arguments, instead of serving."""
    calls: list[dict[str, Any]] = []

    def record(config: EmulatorConfig, **where: Any) -> None:
        calls.append({"config": config, **where})

    monkeypatch.setattr(command_line, "serve_forever", record)
    return calls


def test_defaults(served: list[dict[str, Any]]) -> None:
    command_line.main([])
    [call] = served
    assert (call["host"], call["port"], call["log_level"]) == ("127.0.0.1", 8765, "info")
    config = call["config"]
    assert config.api_keys == frozenset({DEFAULT_API_KEY})
    assert (config.processing_seconds, config.cancel_seconds, config.latency_seconds) == (5.0, 1.0, 0.0)
    assert (config.max_requests_per_batch, config.max_bytes_per_batch) == (
        limits.MAX_REQUESTS_PER_BATCH,
        limits.MAX_BYTES_PER_BATCH,
    )
    assert config.reply_chars is None and config.gradual_ending is False and config.state_file is None


def test_every_flag_reaches_the_config(served: list[dict[str, Any]]) -> None:
    command_line.main(
        [
            *("--host", "0.0.0.0", "--port", "0", "--log-level", "warning"),
            *("--api-key", "key-a", "--api-key", "key-b"),
            *("--processing-seconds", "inf", "--cancel-seconds", "2.5", "--latency-seconds", "0.2"),
            *("--max-requests", "10", "--max-bytes", "4096"),
            *("--errored-fraction", "0.1", "--expired-fraction", "0.05"),
            *("--reply-chars", "50-500", "--gradual", "--state-file", "state.json"),
        ]
    )
    [call] = served
    assert (call["host"], call["port"], call["log_level"]) == ("0.0.0.0", 0, "warning")
    config = call["config"]
    assert config.api_keys == frozenset({"key-a", "key-b"})
    assert math.isinf(config.processing_seconds)
    assert (config.cancel_seconds, config.latency_seconds) == (2.5, 0.2)
    assert (config.max_requests_per_batch, config.max_bytes_per_batch) == (10, 4096)
    assert (config.errored_fraction, config.expired_fraction) == (0.1, 0.05)
    assert config.reply_chars == (50, 500)
    assert config.gradual_ending is True and config.state_file == "state.json"


def test_one_reply_length_is_a_fixed_length(served: list[dict[str, Any]]) -> None:
    command_line.main(["--reply-chars", "80"])
    assert served[0]["config"].reply_chars == (80, 80)


@pytest.mark.parametrize("argv", [["--port", "http"], ["--processing-seconds", "soon"], ["--no-such-flag"]])
def test_bad_arguments_exit_with_usage_before_serving(
    served: list[dict[str, Any]], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        command_line.main(argv)
    assert (
        exited.value.code == 2 and "usage: python -m airflow_provider_claude_batch.testing" in capsys.readouterr().err
    )
    assert served == []


def test_command_line_server() -> None:
    """A real process: port 0 binds a free port, whose URL it prints once it listens."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_claude_batch.testing",
            "--port",
            "0",
            "--processing-seconds",
            "0",
            "--api-key",
            TEST_API_KEY,
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the socket listens
        base_url = line.strip().rsplit(" ", 1)[-1]
        assert base_url.startswith("http://127.0.0.1:") and not base_url.endswith(":0")
        client = anthropic.Anthropic(api_key=TEST_API_KEY, base_url=base_url, _strict_response_validation=True)
        batch = client.messages.batches.create(requests=make_requests(2))
        assert len(list(client.messages.batches.results(batch.id))) == 2
    finally:
        process.terminate()
        process.wait(timeout=10)
