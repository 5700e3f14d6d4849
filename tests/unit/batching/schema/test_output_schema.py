"""output_schema: schema in -> the API's format, column types and a validator; unsupported
features rejected with the field named."""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec
import pyarrow as pa
import pytest
from pydantic import BaseModel, Field

from airflow_provider_claude_batch.batching.schema.output_schema import OutputSchema, with_output_format
from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError


class Item(BaseModel):
    sku: str
    quantity: int = Field(ge=1)


class Order(BaseModel):
    kind: Literal["purchase", "refund"]
    total: float
    paid: bool
    items: list[Item]
    comment: str | None = None


def test_a_pydantic_model_gives_format_columns_and_validator() -> None:
    schema = OutputSchema.from_user(Order)
    assert schema.api_format["type"] == "json_schema"
    adapted = schema.api_format["schema"]
    assert adapted["additionalProperties"] is False
    assert "minimum" not in json.dumps(adapted["$defs"]["Item"]["properties"]["quantity"].get("minimum", ""))
    assert schema.arrow_schema == pa.schema(
        [
            ("kind", pa.dictionary(pa.int32(), pa.string())),
            ("total", pa.float64()),
            ("paid", pa.bool_()),
            ("items", pa.list_(pa.struct([("sku", pa.string()), ("quantity", pa.int64())]))),
            ("comment", pa.string()),
        ]
    )
    good = {"kind": "refund", "total": 3, "paid": True, "items": [{"sku": "a", "quantity": 2}]}
    schema.decoder.decode(json.dumps(good))
    with pytest.raises(msgspec.ValidationError, match=r"\$\.items\[0\]\.quantity"):
        schema.decoder.decode(json.dumps({**good, "items": [{"sku": "a", "quantity": 0}]}))  # ge=1, kept by us
    with pytest.raises(msgspec.ValidationError, match="unknown field `extra`"):
        schema.decoder.decode(json.dumps({**good, "extra": 1}))
    with pytest.raises(msgspec.ValidationError, match="Expected `str`, got `null`"):
        schema.decoder.decode(json.dumps({**good, "items": [{"sku": None, "quantity": 1}]}))


def test_the_manifest_text_rebuilds_the_same_schema() -> None:
    schema = OutputSchema.from_user(Order)
    again = OutputSchema.from_user(json.loads(json.dumps({"s": schema.as_json()}))["s"])
    assert again.arrow_schema == schema.arrow_schema and again.api_format == schema.api_format


def test_output_format_goes_into_output_config_once() -> None:
    schema = OutputSchema.from_user(Order)
    params = with_output_format({"temperature": 0, "output_config": {"effort": "low"}}, schema)
    assert params["output_config"] == {"effort": "low", "format": schema.api_format}
    with pytest.raises(ClaudeBatchInputError, match="give the schema once"):
        with_output_format({"output_config": {"format": {"type": "json_schema", "schema": {}}}}, schema)


def _obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (_obj(a={"anyOf": [{"type": "string"}, {"type": "integer"}]}), r"\$\.a: unions are not supported"),
        (_obj(a={"type": ["string", "integer"]}), r"\$\.a: unions are not supported"),
        (_obj(a={"type": "object", "additionalProperties": {"type": "string"}}), r"\$\.a: an object needs"),
        (
            _obj(a={"type": "object", "properties": {"b": {"type": "string"}}, "additionalProperties": True}),
            r"\$\.a: additionalProperties must be false",
        ),
        (_obj(a={"enum": [1, 2]}), r"\$\.a: only enums of strings"),
        (_obj(a={"type": "array"}), r"\$\.a: an array needs 'items'"),
        (_obj(a={"type": "string", "not": {"const": "x"}}), r"\$\.a: 'not' is not supported"),
        (
            _obj(a={"type": "object", "properties": {"b": {"type": "string"}}, "patternProperties": {}}),
            "patternProperties",
        ),
        (
            {"$defs": {"N": _obj(next={"$ref": "#/$defs/N"})}, **_obj(root={"$ref": "#/$defs/N"})},
            r"\$\.root\.next: recursive schemas are not supported",
        ),
        (_obj(a={"$ref": "https://example.com/s.json"}), r"\$\.a: \$ref .* is not a local definition"),
        (_obj(text={"type": "string"}), r"\['text'\] would clash with result columns"),
        (_obj(output_error={"type": "string"}), "would clash"),
        ({"type": "array", "items": {"type": "string"}}, "must describe an object"),
        ({"type": "object", "properties": {}}, "an object needs 'properties'"),
        (_obj(a={"type": "null"}), "always null"),
        (_obj(a={"description": "no type"}), r"\$\.a: needs a 'type'"),
    ],
)
def test_unsupported_schemas_are_rejected_naming_the_field(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(ClaudeBatchInputError, match=message):
        OutputSchema.from_user(schema)


def test_nullable_and_optional_fields() -> None:
    schema = OutputSchema.from_user(
        {
            "type": "object",
            "properties": {"a": {"type": ["integer", "null"]}, "b": {"type": "string"}},
            "required": ["a"],
        }
    )
    decode = schema.decoder.decode
    decode('{"a": null}')  # nullable
    decode('{"a": 1}')  # b optional: may be absent
    with pytest.raises(msgspec.ValidationError, match=r"\$\.b"):
        decode('{"a": 1, "b": null}')  # ... but not null
    with pytest.raises(msgspec.ValidationError, match="missing required field `a`"):
        decode("{}")
    assert schema.api_format["schema"]["properties"]["a"]["anyOf"][1] == {"type": "null"}


def test_not_a_schema_at_all() -> None:
    with pytest.raises(ClaudeBatchInputError, match="pydantic model class or a JSON schema dict"):
        OutputSchema.from_user(42)
