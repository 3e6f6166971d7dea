"""The sandbox's connector routes against api-behaviour.md §1-13, through the in-process transport."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from reconciler.sandbox import Sandbox

ClientFactory = Callable[..., tuple[Sandbox, httpx.Client]]  # the `sandbox_client` fixture (conftest.py)


INDEX = {"name": "Index", "connector_type_id": ".index", "config": {"index": "logs"}}
WEBHOOK_SECRETS = {"user": "u", "password": "p"}


def webhook(url: str = "https://hooks.example.com/x", **secrets: Any) -> dict[str, Any]:
    return {"name": "Hook", "connector_type_id": ".webhook", "config": {"url": url},
            "secrets": secrets or dict(WEBHOOK_SECRETS)}


def canary() -> str:
    return f"CANARY-{uuid.uuid4()}"


def test_create_returns_kibana_shape_with_defaults(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client()
    r = c.post("/api/actions/connector", json=INDEX)
    assert r.status_code == 200
    body = r.json()
    uuid.UUID(body.pop("id"))
    assert body == {
        "name": "Index", "connector_type_id": ".index", "is_preconfigured": False, "is_deprecated": False,
        "is_missing_secrets": False, "is_system_action": False, "is_connector_type_deprecated": False,
        "config": {"index": "logs", "refresh": False, "executionTimeField": None},
    }


def test_create_with_uuid_id_get_put_delete_roundtrip(sandbox_client: ClientFactory) -> None:
    sb, c = sandbox_client()
    cid = str(uuid.uuid4())
    assert c.post(f"/api/actions/connector/{cid}", json=webhook()).status_code == 200
    got = c.get(f"/api/actions/connector/{cid}").json()
    assert got["id"] == cid and "referenced_by_count" not in got
    r = c.put(f"/api/actions/connector/{cid}", json={"name": "Renamed", "config": {"url": "https://b.example.com"}})
    assert r.status_code == 200 and r.json()["name"] == "Renamed"
    stored = sb.connectors_in("default")[0]["secrets"]
    assert stored.get("user") is None and stored.get("password") is None  # PUT without secrets wiped them
    assert c.delete(f"/api/actions/connector/{cid}").status_code == 204
    r = c.get(f"/api/actions/connector/{cid}")
    assert r.status_code == 404
    assert r.json() == {"statusCode": 404, "error": "Not Found", "message": f"Saved object [action/{cid}] not found"}


def test_non_uuid_id_refused_unless_human_readable(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client()
    r = c.post("/api/actions/connector/my-slack", json=INDEX)
    assert r.status_code == 400
    assert r.json()["message"].startswith("Predefined IDs are not allowed")
    _, c2 = sandbox_client({"human_readable_ids": True})
    assert c2.post("/api/actions/connector/my-index", json=INDEX).json()["id"] == "my-index"
    assert c2.post("/api/actions/connector/My_Index", json=INDEX).status_code == 400


def test_ids_are_global_across_spaces(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client({"spaces": ["team"]})
    cid = str(uuid.uuid4())
    assert c.post(f"/s/team/api/actions/connector/{cid}", json=INDEX).status_code == 200
    r = c.post(f"/api/actions/connector/{cid}", json=INDEX)
    assert r.status_code == 409 and r.json()["message"] == f"Saved object [action/{cid}] conflict"
    for method in ("GET", "DELETE"):
        assert c.request(method, f"/api/actions/connector/{cid}").status_code == 404
    assert c.put(f"/api/actions/connector/{cid}", json={"name": "x", "config": {"index": "i"}}).status_code == 404
    assert c.post(f"/api/actions/connector/{cid}/_execute", json={"params": {}}).status_code == 404
    assert [x["id"] for x in c.get("/s/team/api/actions/connectors").json()] == [cid]
    assert c.get("/api/actions/connectors").json() == []


def test_secrets_stored_never_returned(sandbox_client: ClientFactory) -> None:
    sb, c = sandbox_client()
    secret = canary()
    created = c.post("/api/actions/connector", json=webhook(user="u", password=secret))
    texts = [created.text, c.get(f"/api/actions/connector/{created.json()['id']}").text,
             c.get("/api/actions/connectors").text]
    assert all(secret not in t for t in texts)
    assert sb.connectors_in("default")[0]["secrets"]["password"] == secret


def test_put_is_full_replacement_and_clears_missing_secrets(sandbox_client: ClientFactory) -> None:
    cid = str(uuid.uuid4())
    seed = {"connectors": [{"id": cid, "name": "imported", "connector_type_id": ".webhook",
                            "config": {"url": "https://a.example.com", "headers": {"x": "1"}},
                            "secrets": {}, "is_missing_secrets": True}]}
    sb, c = sandbox_client(seed)
    assert c.get(f"/api/actions/connector/{cid}").json()["is_missing_secrets"] is True
    r = c.put(f"/api/actions/connector/{cid}",
              json={"name": "n", "config": {"url": "https://a.example.com"}, "secrets": {"user": "a", "password": "b"}})
    assert r.json()["is_missing_secrets"] is False
    assert r.json()["config"]["headers"] is None  # not merged: the old header is gone
    stored = sb.connectors_in("default")[0]["secrets"]
    assert (stored["user"], stored["password"]) == ("a", "b")


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("POST", "/api/actions/connector", {},
         "[request body.name]: expected value of type [string] but got [undefined]"),
        ("POST", "/api/actions/connector", {"name": "x"},
         "[request body.connector_type_id]: expected value of type [string] but got [undefined]"),
        ("POST", "/api/actions/connector", {**INDEX, "name": "  "}, "[request body.name]: value '' is not valid"),
        ("POST", "/api/actions/connector", {**INDEX, "config": {"index": " "}},
         "[request body.config.index]: value '' is not valid"),
        ("POST", "/api/actions/connector", {**INDEX, "secrets": {"a": ["ok", ""]}},
         "[request body.secrets.a]: value '' is not valid"),
        ("POST", "/api/actions/connector", {**INDEX, "config": None},
         "[request body.config]: expected value of type [object] but got [null]"),
        ("POST", "/api/actions/connector", {**INDEX, "extra": 1},
         "[request body.extra]: definition for this key is missing"),
        ("POST", "/api/actions/connector", [1],
         "[request body]: expected a plain object value, but found [Array] instead."),
        ("POST", "/api/actions/connector", {"name": "x", "connector_type_id": ".nope"},
         'Action type ".nope" is not registered.'),
        ("POST", "/api/actions/connector", {"name": "x", "connector_type_id": ".index", "config": {}},
         "error validating action type config: [index]: expected value of type [string] but got [undefined]"),
        ("POST", "/api/actions/connector", {"name": "x", "connector_type_id": ".cases"},
         "System action creation is forbidden. Action type: .cases."),
        ("POST", "/api/actions/connector/system-connector-.cases", INDEX,
         "System action creation is forbidden. Action type: .index."),
        ("PUT", f"/api/actions/connector/{uuid.uuid4()}", {"name": "x", "connector_type_id": ".index"},
         "[request body.connector_type_id]: definition for this key is missing"),
        ("POST", f"/api/actions/connector/{uuid.uuid4()}/_execute", {},
         "[request body.params]: expected value of type [object] but got [undefined]"),
    ],
)
def test_body_and_type_validation(
    sandbox_client: ClientFactory, method: str, path: str, body: Any, message: str
) -> None:
    _, c = sandbox_client()
    r = c.request(method, path, json=body)
    assert r.status_code == 400
    assert r.json() == {"statusCode": 400, "error": "Bad Request", "message": message}


def test_validation_message_never_quotes_secret_values(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client()
    secret = canary()
    r = c.post("/api/actions/connector", json={**webhook(), "secrets": {"user": "u", "password": 5, "x": secret}})
    assert r.status_code == 400 and secret not in r.text


def test_licence_and_enabled_types_403_after_validation(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client({"license": "basic"})
    r = c.post("/api/actions/connector", json=webhook())
    assert r.status_code == 403
    assert r.json()["message"] == ("Action type .webhook is disabled because your basic license does not support it. "
                                   "Please upgrade your license.")
    assert c.post("/api/actions/connector", json={**webhook(), "config": {}}).status_code == 400  # validation first
    _, c2 = sandbox_client({"enabled_action_types": [".index"]})
    r = c2.post("/api/actions/connector", json=webhook())
    assert r.status_code == 403
    assert r.json()["message"] == ('action type ".webhook" is not enabled in the Kibana config '
                                   "xpack.actions.enabledActionTypes")
    assert c2.post("/api/actions/connector", json=INDEX).status_code == 200


def test_allowed_hosts_config_and_secrets(sandbox_client: ClientFactory) -> None:
    """8.x wraps the allowedHosts error in the type's own words, as 9.x does: webhook/index.test.ts of the
    8.x line (x-pack/platform/plugins/shared/stack_connectors/server/connector_types/webhook/, 'config
    validation returns an error if the specified URL isnt added to allowedHosts': `error validating action
    type config: error validation webhook action config: target url ...`); slack/index.ts wraps
    ensureUriAllowed(webhookUrl) in `error configuring slack action: ` (the sandbox hides the URL's path)."""
    _, c = sandbox_client({"allowed_hosts": ["hooks.example.com"]})
    assert c.post("/api/actions/connector", json=webhook()).status_code == 200
    r = c.post("/api/actions/connector", json=webhook("https://evil.example.org/x"))
    assert r.status_code == 400
    assert r.json()["message"] == ('error validating action type config: error validation webhook action config: '
                                   'target url "https://evil.example.org/x" is not added to the Kibana config '
                                   "xpack.actions.allowedHosts")
    secret_url = f"https://hooks.slack.com/services/{canary()}"
    r = c.post("/api/actions/connector", json={"name": "s", "connector_type_id": ".slack",
                                               "secrets": {"webhookUrl": secret_url}})
    assert r.status_code == 400
    assert r.json()["message"] == ('error validating action type secrets: error configuring slack action: target url '
                                   '"https://hooks.slack.com/[redacted]" is not added to the Kibana config '
                                   "xpack.actions.allowedHosts")
    assert secret_url not in r.text


PRE = {"my-slack1": {"name": "Slack#xyz", "actionTypeId": ".slack", "secrets": {"webhookUrl": "https://x.example"}}}


def test_preconfigured_connectors(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client({"preconfigured": PRE, "spaces": ["team"]})
    expected = {"id": "my-slack1", "connector_type_id": ".slack", "name": "Slack#xyz", "is_preconfigured": True,
                "is_system_action": False, "is_deprecated": False, "is_connector_type_deprecated": False}
    for prefix in ("", "/s/team"):
        assert c.get(f"{prefix}/api/actions/connector/my-slack1").json() == expected
        assert c.get(f"{prefix}/api/actions/connectors").json() == [{**expected, "referenced_by_count": 0}]
    r = c.put("/api/actions/connector/my-slack1", json={"name": "x"})
    assert (r.status_code, r.json()["message"]) == (400, "Preconfigured action my-slack1 can not be updated.")
    r = c.delete("/api/actions/connector/my-slack1")
    assert (r.status_code, r.json()["message"]) == (400, "Preconfigured action my-slack1 is not allowed to delete.")
    r = c.post("/api/actions/connector/my-slack1", json=INDEX)
    assert (r.status_code, r.json()["message"]) == (400, "This my-slack1 already exists in a preconfigured action.")
    r = c.post("/api/actions/connector/my-slack1/_execute", json={"params": {"message": "hi"}})
    assert r.json() == {"connector_id": "my-slack1", "status": "ok"}


def test_system_connector(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client()
    sid = "system-connector-.cases"
    assert c.get("/api/actions/connectors").json() == []
    cases = [
        ("GET", None, 404, f"Connector {sid} not found"),
        ("PUT", {"name": "x"}, 400, f"System action {sid} can not be updated."),
        ("DELETE", None, 400, f"System action {sid} is not allowed to delete."),
    ]
    for method, body, status, message in cases:
        r = c.request(method, f"/api/actions/connector/{sid}", json=body)
        assert (r.status_code, r.json()["message"]) == (status, message)
    r = c.post(f"/api/actions/connector/{sid}/_execute", json={"params": {}})
    assert (r.status_code, r.json()["message"]) == (400, "Execution of system action is not allowed")


def test_get_all_sorted_like_locale_compare(sandbox_client: ClientFactory) -> None:
    names = ["TestEmail#xyz", "Slack#xyz", "preconfigured_es_index_action", "SystemABC", "My Connector",
             "Test:_Preconfigured_Index_Record", "ServiceNow#xyz", "Notification Email Connector"]
    seed = {"connectors": [{"id": str(uuid.uuid4()), "name": n, "connector_type_id": ".index",
                            "config": {"index": "i"}} for n in names]}
    _, c = sandbox_client(seed)
    assert [x["name"] for x in c.get("/api/actions/connectors").json()] == [
        "My Connector", "Notification Email Connector", "preconfigured_es_index_action", "ServiceNow#xyz",
        "Slack#xyz", "SystemABC", "Test:_Preconfigured_Index_Record", "TestEmail#xyz",
    ]


def test_referenced_by_count_counts_rules_in_every_space(sandbox_client: ClientFactory) -> None:
    cid = str(uuid.uuid4())
    seed = {
        "spaces": ["team"], "preconfigured": PRE,
        "connectors": [{"id": cid, "name": "c", "connector_type_id": ".index", "config": {"index": "i"}}],
        "rules": [{"id": "r1", "space": "default", "name": "r", "actions": [{"id": cid}, {"id": "my-slack1"}]},
                  {"id": "r2", "space": "team", "name": "r", "actions": [{"id": cid}]}],
    }
    _, c = sandbox_client(seed)
    counts = {x["id"]: x["referenced_by_count"] for x in c.get("/api/actions/connectors").json()}
    assert counts == {cid: 2, "my-slack1": 0}


def test_connector_types(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client({"license": "gold", "enabled_action_types": [".slack", ".index", ".servicenow"]})
    types = {t["id"]: t for t in c.get("/api/actions/connector_types").json()}
    assert ".cases" not in types
    assert types[".slack"] == {
        "id": ".slack", "name": "Slack", "enabled": True, "enabled_in_config": True, "enabled_in_license": True,
        "minimum_license_required": "gold", "supported_feature_ids": types[".slack"]["supported_feature_ids"],
        "is_system_action_type": False, "source": "stack", "is_deprecated": False,
    }
    assert types[".servicenow"]["enabled"] is False and types[".servicenow"]["enabled_in_license"] is False
    assert types[".webhook"]["enabled_in_config"] is False
    cases_only = {t["id"] for t in c.get("/api/actions/connector_types", params={"feature_id": "cases"}).json()}
    assert ".jira" in cases_only and ".slack" not in cases_only
    assert c.get("/api/actions/connector_types", params={"feature_id": "nope"}).json() == []


def test_execute_records_call_and_never_contacts_target(sandbox_client: ClientFactory) -> None:
    sb, c = sandbox_client()
    cid = c.post("/api/actions/connector", json=webhook("https://127.0.0.1:9/never")).json()["id"]
    r = c.post(f"/api/actions/connector/{cid}/_execute", json={"params": {"body": "hi"}})
    assert r.json() == {"connector_id": cid, "status": "ok"}
    assert [(e["connector_id"], e["params"]) for e in sb.executions] == [(cid, {"body": "hi"})]


def test_spaces_api(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client({"spaces": ["team", {"id": "ops", "name": "Operations"}]})
    assert [s["id"] for s in c.get("/api/spaces/space").json()] == ["default", "team", "ops"]
    assert c.get("/api/spaces/space/ops").json()["name"] == "Operations"
    assert c.get("/api/spaces/space/nope").status_code == 404
    # api-behaviour §13: API routes answer in a space that does not exist
    assert c.get("/s/nope/api/actions/connectors").json() == []


def test_deprecated_servicenow_table_api(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client()
    body = {"name": "sn", "connector_type_id": ".servicenow",
            "config": {"apiUrl": "https://sn.example.com", "usesTableApi": True},
            "secrets": {"username": "u", "password": "p"}}
    r = c.post("/api/actions/connector", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["is_deprecated"] is True
