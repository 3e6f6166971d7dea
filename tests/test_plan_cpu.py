"""The shortcuts a large plan takes (issue #16) give the answers the long way gives.

Each shortcut below skips work for the common case; each test runs the long way next to it."""

from __future__ import annotations

import dataclasses
import gc
import re
import subprocess
import sys
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import catalog, type_rules
from reconciler.cli import main
from reconciler.connector_checks import locations_by_item
from reconciler.model import KCR_ID_NAMESPACE, Location, derive_connector_id
from reconciler.yamlload import Document, parse


@settings(max_examples=300, deadline=None)
@given(space=st.text(max_size=20), key=st.text(max_size=40))
def test_derived_ids_are_uuid5_as_the_uuid_module_makes_them(space: str, key: str) -> None:
    try:
        expected = str(uuid.uuid5(KCR_ID_NAMESPACE, f"{space}/{key}"))
    except UnicodeEncodeError:  # a lone surrogate: neither can encode it
        with pytest.raises(UnicodeEncodeError):
            derive_connector_id(space, key)
        return
    assert derive_connector_id(space, key) == expected


def test_a_published_derived_id_is_unchanged() -> None:
    """README's formula, on a fixed value: the ids kcr created before must still be the ones it derives."""
    assert derive_connector_id("default", "slack-alerts") == str(uuid.uuid5(KCR_ID_NAMESPACE, "default/slack-alerts"))
    assert uuid.UUID(derive_connector_id("default", "a")).version == 5


CONFIGS: list[dict[str, Any]] = [{}, {"url": "not a url"}, {"url": "https://x.example"}, {"apiUrl": "ftp://x"},
                                 {"service": "gmail", "hasAuth": True}, {"isOAuth": True}, {"usesBasic": True},
                                 {"severity": "nonsense"}, {"authType": "webhook-authentication-basic"}]


@pytest.mark.parametrize("type_id", sorted(catalog.types()))
def test_a_type_without_config_rules_is_skipped_only_where_the_rules_find_nothing(type_id: str) -> None:
    """`refusals` returns at once for a type `offline_rules` finds without config rules; the full pass over the
    same configs must then find nothing, and a type with rules must not be marked so."""
    facts = type_rules.offline_rules(type_id)
    ct = catalog.types()[type_id]
    has_data_rules = bool(ct.marked("config", "x-kibana-values") or type_rules.checked_fields(type_id, "config")
                          or ct.fixed_urls("config") or ct.marked("config", "x-kibana-default-url")
                          or ct.marked("config", "x-kibana-implied-hosts"))
    rules = type_rules._rules_of(type_id)
    has_code_rules = rules.connector is not None or "config" in rules.before_hosts or "config" in rules.after_hosts
    assert facts.no_config_rules is not (has_data_rules or has_code_rules)
    if facts.no_config_rules:
        for config in CONFIGS:
            filled = catalog.with_defaults(type_id, "config", config)
            full = (type_rules.closed_values(type_id, config) or type_rules.part_rules(type_id, "config", filled)
                    or type_rules.connector_rules(type_id, config, filled, {}))
            assert full == [] and type_rules.offline_rules(type_id).refusals(config, {}) == []


def test_the_rules_shortcut_is_not_kept_past_a_catalogue_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests (and the sandbox) swap the catalogue; the facts are read again from the entry now in it."""
    before = type_rules.offline_rules(".index")
    assert before.no_config_rules and before.type is not None
    changed = dataclasses.replace(before.type, allowed_hosts_checked=("config.index",))
    monkeypatch.setattr(catalog, "get", lambda t: changed if t == ".index" else None)
    assert type_rules.offline_rules(".index").no_config_rules is False


def _locations_by_item_long_way(doc: Document) -> dict[int, dict[str, Location]]:
    out: dict[int, dict[str, Location]] = {}
    for path, loc in doc.locations.items():
        match = re.match(r"^connectors\[(\d+)\]", path)
        if match:
            rest = path[match.end():]
            out.setdefault(int(match.group(1)), {})[rest[1:] if rest.startswith(".") else rest] = loc
    return out


@pytest.mark.parametrize("text", [
    "connectors:\n" + "".join(f"  - id: a{i}\n    name: n\n    config: {{x: [1, {{y: 2}}], 'a b': 1}}\n"
                              for i in range(12)),
    "connectors: []\n",
    "connectors: {'1': {a: 1}}\nother: {connectors: 1}\n",
    "base: &b {id: x, config: {k: 1}}\nconnectors:\n  - *b\n  - <<: *b\n    name: m\n",
    'connectors:\n - {"a b": 1, id: x, c: {"q r": [1, {z: 2}]}}\n - [1, [2]]\n - {id: y}\nenvironments: [a]\n',
    "x: 1\nconnectors:\n" + "".join(f' - {{id: a{i}, "k k": {{y: 1}}, c: {{d: 1}}}}\n' for i in range(13)),
])
def test_positions_by_item_as_the_regex_finds_them(text: str) -> None:
    doc = parse(text.encode(), "f.yaml")
    assert locations_by_item(doc) == _locations_by_item_long_way(doc)


def test_the_cli_process_runs_without_the_cyclic_collector_and_tests_keep_it() -> None:
    """`kcr` as a process (argv None) turns the collector off; `main([...])`, as the tests call it, never
    changes the collector of the process that calls it."""
    assert gc.isenabled()
    assert main(["--version"], env={}) == 0
    assert gc.isenabled()
    code = ("import gc, sys\nfrom reconciler import cli\nsys.argv = ['kcr', '--version']\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\nprint(gc.isenabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")


def test_long_running_commands_turn_the_collector_back_on() -> None:
    """The CLI process turns the cyclic collector off; an apply (thousands of requests) and the servers
    (sandbox, demo) turn it back on, so cycles made while they run are collected."""
    import gc

    from reconciler.cli_options import long_running

    gc.disable()
    try:
        long_running()
        assert gc.isenabled()
    finally:
        gc.enable()
