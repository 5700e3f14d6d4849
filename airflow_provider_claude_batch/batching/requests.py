"""Rows -> Message Batches request lines (JSONL bytes), one row at a time.

A :class:`RequestRenderer` turns each input row into ``{"custom_id", "params"}`` serialized
once, straight to bytes: the constant part of ``params`` (model, max_tokens, system, extra
params) is encoded once up front, and only the custom_id and the rendered prompt are encoded
per row. That keeps rendering in the microseconds per row.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pyarrow as pa

from airflow_provider_claude_batch.batching import limits
from airflow_provider_claude_batch.batching.errors import ClaudeBatchInputError
from airflow_provider_claude_batch.batching.pricing import RequestTally

_encode = msgspec.json.Encoder().encode
#: Column a list of strings becomes, so ``prompt="{text}"`` works for plain lists.
TEXT_COLUMN = "text"


@dataclass(frozen=True)
class RenderedRequest:
    custom_id: str
    line: bytes  # one JSON object, no trailing newline


#: A field of a ``"fields"`` template: a column name, then optional ``.attr`` / ``[key]``
#: parts, ``!conversion`` and ``:spec`` (as in ``str.format``).
_FIELD = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[[^\[\]{}]*\])*(?:![rsa])?(?::[^{}]*)?\}")


def fields_template(template: str) -> str:
    """A ``"fields"`` template as a ``str.format`` template: ``{column}`` (see ``_FIELD``)
    stays a field, every other brace becomes literal text.

    This is what makes a prompt that asks for JSON easy: ``'Reply as {"label": ...}: {body}'``
    needs no escaping in Python, in Jinja (single braces are not Jinja syntax) or here.
    """
    parts: list[str] = []
    position = 0
    for match in _FIELD.finditer(template):
        parts.append(template[position : match.start()].replace("{", "{{").replace("}", "}}"))
        parts.append(match.group())
        position = match.end()
    parts.append(template[position:].replace("{", "{{").replace("}", "}}"))
    return "".join(parts)


@dataclass(frozen=True)
class PromptTemplate:
    """A ``str.format`` template over column names, e.g. ``"Classify: {body}"``."""

    template: str
    fields: tuple[str, ...] = field(init=False)
    _positional: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        fields: list[str] = []
        parts: list[str] = []
        try:
            parsed = list(string.Formatter().parse(self.template))
        except ValueError as exc:
            raise ClaudeBatchInputError(
                f"prompt template {self.template!r} is not a valid format string: {exc}"
            ) from None
        for literal, name, spec, conversion in parsed:
            parts.append(literal.replace("{", "{{").replace("}", "}}"))
            if name is None:
                continue
            if not name or name.isdigit():
                raise ClaudeBatchInputError(
                    f"prompt template {self.template!r} uses a positional field {{{name}}}: name a column instead"
                )
            column = name.split(".", 1)[0].split("[", 1)[0]
            if column not in fields:
                fields.append(column)
            rest = name[len(column) :]
            parts.append(
                "{"
                + str(fields.index(column))
                + rest
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
        object.__setattr__(self, "fields", tuple(fields))
        object.__setattr__(self, "_positional", "".join(parts))

    def render(self, values: Sequence[Any]) -> str:
        return self._positional.format(*values)


@dataclass
class RequestSpec:
    """Everything that turns a row into a request, for every row of a run.

    :param prompt: template over columns for the user message.
    :param model, max_tokens: required by the API for every request.
    :param system: optional system prompt (a template too).
    :param params: extra Messages API params for every request (temperature, metadata, ...).
    :param id_column: column holding the custom_id; without it, ids are ``{id_prefix}-{row}``
        from the row's position in the input, stable for the same input.
    :param params_column: optional column of per-row dicts merged over ``params``.
    """

    prompt: str
    model: str
    max_tokens: int
    system: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    id_column: str | None = None
    params_column: str | None = None
    id_prefix: str = "row"

    def __post_init__(self) -> None:
        if not self.model:
            raise ClaudeBatchInputError("model is required (or set default_model on the connection)")
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 1:
            raise ClaudeBatchInputError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        reserved = {"model", "max_tokens", "messages"} & set(self.params)
        if reserved:
            raise ClaudeBatchInputError(
                f"params may not set {sorted(reserved)}: use the model/max_tokens/prompt arguments"
            )
        if self.system is not None and "system" in self.params:
            raise ClaudeBatchInputError("give the system prompt either as system= or in params, not both")
        limits.validate_custom_id(f"{self.id_prefix}-0", where="id_prefix")

    def describe(self) -> dict[str, Any]:
        """The settings that change the requests; part of the run's fingerprint."""
        return {
            "prompt": self.prompt,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": self.system,
            "params": dict(self.params),
            "id_column": self.id_column,
            "params_column": self.params_column,
            "id_prefix": self.id_prefix,
        }


class RequestRenderer:
    """Renders record batches of rows into request lines, validating as it goes."""

    def __init__(self, spec: RequestSpec) -> None:
        self.spec = spec
        self.prompt = PromptTemplate(spec.prompt)
        self.system = PromptTemplate(spec.system) if spec.system is not None else None
        self._system_is_constant = self.system is not None and not self.system.fields
        base = {"model": spec.model, "max_tokens": spec.max_tokens, **spec.params}
        if self.system is not None and self._system_is_constant:
            base["system"] = self.system.render([])  # a template without fields: unescape its braces
        self._base_params = base
        # {"custom_id":<id>,"params":{...base...,"messages":[{"role":"user","content":<prompt>}]}}
        encoded_base = _encode(base)
        self._head = b'{"custom_id":'
        self._middle = b',"params":' + encoded_base[:-1] + (b"," if len(base) else b"")
        self._tail = b"}}"
        self.rows_rendered = 0
        # Rows rendered with the spec's own model and max_tokens: their bytes, summed cheaply.
        self._base_rows = 0
        self._base_bytes = 0
        #: model -> tally of the rows whose params_column chose their model or max_tokens.
        self._overridden: dict[str, RequestTally] = {}

    def tally(self) -> dict[str, RequestTally]:
        """Per model: requests rendered so far, their bytes and their output token limits."""
        tallies = {
            model: RequestTally(t.requests, t.input_bytes, t.max_output_tokens) for model, t in self._overridden.items()
        }
        if self._base_rows:
            base = tallies.setdefault(self.spec.model, RequestTally())
            base.requests += self._base_rows
            base.input_bytes += self._base_bytes
            base.max_output_tokens += self._base_rows * self.spec.max_tokens
        return tallies

    @property
    def needed_columns(self) -> list[str]:
        columns = list(self.prompt.fields)
        if self.system is not None:
            columns += [c for c in self.system.fields if c not in columns]
        for extra in (self.spec.id_column, self.spec.params_column):
            if extra and extra not in columns:
                columns.append(extra)
        return columns

    def check_schema(self, schema: pa.Schema, *, source: str) -> None:
        available = schema.names
        for column in self.needed_columns:
            if column not in available:
                role = (
                    "id_column"
                    if column == self.spec.id_column
                    else "params_column"
                    if column == self.spec.params_column
                    else "the prompt/system template"
                )
                raise ClaudeBatchInputError(
                    f"column {column!r} used by {role} is not in {source}; its columns are {available}"
                )

    def render_batch(self, batch: pa.RecordBatch, *, first_row: int) -> Iterator[RenderedRequest]:
        """Render one record batch whose first row is input row ``first_row`` (0-based)."""
        spec = self.spec
        columns = {name: batch.column(name).to_pylist() for name in self.needed_columns}
        prompt_columns = [columns[name] for name in self.prompt.fields]
        system_columns = (
            [columns[name] for name in self.system.fields]
            if self.system is not None and not self._system_is_constant
            else None
        )
        ids = columns[spec.id_column] if spec.id_column else None
        per_row_params = columns[spec.params_column] if spec.params_column else None
        head, middle, tail = self._head, self._middle, self._tail
        for offset in range(batch.num_rows):
            row = first_row + offset
            if ids is not None:
                raw_id = ids[offset]
                if raw_id is None:
                    raise ClaudeBatchInputError(f"row {row}: id_column {spec.id_column!r} is null")
                custom_id = limits.validate_custom_id(
                    raw_id if isinstance(raw_id, str) else str(raw_id), where=f"row {row}, column {spec.id_column!r}"
                )
            else:
                custom_id = f"{spec.id_prefix}-{row}"
            values = [column[offset] for column in prompt_columns]
            if None in values:
                missing = self.prompt.fields[values.index(None)]
                raise ClaudeBatchInputError(
                    f"row {row} (custom_id {custom_id!r}): column {missing!r} is null; the prompt needs it"
                )
            try:
                prompt = self.prompt.render(values)
            except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
                raise ClaudeBatchInputError(
                    f"row {row} (custom_id {custom_id!r}): the prompt template failed: {exc}"
                ) from None
            message = b'"messages":[{"role":"user","content":' + _encode(prompt) + b"}]"
            extra = b""
            if system_columns is not None:
                assert self.system is not None
                system_values = [column[offset] for column in system_columns]
                if None in system_values:
                    missing = self.system.fields[system_values.index(None)]
                    raise ClaudeBatchInputError(
                        f"row {row} (custom_id {custom_id!r}): column {missing!r} is null; the system prompt needs it"
                    )
                extra = b'"system":' + _encode(self.system.render(system_values)) + b","
            if per_row_params is not None and per_row_params[offset] is not None:
                line = self._merged_line(custom_id, prompt, system_columns, offset, per_row_params[offset], row)
            else:
                line = head + _encode(custom_id) + middle + extra + message + tail
                self._base_rows += 1
                self._base_bytes += len(line)
            yield RenderedRequest(custom_id, line)
        self.rows_rendered += batch.num_rows

    def _merged_line(
        self, custom_id: str, prompt: str, system_columns: list[list[Any]] | None, offset: int, overrides: Any, row: int
    ) -> bytes:
        if isinstance(overrides, str):
            try:
                overrides = msgspec.json.decode(overrides)
            except msgspec.DecodeError as exc:
                raise ClaudeBatchInputError(
                    f"row {row} (custom_id {custom_id!r}): params_column is not valid JSON: {exc}"
                ) from None
        if isinstance(overrides, list):  # pyarrow map columns come back as key/value pairs
            overrides = dict(overrides)
        if not isinstance(overrides, dict):
            raise ClaudeBatchInputError(
                f"row {row} (custom_id {custom_id!r}): params_column {self.spec.params_column!r} must hold an object, "
                f"got {type(overrides).__name__}"
            )
        if "messages" in overrides:
            raise ClaudeBatchInputError(f"row {row} (custom_id {custom_id!r}): params_column may not set messages")
        params = dict(self._base_params)
        if system_columns is not None and self.system is not None:
            params["system"] = self.system.render([column[offset] for column in system_columns])
        params.update(overrides)
        params["messages"] = [{"role": "user", "content": prompt}]
        line = _encode({"custom_id": custom_id, "params": params})
        max_tokens = params.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise ClaudeBatchInputError(
                f"row {row} (custom_id {custom_id!r}): params_column sets max_tokens to {max_tokens!r}; "
                "it must be a positive integer"
            )
        tally = self._overridden.setdefault(str(params.get("model")), RequestTally())
        tally.requests += 1
        tally.input_bytes += len(line)
        tally.max_output_tokens += max_tokens
        return line


def rows_to_table(rows: Sequence[Any]) -> pa.Table:
    """A list of strings (column ``text``) or of dicts (one column per key) as a table."""
    if not rows:
        return pa.table({TEXT_COLUMN: pa.array([], pa.string())})
    if all(isinstance(row, str) for row in rows):
        return pa.table({TEXT_COLUMN: pa.array(rows, pa.string())})
    if all(isinstance(row, Mapping) for row in rows):
        try:
            return pa.Table.from_pylist([dict(row) for row in rows])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ClaudeBatchInputError(f"the list of dicts has columns of mixed types: {exc}") from None
    kinds = sorted({type(row).__name__ for row in rows})
    raise ClaudeBatchInputError(f"a list source must hold only strings or only dicts, got {kinds}")
