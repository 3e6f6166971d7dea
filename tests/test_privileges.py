"""Least privilege (issue #15): the sandbox answers Kibana's 403s for what a key's privileges do not
grant (reconciler/sandbox/privileges.py), route by route; kcr plan and drift work with a read-only key,
apply with one fails naming the missing privilege and writes nothing, `kcr test` without execute says
so; the role descriptors below (the README's) are exactly enough for each job; no key is ever printed.

Kibana sources: actions_authorization.ts and feature.ts (x-pack/platform/plugins/shared/actions/server),
alerting_authorization.ts (x-pack/platform/plugins/shared/alerting/server/authorization),
secure_spaces_client_wrapper.ts (x-pack/platform/plugins/shared/security/server/spaces),
stack_alerts/server/feature.ts; api-behaviour.md §0 "Authorization (403)"."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.cli import World, write_repo

from reconciler.answers import error_for
from reconciler.errors import ConfigError, KibanaAuthError
from reconciler.model import derive_connector_id
from reconciler.sandbox import Sandbox


def _canary(label: str) -> str:
    return f"CANARY-{label}-{uuid.uuid4()}"


KIBANA = "http://kibana.test"
SUPER, READ, ACTIONS_READ, ACTIONS_ALL, RULES_ONLY, OPS_ALL, NO_EXECUTE = (
    _canary(k) for k in ("super", "read", "actions-read", "actions-all", "rules-only", "ops-all", "no-execute"))
LOG = str(uuid.UUID(int=1, version=4))
OPS_LOG = str(uuid.UUID(int=2, version=4))
FORBIDDEN = {"statusCode": 403, "error": "Forbidden"}

# The role descriptors the README gives, as the seed holds them (applications[0] of each).
PLAN_KEY = {"privileges": ["feature_actions.read", "feature_stackAlerts.read"], "resources": ["space:default"]}
APPLY_KEY = {"privileges": ["feature_actions.all", "feature_stackAlerts.read"], "resources": ["space:default"]}
TEST_KEY = {"privileges": ["feature_actions.read"], "resources": ["space:default"]}


def seed(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "license": "platinum",
        "spaces": ["ops"],
        "auth": {"api_keys": {
            SUPER: None,
            READ: {"privileges": "read"},
            ACTIONS_READ: {"privileges": ["feature_actions.read"]},
            ACTIONS_ALL: {"privileges": ["feature_actions.all"]},
            RULES_ONLY: {"privileges": ["feature_stackAlerts.read"]},
            OPS_ALL: {"privileges": "all", "resources": ["space:ops"]},
            # Elasticsearch accepts Kibana's actions as application privileges: read without execute.
            NO_EXECUTE: {"privileges": ["login:", "saved_object:action/get", "saved_object:action/find"]},
        }},
        "connectors": [{"id": LOG, "name": "log", "connector_type_id": ".server-log"},
                       {"id": OPS_LOG, "space": "ops", "name": "ops log", "connector_type_id": ".server-log"}],
        "rules": [{"id": "r1", "name": "threshold", "actions": [{"id": LOG}]},
                  {"id": "r2", "name": "siem", "consumer": "siem", "rule_type_id": "siem.queryRule",
                   "actions": [{"id": LOG}]}],
    }
    base.update(extra)
    return base


def call(sb: Sandbox, key: str, method: str, path: str, body: Any = None, query: str = "") -> tuple[int, Any]:
    headers = {"authorization": f"ApiKey {key}", "kbn-xsrf": "t", "content-type": "application/json"}
    r = sb.handle(method, path, query, headers, b"" if body is None else json.dumps(body).encode())
    return r.status, (r.json() if r.body else None)


CREATE = {"name": "x", "connector_type_id": ".server-log", "config": {}, "secrets": {}}
UPDATE = {"name": "renamed", "config": {}, "secrets": {}}
RUN = {"params": {"message": "hello"}}
# route -> (method, path, body)
ROUTES: dict[str, tuple[str, str, Any]] = {
    "types": ("GET", "/api/actions/connector_types", None),
    "list": ("GET", "/api/actions/connectors", None),
    "get": ("GET", f"/api/actions/connector/{LOG}", None),
    "create": ("POST", "/api/actions/connector", CREATE),
    "update": ("PUT", f"/api/actions/connector/{LOG}", UPDATE),
    "execute": ("POST", f"/api/actions/connector/{LOG}/_execute", RUN),
    "delete": ("DELETE", f"/api/actions/connector/{LOG}", None),
    "spaces": ("GET", "/api/spaces/space", None),
    "space": ("GET", "/api/spaces/space/default", None),
    "rules": ("GET", "/api/alerting/rules/_find", None),
    "rule": ("GET", "/api/alerting/rule/r1", None),
}
DENIED = {
    "list": "Unauthorized to get actions",
    "get": "Unauthorized to get actions",
    "create": 'Unauthorized to create a ".server-log" action',
    "update": "Unauthorized to update actions",
    "execute": 'Unauthorized to execute a ".server-log" action',
    "delete": "Unauthorized to delete actions",
    "spaces": "Forbidden",
    "space": "Unauthorized to get default space",
    "rules": "Unauthorized to find rules for any rule types",
    "rule": 'Unauthorized by "alerts" to get ".index-threshold" rule',
}
ALLOWED = {  # key -> the routes it may use in the default space
    SUPER: set(ROUTES),
    READ: {"types", "list", "get", "execute", "spaces", "space", "rules", "rule"},
    ACTIONS_READ: {"types", "list", "get", "execute", "spaces", "space"},
    ACTIONS_ALL: {"types", "list", "get", "create", "update", "execute", "delete", "spaces", "space"},
    RULES_ONLY: {"types", "spaces", "space", "rules", "rule"},
    OPS_ALL: {"types", "spaces"},  # lists the spaces it holds a privilege in (ops), nothing in default
    NO_EXECUTE: {"types", "list", "get", "spaces", "space"},
}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("key", list(ALLOWED), ids=lambda k: k.split("-")[1])
def test_each_route_answers_by_privilege(key: str, route: str) -> None:
    sb = Sandbox.from_seed(seed())
    before = (sb.connectors_in("default"), sb.rules_in("default"))
    status, body = call(sb, key, *ROUTES[route])
    if route in ALLOWED[key]:
        assert status in (200, 204), (status, body)
        assert sb.counters.get("forbidden", 0) == 0
    else:
        assert (status, body) == (403, {**FORBIDDEN, "message": DENIED[route]})
        assert sb.counters["forbidden"] == 1
        assert (sb.connectors_in("default"), sb.rules_in("default")) == before  # a refusal changes nothing
        assert sb.executions == []


def test_lists_show_only_what_the_key_may_see() -> None:
    sb = Sandbox.from_seed(seed())
    assert [s["id"] for s in call(sb, OPS_ALL, "GET", "/api/spaces/space")[1]] == ["ops"]
    assert [s["id"] for s in call(sb, READ, "GET", "/api/spaces/space")[1]] == ["default", "ops"]
    assert call(sb, OPS_ALL, "GET", "/s/ops/api/actions/connectors")[1][0]["id"] == OPS_LOG
    # Stack Rules covers the consumer `alerts`, not Security's `siem`: the find is narrowed, not refused.
    found = call(sb, RULES_ONLY, "GET", "/api/alerting/rules/_find")[1]
    assert (found["total"], [r["id"] for r in found["data"]]) == (1, ["r1"])
    assert call(sb, READ, "GET", "/api/alerting/rules/_find")[1]["total"] == 2
    assert call(sb, SUPER, "GET", "/api/alerting/rules/_find")[1]["total"] == 2
    # A key of another solution's rules sees none of these, and is not refused.
    only_siem = Sandbox.from_seed(seed(auth={"api_keys": {"k": {"privileges": ["feature_siem.read"]}},
                                             "users": {}}, rules=[{"id": "r1", "actions": [{"id": LOG}]}]))
    assert call(only_siem, "k", "GET", "/api/alerting/rules/_find") == (
        200, {"page": 1, "per_page": 10, "total": 0, "data": []})


def test_refusals_come_before_not_found_and_name_what_they_can() -> None:
    sb = Sandbox.from_seed(seed())
    unknown = str(uuid.uuid4())
    # No privilege in the space: 403, not 404 (api-behaviour §0, T:get.ts "from another space").
    assert call(sb, OPS_ALL, "GET", f"/api/actions/connector/{unknown}")[0] == 403
    assert call(sb, SUPER, "GET", f"/api/actions/connector/{unknown}")[0] == 404
    # Execute names the type of a connector found in the space, else none.
    assert call(sb, RULES_ONLY, "POST", f"/api/actions/connector/{unknown}/_execute", RUN)[1]["message"] == (
        "Unauthorized to execute actions")
    assert call(sb, RULES_ONLY, "POST", f"/api/actions/connector/{OPS_LOG}/_execute", RUN)[1]["message"] == (
        "Unauthorized to execute actions")
    # Create authorizes before looking the type up: an unregistered type still gets the 403.
    assert call(sb, READ, "POST", "/api/actions/connector", {**CREATE, "connector_type_id": ".nope"})[1][
        "message"] == 'Unauthorized to create a ".nope" action'
    # A body without a string type is the route schema's 400, which Kibana answers first.
    assert call(sb, READ, "POST", "/api/actions/connector", {"name": "x"})[0] == 400
    # The space's own privilege: ops-all may write in ops only.
    assert call(sb, OPS_ALL, "PUT", f"/s/ops/api/actions/connector/{OPS_LOG}", UPDATE)[0] == 200
    assert call(sb, OPS_ALL, "GET", "/api/spaces/space/ops")[0] == 200
    # Rule writes need the rule's feature `all`.
    assert call(sb, READ, "DELETE", "/api/alerting/rule/r1") == (
        403, {**FORBIDDEN, "message": 'Unauthorized by "alerts" to delete ".index-threshold" rule'})
    assert [r["id"] for r in sb.rules_in("default")] == ["r1", "r2"]


def test_seed_forms_old_and_new() -> None:
    # The list form and a bare password are superusers, as before privileges existed.
    sb = Sandbox.from_seed({"auth": {"api_keys": ["k"], "users": {"elastic": "changeme",
                                                                  "viewer": {"password": "pw", "privileges": "read"}}}})
    assert call(sb, "k", "POST", "/api/actions/connector", CREATE)[0] == 200

    def basic(user: str, password: str) -> int:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers = {"authorization": f"Basic {token}", "kbn-xsrf": "t", "content-type": "application/json"}
        return sb.handle("POST", "/api/actions/connector", "", headers, json.dumps(CREATE).encode()).status

    assert (basic("elastic", "changeme"), basic("viewer", "pw"), basic("viewer", "wrong")) == (200, 403, 401)
    # An `id:api_key` pair is sent base64-encoded and keeps its privileges.
    pair = Sandbox.from_seed({"auth": {"api_keys": {"id1:secret": {"privileges": ["feature_actions.read"]}}}})
    encoded = base64.b64encode(b"id1:secret").decode()
    assert call(pair, encoded, "GET", "/api/actions/connectors")[0] == 200
    assert call(pair, encoded, "DELETE", f"/api/actions/connector/{LOG}")[0] == 403


@pytest.mark.parametrize(("auth", "where"), [
    ({"api_keys": {"k": {"privileges": "superuser"}}}, "auth.api_keys.k.privileges"),
    ({"api_keys": {"k": {"privileges": ["read", "feature actions"]}}}, "auth.api_keys.k.privileges[1]"),
    ({"api_keys": {"k": {"resources": ["ops"]}}}, "auth.api_keys.k.resources[0]"),
    ({"api_keys": {"k": {"privilege": "read"}}}, "auth.api_keys.k"),
    ({"users": {"u": {"privileges": "read"}}}, "auth.users.u"),
])
def test_bad_privileges_are_refused_with_their_place(auth: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        Sandbox.from_seed({"auth": auth})
    assert f"sandbox seed: {where}" in str(info.value)


# --- kcr's message: the status and the request decide; the wording only adds a hint -----------------


def _error(method: str, path: str, message: str) -> str:
    response = httpx.Response(403, json={**FORBIDDEN, "message": message})
    err = error_for(method, path, response, lambda s: s)
    assert type(err) is KibanaAuthError and err.status == 403
    return str(err)


@pytest.mark.parametrize(("method", "path", "refused", "needs"), [
    ("POST", f"/api/actions/connector/{LOG}", f"create connector {LOG} in space `default`", "`feature_actions.all`"),
    ("PUT", f"/s/ops/api/actions/connector/{LOG}", f"update connector {LOG} in space `ops`", "`feature_actions.all`"),
    ("DELETE", f"/api/actions/connector/{LOG}", f"delete connector {LOG}", "`feature_actions.all`"),
    ("POST", f"/api/actions/connector/{LOG}/_execute", f"run connector {LOG}", "which includes running connectors"),
    ("GET", "/s/ops/api/actions/connectors", "list the connectors in space `ops`", "`feature_actions.read`"),
    ("GET", "/api/alerting/rules/_find", "find the rules that use a connector", "`feature_stackAlerts.read`"),
    ("GET", "/api/spaces/space", "list the spaces", "a Kibana privilege in each space"),
])
def test_a_403_names_what_was_refused_and_the_privilege_it_needs(method: str, path: str, refused: str,
                                                                 needs: str) -> None:
    text = _error(method, path, "Unauthorized to do it")
    assert text.startswith(f"Kibana refused to {refused}")
    assert needs in text and "the credentials lack a privilege" in text and 'README: "Kibana privileges"' in text
    assert "Unauthorized to do it" in text and f"{method} {path}" in text
    # Another wording: the same statement of what the request needs, without claiming the key lacks it.
    other = _error(method, path, "Forbidden by a proxy")
    assert other.startswith(f"Kibana refused to {refused}") and needs in other
    assert "lack" not in other


def test_a_licence_403_keeps_its_hint() -> None:
    text = _error("POST", "/api/actions/connector", "Action type .gen-ai is disabled because your basic license "
                                                    "does not support it. Please upgrade your license.")
    assert "`feature_actions.all`" in text and "needs a higher licence" in text and "lack" not in text


# --- kcr against the sandbox -----------------------------------------------------------------------------

REPO = {
    "connectors/default/chat.yaml": """\
connectors:
  - id: chat
    name: Chat
    type: .slack
    secrets:
      webhookUrl: ${env:SLACK_URL}
  - id: log
    name: Log
    type: .server-log
""",
}
SLACK_URL = f"https://hooks.example.com/{_canary('slack')}"


@pytest.fixture()
def world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> World:
    env = {"KIBANA_URL": KIBANA, "SLACK_URL": SLACK_URL, "KCR_FINGERPRINT_KEY": _canary("fp"), "NO_COLOR": "1"}
    keys = {"plan": PLAN_KEY, "apply": APPLY_KEY, "test": TEST_KEY,
            "no-exec": {"privileges": ["feature_stackAlerts.read"]}}
    sb = Sandbox.from_seed({"license": "platinum", "auth": {"api_keys": {KEYS[k]: v for k, v in keys.items()}}})
    return World(write_repo(tmp_path / "repo", REPO), env, sb, capsys)


KEYS = {k: _canary(f"{k}-key") for k in ("plan", "apply", "test", "no-exec")}


def run(world: World, key: str, *args: str) -> tuple[int, str]:
    code, out, err = world.kcr(*args, "-vv", env={**world.env, "KIBANA_API_KEY": KEYS[key]})
    text = out + err
    assert "CANARY-" not in text  # no key (nor secret) is ever printed, debug logs included
    return code, text


@pytest.fixture(autouse=True)
def _no_canary_in_the_logs(caplog: pytest.LogCaptureFixture) -> Any:
    """What kcr logged (pytest's handler sees every record, debug included) holds no key either."""
    caplog.set_level("DEBUG")
    yield
    assert "CANARY-" not in caplog.text


def writes(sb: Sandbox) -> int:
    return sum(n for name, n in sb.counters.items() if name.split(" ")[0] in ("POST", "PUT", "DELETE"))


def test_read_only_key_plans_and_drifts_and_cannot_apply(world: World) -> None:
    code, out = run(world, "plan", "plan", "--detailed-exitcode")
    assert code == 2 and "2 to create" in out, out
    code, out = run(world, "plan", "drift")
    assert code == 2, out  # drift found (nothing applied yet), and no error
    world.sb.reset_counters()
    code, out = run(world, "plan", "apply", "--auto-approve")
    assert code == 1, out
    assert "Kibana refused to create connector" in out
    assert "the credentials lack a privilege" in out and "`feature_actions.all`" in out
    assert "a read-only key is for plan and drift" in out
    # Nothing written: every write that reached the sandbox was refused, and the store is as it was.
    assert writes(world.sb) == world.sb.counters["forbidden"] == 2
    assert world.sb.connectors_in("default") == [] and world.sb.executions == []

    # The apply key applies; the plan key then sees no drift.
    code, out = run(world, "apply", "apply", "--auto-approve")
    assert code == 0, out
    assert len(world.sb.connectors_in("default")) == 2
    assert run(world, "plan", "drift")[0] == 0
    assert run(world, "plan", "plan", "--detailed-exitcode")[0] == 0


def test_kcr_test_needs_read_on_connectors_which_includes_execute(world: World) -> None:
    assert run(world, "apply", "apply", "--auto-approve")[0] == 0
    cid = derive_connector_id("default", "log")
    code, out = run(world, "no-exec", "test", "log", "--params", '{"message": "hi"}')
    assert code == 1, out
    assert f"Kibana refused to run connector {cid}" in out and "`feature_actions.read`" in out
    assert "which includes running connectors" in out and "kcr test needs" in out
    assert world.sb.executions == []
    code, out = run(world, "test", "test", "log", "--params", '{"message": "hi"}')
    assert code == 0, out
    assert [e["connector_id"] for e in world.sb.executions] == [cid]


def test_a_plan_that_must_name_rules_says_which_rule_privilege_it_lacks(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A prune blocked by a rule makes plan read the rules; a key without their feature is refused."""
    cid = derive_connector_id("default", "old")
    sb = Sandbox.from_seed({"license": "platinum", "auth": {"api_keys": {
        KEYS["test"]: {"privileges": ["feature_actions.read"]}, KEYS["plan"]: PLAN_KEY}},
        "connectors": [{"id": cid, "name": "old", "connector_type_id": ".server-log"}],
        "rules": [{"id": "r1", "name": "uses old", "actions": [{"id": cid}]}]})
    repo = write_repo(tmp_path / "repo", {"connectors/default/_space.yaml": "prune: true\n"})
    w = World(repo, {"KIBANA_URL": KIBANA, "NO_COLOR": "1"}, sb, capsys)
    code, out = run(w, "test", "plan")
    assert code == 1, out
    assert "Kibana refused to find the rules that use a connector in space `default`" in out
    assert "`feature_stackAlerts.read`" in out
    code, out = run(w, "plan", "plan")
    assert code == 0 and "uses old" in out, out
