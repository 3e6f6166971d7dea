"""Malformed requests that once got a 500 or were silently accepted, referenced_by_count per rule, URL
parsing before the allowed-hosts check, secrets kept out of messages, JS `trim`, ICU-like ordering and
connector types in registration order."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from reconciler import catalog
from reconciler.sandbox import Sandbox
from reconciler.sandbox.collation import collation_key
from reconciler.sandbox.connectors import TYPE_ORDER

ClientFactory = Callable[..., tuple[Sandbox, httpx.Client]]  # the `sandbox_client` fixture (conftest.py)

INDEX = {"name": "Index", "connector_type_id": ".index", "config": {"index": "logs"}}


def _rule(**extra: Any) -> dict[str, Any]:
    return {"name": "r", "rule_type_id": ".index-threshold", "consumer": "alerts", "schedule": {"interval": "1m"},
            "params": {}, **extra}


def _message(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["message"]


# ---- 1. wrong-typed rule fields ---------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "message"), [
    ({"tags": 5}, "[request body.tags]: expected value of type [array] but got [number]"),
    ({"tags": "a"}, "[request body.tags]: expected value of type [array] but got [string]"),
    ({"tags": ["ok", 1]}, "[request body.tags.1]: expected value of type [string] but got [number]"),
    ({"enabled": "no"}, "[request body.enabled]: expected value of type [boolean] but got [string]"),
    ({"enabled": 0}, "[request body.enabled]: expected value of type [boolean] but got [number]"),
])
def test_create_rule_refuses_wrong_typed_tags_and_enabled(sandbox_client: ClientFactory, extra: dict[str, Any],
                                                          message: str) -> None:
    sb, c = sandbox_client()
    assert _message(c.post("/api/alerting/rule", json=_rule(**extra))) == (400, message)
    assert sb.counters.get("POST create_rule") == 1 and not c.get("/api/alerting/rules/_find").json()["data"]


def test_create_rule_keeps_valid_tags_and_enabled(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client()
    r = c.post("/api/alerting/rule", json=_rule(tags=["a", "b"], enabled=False))
    assert r.status_code == 200, r.text
    assert (r.json()["tags"], r.json()["enabled"], r.json()["scheduled_task_id"]) == (["a", "b"], False, None)


@pytest.mark.parametrize(("params", "got"), [(5, "number"), ("x", "string"), ([1, 2], "Array"), (None, "null")])
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_rule_action_params_must_be_an_object(sandbox_client: ClientFactory, params: Any, got: str,
                                              method: str) -> None:
    cid = str(uuid.uuid4())
    _, c = sandbox_client({"connectors": [{"id": cid, "name": "c", "connector_type_id": ".index",
                                           "config": {"index": "i"}}],
                           "rules": [{"id": "r1", "name": "r", "actions": []}]})
    actions = [{"id": cid, "group": "default", "params": {}}, {"id": cid, "group": "default", "params": params}]
    if method == "POST":
        r = c.post("/api/alerting/rule", json=_rule(actions=actions))
    else:
        body = {k: val for k, val in _rule(actions=actions).items() if k not in ("rule_type_id", "consumer")}
        r = c.put("/api/alerting/rule/r1", json=body)
    assert _message(r) == (400, f"[request body.actions.1.params]: expected value of type [object] but got [{got}]")


def test_gen_ai_unparsable_api_url_is_a_400(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client()
    body = {"name": "ai", "connector_type_id": ".gen-ai", "config": {"apiProvider": "OpenAI", "apiUrl": "http://[x"},
            "secrets": {"apiKey": "k"}}
    status, message = _message(c.post("/api/actions/connector", json=body))
    assert status == 400
    assert message.startswith("error validating action type config: ")


# ---- 2. referenced_by_count -------------------------------------------------------------------------------


def test_referenced_by_count_counts_each_rule_once_per_connector(sandbox_client: ClientFactory) -> None:
    cid, other = str(uuid.uuid4()), str(uuid.uuid4())
    seed = {"connectors": [{"id": i, "name": n, "connector_type_id": ".index", "config": {"index": "i"}}
                           for i, n in ((cid, "a"), (other, "b"))],
            "rules": [{"id": "r1", "actions": [{"id": cid}, {"id": cid, "group": "recovered"}, {"id": other}]},
                      {"id": "r2", "actions": [{"id": cid}]}]}
    _, c = sandbox_client(seed)
    counts = {x["id"]: x["referenced_by_count"] for x in c.get("/api/actions/connectors").json()}
    assert counts == {cid: 2, other: 1}


# ---- 3./4. URLs must parse; secrets never echoed ------------------------------------------------------------

JIRA_SECRETS = {"email": "e@example.com", "apiToken": "t"}


@pytest.mark.parametrize(("body", "message"), [
    ({"connector_type_id": ".webhook", "config": {"url": "not a url"}, "secrets": {"user": "u", "password": "p"}},
     "error validating action type config: error validation webhook action config: unable to parse url: "
     "TypeError: Invalid URL: not a url"),
    ({"connector_type_id": ".webhook", "config": {"url": "http://[::1"}, "secrets": {"user": "u", "password": "p"}},
     "error validating action type config: error validation webhook action config: unable to parse url: "
     "TypeError: Invalid URL: http://[::1"),
    ({"connector_type_id": ".slack", "secrets": {"webhookUrl": "not a url"}},
     "error validating action type secrets: error configuring slack action: unable to parse host name from "
     "webhookUrl"),
    ({"connector_type_id": ".jira", "config": {"apiUrl": "garbage", "projectKey": "P"}, "secrets": JIRA_SECRETS},
     "error validating action type config: error validating url: [apiUrl]: TypeError: Invalid URL: garbage"),
    ({"connector_type_id": ".jira", "config": {"apiUrl": "https://a b.example", "projectKey": "P"},
      "secrets": JIRA_SECRETS},
     "error validating action type config: error validating url: [apiUrl]: TypeError: Invalid URL: "
     "https://a b.example"),
])
def test_unparsable_urls_are_refused_even_when_every_host_is_allowed(sandbox_client: ClientFactory,
                                                                     body: dict[str, Any], message: str) -> None:
    sb, c = sandbox_client()
    assert _message(c.post("/api/actions/connector", json={"name": "n", **body})) == (400, message)
    assert sb.connectors_in("default") == []


@pytest.mark.parametrize("body", [
    {"connector_type_id": ".webhook", "config": {"url": "https://hooks.example.com:8443/x?y=1"},
     "secrets": {"user": "u", "password": "p"}},
    {"connector_type_id": ".slack", "secrets": {"webhookUrl": "https://hooks.slack.com/services/T/B/X"}},
    {"connector_type_id": ".jira", "config": {"apiUrl": "http://[::1]:8080", "projectKey": "P"},
     "secrets": JIRA_SECRETS},
    {"connector_type_id": ".email", "config": {"from": "a@example.com", "host": "smtp.example.com", "port": 25,
                                               "hasAuth": False}},
])
def test_parsable_urls_still_pass(sandbox_client: ClientFactory, body: dict[str, Any]) -> None:
    _, c = sandbox_client()
    r = c.post("/api/actions/connector", json={"name": "n", **body})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("template", ["not a url {c}", "{c}", "mailto:{c}@example.com", "https://[{c}"])
@pytest.mark.parametrize("type_id", [".slack", ".teams"])
def test_secret_urls_never_reach_the_message(sandbox_client: ClientFactory, template: str, type_id: str) -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    _, c = sandbox_client({"allowed_hosts": ["h.example"]})
    r = c.post("/api/actions/connector", json={"name": "n", "connector_type_id": type_id,
                                               "secrets": {"webhookUrl": template.format(c=canary)}})
    assert r.status_code == 400
    assert canary not in r.text
    assert r.json()["message"].endswith("unable to parse host name from webhookUrl"), r.text


def test_secret_host_not_allowed_names_the_origin_only(sandbox_client: ClientFactory) -> None:
    """slack/index.ts validateConnectorTypeSecrets: ensureUriAllowed(webhookUrl), wrapped `error configuring
    slack action: `; Kibana quotes the whole URL, the sandbox its origin (the path is the credential)."""
    canary = f"CANARY-{uuid.uuid4()}"
    _, c = sandbox_client({"allowed_hosts": ["h.example"]})
    r = c.post("/api/actions/connector", json={"name": "n", "connector_type_id": ".slack",
                                               "secrets": {"webhookUrl": f"https://other.example/{canary}"}})
    assert _message(r) == (400, 'error validating action type secrets: error configuring slack action: target url '
                                '"https://other.example/[redacted]" is not added to the Kibana config '
                                "xpack.actions.allowedHosts")
    assert canary not in r.text


# ---- 5. JS trim ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["\ufeff", " \u3000\u2028\ufeff\t"])
def test_js_whitespace_names_are_blank(sandbox_client: ClientFactory, name: str) -> None:
    _, c = sandbox_client()
    assert _message(c.post("/api/actions/connector", json={**INDEX, "name": name})) == (
        400, "[request body.name]: value '' is not valid")


@pytest.mark.parametrize("name", ["\x1c", "\x1d", "\x1e", "\x1f", "\x85"])
def test_python_only_whitespace_is_not_blank(sandbox_client: ClientFactory, name: str) -> None:
    _, c = sandbox_client()
    r = c.post("/api/actions/connector", json={**INDEX, "name": name, "config": {"index": "i" + name}})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == name


# ---- 6. localeCompare -----------------------------------------------------------------------------------------

ICU_ORDER = [*"_-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$", "0", "9", "a", "z"]


def test_get_all_orders_punctuation_symbols_digits_letters_like_icu(sandbox_client: ClientFactory) -> None:
    names = [f"{ch}x" for ch in ICU_ORDER]
    shuffled = names[1::2] + names[::2]
    _, c = sandbox_client({"connectors": [{"id": str(uuid.uuid4()), "name": n, "connector_type_id": ".index",
                                           "config": {"index": "i"}} for n in shuffled]})
    assert [x["name"] for x in c.get("/api/actions/connectors").json()] == names


def test_accents_are_secondary_and_case_tertiary() -> None:
    words = ["Résumé", "resumes", "résumé", "Resume", "resume", "resume!"]
    assert sorted(words, key=collation_key) == ["resume", "Resume", "résumé", "Résumé", "resume!", "resumes"]
    assert sorted(["b", "é", "A", "B", "a", "E", "e"], key=collation_key) == ["a", "A", "b", "B", "e", "E", "é"]
    assert sorted(["a 1", "a1", "a-1", "a_1"], key=collation_key) == ["a 1", "a_1", "a-1", "a1"]


# ---- 7. registration order ----------------------------------------------------------------------------------


def test_connector_types_in_registration_order(sandbox_client: ClientFactory) -> None:
    _, c = sandbox_client()
    ids = [t["id"] for t in c.get("/api/actions/connector_types").json()]
    expected = [t for t in TYPE_ORDER if t in catalog.types() and not catalog.types()[t].is_system_action]
    expected += sorted(t for t, ct in catalog.types().items() if t not in TYPE_ORDER and not ct.is_system_action)
    assert ids == expected
    assert ids[:5] == [".email", ".slack", ".slack_api", ".pagerduty", ".jira"]


def test_type_order_matches_the_catalogue_ids() -> None:
    assert sorted(TYPE_ORDER) == sorted(catalog.types()), json.dumps(sorted(catalog.types()))
