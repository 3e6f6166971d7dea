"""Execute-params schemas of the sub-action types (and the classic typed-params types), a small schema
language, and its two failure dialects:

- config-schema (`@kbn/config-schema`, what 8.x and the sub-action schemas of its era use): the first
  failure, `[path]: reason`; `oneOf` lists each branch's first failure under `types that failed
  validation:` (connector_types/opsgenie.ts shows the nested form); objects refuse unknown keys;
- zod v4 issues (9.x `schema.parse`): every failure as an issue object; objects strip unknown keys
  unless strict.

The tables of schemas are `subaction_tables`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.sandbox import kibana9

MISSING = kibana9.MISSING
js_type = kibana9.js_type


class Node:
    """A schema node."""


@dataclass(frozen=True)
class Str(Node):
    min: int | None = None
    max: int | None = None


@dataclass(frozen=True)
class Num(Node):
    """`coerce`: zod's `z.coerce.number()` (JS `Number(value)` first); config-schema's number takes numeric
    strings either way."""

    min: float | None = None
    max: float | None = None
    coerce: bool = False


@dataclass(frozen=True)
class Bool(Node):
    pass


@dataclass(frozen=True)
class AnyValue(Node):
    pass


@dataclass(frozen=True)
class Lit(Node):
    value: str | None  # None: config-schema's `literal(null)`, the second branch of `nullable`


@dataclass(frozen=True)
class Enum(Node):
    values: tuple[str, ...]


@dataclass(frozen=True)
class Arr(Node):
    item: Node
    max: int | None = None
    min: int | None = None


@dataclass(frozen=True)
class Maybe(Node):
    """A whole value that may be absent: config-schema `schema.maybe`, zod `.optional()` on the schema
    itself (SentinelOne's getActivities params)."""

    node: Node


@dataclass(frozen=True)
class Refine(Node):
    """A check on a value its node accepted: zod `.superRefine` / config-schema `validate`; `test` returns
    the failure message or None (bedrock's BedrockMessageSchema)."""

    node: Node
    test: Callable[[Any], str | None]


@dataclass(frozen=True)
class Rec(Node):
    value: Node


@dataclass(frozen=True)
class F:
    name: str
    node: Node
    required: bool = True
    nullable: bool = False


@dataclass(frozen=True)
class Obj(Node):
    fields: tuple[F, ...] = ()
    unknowns: str = "forbid"  # config-schema: forbid | allow | ignore
    strict: bool = False  # zod: .strict() refuses unknown keys


@dataclass(frozen=True)
class OneOf(Node):
    options: tuple[Node, ...]


def opt(name: str, node: Node, nullable: bool = False) -> F:
    return F(name, node, required=False, nullable=nullable)


@dataclass(frozen=True)
class Spec:
    """A framework type's registered sub-actions, each with its params schema (None: registered with
    `schema: null`, so any params pass). `dialect` "cs" pins config-schema's words in both lines, for a
    connector whose sub-action schemas are still `@kbn/config-schema` in current main; None follows the
    line."""

    sub_actions: Mapping[str, Node | None]
    dialect: str | None = None


def js_number(value: Any) -> float | None:
    """JS `Number(value)` as zod's coerce runs it; None stands for NaN."""
    if isinstance(value, bool):
        return float(value)
    if value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list) and len(value) <= 1:
        return 0.0 if not value else js_number(value[0]) if isinstance(value[0], str | int | float) else None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        try:
            number = float(text)
        except ValueError:
            return None
        return None if number != number else number
    return None


# ---- config-schema dialect -------------------------------------------------------------------------

Failure = tuple[list[str], str]


def _type_fail(path: list[str], kind: str, value: Any) -> Failure:
    return path, f"expected value of type [{kind}] but got [{js_type(value)}]"


def _cs(node: Node, value: Any, path: list[str]) -> Failure | None:
    if isinstance(node, AnyValue):
        return None
    if isinstance(node, Str):
        if not isinstance(value, str):
            return _type_fail(path, "string", value)
        if node.min is not None and len(value) < node.min:
            return path, f"value has length [{len(value)}] but it must have a minimum length of [{node.min}]."
        if node.max is not None and len(value) > node.max:
            return path, f"value has length [{len(value)}] but it must have a maximum length of [{node.max}]."
        return None
    if isinstance(node, Num):  # config-schema's number accepts numeric strings
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and value.strip():
            try:
                number = float(value)
            except ValueError:
                number = None
        if number is None:
            return _type_fail(path, "number", value)
        if node.min is not None and number < node.min:
            return path, f"Value must be equal to or greater than [{_num(node.min)}]."
        if node.max is not None and number > node.max:
            return path, f"Value must be equal to or lower than [{_num(node.max)}]."
        return None
    if isinstance(node, Maybe):
        return None if value is MISSING else _cs(node.node, value, path)
    if isinstance(node, Refine):
        found = _cs(node.node, value, path)
        if found is not None:
            return found
        message = node.test(value)
        return None if message is None else (path, message)
    if isinstance(node, Bool):
        return None if isinstance(value, bool) or value in ("true", "false") else _type_fail(path, "boolean", value)
    if isinstance(node, Lit):
        shown = "null" if node.value is None else node.value
        return None if value == node.value and value is not MISSING else (path, f"expected value to equal [{shown}]")
    if isinstance(node, Enum):
        if value in node.values:
            return None
        prefix = ".".join(path) + "." if path else ""
        lines = [f"- [{prefix}{i}]: expected value to equal [{v}]" for i, v in enumerate(node.values)]
        return path, "types that failed validation:\n" + "\n".join(lines)
    if isinstance(node, Arr):
        if not isinstance(value, list):
            return _type_fail(path, "array", value)
        if node.max is not None and len(value) > node.max:
            return path, f"array size is [{len(value)}], but cannot be greater than [{node.max}]"
        if node.min is not None and len(value) < node.min:
            return path, f"array size is [{len(value)}], but cannot be smaller than [{node.min}]"
        for i, item in enumerate(value):
            found = _cs(node.item, item, [*path, str(i)])
            if found:
                return found
        return None
    if isinstance(node, Rec):
        if not isinstance(value, dict):
            return _type_fail(path, "object", value)
        for key, item in value.items():
            found = _cs(node.value, item, [*path, str(key)])
            if found:
                return found
        return None
    if isinstance(node, Obj):
        if value is MISSING:
            value = {}  # config-schema objects default to {} and then check their keys
        if not isinstance(value, dict):
            return _type_fail(path, "object", value)
        for f in node.fields:
            item = value.get(f.name, MISSING)
            if (item is MISSING and not f.required) or (item is None and f.nullable):
                continue
            found = _cs(f.node, item, [*path, f.name])
            if found:
                return found
        if node.unknowns == "forbid":
            known = {f.name for f in node.fields}
            for key in value:
                if key not in known:
                    return [*path, key], "definition for this key is missing"
        return None
    if isinstance(node, OneOf):
        lines = []
        for i, option in enumerate(node.options):
            found = _cs(option, value, path)
            if found is None:
                return None
            where, why = found
            label = ".".join([*path, str(i), *where[len(path):]])
            lines.append(f"- [{label}]: " + why.replace("\n", "\n "))
        return path, "types that failed validation:\n" + "\n".join(lines)
    raise TypeError(f"unknown schema node {node!r}")


def check_cs(node: Node, value: Any, path: list[str]) -> str | None:
    """config-schema's message for the first failure, or None."""
    found = _cs(node, value, path)
    if found is None:
        return None
    where, why = found
    return f"[{'.'.join(where)}]: {why}" if where else why


# ---- zod v4 dialect --------------------------------------------------------------------------------


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _zpath(path: list[str]) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in path]


def _ztype(path: list[str], kind: str, value: Any) -> dict[str, Any]:
    return {"expected": kind, "code": "invalid_type", "path": _zpath(path),
            "message": f"Invalid input: expected {kind}, received {js_type(value)}"}


def _zod_number(node: Num, value: Any, path: list[str]) -> list[dict[str, Any]]:
    """zod v4's number: NaN is its own `received`; `.min`/`.max` bounds are inclusive."""
    if node.coerce:
        number = js_number(value)
        if number is None:
            return [{"expected": "number", "code": "invalid_type", "received": "NaN", "path": _zpath(path),
                     "message": "Invalid input: expected number, received NaN"}]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        return [_ztype(path, "number", value)]
    if node.min is not None and number < node.min:
        return [{"origin": "number", "code": "too_small", "minimum": node.min, "inclusive": True,
                 "path": _zpath(path), "message": f"Too small: expected number to be >={_num(node.min)}"}]
    if node.max is not None and number > node.max:
        return [{"origin": "number", "code": "too_big", "maximum": node.max, "inclusive": True,
                 "path": _zpath(path), "message": f"Too big: expected number to be <={_num(node.max)}"}]
    return []


def check_zod(node: Node, value: Any, path: list[str]) -> list[dict[str, Any]]:
    """zod v4's issues (en locale), every one, in its key order."""
    if isinstance(node, AnyValue):
        return []
    if isinstance(node, Str):
        if not isinstance(value, str):
            return [_ztype(path, "string", value)]
        if node.min is not None and len(value) < node.min:
            return [{"origin": "string", "code": "too_small", "minimum": node.min, "inclusive": True,
                     "path": _zpath(path), "message": f"Too small: expected string to have >={node.min} characters"}]
        if node.max is not None and len(value) > node.max:
            return [{"origin": "string", "code": "too_big", "maximum": node.max, "inclusive": True,
                     "path": _zpath(path), "message": f"Too big: expected string to have <={node.max} characters"}]
        return []
    if isinstance(node, Num):
        return _zod_number(node, value, path)
    if isinstance(node, Maybe):
        return [] if value is MISSING else check_zod(node.node, value, path)
    if isinstance(node, Refine):
        issues = check_zod(node.node, value, path)
        message = None if issues else node.test(value)
        return issues if message is None else [{"code": "custom", "message": message, "path": _zpath(path)}]
    if isinstance(node, Bool):
        return [] if isinstance(value, bool) else [_ztype(path, "boolean", value)]
    if isinstance(node, Lit | Enum):
        values = (node.value,) if isinstance(node, Lit) else node.values
        if value in values:
            return []
        quoted = "|".join("null" if v is None else f'"{v}"' for v in values)
        message = (f"Invalid input: expected {quoted}" if len(values) == 1
                   else f"Invalid option: expected one of {quoted}")
        return [{"code": "invalid_value", "values": list(values), "path": _zpath(path), "message": message}]
    if isinstance(node, Arr):
        if not isinstance(value, list):
            return [_ztype(path, "array", value)]
        issues = [i for n, item in enumerate(value) for i in check_zod(node.item, item, [*path, str(n)])]
        if node.min is not None and len(value) < node.min:
            issues.append({"origin": "array", "code": "too_small", "minimum": node.min, "inclusive": True,
                           "path": _zpath(path), "message": f"Too small: expected array to have >={node.min} items"})
        if node.max is not None and len(value) > node.max:
            issues.append({"origin": "array", "code": "too_big", "maximum": node.max, "inclusive": True,
                           "path": _zpath(path), "message": f"Too big: expected array to have <={node.max} items"})
        return issues
    if isinstance(node, Rec):
        if not isinstance(value, dict):
            return [_ztype(path, "record", value)]
        return [i for key, item in value.items() for i in check_zod(node.value, item, [*path, str(key)])]
    if isinstance(node, Obj):
        if not isinstance(value, dict):
            return [_ztype(path, "object", value)]
        issues = []
        for f in node.fields:
            item = value.get(f.name, MISSING)
            if (item is MISSING and not f.required) or (item is None and f.nullable):
                continue
            issues.extend(check_zod(f.node, item, [*path, f.name]))
        extra = [k for k in value if k not in {f.name for f in node.fields}]
        if node.strict and extra:
            keys = ", ".join(f'"{k}"' for k in extra)
            issues.append({"code": "unrecognized_keys", "keys": extra, "path": _zpath(path),
                           "message": f"Unrecognized key{'s' if len(extra) > 1 else ''}: {keys}"})
        return issues
    if isinstance(node, OneOf):
        errors = []
        for option in node.options:
            found = check_zod(option, value, [])
            if not found:
                return []
            errors.append(found)
        return [{"code": "invalid_union", "errors": errors, "path": _zpath(path), "message": "Invalid input"}]
    raise TypeError(f"unknown schema node {node!r}")
