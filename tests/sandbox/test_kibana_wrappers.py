"""allowedHosts refusals wrapped per type in both lines, Gemini's credential check, and the sub-action
lists and params of the framework types added for issue #14.

Sources (elastic/kibana), cited per case: `T8:` is x-pack/test/alerting_api_integration/
security_and_spaces/group2/tests/actions/connector_types/ (the 8.x line's API tests, `error validating
action type config: <wrapper>...`), `T:` is the same directory under x-pack/platform/test/ (main's, or the
9.0-9.2 line's where it still says `action type`); `SC:` is x-pack/platform/plugins/shared/
stack_connectors/server/connector_types/; `CS:` is src/platform/packages/shared/kbn-connector-schemas/.
"""

from __future__ import annotations

import json
from typing import Any

import kibana_cases as kc
import pytest
import test_conformance_types as tct

from reconciler.sandbox import kibana9

SIM = "http://localhost:5620"
HOSTS = kibana9.ALLOWED_HOSTS_PHRASE


def kibana(version: str) -> kc.Kibana:
    return kc.make_kibana(kc.fixture_seed(kibana_version=version, enabled_action_types=["*"]))




# ---- 1. allowedHosts, wrapped per type, in the 8.x line as in 9.x ----------------------------------------

WRAPPED = [
    # (source, type, config, secrets, wrapper)
    ("T8: jira.ts", ".jira", {"apiUrl": "http://jira.mynonexistent.com", "projectKey": "CK"}, tct.JIRA_SECRETS,
     "error configuring connector action: "),
    ("T8: servicenow_itsm.ts", ".servicenow", {"apiUrl": "http://servicenow.mynonexistent.com"},
     tct.SN_BASIC_SECRETS, "error configuring connector action: "),
    ("T8: swimlane.ts", ".swimlane", {"apiUrl": "http://swimlane.mynonexistent.com", "appId": "a",
                                      "connectorType": "all", "mappings": {}}, {"apiToken": "t"},
     "error configuring connector action: "),
    ("T: resilient.ts (on the sub-action framework)", ".resilient",
     {"apiUrl": "http://resilient.mynonexistent.com", "orgId": "201"}, {"apiKeyId": "k", "apiKeySecret": "s"},
     "error validating url: "),
    ("T8: opsgenie.ts", ".opsgenie", {"apiUrl": "http://opsgenie.mynonexistent.com"}, {"apiKey": "k"},
     "error validating url: "),
    ("T8: tines.ts", ".tines", {"url": "http://tines.mynonexistent.com"}, tct.TINES_SECRETS, "error validating url: "),
    ("T8: xsoar.ts", ".xsoar", {"url": "http://xsoar.mynonexistent.com"}, {"apiKey": "k"}, "error validating url: "),
    ("T8: d3security.ts", ".d3security", {"url": "http://d3security.mynonexistent.com"}, {"token": "t"},
     "error validating url: "),
    ("T8: openai.ts", ".gen-ai", {"apiProvider": "OpenAI", "apiUrl": "http://genAi.mynonexistent.com"},
     {"apiKey": "k"}, "Error configuring OpenAI action: Error: error validating url: "),
    ("T (action type era): gemini.ts", ".gemini", {**tct.GEMINI_CONFIG, "apiUrl": "http://gemini.mynonexistent.com"},
     tct.GEMINI_SECRETS, "Error configuring Google Gemini action: Error: error validating url: "),
    ("T (action type era): webhook/index.test.ts", ".webhook", {"url": "http://webhook.mynonexistent.com"}, {},
     "error validation webhook action config: "),
    ("T8: torq.ts", ".torq", {"webhookIntegrationUrl": "https://test.torq.io/v1/something"}, {"token": "t"},
     "error configuring send to Torq action: "),
    ("SC: http/validations.ts ensureUriAllowed", ".http", {"url": "http://http.mynonexistent.com"}, {},
     "error validation http action config: "),
    ("SC: mcp/index.ts configValidator (urlAllowListValidator('serverUrl'))", ".mcp",
     {"serverUrl": "http://mcp.mynonexistent.com/mcp", "hasAuth": False}, {}, "error validating url: "),
]


@pytest.mark.parametrize("version", ["8.x", "9.x"])
@pytest.mark.parametrize(("source", "type_id", "config", "secrets", "wrapper"), WRAPPED,
                         ids=[w[1] for w in WRAPPED])
def test_allowed_hosts_wrapped_in_both_lines(version: str, source: str, type_id: str, config: dict[str, Any],
                                             secrets: dict[str, Any], wrapper: str) -> None:
    """The wrapper is the type's validator code, not its schema library: both lines wrap alike."""
    url = next(u for u in config.values() if isinstance(u, str) and u.startswith("http"))
    assert kc.refused(kc.create(kibana(version), type_id, config, secrets)) == (
        f'{kibana9.prefix(version, "config")}: {wrapper}target url "{url}" {HOSTS}')


@pytest.mark.parametrize("version", ["8.x", "9.x"])
def test_pagerduty_default_url(version: str) -> None:
    """T8: pagerduty.ts 'should return unsuccessfully when default pagerduty url is not present in
    allowedHosts' (SC: pagerduty/index.ts validateConnectorTypeConfig)."""
    assert kc.refused(kc.create(kibana(version), ".pagerduty", {}, {})) == (
        f'{kibana9.prefix(version, "config")}: error configuring pagerduty action: target url '
        f'"https://events.pagerduty.com/v2/enqueue" {HOSTS}')


@pytest.mark.parametrize("version", ["8.x", "9.x"])
def test_slack_api_fixed_url(version: str) -> None:
    """SC: slack_api/index.ts validateSlackUrl: ensureUriAllowed(SLACK_URL), `error configuring slack action`."""
    kb = kc.make_kibana(kc.fixture_seed(kibana_version=version, enabled_action_types=["*"],
                                        allowed_hosts=["localhost"]))
    assert kc.refused(kc.create(kb, ".slack_api", {}, {"token": "xoxb-1"})) == (
        f'{kibana9.prefix(version, "secrets")}: error configuring slack action: target url '
        f'"https://slack.com/api/" {HOSTS}')


@pytest.mark.parametrize("version", ["8.x", "9.x"])
def test_xmatters_secret_url_is_wrapped_and_hidden(version: str) -> None:
    """SC: xmatters/index.ts wraps ensureUriAllowed(secretsUrl) in `Error configuring xMatters action`;
    the secretsUrl carries the API key, so the sandbox shows its origin only."""
    canary = kc.canary()
    resp = kc.create(kibana(version), ".xmatters", {"usesBasic": False},
                  {"secretsUrl": f"https://events.xmatters.example/api?apiKey={canary}"})
    assert kc.refused(resp) == (f'{kibana9.prefix(version, "secrets")}: Error configuring xMatters action: target url '
                             f'"https://events.xmatters.example/[redacted]" {HOSTS}')
    assert canary not in resp.text


@pytest.mark.parametrize("version", ["8.x", "9.x"])
@pytest.mark.parametrize(("config", "detail"), [
    ({"service": "gmail", "from": "bob@example.com"},
     "[service] value 'gmail' resolves to host 'smtp.gmail.com' which is not in the allowedHosts configuration"),
    ({"host": "stmp.gmail.com", "port": 666, "from": "bob@example.com"},
     "[host] value 'stmp.gmail.com' is not in the allowedHosts configuration"),
])
def test_email_hosts_in_its_own_words(version: str, config: dict[str, Any], detail: str) -> None:
    """T8/T: email.ts 'should respond with a 400 Bad Request when creating an email action with a server
    not added to allowedHosts' (SC: email/index.ts validateConfig, isHostnameAllowed)."""
    resp = kc.create(kibana(version), ".email", config, {"user": "bob", "password": "changeme"})
    assert kc.refused(resp) == f"{kibana9.prefix(version, 'config')}: {detail}"


# ---- 2. Gemini's credential check ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["8.x", "9.x"])
@pytest.mark.parametrize(("credentials", "error"), [
    (json.dumps({"type": "external_account", "audience": "x"}),
     'Error: Invalid credential type. Only "service_account" credentials are supported. Type was '
     '"external_account".'),
    ("{not json", "Error: Invalid JSON format for credentials."),
    (json.dumps({"project_id": "p"}),
     'Error: Invalid credential type. Only "service_account" credentials are supported. Type was "undefined".'),
])
def test_gemini_credentials(version: str, credentials: str, error: str) -> None:
    """SC: gemini/validators.ts validateGeminiSecrets, wrapped by gemini/index.ts secretsValidator."""
    config = {**tct.GEMINI_CONFIG, "apiUrl": f"{SIM}/gemini"}
    resp = kc.create(kibana(version), ".gemini", config, {"credentialsJson": credentials})
    assert kc.refused(resp) == f"{kibana9.prefix(version, 'secrets')}: Error configuring Google Gemini secrets: {error}"


def test_gemini_credential_type_that_is_not_a_word_is_not_echoed() -> None:
    canary = kc.canary() + " with spaces"
    config = {**tct.GEMINI_CONFIG, "apiUrl": f"{SIM}/gemini"}
    resp = kc.create(kibana("9.x"), ".gemini", config, {"credentialsJson": json.dumps({"type": canary})})
    assert kc.refused(resp).endswith('Type was "[redacted]".')
    assert canary not in resp.text


# ---- 3. sub-action lists and params of the framework types ---------------------------------------------

CONNECTORS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    ".mcp": ({"serverUrl": f"{SIM}/mcp", "hasAuth": False}, {}),
    ".inference": ({"provider": "openai", "taskType": "completion", "inferenceId": "i"}, {"providerSecrets": {}}),
    ".sentinelone": ({"url": f"{SIM}/s1"}, {"token": "t"}),
    ".crowdstrike": ({"url": f"{SIM}/cs"}, {"clientId": "c", "clientSecret": "s"}),
    ".microsoft_defender_endpoint": ({"clientId": "c", "tenantId": "t", "oAuthServerUrl": f"{SIM}/login",
                                      "oAuthScope": "s", "apiUrl": f"{SIM}/mde"}, {"clientSecret": "s"}),
    ".resilient": ({"apiUrl": f"{SIM}/resilient", "orgId": "201"}, {"apiKeyId": "k", "apiKeySecret": "s"}),
}


def connector(kb: kc.Kibana, type_id: str) -> str:
    config, secrets = CONNECTORS[type_id]
    resp = kc.create(kb, type_id, config, secrets)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


def execute(kb: kc.Kibana, cid: str, params: dict[str, Any]) -> dict[str, Any]:
    resp = kb.request("POST", f"/api/actions/connector/{cid}/_execute", space="default", body={"params": params})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


# A sub action each type registers (CS: <type>/constants.ts SUB_ACTION), with params its schema accepts.
REGISTERED = [
    (".mcp", "test", {}), (".mcp", "listTools", {"forceRefresh": True}),
    (".mcp", "callTool", {"name": "search", "arguments": {"q": "x"}}),
    (".inference", "completion", {"input": "hello"}), (".inference", "rerank", {"input": ["a"], "query": "q"}),
    (".sentinelone", "getAgents", {}), (".sentinelone", "isolateHost", {"uuid": "u"}),
    (".crowdstrike", "getAgentDetails", {"ids": ["a"]}), (".crowdstrike", "getAgentOnlineStatus", {"ids": []}),
    (".microsoft_defender_endpoint", "testConnector", {}),
    (".microsoft_defender_endpoint", "getAgentDetails", {"id": "m1"}),
    (".resilient", "getFields", {}), (".resilient", "incidentTypes", {}), (".resilient", "severity", {}),
]


@pytest.mark.parametrize("version", ["8.x", "9.x"])
@pytest.mark.parametrize(("type_id", "sub_action", "sub_params"), REGISTERED,
                         ids=[f"{t}:{s}" for t, s, _ in REGISTERED])
def test_registered_sub_action_runs(version: str, type_id: str, sub_action: str, sub_params: dict[str, Any]) -> None:
    kb = kibana(version)
    cid = connector(kb, type_id)
    assert execute(kb, cid, {"subAction": sub_action, "subActionParams": sub_params}) == \
        {"connector_id": cid, "status": "ok", "data": {}}


@pytest.mark.parametrize("type_id", sorted(CONNECTORS))
def test_unknown_sub_action_is_the_framework_error(type_id: str) -> None:
    """SC-framework executor.ts: 'Sub action "<name>" is not registered...' (T: resilient.ts 'without
    unsupported action', the same shape for every framework type)."""
    kb = kibana("9.x")
    cid = connector(kb, type_id)
    body = execute(kb, cid, {"subAction": "non-supported"})
    name = kb.request("GET", "/api/actions/connector_types").json()
    type_name = next(t["name"] for t in name if t["id"] == type_id)
    assert body == {"connector_id": cid, "status": "error", "retry": True,
                    "message": "an error occurred while running the action", "errorSource": "framework",
                    "service_message": f'Sub action "non-supported" is not registered. Connector id: {cid}. '
                                       f"Connector name: {type_name}. Connector type: {type_id}"}


@pytest.mark.parametrize(("type_id", "sub_action", "sub_params", "path"), [
    # CS: mcp/schemas/v1.ts TestConnectorRequestSchema z.object({}).strict(); CallToolRequestSchema name
    (".mcp", "test", {"extra": 1}, []), (".mcp", "callTool", {}, ["name"]),
    # CS: inference/schemas/v1.ts ChatCompleteParamsSchema {input: z.string()}.strict()
    (".inference", "completion", {}, ["input"]),
    # CS: crowdstrike schemas CrowdstrikeGetAgentsParamsSchema {ids: string[]}
    (".crowdstrike", "getAgentDetails", {"ids": "a"}, ["ids"]),
    # CS: microsoft_defender_endpoint schemas AgentDetailsParamsSchema {id: z.string().min(1)}
    (".microsoft_defender_endpoint", "getAgentDetails", {"id": ""}, ["id"]),
])
def test_sub_action_params_refused_before_any_call(type_id: str, sub_action: str, sub_params: dict[str, Any],
                                                    path: list[str]) -> None:
    """executor.ts: the sub action's schema runs before the service method: `Request validation failed`,
    a user error, retry true."""
    kb = kibana("9.x")
    cid = connector(kb, type_id)
    body = execute(kb, cid, {"subAction": sub_action, "subActionParams": sub_params})
    assert (body["status"], body["errorSource"], body["retry"]) == ("error", "user", True)
    message = body["service_message"]
    assert message.startswith("Request validation failed (")
    issues = json.loads(message[len("Request validation failed ("):-1])
    assert [issue["path"] for issue in issues] == [path]


RESILIENT_PUSH = {"incident": {"name": "a title", "description": "a description", "incidentTypes": [1001],
                               "severityCode": 6, "externalId": None},
                  "comments": [{"comment": "first comment", "commentId": "456"}]}


@pytest.mark.parametrize("version", ["8.x", "9.x"])
@pytest.mark.parametrize(("sub_params", "detail"), [
    (None, "[incident.name]: expected value of type [string] but got [undefined]"),
    ({"incident": {"description": "success"}, "comments": []},
     "[incident.name]: expected value of type [string] but got [undefined]"),
    ({"incident": {**RESILIENT_PUSH["incident"], "name": "success"}, "comments": [{"comment": "comment"}]},
     "[comments]: types that failed validation:\n- [comments.0.0.commentId]: expected value of type [string] but "
     "got [undefined]\n- [comments.1]: expected value to equal [null]"),
    ({"incident": {**RESILIENT_PUSH["incident"], "name": "success"}, "comments": [{"commentId": "success"}]},
     "[comments]: types that failed validation:\n- [comments.0.0.comment]: expected value of type [string] but "
     "got [undefined]\n- [comments.1]: expected value to equal [null]"),
])
def test_resilient_push_to_service_params(version: str, sub_params: Any, detail: str) -> None:
    """T: resilient.ts 'IBM Resilient - Executor' > 'Validation': config-schema sub-action schemas
    (SC: resilient/schema.ts), in both lines."""
    kb = kibana(version)
    cid = connector(kb, ".resilient")
    params: dict[str, Any] = {"subAction": "pushToService"}
    if sub_params is not None:
        params["subActionParams"] = sub_params
    assert execute(kb, cid, params) == {
        "connector_id": cid, "status": "error", "retry": True, "message": "an error occurred while running the action",
        "errorSource": "user", "service_message": f"Request validation failed (Error: {detail})"}
    ok = execute(kb, cid, {"subAction": "pushToService", "subActionParams": {**RESILIENT_PUSH, "comments": None}})
    assert ok["status"] == "ok"


def test_resilient_without_sub_action() -> None:
    """T: resilient.ts 'should handle failing with a simulated success without action': the keys."""
    kb = kibana("9.x")
    cid = connector(kb, ".resilient")
    body = execute(kb, cid, {})
    assert sorted(body) == sorted(["status", "message", "retry", "errorSource", "connector_id"])
    assert (body["status"], body["retry"], body["errorSource"]) == ("error", False, "user")
