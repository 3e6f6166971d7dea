"""#16: the shortcuts a no-change plan takes decide exactly as the code they skip. `same` and
`canonical` settle values of one plain JSON type before their isinstance ladder, check_depth settles
exact scalars with a set lookup, the live fingerprint reuses one encoder, and a listed connector is
named only when refused: each is compared here with the slower form it replaced (kept below as the
reference), on values a shortcut could get wrong (bool against number, NaN, dict subclasses, tuples,
read-only mappings)."""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
from helpers.builders import LISTED_ID, listed_body
from hypothesis import given
from hypothesis import strategies as st

from reconciler import jsondepth, normalize
from reconciler.answers import connector_field_error
from reconciler.model import LiveConnector
from reconciler.plan import Action, Change, live_fingerprint

# --- the reference forms (as they were before the shortcuts) ------------------------------------------------


def ladder_same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return bool(a == b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(ladder_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(ladder_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def ladder_canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): ladder_canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [ladder_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def recursive_depth(value: Any) -> int:
    """Levels of lists/dicts (isinstance, so subclasses count; a tuple is no level), 0 for a scalar."""
    if isinstance(value, dict):
        return 1 + max((recursive_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((recursive_depth(v) for v in value), default=0)
    return 0


class Text(str):
    """A str subclass: not an exact scalar type, so it takes the slow road."""


# --- values a shortcut could get wrong ----------------------------------------------------------------------

_scalars = (st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from([0.0, 1.0, 1.5, -0.0, math.nan, math.inf])
            | st.text(max_size=2) | st.builds(Text, st.text(max_size=2)))
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    | st.dictionaries(st.text(max_size=2), inner, max_size=3).map(OrderedDict)
    | st.dictionaries(st.text(max_size=2), inner, max_size=3).map(MappingProxyType),
    max_leaves=10,
)


def _twin(value: Any, flips: list[bool]) -> Any:
    """`value` with some members swapped for ones == accepts and `same` may not: 1 <-> True, 1 <-> 1.0,
    a dict <-> an OrderedDict."""
    flip = flips.pop() if flips else False
    if isinstance(value, Mapping):
        out = {k: _twin(v, flips) for k, v in value.items()}
        return OrderedDict(out) if flip and type(value) is dict else out
    if isinstance(value, list):
        return [_twin(v, flips) for v in value]
    if flip and type(value) is bool:
        return int(value)
    if flip and type(value) is int:
        return float(value) if value not in (0, 1) else bool(value)
    return value


@given(a=_values, flips=st.lists(st.booleans(), max_size=12))
def test_same_agrees_with_the_ladder(a: Any, flips: list[bool]) -> None:
    b = _twin(a, flips)
    ca, cb = ladder_canonical(a), ladder_canonical(b)
    assert normalize.same(a, b) == ladder_same(a, b)
    assert normalize.same(ca, cb) == ladder_same(ca, cb)
    assert normalize.same(cb, ca) == ladder_same(cb, ca)


@given(a=_values, b=_values)
def test_same_agrees_with_the_ladder_on_unrelated_values(a: Any, b: Any) -> None:
    assert normalize.same(a, b) == ladder_same(a, b)


@given(value=_values)
def test_canonical_agrees_with_the_ladder(value: Any) -> None:
    got, want = normalize.canonical(value), ladder_canonical(value)
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
    assert type(got) is type(want)


def test_same_stays_strict_where_equality_is_not() -> None:
    assert not normalize.same({"a": True}, {"a": 1})
    assert not normalize.same({"a": [0]}, {"a": [False]})
    assert not normalize.same(math.nan, math.nan)
    assert not normalize.same({"a": math.nan}, {"a": math.nan})
    assert normalize.same({"a": 1}, {"a": 1.0})
    assert normalize.same(OrderedDict(a=1, b=2), {"b": 2, "a": 1})


# --- the depth bound --------------------------------------------------------------------------------------


@given(value=_values, limit=st.integers(1, 5))
def test_check_depth_refuses_exactly_what_the_recursive_depth_exceeds(value: Any, limit: int) -> None:
    too_deep = recursive_depth(value) > limit
    try:
        jsondepth.check_depth(value, limit)
    except jsondepth.TooDeep as exc:
        assert too_deep and exc.limit == limit
    else:
        assert not too_deep


def test_check_depth_counts_dict_subclasses_and_not_tuples() -> None:
    deep: Any = "leaf"
    for _ in range(4):
        deep = OrderedDict(k=deep)
    with pytest.raises(jsondepth.TooDeep):
        jsondepth.check_depth([deep], 4)
    jsondepth.check_depth([(((["x"],),),)], 2)  # tuples are not levels; the list inside is the second


# --- the live fingerprint ---------------------------------------------------------------------------------


def _defined_fingerprint(conn: LiveConnector) -> str:
    body = {"id": conn.id, "name": conn.name, "type": conn.type, "config": conn.config,
            "is_missing_secrets": bool(conn.is_missing_secrets)}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@pytest.mark.parametrize("conn", [
    LiveConnector(id="a", name="Index", type=".index", config={"index": "x", "refresh": False,
                                                                "executionTimeField": None}),
    LiveConnector(id="b", name="Ünïcode ✓", type=".webhook", config={"z": [1, 2.5, {"y": None}], "a": "\u2028"},
                  is_missing_secrets=True, referenced_by_count=3),
    LiveConnector(id="c", name="n", type=".email", config=None, is_missing_secrets=None),
    LiveConnector(id="d", name="n", type=".email", config={"when": frozenset({3})}),  # not JSON: default=str
])
def test_the_live_fingerprint_is_its_definition(conn: LiveConnector) -> None:
    assert live_fingerprint(conn) == _defined_fingerprint(conn)


def test_the_live_fingerprint_is_pinned() -> None:
    """Saved plans carry it and apply compares it: a change of its text would fail every saved plan."""
    conn = LiveConnector(id="a", name="Index", type=".index", config={"refresh": False, "index": "x"})
    text = '{"config": {"index": "x", "refresh": false}, "id": "a", "is_missing_secrets": false, ' \
           '"name": "Index", "type": ".index"}'
    assert live_fingerprint(conn) == hashlib.sha256(text.encode()).hexdigest()


def test_a_change_hashes_its_live_connector_only_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planner hands Change the live connector; the fingerprint read is the eager one, equal to (and
    hashing like) a Change given the text, and read-only like every other field."""
    conn = LiveConnector(id="a", name="Index", type=".index", config={"refresh": False, "index": "x"})
    calls: list[LiveConnector] = []
    monkeypatch.setattr("reconciler.plan.live_fingerprint", lambda c: calls.append(c) or live_fingerprint(c))
    lazy = Change(space="s", id="a", action=Action.NOOP, reason="r", name="Index", type=".index", live_fingerprint=conn)
    assert calls == []
    assert lazy.live_fingerprint == live_fingerprint(conn)
    assert lazy.live_fingerprint == live_fingerprint(conn) and calls == [conn]  # hashed once
    eager = Change(space="s", id="a", action=Action.NOOP, reason="r", name="Index", type=".index",
                   live_fingerprint=live_fingerprint(conn))
    assert lazy == eager and hash(lazy) == hash(eager) and repr(lazy) == repr(eager)
    assert Change(space="s", id="a", action=Action.CREATE, reason="r", name="n", type="t").live_fingerprint is None
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
        lazy.live_fingerprint = "x"  # type: ignore[misc]


# --- a listed connector's refusals, word for word ------------------------------------------------------------

NAMED = f"connector {LISTED_ID!r} "


@pytest.mark.parametrize(("changes", "listed", "message"), [
    ({"id": ...}, True, "a connector without an id"),
    ({"id": 5}, True, "a connector whose id is not a non-empty string"),
    ({"id": ""}, False, "a connector whose id is not a non-empty string"),
    ({"id": "a\tb"}, True, "a connector id 'a\\tb' contains control characters"),
    ({"name": ...}, True, NAMED + "has no name"),
    ({"name": 5}, False, NAMED + "has a name that is not a string"),
    ({"connector_type_id": ...}, True, NAMED + "has no connector_type_id"),
    ({"connector_type_id": ""}, True, NAMED + "has a connector_type_id that is not a non-empty string"),
    ({"connector_type_id": ["x"]}, False, NAMED + "has a connector_type_id that is not a non-empty string"),
    ({"config": [1]}, True, NAMED + "has a config that is not an object"),
    ({"config": MappingProxyType({})}, True, None),
    ({"config": None}, True, None),
    ({"is_system_action": 1}, True, NAMED + "has an is_system_action that is not a boolean"),
    ({"is_deprecated": "no"}, True, NAMED + "has an is_deprecated that is not a boolean"),
    ({"is_preconfigured": None}, True, NAMED + "has an is_preconfigured that is not a boolean"),
    ({"is_missing_secrets": "x"}, True, NAMED + "has an is_missing_secrets that is not a boolean"),
    ({"is_missing_secrets": None}, True, None),
    ({"referenced_by_count": ...}, True, NAMED + "has no referenced_by_count, which the list must carry"),
    ({"referenced_by_count": ...}, False, None),
    ({"referenced_by_count": True}, True, NAMED + "has a referenced_by_count that is not a non-negative integer"),
    ({"referenced_by_count": -1}, False, NAMED + "has a referenced_by_count that is not a non-negative integer"),
    ({}, True, None),
])
def test_a_connector_is_refused_in_the_same_words(changes: dict[str, Any], listed: bool, message: str | None) -> None:
    assert connector_field_error(listed_body(**changes), listed=listed) == message
