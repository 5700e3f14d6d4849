"""The column names as plain data (column_names.py) are the ones the Arrow schemas have."""

from __future__ import annotations

from airflow_provider_claude_batch.batching.api.column_names import (
    ANSWER_COST_COLUMN,
    ANSWER_SOURCE_COLUMN,
    RESULT_COLUMNS,
    TEXT_COLUMN,
)
from airflow_provider_claude_batch.batching.api.results import RESULT_SCHEMA
from airflow_provider_claude_batch.batching.land.parts import landed_schema
from airflow_provider_claude_batch.batching.render.rendering import rows_to_table


def test_the_result_columns_are_the_results_schema_in_order() -> None:
    assert list(RESULT_COLUMNS) == RESULT_SCHEMA.names


def test_a_landed_row_adds_its_answer_source_and_cost_after_the_results() -> None:
    assert landed_schema().names == [*RESULT_COLUMNS, ANSWER_SOURCE_COLUMN, ANSWER_COST_COLUMN]


def test_a_list_of_strings_becomes_the_text_column() -> None:
    assert rows_to_table(["a", "b"]).column_names == [TEXT_COLUMN]
