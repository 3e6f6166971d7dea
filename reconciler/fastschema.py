"""A JSON Schema (draft 2020-12) compiled once into a plain-Python predicate, for the common case: valid.

Why: running jsonschema over every connector of a large repository was most of `kcr plan`'s CPU
(issue #16), although nearly every connector is valid. Its messages are what a user reads, so it stays
the only source of errors; this module only answers "is it valid?" fast, and `file_problems` asks
jsonschema whenever the answer is not a certain yes. Two guards keep the answer exact:
- a schema using any keyword outside the subset below is not compiled (None: jsonschema decides), and
  an unknown keyword counts as outside, except annotations and `x-*` data keywords, which jsonschema
  ignores too;
- at run time a value this subset cannot judge exactly (an `enum` of lists, a Decimal) raises `Unsure`,
  which means the same as "not valid": ask jsonschema.
Each keyword follows jsonschema's own implementation (jsonschema/_keywords.py, _types.py, _utils.py):
types as its draft 2020-12 type checker (bool is no number; 1.0 is an integer), `pattern` with
`re.search`, lengths with `len`, `enum`/`const` telling true from 1 apart."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from numbers import Number
from typing import Any

from reconciler.schema_validator import SchemaValidator

Check = Callable[[Any], bool]

DRAFT_2020_12 = ("https://json-schema.org/draft/2020-12/schema", "https://json-schema.org/draft/2020-12/schema#")
# Keywords that never make an instance invalid here: annotations, and `format` (asserted only with a
# format checker, which kcr's validators are built without; `compile_for` checks that).
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description", "default", "examples",
                          "deprecated", "readOnly", "writeOnly", "format", "contentMediaType", "contentEncoding"})


class Unsure(Exception):
    """This value is beyond what the compiled predicate judges exactly: ask jsonschema."""


class _NotCompiled(Exception):
    """The schema uses something outside the subset."""


def compile_schema(schema: Any) -> Check | None:
    """The predicate for a draft 2020-12 `schema` (no `$schema`: jsonschema's default, 2020-12 too), or
    None when the schema is outside the subset. The predicate returns True exactly when jsonschema finds
    the instance valid, False when it does not, or raises Unsure."""
    draft = schema.get("$schema", DRAFT_2020_12[0]) if isinstance(schema, Mapping) else DRAFT_2020_12[0]
    if not isinstance(schema, Mapping | bool) or draft not in DRAFT_2020_12:
        return None
    try:
        return _Compiler(schema).compile(schema, root=True)
    except _NotCompiled:
        return None


def compile_for(validator: Any) -> Check | None:
    """The predicate for a jsonschema validator of draft 2020-12 built without a format checker, else None.
    A SchemaValidator is judged by its schema, without building its jsonschema validator."""
    if isinstance(validator, SchemaValidator):  # built without a format checker, 2020-12 unless `$schema` says
        return compile_schema(validator.schema)
    if type(validator).__name__ != "Draft202012Validator" or getattr(validator, "format_checker", None) is not None:
        return None
    return compile_schema(validator.schema)


def _is_type(name: str) -> Check:
    if name == "object":
        return lambda x: isinstance(x, dict)
    if name == "array":
        return lambda x: isinstance(x, list)
    if name == "string":
        return lambda x: isinstance(x, str)
    if name == "boolean":
        return lambda x: isinstance(x, bool)
    if name == "null":
        return lambda x: x is None
    if name == "number":
        return _number
    if name == "integer":
        return _integer
    raise _NotCompiled(f"type {name!r}")


def _number(x: Any) -> bool:
    """jsonschema's "number": any numbers.Number but bool. Another kind than int and float (Decimal) is
    never read from YAML, and is left to jsonschema."""
    if isinstance(x, int | float):
        return not isinstance(x, bool)
    if isinstance(x, Number):
        raise Unsure
    return False


def _integer(x: Any) -> bool:
    if isinstance(x, float):
        return x.is_integer()
    return _number(x) and isinstance(x, int)


def _equal(member: Any, x: Any) -> bool:
    """jsonschema's `equal` for the scalars JSON has; lists and mappings are left to it."""
    if isinstance(x, str) or isinstance(member, str):
        return isinstance(x, str) and isinstance(member, str) and x == member
    if isinstance(x, list | dict) or isinstance(member, list | dict):
        raise Unsure
    if isinstance(x, bool) or isinstance(member, bool) or x is None or member is None:
        return x is member
    if _number(x) and _number(member):
        return bool(x == member)
    raise Unsure


def _all(checks: list[Check]) -> Check:
    """Every check in turn, as one call: a schema's checks run for every value it meets."""
    if not checks:
        return lambda x: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda x: first(x) and second(x)
    if len(checks) == 3:
        first, second, third = checks
        return lambda x: first(x) and second(x) and third(x)
    each = tuple(checks)
    return lambda x: all(check(x) for check in each)


# Whole schemas compiled as one check that tests the type too (a string with bounds on its length and
# form; an object with its properties and required keys): the shapes every connector meets the most.
_STRING_SHAPE = frozenset({"type", "minLength", "maxLength", "pattern"})
_OBJECT_SHAPE = frozenset({"type", "properties", "patternProperties", "additionalProperties", "required"})


class _Compiler:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}
        self.pending: set[str] = set()  # the references being compiled
        self.recursive: set[str] = set()  # the references met while being compiled

    def ref(self, target: str) -> Check:
        """A local `$ref` ("#" or "#/$defs/NAME"), compiled once; a recursive one reads its cell late."""
        if target in self.refs:
            if target in self.pending:
                self.recursive.add(target)
            return self.refs[target]
        if target == "#":
            schema = self.root
        elif target.startswith("#/$defs/") and isinstance(self.root, Mapping) \
                and "/" not in target[8:] and "~" not in target[8:] and "%" not in target[8:]:
            schema = (self.root.get("$defs") or {}).get(target[8:])
            if schema is None:
                raise _NotCompiled(target)
        else:
            raise _NotCompiled(target)
        cell: list[Check] = []
        self.refs[target] = lambda x: cell[0](x)
        self.pending.add(target)
        check = self.compile(schema)
        self.pending.discard(target)
        cell.append(check)
        if target not in self.recursive:
            self.refs[target] = check  # no call through the cell where it is not needed
        return self.refs[target]

    def compile(self, schema: Any, root: bool = False) -> Check:
        if schema is True:
            return lambda x: True
        if schema is False:
            return lambda x: False
        if not isinstance(schema, Mapping):
            raise _NotCompiled("a schema must be an object or a boolean")
        if "$id" in schema and not root:
            raise _NotCompiled("$id below the root changes where $ref points")
        checks: list[Check] = []
        typed = schema.get("type")
        if typed is not None:
            names = [typed] if isinstance(typed, str) else typed
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                raise _NotCompiled("type")
            shape = {k for k in schema if k not in _ANNOTATIONS and not k.startswith("x-")}
            if names == ["string"] and len(shape) > 1 and shape <= _STRING_SHAPE:
                return self.string(schema)
            if names == ["object"] and len(shape) > 1 and shape <= _OBJECT_SHAPE:
                return self.object(schema, typed=True)
            tests = [_is_type(n) for n in names]
            checks.append(tests[0] if len(tests) == 1 else (lambda x: any(t(x) for t in tests)))
        for key, value in schema.items():
            if key in _ANNOTATIONS or key == "type" or key.startswith("x-"):
                continue
            if key in ("properties", "patternProperties", "additionalProperties"):
                continue  # together, below
            if key in _SIZE_BOUNDS:
                checks.append(_size_bound(key, value))
                continue
            maker = getattr(self, "k_" + key.replace("$", "_"), None)
            if maker is None:
                raise _NotCompiled(key)
            checks.append(maker(value, schema))
        if any(k in schema for k in ("properties", "patternProperties", "additionalProperties")):
            checks.append(self.object(schema))
        return _all(checks)

    # ---- keywords (each: the value of the keyword, the schema holding it) -> a check ------------------

    def k__ref(self, value: Any, schema: Mapping[str, Any]) -> Check:
        if not isinstance(value, str):
            raise _NotCompiled("$ref")
        return self.ref(value)

    def k_enum(self, value: Any, schema: Mapping[str, Any]) -> Check:
        if not isinstance(value, list):
            raise _NotCompiled("enum")
        members = tuple(value)
        strings = frozenset(m for m in members if isinstance(m, str))
        if len(strings) == len(members):  # jsonschema's `equal` of a string and anything else is ==
            return lambda x: isinstance(x, str) and x in strings
        return lambda x: _enum_other(members, x)

    def k_const(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return lambda x: _equal(value, x)

    def k_pattern(self, value: Any, schema: Mapping[str, Any]) -> Check:
        if not isinstance(value, str):
            raise _NotCompiled("pattern")
        search = re.compile(value).search
        return lambda x: not isinstance(x, str) or search(x) is not None

    def k_uniqueItems(self, value: Any, schema: Mapping[str, Any]) -> Check:
        if value is not True:
            return lambda x: True
        return _unique

    def k_minimum(self, value: Any, schema: Mapping[str, Any]) -> Check:
        bound = _limit(value)
        return lambda x: not _number(x) or x >= bound

    def k_maximum(self, value: Any, schema: Mapping[str, Any]) -> Check:
        bound = _limit(value)
        return lambda x: not _number(x) or x <= bound

    def k_exclusiveMinimum(self, value: Any, schema: Mapping[str, Any]) -> Check:
        bound = _limit(value)
        return lambda x: not _number(x) or x > bound

    def k_exclusiveMaximum(self, value: Any, schema: Mapping[str, Any]) -> Check:
        bound = _limit(value)
        return lambda x: not _number(x) or x < bound

    def k_required(self, value: Any, schema: Mapping[str, Any]) -> Check:
        keys = _required(value)
        return lambda x: not isinstance(x, dict) or x.keys() >= keys

    def k_items(self, value: Any, schema: Mapping[str, Any]) -> Check:
        if "prefixItems" in schema:
            raise _NotCompiled("prefixItems")
        each = self.compile(value)

        def items(x: Any) -> bool:
            return not isinstance(x, list) or all(each(item) for item in x)
        return items

    def k_allOf(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return _all([self.compile(s) for s in _schemas(value)])

    def k_anyOf(self, value: Any, schema: Mapping[str, Any]) -> Check:
        branches = tuple(self.compile(s) for s in _schemas(value))

        def any_of(x: Any) -> bool:
            unsure = False
            for branch in branches:
                try:
                    if branch(x):
                        return True
                except Unsure:
                    unsure = True
            if unsure:
                raise Unsure
            return False
        return any_of

    def k_oneOf(self, value: Any, schema: Mapping[str, Any]) -> Check:
        branches = tuple(self.compile(s) for s in _schemas(value))
        return lambda x: sum(1 for branch in branches if branch(x)) == 1

    def k_not(self, value: Any, schema: Mapping[str, Any]) -> Check:
        inner = self.compile(value)
        return lambda x: not inner(x)

    def k_if(self, value: Any, schema: Mapping[str, Any]) -> Check:
        test = self.compile(value)
        then = self.compile(schema.get("then", True))
        otherwise = self.compile(schema.get("else", True))
        return lambda x: then(x) if test(x) else otherwise(x)

    def k_then(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return lambda x: True  # read with `if` (alone, jsonschema ignores it too)

    def k_else(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return lambda x: True

    def k_propertyNames(self, value: Any, schema: Mapping[str, Any]) -> Check:
        names = self.compile(value)
        return lambda x: not isinstance(x, dict) or all(names(key) for key in x)

    def k_dependentSchemas(self, value: Any, schema: Mapping[str, Any]) -> Check:
        if not isinstance(value, Mapping):
            raise _NotCompiled("dependentSchemas")
        dependents = tuple((key, self.compile(sub)) for key, sub in value.items())
        return lambda x: not isinstance(x, dict) or all(check(x) for key, check in dependents if key in x)

    def string(self, schema: Mapping[str, Any]) -> Check:
        """`type: string` with minLength, maxLength and pattern (`_STRING_SHAPE`), as one check."""
        low, high = _bound(schema.get("minLength", 0)), _bound(schema.get("maxLength", sys.maxsize))
        pattern = schema.get("pattern", "")
        if not isinstance(pattern, str):
            raise _NotCompiled("pattern")
        search = re.compile(pattern).search
        return lambda x: isinstance(x, str) and low <= len(x) <= high and search(x) is not None

    def object(self, schema: Mapping[str, Any], typed: bool = False) -> Check:
        """properties, patternProperties and additionalProperties, as jsonschema applies them; `typed`: the
        whole schema (`_OBJECT_SHAPE`), its type and `required` tested here too."""
        required = _required(schema.get("required", [])) if typed else frozenset()
        props_raw = schema.get("properties", {})
        patterns_raw = schema.get("patternProperties", {})
        if not isinstance(props_raw, Mapping) or not isinstance(patterns_raw, Mapping):
            raise _NotCompiled("properties")
        props = {k: self.compile(v) for k, v in props_raw.items()}
        patterns = tuple((re.compile(p).search, self.compile(v)) for p, v in patterns_raw.items())
        # What is "additional" jsonschema decides with the patterns joined into one (_utils.find_additional_properties).
        joined = re.compile("|".join(patterns_raw)).search if patterns_raw else None
        extra_schema = schema.get("additionalProperties", True)
        extra = None if extra_schema is True else self.compile(extra_schema)

        def obj(x: Any) -> bool:
            if not isinstance(x, dict):
                return not typed
            if required and not x.keys() >= required:
                return False
            for key, value in x.items():
                check = props.get(key)
                if check is not None and not check(value):
                    return False
                for search, pcheck in patterns:
                    if search(key) is not None and not pcheck(value):
                        return False
                if extra is not None and check is None and (joined is None or joined(key) is None) \
                        and not extra(value):
                    return False
            return True
        return obj


def _enum_other(members: tuple[Any, ...], x: Any) -> bool:
    return any(_equal(m, x) for m in members)


def _schemas(value: Any) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise _NotCompiled("a list of schemas")
    return value


def _required(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise _NotCompiled("required")
    return frozenset(value)


# minLength and the like: the JSON type each bounds the size of, and whether the bound is a minimum.
_SIZE_BOUNDS: dict[str, tuple[type[str | list[Any] | dict[str, Any]], bool]] = {
    "minLength": (str, True), "maxLength": (str, False), "minItems": (list, True), "maxItems": (list, False),
    "minProperties": (dict, True), "maxProperties": (dict, False),
}


def _size_bound(key: str, value: Any) -> Check:
    of, at_least = _SIZE_BOUNDS[key]
    bound = _bound(value)
    if at_least:
        return lambda x: not isinstance(x, of) or len(x) >= bound
    return lambda x: not isinstance(x, of) or len(x) <= bound


def _bound(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _NotCompiled("a length bound")
    return value


def _limit(value: Any) -> int | float:
    if not _number(value):
        raise _NotCompiled("a numeric bound")
    return value  # type: ignore[no-any-return]


def _unique(x: Any) -> bool:
    if not isinstance(x, list):
        return True
    if all(isinstance(item, str) for item in x):
        return len(set(x)) == len(x)
    raise Unsure


def checked(check: Check, instance: Any) -> bool:
    """True when `check` says `instance` is certainly valid; False for invalid or unsure (jsonschema then
    judges it). A key that is no string meets a pattern as a TypeError: unsure too."""
    try:
        return check(instance)
    except (Unsure, RecursionError, TypeError):
        return False
