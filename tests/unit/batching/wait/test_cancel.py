"""Cancel batches and say so (batching/wait/cancel.py), with the real hook against the emulator."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_claude_batch.batching.wait.cancel import acancel_batches, cancel_batches
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.helpers import make_requests

LOG = logging.getLogger("tests.cancel")


def _one_ended_one_running(emulator: RunningEmulator, hook: ClaudeBatchHook) -> tuple[str, str]:
    emulator.emulator.config.processing_seconds = 3600
    ended = hook.create_batch(make_requests(2, prefix="ended")).id
    emulator.emulator.end_all()
    running = hook.create_batch(make_requests(3, prefix="running")).id
    return ended, running


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG.name and r.levelno == logging.WARNING]


def test_every_batch_is_tried_none_raises_and_each_is_logged(
    emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    hook = ClaudeBatchHook()
    ended, running = _one_ended_one_running(emulator, hook)
    accepted = cancel_batches(hook, [ended, "msgbatch_missing", running], reason="Input changed", log=LOG)
    assert accepted == [ended, running]
    assert emulator.emulator.stats["batches_canceled"] == 1  # only the running one needed it
    assert hook.retrieve_batch(running).processing_status == "ended"
    lines = _warnings(caplog)
    assert lines[0] == f"Input changed: canceled batch {ended} (ended)."
    assert lines[1].startswith("Input changed: could not cancel batch msgbatch_missing: ")
    assert lines[2].startswith(f"Input changed: canceled batch {running} (")


async def test_the_async_variant_follows_the_same_rule(
    emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    hook = ClaudeBatchHook()
    ended, running = _one_ended_one_running(emulator, hook)
    accepted = await acancel_batches(hook, ["msgbatch_missing", running, ended], reason="Task killed", log=LOG)
    assert accepted == [running, ended]
    assert emulator.emulator.stats["batches_canceled"] == 1
    lines = _warnings(caplog)
    assert lines[0].startswith("Task killed: could not cancel batch msgbatch_missing: ")
    assert [line.split(" (")[0] for line in lines[1:]] == [
        f"Task killed: canceled batch {running}",
        f"Task killed: canceled batch {ended}",
    ]


def test_no_batches_no_calls(emulator: RunningEmulator) -> None:
    assert cancel_batches(ClaudeBatchHook(), [], reason="nothing") == []
    assert sum(emulator.emulator.calls.values()) == 0
