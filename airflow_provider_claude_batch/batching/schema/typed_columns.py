"""Answers -> typed Arrow columns, with ``output_status`` and ``output_error`` per row.

For every succeeded row the answer text is parsed and validated against the run's
:class:`~airflow_provider_claude_batch.batching.schema.output_schema.OutputSchema`:

* ``output_status`` is ``valid``, ``invalid`` (does not parse or validate), ``refused``
  (``stop_reason`` "refusal") or ``truncated`` (``stop_reason`` "max_tokens": the JSON was
  cut); null for rows that did not succeed (their ``result_type`` says why).
* ``output_error`` names the field and the reason (``$.address.zip: Expected `str`, got
  `int```), or the refusal / truncation; null for valid answers.
* One column per schema field, typed; null unless the answer is valid. A row whose answer is
  not valid keeps its ``text``: nothing is lost.

Speed (docs/benchmarks.md): msgspec validates each answer in C without building dicts, then
Arrow's multi-threaded JSON reader builds the columns of the valid answers in one pass over
their bytes (JSON text never holds a raw newline inside a string, so newlines inside an
answer are whitespace and become spaces). No Python object per field is kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from airflow_provider_claude_batch.batching.api.results import decode_result_line
from airflow_provider_claude_batch.batching.schema.output_schema import (
    ERROR_COLUMN,
    INVALID,
    REFUSED,
    STATUS_COLUMN,
    TRUNCATED,
    VALID,
    OutputSchema,
)
from airflow_provider_claude_batch.batching.schema.output_schema import (
    check_on_invalid_output as check_on_invalid_output,
)
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

#: Examples of invalid answers kept for messages and logs.
_EXAMPLES = 5
_JSON_READ = pa_json.ReadOptions(use_threads=True, block_size=1 << 22)
#: Stop reasons whose answer is not a complete one.
_SPOILED = pa.array(["refusal", "max_tokens"])


def classify(
    stop_reason: str | None,
    text: str | None,
    decoder: msgspec.json.Decoder[object],
    details: dict[str, object] | None = None,
) -> tuple[str, str | None]:
    """(status, error) of one succeeded answer; the rule in one place for columns and rounds.
    ``details``: the message's ``stop_details`` (a refusal's category and explanation)."""
    if stop_reason == "refusal":
        said = ", ".join(f"{key} {value!r}" for key, value in (details or {}).items() if key != "type" and value)
        return REFUSED, "refused: the model declined to answer (stop_reason 'refusal'" + (f"; {said})" if said else ")")
    if stop_reason == "max_tokens":
        return TRUNCATED, "truncated: the answer reached max_tokens before it was complete"
    if text is None:
        return INVALID, "$: the answer has no text"
    try:
        decoder.decode(text)
    except msgspec.ValidationError as exc:
        return INVALID, _field_first(str(exc))
    except msgspec.DecodeError as exc:
        return INVALID, f"$: not JSON ({exc})"
    return VALID, None


def _field_first(message: str) -> str:
    """msgspec's ``"<reason> - at `$.a.b`"`` as ``"$.a.b: <reason>"`` (the field first)."""
    reason, sep, where = message.rpartition(" - at `")
    return f"{where.rstrip('`')}: {reason}" if sep else f"$: {message}"


class TypedAnswers:
    """Adds the typed answer columns to result tables and counts outcomes across them."""

    def __init__(self, schema: OutputSchema) -> None:
        self.schema = schema
        self._decoder = schema.decoder
        self._read = pa_json.ParseOptions(explicit_schema=schema.read_schema, unexpected_field_behavior="ignore")
        self._enums = [name for name, kind, _ in schema.fields if kind.kind == "enum"]
        self.counts: Counter[str] = Counter()
        #: A few (custom_id, output_status, output_error) of answers that are not valid.
        self.examples: list[tuple[str, str, str]] = []

    def extend_schema(self, schema: pa.Schema) -> pa.Schema:
        """``schema`` plus the status, error and field columns; a name taken is an error."""
        added = [pa.field(STATUS_COLUMN, pa.string()), pa.field(ERROR_COLUMN, pa.string()), *self.schema.arrow_schema]
        clashes = [f.name for f in added if f.name in schema.names]
        if clashes:
            raise ClaudeBatchInputError(
                f"output_schema field(s) {clashes} clash with columns of the output (keep_columns?); rename one"
            )
        for extra in added:
            schema = schema.append(extra)
        return schema

    def add_columns(self, table: pa.Table) -> pa.Table:
        """``table`` (the results schema) with the typed answer columns appended."""
        count = table.num_rows
        text = table.column("text").combine_chunks().cast(pa.string())
        stop_reason = table.column("stop_reason").combine_chunks().cast(pa.string())
        succeeded = pc.fill_null(pc.equal(table.column("result_type").combine_chunks(), "succeeded"), False)
        # The common case, decided in Arrow: an answer that ended normally, to validate.
        ended_normally = pc.invert(pc.fill_null(pc.is_in(stop_reason, _SPOILED), False))
        candidate = pc.and_(pc.and_(succeeded, ended_normally), text.is_valid())
        candidate_rows = np.flatnonzero(candidate.to_numpy(zero_copy_only=False))
        decode = self._decoder.decode
        failed: list[int] = []
        for position, answer in enumerate(text.filter(candidate).to_pylist()):
            try:
                decode(answer)
            except (msgspec.ValidationError, msgspec.DecodeError):
                failed.append(position)
        valid_rows = np.delete(candidate_rows, np.asarray(failed, dtype=np.int64))
        status = np.full(count, None, dtype=object)
        errors = np.full(count, None, dtype=object)
        status[valid_rows] = VALID
        # The rare rows: refused, truncated, without text or not validating; classified one by one.
        rare = succeeded.to_numpy(zero_copy_only=False).copy()
        rare[valid_rows] = False
        details = table.column("stop_details") if "stop_details" in table.column_names else None
        for row in np.flatnonzero(rare).tolist():
            status[row], errors[row] = classify(
                stop_reason[row].as_py(),
                text[row].as_py(),
                self._decoder,
                None if details is None else details[row].as_py(),
            )
        self._count(table, status, errors)
        typed = self._typed(text, valid_rows)
        columns = [pa.array(status, pa.string()), pa.array(errors, pa.string()), *typed.columns]
        return pa.Table.from_arrays([*table.columns, *columns], schema=self.extend_schema(table.schema))

    def _typed(self, text: pa.Array, valid_rows: np.ndarray) -> pa.Table:
        """The field columns: valid answers read by Arrow's JSON reader, nulls elsewhere (each
        other row reads as ``{}``, so the reader's rows are the table's, with no gather)."""
        count = len(text)
        read_schema = self.schema.read_schema
        if len(valid_rows):
            valid = np.zeros(count, dtype=bool)
            valid[valid_rows] = True
            answers = pc.if_else(pa.array(valid), text, pa.scalar("{}"))
            values = answers.buffers()[2]
            raw = b"" if values is None else values.to_pybytes()
            if b"\n" in raw or b"\r" in raw:
                answers = pc.replace_substring(pc.replace_substring(answers, "\n", " "), "\r", " ")
            lines = pc.binary_join_element_wise(answers, "", "\n")
            # The values buffer of a string array is its strings back to back: the JSONL itself.
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
            data = lines.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
            table = pa_json.read_json(pa.BufferReader(data), read_options=_JSON_READ, parse_options=self._read)
            table = table.select(read_schema.names)
        else:
            table = pa.table({f.name: pa.nulls(count, f.type) for f in read_schema})
        for name in self._enums:
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, pc.dictionary_encode(table.column(name)))
        return table.cast(self.schema.arrow_schema)

    def _count(self, table: pa.Table, status: np.ndarray, errors: np.ndarray) -> None:
        for value, number in Counter(status.tolist()).items():
            if value is not None:
                self.counts[value] += number
        if len(self.examples) >= _EXAMPLES:
            return
        ids = table.column("custom_id")
        for row in np.flatnonzero((status != VALID) & (status != None)).tolist()[:_EXAMPLES]:  # noqa: E711
            if len(self.examples) < _EXAMPLES:
                self.examples.append((ids[row].as_py(), status[row], errors[row]))

    @property
    def not_valid(self) -> int:
        return self.counts[INVALID] + self.counts[REFUSED] + self.counts[TRUNCATED]

    def describe_failures(self) -> str:
        listed = "; ".join(f"{custom_id} ({error})" for custom_id, _, error in self.examples)
        return f"{self.not_valid} answer(s) do not match the output schema ({dict(self.counts)}); e.g. {listed}"


#: A succeeded message's content blocks (the line itself is read as ``results.ResultLine``).
_content = msgspec.json.Decoder(list[dict[str, object]])


def invalid_answer_ids(lines: Iterable[bytes], schema: OutputSchema) -> list[str]:
    """custom_ids of result lines whose answer succeeded but does not parse or validate: the
    ones a resubmission may fix (a refusal or a truncation would repeat, so they are not)."""
    decoder = schema.decoder
    found = []
    for raw in lines:
        if not raw:
            continue
        line = decode_result_line(raw)
        message = line.result.message
        if line.result.type != "succeeded" or message is None:
            continue
        blocks = _content.decode(message.content)
        texts = [str(block.get("text", "")) for block in blocks if block.get("type") == "text"]
        if classify(message.stop_reason, "".join(texts) if texts else None, decoder)[0] == INVALID:
            found.append(line.custom_id)
    return found
