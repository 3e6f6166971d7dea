"""`_execute` of sub-action framework types and of ServiceNow/Swimlane/cases-webhook typed params, as
Kibana answers it. Expected bodies are copied from Kibana's API integration tests; `T:` is
elastic/kibana x-pack/platform/test/alerting_api_integration/security_and_spaces/group2/tests/actions/
connector_types/. Zod-dialect (9.x) sub-action details have no Kibana test to copy and are checked for
shape only (reconciler/sandbox/subactions.py says why)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from reconciler.connection import Connection
from reconciler.connector_test import render_text, run_connector_test
from reconciler.kibana import KibanaClient
from reconciler.sandbox import Sandbox

V8, V9 = "8.19.0", "9.4.0"  # 9.x wording from 9.3 (sandbox/kibana9.py line_of)
RUN_FAILED = "an error occurred while running the action"
CONNECTORS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    ".opsgenie": ({"apiUrl": "https://api.opsgenie.com"}, {"apiKey": "k"}),
    ".jira-service-management": ({"apiUrl": "https://api.atlassian.com"}, {"apiKey": "k"}),
    ".thehive": ({"url": "https://thehive.example.com", "organisation": None}, {"apiKey": "k"}),
    ".xsoar": ({"url": "https://xsoar.example.com"}, {"apiKey": "k"}),
    ".tines": ({"url": "https://example.tines.com"}, {"email": "a@b.co", "token": "t"}),
    ".d3security": ({"url": "https://d3.example.com"}, {"token": "t"}),
    ".gen-ai": ({"apiProvider": "OpenAI", "apiUrl": "https://api.openai.com/v1/chat/completions"}, {"apiKey": "k"}),
    ".servicenow": ({"apiUrl": "https://x.service-now.com"}, {"username": "u", "password": "p"}),
    ".swimlane": ({"apiUrl": "https://swimlane.example.com", "appId": "app", "connectorType": "all",
                   "mappings": {}}, {"apiToken": "t"}),
}


def _kibana(version: str) -> httpx.Client:
    sb = Sandbox.from_seed({"kibana_version": version})
    return httpx.Client(transport=sb.transport(), base_url="http://kibana.test", headers={"kbn-xsrf": "t"})


def _connector(client: httpx.Client, type_id: str) -> str:
    config, secrets = CONNECTORS[type_id]
    resp = client.post("/api/actions/connector", json={"name": "c", "connector_type_id": type_id,
                                                       "config": config, "secrets": secrets})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


def _execute(client: httpx.Client, cid: str, params: dict[str, Any]) -> dict[str, Any]:
    resp = client.post(f"/api/actions/connector/{cid}/_execute", json={"params": params})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


@pytest.fixture
def kb8() -> Any:
    with _kibana(V8) as client:
        yield client


@pytest.fixture
def kb9() -> Any:
    with _kibana(V9) as client:
        yield client


def _validation_failed(cid: str, detail: str) -> dict[str, Any]:
    return {"connector_id": cid, "status": "error", "retry": True, "message": RUN_FAILED, "errorSource": "user",
            "service_message": f"Request validation failed (Error: {detail})"}


@pytest.mark.parametrize(("type_id", "name"), [
    (".opsgenie", "Opsgenie"),  # T:opsgenie.ts 'should fail when the subAction is invalid'
    (".thehive", "TheHive"),  # T:thehive.ts
    (".xsoar", "XSOAR"),  # T:xsoar.ts
    (".jira-service-management", "Jira Service Management"),  # T:jira_service_management.ts
    (".gen-ai", "OpenAI"),  # T:openai.ts
])
@pytest.mark.parametrize("version", [V8, V9])
def test_unknown_sub_action_is_the_frameworks_error(type_id: str, name: str, version: str) -> None:
    with _kibana(version) as kb:
        cid = _connector(kb, type_id)
        assert _execute(kb, cid, {"subAction": "invalidAction"}) == {
            "connector_id": cid, "status": "error", "retry": True, "message": RUN_FAILED,
            "errorSource": "framework",
            "service_message": f'Sub action "invalidAction" is not registered. Connector id: {cid}. '
                               f"Connector name: {name}. Connector type: {type_id}",
        }


def test_missing_sub_action_8x(kb8: httpx.Client) -> None:
    """T:openai.ts 'should fail when the params is empty' (config-schema framework params)."""
    cid = _connector(kb8, ".gen-ai")
    assert _execute(kb8, cid, {}) == {
        "connector_id": cid, "status": "error", "retry": False, "errorSource": "user",
        "message": "error validating action params: [subAction]: expected value of type [string] but got [undefined]"}


def test_missing_sub_action_9x(kb9: httpx.Client) -> None:
    """T:gemini.ts (main) 'should fail when the params is empty': zod v4 prettifyError."""
    cid = _connector(kb9, ".xsoar")
    assert _execute(kb9, cid, {}) == {
        "connector_id": cid, "status": "error", "retry": False, "errorSource": "user",
        "message": "error validating action params: ✖ Invalid input: expected string, received undefined\n"
                   "  → at subAction"}


def test_framework_params_refuse_a_non_object_sub_action_params(kb8: httpx.Client, kb9: httpx.Client) -> None:
    """sub_action_framework/validators.ts: subActionParams is an object (8.x) or nullish object (9.x)."""
    cid = _connector(kb8, ".tines")
    assert _execute(kb8, cid, {"subAction": "stories", "subActionParams": "x"})["message"] == (
        "error validating action params: [subActionParams]: expected value of type [object] but got [string]")
    cid9 = _connector(kb9, ".tines")
    assert _execute(kb9, cid9, {"subAction": "stories", "subActionParams": None})["status"] == "ok"


@pytest.mark.parametrize(("sub_action", "detail"), [
    ("createAlert", "[message]: expected value of type [string] but got [undefined]"),
    ("closeAlert", "[alias]: expected value of type [string] but got [undefined]"),
])
def test_opsgenie_required_params(kb8: httpx.Client, sub_action: str, detail: str) -> None:
    """T:opsgenie.ts "should fail to create an alert when the message parameter isn't included", "... close"."""
    cid = _connector(kb8, ".opsgenie")
    assert _execute(kb8, cid, {"subAction": sub_action, "subActionParams": {}}) == _validation_failed(cid, detail)


def test_opsgenie_responders_and_visible_to_unions(kb8: httpx.Client) -> None:
    """T:opsgenie.ts 'responders is an invalid type', 'visibleTo uses the name field with type user'."""
    cid = _connector(kb8, ".opsgenie")
    responders = {"message": "hello", "responders": [{"name": "sam", "type": "invalidType"}]}
    assert _execute(kb8, cid, {"subAction": "createAlert", "subActionParams": responders}) == _validation_failed(
        cid, "[responders.0]: types that failed validation:\n- [responders.0.0.type]: types that failed "
             "validation:\n - [responders.0.type.0]: expected value to equal [team]\n - [responders.0.type.1]: "
             "expected value to equal [user]\n - [responders.0.type.2]: expected value to equal [escalation]\n"
             " - [responders.0.type.3]: expected value to equal [schedule]\n- [responders.0.1.id]: expected value "
             "of type [string] but got [undefined]\n- [responders.0.2.username]: expected value of type [string] "
             "but got [undefined]")
    visible = {"message": "hello", "visibleTo": [{"name": "sam", "type": "user"}]}
    assert _execute(kb8, cid, {"subAction": "createAlert", "subActionParams": visible}) == _validation_failed(
        cid, "[visibleTo.0]: types that failed validation:\n- [visibleTo.0.0.type]: expected value to equal "
             "[team]\n- [visibleTo.0.1.id]: expected value of type [string] but got [undefined]\n- [visibleTo.0.2.id]:"
             " expected value of type [string] but got [undefined]\n- [visibleTo.0.3.username]: expected value of "
             "type [string] but got [undefined]")
    ok = {"message": "hello", "responders": [{"id": "123", "type": "team"}, {"id": "456", "type": "team"}]}
    assert _execute(kb8, cid, {"subAction": "createAlert", "subActionParams": ok}) == {
        "connector_id": cid, "status": "ok", "data": {}}


@pytest.mark.parametrize(("params", "detail"), [
    ({"message": "hello", "responders": [{"name": "sam", "type": "invalidType"}]},
     "[responders.0.id]: expected value of type [string] but got [undefined]"),
    ({"message": "hello", "details": {"bananas": 1}},
     "[details.bananas]: expected value of type [string] but got [number]"),
])
def test_jira_service_management_params(kb8: httpx.Client, params: dict[str, Any], detail: str) -> None:
    """T:jira_service_management.ts 'responders is an invalid type', 'details ... string to number'."""
    cid = _connector(kb8, ".jira-service-management")
    assert _execute(kb8, cid, {"subAction": "createAlert", "subActionParams": params}) == _validation_failed(
        cid, detail)


def test_xsoar_run_without_name_and_valid_calls(kb8: httpx.Client) -> None:
    """T:xsoar.ts "should fail to run when the name parameter isn't included", 'should create incident'."""
    cid = _connector(kb8, ".xsoar")
    no_name = {"severity": 1, "createInvestigation": False, "body": "", "isRuleSeverity": False}
    assert _execute(kb8, cid, {"subAction": "run", "subActionParams": no_name}) == _validation_failed(
        cid, "[name]: expected value of type [string] but got [undefined]")
    run = {"name": "My test incident", "severity": 2, "playbookId": "8db0105c", "createInvestigation": False,
           "body": None, "isRuleSeverity": False}
    assert _execute(kb8, cid, {"subAction": "run", "subActionParams": run})["status"] == "ok"
    assert _execute(kb8, cid, {"subAction": "getPlaybooks", "subActionParams": {}})["status"] == "ok"


def test_thehive_push_and_alert_are_accepted(kb8: httpx.Client) -> None:
    """T:thehive.ts 'should create a case', 'should create an alert' (params as sent there)."""
    cid = _connector(kb8, ".thehive")
    push = {"incident": {"title": "title", "description": "description", "tlp": 2, "severity": 1,
                         "tags": ["tag1", "tag2"]}, "comments": []}
    assert _execute(kb8, cid, {"subAction": "pushToService", "subActionParams": push})["status"] == "ok"
    alert = {"title": "t", "description": "d", "tlp": 2, "source": "s", "type": "t", "sourceRef": "r",
             "isRuleSeverity": False, "severity": 1, "tags": ["a"], "body": "{}"}
    assert _execute(kb8, cid, {"subAction": "createAlert", "subActionParams": alert})["status"] == "ok"
    assert _execute(kb8, cid, {"subAction": "createAlert", "subActionParams": {}}) == _validation_failed(
        cid, "[title]: expected value of type [string] but got [undefined]")


@pytest.mark.parametrize(("type_id", "sub_action"), [(".tines", "run"), (".d3security", "test"),
                                                     (".gen-ai", "test")])
def test_run_and_test_sub_actions_validate_before_any_call(kb8: httpx.Client, type_id: str, sub_action: str) -> None:
    """common/<type>/schema.ts run params: a wrong type is refused as a user error; a valid call is ok."""
    cid = _connector(kb8, type_id)
    bad = _execute(kb8, cid, {"subAction": sub_action, "subActionParams": {"body": 1}})
    assert bad["status"] == "error" and bad["errorSource"] == "user" and bad["retry"] is True
    assert bad["service_message"] == (
        "Request validation failed (Error: [body]: expected value of type [string] but got [number])")
    assert _execute(kb8, cid, {"subAction": sub_action, "subActionParams": {"body": "{}"}}) == {
        "connector_id": cid, "status": "ok", "data": {}}


def test_9x_sub_action_params_are_zod_issues(kb9: httpx.Client) -> None:
    """executor.ts (main) `schema.parse`: the ZodError's issues, JSON, inside `Request validation failed (...)`."""
    cid = _connector(kb9, ".opsgenie")
    body = _execute(kb9, cid, {"subAction": "createAlert", "subActionParams": {}})
    assert body["status"] == "error" and body["errorSource"] == "user" and body["retry"] is True
    prefix = "Request validation failed ("
    assert body["service_message"].startswith(prefix)
    issues = json.loads(body["service_message"][len(prefix):-1])
    assert issues == [{"expected": "string", "code": "invalid_type", "path": ["message"],
                       "message": "Invalid input: expected string, received undefined"}]


@pytest.mark.parametrize("version", [V8, V9])
def test_servicenow_typed_params(version: str) -> None:
    """T:servicenow_itsm.ts 'without unsupported action', 'without subActionParams' (retry false, user)."""
    with _kibana(version) as kb:
        cid = _connector(kb, ".servicenow")
        head = "error validating action params: types that failed validation:\n"
        names = ["getFields", "getIncident", "handshake", "pushToService", "getChoices"]
        unsupported = "\n".join(f"- [{i}.subAction]: expected value to equal [{n}]" for i, n in enumerate(names))
        assert _execute(kb, cid, {"subAction": "non-supported"}) == {
            "connector_id": cid, "status": "error", "retry": False, "errorSource": "user",
            "message": head + unsupported}
        no_params = _execute(kb, cid, {"subAction": "pushToService"})["message"]
        assert "- [3.subActionParams.incident.short_description]: expected value of type [string] but got " \
               "[undefined]" in no_params
        push = {"incident": {"short_description": "x"}, "comments": []}
        assert _execute(kb, cid, {"subAction": "pushToService", "subActionParams": push})["status"] == "ok"


def test_swimlane_typed_params(kb8: httpx.Client) -> None:
    """T:swimlane.ts 'without unsupported action': a one-branch oneOf over pushToService."""
    cid = _connector(kb8, ".swimlane")
    assert _execute(kb8, cid, {"subAction": "non-supported"})["message"] == (
        "error validating action params: types that failed validation:\n"
        "- [0.subAction]: expected value to equal [pushToService]")


def test_only_accepted_calls_are_recorded() -> None:
    """The store records executions that passed validation (as connectors.execute_connector does for all)."""
    sb = Sandbox.from_seed({"kibana_version": V9})
    with httpx.Client(transport=sb.transport(), base_url="http://kibana.test", headers={"kbn-xsrf": "t"}) as kb:
        cid = _connector(kb, ".xsoar")
        _execute(kb, cid, {"subAction": "nope"})
        _execute(kb, cid, {"subAction": "getPlaybooks"})
    assert [e["params"] for e in sb.executions] == [{"subAction": "getPlaybooks"}]


def test_kcr_test_shows_the_frameworks_error() -> None:
    """`kcr test` (reconciler/connector_test.py) against the sandbox: the unknown sub action is named."""
    sb = Sandbox.from_seed({"kibana_version": V9})
    with httpx.Client(transport=sb.transport(), base_url="http://kibana.test", headers={"kbn-xsrf": "t"}) as kb:
        cid = _connector(kb, ".opsgenie")
    client = KibanaClient(Connection.from_env({"KIBANA_URL": "http://kibana.test"}), transport=sb.transport())
    result = run_connector_test(client, "default", cid, {"subAction": "createalert"})
    assert not result.ok and result.error_source == "framework" and result.retry is True
    text = render_text(result, f"default/{cid}")
    assert text.startswith(f"default/{cid}: error: {RUN_FAILED}\n")
    assert f'service message: Sub action "createalert" is not registered. Connector id: {cid}. ' \
           "Connector name: Opsgenie. Connector type: .opsgenie" in text
    assert "\n  retry: true\n" in text and "error source: framework" in text
