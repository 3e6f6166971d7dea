"""One canonical form for both sides, so that Kibana's own defaults never show as a diff.

Both the declared config and the config Kibana returns go through the same steps:

1. the type's schema defaults are filled in and numeric strings coerced where Kibana coerces
   (`catalog.with_defaults`): Kibana stores a validated config with its defaults, so an omitted
   `refresh` on an `.index` connector is the same as Kibana's `refresh: false`;
2. `canonical()`: every `null` inside an object is dropped (Kibana fills `nullable().default(null)`
   keys with null, and a declared `null` is "no value" too, so null and absent are one state), an
   integral float becomes an int (`587.0 == 587`), tuples become lists, mappings become dicts.

Equality (`same`) is then structural and type-strict: `true` never equals `1`, `"1"` never equals `1`
(string-to-number coercion happened in step 1 only where the type says Kibana coerces).

Two kinds of keys are compared only when the repository declares them, because Kibana decides
their value otherwise and a diff would reappear after every apply:
- keys whose default Kibana computes or changes between releases (`x-kibana-default` in the type
  schema, and `x-kibana-release-default: true`, e.g. the AI connectors' `defaultModel`);
- keys Kibana returns that the catalogue does not know for the type (a newer Kibana's defaults).
Of a type whose config schema says `x-kibana-strips-unknown`, keys it does not know are never compared.

A list compares whole and in order, unless the type's schema marks the field `x-kcr-set: true` (Kibana
reads it as a set, e.g. Slack API `allowedChannels`, which it only searches): then a reordered or
repeated member is no difference, and a real one is told as the members added and removed
(`FieldDiff.members`). That is worked out only for a connector already found to differ, so a plan with
no changes costs what it did.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from reconciler import catalog
from reconciler.model import JSON, ConnectorSpec, FieldDiff, LiveConnector, SetChange
from reconciler.yamlload import join_path

# Types whose values `same` compares with == alone (bool with bool, never with a number).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def canonical(value: JSON) -> JSON:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # most of a config, decided at once
        return value
    if kind is dict or isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def same(a: JSON, b: JSON) -> bool:
    """Structural equality on canonical values, strict about bool versus number. Two values of one
    plain JSON type (nearly every pair a plan compares) are decided without the ladder below."""
    kind = type(a)
    if kind is type(b):
        if kind in _PLAIN:
            return a == b  # type: ignore[no-any-return]  # JSON is Any; == of two scalars is a bool
        if kind is dict:
            if a.keys() != b.keys():
                return False
            for key, value in a.items():  # noqa: SIM110 - a loop: all() would add a generator per object
                if not same(value, b[key]):
                    return False
            return True
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _normalized(type_id: str, config: Mapping[str, JSON] | None) -> dict[str, JSON]:
    filled = catalog.with_defaults(type_id, "config", config or {})
    out = canonical(filled)
    assert isinstance(out, dict)
    return out


def desired_config(spec: ConnectorSpec) -> dict[str, JSON]:
    return _normalized(spec.type, spec.config)


def declared_config(spec: ConnectorSpec) -> dict[str, JSON]:
    """The config as the repository declares it (what apply sends), in canonical form but without
    the type's defaults: a create shows only these, since the defaults are Kibana's to fill in (and
    some, like `defaultModel`, differ between Kibana releases)."""
    out = canonical(dict(spec.config))
    assert isinstance(out, dict)
    return out


def live_config(conn: LiveConnector) -> dict[str, JSON]:
    """Kibana's config in canonical form. Defaults are applied here too: a key an older Kibana
    does not fill in still means its default."""
    return _normalized(conn.type, conn.config)


def _collect_properties(schema: Mapping[str, Any], out: dict[str, Mapping[str, Any]]) -> None:
    for name, prop in (schema.get("properties") or {}).items():
        if isinstance(prop, Mapping):
            merged = dict(out.get(name) or {})
            merged.update(prop)
            out[name] = merged
    for key in ("oneOf", "anyOf", "allOf"):
        for branch in schema.get(key, ()):
            if isinstance(branch, Mapping):
                _collect_properties(branch, out)
    for key in ("if", "then", "else"):
        sub = schema.get(key)
        if isinstance(sub, Mapping):
            _collect_properties(sub, out)


@cache
def _properties(type_id: str) -> Mapping[str, Mapping[str, Any]] | None:
    """Every top-level config property of a type, across union branches; None for unknown types
    and for open schemas (whose live keys then are all compared)."""
    ct = catalog.get(type_id)
    if ct is None:
        return None
    out: dict[str, Mapping[str, Any]] = {}
    _collect_properties(ct.config_schema, out)
    return out


@cache
def kibana_decides(type_id: str) -> frozenset[str]:
    """Config keys whose value Kibana picks when the repository leaves them out. A release default is
    data, not a rule: the catalogue holds the newest value seen, another Kibana release fills in its own."""
    props = _properties(type_id) or {}
    return frozenset(
        name
        for name, prop in props.items()
        if "x-kibana-default" in prop or prop.get("x-kibana-release-default") is True
    )


def _unasserted(spec: ConnectorSpec, keys: set[str]) -> set[str]:
    props = _properties(spec.type)
    decides = kibana_decides(spec.type)
    ct = catalog.get(spec.type)
    strips = ct is not None and ct.strips_unknown  # a declared unknown key is dropped on save: never a change
    return {
        k for k in keys
        # without a schema (a type kcr does not bundle) a key Kibana fills in that the files do not write
        # is Kibana's, as a key outside the schema is: comparing it would be a perpetual diff
        if (k not in spec.config and (k in decides or props is None or k not in props))
        or (strips and props is not None and k not in props)
    }


@cache
def set_fields(type_id: str) -> frozenset[str]:
    """Config keys whose list Kibana reads as a set (`x-kcr-set: true` in the type's schema): data with
    the type, so a new set-like field is a keyword in its schema file, not a line here."""
    props = _properties(type_id) or {}
    return frozenset(name for name, prop in props.items() if prop.get("x-kcr-set") is True)


def diff_values(path: str, before: JSON, after: JSON, out: list[FieldDiff]) -> None:
    """Field-level differences of two canonical values; objects recurse, lists compare whole (an
    element-wise diff of a list reads worse than the two lists; a set-like one is `config_diffs`'s).
    Paths are spelt as `kcr validate` spells fields (`yamlload.join_path`)."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(before.keys() | after.keys()):
            sub = join_path(path, key)
            if key not in after:
                out.append(FieldDiff(sub, before[key], None, "removed"))
            elif key not in before:
                out.append(FieldDiff(sub, None, after[key], "added"))
            else:
                diff_values(sub, before[key], after[key], out)
    elif not same(before, after):
        out.append(FieldDiff(path, before, after, "changed"))


def _members(values: list[JSON]) -> dict[str, JSON]:
    """A set-like list's members, keyed by their JSON: type-strict like `same` (`true` is not `1`), and a
    repeated member is one, as Kibana reads it."""
    return {json.dumps(v, sort_keys=True, ensure_ascii=False): v for v in values}


def _as_set(d: FieldDiff) -> FieldDiff | None:
    """A set-like list's diff told as the members it gains and loses, in declared and live order; None
    when only the order or repeats differ, which Kibana does not tell apart (no perpetual diff)."""
    if d.kind != "changed" or not isinstance(d.before, list) or not isinstance(d.after, list):
        return d  # the whole field comes or goes, or it is not a list on both sides
    have, want = _members(d.before), _members(d.after)
    added = tuple(v for k, v in want.items() if k not in have)
    removed = tuple(v for k, v in have.items() if k not in want)
    return dataclasses.replace(d, members=SetChange(added, removed)) if added or removed else None


def config_diffs(spec: ConnectorSpec, conn: LiveConnector) -> tuple[FieldDiff, ...]:
    """Differences from the live config (before) to the declared one (after), paths `config.*`."""
    want = desired_config(spec)
    have = live_config(conn)
    if same(have, want):  # nearly every connector of a plan: no key differs, whichever keys are skipped
        return ()
    skip = _unasserted(spec, set(want) | set(have))
    out: list[FieldDiff] = []
    diff_values(
        "config",
        {k: v for k, v in have.items() if k not in skip},
        {k: v for k, v in want.items() if k not in skip},
        out,
    )
    sets = set_fields(spec.type) & set_fields(conn.type)  # a set only where both sides read it as one
    if out and sets:  # only a connector already found to differ pays for the members
        paths = {join_path("config", key) for key in sets}
        kept = (_as_set(d) if d.path in paths else d for d in out)
        out = [d for d in kept if d is not None]
    return tuple(out)


def added_diffs(path: str, value: JSON) -> tuple[FieldDiff, ...]:
    """A new connector's fields, one `added` diff per top-level key, so a create reads like an update."""
    if not isinstance(value, dict):
        return (FieldDiff(path, None, value, "added"),)
    out: list[FieldDiff] = []
    diff_values(path, {}, value, out)
    return tuple(out)


def config_equal(spec: ConnectorSpec, conn: LiveConnector) -> bool:
    return not config_diffs(spec, conn)


__all__: Sequence[str] = (
    "added_diffs",
    "canonical",
    "config_diffs",
    "config_equal",
    "declared_config",
    "desired_config",
    "diff_values",
    "kibana_decides",
    "live_config",
    "same",
    "set_fields",
)
