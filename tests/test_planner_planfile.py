"""Loading a saved plan: it is checked against schemas/plan.schema.json and kcr's id and space rules
before apply trusts any of it, and every refusal names the file and the change."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from helpers.builders import mixed_plan

from reconciler import planfile
from reconciler.errors import PlanFileError, Problem
from reconciler.plan import Plan, has_plaintext_marker

SOURCE = "plans/saved-plan.json"
Body = dict[str, Any]


def body() -> Body:
    return copy.deepcopy(planfile.to_json(mixed_plan()))


def first(b: Body, action: str) -> dict[str, Any]:
    return next(c for c in b["changes"] if c["action"] == action)


def load(b: Body) -> Plan:
    return planfile.loads(json.dumps(b), SOURCE)


def refused(b: Body) -> str:
    with pytest.raises(PlanFileError) as info:
        load(b)
    message = str(info.value)
    assert message.startswith(f"{SOURCE}: ")
    return message


def test_a_plan_kcr_wrote_loads() -> None:
    assert load(body()) == mixed_plan()


def set_config(action: str, value: Any) -> Callable[[Body], str]:
    def edit(b: Body) -> str:
        c = first(b, action)
        c["desired"]["config"] = value
        return str(c["address"])
    return edit


def drop(action: str, key: str) -> Callable[[Body], str]:
    def edit(b: Body) -> str:
        c = first(b, action)
        c[key] = None
        return str(c["address"])
    return edit


def set_field(action: str, key: str, value: Any) -> Callable[[Body], str]:
    def edit(b: Body) -> str:
        c = first(b, action)
        address = str(c["address"])
        c[key] = value
        if key in ("space", "id"):
            c["address"] = f"{c['space']}/{c['id']}"
            return str(c["address"])
        return address
    return edit


EDITS: list[tuple[str, Callable[[Body], str], str]] = [
    ("config a string", set_config("update", "not an object"), "desired.config: must be of type object"),
    ("config a list", set_config("create", ["x"]), "desired.config: must be of type object"),
    ("update without fingerprint", drop("update", "live_fingerprint"), "live_fingerprint"),
    ("recreate without fingerprint", drop("recreate", "live_fingerprint"), "live_fingerprint"),
    ("delete without fingerprint", drop("delete", "live_fingerprint"), "live_fingerprint"),
    ("create without desired", drop("create", "desired"), "desired"),
    ("update without desired", drop("update", "desired"), "desired"),
    ("recreate without desired", drop("recreate", "desired"), "desired"),
    ("space with capitals", set_field("update", "space", "Default"), "space"),
    ("space with a slash", set_field("delete", "space", "a/b"), "space"),
    ("id a path", set_field("update", "id", "../../api/x"), "id is neither a UUID nor a key"),
    ("id with capitals", set_field("update", "id", "Hook"), "id is neither a UUID nor a key"),
    ("address of another", set_field("update", "address", "default/other"), "does not match its space and id"),
    ("unknown action", set_field("update", "action", "explode"), "action: must be one of"),
]


@pytest.mark.parametrize(("label", "edit", "needle"), EDITS, ids=[e[0] for e in EDITS])
def test_hand_edits_refused_naming_file_and_change(label: str, edit: Callable[[Body], str], needle: str) -> None:
    b = body()
    address = edit(b)
    message = refused(b)
    assert "not a kcr plan, or edited by hand" in message
    assert f"change {address}" in message
    assert needle in message


def test_plan_level_problems_named() -> None:
    b = body()
    b["spaces"] = ["default", "Security"]
    assert "spaces[1]: must match" in refused(b)
    b = body()
    b["changes"] = "none"
    assert "changes: must be of type array" in refused(b)
    b = body()
    b["secret_value"] = "x"
    assert "secret_value" in refused(b)


def test_format_version_checked_first() -> None:
    b = body()
    b["format_version"] = "2.0"
    b["changes"] = "garbage"
    assert "plan format 2.0 is not supported" in refused(b)


def test_a_newer_minor_is_refused_and_an_older_one_read() -> None:
    """1.1 added fields (environment, removed_from_files, drift problems) that a 1.0 reader cannot
    understand: a plan from a newer kcr is refused by name, one from an older kcr still loads."""
    b = body()
    b["format_version"] = "1.9"
    assert "plan format 1.9 is not supported (this kcr reads 1.1 and earlier 1.x)" in refused(b)
    b["format_version"] = "1.0"
    assert planfile.from_json(b).format_version == "1.0"


@pytest.mark.parametrize("literal", ["value", 42, True, ["${env:A}", "value"], {"inner": "value"}],
                         ids=["string", "number", "bool", "in a list", "in an object"])
def test_literal_secret_in_secret_refs_refused_without_echo(literal: Any) -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    literal = json.loads(json.dumps(literal).replace('"value"', json.dumps(canary)))
    b = body()
    c = first(b, "create")
    c["desired"]["secret_refs"]["webhookUrl"] = literal
    message = refused(b)
    assert canary not in message and f"change {c['address']}" in message
    assert "secret_refs" in message


def test_schema_messages_never_echo_values() -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    for where in ("kibana_url", "created_at"):
        b = body()
        b[where] = {"leak": canary}
        message = refused(b)
        assert canary not in message and where in message
    b = body()
    first(b, "update")["desired"]["name"] = [canary]
    assert canary not in refused(b)


def test_plaintext_marker_and_references_accepted() -> None:
    b = body()
    c = first(b, "create")
    c["desired"]["secret_refs"] = {"webhookUrl": {"$plaintext": True}, "extra": {"a": ["${env:A}", None]},
                                   "header": "Bearer ${vault:secret/x#k}"}
    loaded = load(b)
    change = next(x for x in loaded.changes if x.address == c["address"])
    assert change.desired is not None
    assert has_plaintext_marker(change.desired.secret_refs)
    assert not has_plaintext_marker({"a": ["${env:A}"], "b": {"$plaintext": False}})
    bad = copy.deepcopy(b)
    first(bad, "create")["desired"]["secret_refs"]["webhookUrl"] = {"$plaintext": False}
    assert "secret_refs" in refused(bad)


def test_verbatim_ids_accepted() -> None:
    b = body()
    c = first(b, "delete")
    c["id"], c["address"] = "legacy-mail_2", f"{c['space']}/legacy-mail_2"
    assert any(x.id == "legacy-mail_2" for x in load(b).changes)


def test_validator_loaded_once() -> None:
    assert planfile._validator() is planfile._validator()


def test_paths_in_messages_are_field_paths() -> None:
    """Schema errors and the consistency checks name fields as the file loader does (yamlload.join_path):
    a key that is not a plain name is quoted, so the path points at one field."""
    b = body()
    c = first(b, "create")
    c["desired"]["secret_refs"]["web.hook"] = ["${env:A}", "literal"]
    assert 'desired.secret_refs["web.hook"][1] holds a literal value' in refused(b)
    b = body()
    first(b, "create")["guard"]["rules"] = [{"id": "r", "name": "n"}]
    assert f"change {first(b, 'create')['address']}: guard.rules[0]: 'space' is a required property" in refused(b)
    b = body()
    b["spaces"] = 7
    assert ": spaces: must be of type array" in refused(b)


def test_problems_about_kibana_keep_the_saved_plan_keys() -> None:
    """One Problem type serves the files and Kibana; a plan's problems keep their four keys and print
    as space/id."""
    saved = body()["problems"]
    assert saved and all(list(p) == ["space", "id", "severity", "message"] for p in saved)
    assert load(body()).problems == mixed_plan().problems
    problem = Problem.in_kibana("ops", "c1", "warning", "m")
    assert (problem.where(), str(problem)) == ("ops/c1", "ops/c1: m")
    assert str(Problem.in_kibana("ops", None, "error", "m")) == "ops: m"
    assert str(Problem("connectors/ops/a.yaml", "m", 3, 5, "connectors[0].name")) == \
        "connectors/ops/a.yaml:3:5: m (connectors[0].name)"
