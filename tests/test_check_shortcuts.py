"""The shortcuts checking each declared connector takes (issue #16) give the answers the long way gives.

A no-change plan checks every connector; what depends on its type alone is worked out once per type
(`connector_checks._Kind`), whole schema shapes are compiled as one check (`fastschema`), and work a
valid connector never needs (substituting a connector without ${var:}, the words of a schema check) is
skipped. Each test runs the shortcut next to the long way."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from reconciler import catalog, fastschema
from reconciler.connector_checks import ConnectorChecks, _Kind
from reconciler.file_problems import FileChecker
from reconciler.model import Settings
from reconciler.user_types import BUNDLED_ONLY
from reconciler.variables import Scope
from reconciler.yamlload import Document

SHAPES: list[tuple[dict[str, Any], list[Any]]] = [
    ({"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^a"},
     ["ab", "abc", "abcd", "a", "ba", "", 1, None, ["ab"], {"a": 1}]),
    ({"type": "string", "pattern": "\\S"}, ["", " ", " x", "x", 0, True]),
    ({"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}, "additionalProperties": False},
     [{}, {"a": 1}, {"a": 1.0}, {"a": "1"}, {"a": 1, "b": 2}, {"b": 2}, [], "a", None, {"a": True}]),
    ({"type": "object", "patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": {"type": "null"}},
     [{}, {"x-a": "s"}, {"x-a": 1}, {"y": None}, {"y": 1}, {"x-a": "s", "y": None}, 3]),
    ({"type": "object", "required": ["a", "b"]}, [{}, {"a": 1}, {"a": 1, "b": 2}, {"b": 1, "a": 2, "c": 3}, []]),
    # A recursive reference reads its check late; one that is not takes the check itself.
    ({"$defs": {"node": {"anyOf": [{"type": "null"}, {"type": "object",
                                                      "additionalProperties": {"$ref": "#/$defs/node"}}]},
                "leaf": {"type": "string", "minLength": 1}},
      "type": "object", "properties": {"tree": {"$ref": "#/$defs/node"}, "name": {"$ref": "#/$defs/leaf"}}},
     [{"tree": None}, {"tree": {"a": {"b": None}}}, {"tree": {"a": {"b": 1}}}, {"name": ""}, {"name": "n"},
      {"tree": {"a": None}, "name": 1}]),
]


@pytest.mark.parametrize(("schema", "values"), SHAPES)
def test_a_shape_compiled_as_one_check_answers_as_jsonschema(schema: dict[str, Any], values: list[Any]) -> None:
    check = fastschema.compile_schema(schema)
    assert check is not None
    validator = jsonschema.Draft202012Validator(schema)
    for value in values:
        assert fastschema.checked(check, value) is validator.is_valid(value), value


@pytest.mark.parametrize("type_id", sorted(catalog.types()))
def test_what_a_type_is_asked_once_is_what_each_connector_would_ask(type_id: str) -> None:
    kind = _Kind.of(catalog.types()[type_id], BUNDLED_ONLY)
    assert kind.plain == kind.ctype.plain_secrets() and kind.needs_secrets == kind.ctype.required("secrets")
    if kind.no_secrets_valid:  # the secrets check of a connector with none is skipped: jsonschema agrees
        assert jsonschema.Draft202012Validator(kind.ctype.secrets_schema).is_valid({})


def _checked(item: dict[str, Any], scope: Scope | None) -> tuple[Any, list[Any]]:
    doc = Document({"connectors": [item]}, {})
    checker = FileChecker("f.yaml", doc, [])
    checks = ConnectorChecks(Settings(), {})
    return checks.connector("default", item, "connectors[0]", checker, {}, scope), checker.problems


@pytest.mark.parametrize("item", [
    {"id": "a", "name": "N", "type": ".index", "config": {"index": "i", "x": ["$${env:X}"]}},
    {"id": "a", "name": "N", "type": ".webhook", "config": {"url": "https://x.example", "method": "post"},
     "secrets": {"user": "${env:U}", "password": "${env:P}"}},
    {"id": "a", "name": " ", "type": ".slack", "secrets": {}},
    {"id": "a", "name": "N", "type": ".index", "config": {}},
])
def test_a_connector_without_vars_is_checked_alike_with_or_without_a_scope(item: dict[str, Any]) -> None:
    scope = Scope(Settings(), None, {}, "KIBANA_JWT").for_space("default")
    assert _checked(item, scope) == _checked(item, None)
