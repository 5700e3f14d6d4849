"""The bad-input matrix: every input the API would refuse, or that would send something the
author did not mean, fails before anything is submitted, naming the row and field.

Oracle for each case: the error's text names the row/field (or file/line), no ``requests-*``
staging is left in the work directory, and (under Airflow) the emulator created no batch.
The same cases run twice: against the submit task's staging step directly (fast, exact
messages), and all at once as tasks of one DAG under ``dag.test()``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_claude_batch.batching.render.chunks import ChunkLimits
from airflow_provider_claude_batch.batching.render.rendering import RequestSpec
from airflow_provider_claude_batch.batching.submit.staging import stage_requests
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError
from airflow_provider_claude_batch.testing import RunningEmulator
from tests.airflow.conftest import run_dag, task_states

NAN = math.nan


@dataclass
class Case:
    name: str
    source: Any  # a Python value, or ("file", name, content) written into the test folder
    needle: str  # what the error must say (a plain substring)
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: False where Airflow itself refuses the operator's arguments first (a NaN in a templated
    #: field cannot be stored as its rendered value).
    in_airflow: bool = True


def _turns(*turns: tuple[str, str]) -> str:
    """A params_column value (JSON text) setting a row's few-shot turns."""
    return json.dumps({"messages": [{"role": role, "content": content} for role, content in turns]})


CASES = [
    # Stopped before this suite existed.
    Case(
        "missing_template_column", [{"id": "a", "text": "x"}], "column 'body' used by the prompt", {"prompt": "{body}"}
    ),
    Case("invalid_custom_id", [{"id": "has space", "text": "x"}], "row 0, column 'id'", {"id_column": "id"}),
    Case(
        "duplicate_custom_id",
        [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}],
        "'a' at rows [0, 1]",
        {"id_column": "id"},
    ),
    Case(
        "over_byte_limit", ["short", "x" * 500], "row 1 (custom_id 'row-1') serializes to", {"max_bytes_per_batch": 300}
    ),
    Case("null_prompt", [{"text": "a"}, {"text": None}], "row 1 (custom_id 'row-1'): column 'text' is null"),
    Case("max_tokens_zero", ["a"], "max_tokens must be a positive integer, got 0", {"max_tokens": 0}),
    Case(
        "bad_params_json",
        [{"text": "a", "opts": "{not json"}],
        "row 0 (custom_id 'row-0'): params_column is not valid JSON",
        {"params_column": "opts"},
    ),
    # Parameters: type and range, operator-wide and per row.
    Case("model_not_text", ["a"], "model must be a non-empty string, got 123", {"model": 123}),
    Case(
        "temperature_text",
        ["a"],
        "request_params: temperature must be a number between 0 and 1, got 'hot'",
        {"request_params": {"temperature": "hot"}},
    ),
    Case(
        "temperature_range",
        ["a"],
        "temperature must be a number between 0 and 1, got 1.5",
        {"request_params": {"temperature": 1.5}},
    ),
    Case(
        "top_p_nan",
        ["a"],
        "top_p must be a number between 0 and 1, got nan",
        {"request_params": {"top_p": NAN}},
        in_airflow=False,
    ),
    Case("top_k_negative", ["a"], "top_k must be a non-negative integer, got -1", {"request_params": {"top_k": -1}}),
    Case(
        "stop_sequences_str",
        ["a"],
        "stop_sequences must be a list of non-empty strings, got 'END'",
        {"request_params": {"stop_sequences": "END"}},
    ),
    Case(
        "metadata_shape",
        ["a"],
        "metadata must be an object with only ['user_id']",
        {"request_params": {"metadata": {"user": 1}}},
    ),
    Case("tools_shape", ["a"], "tools must be a list of objects", {"request_params": {"tools": "search"}}),
    Case(
        "unknown_param", ["a"], "'temprature' is not a Messages API parameter", {"request_params": {"temprature": 0.2}}
    ),
    Case(
        "row_model_number",
        [{"text": "a", "opts": None}, {"text": "b", "opts": '{"model": 5}'}],
        "row 1 (custom_id 'row-1'), params_column 'opts': model must be a non-empty string, got 5",
        {"params_column": "opts"},
    ),
    Case(
        "row_temperature_text",
        [{"text": "a", "opts": '{"temperature": "hot"}'}],
        "row 0 (custom_id 'row-0'), params_column 'opts': temperature must be",
        {"params_column": "opts"},
    ),
    # Few-shot turns and the prefill, per row and operator-wide.
    Case(
        "row_messages_not_a_list",
        [{"text": "a", "opts": '{"messages": "be nice"}'}],
        "row 0 (custom_id 'row-0'), params_column 'opts': messages must be a list of turns",
        {"params_column": "opts"},
    ),
    Case(
        "row_turns_not_alternating",
        [{"text": "a", "opts": None}, {"text": "b", "opts": _turns(("user", "q"), ("user", "q2"))}],
        "row 1 (custom_id 'row-1'), params_column 'opts': messages[1].role must be 'assistant'",
        {"params_column": "opts"},
    ),
    Case(
        "row_turns_end_with_user",
        [{"text": "a", "opts": _turns(("user", "q"), ("assistant", "r"), ("user", "q2"))}],
        "params_column 'opts': messages must end with an assistant turn",
        {"params_column": "opts"},
    ),
    Case(
        "row_turn_blank",
        [{"text": "a", "opts": _turns(("user", " "), ("assistant", "r"))}],
        "row 0 (custom_id 'row-0'), params_column 'opts': messages[0].content must be text that is not blank",
        {"params_column": "opts"},
    ),
    Case(
        "row_prefill_trailing_space",
        [{"text": "a", "opts": '{"prefill": "Label: "}'}],
        "row 0 (custom_id 'row-0'), params_column 'opts': prefill must not end in whitespace",
        {"params_column": "opts"},
    ),
    Case(
        "row_prefill_with_output_schema",
        [{"text": "a", "opts": '{"prefill": "{"}'}],
        "row 0 (custom_id 'row-0'), params_column 'opts': a prefill cannot be combined with output_schema",
        {
            "params_column": "opts",
            "request_params": {"output_config": {"format": {"type": "json_schema", "schema": {}}}},
        },
    ),
    # Refused when the DAG is parsed, so not a task of the Airflow run below.
    Case(
        "messages_start_with_assistant",
        ["a"],
        "messages[0].role must be 'user'",
        {"messages": [{"role": "assistant", "content": "x"}]},
        in_airflow=False,
    ),
    Case(
        "prefill_with_output_schema",
        ["a"],
        "a prefill cannot be combined with output_schema",
        {"prefill": "{", "request_params": {"output_config": {"format": {"type": "json_schema", "schema": {}}}}},
        in_airflow=False,
    ),
    # Sources.
    Case("empty_source", "", "source is an empty string"),
    Case("blank_source", "  ", "source is an empty string"),
    Case(
        "csv_unterminated_quote",
        ("file", "bad.csv", 'id,text\n1,"hello\n2,ok\n'),
        "bad.csv, line 2: a quoted value opens there and is never closed",
        {"id_column": "id"},
    ),
    Case(
        "jsonl_truncated_line",
        ("file", "bad.jsonl", '{"text": "a"}\n{"text": \n{"text": "c"}\n'),
        "bad.jsonl, line 2: not valid JSON",
    ),
    Case(
        "jsonl_not_object",
        ("file", "list.jsonl", '{"text": "a"}\n["b"]\n'),
        "list.jsonl, line 2: a JSON list, not an object",
    ),
    # Prompts that are not text.
    Case("nan_prompt", [{"text": "a"}, {"text": NAN}], "row 1, column 'text': the value is NaN"),
    Case(
        "list_prompt",
        [{"text": ["a"]}, {"text": ["b"]}],
        "row 0 (custom_id 'row-0'): column 'text' is list<item: string> where the prompt needs text",
    ),
    Case("number_in_text_column", [{"text": "a"}, {"text": 5}], "row 1, column 'text': the value is a int"),
    Case("lone_surrogate", ["ok", "\ud800"], "row 1, column 'text': the value is not valid Unicode text"),
    Case("empty_prompt", ["ok", ""], "row 1 (custom_id 'row-1'): column 'text' is empty"),
    Case("whitespace_prompt", ["  \n "], "row 0 (custom_id 'row-0'): column 'text' is empty"),
    Case(
        "nan_in_list_of_strings",
        [{"text": "a", "tags": ["x", NAN]}],
        "row 0, column 'tags': the value is a list whose item 1 is NaN",
    ),
    Case(
        "formatted_nan",
        [{"x": 1.5}, {"x": NAN}],
        "row 1 (custom_id 'row-1'): column 'x' is not a finite number",
        {"prompt": "Score {x:.1f}"},
    ),
    Case(
        "system_list",
        [{"text": "a", "lang": ["en"]}],
        "column 'lang' is list<item: string> where the system prompt needs text",
        {"system": "Answer in {lang}."},
    ),
]


def _source(case: Case, folder: Path) -> Any:
    if isinstance(case.source, tuple):
        _, name, content = case.source
        path = folder / name
        path.write_text(content)
        return str(path)
    return case.source


def _spec(kwargs: dict[str, Any]) -> tuple[RequestSpec, ChunkLimits]:
    spec_args = {"prompt": "{text}", "model": "claude-haiku-4-5", "max_tokens": 8, **kwargs}
    limits = ChunkLimits(max_bytes=spec_args.pop("max_bytes_per_batch", ChunkLimits().max_bytes))
    spec_args["params"] = spec_args.pop("request_params", {})
    return RequestSpec(**spec_args), limits


def _staging(work: Path) -> list[Path]:
    return [p for p in work.rglob("requests-*") if p.is_dir()] if work.exists() else []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_staging_refuses_bad_input_naming_row_and_field(case: Case, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(ClaudeBatchInputError) as raised:
        spec, limits = _spec(case.kwargs)
        stage_requests(_source(case, tmp_path), spec, limits, run_dir)
    assert case.needle in str(raised.value)
    assert _staging(run_dir) == []


def test_empty_prompts_pass_when_allowed(tmp_path: Path) -> None:
    spec, limits = _spec({"allow_empty_prompt": True})
    staged = stage_requests(["ok", ""], spec, limits, tmp_path)
    assert staged.total_requests == 2


def test_an_empty_source_never_reads_the_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "stray.csv").write_text("text\nfrom the working folder\n")
    monkeypatch.chdir(tmp_path)
    spec, limits = _spec({})
    with pytest.raises(ClaudeBatchInputError, match="source is an empty string"):
        stage_requests("", spec, limits, tmp_path / "run")


def test_every_case_fails_its_task_before_any_batch_under_airflow(
    make_dag, emulator: RunningEmulator, work_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cases = [case for case in CASES if case.in_airflow]
    tasks = []
    for case in cases:
        kwargs = {"prompt": "{text}", "model": "claude-haiku-4-5", "max_tokens": 8, **case.kwargs}
        arguments = ", ".join(f"{name}={value!r}" for name, value in kwargs.items())
        tasks.append(
            f"ClaudeBatchSubmitOperator(task_id={case.name!r}, source={_source(case, tmp_path)!r}, {arguments})"
        )
    dag = make_dag("\n".join(tasks), header="nan = float('nan')\n")
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {case.name: "failed" for case in cases}
    assert emulator.emulator.stats["batches_created"] == 0
    assert emulator.emulator.calls["create"] == 0
    assert _staging(work_dir) == []
    # dag.test() prints each task's log, error included.
    printed = "".join(capfd.readouterr())
    missing = [case.name for case in cases if case.needle not in printed]
    assert missing == []
