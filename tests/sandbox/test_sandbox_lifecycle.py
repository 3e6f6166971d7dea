"""Kibana's request lifecycle in the sandbox: routing, spaces, auth, payload parsing, xsrf, counters, and
that no input gets a 500 or a traceback."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.sandbox import Sandbox, routes

ClientFactory = Callable[..., tuple[Sandbox, httpx.Client]]  # the `sandbox_client` fixture (conftest.py)


INDEX = {"name": "Index", "connector_type_id": ".index", "config": {"index": "logs"}}
AUTH_SEED = {"auth": {"users": {"elastic": "changeme"}, "api_keys": ["KEY1"]}}


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_unknown_paths_and_bad_space_segments_are_404(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client()
    for path in ("/", "/api/actions", "/api/actions/connectorz", "/s/UPPER/api/actions/connectors",
                 "/s/a.b/api/actions/connectors", "/api/actions/connector/a%2Fb", "/api/actions/connector/%ff"):
        r = c.get(path)
        assert r.status_code == 404, path
        assert r.json() == {"statusCode": 404, "error": "Not Found", "message": "Not Found"}
    assert c.request("PATCH", "/api/actions/connectors").status_code == 404  # Hapi: no 405


def test_percent_encoded_id_is_decoded_once(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client({"human_readable_ids": True})
    r = c.get("/api/actions/connector/a%2561")  # "a%61" after one decode, not "aa"
    assert r.json()["message"] == "Saved object [action/a%61] not found"


def test_auth_basic_and_api_key(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client(AUTH_SEED)
    assert c.get("/api/actions/connectors").status_code == 401
    assert c.get("/api/actions/connectors", headers=basic("elastic", "wrong")).status_code == 401
    assert c.get("/api/actions/connectors", headers={"authorization": "Basic !!notb64"}).status_code == 401
    assert c.get("/api/actions/connectors", headers=basic("elastic", "changeme")).status_code == 200
    assert c.get("/api/actions/connectors", headers={"authorization": "ApiKey KEY1"}).status_code == 200
    assert c.get("/api/actions/connectors", headers={"authorization": "ApiKey KEY2"}).status_code == 401
    r = c.get("/api/actions/connectors")
    assert r.json() == {"statusCode": 401, "error": "Unauthorized", "message": "Unauthorized"}


def test_check_order_route_then_auth_then_xsrf_then_schema(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client(AUTH_SEED, xsrf=False)
    assert c.post("/api/nope", json={}).status_code == 404
    assert c.post("/api/actions/connector", json={}).status_code == 401  # bad auth beats missing xsrf
    r = c.post("/api/actions/connector", json={}, headers=basic("elastic", "changeme"))
    assert (r.status_code, r.json()["message"]) == (400, "Request must contain a kbn-xsrf header.")
    r = c.post("/api/actions/connector", json={}, headers={**basic("elastic", "changeme"), "kbn-xsrf": "1"})
    assert r.json()["message"].startswith("[request body.name]")
    r = c.post("/api/actions/connector", json=INDEX, headers={"authorization": "ApiKey KEY1", "kbn-version": "9.2.0"})
    assert r.status_code == 200  # a matching kbn-version also satisfies the xsrf check
    assert c.get("/api/actions/connectors", headers=basic("elastic", "changeme")).status_code == 200  # GET: no xsrf


def test_payload_errors(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client()
    r = c.post("/api/actions/connector", content=b"{nope", headers={"content-type": "application/json"})
    assert r.json() == {"statusCode": 400, "error": "Bad Request", "message": "Invalid request payload JSON format"}
    assert c.post("/api/actions/connector", content=b'{"name": NaN}').status_code == 400
    assert c.post("/api/actions/connector", content=b"\xff\xfe").status_code == 400
    r = c.post("/api/actions/connector", content=b"<x/>", headers={"content-type": "application/xml"})
    assert r.status_code == 415
    r = c.post("/api/actions/connector", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 400 and "plain object" in r.json()["message"]
    r = c.post("/api/actions/connector", content=b"[" * 100_000 + b"]" * 100_000)
    assert r.status_code == 400
    r = c.post("/api/actions/connector", content=b" " * (1024 * 1024 + 1))
    assert r.json() == {"statusCode": 413, "error": "Request Entity Too Large",
                        "message": "Payload content length greater than maximum allowed: 1048576"}


def test_unexpected_exception_is_a_generic_500(sandbox_client: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    _, c = sandbox_client()

    def boom(*_: object) -> None:
        raise RuntimeError("SECRET-INTERNALS at line 42")

    monkeypatch.setattr(routes, "ROUTES", tuple((m, rx, n, boom, b) for m, rx, n, _, b in routes.ROUTES))
    r = c.get("/api/actions/connectors")
    assert r.json() == {"statusCode": 500, "error": "Internal Server Error",
                        "message": "An internal server error occurred."}
    assert "SECRET" not in r.text and "Traceback" not in r.text


def test_counters_and_stats(sandbox_client: ClientFactory) -> None:
    sb, c = sandbox_client(AUTH_SEED)
    c.get("/api/actions/connectors")
    c.get("/s/x/api/actions/connectors", headers={"authorization": "ApiKey KEY1"})
    c.post("/api/actions/connector", json=INDEX, headers={"authorization": "ApiKey KEY1"})
    c.get("/nowhere")
    expected = {"total": 4, "GET connectors": 2, "POST create_connector": 1, "GET not_found": 1}
    assert dict(sb.counters) == expected
    assert c.get("/__kcr_sandbox/stats").json() == expected  # no auth needed, and not counted
    assert c.post("/__kcr_sandbox/reset-stats").status_code == 200
    assert sb.counters == {"total": 0}


def test_spaces_prefix_routes_everything(sandbox_client: ClientFactory) -> None:
    sb, c = sandbox_client({"spaces": ["team-1"]})
    cid = str(uuid.uuid4())
    assert c.post(f"/s/team-1/api/actions/connector/{cid}", json=INDEX).status_code == 200
    assert [x["id"] for x in sb.connectors_in("team-1")] == [cid]
    assert c.get(f"/s/team-1/api/actions/connector/{cid}").status_code == 200
    assert c.get("/s/team-1/api/spaces/space/team-1").json()["id"] == "team-1"


_paths = st.lists(
    st.one_of(st.sampled_from(["api", "actions", "connector", "connectors", "s", "_execute", "alerting", "rule",
                               "rules", "_find", "spaces", "space", "%2F", "%ff", "..", "default"]),
              st.text(alphabet="abcXYZ019-_.~%:@!$&'()*+,;=", max_size=12)),
    max_size=6,
).map(lambda parts: "/" + "/".join(parts))
_bodies = st.one_of(
    st.binary(max_size=64),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                     st.sampled_from(["name", "connector_type_id", "config", "secrets", "params", "x", "actions",
                                      "schedule", "consumer", "rule_type_id", "id"]), inner, max_size=4),
                 max_leaves=8).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]), path=_paths, body=_bodies,
       query=st.text(alphabet="a=&%{}\"per_page1has_reference", max_size=20))
def test_fuzz_never_500(method: str, path: str, body: bytes, query: str) -> None:
    sb = Sandbox.from_seed({"human_readable_ids": True, "preconfigured": {
        "pre": {"name": "p", "actionTypeId": ".index", "config": {"index": "i"}}}})
    for prefix in ("", "/s/default"):
        r = sb.handle(method, prefix + path, query, {"kbn-xsrf": "1", "content-type": "application/json"}, body)
        assert r.status < 500, (method, path, query, body, r.body)
        assert b"Traceback" not in r.body


_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=6),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                        max_size=3),
                            max_leaves=6)
# Each field either well typed or anything at all: the wrong-typed ones must get a 400, never a 500.
_rule_actions = st.lists(st.one_of(
    st.fixed_dictionaries({"id": st.sampled_from(["c1", "pre", "nope"])},
                          optional={"group": st.one_of(st.just("default"), _json_values),
                                    "params": st.one_of(st.just({}), _json_values)}),
    _json_values), max_size=3)
_rule_bodies = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.just("r"), _json_values), "rule_type_id": st.one_of(st.just(".es-query"), _json_values),
    "consumer": st.one_of(st.just("alerts"), _json_values), "enabled": _json_values,
    "tags": st.one_of(st.lists(st.text(max_size=3), max_size=2), _json_values),
    "schedule": st.one_of(st.just({"interval": "1m"}), _json_values), "params": st.one_of(st.just({}), _json_values),
    "actions": st.one_of(_rule_actions, _json_values), "throttle": _json_values, "notify_when": _json_values,
})
_urlish = st.one_of(
    st.text(alphabet="htps:/[]@%#?:.-_ x1AZ\\\u00e9\ufeff", max_size=24),
    st.builds(lambda scheme, host, rest: f"{scheme}{host}{rest}",
              st.sampled_from(["http://", "https://", "ftp://", "mailto:", "http:", "//", ""]),
              st.sampled_from(["", "[", "[::1", "[::1]", "[x", "h.example", "a b", "h:99999", "h:port", "%zz", "@"]),
              st.text(alphabet="/:?#[]@% x", max_size=6)),
)
# (type, config, secrets) with the URL fields to garble: each part of allowed_hosts_checked.
_URL_CONNECTORS: tuple[tuple[str, dict[str, object], dict[str, object]], ...] = (
    (".webhook", {"url": None}, {"user": "u", "password": "p"}),
    (".webhook", {"url": "https://h.example", "authType": "webhook-oauth2-client-credentials", "accessTokenUrl": None,
                  "clientId": "c"}, {"clientSecret": "s"}),
    (".slack", {}, {"webhookUrl": None}),
    (".teams", {}, {"webhookUrl": None}),
    (".jira", {"apiUrl": None, "projectKey": "P"}, {"email": "e", "apiToken": "t"}),
    (".gen-ai", {"apiProvider": "OpenAI", "apiUrl": None}, {"apiKey": "k"}),
    (".torq", {"webhookIntegrationUrl": None}, {"token": "t"}),
    (".pagerduty", {"apiUrl": None}, {"routingKey": "k"}),
    (".xmatters", {"usesBasic": False}, {"secretsUrl": None}),
    (".email", {"from": "a@example.com", "service": "other", "host": None, "port": 25}, {}),
    (".cases-webhook", {"createIncidentUrl": None, "createIncidentJson": "{}", "createIncidentResponseKey": "id",
                        "getIncidentUrl": None, "getIncidentResponseExternalTitleKey": "k", "viewIncidentUrl": None,
                        "updateIncidentUrl": None, "updateIncidentJson": "{}", "hasAuth": False}, {}),
)


def _garbled(index: int, url: str) -> dict[str, object]:
    type_id, config, secrets = _URL_CONNECTORS[index]
    fill = {k: (url if val is None else val) for k, val in config.items()}
    return {"name": "n", "connector_type_id": type_id, "config": fill,
            "secrets": {k: (url if val is None else val) for k, val in secrets.items()}}


_connector_bodies = st.builds(_garbled, st.integers(0, len(_URL_CONNECTORS) - 1), _urlish)


@settings(max_examples=400, deadline=None)
@given(target=st.one_of(
    st.tuples(st.sampled_from([("POST", "/api/alerting/rule"), ("POST", "/api/alerting/rule/new"),
                               ("PUT", "/api/alerting/rule/r1")]), _rule_bodies),
    st.tuples(st.sampled_from([("POST", "/api/actions/connector"), ("PUT", "/api/actions/connector/c1")]),
              _connector_bodies)),
    allowed=st.sampled_from([["*"], ["h.example"]]))
def test_fuzz_typed_bodies_never_500(target: tuple[tuple[str, str], dict[str, object]], allowed: list[str]) -> None:
    """Rule bodies with wrong-typed fields and connectors with URL-ish garbage in every URL field."""
    (method, path), body = target
    sb = Sandbox.from_seed({"human_readable_ids": True, "allowed_hosts": allowed, "preconfigured": {
        "pre": {"name": "p", "actionTypeId": ".index", "config": {"index": "i"}}},
        "connectors": [{"id": "c1", "connector_type_id": str(body.get("connector_type_id", ".index"))}],
        "rules": [{"id": "r1", "actions": [{"id": "c1"}]}]})
    r = sb.handle(method, path, "", {"kbn-xsrf": "1", "content-type": "application/json"}, json.dumps(body).encode())
    assert r.status in (200, 400, 403, 404), (method, path, body, r.body)
    assert b"Traceback" not in r.body
    if r.status == 200 and path.startswith("/api/alerting"):
        rule = json.loads(r.body)
        assert isinstance(rule["tags"], list) and isinstance(rule["enabled"], bool)
        assert all(isinstance(a["params"], dict) for a in rule["actions"])


def test_transport_works_with_plain_httpx_client() -> None:
    sb = Sandbox.from_seed(None)
    with httpx.Client(transport=sb.transport(), base_url="http://kibana.test") as client:
        assert client.get("/api/actions/connectors").json() == []
