"""Error messages for the file formats validated by pydantic (scenarios, profiles): one line per
bad key, naming its path, what is wrong, what was given and what is allowed — the allowed values
read from the model's own JSON schema, so the message cannot drift from the check."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel, ValidationError

# pydantic's model_json_schema() of a file format: a JSON Schema document, so a dict
JsonSchema = dict[str, Any]

@functools.cache
def model_schema(model: type[BaseModel]) -> JsonSchema:
    """A file format's JSON schema, built once per model."""
    return model.model_json_schema()


def invalid_file_message(error: ValidationError, model: type[BaseModel], title: str) -> str:
    """`title:` then one indented line per bad key (at most 20), for a file of `model`."""
    lines = describe_validation_error(error, model_schema(model), limit=20)
    return f"{title}:\n  " + "\n  ".join(lines)


_OPEN = ("gt", "lt", "exclusiveMinimum", "exclusiveMaximum")
_PLAIN = {
    "extra_forbidden": "unknown key (check its spelling and where it sits)",
    "missing": "required key is missing",
    "model_type": "must be an object / table ({...})",
    "model_attributes_type": "must be an object / table ({...})",
    "list_type": "must be a list ([...])",
}


def describe_validation_error(error: ValidationError, schema: JsonSchema, *,
                              limit: int = 8) -> list[str]:
    """The lines of the message (at most `limit` problems, then a count of the rest).

    A key whose type is a union (a number or "profile") fails once per member; it gets one
    line. Keys are written `units[3].n_prunable`."""
    lines: list[str] = []
    seen: set[tuple[Any, ...]] = set()
    items = error.errors()
    for item in items:
        full = tuple(item["loc"])
        loc = full if item["type"] == "extra_forbidden" else _data_path(full, schema)
        union = len(loc) < len(full)
        if loc in seen:
            continue
        seen.add(loc)
        if len(seen) > limit:
            continue
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).removeprefix(".")
        message = item["msg"].removeprefix("Value error, ")
        if not key and item["type"] == "value_error":
            lines.append(message)  # a whole-file check: its message names the keys
            continue
        message = _PLAIN.get(item["type"], "not accepted" if union else message)
        got = item.get("input")
        shown = ("" if (item["type"] in _PLAIN and item["type"] != "extra_forbidden")
                 or isinstance(got, dict | list) else f" (got {_short(got)})")
        allowed = None if item["type"] == "extra_forbidden" else allowed_values(schema, loc)
        lines.append(f"{key or '(the whole file)'}: {message}{shown}"
                     + (f"; allowed: {allowed}" if allowed else ""))
    if len(seen) > limit:
        lines.append(f"… and {len(seen) - limit} more")
    return lines


def allowed_values(schema: JsonSchema, loc: tuple[Any, ...]) -> str | None:
    """What the schema allows at a data path: "a number, 0 ≤ value ≤ 1e+06; or 'profile'"."""
    node = _node(schema, loc)
    if node is None:
        return None
    texts = [_describe(schema, variant) for variant in node.get("anyOf", [node])]
    return "; or ".join(t for t in texts if t) or None


def _data_path(loc: tuple[Any, ...], schema: JsonSchema) -> tuple[Any, ...]:
    """The part of pydantic's error location that names data (union member tags dropped)."""
    path: list[Any] = []
    for part in loc:
        if _node(schema, (*path, part)) is None:
            break
        path.append(part)
    return tuple(path)


def _node(schema: JsonSchema, loc: tuple[Any, ...]) -> JsonSchema | None:
    node: JsonSchema | None = _resolve(schema, schema)
    for part in loc:
        if node is None:
            return None
        candidates = [_resolve(schema, v) for v in node.get("anyOf", [node])]
        node = None
        for candidate in candidates:
            if isinstance(part, int) and "items" in candidate:
                node = _resolve(schema, candidate["items"])
            elif isinstance(part, str) and part in candidate.get("properties", {}):
                node = _resolve(schema, candidate["properties"][part])
            if node is not None:
                break
    return node


def _resolve(schema: JsonSchema, node: JsonSchema) -> JsonSchema:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _describe(schema: JsonSchema, variant: JsonSchema) -> str | None:
    variant = _resolve(schema, variant)
    if "enum" in variant or "const" in variant:
        return " or ".join(repr(v) for v in variant.get("enum", [variant.get("const")]))
    kind = variant.get("type")
    if kind == "null":
        return "absent"
    if kind in ("number", "integer"):
        text = "an integer" if kind == "integer" else "a number"
        # pydantic writes JSON Schema's names, or its own where a validator wraps the type
        lower = [f"{variant[k]:g} {'<' if k in _OPEN else '≤'} "
                 for k in ("ge", "gt", "minimum", "exclusiveMinimum") if k in variant]
        upper = [f" {'<' if k in _OPEN else '≤'} {variant[k]:g}"
                 for k in ("le", "lt", "maximum", "exclusiveMaximum") if k in variant]
        return f"{text}, {''.join(lower[:1])}value{''.join(upper[:1])}" if lower or upper \
            else text
    if kind == "string":
        return "a string"
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        most = variant.get("maxItems")
        return "a list" + (f" of at most {most} items" if most is not None else "")
    if kind == "object" or "properties" in variant:
        return "an object with keys " + ", ".join(variant.get("properties", {}))
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
