"""An answer's schema: a pydantic model or a JSON schema -> the API's format, column types, a validator.

One :class:`OutputSchema` is built once per run from what the DAG author gave
(``output_schema=`` on the submit operator) and is the single home of three derived things:

* ``api_format``: the ``output_config.format`` every request carries (``{"type":
  "json_schema", "schema": ...}``), adapted once with the SDK's ``transform_schema`` to the
  API's strict rules (``additionalProperties: false`` everywhere; constraints the API does not
  enforce, such as ``minimum``, move into the description). Adapted when first asked for (the
  task's run), not when the DAG is parsed: building a schema loads neither the SDK nor pyarrow.
* ``arrow_schema``: one typed column per top-level property (string, int64, float64, bool,
  enum -> dictionary-encoded string, array -> list, object -> struct; every column nullable,
  because a row whose answer does not validate keeps its text and gets nulls here).
* ``decoder``: a msgspec decoder of generated types that parses *and* validates an answer in
  C, enforcing what the author wrote (including the bounds the API does not enforce), and
  whose errors name the field (``$.address.zip``).

Invariants:

* Everything is checked here, before anything is submitted: a schema feature that the API
  rejects or that has no column type (unions other than ``X | None``, recursion, free-form
  objects, maps, non-string enums, ``not``/``if``/``patternProperties``...) raises
  :class:`ClaudeBatchInputError` naming the field.
* The manifest records :attr:`OutputSchema.source` (plain JSON); rebuilding from it gives the
  same format, columns and validator, so the transfer needs nothing but the manifest.
* Answer fields become top-level columns beside the results schema, so their names may not be
  the name of a result column.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import msgspec

from airflow_provider_claude_batch.batching.api.column_names import RESULT_COLUMNS
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

if TYPE_CHECKING:
    import pyarrow as pa

#: Columns the transfer adds for every typed answer: how it went and, when not valid, why.
STATUS_COLUMN = "output_status"
ERROR_COLUMN = "output_error"
#: ``output_status`` values: valid; did not parse or validate; refused; cut at max_tokens.
VALID, INVALID, REFUSED, TRUNCATED = "valid", "invalid", "refused", "truncated"

#: What ``on_invalid_output`` may be: land them marked, fail the task, or resubmit them.
ON_INVALID_OUTPUT = ("keep", "fail", "resubmit")


def check_on_invalid_output(value: str) -> str:
    """``on_invalid_output`` checked when the DAG is parsed (this module loads no pyarrow)."""
    if value not in ON_INVALID_OUTPUT:
        raise ClaudeBatchInputError(f"on_invalid_output must be one of {ON_INVALID_OUTPUT}, got {value!r}")
    return value


Kind = Literal["string", "integer", "number", "boolean", "enum", "array", "object"]

#: JSON schema keywords the API's structured outputs do not support (or that cannot become a
#: column type): rejected with the field's path.
_UNSUPPORTED_KEYWORDS = (
    "not",
    "if",
    "then",
    "else",
    "patternProperties",
    "dependentSchemas",
    "dependentRequired",
    "prefixItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "propertyNames",
    "contains",
    "allOf",
)
_CONSTRAINTS = {
    # JSON schema keyword -> msgspec.Meta argument (enforced by the validator only).
    "minimum": "ge",
    "maximum": "le",
    "exclusiveMinimum": "gt",
    "exclusiveMaximum": "lt",
    "multipleOf": "multiple_of",
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
    "minItems": "min_length",
    "maxItems": "max_length",
}


@dataclass(frozen=True)
class FieldType:
    """The type of one answer field, resolved from the schema (refs followed, ``X | None``
    folded into ``nullable``)."""

    kind: Kind
    nullable: bool = False
    values: tuple[str, ...] = ()  # enum
    items: FieldType | None = None  # array
    properties: tuple[tuple[str, FieldType, bool], ...] = ()  # object: (name, type, required)
    constraints: tuple[tuple[str, Any], ...] = ()  # msgspec.Meta arguments

    def arrow_type(self, *, top_level: bool = False) -> pa.DataType:
        import pyarrow as pa

        if self.kind == "enum":
            return pa.dictionary(pa.int32(), pa.string()) if top_level else pa.string()
        if self.kind == "array":
            assert self.items is not None
            return pa.list_(self.items.arrow_type())
        if self.kind == "object":
            return pa.struct([pa.field(name, kind.arrow_type()) for name, kind, _ in self.properties])
        return {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}[self.kind]

    def read_type(self) -> pa.DataType:
        """The type Arrow's JSON reader reads the field as (enums as plain strings)."""
        return self.arrow_type(top_level=False)


_SCALAR_PY: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}


@dataclass
class OutputSchema:
    """A run's answer schema; build it with :meth:`from_user` (see the module docstring)."""

    #: The JSON schema as the author gave it (a model's ``model_json_schema()``); in the manifest.
    source: dict[str, Any]
    #: The answer's top-level fields, in schema order.
    fields: tuple[tuple[str, FieldType, bool], ...]
    _api_format: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    _decoder: msgspec.json.Decoder[Any] | None = field(default=None, repr=False)

    @classmethod
    def from_user(cls, value: Any) -> OutputSchema:
        """From a pydantic model class or a JSON schema dict (or the ``source`` of one)."""
        if inspect.isclass(value) and hasattr(value, "model_json_schema"):
            try:
                source = value.model_json_schema()
            except Exception as exc:  # pydantic's schema generation errors vary by version
                raise ClaudeBatchInputError(f"output_schema {value.__name__}: no JSON schema: {exc}") from None
        elif isinstance(value, Mapping):
            source = copy.deepcopy(dict(value))
        elif isinstance(value, str):  # the JSON text a manifest records (see ``as_json``)
            try:
                source = json.loads(value)
            except ValueError as exc:
                raise ClaudeBatchInputError(f"output_schema is not valid JSON: {exc}") from None
        else:
            raise ClaudeBatchInputError(
                f"output_schema must be a pydantic model class or a JSON schema dict, got {type(value).__name__}"
            )
        if not isinstance(source, dict):
            raise ClaudeBatchInputError(f"output_schema must be a JSON object, got {type(source).__name__}")
        try:
            json.dumps(source)
        except (TypeError, ValueError) as exc:
            raise ClaudeBatchInputError(f"output_schema is not plain JSON: {exc}") from None
        root = _Resolver(source).resolve(source, "$", ())
        if root.kind != "object" or root.nullable:
            raise ClaudeBatchInputError(
                f"output_schema must describe an object (its properties become columns), got {root.kind}"
            )
        if not root.properties:
            raise ClaudeBatchInputError("output_schema has no properties: there would be nothing to type")
        taken = {*RESULT_COLUMNS, STATUS_COLUMN, ERROR_COLUMN}
        clashes = [name for name, _, _ in root.properties if name in taken]
        if clashes:
            raise ClaudeBatchInputError(
                f"output_schema field(s) {clashes} would clash with result columns of the same name; "
                "rename them in the schema"
            )
        return cls(source, root.properties)

    @property
    def api_format(self) -> dict[str, Any]:
        """``output_config.format``: the schema adapted by the SDK's own ``transform_schema``,
        once, when first asked for (the SDK is not imported while a DAG is parsed)."""
        if self._api_format is None:
            from anthropic.lib._parse._transform import transform_schema

            try:
                adapted = transform_schema(_type_lists_as_unions(self.source))
            except (AssertionError, ValueError, TypeError, KeyError) as exc:
                raise ClaudeBatchInputError(f"output_schema cannot be adapted for the API: {exc}") from None
            self._api_format = {"type": "json_schema", "schema": adapted}
        return self._api_format

    def as_json(self) -> str:
        """The schema as given, as JSON text in its own key order (what a manifest records)."""
        return json.dumps(self.source)

    @property
    def arrow_schema(self) -> pa.Schema:
        """The typed answer columns (without ``output_status``/``output_error``)."""
        import pyarrow as pa

        return pa.schema([pa.field(name, kind.arrow_type(top_level=True)) for name, kind, _ in self.fields])

    @property
    def read_schema(self) -> pa.Schema:
        """What Arrow's JSON reader reads valid answers as (enums as strings, cast afterwards)."""
        import pyarrow as pa

        return pa.schema([pa.field(name, kind.read_type()) for name, kind, _ in self.fields])

    @property
    def decoder(self) -> msgspec.json.Decoder[Any]:
        """Parses and validates one answer; raises ``msgspec.ValidationError`` naming the field."""
        if self._decoder is None:
            root = FieldType("object", properties=self.fields)
            self._decoder = msgspec.json.Decoder(_msgspec_type(root, "Answer"))
        return self._decoder


def with_output_format(params: Mapping[str, Any], schema: OutputSchema | None) -> dict[str, Any]:
    """Request params with ``output_config.format`` set from ``schema`` (other
    ``output_config`` keys, such as ``effort``, are kept); giving the format twice is an error."""
    merged = dict(params)
    if schema is None:
        return merged
    config = dict(merged.get("output_config") or {})
    if config.get("format") is not None:
        raise ClaudeBatchInputError(
            "request_params sets output_config.format and output_schema is given too: give the schema once"
        )
    config["format"] = schema.api_format
    merged["output_config"] = config
    return merged


class _Resolver:
    """Walks a JSON schema into :class:`FieldType`, following local ``$ref`` s."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.defs: dict[str, Any] = {}
        for key in ("$defs", "definitions"):
            defs = root.get(key)
            if isinstance(defs, Mapping):
                self.defs.update({f"#/{key}/{name}": value for name, value in defs.items()})

    def resolve(self, schema: Any, path: str, seen: tuple[str, ...]) -> FieldType:
        if not isinstance(schema, Mapping):
            raise ClaudeBatchInputError(f"output_schema field {path}: a schema must be an object, got {schema!r}")
        ref = schema.get("$ref")
        if ref is not None:
            if ref in seen:
                raise ClaudeBatchInputError(
                    f"output_schema field {path}: recursive schemas are not supported ({ref} refers to itself)"
                )
            if ref not in self.defs:
                raise ClaudeBatchInputError(
                    f"output_schema field {path}: $ref {ref!r} is not a local definition (#/$defs/...)"
                )
            return self.resolve(self.defs[ref], path, (*seen, ref))
        for keyword in _UNSUPPORTED_KEYWORDS:
            if keyword in schema:
                raise ClaudeBatchInputError(f"output_schema field {path}: {keyword!r} is not supported")
        variants = schema.get("anyOf", schema.get("oneOf"))
        types = schema.get("type")
        if isinstance(types, list):
            variants = [{**schema, "type": kind} for kind in types]
        if variants is not None:
            return self._union(variants, path, seen)
        constraints = tuple((_CONSTRAINTS[key], schema[key]) for key in _CONSTRAINTS if key in schema)
        values = schema["enum"] if "enum" in schema else [schema["const"]] if "const" in schema else None
        if values is not None:
            if not values or not all(isinstance(value, str) for value in values):
                raise ClaudeBatchInputError(
                    f"output_schema field {path}: only enums of strings are supported, got {values!r}"
                )
            return FieldType("enum", values=tuple(values))
        kind = schema.get("type")
        if kind in _SCALAR_PY:
            return FieldType(kind, constraints=constraints)
        if kind == "array":
            if "items" not in schema:
                raise ClaudeBatchInputError(f"output_schema field {path}: an array needs 'items'")
            return FieldType("array", items=self.resolve(schema["items"], f"{path}[]", seen), constraints=constraints)
        if kind == "object":
            return self._object(schema, path, seen)
        if kind == "null":
            raise ClaudeBatchInputError(f"output_schema field {path}: a field that is always null is not supported")
        raise ClaudeBatchInputError(f"output_schema field {path}: needs a 'type' (or enum/const/$ref), got {kind!r}")

    def _union(self, variants: Any, path: str, seen: tuple[str, ...]) -> FieldType:
        if not isinstance(variants, list):
            raise ClaudeBatchInputError(f"output_schema field {path}: anyOf must be a list")
        others = [v for v in variants if not (isinstance(v, Mapping) and v.get("type") == "null")]
        if len(others) != 1:
            raise ClaudeBatchInputError(
                f"output_schema field {path}: unions are not supported, except one type or null (X | None)"
            )
        inner = self.resolve(others[0], path, seen)
        return replace(inner, nullable=inner.nullable or len(variants) > 1)

    def _object(self, schema: Mapping[str, Any], path: str, seen: tuple[str, ...]) -> FieldType:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping) or not properties:
            raise ClaudeBatchInputError(
                f"output_schema field {path}: an object needs 'properties' (free-form objects have no column type)"
            )
        extra = schema.get("additionalProperties", False)
        if extra not in (False, None):
            raise ClaudeBatchInputError(
                f"output_schema field {path}: additionalProperties must be false (the API requires it; maps are "
                "not supported)"
            )
        required = set(schema.get("required") or ())
        unknown = sorted(required - set(properties))
        if unknown:
            raise ClaudeBatchInputError(f"output_schema field {path}: required names unknown properties {unknown}")
        return FieldType(
            "object",
            properties=tuple(
                (name, self.resolve(value, f"{path}.{name}", seen), name in required)
                for name, value in properties.items()
            ),
        )


def _type_lists_as_unions(schema: Any) -> Any:
    """A copy with ``"type": ["integer", "null"]`` written as ``anyOf`` (the form the SDK's
    ``transform_schema`` takes)."""
    if isinstance(schema, list):
        return [_type_lists_as_unions(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    out = {key: _type_lists_as_unions(value) for key, value in schema.items()}
    kinds = out.get("type")
    if isinstance(kinds, list):
        rest = {key: value for key, value in out.items() if key != "type"}
        variants = [{**rest, "type": kind} if kind != "null" else {"type": "null"} for kind in kinds]
        return variants[0] if len(variants) == 1 else {"anyOf": variants}
    return out


def _msgspec_type(kind: FieldType, name: str) -> Any:
    """The msgspec type that validates ``kind`` (optional fields default to None)."""
    if kind.kind == "enum":
        base: Any = Literal.__getitem__(kind.values)
    elif kind.kind == "array":
        assert kind.items is not None
        base = list[_msgspec_type(kind.items, name + "Item")]  # type: ignore[misc]
    elif kind.kind == "object":
        struct_fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        rename = {}
        for index, (field_name, field_kind, required) in enumerate(kind.properties):
            attribute = f"f{index}"
            rename[attribute] = field_name
            field_type = _msgspec_type(field_kind, f"{name}_{index}")
            struct_fields.append((attribute, field_type) if required else (attribute, field_type, None))
        # Required fields first: msgspec (like dataclasses) wants defaults last.
        struct_fields.sort(key=len)
        base = msgspec.defstruct(name, struct_fields, rename=rename, forbid_unknown_fields=True, gc=False)
    else:
        base = _SCALAR_PY[kind.kind]
    if kind.constraints:
        base = Annotated[base, msgspec.Meta(**dict(kind.constraints))]
    return Union[base, None] if kind.nullable else base  # noqa: UP007 (built at runtime)
