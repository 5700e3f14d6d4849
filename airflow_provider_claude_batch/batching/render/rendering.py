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
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_claude_batch.batching.api import limits
from airflow_provider_claude_batch.batching.api.column_names import TEXT_COLUMN as TEXT_COLUMN
from airflow_provider_claude_batch.batching.api.pricing import RequestTally
from airflow_provider_claude_batch.batching.api.request_params import (
    check_params,
    check_prefill,
    check_prefill_allowed,
    check_turns,
)
from airflow_provider_claude_batch.batching.render.column_render import column_renderer
from airflow_provider_claude_batch.batching.render.documents import ContentRenderer, RenderedBlocks
from airflow_provider_claude_batch.batching.render.documents import describe as describe_content
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

_encode = msgspec.json.Encoder().encode
#: Schema metadata of a source with no rows that names no columns (only files with no bytes or
#: blank lines): no column the spec needs is missing from it, since no row will need one.
NO_COLUMNS = {b"claude_batch.no_columns": b"true"}


def arrow_is(kind: pa.DataType, check: str) -> bool:
    """``pa.types.<check>(kind)``, and False where this pyarrow has no such check: the view
    types came in pyarrow 16, and the declared range starts at 14 (no data of theirs can exist
    there)."""
    test = getattr(pa.types, check, None)
    return bool(test is not None and test(kind))


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
    #: Columns the template formats itself (``{n:.2f}``, ``{n!s}``, ``{a[0]}``): their values
    #: need not be text.
    formatted: frozenset[str] = field(init=False, repr=False)
    _positional: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        fields: list[str] = []
        formatted: set[str] = set()
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
            if rest or conversion or spec:
                formatted.add(column)
            parts.append(
                "{"
                + str(fields.index(column))
                + rest
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
        object.__setattr__(self, "fields", tuple(fields))
        object.__setattr__(self, "formatted", frozenset(formatted))
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
    :param params_column: optional column of per-row dicts merged over ``params``; besides
        Messages parameters they may hold ``messages`` and ``prefill``, which replace the spec's.
    :param allow_empty_prompt: accept empty (or whitespace-only) text in the prompt's columns;
        by default such a row is an error, since it is almost always missing data.
    :param messages: few-shot turns before every row's prompt: ``{"role", "content"}`` objects,
        user and assistant in turn, from a user turn to an assistant turn (``check_turns``).
    :param prefill: the start of every answer, sent as an assistant turn after the row's prompt
        (not with an output schema or thinking: ``check_prefill_allowed``).
    :param content: the user turn's documents and images around the prompt's text, in order
        (``documents.content_spec``); empty: the turn is the prompt's text alone.
    """

    prompt: str
    model: str
    max_tokens: int
    system: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    id_column: str | None = None
    params_column: str | None = None
    id_prefix: str = "row"
    allow_empty_prompt: bool = False
    messages: Sequence[Mapping[str, Any]] = ()
    prefill: str | None = None
    content: Sequence[Any] = ()

    def __post_init__(self) -> None:
        if self.model is None or self.model == "":
            raise ClaudeBatchInputError("model is required (or set default_model on the connection)")
        check_params({"model": self.model, "max_tokens": self.max_tokens}, where="the operator's arguments")
        if not isinstance(self.params, Mapping):
            raise ClaudeBatchInputError(f"request_params must be an object, got {type(self.params).__name__}")
        check_params(self.params, where="request_params")
        reserved = {"model", "max_tokens", "messages"} & set(self.params)
        if reserved:
            raise ClaudeBatchInputError(
                f"params may not set {sorted(reserved)}: use the model/max_tokens/prompt arguments (few-shot "
                "turns: messages=, the start of the answer: prefill=)"
            )
        if self.system is not None and "system" in self.params:
            raise ClaudeBatchInputError("give the system prompt either as system= or in params, not both")
        limits.validate_custom_id(f"{self.id_prefix}-0", where="id_prefix")
        self.messages = check_turns(self.messages, where="the operator's arguments")
        self.prefill = check_prefill(self.prefill, where="the operator's arguments")
        if self.prefill is not None:
            check_prefill_allowed(self.params, where="the operator's arguments")
        if ContentRenderer(self.content).citations and "output_config" in self.params:
            raise ClaudeBatchInputError(
                "citations cannot go with an output_schema (the API refuses the pair): ask for citations "
                "without a schema, or drop citations=True"
            )

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
            # Only when set: a run staged before these existed keeps its fingerprint.
            **({"messages": list(self.messages)} if self.messages else {}),
            **({"prefill": self.prefill} if self.prefill is not None else {}),
            **({"content": describe_content(self.content)} if self.content else {}),
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
        # The turns around the row's prompt: few-shot turns before it, the prefill after it.
        self._turns_before = b"".join(_encode(turn) + b"," for turn in spec.messages)
        self._turns_after = b"" if spec.prefill is None else b"," + _encode(_assistant(spec.prefill))
        # {"custom_id":<id>,"params":{...base...,"messages":[...turns,{"role":"user","content":<prompt>}...]}}
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
        #: The documents and images of each request (None: the prompt's text alone).
        self._content = ContentRenderer(spec.content) if spec.content else None
        # Whole-column rendering, for a plain concatenation with nothing per row but the prompt.
        self._columns = (
            column_renderer(
                spec.prompt, self._head, self._middle, self._tail, before=self._turns_before, after=self._turns_after
            )
            if spec.params_column is None and (self.system is None or self._system_is_constant) and not spec.content
            else None
        )

    def tally(self) -> dict[str, RequestTally]:
        """Per model: requests rendered so far, their bytes and their output token limits."""
        tallies = {model: replace(t, server_tools=set(t.server_tools)) for model, t in self._overridden.items()}
        if self._base_rows:
            base = tallies.setdefault(self.spec.model, RequestTally())
            base.requests += self._base_rows
            base.input_bytes += self._base_bytes
            base.max_output_tokens += self._base_rows * self.spec.max_tokens
            # A row's own prompt and system are plain text: what can change its cost is in the base.
            base.note(_encode({"params": {**self._base_params, "messages": list(self.spec.messages)}}))
        return tallies

    @property
    def needed_columns(self) -> list[str]:
        columns = list(self.prompt.fields)
        if self.system is not None:
            columns += [c for c in self.system.fields if c not in columns]
        for extra in (self.spec.id_column, self.spec.params_column):
            if extra and extra not in columns:
                columns.append(extra)
        if self._content is not None:
            columns += [c for c in self._content.columns if c not in columns]
        return columns

    def check_schema(self, schema: pa.Schema, *, source: str) -> None:
        if schema.metadata is not None and schema.metadata.items() >= NO_COLUMNS.items():
            return  # no rows and no header: nothing to render, so no column to miss
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

    def render_columns(self, batch: pa.RecordBatch, *, first_row: int) -> tuple[pa.Array, pa.Array] | None:
        """custom_ids and newline-terminated request lines of a whole record batch, rendered
        with Arrow's string kernels (the same bytes as :meth:`render_batch`), or None when this
        spec or batch needs the row path (which then names any bad row)."""
        if self._columns is None:
            return None
        self._check_text(batch, first_row)  # the row path's checks, before anything is rendered
        rendered = self._columns.lines(batch, first_row, self.spec.id_column, self.spec.id_prefix)
        if rendered is None:
            return None
        self._base_rows += batch.num_rows
        # Without the newlines, as the row path counts them.
        self._base_bytes += int(pc.sum(pc.binary_length(rendered[1])).as_py() or 0) - batch.num_rows
        self.rows_rendered += batch.num_rows
        return rendered

    def render_batch(self, batch: pa.RecordBatch, *, first_row: int) -> Iterator[RenderedRequest]:
        """Render one record batch whose first row is input row ``first_row`` (0-based)."""
        spec = self.spec
        self._check_text(batch, first_row)
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
            blocks = self._blocks(columns, offset, f"row {row} (custom_id {custom_id!r})")
            turn_parts = [_encode(prompt)] if blocks is None else self._message_content_parts(blocks, prompt)
            message = [
                b'"messages":[',
                self._turns_before,
                b'{"role":"user","content":',
                *turn_parts,
                b"}",
                self._turns_after,
                b"]",
            ]
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
                turn = b"".join(turn_parts)
                line = self._merged_line(custom_id, turn, system_columns, offset, per_row_params[offset], row, blocks)
            else:
                # One join: a document's base64 is copied into the line once.
                line = b"".join([head, _encode(custom_id), middle, extra, *message, tail])
                self._base_rows += 1
                self._base_bytes += len(line) - (0 if blocks is None else blocks.data_chars - blocks.tokens)
            yield RenderedRequest(custom_id, line)
        self.rows_rendered += batch.num_rows

    def _message_content_parts(self, blocks: RenderedBlocks, prompt: str) -> list[bytes]:
        assert self._content is not None  # blocks exist only with content
        return self._content.message_content_parts(blocks, prompt)

    def _blocks(self, columns: dict[str, list[Any]], offset: int, where: str) -> RenderedBlocks | None:
        """A row's documents and images (read, checked, encoded), or None without any. The bytes
        count in the cost ceiling as their estimated tokens, not as their base64."""
        if self._content is None:
            return None
        return self._content.blocks([columns[block.column][offset] for block in self._content.blocks_spec], where)

    def _check_text(self, batch: pa.RecordBatch, first_row: int) -> None:
        """Every value a template inserts must read as text: NaN and infinite floats, lists and
        structs (unless the template formats them explicitly), and, for the prompt, empty strings
        unless ``allow_empty_prompt`` are errors naming the first such row and its column.
        Integers, decimals, booleans and dates are inserted as they print. Checked per column with Arrow compute, so the per-row loop stays lean;
        nulls are reported by the loop itself."""
        checks = [(self.prompt, "prompt", not self.spec.allow_empty_prompt)]
        if self.system is not None and not self._system_is_constant:
            checks.append((self.system, "system prompt", False))
        for template, role, reject_empty in checks:
            for name in template.fields:
                column = batch.column(name)
                if pa.types.is_dictionary(column.type):
                    column = column.dictionary_decode()
                kind = column.type
                if pa.types.is_null(kind):
                    continue
                problem: str | None = None
                if pa.types.is_string(kind) or pa.types.is_large_string(kind) or arrow_is(kind, "is_string_view"):
                    if reject_empty:
                        bad = pc.match_substring_regex(column, r"^\s*$")
                        problem = "empty (set allow_empty_prompt=True to send it anyway)"
                    else:
                        continue
                elif pa.types.is_floating(kind):
                    bad = pc.or_(pc.is_nan(column), pc.is_inf(column))
                    problem = "not a finite number"
                elif (
                    pa.types.is_integer(kind)
                    or pa.types.is_decimal(kind)
                    or pa.types.is_boolean(kind)
                    or pa.types.is_temporal(kind)
                ):
                    continue  # a ticket number or a date reads the same in any prompt
                elif name not in template.formatted:
                    bad = pc.is_valid(column)
                    problem = (
                        f"{kind} where the {role} needs text; format it explicitly to insert it anyway "
                        f"(e.g. {{{name}!s}})"
                    )
                else:
                    continue
                hit = pc.index(pc.fill_null(bad, False), True).as_py()
                if hit >= 0:
                    raise ClaudeBatchInputError(
                        f"row {first_row + hit} ({self._row_label(batch, hit, first_row)}): column {name!r} is "
                        f"{problem}; its value is {column[hit].as_py()!r}"
                    )

    def _row_label(self, batch: pa.RecordBatch, offset: int, first_row: int) -> str:
        if self.spec.id_column:
            return f"custom_id {batch.column(self.spec.id_column)[offset].as_py()!r}"
        return f"custom_id {f'{self.spec.id_prefix}-{first_row + offset}'!r}"

    def _merged_line(
        self,
        custom_id: str,
        turn: bytes,
        system_columns: list[list[Any]] | None,
        offset: int,
        overrides: Any,
        row: int,
        blocks: RenderedBlocks | None = None,
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
        where = f"row {row} (custom_id {custom_id!r}), params_column {self.spec.params_column!r}"
        overrides = dict(overrides)
        # A row's own turns and prefill replace the spec's (None: the spec's; [] and "": none).
        row_turns, row_prefill = overrides.pop("messages", None), overrides.pop("prefill", None)
        turns = self.spec.messages if row_turns is None else check_turns(row_turns, where=where)
        prefill = self.spec.prefill if row_prefill is None else check_prefill(row_prefill, where=where)
        check_params(overrides, where=where)
        params = dict(self._base_params)
        if system_columns is not None and self.system is not None:
            params["system"] = self.system.render([column[offset] for column in system_columns])
        params.update(overrides)
        if prefill is not None:
            check_prefill_allowed(params, where=where)
        user = {"role": "user", "content": msgspec.Raw(turn)}
        params["messages"] = [*turns, user, *([_assistant(prefill)] if prefill else [])]
        line = _encode({"custom_id": custom_id, "params": params})
        max_tokens = int(params["max_tokens"])  # checked: the spec's, or the row's by check_params
        tally = self._overridden.setdefault(str(params.get("model")), RequestTally())
        tally.add(line, max_tokens)
        if blocks is not None:
            tally.input_bytes -= blocks.data_chars - blocks.tokens
        return line


def _assistant(prefill: str) -> dict[str, str]:
    """The prefill as the assistant turn after the row's prompt."""
    return {"role": "assistant", "content": prefill}


def rows_to_table(rows: Sequence[Any]) -> pa.Table:
    """A list of strings (column ``text``) or of dicts (one column per key) as a table."""
    if not rows:
        return pa.table({TEXT_COLUMN: pa.array([], pa.string())})
    if all(isinstance(row, str) for row in rows):
        try:
            return pa.table({TEXT_COLUMN: pa.array(rows, pa.string())})
        except (pa.ArrowException, UnicodeEncodeError) as exc:
            raise ClaudeBatchInputError(bad_value_message("the list", TEXT_COLUMN, rows, exc)) from None
    if all(isinstance(row, Mapping) for row in rows):
        try:
            return _no_text_as_bytes(pa.Table.from_pylist([dict(row) for row in rows]), rows)
        except (pa.ArrowException, UnicodeEncodeError) as exc:
            keys = list(dict.fromkeys(key for row in rows for key in row))
            for key in keys:
                values = [row.get(key) for row in rows]
                if first_bad_value(values) is not None:
                    raise ClaudeBatchInputError(bad_value_message("the list of dicts", key, values, exc)) from None
            raise ClaudeBatchInputError(f"the list of dicts has columns of mixed types: {exc}") from None
    kinds = sorted({type(row).__name__ for row in rows})
    first = next(i for i, row in enumerate(rows) if not isinstance(row, type(rows[0])))
    raise ClaudeBatchInputError(
        f"a list source must hold only strings or only dicts, got {kinds} (row {first} is {rows[first]!r})"
    )


def _no_text_as_bytes(table: pa.Table, rows: Sequence[Any]) -> pa.Table:
    """Arrow makes a column of text and bytes a bytes column, silently: a path among bytes
    would then be read as a document's content. Such a column is an error naming its row."""
    for column in table.schema:
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            values = [row.get(column.name) for row in rows]
            if first_bad_value(values) is not None:
                raise ClaudeBatchInputError(bad_value_message("the list of dicts", column.name, values, TypeError()))
    return table


def first_bad_value(values: Sequence[Any]) -> int | None:
    """Where a column of Python values stops being one Arrow type: the first string that is
    not valid Unicode (a lone surrogate), the first value of another kind than the column's
    first one, or the first NaN of a column that is not numbers. ``None`` when there is none."""
    kind: str | None = None
    first_nan: int | None = None
    mismatch: int | None = None
    for index, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, float) and value != value:
            first_nan = index if first_nan is None else first_nan
            continue
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                mismatch = index
                break
        if isinstance(value, (list, tuple)) and first_bad_value(value) is not None:
            mismatch = index
            break
        this = "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__
        if kind is None:
            kind = this
        elif this != kind:
            mismatch = index
            break
    found = [i for i in (mismatch, first_nan if kind != "number" else None) if i is not None]
    return min(found) if found else None


def bad_value_message(source: str, column: str, values: Sequence[Any], exc: BaseException) -> str:
    """The error for a column that cannot become Arrow, naming its first bad row."""
    index = first_bad_value(values)
    if index is None:
        return f"{source} cannot be converted to Arrow: column {column!r}: {exc}"
    value = values[index]
    what = "NaN" if isinstance(value, float) else "not valid Unicode text (a lone surrogate?)"
    if isinstance(value, (list, tuple)) and first_bad_value(value) is not None:
        what = f"a list whose item {first_bad_value(value)} is NaN, invalid text or of another type than the others"
    elif not (isinstance(value, float) and value != value) and not isinstance(value, str):
        what = f"a {type(value).__name__} among values of another type"
    elif isinstance(value, str):
        value = value.encode("utf-8", "backslashreplace").decode()
    return f"{source}, row {index}, column {column!r}: the value is {what} ({value!r})"
