"""The JSON Schema subset Juju applies to action parameters: types, enums, bounds, nesting."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
    "null": (type(None),),
}


def _type_ok(value: Any, name: str) -> bool:
    if name not in _TYPES:
        return True  # unknown type names are not ours to refuse
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def _check_type(value: Any, schema: Mapping[str, Any], where: str) -> list[str]:
    wanted = schema.get("type")
    if wanted is None:
        return []
    names = [wanted] if isinstance(wanted, str) else list(cast("Sequence[str]", wanted))
    if any(_type_ok(value, n) for n in names):
        return []
    return [f"{where}: {value!r} is not of type {' or '.join(names)}"]


def _check_bounds(value: Any, schema: Mapping[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        checks: dict[str, Callable[[float], bool]] = {
            "minimum": lambda b: value >= b,
            "maximum": lambda b: value <= b,
            "exclusiveMinimum": lambda b: value > b,
            "exclusiveMaximum": lambda b: value < b,
        }
        for key, ok in checks.items():
            if key in schema and not ok(schema[key]):
                problems.append(f"{where}: {value!r} violates {key} {schema[key]}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{where}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{where}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{where}: does not match {schema['pattern']!r}")
    return problems


def _check_object(value: Mapping[str, Any], schema: Mapping[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    properties = cast("Mapping[str, Any]", schema.get("properties") or {})
    for name in schema.get("required") or ():
        if name not in value:
            problems.append(f"{where}: missing required property {name!r}")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            problems += validate(item, properties[name], f"{where}.{name}")
        elif extra is False:
            problems.append(f"{where}: additional property {name!r} is not allowed")
        elif isinstance(extra, Mapping):
            problems += validate(item, cast("Mapping[str, Any]", extra), f"{where}.{name}")
    return problems


def validate(value: Any, schema: Mapping[str, Any], where: str = "params") -> list[str]:
    """Every way `value` violates `schema`; empty when it conforms."""
    problems = _check_type(value, schema, where)
    if problems:
        return problems
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} is not one of {list(schema['enum'])}")
    if "const" in schema and value != schema["const"]:
        problems.append(f"{where}: must be {schema['const']!r}")
    problems += _check_bounds(value, schema, where)
    if isinstance(value, Mapping):
        problems += _check_object(cast("Mapping[str, Any]", value), schema, where)
    items = schema.get("items")
    if isinstance(value, (list, tuple)) and isinstance(items, Mapping):
        for i, item in enumerate(cast("Sequence[Any]", value)):
            problems += validate(item, cast("Mapping[str, Any]", items), f"{where}[{i}]")
    return problems


def action_schema(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The object schema of one action in charmcraft.yaml (`params`, `required`, ...)."""
    return {
        "type": "object",
        "properties": dict(spec.get("params") or {}),
        "required": list(spec.get("required") or ()),
        "additionalProperties": spec.get("additionalProperties", True),
    }


def fill_defaults(params: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The params with each missing top-level parameter's default filled in, as Juju does."""
    filled = dict(params)
    declared = cast("Mapping[str, Any]", spec.get("params") or {})
    for name, param in declared.items():
        if name not in filled and isinstance(param, Mapping) and "default" in param:
            filled[name] = cast("Mapping[str, Any]", param)["default"]
    return filled
