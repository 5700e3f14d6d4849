"""What an ended batch that did not land billed, from its raw results: priced like landing,
unknown (never part of a sum) with an unpriced model, remembered once priced, and an unreadable
file a note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_claude_batch.batching.api.pricing import PriceTable
from airflow_provider_claude_batch.batching.state.batch_index import BatchOwner
from airflow_provider_claude_batch.batching.state.run_dir import WorkDir
from airflow_provider_claude_batch.plugins import batch_costs
from airflow_provider_claude_batch.plugins.batch_costs import raw_costs, raw_results_cost


def _line(custom_id: str, model: str, tokens: tuple[int, int] | None) -> str:
    if tokens is None:
        result = {"type": "errored", "error": {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}}
    else:
        usage = {"input_tokens": tokens[0], "output_tokens": tokens[1]}
        message = {
            "model": model,
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "usage": usage,
        }
        result = {"type": "succeeded", "message": message}
    return json.dumps({"custom_id": custom_id, "result": result})


def _raw(work_dir: WorkDir, run_id: str, batch_id: str, lines: list[str]) -> BatchOwner:
    run_dir = work_dir.run("nightly", run_id, "submit")
    (run_dir.path / "raw").mkdir(parents=True)
    (run_dir.path / "raw" / f"{batch_id}.jsonl").write_text("\n".join(lines) + "\n")
    return BatchOwner("nightly", run_id, "submit", -1, 0, 0)


def test_raw_results_are_priced_like_landing(tmp_path: Path) -> None:
    """$3 and $15 per million tokens for claude-sonnet-4-6, halved for batches; an errored
    result has no usage and costs nothing."""
    work_dir = WorkDir(tmp_path)
    origin = _raw(
        work_dir,
        "r1",
        "msgbatch_a",
        [
            _line("a", "claude-sonnet-4-6", (1000, 200)),
            _line("b", "claude-sonnet-4-6", (3000, 0)),
            _line("c", "", None),
        ],
    )
    raw = work_dir.run("nightly", "r1", "submit").path / "raw" / "msgbatch_a.jsonl"
    expected = (4000 * 1.5 + 200 * 7.5) / 1e6
    assert raw_results_cost(raw, "msgbatch_a", PriceTable()) == pytest.approx(expected)
    costs, notes = raw_costs(work_dir, {"msgbatch_a": origin}, ["msgbatch_a"], PriceTable)
    assert costs == {"msgbatch_a": pytest.approx(expected)} and notes == []


def test_an_unpriced_model_makes_the_cost_unknown_and_missing_files_are_absent(tmp_path: Path) -> None:
    work_dir = WorkDir(tmp_path)
    priced = [_line("a", "claude-sonnet-4-6", (10, 10))]
    origins = {
        "msgbatch_u": _raw(work_dir, "r1", "msgbatch_u", [*priced, _line("b", "claude-unknown-9", (10, 10))]),
        "msgbatch_gone": BatchOwner("nightly", "r2", "submit", -1, 0, 0),  # never downloaded
    }
    asked: list[int] = []

    def prices() -> PriceTable:
        asked.append(1)
        return PriceTable()

    costs, notes = raw_costs(work_dir, origins, ["msgbatch_u", "msgbatch_gone", "msgbatch_unindexed"], prices)
    assert costs == {"msgbatch_u": None} and notes == [] and asked == [1]
    # Priced once per process: a second page load reads nothing and asks for no prices.
    costs, _ = raw_costs(work_dir, origins, ["msgbatch_u"], prices)
    assert costs == {"msgbatch_u": None} and asked == [1]
    assert not raw_costs(work_dir, origins, ["msgbatch_gone"], prices)[0] and asked == [1]


def test_a_file_that_does_not_parse_is_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_costs, "_KNOWN_RAW_COSTS", {})
    work_dir = WorkDir(tmp_path)
    origin = _raw(work_dir, "r1", "msgbatch_bad", ["{not a result"])
    costs, notes = raw_costs(work_dir, {"msgbatch_bad": origin}, ["msgbatch_bad"], PriceTable)
    assert costs == {} and len(notes) == 1 and notes[0].startswith("The raw results of msgbatch_bad were not priced")
