"""The canonical form: Kibana's defaults, null/absent and numeric coercions never show as a diff,
and real differences always do."""

from __future__ import annotations

import random
from typing import Any

import pytest
from helpers.builders import live, live_of, spec
from hypothesis import given
from hypothesis import strategies as st

from reconciler import catalog, normalize
from reconciler.model import ConnectorSpec, FieldDiff, LiveConnector, SetChange
from reconciler.yamlload import join_path

# A valid-enough config per type (the catalogue's required keys), to which the defaults are added.
SAMPLE_CONFIGS: dict[str, dict[str, Any]] = {
    ".bedrock": {"apiUrl": "https://bedrock.example.com", "temperature": "0.5"},
    ".cases-webhook": {
        "createIncidentUrl": "https://c.example.com/i", "createIncidentJson": "{}",
        "createIncidentResponseKey": "id", "getIncidentUrl": "https://c.example.com/i/{id}",
        "getIncidentResponseExternalTitleKey": "key", "viewIncidentUrl": "https://c.example.com/v/{id}",
        "updateIncidentUrl": "https://c.example.com/i/{id}", "updateIncidentJson": "{}",
    },
    ".email": {"from": "alerts@example.com", "host": "smtp.example.com", "port": 587},
    ".gemini": {"apiUrl": "https://g.example.com", "gcpRegion": "eu", "gcpProjectID": "p"},
    ".gen-ai": {"apiProvider": "OpenAI", "apiUrl": "https://api.openai.com/v1/chat/completions"},
    ".index": {"index": "alerts"},
    ".inference": {"provider": "openai", "taskType": "completion", "inferenceId": "x"},
    ".jira": {"apiUrl": "https://jira.example.com", "projectKey": "OPS"},
    ".mcp": {"serverUrl": "https://mcp.example.com"},
    ".microsoft_defender_endpoint": {"clientId": "c", "tenantId": "t", "oAuthServerUrl": "https://o",
                                     "oAuthScope": "s", "apiUrl": "https://a"},
    ".resilient": {"apiUrl": "https://r.example.com", "orgId": "1"},
    ".swimlane": {"apiUrl": "https://s.example.com", "appId": "a", "connectorType": "all",
                  "mappings": {"ruleNameConfig": {"id": "x", "name": "n", "key": "k", "fieldType": "text"}}},
    ".webhook": {"url": "https://hooks.example.com"},
    ".xmatters": {},
}


def sample(type_id: str) -> dict[str, Any]:
    ct = catalog.types()[type_id]
    base = dict(SAMPLE_CONFIGS.get(type_id, {}))
    for key in ct.required("config"):
        base.setdefault(key, "https://x.example.com" if "url" in key.lower() else "value")
    return base


def pair(type_id: str, declared: dict[str, Any], stored: dict[str, Any] | None) -> tuple[ConnectorSpec, LiveConnector]:
    s = spec("k", type_id, config=declared, secrets={})
    return s, LiveConnector(id=s.id, name=s.name, type=type_id, config=stored)


@pytest.mark.parametrize("type_id", sorted(catalog.types()))
def test_every_type_equals_its_stored_form(type_id: str) -> None:
    """Property over every catalogued type: declared config vs what Kibana stores (defaults filled,
    keys shuffled, null defaults present) shows no diff, and dropping the defaults from either side
    changes nothing either."""
    declared = sample(type_id)
    stored = catalog.with_defaults(type_id, "config", declared)
    rng = random.Random(type_id)  # deterministic shuffle per type
    items = list(stored.items())
    for _ in range(5):
        rng.shuffle(items)
        shuffled = dict(items)
        s, conn = pair(type_id, declared, shuffled)
        assert normalize.config_diffs(s, conn) == ()
        # the desired side with every default spelled out (including explicit nulls) is the same state
        s2, conn2 = pair(type_id, dict(shuffled), declared)
        assert normalize.config_diffs(s2, conn2) == ()
    assert normalize.desired_config(spec("k", type_id, config=declared, secrets={})) == normalize.canonical(stored)


@pytest.mark.parametrize("type_id", sorted(catalog.types()))
def test_every_type_reports_a_real_change(type_id: str) -> None:
    declared = sample(type_id)
    stored = catalog.with_defaults(type_id, "config", declared)
    stored["__changed_marker__"] = "x"  # unknown to the catalogue, but declared below
    s, conn = pair(type_id, {**declared, "__changed_marker__": "y"}, stored)
    diffs = normalize.config_diffs(s, conn)
    if catalog.types()[type_id].strips_unknown:  # Kibana drops unknown keys of this type: never a change
        assert diffs == ()
        return
    assert [(d.path, d.before, d.after, d.kind) for d in diffs] == [("config.__changed_marker__", "x", "y", "changed")]


def test_absent_null_default_equals_live_null() -> None:
    s, conn = pair(".index", {"index": "a"}, {"index": "a", "refresh": False, "executionTimeField": None})
    assert normalize.config_diffs(s, conn) == ()


def test_declared_null_equals_live_absent_and_live_null() -> None:
    for stored in ({"index": "a"}, {"index": "a", "executionTimeField": None}):
        s, conn = pair(".index", {"index": "a", "executionTimeField": None}, stored)
        assert normalize.config_diffs(s, conn) == ()


def test_value_against_null_is_a_change() -> None:
    s, conn = pair(".index", {"index": "a", "executionTimeField": "@timestamp"}, {"index": "a",
                                                                                  "executionTimeField": None})
    (d,) = normalize.config_diffs(s, conn)
    assert (d.path, d.before, d.after, d.kind) == ("config.executionTimeField", None, "@timestamp", "added")


def test_numeric_string_coerced_where_kibana_coerces() -> None:
    s, conn = pair(".bedrock", {"apiUrl": "https://b", "temperature": "0.5", "contextWindowLength": "8000"},
                   {"apiUrl": "https://b", "temperature": 0.5, "contextWindowLength": 8000.0,
                    "defaultModel": "m"})
    assert normalize.config_diffs(s, conn) == ()


def test_numeric_string_not_coerced_elsewhere() -> None:
    s, conn = pair(".index", {"index": "587"}, {"index": 587})
    (d,) = normalize.config_diffs(s, conn)
    assert d.path == "config.index" and d.before == 587 and d.after == "587"


def test_bool_is_not_a_number() -> None:
    assert not normalize.same(True, 1)
    assert not normalize.same(0, False)
    assert normalize.same(1, 1.0)
    assert normalize.same({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert normalize.canonical({"a": [1.0, {"b": None}], "c": None}) == {"a": [1, {}]}


def test_removing_a_declared_default_override_shows_the_default_coming_back() -> None:
    s, conn = pair(".webhook", {"url": "https://h"}, {"url": "https://h", "method": "put", "hasAuth": True})
    (d,) = normalize.config_diffs(s, conn)
    assert (d.path, d.before, d.after) == ("config.method", "put", "post")


def test_release_default_not_compared_unless_declared() -> None:
    stored = {"apiProvider": "OpenAI", "apiUrl": "https://o", "defaultModel": "gpt-4o"}  # an older Kibana
    s, conn = pair(".gen-ai", {"apiProvider": "OpenAI", "apiUrl": "https://o"}, stored)
    assert normalize.config_diffs(s, conn) == ()
    s, conn = pair(".gen-ai", {"apiProvider": "OpenAI", "apiUrl": "https://o", "defaultModel": "gpt-4.1"}, stored)
    assert [d.path for d in normalize.config_diffs(s, conn)] == ["config.defaultModel"]


def test_kibana_computed_default_not_compared_unless_declared() -> None:
    stored = {"url": "https://h", "method": "post", "hasAuth": True, "authType": "webhook-authentication-basic"}
    s, conn = pair(".webhook", {"url": "https://h"}, stored)
    assert normalize.config_diffs(s, conn) == ()
    assert "authType" in normalize.kibana_decides(".webhook")
    s, conn = pair(".webhook", {"url": "https://h", "authType": "webhook-authentication-ssl"}, stored)
    assert [d.path for d in normalize.config_diffs(s, conn)] == ["config.authType"]


def test_live_key_unknown_to_the_catalogue_is_ignored() -> None:
    s, conn = pair(".index", {"index": "a"}, {"index": "a", "refresh": False, "newerKibanaKey": 3})
    assert normalize.config_diffs(s, conn) == ()


def test_unknown_type_compares_what_the_files_declare() -> None:
    """As for a key outside a bundled type's schema: a live key the files do not write is Kibana's."""
    s, conn = pair(".not-a-type", {"a": 1}, {"a": 1, "b": 2})
    assert normalize.config_diffs(s, conn) == ()
    s, conn = pair(".not-a-type", {"a": 1}, {"a": 3, "b": 2})
    (d,) = normalize.config_diffs(s, conn)
    assert (d.path, d.kind, d.before, d.after) == ("config.a", "changed", 3, 1)


def test_nested_paths_and_quoting() -> None:
    s, conn = pair(".webhook", {"url": "https://h", "headers": {"X-A": "1", "a.b": "2"}},
                   {"url": "https://h", "headers": {"X-A": "0", "old": "x"}})
    diffs = normalize.config_diffs(s, conn)
    assert [(d.path, d.kind) for d in diffs] == [
        ("config.headers.X-A", "changed"),
        ('config.headers["a.b"]', "added"),
        ("config.headers.old", "removed"),
    ]


def test_paths_are_spelt_as_validate_spells_fields() -> None:
    """One joiner (yamlload.join_path): a plan names a field as `kcr validate` does, also for a key
    that starts with a digit, which normalize once quoted on its own."""
    s, conn = pair(".webhook", {"url": "https://h", "headers": {"1-Hop": "1", "X-Team": "a", "a b": "c"}},
                   {"url": "https://h"})
    paths = [d.path for d in normalize.config_diffs(s, conn)]
    assert paths == ["config.headers"]
    conn = LiveConnector(id=s.id, name=s.name, type=".webhook", config={"url": "https://h", "headers": {}})
    paths = [d.path for d in normalize.config_diffs(s, conn)]
    assert paths == ["config.headers.1-Hop", "config.headers.X-Team", 'config.headers["a b"]']
    assert paths == [join_path("config.headers", k) for k in ("1-Hop", "X-Team", "a b")]


# --- lists: in order, unless Kibana reads them as a set (x-kcr-set) -----------------------------------

C1, C2, C3, C4 = ({"id": f"C{i}", "name": f"chan-{i}"} for i in range(1, 5))


def channels(declared: list[Any], stored: list[Any]) -> tuple[FieldDiff, ...]:
    return normalize.config_diffs(*pair(".slack_api", {"allowedChannels": declared}, {"allowedChannels": stored}))


def test_set_fields_are_data_in_the_type_schemas() -> None:
    """`x-kcr-set` marks the fields; every marked field is a list in its schema."""
    assert normalize.set_fields(".slack_api") == {"allowedChannels"}
    for type_id in catalog.types():
        props = normalize._properties(type_id) or {}
        for name in normalize.set_fields(type_id):
            assert props[name].get("type") == "array", (type_id, name)
    assert normalize.set_fields(".webhook") == frozenset()
    assert normalize.set_fields(".not-catalogued") == frozenset()


def test_set_reordered_or_repeated_is_no_diff() -> None:
    """Kibana only looks channels up in allowedChannels: a new order is no change, so no perpetual diff."""
    assert channels([C1, C2, C3], [C3, C1, C2]) == ()
    assert channels([C1, C2], [C2, C1, C2]) == ()
    assert normalize.config_equal(*pair(".slack_api", {"allowedChannels": [C2, C1]}, {"allowedChannels": [C1, C2]}))


def test_set_change_names_the_members_added_and_removed() -> None:
    (d,) = channels([C4, C2, C1], [C1, C2, C3])
    assert (d.path, d.kind) == ("config.allowedChannels", "changed")
    assert d.before == [C1, C2, C3] and d.after == [C4, C2, C1]  # the whole lists stay, for the record
    assert d.members == SetChange(added=(C4,), removed=(C3,))
    renamed = {"id": "C1", "name": "renamed"}  # a member is the whole item: a rename is one out, one in
    (d,) = channels([renamed], [C1])
    assert d.members == SetChange(added=(renamed,), removed=(C1,))


def test_set_field_coming_or_going_whole_is_an_ordinary_diff() -> None:
    s, conn = pair(".slack_api", {"allowedChannels": [C1]}, {})
    (d,) = normalize.config_diffs(s, conn)
    assert (d.kind, d.before, d.after, d.members) == ("added", None, [C1], None)
    s, conn = pair(".slack_api", {}, {"allowedChannels": [C1]})
    (d,) = normalize.config_diffs(s, conn)
    assert (d.kind, d.before, d.after, d.members) == ("removed", [C1], None, None)


def test_list_not_marked_as_set_compares_whole_and_in_order() -> None:
    """A type the catalogue does not know (a newer Kibana's) has no set fields: its lists keep order."""
    s, conn = pair(".not-catalogued", {"tags": ["a", "b"]}, {"tags": ["b", "a"]})
    (d,) = normalize.config_diffs(s, conn)
    assert (d.path, d.kind, d.before, d.after, d.members) == ("config.tags", "changed", ["b", "a"], ["a", "b"], None)


def test_set_fields_only_where_both_types_read_a_set() -> None:
    s = spec("k", ".slack_api", config={"allowedChannels": [C2, C1]}, secrets={})
    conn = LiveConnector(id=s.id, name=s.name, type=".not-catalogued", config={"allowedChannels": [C1, C2]})
    (d,) = normalize.config_diffs(s, conn)
    assert d.members is None


_channel = st.builds(lambda i, n: {"id": f"C{i}", "name": n}, st.integers(0, 6), st.sampled_from(["a", "b"]))


@given(have=st.lists(_channel, max_size=6), want=st.lists(_channel, max_size=6), seed=st.integers(0, 99))
def test_set_diff_is_set_arithmetic(have: list[Any], want: list[Any], seed: int) -> None:
    key = lambda c: (c["id"], c["name"])  # noqa: E731
    shuffled = list(want)
    random.Random(seed).shuffle(shuffled)
    assert channels(want, shuffled) == ()
    diffs = channels(want, have)
    if {key(c) for c in have} == {key(c) for c in want}:
        assert diffs == ()
        return
    (d,) = diffs
    assert d.members is not None
    assert {key(c) for c in d.members.added} == {key(c) for c in want} - {key(c) for c in have}
    assert {key(c) for c in d.members.removed} == {key(c) for c in have} - {key(c) for c in want}
    assert len(d.members.added) == len({key(c) for c in d.members.added})  # a repeat is one member


def test_live_config_none_is_empty() -> None:
    conn = live("x", ".server-log", preconfigured=True)
    assert normalize.live_config(conn) == {}


# --- properties of the comparison itself ---------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-5, 5, allow_nan=False) | st.text(max_size=3)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=12)


@given(a=_json, b=_json)
def test_diff_is_empty_exactly_when_same(a: Any, b: Any) -> None:
    ca, cb = normalize.canonical(a), normalize.canonical(b)
    out: list[Any] = []
    normalize.diff_values("config", ca, cb, out)
    assert (out == []) == normalize.same(ca, cb)
    assert normalize.same(ca, ca)
    assert normalize.same(ca, cb) == normalize.same(cb, ca)
    assert normalize.canonical(ca) == ca  # idempotent


def test_declared_config_has_no_type_defaults() -> None:
    s = spec("ai", ".gen-ai", config={"apiProvider": "OpenAI", "apiUrl": "https://x"}, secrets={})
    assert normalize.declared_config(s) == {"apiProvider": "OpenAI", "apiUrl": "https://x"}
    assert "defaultModel" in normalize.desired_config(s)  # the compared form still has Kibana's defaults
    ix = spec("ix", ".index", config={"index": "a", "executionTimeField": None, "n": 2.0})
    assert normalize.declared_config(ix) == {"index": "a", "n": 2}  # canonical: nulls dropped, 2.0 is 2


def test_a_type_without_a_schema_compares_only_what_the_files_declare() -> None:
    """A type kcr does not bundle has no schema to say which keys Kibana fills in: a key the live
    connector has and the files do not write is Kibana's (no perpetual diff), a declared one still counts."""
    s = spec("abuse", ".abuseipdb", config={"apiUrl": "https://api.abuseipdb.com/api/v2"})
    filled = live_of(s, config={"apiUrl": "https://api.abuseipdb.com/api/v2", "maxAgeInDays": 30})
    assert normalize.config_diffs(s, filled) == ()
    moved = live_of(s, config={"apiUrl": "https://other.example.com", "maxAgeInDays": 30})
    assert [d.path for d in normalize.config_diffs(s, moved)] == ["config.apiUrl"]
