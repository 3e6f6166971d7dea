"""Issue 2 fidelity: kbn-version, versioned response fields, execute params, cross-field connector rules,
rule update, seed validation, fuzzing with headers, and `kcr sandbox` as a real process."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from processes import read_line  # sibling module (see processes.py)

from reconciler.errors import ConfigError
from reconciler.sandbox import Sandbox

XSRF = {"kbn-xsrf": "1", "content-type": "application/json"}
INDEX = {"name": "Index", "connector_type_id": ".index", "config": {"index": "logs"}}


def call(sb: Sandbox, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    raw = b"" if body is None else json.dumps(body).encode()
    return sb.handle(method, path, "", {**XSRF, **(headers or {})}, raw)


def create(sb: Sandbox, body: dict[str, Any]) -> Any:
    return call(sb, "POST", "/api/actions/connector", body)


# ---- kbn-version (core lifecycle_handlers.ts createVersionCheckPostAuthHandler) -----------------------


def test_kbn_version_mismatch_is_kibanas_400_with_attributes() -> None:
    sb = Sandbox.from_seed({"kibana_version": "8.15.0"})
    r = sb.handle("GET", "/api/actions/connectors", "", {"kbn-version": "8.14.0"}, b"")
    assert r.status == 400
    assert r.json() == {
        "statusCode": 400, "error": "Bad Request",
        "message": 'Browser client is out of date, please refresh the page ("kbn-version" header was "8.14.0" '
                   'but should be "8.15.0")',
        "attributes": {"expected": "8.15.0", "got": "8.14.0"},
    }
    assert sb.handle("GET", "/api/actions/connectors", "", {"kbn-version": "8.15.0"}, b"").status == 200
    # a matching kbn-version stands in for kbn-xsrf; an empty one passes the version check
    r = sb.handle("POST", "/api/actions/connector", "", {"kbn-version": "8.15.0"}, json.dumps(INDEX).encode())
    assert r.status == 200
    assert sb.handle("GET", "/api/actions/connectors", "", {"kbn-version": ""}, b"").status == 200


def test_xsrf_check_runs_before_version_check() -> None:
    sb = Sandbox.from_seed({"kibana_version": "8.15.0"})
    r = sb.handle("POST", "/api/actions/connector", "", {"kbn-version": "1.0.0"}, json.dumps(INDEX).encode())
    assert r.json()["message"].startswith("Browser client is out of date")  # kbn-version satisfies xsrf
    r = sb.handle("POST", "/api/actions/connector", "", {}, json.dumps(INDEX).encode())
    assert r.json()["message"] == "Request must contain a kbn-xsrf header."


# ---- response shapes ----------------------------------------------------------------------------------


def test_current_fields_by_default() -> None:
    sb = Sandbox.from_seed({"preconfigured": {"pre": {"name": "P", "actionTypeId": ".server-log"}}})
    r = create(sb, INDEX)
    assert r.headers["elastic-api-version"] == "2023-10-31"
    assert r.json()["is_connector_type_deprecated"] is False
    cid = r.json()["id"]
    assert call(sb, "GET", f"/api/actions/connector/{cid}").json()["is_connector_type_deprecated"] is False
    listed = call(sb, "GET", "/api/actions/connectors").json()
    assert all(item["is_connector_type_deprecated"] is False for item in listed) and len(listed) == 2
    types = call(sb, "GET", "/api/actions/connector_types").json()
    assert all(t["is_deprecated"] is False and t["source"] == "stack" for t in types)
    bad = create(sb, {"name": ""})
    assert bad.status == 400 and bad.headers["elastic-api-version"] == "2023-10-31"  # route validation 400
    assert "elastic-api-version" not in call(sb, "GET", "/api/nope").headers  # no route, no header


def test_legacy_fields_on_request() -> None:
    sb = Sandbox.from_seed({"response_fields": "legacy"})
    r = create(sb, INDEX)
    assert "is_connector_type_deprecated" not in r.json()
    assert "elastic-api-version" not in r.headers
    assert "is_deprecated" not in call(sb, "GET", "/api/actions/connector_types").json()[0]
    hook = create(sb, {"name": "h", "connector_type_id": ".webhook", "config": {"url": "https://x.test"}})
    assert "authType" not in hook.json()["config"]


# ---- execute -------------------------------------------------------------------------------------------


def _execute(sb: Sandbox, cid: str, params: dict[str, Any]) -> Any:
    r = call(sb, "POST", f"/api/actions/connector/{cid}/_execute", {"params": params})
    assert r.status == 200
    return r.json()


@pytest.mark.parametrize(("type_id", "config", "secrets", "params", "detail"), [
    (".server-log", {}, {}, {}, "[message]: expected value of type [string] but got [undefined]"),
    (".server-log", {}, {}, {"message": "m", "level": "loud"},
     "[level]: types that failed validation:\n- [level.0]: expected value to equal [trace]\n"
     "- [level.1]: expected value to equal [debug]\n- [level.2]: expected value to equal [info]\n"
     "- [level.3]: expected value to equal [warn]\n- [level.4]: expected value to equal [error]\n"
     "- [level.5]: expected value to equal [fatal]"),
    (".index", {"index": "i"}, {}, {}, "[documents]: expected value of type [array] but got [undefined]"),
    (".index", {"index": "i"}, {}, {"documents": [1]},
     "[documents.0]: expected value of type [object] but got [number]"),
    (".slack", {}, {"webhookUrl": "https://hooks.slack.test/x"}, {},
     "[message]: expected value of type [string] but got [undefined]"),
    (".pagerduty", {}, {"routingKey": "k"}, {"eventAction": "resolve"},
     'DedupKey is required when eventAction is "resolve"'),
    (".email", {"from": "a@b.test", "service": "__json"}, {"user": "u", "password": "p"},
     {"to": ["x@y.test"], "message": "m"}, "[subject]: expected value of type [string] but got [undefined]"),
    (".email", {"from": "a@b.test", "service": "__json"}, {"user": "u", "password": "p"},
     {"subject": "s", "message": "m"}, "no [to], [cc], or [bcc] entries"),
])
def test_execute_params_errors(type_id: str, config: dict[str, Any], secrets: dict[str, Any],
                               params: dict[str, Any], detail: str) -> None:
    sb = Sandbox.from_seed(None)
    r = create(sb, {"name": "c", "connector_type_id": type_id, "config": config, "secrets": secrets})
    assert r.status == 200, r.body
    cid = r.json()["id"]
    assert _execute(sb, cid, params) == {"connector_id": cid, "status": "error", "retry": False, "errorSource": "user",
                                         "message": f"error validating action params: {detail}"}
    assert sb.executions == []


def test_execute_ok_shapes() -> None:
    sb = Sandbox.from_seed(None)
    log = create(sb, {"name": "l", "connector_type_id": ".server-log"}).json()["id"]
    assert _execute(sb, log, {"message": "hi", "level": "warn"}) == {"connector_id": log, "status": "ok"}
    idx = create(sb, INDEX).json()["id"]
    body = _execute(sb, idx, {"documents": [{"a": 1}, {"b": 2}]})
    assert body["status"] == "ok" and body["data"]["errors"] is False
    assert [i["index"]["_index"] for i in body["data"]["items"]] == ["logs", "logs"]
    assert len(sb.executions) == 2


# ---- connector-level rules (each cites the Kibana validator in reconciler/type_rules.py) ---------------------------


def _msg(r: Any) -> str:
    assert r.status == 400, r.body
    return str(r.json()["message"])


def test_xmatters_uses_basic_rules() -> None:
    sb = Sandbox.from_seed(None)
    base = {"name": "x", "connector_type_id": ".xmatters"}
    assert create(sb, {**base, "config": {"configUrl": "https://x.test", "usesBasic": True},
                       "secrets": {"user": "u", "password": "p"}}).status == 200
    assert create(sb, {**base, "config": {"usesBasic": False}, "secrets": {"secretsUrl": "https://x.test/k"}}).status \
        == 200
    assert _msg(create(sb, {**base, "config": {"configUrl": "https://x.test", "usesBasic": True},
                            "secrets": {"secretsUrl": "https://x.test/k"}})) == \
        "error validating action type connector: secretsUrl should not be provided when usesBasic is true"
    assert _msg(create(sb, {**base, "config": {"configUrl": "https://x.test", "usesBasic": False},
                            "secrets": {"secretsUrl": "https://x.test/k"}})).endswith(
        "configUrl should not be provided when usesBasic is false")


def test_cases_webhook_has_auth_with_empty_secrets() -> None:
    sb = Sandbox.from_seed(None)
    config = {"createIncidentUrl": "https://x.test", "createIncidentJson": "{}", "createIncidentResponseKey": "id",
              "getIncidentUrl": "https://x.test", "getIncidentResponseExternalTitleKey": "t",
              "viewIncidentUrl": "https://x.test", "updateIncidentUrl": "https://x.test", "updateIncidentJson": "{}"}
    body = {"name": "c", "connector_type_id": ".cases-webhook"}
    assert _msg(create(sb, {**body, "config": {**config, "hasAuth": True}, "secrets": {}})).startswith(
        "error validating action type connector: ")
    assert create(sb, {**body, "config": {**config, "hasAuth": False}, "secrets": {}}).status == 200


def test_webhook_auth_type() -> None:
    sb = Sandbox.from_seed(None)
    r = create(sb, {"name": "w", "connector_type_id": ".webhook",
                    "config": {"url": "https://x.test", "hasAuth": False, "authType": "webhook-authentication-basic"}})
    assert _msg(r) == ("error validating action type config: error validation webhook action config: authType must "
                       "be null or undefined if hasAuth is false")
    r = create(sb, {"name": "w", "connector_type_id": ".webhook", "config": {"url": "https://x.test", "hasAuth": True},
                    "secrets": {"user": "u", "password": "p"}})
    assert r.json()["config"]["authType"] == "webhook-authentication-basic"
    r = create(sb, {"name": "w", "connector_type_id": ".webhook",
                    "config": {"url": "https://x.test", "hasAuth": False}})
    assert "authType" not in r.json()["config"]


@pytest.mark.parametrize(("url", "ok"), [("https://hooks.torq.io/v1/x", True), ("https://hooks.eu.torq.io/x", True),
                                         ("http://localhost:1/x", True), ("https://evil.test/x", False)])
def test_torq_hostname(url: str, ok: bool) -> None:
    r = create(Sandbox.from_seed(None), {"name": "t", "connector_type_id": ".torq",
                                          "config": {"webhookIntegrationUrl": url}, "secrets": {"token": "t"}})
    assert (r.status == 200) is ok
    if not ok:
        assert r.json()["message"].endswith("url must begin with https://hooks.torq.io or https://hooks.eu.torq.io")


@pytest.mark.parametrize(("secrets", "detail"), [
    ({"certificateData": "Y2VydA=="}, "Private key data must be provided for PKI"),
    ({"privateKeyData": "a2V5"}, "Certificate data must be provided for PKI"),
    ({}, "[apiKey]: expected value of type [string] but got [undefined]"),
])
def test_gen_ai_pki(secrets: dict[str, Any], detail: str) -> None:
    r = create(Sandbox.from_seed(None), {"name": "g", "connector_type_id": ".gen-ai",
                                          "config": {"apiProvider": "OpenAI", "apiUrl": "https://api.openai.test"},
                                          "secrets": secrets})
    assert _msg(r) == f"error validating action type secrets: {detail}"


@pytest.mark.parametrize(("config", "secrets", "fragment"), [
    ({"apiUrl": "https://sn.test"}, {"username": "u"}, ""),
    ({"apiUrl": "https://sn.test", "clientId": "c"}, {"username": "u", "password": "p"}, "must be empty"),
    ({"apiUrl": "https://sn.test", "isOAuth": True, "clientId": "c", "userIdentifierValue": "u", "jwtKeyId": "j"},
     {"clientSecret": "s", "privateKey": "k", "username": "u", "password": "p"}, "Username and password"),
])
def test_servicenow_cross_field(config: dict[str, Any], secrets: dict[str, Any], fragment: str) -> None:
    r = create(Sandbox.from_seed(None), {"name": "s", "connector_type_id": ".servicenow", "config": config,
                                          "secrets": secrets})
    assert fragment in _msg(r)


def test_email_service_names() -> None:
    sb = Sandbox.from_seed(None)
    ok = create(sb, {"name": "e", "connector_type_id": ".email", "config": {"from": "a@b.test", "service": "gmail"},
                     "secrets": {"user": "u", "password": "p"}})
    assert ok.status == 200
    r = create(sb, {"name": "e", "connector_type_id": ".email", "config": {"from": "a@b.test", "service": "nope"}})
    assert _msg(r) == "error validating action type config: [service] value 'nope' is not valid"


# ---- rules: PUT -----------------------------------------------------------------------------------------


def test_rule_update_drops_a_reference_without_deleting_the_rule() -> None:
    sb = Sandbox.from_seed(None)
    cid = create(sb, INDEX).json()["id"]
    rule = {"name": "r", "rule_type_id": ".index-threshold", "consumer": "alerts", "schedule": {"interval": "1m"},
            "params": {}, "actions": [{"id": cid, "group": "default", "params": {}}]}
    assert call(sb, "POST", "/api/alerting/rule/my-rule", rule).status == 200  # chosen rule ids need not be UUIDs
    assert call(sb, "GET", "/api/actions/connectors").json()[0]["referenced_by_count"] == 1
    r = call(sb, "PUT", "/api/alerting/rule/my-rule", {"name": "r2", "schedule": {"interval": "5m"}, "actions": []})
    assert r.status == 200
    assert (r.json()["name"], r.json()["actions"], r.json()["rule_type_id"]) == ("r2", [], ".index-threshold")
    assert call(sb, "GET", "/api/actions/connectors").json()[0]["referenced_by_count"] == 0
    bad = call(sb, "PUT", "/api/alerting/rule/my-rule", {"name": "r", "schedule": {"interval": "1m"},
                                                         "rule_type_id": "x"})
    assert bad.json()["message"] == "[request body.rule_type_id]: definition for this key is missing"
    missing = call(sb, "PUT", "/api/alerting/rule/nope", {"name": "r", "schedule": {"interval": "1m"}})
    assert (missing.status, missing.json()["message"]) == (404, "Saved object [alert/nope] not found")
    gone = call(sb, "PUT", "/api/alerting/rule/my-rule", {"name": "r", "schedule": {"interval": "1m"},
                                                          "actions": [{"id": "absent", "group": "default"}]})
    assert gone.status == 400


# ---- seed validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "fragment"), [
    ({"license": "diamond"},
     'license: must be one of "basic", "standard", "gold", "platinum", "enterprise", "trial", not "diamond"'),
    ({"licence": "gold"}, "unknown key 'licence' (did you mean 'license'?)"),
    ({"spaces": "team"}, 'spaces: must be a list, not "team"'),
    ({"human_readable_ids": "yes"}, 'human_readable_ids: must be true or false, not "yes"'),
    ({"faults": {"latency_ms": "slow"}}, 'faults.latency_ms: must be a number, not "slow"'),
    ({"faults": {"latncy_ms": 1}}, "faults: unknown key 'latncy_ms' (did you mean 'latency_ms'?)"),
    ({"kibana_version": 8.15}, "kibana_version: matches none of the allowed shapes: a Kibana version such as"),
    ({"response_fields": "newest"}, 'response_fields: must be one of "legacy", "current", not "newest"'),
    ({"connectors": [{"id": "a", "space": "team", "connector_type_id": ".index"}]},
     "connectors[0].space: space 'team' is not declared"),
    ({"connectors": [{"id": "a", "connector_type_id": ".index"}, {"id": "a", "connector_type_id": ".index"}]},
     "connectors[1].id: 'a' appears twice"),
    ({"connectors": [{"id": "a", "connector_type_id": ".index", "config": []}]},
     "connectors[0].config: must be a mapping, not a list"),
    ({"rules": [{"id": "r", "space": "elsewhere"}]}, "rules[0].space: space 'elsewhere' is not declared"),
    ({"auth": {"users": ["elastic"]}}, "auth.users: must be a mapping, not a list"),
])
def test_bad_seeds_name_file_and_key(tmp_path: Path, seed: dict[str, Any], fragment: str) -> None:
    import yaml

    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump(seed), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Sandbox.from_seed_file(path)
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: ", str(info.value)), str(info.value)  # file:line:col
    assert fragment in str(info.value)


# ---- fuzz with headers ----------------------------------------------------------------------------------

_HEADERS = st.dictionaries(
    st.sampled_from(["kbn-xsrf", "kbn-version", "content-type", "authorization", "elastic-api-version", "x-other"]),
    st.sampled_from(["", "1", "9.2.0", "8.0.0", "application/json", "text/plain", "application/xml", "Basic !!",
                     "ApiKey k", "Basic ZWxhc3RpYzpjaGFuZ2VtZQ==", "\u00e9"]),
    max_size=5,
)
_PATHS = st.sampled_from([
    "/api/actions/connector", "/api/actions/connector/c1", "/api/actions/connector/c1/_execute",
    "/api/actions/connectors", "/api/actions/connector_types", "/api/alerting/rule/r1", "/api/alerting/rule",
    "/api/alerting/rules/_find", "/api/spaces/space", "/s/team/api/actions/connector/c1", "/s/BAD/api/x", "/",
])
_BODIES = st.one_of(
    st.just(b""), st.binary(max_size=20),
    st.sampled_from([INDEX, {"name": "x"}, {"params": {}}, {"params": {"message": 1}}, {"name": "r", "schedule": {}},
                     {"name": "n", "config": {"url": None}}, [1], "s"]).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]), path=_PATHS, headers=_HEADERS,
       body=_BODIES, with_auth=st.booleans())
def test_fuzz_headers_never_500(method: str, path: str, headers: dict[str, str], body: bytes, with_auth: bool) -> None:
    seed: dict[str, Any] = {"spaces": ["team"], "connectors": [
        {"id": "c1", "space": "default", "connector_type_id": ".server-log"}],
        "rules": [{"id": "r1", "actions": [{"id": "c1"}]}]}
    if with_auth:
        seed["auth"] = {"users": {"elastic": "changeme"}, "api_keys": ["k"]}
    r = Sandbox.from_seed(seed).handle(method, path, "", headers, body)
    assert r.status < 500, (method, path, headers, body, r.body)
    if r.body:
        envelope = r.json()
        if r.status >= 400:
            assert set(envelope) >= {"statusCode", "error", "message"} and envelope["statusCode"] == r.status


# ---- `kcr sandbox` as a process --------------------------------------------------------------------------


def _kcr() -> list[str]:
    exe = shutil.which("kcr", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-c", "from reconciler.cli import main; main()"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_kcr_sandbox_process_answers_and_saves_state_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text("license: gold\nspaces: [team]\n", encoding="utf-8")
    state = tmp_path / "s.json"
    started = time.monotonic()
    proc = subprocess.Popen([*_kcr(), "sandbox", "--port", "0", "--seed", str(seed), "--state", str(state)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = read_line(proc, 10)
        url = line.rsplit(" on ", 1)[-1].split(" ", 1)[0] if " on " in line else ""
        assert url.startswith("http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() is not None and proc.stderr
                                                     else "")
        cid = str(uuid.uuid4())
        with httpx.Client(base_url=url, headers=XSRF, timeout=5) as client:
            assert client.get("/api/actions/connectors").status_code == 200
            # Start-up time is a benchmark figure (bench/), never a test assertion.
            print(f"kcr sandbox answered {time.monotonic() - started:.2f}s after start ({sig.name})")
            assert client.post(f"/s/team/api/actions/connector/{cid}", json=INDEX).status_code == 200
        proc.send_signal(sig)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    saved = json.loads(state.read_text(encoding="utf-8"))
    assert [(c["id"], c["space"]) for c in saved["connectors"]] == [(cid, "team")]
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0, (sig.name, proc.returncode, stderr)  # a clean stop, not -15 or click's abort
    assert "Traceback" not in stderr and "Aborted" not in stderr


def test_an_id_colon_key_api_key_is_accepted_base64_encoded_as_kibana_wants_it() -> None:
    import base64

    import httpx

    from reconciler.sandbox import Sandbox

    sb = Sandbox.from_seed({"auth": {"api_keys": ["key-id:key-secret"]}})
    client = httpx.Client(transport=sb.transport(), base_url="http://kibana.test")
    encoded = base64.b64encode(b"key-id:key-secret").decode()
    def status(key: str) -> int:
        return client.get("/api/actions/connectors", headers={"Authorization": f"ApiKey {key}"}).status_code

    assert status(encoded) == 200
    assert status("key-id:key-secret") == 200
    assert status(base64.b64encode(b"key-id:other").decode()) == 401


def test_status_answers_like_a_started_kibana() -> None:
    import httpx

    from reconciler.sandbox import Sandbox

    client = httpx.Client(transport=Sandbox.from_seed({"kibana_version": "9.1.0"}).transport(),
                          base_url="http://kibana.test")
    body = client.get("/api/status").json()
    assert body["status"]["overall"]["level"] == "available" and body["version"]["number"] == "9.1.0"
