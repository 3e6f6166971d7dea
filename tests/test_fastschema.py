"""The compiled schema predicates (`fastschema`) answer exactly as jsonschema does, or not at all.

jsonschema stays the only source of error messages; the predicate may only skip it for an instance that
jsonschema finds valid. So for every schema kcr ships (each connector type's config and secrets, each of
kcr's file formats) and for instances drawn from the schema's own vocabulary, mutated at random, the
predicate's answer must equal jsonschema's whenever it gives one; the cases where it must not answer
(a Decimal, an enum of lists) are named below."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import catalog, fastschema
from reconciler.file_problems import FileChecker, file_validator
from reconciler.yamlload import parse

FILE_SCHEMAS = sorted(p.name for p in catalog.SCHEMA_DIR.glob("*.schema.json"))
TYPE_PARTS = [(t, part) for t in sorted(catalog.types()) for part in ("config", "secrets")]


def _vocabulary(schema: Any, out: set[Any]) -> set[Any]:
    """Every string and scalar the schema mentions: property names, enum and const values, defaults."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in ("properties", "patternProperties", "$defs"):
                out.update(value)
            if key in ("enum", "examples") and isinstance(value, list):
                out.update(v for v in value if isinstance(v, str | int | float | bool) or v is None)
            if key in ("const", "default") and (isinstance(value, str | int | float | bool) or value is None):
                out.add(value)
            _vocabulary(value, out)
    elif isinstance(schema, list):
        for value in schema:
            _vocabulary(value, out)
    return out


EXTRA = ["", " ", "a", "https://hooks.example.com/x", "http://", "ftp://x", "${env:TOKEN}", "${var:x}", "1", "0.5",
         "idx-1", "Idx", "all", "default", ".index", ".webhook", "6f1c3a52-5d0e-5b8e-9a51-6b6372000001", "x" * 70,
         0, 1, -1, 1.0, 1.5, 65535, 65536, 10**20, True, False, None]


def _resolve(schema: Any, root: Any) -> Any:
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#/$defs/"):
        return root["$defs"][schema["$ref"][8:]]
    return schema


@st.composite
def instances(draw: st.DrawFn, schema: Any, root: Any, words: list[Any], depth: int = 0) -> Any:
    """A value shaped by `schema` most of the time (so that valid instances are common), else anything."""
    schema = _resolve(schema, root)
    scalar = st.sampled_from(words)
    if depth > 4 or not isinstance(schema, dict) or draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(scalar, st.lists(scalar, max_size=3),
                              st.dictionaries(st.sampled_from([w for w in words if isinstance(w, str)]), scalar,
                                              max_size=3)))
    for union in ("anyOf", "oneOf", "allOf"):
        if union in schema and draw(st.booleans()):
            return draw(instances(draw(st.sampled_from(schema[union])), root, words, depth + 1))
    if "if" in schema and draw(st.booleans()):
        return draw(instances(schema.get("then", schema["if"]), root, words, depth + 1))
    if "enum" in schema and draw(st.integers(0, 3)):
        return draw(st.sampled_from(schema["enum"]))
    if "const" in schema and draw(st.integers(0, 3)):
        return schema["const"]
    kinds = schema.get("type", ["object", "array", "string", "number", "boolean", "null"])
    kind = draw(st.sampled_from([kinds] if isinstance(kinds, str) else kinds))
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        keys = draw(st.lists(st.sampled_from(sorted(props) or ["k"]), unique=True, max_size=len(props) + 1))
        keys += list(schema.get("required", ())) if draw(st.booleans()) else []
        if draw(st.integers(0, 4)) == 0:
            keys.append(draw(st.sampled_from([w for w in words if isinstance(w, str)])))
        return {k: draw(instances(props.get(k, schema.get("additionalProperties", True)), root, words, depth + 1))
                for k in keys}
    if kind == "array":
        return draw(st.lists(instances(schema.get("items", True), root, words, depth + 1), max_size=3))
    if kind in ("number", "integer"):
        return draw(st.sampled_from([0, 1, -1, 1.0, 1.5, 65535, 65536, True, 2**31]))
    if kind == "boolean":
        return draw(st.sampled_from([True, False, 0, 1]))
    if kind == "null":
        return None
    return draw(scalar)


def _agree(schema: dict[str, Any], instance: Any) -> bool:
    """The predicate's answer against jsonschema's, where it gives one; returns whether it was sure."""
    check = fastschema.compile_schema(schema)
    assert check is not None
    expected = jsonschema.validators.validator_for(schema)(schema).is_valid(instance)
    try:
        got = check(instance)
    except fastschema.Unsure:
        assert not fastschema.checked(check, instance)
        return False
    assert got == expected, json.dumps(instance, default=repr)[:500]
    assert fastschema.checked(check, instance) == expected
    return True


def _schemas() -> list[tuple[str, dict[str, Any]]]:
    out = [(name, json.loads((catalog.SCHEMA_DIR / name).read_text(encoding="utf-8"))) for name in FILE_SCHEMAS]
    out += [(f"{t} {part}", dict(catalog.types()[t].schema(part))) for t, part in TYPE_PARTS]
    return out


@pytest.mark.parametrize("name", [n for n, _ in _schemas()])
def test_every_schema_kcr_ships_compiles(name: str) -> None:
    """None would mean jsonschema checks every connector of that kind again: the slow path."""
    schema = dict(_schemas())[name]
    assert fastschema.compile_schema(schema) is not None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
@pytest.mark.parametrize("name", [n for n, _ in _schemas()])
def test_the_predicate_answers_as_jsonschema_does(name: str, data: st.DataObject) -> None:
    schema = dict(_schemas())[name]
    words = sorted(_vocabulary(schema, set()) | set(EXTRA), key=repr)
    _agree(schema, data.draw(instances(schema, schema, words)))


def test_valid_and_invalid_instances_are_both_drawn() -> None:
    """The differential test above is worth something only if it meets both answers: here, on the
    connector file format, for a fixed set of instances."""
    schema = json.loads((catalog.SCHEMA_DIR / "connector-file.schema.json").read_text(encoding="utf-8"))
    good = {"connectors": [{"id": "a", "name": "A", "type": ".index", "config": {"index": "i"}}]}
    bad_id = {"connectors": [{"id": "A b", "name": "A", "type": ".index"}]}
    blank_name = {"connectors": [{"id": "a", "name": " ", "type": ".index"}]}
    unknown_key = {"connectors": [{"id": "a", "name": "A", "type": ".index", "typo": 1}]}
    secret_ref = {"connectors": [{"id": "a", "name": "A", "type": ".x", "secrets": {"k": "${env:K}", "n": [None]}}]}
    plain_secret = {"connectors": [{"id": "a", "name": "A", "type": ".x", "secrets": {"k": "hunter2"}}]}
    spaces = {"spaces": ["a", "a"], "connectors": []}
    for instance, valid in ((good, True), (bad_id, False), (blank_name, False), (unknown_key, False),
                            (secret_ref, True), (plain_secret, False), (spaces, False), ({}, False), ([], False)):
        assert _agree(schema, instance)
        assert fastschema.checked(fastschema.compile_schema(schema), instance) is valid  # type: ignore[arg-type]


@pytest.mark.parametrize(("schema", "instance", "valid"), [
    ({"enum": [1, "a"]}, True, False),  # true is not 1 to JSON Schema
    ({"enum": [1, "a"]}, 1.0, True),  # but 1.0 is
    ({"const": False}, 0, False),
    ({"const": None}, None, True),
    ({"type": "integer"}, 2.0, True),
    ({"type": "integer"}, True, False),
    ({"type": "number"}, False, False),
    ({"type": ["string", "null"]}, None, True),
    ({"minimum": 1}, True, True),  # a bool is no number: not bounded
    ({"exclusiveMaximum": 1}, 1, False),
    ({"minLength": 2}, "é", False),
    ({"pattern": "^a"}, 5, True),
    ({"uniqueItems": True}, ["a", "a"], False),
    ({"patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": False}, {"x-a": 1}, False),
    ({"patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": False}, {"y": "a"}, False),
    ({"patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": False}, {"x-a": "a"}, True),
    ({"if": {"properties": {"a": {"const": 1}}}, "then": {"required": ["b"]}}, {"a": 1}, False),
    ({"if": {"properties": {"a": {"const": 1}}}, "else": {"required": ["b"]}}, {"a": 1}, True),
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1, False),
    ({"not": {"type": "string"}}, 1, True),
    ({"items": False}, [], True),
    ({"$defs": {"n": {"anyOf": [{"type": "null"}, {"items": {"$ref": "#/$defs/n"}}]}}, "$ref": "#/$defs/n"},
     [[None], [[]]], True),
])
def test_each_keyword_as_jsonschema(schema: dict[str, Any], instance: Any, valid: bool) -> None:
    assert _agree(schema, instance)
    assert jsonschema.Draft202012Validator(schema).is_valid(instance) is valid


@pytest.mark.parametrize(("schema", "instance"), [
    ({"type": "number"}, Decimal("1.5")),  # jsonschema's "number" is any numbers.Number
    ({"maximum": 1}, Decimal("2")),
    ({"enum": [[1], "a"]}, [1]),  # lists compare element-wise, bool apart from int
    ({"uniqueItems": True}, [1, True]),
    ({"patternProperties": {"^a": {}}}, {1: "x"}),  # a key that is no string
])
def test_what_it_cannot_judge_it_leaves_to_jsonschema(schema: dict[str, Any], instance: Any) -> None:
    check = fastschema.compile_schema(schema)
    assert check is not None
    assert fastschema.checked(check, instance) is False


@pytest.mark.parametrize("schema", [
    {"$schema": "http://json-schema.org/draft-07/schema#", "type": "string"},  # another draft's rules
    {"dependentRequired": {"a": ["b"]}},  # a keyword outside the subset
    {"contains": {"type": "string"}},
    {"prefixItems": [{"type": "string"}], "items": False},
    {"$ref": "https://example.com/other.json"},
    {"properties": {"a": {"$id": "https://example.com/a", "type": "string"}}},
    {"unevaluatedProperties": False},
])
def test_a_schema_outside_the_subset_is_not_compiled(schema: dict[str, Any]) -> None:
    assert fastschema.compile_schema(schema) is None


def test_a_validator_with_a_format_checker_is_left_to_jsonschema() -> None:
    schema = {"type": "string", "format": "email"}
    assert fastschema.compile_for(jsonschema.Draft202012Validator(schema)) is not None
    checking = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    assert fastschema.compile_for(checking) is None
    assert fastschema.compile_for(jsonschema.Draft7Validator({"type": "string"})) is None


def test_an_invalid_file_gets_jsonschemas_messages(tmp_path: Path) -> None:
    """The fast answer is only ever "valid": an invalid file still gets every problem jsonschema finds,
    placed and worded as before."""
    doc = parse(b"connectors:\n  - id: a\n    name: A\n    type: .index\n    confg: {}\n", "f.yaml")
    problems: list[Any] = []
    count = FileChecker("f.yaml", doc, problems).schema(file_validator("connector-file.schema.json"), doc.value, "", "")
    assert count == 1
    [problem] = problems
    assert (problem.line, problem.column, problem.path) == (5, 5, "connectors[0].confg")
    assert problem.message.startswith("connectors[0]: unknown key 'confg' (did you mean 'config'?); known keys: ")
