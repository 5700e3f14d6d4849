"""keep_columns checked by name when a DAG is parsed (kept_columns.py): the names agree with
the Arrow schema the landing writes, and the checks load no pyarrow."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from airflow_provider_claude_batch.batching.land.kept_columns import (
    check_kept_names,
    keep_columns_spec,
    output_column_names,
)
from airflow_provider_claude_batch.batching.land.parts import result_column_names
from airflow_provider_claude_batch.batching.schema.output_schema import OutputSchema
from airflow_provider_claude_batch.batching.schema.typed_columns import TypedAnswers
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

SCHEMA = {"type": "object", "properties": {"label": {"enum": ["a", "b"]}, "score": {"type": "number"}}}


@pytest.mark.parametrize("schema", [None, SCHEMA], ids=["untyped", "typed"])
def test_the_names_are_the_landed_schema_s(schema: dict[str, object] | None) -> None:
    output = None if schema is None else OutputSchema.from_user(schema)
    typed = None if output is None else TypedAnswers(output)
    assert output_column_names(output) == result_column_names(typed)


def test_a_kept_column_named_like_a_typed_field_is_refused_by_name() -> None:
    kept, rename = keep_columns_spec(["ticket_id", "label"])
    with pytest.raises(ClaudeBatchInputError, match=r"\['label'\] clash"):
        check_kept_names(kept, rename, output_column_names(OutputSchema.from_user(SCHEMA)))
    assert check_kept_names(*keep_columns_spec(["ticket_id", {"label": "input_label"}]), output_column_names()) == [
        "ticket_id",
        "input_label",
    ]


def test_the_parse_time_checks_load_no_pyarrow() -> None:
    code = (
        "import json, sys\n"
        "from airflow_provider_claude_batch.batching.land.kept_columns import check_kept_names, keep_columns_spec,"
        " output_column_names\n"
        "from airflow_provider_claude_batch.batching.schema.output_schema import OutputSchema\n"
        f"schema = OutputSchema.from_user({SCHEMA!r})\n"
        "check_kept_names(*keep_columns_spec(['ticket_id']), output_column_names(schema))\n"
        "print(json.dumps(sorted(m for m in ('pyarrow', 'numpy', 'anthropic') if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
