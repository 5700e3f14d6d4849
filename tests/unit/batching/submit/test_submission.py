"""One submission: stage, budget, reconcile, create; staging kept only when the manifest names
it (batching/submit/submission.py), against the emulator."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
from airflow_provider_claude_batch.batching.state.manifest import Manifest, load_manifest
from airflow_provider_claude_batch.batching.state.run_dir import RunDir, WorkDir
from airflow_provider_claude_batch.batching.submit.staging import StagedRun, stage_requests
from airflow_provider_claude_batch.batching.submit.submission import (
    InputChangePolicy,
    Submission,
    SubmitTask,
    check_budget,
)
from airflow_provider_claude_batch.batching.submit.token_estimate import count_staged
from airflow_provider_claude_batch.exceptions import ClaudeBatchBudgetError, ClaudeBatchManifestError
from airflow_provider_claude_batch.hooks.claude_batch import ClaudeBatchHook
from airflow_provider_claude_batch.testing import RunningEmulator

SPEC = RequestSpec(prompt="{text}", model="claude-haiku-4-5", max_tokens=8)


def _submission(
    run_dir: RunDir, *, max_cost_usd: float | None = None, policy: InputChangePolicy = "fail"
) -> Submission:
    return Submission(
        run_dir,
        SubmitTask("dag", "run", "submit", -1, ClaudeBatchHook.default_conn_name),
        SPEC,
        ChunkLimits(max_requests=2),
        ClaudeBatchHook(retry_backoff=0),
        prices=PriceTable.load({"claude-haiku-4-5": {"input": 1.0, "output": 5.0}}),
        max_cost_usd=max_cost_usd,
        policy=policy,
        logger=logging.getLogger("tests.submission"),
    )


def _staging(run_dir: RunDir) -> list[str]:
    return sorted(run_dir.staging_names())


def test_a_submission_creates_once_and_keeps_only_the_staging_its_manifest_names(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    run_dir = WorkDir(str(tmp_path)).run("dag", "run", "submit")
    first = _submission(run_dir).submit(["a", "b", "c"], source_location="rows")
    assert first is not None and not first.reattached and len(first.created) == 2
    named = _staging(run_dir)
    assert len(named) == 1 and load_manifest(run_dir).source == "rows"
    # A second try of the same input re-attaches: nothing created, its own staging dropped.
    again = _submission(run_dir).submit(["a", "b", "c"])
    assert again is not None and again.reattached and again.created == []
    assert _staging(run_dir) == named and emulator.emulator.stats["batches_created"] == 2
    # Every batch has its index entry in the work directory the run folder belongs to.
    assert sorted(p.name for p in (tmp_path / "_batches").glob("*.json")) == sorted(
        f"{batch_id}.json" for batch_id in first.manifest.batch_ids()
    )


def test_an_estimate_after_a_submit_of_the_same_input_says_it_re_attaches(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """A dry run of a task whose earlier try created its batches sends nothing more: $0, no
    count, no create; a changed input is estimated as a first try."""
    run_dir = WorkDir(str(tmp_path)).run("dag", "run", "submit")
    first = _submission(run_dir).submit(["a", "b", "c"], source_location="rows")
    assert first is not None and len(first.created) == 2
    named = _staging(run_dir)
    estimate = _submission(run_dir).estimate(["a", "b", "c"])
    assert estimate is not None
    assert (estimate.requests, estimate.batches, estimate.cost_usd, estimate.reattached_batches) == (0, 0, 0.0, 2)
    assert estimate.rows == 3 and "already created 2 batch(es)" in estimate.describe()
    stats = emulator.emulator.stats
    assert stats["batches_created"] == 2 and emulator.emulator.calls["count_tokens"] == 0
    assert _staging(run_dir) == named  # the estimate's own staging is gone, the run's kept
    changed = _submission(run_dir).estimate(["a", "b", "c", "d"])
    assert changed is not None and changed.reattached_batches == 0 and changed.requests == 4
    # A chunk the earlier try has not created yet would be sent by a submit: never $0 then.
    manifest = load_manifest(run_dir)
    manifest.batches[-1].batch_id = None
    manifest.save(run_dir)
    partial = _submission(run_dir).estimate(["a", "b", "c"])
    assert partial is not None and partial.reattached_batches == 0 and partial.requests == 3


def test_refusals_leave_no_staging_and_create_nothing(tmp_path: Path, emulator: RunningEmulator) -> None:
    run_dir = WorkDir(str(tmp_path)).run("dag", "run", "submit")
    with pytest.raises(ClaudeBatchBudgetError, match="over max_cost_usd"):
        _submission(run_dir, max_cost_usd=1e-9).submit(["a", "b"])
    assert _staging(run_dir) == []
    assert _submission(run_dir).submit([]) is None  # no rows: nothing to submit
    assert _staging(run_dir) == [] and emulator.emulator.stats["batches_created"] == 0
    assert _submission(run_dir).submit(["a"]) is not None
    kept = _staging(run_dir)
    with pytest.raises(ClaudeBatchManifestError, match="changed since an earlier try"):
        _submission(run_dir).submit(["other"])
    assert _staging(run_dir) == kept and emulator.emulator.stats["batches_created"] == 1


def test_resubmitting_changed_input_keeps_the_replaced_manifest(tmp_path: Path, emulator: RunningEmulator) -> None:
    run_dir = WorkDir(str(tmp_path)).run("dag", "run", "submit")
    old = _submission(run_dir).submit(["a"])
    new = _submission(run_dir, policy="resubmit").submit(["b"])
    assert old is not None and new is not None and new.created != old.created
    replaced = [p.name for p in run_dir.path.iterdir() if p.name.startswith("manifest.replaced-")]
    assert len(replaced) == 1
    assert Manifest.from_json((run_dir.path / replaced[0]).read_bytes()).batch_ids() == old.created
    assert len(_staging(run_dir)) == 1 and emulator.emulator.stats["batches_created"] == 2


BUDGET_PRICES = PriceTable.load({"m": {"input": 1, "output": 5, "cache_write": 1.25, "cache_read": 0.1}})


def _staged(tmp_path: Path, rows: int, model: str = "m") -> StagedRun:
    spec = RequestSpec(prompt="{text}", model=model, max_tokens=1000)
    return stage_requests([f"question {i}" for i in range(rows)], spec, ChunkLimits(), tmp_path)


def test_a_run_over_budget_is_stopped_with_what_it_could_cost(tmp_path: Path) -> None:
    staged = _staged(tmp_path, 2_000)
    ceiling, unknown = check_budget(staged, BUDGET_PRICES, None)
    assert ceiling is not None and unknown == []
    # 2,000 answers of at most 1,000 tokens at $5/M, halved, is $5 before any input.
    assert 5 < ceiling < 5.2
    assert check_budget(staged, BUDGET_PRICES, 10) == (ceiling, [])
    with pytest.raises(ClaudeBatchBudgetError) as raised:
        check_budget(staged, BUDGET_PRICES, 2.5)
    message = str(raised.value)
    assert message.startswith(
        f"2000 requests could cost up to ${ceiling:,.2f} at batch prices, over max_cost_usd $2.50"
    )
    assert "Nothing was submitted" in message
    # It says the ceiling prices every answer at max_tokens, and splits it: $5 of it is output.
    assert (
        "a ceiling, not a forecast: it prices every answer at its max_tokens (2,000,000 output tokens, $5.00)"
        in message
    )
    input_bytes = staged.tally["m"].input_bytes
    assert f"every byte of input as a token ({input_bytes:,} bytes, ${ceiling - 5:.4f};" in message
    # Without counted tokens no expected cost can be given: it says how to get one.
    assert "Expected" not in message and "Set count_tokens_sample to count the input tokens" in message


def test_a_counted_budget_refusal_gives_the_input_s_expected_cost(tmp_path: Path, emulator: RunningEmulator) -> None:
    """With count_tokens_sample the input is known (counted tokens at the input price); the
    output still is not, so the refusal gives the input's cost beside the ceiling."""
    staged = _staged(tmp_path, 2_000)
    counted = count_staged(staged, tmp_path, ClaudeBatchHook().count_tokens, BUDGET_PRICES, sample=20)[1]
    tokens = counted.tally["m"].input_bytes
    ceiling = check_budget(counted, BUDGET_PRICES, None)[0]
    with pytest.raises(ClaudeBatchBudgetError) as raised:
        check_budget(counted, BUDGET_PRICES, 2.5, counted=True)
    message = str(raised.value)
    assert message.startswith(
        f"2000 requests could cost up to ${ceiling:,.2f} at batch prices, over max_cost_usd $2.50"
    )
    assert "prices every answer at its max_tokens (2,000,000 output tokens, $5.00)" in message
    expected = tokens * 1.0 / 1_000_000 / 2  # $1 per million input tokens, halved
    assert f"Expected: the input alone, about {tokens:,} tokens as counted with count_tokens_sample, " in message
    assert f"costs ${expected:.4f} at batch prices; the answers add at most $5.00." in message
    assert "Set count_tokens_sample" not in message


def test_a_submission_that_counts_tokens_refuses_with_the_expected_cost(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    run_dir = WorkDir(str(tmp_path)).run("dag", "run", "submit")
    counting = dataclasses.replace(_submission(run_dir, max_cost_usd=1e-9), count_tokens_sample=2)
    with pytest.raises(ClaudeBatchBudgetError, match=r"Expected: the input alone, about \d+ tokens as counted"):
        counting.submit(["a", "b", "c"])
    assert emulator.emulator.calls["count_tokens"] == 2 and emulator.emulator.stats["batches_created"] == 0


def test_a_budget_needs_every_model_priced(tmp_path: Path) -> None:
    staged = _staged(tmp_path, 3, model="house-model")
    assert check_budget(staged, BUDGET_PRICES, None) == (None, ["model house-model has no price"])
    with pytest.raises(ClaudeBatchBudgetError, match=r"could cost is unknown: model house-model has no price"):
        check_budget(staged, BUDGET_PRICES, 100)


def test_a_budget_cannot_bound_server_tools(tmp_path: Path) -> None:
    """A web search's results come back as input tokens and each search has a fee: no byte count
    of the request bounds them, so a budget refuses rather than pass a ceiling that is not one."""
    spec = RequestSpec(
        prompt="{text}",
        model="m",
        max_tokens=100,
        params={"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]},
    )
    staged = stage_requests(["what happened today?"], spec, ChunkLimits(), tmp_path)
    ceiling, unknown = check_budget(staged, BUDGET_PRICES, None)
    assert ceiling is None and unknown == [
        "requests use server tools (web_search_20250305) whose results no request bounds"
    ]
    with pytest.raises(ClaudeBatchBudgetError, match="web_search_20250305.*Nothing was submitted"):
        check_budget(staged, BUDGET_PRICES, 100)


def test_keep_columns_are_checked_and_can_be_renamed(tmp_path: Path) -> None:
    from airflow_provider_claude_batch.batching.land.parts import keep_columns_spec, output_schema
    from airflow_provider_claude_batch.batching.submit.submission import new_manifest
    from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

    spec = RequestSpec(prompt="{text}", model="m", max_tokens=10)
    source = [{"text": "hi", "product": "ios"}, {"text": "yo", "product": "web"}]
    staged = stage_requests(source, spec, ChunkLimits(), tmp_path)
    manifest = new_manifest(
        staged, dag_id="d", run_id="r", task_id="t", map_index=-1, conn_id="c", spec=spec, chunk_limits=ChunkLimits()
    )

    def schema(keep: object) -> list[str]:
        columns, rename = keep_columns_spec(keep)
        return output_schema(tmp_path, manifest, columns, rename).names[-len(columns) :]

    assert schema(["product"]) == ["product"]
    assert schema({"text": "input_text", "product": "product"}) == ["input_text", "product"]
    with pytest.raises(ClaudeBatchInputError, match=r"\['text'\] clash with result columns.*'text': 'input_text'"):
        schema(["text"])
    with pytest.raises(ClaudeBatchInputError, match=r"name two columns \['x'\]"):
        schema({"text": "x", "product": "x"})
    with pytest.raises(ClaudeBatchInputError, match=r"\['nope'\] are not among the saved input columns"):
        schema(["nope"])
    for bad in ("product", {"product": 3}, [1]):
        with pytest.raises(ClaudeBatchInputError, match="keep_columns (items )?must"):
            keep_columns_spec(bad)
