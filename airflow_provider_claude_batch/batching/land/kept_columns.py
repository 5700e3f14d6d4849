"""``keep_columns`` as a DAG author writes it, and the output's column names, by name only.

The transfer and ``@task.claude_batch`` check ``keep_columns`` when the DAG is parsed, before
anything is submitted or billed: its shape, and clashes with the output's other columns (the
results, where each answer came from and what it cost, and a typed answer's columns). Those
checks need names, not Arrow types, so they live here, in a module that loads no pyarrow: a
DAG file is parsed far more often than its tasks run. ``parts.result_column_names`` builds the
same names from the Arrow schema the landing writes (the mirror test checks they agree).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_claude_batch.batching.api.column_names import (
    ANSWER_COST_COLUMN,
    ANSWER_SOURCE_COLUMN,
    RESULT_COLUMNS,
)
from airflow_provider_claude_batch.batching.schema.output_schema import ERROR_COLUMN, STATUS_COLUMN, OutputSchema
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

#: ``keep_columns`` as a DAG author writes it (see :func:`keep_columns_spec`).
KeepColumns = list[str | dict[str, str]] | dict[str, str | None]


def keep_columns_spec(value: Any) -> tuple[list[str], dict[str, str]]:
    """``keep_columns`` as given to the transfer; returns the input columns and the renames.

    Accepted: a list of input column names, whose items may also be one-entry mappings that
    rename one column (``["product", {"text": "input_text"}]``); or a mapping of input column ->
    output name, where ``None`` keeps the name (``{"product": None, "text": "input_text"}``).
    Either way renaming one column keeps the others as they are."""
    if value is None:
        return [], {}
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ClaudeBatchInputError(f"keep_columns must be a list of column names or a mapping, got {value!r}")
    else:
        items = []
        for item in value:
            if isinstance(item, Mapping) and len(item) == 1:
                items.extend(item.items())
            elif isinstance(item, str):
                items.append((item, None))
            else:
                raise ClaudeBatchInputError(
                    f"keep_columns items must be column names or one-entry mappings {{column: new_name}}, got {item!r}"
                )
    if not all(isinstance(k, str) and k and (v is None or (isinstance(v, str) and v)) for k, v in items):
        raise ClaudeBatchInputError(f"keep_columns must map column names to new names (or None), got {value!r}")
    return [k for k, _ in items], {k: v for k, v in items if v is not None and v != k}


def check_kept_names(keep_columns: list[str], rename: Mapping[str, str], taken: Iterable[str]) -> list[str]:
    """The output names of the kept columns; an error naming every clash with ``taken`` (the
    result columns, and with an output schema its typed columns) or between kept columns.
    Needs no answer, so it runs when the DAG is parsed, before anything is submitted."""
    names = [rename.get(name, name) for name in keep_columns]
    taken = set(taken)
    clashes = [name for name in names if name in taken]
    if clashes:
        kept = [name for name in keep_columns if rename.get(name, name) not in taken]
        suggestion = [*kept, *({c: f"input_{c}"} for c in clashes)]
        raise ClaudeBatchInputError(
            f"keep_columns {clashes} clash with result columns of the output; give them other names and keep the "
            f"others as they are, e.g. keep_columns={suggestion!r}"
        )
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        raise ClaudeBatchInputError(f"keep_columns name two columns {doubled}")
    return names


def output_column_names(schema: OutputSchema | None = None) -> list[str]:
    """Every column the output has besides the kept ones: the results, the answer's source and
    cost and, with an output schema, its status, error and field columns."""
    names = [*RESULT_COLUMNS, ANSWER_SOURCE_COLUMN, ANSWER_COST_COLUMN]
    if schema is not None:
        names += [STATUS_COLUMN, ERROR_COLUMN, *(name for name, _, _ in schema.fields)]
    return names
