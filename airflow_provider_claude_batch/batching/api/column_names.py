"""The column names the core gives a meaning to, as plain data.

DAG files are parsed far more often than tasks run, and the checks a parse runs (an answer
schema's field names, ``keep_columns``, a prompt's default column) need the names of columns,
not their Arrow types. So the names live here, in a module that imports nothing: building
an operator loads no pyarrow. ``results.RESULT_SCHEMA`` has exactly :data:`RESULT_COLUMNS`,
in this order (``tests/unit/batching/api/test_column_names.py`` checks it)."""

from __future__ import annotations

#: The column a list of strings becomes, and what the default prompt (``{text}``) reads.
TEXT_COLUMN = "text"

#: Where a landed row's answer came from (``reuse.plan.ANSWER_SOURCES``), after the results.
ANSWER_SOURCE_COLUMN = "answer_source"
#: What a row's answer cost when it was bought: its own ``cost_usd`` for a row sent in this
#: run, the paying row's for a reused, awaited or deduplicated one (whose ``cost_usd``, what
#: this run paid, is 0). A rerun's partition then still says what its answers cost.
ANSWER_COST_COLUMN = "answer_cost_usd"

#: The results schema's columns, in order (``results.RESULT_SCHEMA.names``).
RESULT_COLUMNS: tuple[str, ...] = (
    "custom_id",
    "batch_id",
    "round",
    "result_type",
    "text",
    "content",
    "stop_reason",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "error_type",
    "error_message",
    "cost_usd",
    "stop_details",
    "cache_creation_5m_input_tokens",
    "cache_creation_1h_input_tokens",
    "thinking_tokens",
    "web_search_requests",
    "web_fetch_requests",
    "service_tier",
)
