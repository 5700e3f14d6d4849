"""The emulator's command line (``python -m airflow_provider_claude_batch.testing``).

Invariants: every setting of ``EmulatorConfig`` has a flag, and ``--help`` shows each flag's
default; each flag lands in the setting it names (unset limits keep the API's, ``inf`` processing
never ends, ``--reply-chars`` takes ``LOW-HIGH`` or one length, ``--api-key`` repeats), as the
served emulator's ``GET /_emulator/config`` shows; fractions outside 0-1 or adding up past 1 and
unreadable prices exit with the usage before serving; it serves on ``127.0.0.1:8765`` by default,
and with ``--port 0`` it prints the base URL of the port it bound, once that socket listens, so a
caller can connect at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import anthropic
import httpx
import pytest

import airflow_provider_claude_batch.testing.__main__ as command_line
from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.testing import DEFAULT_API_KEY, EmulatorConfig
from airflow_provider_claude_batch.testing.federation import FederationRule
from tests.helpers import TEST_API_KEY, make_requests


def _parsed(*argv: str) -> tuple[argparse.Namespace, EmulatorConfig]:
    args = command_line.build_parser().parse_args(argv)
    return args, command_line.config_from(args)


def test_defaults() -> None:
    args, config = _parsed()
    assert (args.host, args.port, args.log_level) == ("127.0.0.1", 8765, "info")
    assert config.api_keys == frozenset({DEFAULT_API_KEY})
    assert (config.processing_seconds, config.cancel_seconds, config.latency_seconds) == (5.0, 1.0, 0.0)
    assert (config.max_requests_per_batch, config.max_bytes_per_batch) == (
        limits.MAX_REQUESTS_PER_BATCH,
        limits.MAX_BYTES_PER_BATCH,
    )
    assert config.reply_chars is None and config.gradual_ending is False and config.state_file is None
    assert (config.invalid_output_fraction, config.refusal_fraction, config.truncated_fraction) == (0, 0, 0)
    assert config.results_ranges is True and config.prices is None and config.queue_limit is None
    assert config.batch_rate_limit is None and config.batch_rate_window_seconds == 60.0
    assert config.federation == FederationRule()


def test_every_flag_reaches_the_config() -> None:
    args, config = _parsed(
        *("--host", "0.0.0.0", "--port", "0", "--log-level", "warning"),
        *("--api-key", "key-a", "--api-key", "key-b"),
        *("--processing-seconds", "inf", "--cancel-seconds", "2.5", "--latency-seconds", "0.2"),
        *("--max-requests", "10", "--max-bytes", "4096", "--queue-limit", "25"),
        *("--batch-rate-limit", "50", "--batch-rate-window-seconds", "0.5"),
        *("--errored-fraction", "0.1", "--expired-fraction", "0.05"),
        *("--reply-chars", "50-500", "--gradual", "--state-file", "state.json"),
    )
    assert (args.host, args.port, args.log_level) == ("0.0.0.0", 0, "warning")
    assert config.api_keys == frozenset({"key-a", "key-b"})
    assert math.isinf(config.processing_seconds)
    assert (config.cancel_seconds, config.latency_seconds) == (2.5, 0.2)
    assert (config.max_requests_per_batch, config.max_bytes_per_batch) == (10, 4096)
    assert config.queue_limit == 25
    assert (config.batch_rate_limit, config.batch_rate_window_seconds) == (50, 0.5)
    assert (config.errored_fraction, config.expired_fraction) == (0.1, 0.05)
    assert config.reply_chars == (50, 500)
    assert config.gradual_ending is True and config.state_file == "state.json"


def test_one_reply_length_is_a_fixed_length() -> None:
    assert _parsed("--reply-chars", "80")[1].reply_chars == (80, 80)


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "http"],
        ["--processing-seconds", "soon"],
        ["--no-such-flag"],
        ["--refusal-fraction", "1.5"],
        ["--invalid-output-fraction", "0.6", "--truncated-fraction", "0.6"],
        ["--errored-fraction", "0.7", "--expired-fraction", "0.7"],
        ["--reply-chars", "500-50"],
        ["--cancel-seconds", "-1"],
        ["--prices", '{"m": {"input": "cheap"}}'],
    ],
)
def test_bad_arguments_exit_with_usage_before_serving(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        command_line.main(argv)  # exits before it would serve (and block)
    assert (
        exited.value.code == 2 and "usage: python -m airflow_provider_claude_batch.testing" in capsys.readouterr().err
    )


#: Each setting of the emulator and the flag that sets it: a new setting needs a flag.
FLAGS = {
    "api_keys": "--api-key",
    "processing_seconds": "--processing-seconds",
    "cancel_seconds": "--cancel-seconds",
    "max_requests_per_batch": "--max-requests",
    "max_bytes_per_batch": "--max-bytes",
    "latency_seconds": "--latency-seconds",
    "errored_fraction": "--errored-fraction",
    "expired_fraction": "--expired-fraction",
    "reply_chars": "--reply-chars",
    "results_ranges": "--no-results-ranges",
    "federation": "--trust-identity-token",
    "gradual_ending": "--gradual",
    "state_file": "--state-file",
    "invalid_output_fraction": "--invalid-output-fraction",
    "refusal_fraction": "--refusal-fraction",
    "truncated_fraction": "--truncated-fraction",
    "prices": "--prices",
    "queue_limit": "--queue-limit",
    "batch_rate_limit": "--batch-rate-limit",
    "batch_rate_window_seconds": "--batch-rate-window-seconds",
    "list_lag_seconds": "--list-lag-seconds",
    "answer_digest": "--answer-digest",
}


def test_help_has_a_flag_for_every_setting_and_shows_each_default() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airflow_provider_claude_batch.testing", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert set(FLAGS) == {item.name for item in dataclasses.fields(EmulatorConfig)}
    options: dict[str, str] = {}  # each option's help, its wrapped lines joined
    for line in done.stdout.split("\n\ncontrol endpoints")[0].splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            options[flag] = line
        elif line.startswith("    ") and options:
            options[flag] += " " + line.strip()
    missing = [flag for flag in FLAGS.values() if flag not in options]
    assert missing == []
    assert [flag for flag, line in options.items() if flag != "-h" and "(default: " not in line] == []
    assert "(default: 5.0)" in options["--processing-seconds"] and "(default: 0.0)" in options["--refusal-fraction"]
    assert f"(default: {DEFAULT_API_KEY})" in options["--api-key"]
    assert all(
        f"/_emulator/{name}" in done.stdout for name in ("state", "config", "faults", "outcomes", "advance", "reset")
    )


def _serve(*flags: str) -> tuple[subprocess.Popen[str], str]:
    """The command line as a real process on a free port, and its base URL once it listens."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_claude_batch.testing",
            "--port",
            "0",
            "--log-level",
            "warning",
            *flags,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # printed once the socket listens
    return process, line.strip().rsplit(" ", 1)[-1]


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=10)


def test_the_new_flags_reach_the_served_emulator(tmp_path: Path) -> None:
    """Over real HTTP: the settings the process serves with, as ``GET /_emulator/config`` shows
    them, and one of them at work (every structured answer truncated)."""
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"house-model": {"input": 2, "output": 8}}))
    process, base_url = _serve(
        *("--api-key", TEST_API_KEY, "--processing-seconds", "0", "--no-results-ranges"),
        *("--invalid-output-fraction", "0.1", "--refusal-fraction", "0.2", "--truncated-fraction", "0.7"),
        *("--prices", str(prices), "--trust-identity-token", "jwt-a", "--trust-identity-token", "jwt-b"),
        *("--federation-rule-id", "fdrl_x", "--organization-id", "org-x", "--access-token-seconds", "60"),
    )
    try:
        shown = httpx.get(f"{base_url}/_emulator/config").json()
        assert (shown["invalid_output_fraction"], shown["refusal_fraction"], shown["truncated_fraction"]) == (
            0.1,
            0.2,
            0.7,
        )
        assert shown["results_ranges"] is False and shown["prices"] == str(prices)
        assert shown["federation"] == {
            "rule_id": "fdrl_x",
            "organization_id": "org-x",
            "trusted_identity_tokens": 2,
            "token_seconds": 60,
        }
        client = anthropic.Anthropic(api_key=TEST_API_KEY, base_url=base_url, _strict_response_validation=True)
        schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
        requests = make_requests(40, max_tokens=64)
        for request in requests:
            request["params"]["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
            request["params"]["model"] = "house-model"
        batch = client.messages.batches.create(requests=requests)
        stops = [line.result.message.stop_reason for line in client.messages.batches.results(batch.id)]
        assert 15 < stops.count("max_tokens") < 40 and stops.count("refusal") > 0
        billed = httpx.get(f"{base_url}/_emulator/state").json()["billed"]
        expected = (billed["input_tokens"] * 2 + billed["output_tokens"] * 8) / 1e6 / 2  # the --prices file's
        assert billed["requests"] == 40 and billed["cost_usd"] == pytest.approx(expected, abs=1e-6)
    finally:
        _stop(process)


def test_command_line_server() -> None:
    """A real process: port 0 binds a free port, whose URL it prints once it listens."""
    process, base_url = _serve("--processing-seconds", "0", "--api-key", TEST_API_KEY)
    try:
        assert base_url.startswith("http://127.0.0.1:") and not base_url.endswith(":0")
        client = anthropic.Anthropic(api_key=TEST_API_KEY, base_url=base_url, _strict_response_validation=True)
        batch = client.messages.batches.create(requests=make_requests(2))
        assert len(list(client.messages.batches.results(batch.id))) == 2
    finally:
        _stop(process)
