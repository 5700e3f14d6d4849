"""The emulator's answers to requests with ``output_config.format`` (structured outputs).

An answer is a deterministic JSON instance of the request's (API-adapted) schema, drawn from
a seed: enums pick a value, numbers are in ``[0, 1)``, integers in ``1..5`` (bounds the SDK
moved into descriptions are not read, so keep test schemas within them), strings are short
and say they come from an emulator, optional and nullable fields are sometimes left out or
null. :func:`answer` can also spoil it on purpose, as a test asks through the emulator's
fractions: ``invalid`` (a required field missing, or not JSON when nothing is required),
``refused`` and ``truncated``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_WORDS = ("emulated", "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf")
_FORMATS = {
    "date": "2026-01-{day:02d}",
    "date-time": "2026-01-{day:02d}T12:00:00Z",
    "time": "12:{day:02d}:00",
    "email": "user{day}@example.com",
    "uri": "https://example.com/{day}",
    "uuid": "00000000-0000-4000-8000-0000000000{day:02d}",
}
#: What a refused answer's ``stop_details`` says, as the API's ``RefusalStopDetails``.
REFUSAL_DETAILS = {"type": "refusal", "category": "general_harms", "explanation": "emulated refusal"}


def _draw(seed: int, *parts: object) -> int:
    digest = hashlib.blake2b(f"{seed}\x1f{'/'.join(map(str, parts))}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def instance(schema: dict[str, Any], seed: int) -> Any:
    """A JSON value valid for ``schema`` (local ``$ref`` s into ``$defs`` followed)."""
    defs = {f"#/$defs/{name}": value for name, value in (schema.get("$defs") or {}).items()}
    defs.update({f"#/definitions/{name}": value for name, value in (schema.get("definitions") or {}).items()})
    return _value(schema, defs, seed, "$")


def _value(schema: dict[str, Any], defs: dict[str, Any], seed: int, path: str) -> Any:
    draw = _draw(seed, path)
    if "$ref" in schema:
        return _value(defs[schema["$ref"]], defs, seed, path)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][draw % len(schema["enum"])]
    variants = schema.get("anyOf") or schema.get("oneOf")
    if variants:
        concrete = [v for v in variants if v.get("type") != "null"]
        if len(concrete) < len(variants) and draw % 4 == 0:
            return None
        return _value(concrete[0] if concrete else variants[0], defs, seed, path)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        required = set(schema.get("required") or ())
        out = {}
        for name, sub in (schema.get("properties") or {}).items():
            if name in required or _draw(seed, path, name, "present") % 3:
                out[name] = _value(sub, defs, seed, f"{path}.{name}")
        return out
    if kind == "array":
        items = schema.get("items") or {"type": "string"}
        return [_value(items, defs, seed, f"{path}[{k}]") for k in range(1 + draw % 3)]
    if kind == "integer":
        return 1 + draw % 5
    if kind == "number":
        return (draw % 1000) / 1000
    if kind == "boolean":
        return bool(draw % 2)
    if kind == "null":
        return None
    template = _FORMATS.get(str(schema.get("format")))
    if template is not None:
        return template.format(day=1 + draw % 28)
    return " ".join(_WORDS[(draw >> (4 * k)) % len(_WORDS)] for k in range(2))


def answer(schema: dict[str, Any], seed: int, spoil: str | None = None) -> str:
    """The answer text: a valid instance, or spoiled as ``spoil`` says (``invalid``,
    ``truncated``; a refusal's text is the caller's)."""
    value = instance(schema, seed)
    text = json.dumps(value, separators=(",", ":"))
    if spoil == "invalid":
        required = list(schema.get("required") or ())
        if isinstance(value, dict) and required:
            value.pop(required[0], None)
            return json.dumps(value, separators=(",", ":"))
        return "Sure! " + text
    if spoil == "truncated":
        return text[: max(1, len(text) // 2)]
    return text
