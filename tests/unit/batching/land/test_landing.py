"""The landing's steps without Airflow (batching/land/landing.py), against the emulator: a
wait handed to the caller and resumed with ``settle``, rounds that bill only what ended for a
transient reason, a timeout that cancels only this run's batches, and a rerun that bills and
downloads nothing new. Rows by custom_id and the emulator's counters are the oracles."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_provider_claude_batch.batching.api.batch_state import BatchState
from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.batching.land.landing import Landing, LandingSettings
from airflow_provider_claude_batch.batching.state.manifest import load_manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir
from airflow_provider_claude_batch.batching.wait.poller import Poller, retrieve_states, wait_until_ended
from airflow_provider_claude_batch.batching.wait.wait_event import WaitEvent
from airflow_provider_claude_batch.exceptions import ClaudeBatchWaitTimeoutError
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.unit.conftest import SubmitRun

ROWS = [{"text": f"question {i}"} for i in range(5)]
LOG = logging.getLogger("tests.landing")


class Deferred(Exception):
    """What a deferring wait raises: the landing stops, and resumes from the manifest."""


def _landing(run_dir: Path, destination: Path, **settings: Any) -> Landing:
    hook = ClaudeBatchHook(retry_backoff=0)
    manifest = load_manifest(RunDir.of(run_dir))

    def wait_here(batch_ids: list[str], *, theirs: bool) -> WaitEvent:
        poller = Poller(batch_ids)
        return wait_until_ended(poller, lambda ids: retrieve_states(hook, ids), 0.01, log=LOG)

    return Landing(
        manifest,
        RunDir.of(run_dir),
        hook,
        LandingSettings(destination=str(destination), prices=PriceTable(), **settings),
        wait=wait_here,
        log=LOG,
    )


def test_a_landing_writes_one_row_per_request_and_resends_only_transient_failures(
    submit_run: SubmitRun, emulator: RunningEmulator, tmp_path: Path
) -> None:
    emulator.emulator.script_outcomes({"row-1": "expired", "row-3": "errored:invalid_request_error"})
    _, run_dir = submit_run(ROWS, max_requests=2)
    landed = _landing(run_dir, tmp_path / "out", max_retry_rounds=1).run()
    table = pq.read_table(tmp_path / "out").to_pydict()
    outcomes = dict(zip(table["custom_id"], table["result_type"], strict=True))
    assert sorted(outcomes) == [f"row-{i}" for i in range(5)]
    assert outcomes["row-1"] == "succeeded" and outcomes["row-3"] == "errored"
    assert emulator.emulator.stats["batches_created"] == 3 + 1  # three chunks, one round
    assert landed.summary["rows"] == 5 and landed.files == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    # Landing again bills nothing and downloads nothing: the raw results were saved.
    results_calls = emulator.emulator.calls["results"]
    _landing(run_dir, tmp_path / "out", max_retry_rounds=1).run()
    assert emulator.emulator.stats["batches_created"] == 4
    assert emulator.emulator.calls["results"] == results_calls
    assert pq.read_table(tmp_path / "out").num_rows == 5


def test_a_wait_the_caller_defers_resumes_with_settle(
    submit_run: SubmitRun, emulator: RunningEmulator, tmp_path: Path
) -> None:
    emulator.emulator.config.processing_seconds = 3600
    _, run_dir = submit_run(ROWS)
    asked: list[tuple[list[str], bool]] = []

    def defer(batch_ids: list[str], *, theirs: bool) -> WaitEvent:
        asked.append((batch_ids, theirs))
        raise Deferred

    landing = _landing(run_dir, tmp_path / "out")
    landing.wait = defer
    with pytest.raises(Deferred):
        landing.run()
    assert asked == [(load_manifest(RunDir.of(run_dir)).batch_ids(), False)]
    assert not (tmp_path / "out").exists()
    # The trigger saw the batch end; the resumed task settles the event and lands.
    emulator.emulator.advance(3600)
    hook = ClaudeBatchHook()
    states = {b: s for b, s in retrieve_states(hook, asked[0][0]).items() if isinstance(s, BatchState)}
    assert len(states) == 1
    resumed = _landing(run_dir, tmp_path / "out")
    resumed.settle(WaitEvent(status="success", batches=states))
    assert resumed.run().summary["rows"] == 5
    assert emulator.emulator.stats["batches_created"] == 1


def test_a_timed_out_wait_cancels_this_run_s_open_batches_and_fails(
    submit_run: SubmitRun, emulator: RunningEmulator, tmp_path: Path
) -> None:
    emulator.emulator.config.processing_seconds = 3600
    _, run_dir = submit_run(ROWS)
    landing = _landing(run_dir, tmp_path / "out")
    own = landing.manifest.batch_ids()
    with pytest.raises(ClaudeBatchWaitTimeoutError, match="wait_timeout"):
        landing.settle(WaitEvent(status="timeout", open=[*own, "msgbatch_of_another_run"], message="late"))
    assert emulator.emulator.calls["cancel"] == 1  # only this run's batch


def test_answers_reach_the_store_when_the_parquet_commit_fails(
    submit_run: SubmitRun, emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every batch's results matched their requests, then the destination could not be written
    (a storage outage stands in for it: the commit raises). The answers are sound: they are in
    the store now, so a rerun reuses them instead of paying once the API drops the results."""
    from airflow_provider_claude_batch.batching.land import landing as landing_module
    from airflow_provider_claude_batch.batching.reuse.answer_store import AnswerStore
    from airflow_provider_claude_batch.batching.state.manifest import Manifest

    manifest, run_dir = submit_run(ROWS)
    manifest.reuse = {"rows": len(ROWS), "new": len(ROWS)}  # a run planned for reuse stores its answers
    manifest.save(RunDir.of(run_dir))

    def outage(*args: Any, **kwargs: Any) -> Any:
        raise OSError("the object store is down")

    monkeypatch.setattr(landing_module, "commit", outage)
    with pytest.raises(OSError, match="down"):
        _landing(run_dir, tmp_path / "out").run()
    store = AnswerStore(
        RunDir.of(run_dir).for_manifest(Manifest.from_json((run_dir / "manifest.json").read_bytes())).work_dir
    )
    stored = sum(len(files) for files in store.files().values())
    assert stored > 0
    assert not (tmp_path / "out").exists()
