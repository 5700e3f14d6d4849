"""The fixture DAG authors get from the provider's pytest plugin."""

from __future__ import annotations

import json
import os

from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.helpers import make_requests


def test_claude_batch_emulator_fixture_backs_the_default_connection(claude_batch_emulator: RunningEmulator) -> None:
    connection = json.loads(os.environ["AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT"])
    assert connection["host"] == claude_batch_emulator.base_url
    claude_batch_emulator.emulator.script_outcomes({"req-1": "errored:overloaded_error"})
    hook = ClaudeBatchHook()
    batch = hook.create_batch(make_requests(3))
    outcomes = {
        json.loads(line)["custom_id"]: json.loads(line)["result"]["type"] for line in hook.iter_results_lines(batch.id)
    }
    assert outcomes == {"req-0": "succeeded", "req-1": "errored", "req-2": "succeeded"}
    assert claude_batch_emulator.emulator.stats["batches_created"] == 1


def test_each_test_gets_a_clean_emulator(claude_batch_emulator: RunningEmulator) -> None:
    assert claude_batch_emulator.emulator.stats["batches_created"] == 0
    assert claude_batch_emulator.emulator.batch_ids() == []
