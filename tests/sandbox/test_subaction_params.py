"""Every registered sub action of the AI and security framework types checks its params before the (never
made) external call: one accepted and one refused call each, in both lines' words.

Schemas: elastic/kibana src/platform/packages/shared/kbn-connector-schemas/{openai,bedrock,gemini,inference,
sentinelone,crowdstrike,microsoft_defender_endpoint}/schemas/v1.ts (sandbox/subaction_tables_ai.py and
subaction_tables_security.py). Accepted calls follow Kibana's API tests where they make one (`T:` is
x-pack/platform/test/alerting_api_integration/security_and_spaces/group2/tests/actions/connector_types/):
T:bedrock.ts 'should send a stringified JSON object with latest body', 'should overwrite the model ...',
'should invoke AI with assistant AI body argument ...' and 'Token tracking dashboard' (bedrock test,
invokeAI, getDashboard); the .gen-ai `test` body is the one Kibana's OpenAI API tests send. No API test
of Kibana asserts a sub-action params failure of these types: the refused calls come from the schemas,
the 8.x detail in config-schema's words, the 9.x one as zod v4 issues (path, message), the shape
subactions.py renders (UNCONFIRMED against a running 9.x, as subactions.py says).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from reconciler.sandbox import Sandbox
from reconciler.sandbox.subaction_schemas import AnyValue
from reconciler.sandbox.subaction_tables import FRAMEWORK

V8, V9 = "8.19.0", "9.4.0"
PREFIX = "Request validation failed ("
CONNECTORS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    ".gen-ai": ({"apiProvider": "OpenAI", "apiUrl": "https://api.openai.com/v1/chat/completions"}, {"apiKey": "k"}),
    ".bedrock": ({"apiUrl": "https://bedrock-runtime.us-east-1.amazonaws.com"}, {"accessKey": "a", "secret": "s"}),
    ".gemini": (
        {"apiUrl": "https://us-central1-aiplatform.googleapis.com", "gcpRegion": "us-central1", "gcpProjectID": "p"},
        {"credentialsJson": json.dumps({"type": "service_account"})},
    ),
    ".inference": (
        {"provider": "openai", "taskType": "completion", "inferenceId": "i", "providerConfig": {}},
        {"providerSecrets": {}},
    ),
    ".sentinelone": ({"url": "https://s1.example.com"}, {"token": "t"}),
    ".crowdstrike": ({"url": "https://api.crowdstrike.com"}, {"clientId": "c", "clientSecret": "s"}),
    ".microsoft_defender_endpoint": (
        {
            "clientId": "c",
            "tenantId": "t",
            "oAuthServerUrl": "https://login.example.com",
            "oAuthScope": "https://api.example.com/.default",
            "apiUrl": "https://api.example.com",
        },
        {"clientSecret": "s"},
    ),
}
# (type, sub action, accepted params, refused params, 8.x config-schema detail, 9.x zod issues as (path, message))
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], str, list[tuple[tuple[str | int, ...], str]]]] = [
    (".gen-ai", "run",
     {"body": "{}"},
     {"body": "{}", "stream": True},
     "[stream]: definition for this key is missing",
     [((), "Unrecognized key: \"stream\"")]),
    (".gen-ai", "test",
     {"body": "{\"model\":\"gpt-3.5-turbo\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello world\"}]}"},
     {},
     "[body]: expected value of type [string] but got [undefined]",
     [(("body",), "Invalid input: expected string, received undefined")]),
    (".gen-ai", "stream",
     {"body": "{}", "stream": True},
     {"body": "{}", "stream": "yes"},
     "[stream]: expected value of type [boolean] but got [string]",
     [(("stream",), "Invalid input: expected boolean, received string")]),
    (".gen-ai", "getDashboard",
     {"dashboardId": "d"},
     {"dashboardId": 1},
     "[dashboardId]: expected value of type [string] but got [number]",
     [(("dashboardId",), "Invalid input: expected string, received number")]),
    (".gen-ai", "invokeAI",
     {"messages": [{"role": "user", "content": "Hello world"}]},
     {"messages": [{"role": "user"}]},
     "[messages.0.content]: expected value of type [string] but got [undefined]",
     [(("messages", 0, "content"), "Invalid input: expected string, received undefined")]),
    (".gen-ai", "invokeStream",
     {"messages": [{"role": "user", "content": "hi"}], "tool_choice": "auto"},
     {"messages": [], "tool_choice": "sometimes"},
     "[tool_choice]: types that failed validation:\n"
     "- [tool_choice.0]: expected value to equal [none]\n"
     "- [tool_choice.1]: expected value to equal [auto]\n"
     "- [tool_choice.2]: expected value to equal [required]\n"
     "- [tool_choice.3]: expected value of type [object] but got [string]",
     [(("tool_choice",), "Invalid input")]),
    (".gen-ai", "invokeAsyncIterator",
     {"messages": [], "stop": ["x"], "n": 1},
     {"messages": [], "temperature": "hot"},
     "[temperature]: expected value of type [number] but got [string]",
     [(("temperature",), "Invalid input: expected number, received NaN")]),
    (".bedrock", "run",
     {"body": "{}", "model": "m", "raw": True},
     {"body": "{}", "raw": "yes"},
     "[raw]: expected value of type [boolean] but got [string]",
     [(("raw",), "Invalid input: expected boolean, received string")]),
    (".bedrock", "test",
     {"body": "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello world\"}]}", "model": "some-other-model"},
     {"model": "m"},
     "[body]: expected value of type [string] but got [undefined]",
     [(("body",), "Invalid input: expected string, received undefined")]),
    (".bedrock", "getDashboard",
     {"dashboardId": "d"},
     {},
     "[dashboardId]: expected value of type [string] but got [undefined]",
     [(("dashboardId",), "Invalid input: expected string, received undefined")]),
    (".bedrock", "invokeAI",
     {"messages": [{"role": "user", "content": "Hello world"}]},
     {"messages": [{"role": "user"}]},
     "[messages.0]: Must specify either content or rawContent",
     [(("messages", 0), "Must specify either content or rawContent")]),
    (".bedrock", "invokeStream",
     {"messages": [{"role": "user", "rawContent": [{"text": "x"}]}], "toolChoice": {"type": "auto"}},
     {"messages": [{"role": "user", "content": "a", "rawContent": []}]},
     "[messages.0]: content and rawContent can not be used at the same time",
     [(("messages", 0), "content and rawContent can not be used at the same time")]),
    (".bedrock", "invokeAIRaw",
     {"messages": [{"role": "user", "content": [{"type": "text"}]}], "maxTokens": 10},
     {"messages": [{"content": "x"}]},
     "[messages.0.role]: expected value of type [string] but got [undefined]",
     [(("messages", 0, "role"), "Invalid input: expected string, received undefined")]),
    (".bedrock", "bedrockClientSend",
     {"command": {"input": {}}},
     {"command": {}, "extra": 1},
     "[extra]: definition for this key is missing",
     [((), "Unrecognized key: \"extra\"")]),
    (".bedrock", "converse",
     {"messages": [{"role": "user"}], "anything": 1},
     {"messages": "hi"},
     "[messages]: expected value of type [array] but got [string]",
     [(("messages",), "Invalid input: expected array, received string")]),
    (".bedrock", "converseStream",
     {"messages": []},
     {},
     "[messages]: expected value of type [array] but got [undefined]",
     [(("messages",), "Invalid input: expected array, received undefined")]),
    (".gemini", "run",
     {"body": "{}", "temperature": 0},
     {"body": "{}", "stopSequences": "x"},
     "[stopSequences]: expected value of type [array] but got [string]",
     [(("stopSequences",), "Invalid input: expected array, received string")]),
    (".gemini", "test",
     {"body": {"contents": []}},
     {"body": "{}", "raw": 1},
     "[raw]: expected value of type [boolean] but got [number]",
     [(("raw",), "Invalid input: expected boolean, received number")]),
    (".gemini", "getDashboard",
     {"dashboardId": "d"},
     {"id": "d"},
     "[dashboardId]: expected value of type [string] but got [undefined]",
     [(("dashboardId",), "Invalid input: expected string, received undefined"), ((), "Unrecognized key: \"id\"")]),
    (".gemini", "invokeAI",
     {"messages": [{"role": "user", "parts": [{"text": "hi"}]}]},
     {"messages": [], "toolConfig": {"mode": "SOME"}},
     "[toolConfig.mode]: types that failed validation:\n"
     "- [toolConfig.mode.0]: expected value to equal [AUTO]\n"
     "- [toolConfig.mode.1]: expected value to equal [ANY]\n"
     "- [toolConfig.mode.2]: expected value to equal [NONE]",
     [(("toolConfig", "mode"), "Invalid option: expected one of \"AUTO\"|\"ANY\"|\"NONE\"")]),
    (".gemini", "invokeAIRaw",
     {"messages": [], "maxOutputTokens": "100"},
     {"messages": [], "systemInstruction": 1},
     "[systemInstruction]: expected value of type [string] but got [number]",
     [(("systemInstruction",), "Invalid input: expected string, received number")]),
    (".gemini", "invokeStream",
     {"messages": [], "tools": []},
     {"messages": [], "tools": {}},
     "[tools]: expected value of type [array] but got [object]",
     [(("tools",), "Invalid input: expected array, received object")]),
    (".inference", "unified_completion",
     {"body": {"messages": [{"role": "user", "content": "hi"}]}},
     {"body": {"messages": [{"content": "hi"}]}},
     "[body.messages.0.role]: expected value of type [string] but got [undefined]",
     [(("body", "messages", 0, "role"), "Invalid input: expected string, received undefined")]),
    (".inference", "unified_completion_stream",
     {"body": {"messages": [], "tool_choice": "auto"}},
     {"body": {"messages": "hi"}},
     "[body.messages]: expected value of type [array] but got [string]",
     [(("body", "messages"), "Invalid input: expected array, received string")]),
    (".inference", "unified_completion_async_iterator",
     {"body": {}},
     {"body": {"prompt": "x"}},
     "[body.prompt]: definition for this key is missing",
     [(("body",), "Unrecognized key: \"prompt\"")]),
    (".inference", "rerank",
     {"query": "q", "input": ["a"]},
     {"input": ["a"]},
     "[query]: expected value of type [string] but got [undefined]",
     [(("query",), "Invalid input: expected string, received undefined")]),
    (".inference", "sparse_embedding",
     {"input": "x"},
     {"input": ["x"]},
     "[input]: expected value of type [string] but got [array]",
     [(("input",), "Invalid input: expected string, received array")]),
    (".inference", "text_embedding",
     {"input": "x", "inputType": "search"},
     {"input": "x"},
     "[inputType]: expected value of type [string] but got [undefined]",
     [(("inputType",), "Invalid input: expected string, received undefined")]),
    (".inference", "completion",
     {"input": "x"},
     {"input": "x", "model": "m"},
     "[model]: definition for this key is missing",
     [((), "Unrecognized key: \"model\"")]),
    (".sentinelone", "getRemoteScripts",
     {"osTypes": "linux", "limit": 10},
     {"limit": 5000},
     "[limit]: Value must be equal to or lower than [1000].",
     [(("limit",), "Too big: expected number to be <=1000")]),
    (".sentinelone", "fetchAgentFiles",
     {"agentId": "a", "zipPassCode": "0123456789", "files": ["/tmp/x"]},
     {"agentId": "a", "zipPassCode": "short", "files": ["/tmp/x"]},
     "[zipPassCode]: value has length [5] but it must have a minimum length of [10].",
     [(("zipPassCode",), "Too small: expected string to have >=10 characters")]),
    (".sentinelone", "downloadAgentFile",
     {"agentId": "a", "activityId": "b"},
     {"agentId": "", "activityId": "b"},
     "[agentId]: value has length [0] but it must have a minimum length of [1].",
     [(("agentId",), "Too small: expected string to have >=1 characters")]),
    (".sentinelone", "getActivities",
     {"agentIds": "1", "limit": "5"},
     {"agentIds": ""},
     "[agentIds]: value has length [0] but it must have a minimum length of [1].",
     [(("agentIds",), "Too small: expected string to have >=1 characters")]),
    (".sentinelone", "getRemoteScriptStatus",
     {"parentTaskId": "p", "extra": 1},
     {},
     "[parentTaskId]: expected value of type [string] but got [undefined]",
     [(("parentTaskId",), "Invalid input: expected string, received undefined")]),
    (".sentinelone", "getRemoteScriptResults",
     {"taskIds": ["t"]},
     {"taskIds": "t"},
     "[taskIds]: expected value of type [array] but got [string]",
     [(("taskIds",), "Invalid input: expected array, received string")]),
    (".sentinelone", "downloadRemoteScriptResults",
     {"taskId": "t"},
     {"taskId": ""},
     "[taskId]: value has length [0] but it must have a minimum length of [1].",
     [(("taskId",), "Too small: expected string to have >=1 characters")]),
    (".sentinelone", "getAgents",
     {"uuid": "u", "computerName": None, "alertIds": ["a"]},
     {"uuid": "u", "hostname": "h"},
     "[hostname]: definition for this key is missing",
     [((), "Unrecognized key: \"hostname\"")]),
    (".sentinelone", "isolateHost",
     {"uuid": "u"},
     {"uuid": 1},
     "[uuid]: expected value of type [string] but got [number]",
     [(("uuid",), "Invalid input: expected string, received number")]),
    (".sentinelone", "releaseHost",
     {"ids": "1", "alertIds": []},
     {"alertIds": "a"},
     "[alertIds]: expected value of type [array] but got [string]",
     [(("alertIds",), "Invalid input: expected array, received string")]),
    (".sentinelone", "executeScript",
     {"filter": {"uuids": "u"}, "script": {"scriptId": "s", "outputDestination": "SentinelCloud"}},
     {"filter": {"uuids": "u"}, "script": {"scriptId": "s", "outputDestination": "Cloud"}},
     "[script.outputDestination]: types that failed validation:\n"
     "- [script.outputDestination.0]: expected value to equal [Local]\n"
     "- [script.outputDestination.1]: expected value to equal [None]\n"
     "- [script.outputDestination.2]: expected value to equal [SentinelCloud]\n"
     "- [script.outputDestination.3]: expected value to equal [SingularityXDR]",
     [(("script", "outputDestination"),
       "Invalid option: expected one of \"Local\"|\"None\"|\"SentinelCloud\"|\"SingularityXDR\"")]),
    (".crowdstrike", "getAgentDetails",
     {"ids": ["a"]},
     {"ids": "a"},
     "[ids]: expected value of type [array] but got [string]",
     [(("ids",), "Invalid input: expected array, received string")]),
    (".crowdstrike", "getAgentOnlineStatus",
     {"ids": []},
     {},
     "[ids]: expected value of type [array] but got [undefined]",
     [(("ids",), "Invalid input: expected array, received undefined")]),
    (".crowdstrike", "hostActions",
     {"command": "contain", "ids": ["a"], "comment": "c"},
     {"command": "isolate", "ids": ["a"]},
     "[command]: types that failed validation:\n"
     "- [command.0]: expected value to equal [contain]\n"
     "- [command.1]: expected value to equal [lift_containment]",
     [(("command",), "Invalid option: expected one of \"contain\"|\"lift_containment\"")]),
    (".microsoft_defender_endpoint", "testConnector",
     {},
     {"id": "x"},
     "[id]: definition for this key is missing",
     [((), "Unrecognized key: \"id\"")]),
    (".microsoft_defender_endpoint", "getAgentDetails",
     {"id": "1"},
     {"id": ""},
     "[id]: value has length [0] but it must have a minimum length of [1].",
     [(("id",), "Too small: expected string to have >=1 characters")]),
    (".microsoft_defender_endpoint", "getAgentList",
     {"id": ["1", "2"], "healthStatus": "Active", "pageSize": "50"},
     {"pageSize": 2000},
     "[pageSize]: Value must be equal to or lower than [1000].",
     [(("pageSize",), "Too big: expected number to be <=1000")]),
    (".microsoft_defender_endpoint", "isolateHost",
     {"id": "1", "comment": "c"},
     {"id": "1"},
     "[comment]: expected value of type [string] but got [undefined]",
     [(("comment",), "Invalid input: expected string, received undefined")]),
    (".microsoft_defender_endpoint", "releaseHost",
     {"id": "1", "comment": "c"},
     {"id": "1", "comment": ""},
     "[comment]: value has length [0] but it must have a minimum length of [1].",
     [(("comment",), "Too small: expected string to have >=1 characters")]),
    (".microsoft_defender_endpoint", "getActions",
     {"status": ["Pending"], "sortDirection": "asc"},
     {"status": []},
     "[status]: types that failed validation:\n"
     "- [status.0]: types that failed validation:\n"
     " - [status.0]: expected value to equal [Pending]\n"
     " - [status.1]: expected value to equal [InProgress]\n"
     " - [status.2]: expected value to equal [Succeeded]\n"
     " - [status.3]: expected value to equal [Failed]\n"
     " - [status.4]: expected value to equal [TimeOut]\n"
     " - [status.5]: expected value to equal [Cancelled]\n"
     "- [status.1]: array size is [0], but cannot be smaller than [1]",
     [(("status",), "Invalid input")]),
    (".microsoft_defender_endpoint", "getLibraryFiles",
     {},
     {"page": 1},
     "[page]: definition for this key is missing",
     [((), "Unrecognized key: \"page\"")]),
    (".microsoft_defender_endpoint", "runScript",
     {"id": "1", "parameters": {"scriptName": "s.ps1"}},
     {"id": "1", "parameters": {}},
     "[parameters.scriptName]: expected value of type [string] but got [undefined]",
     [(("parameters", "scriptName"), "Invalid input: expected string, received undefined")]),
    (".microsoft_defender_endpoint", "getActionResults",
     {"id": "1"},
     {},
     "[id]: expected value of type [string] but got [undefined]",
     [(("id",), "Invalid input: expected string, received undefined")]),
    (".microsoft_defender_endpoint", "cancelAction",
     {"comment": "c", "actionId": "a"},
     {"actionId": "a"},
     "[comment]: expected value of type [string] but got [undefined]",
     [(("comment",), "Invalid input: expected string, received undefined")]),
]


@pytest.fixture(scope="module")
def kibanas() -> Any:
    """One sandbox per line, one connector per type in each (module scope: the cases only read)."""
    clients, ids = {}, {}
    for version in (V8, V9):
        sb = Sandbox.from_seed({"kibana_version": version})
        client = httpx.Client(transport=sb.transport(), base_url="http://kibana.test", headers={"kbn-xsrf": "t"})
        clients[version] = client
        for type_id, (config, secrets) in CONNECTORS.items():
            resp = client.post(
                "/api/actions/connector",
                json={"name": "c", "connector_type_id": type_id, "config": config, "secrets": secrets},
            )
            assert resp.status_code == 200, resp.text
            ids[version, type_id] = resp.json()["id"]
    yield clients, ids
    for client in clients.values():
        client.close()


def _execute(kibanas: Any, version: str, type_id: str, sub_action: str, params: Any) -> tuple[str, dict[str, Any]]:
    clients, ids = kibanas
    cid = ids[version, type_id]
    body: dict[str, Any] = {"subAction": sub_action}
    if params is not None:
        body["subActionParams"] = params
    resp = clients[version].post(f"/api/actions/connector/{cid}/_execute", json={"params": body})
    assert resp.status_code == 200, resp.text
    return cid, dict(resp.json())


def _issues(service_message: str) -> list[tuple[tuple[str | int, ...], str]]:
    assert service_message.startswith(PREFIX) and service_message.endswith(")")
    return [(tuple(i["path"]), i["message"]) for i in json.loads(service_message[len(PREFIX) : -1])]


@pytest.mark.parametrize(
    ("type_id", "sub_action", "good", "bad", "detail8", "issues9"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES]
)
def test_sub_action_params(
    kibanas: Any,
    type_id: str,
    sub_action: str,
    good: dict[str, Any],
    bad: dict[str, Any],
    detail8: str,
    issues9: list[tuple[tuple[str | int, ...], str]],
) -> None:
    for version in (V8, V9):
        cid, ok = _execute(kibanas, version, type_id, sub_action, good)
        assert ok == {"connector_id": cid, "status": "ok", "data": {}}, (version, ok)
        cid, refused = _execute(kibanas, version, type_id, sub_action, bad)
        assert {k: v for k, v in refused.items() if k != "service_message"} == {
            "connector_id": cid,
            "status": "error",
            "retry": True,
            "errorSource": "user",
            "message": "an error occurred while running the action",
        }, (version, refused)
        if version == V8:
            assert refused["service_message"] == f"{PREFIX}Error: {detail8})"
        else:
            assert _issues(refused["service_message"]) == issues9


def test_every_registered_sub_action_has_a_case() -> None:
    """The cases cover each sub action these types register; each has a schema (`AnyValue` only where
    Kibana registers `z.any()`: CrowdStrike's RTR sub actions)."""
    families = {c[0] for c in CASES}
    registered = {
        (t, s) for t in families for s, schema in FRAMEWORK[t].sub_actions.items() if not isinstance(schema, AnyValue)
    }
    assert registered == {(c[0], c[1]) for c in CASES}
    assert {(t, s) for t in FRAMEWORK for s, schema in FRAMEWORK[t].sub_actions.items() if schema is None} == {
        (".xsoar", "getPlaybooks"),
        (".tines", "stories"),
    }  # registered with `schema: null` in Kibana
    assert {s for s, schema in FRAMEWORK[".crowdstrike"].sub_actions.items() if isinstance(schema, AnyValue)} == {
        "executeRTRCommand",
        "batchActiveResponderExecuteRTR",
        "batchAdminExecuteRTR",
        "getRTRCloudScripts",
    }


@pytest.mark.parametrize("version", [V8, V9])
def test_inference_completion_stream_is_not_registered(kibanas: Any, version: str) -> None:
    """inference.ts (main) registers no `completion_stream` (constants.ts still names it) and no getDashboard."""
    for sub_action in ("completion_stream", "getDashboard"):
        cid, body = _execute(kibanas, version, ".inference", sub_action, {"input": "x"})
        assert body["errorSource"] == "framework"
        assert body["service_message"] == (
            f'Sub action "{sub_action}" is not registered. Connector id: {cid}. '
            "Connector name: AI Connector. Connector type: .inference"
        )


@pytest.mark.parametrize("version", [V8, V9])
def test_optional_params_and_any_schemas(kibanas: Any, version: str) -> None:
    """SentinelOneGetActivitiesParamsSchema is `.optional()` (no params pass, wrong ones do not);
    CrowdstrikeRTRCommandParamsSchema is `z.any()`; CrowdstrikeGetAgentsParamsSchema is not optional."""
    assert _execute(kibanas, version, ".sentinelone", "getActivities", None)[1]["status"] == "ok"
    assert _execute(kibanas, version, ".sentinelone", "getActivities", {"skip": "x"})[1]["status"] == "error"
    assert _execute(kibanas, version, ".crowdstrike", "executeRTRCommand", None)[1]["status"] == "ok"
    assert _execute(kibanas, version, ".crowdstrike", "getAgentDetails", None)[1]["status"] == "error"


def test_9x_coerced_numbers_and_refinements_are_whole_zod_issues(kibanas: Any) -> None:
    """zod v4: `z.coerce.number()` takes numeric strings and reports NaN as its own `received`; bounds are
    too_big issues; BedrockMessageSchema's superRefine is a custom issue at the message's path."""
    _, nan = _execute(kibanas, V9, ".sentinelone", "getRemoteScripts", {"limit": "ten", "skip": "5"})
    assert json.loads(nan["service_message"][len(PREFIX) : -1]) == [
        {
            "expected": "number",
            "code": "invalid_type",
            "received": "NaN",
            "path": ["limit"],
            "message": "Invalid input: expected number, received NaN",
        }
    ]
    _, big = _execute(kibanas, V9, ".microsoft_defender_endpoint", "getActions", {"pageSize": "1001"})
    assert json.loads(big["service_message"][len(PREFIX) : -1]) == [
        {
            "origin": "number",
            "code": "too_big",
            "maximum": 1000,
            "inclusive": True,
            "path": ["pageSize"],
            "message": "Too big: expected number to be <=1000",
        }
    ]
    _, refined = _execute(
        kibanas, V9, ".bedrock", "invokeAI", {"messages": [{"role": "user", "content": "a"}, {"role": "user"}]}
    )
    assert json.loads(refined["service_message"][len(PREFIX) : -1]) == [
        {"code": "custom", "message": "Must specify either content or rawContent", "path": ["messages", 1]}
    ]


def test_8x_numbers_accept_numeric_strings_and_check_bounds(kibanas: Any) -> None:
    """config-schema's number takes "50" and words its bounds `Value must be equal to or greater than [n].`"""
    _, ok = _execute(kibanas, V8, ".microsoft_defender_endpoint", "getAgentList", {"page": "2", "pageSize": "50"})
    assert ok["status"] == "ok"
    _, low = _execute(kibanas, V8, ".microsoft_defender_endpoint", "getAgentList", {"page": 0})
    assert low["service_message"] == f"{PREFIX}Error: [page]: Value must be equal to or greater than [1].)"
