"""The alerting rules slice: enough for rules to reference connectors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from reconciler.sandbox import Sandbox

ClientFactory = Callable[..., tuple[Sandbox, httpx.Client]]  # the `sandbox_client` fixture (conftest.py)


PRE = {"pre-slack": {"name": "Pre", "actionTypeId": ".slack", "secrets": {"webhookUrl": "https://x.example"}}}


def rule(*connector_ids: str, name: str = "cpu") -> dict[str, Any]:
    return {"name": name, "rule_type_id": ".index-threshold", "consumer": "alerts", "schedule": {"interval": "1m"},
            "params": {}, "actions": [{"id": c, "group": "threshold met", "params": {"message": "hi"}}
                                      for c in connector_ids]}


def make(sandbox_client: ClientFactory) -> tuple[Any, Any, str]:
    sb, c = sandbox_client({"spaces": ["team"], "preconfigured": PRE})
    cid = c.post("/api/actions/connector", json={"name": "i", "connector_type_id": ".index",
                                                 "config": {"index": "x"}}).json()["id"]
    return sb, c, cid


def test_create_get_delete_rule(sandbox_client: ClientFactory) -> None:
    _, c, cid = make(sandbox_client)
    r = c.post("/api/alerting/rule/rule-1", json=rule(cid))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "rule-1" and body["rule_type_id"] == ".index-threshold"
    action = body["actions"][0]
    assert (action["id"], action["group"], action["params"], action["connector_type_id"]) == (
        cid, "threshold met", {"message": "hi"}, ".index")
    assert c.get("/api/alerting/rule/rule-1").json()["name"] == "cpu"
    assert c.get("/s/team/api/alerting/rule/rule-1").status_code == 404
    assert c.post("/s/team/api/alerting/rule/rule-1", json=rule()).status_code == 409
    assert c.delete("/api/alerting/rule/rule-1").status_code == 204
    r = c.get("/api/alerting/rule/rule-1")
    assert (r.status_code, r.json()["message"]) == (404, "Saved object [alert/rule-1] not found")


def test_rule_refuses_connectors_of_other_spaces(sandbox_client: ClientFactory) -> None:
    _, c, cid = make(sandbox_client)
    r = c.post("/s/team/api/alerting/rule", json=rule(cid))
    assert r.status_code == 400 and cid in r.json()["message"]
    assert c.post("/s/team/api/alerting/rule", json=rule("pre-slack")).status_code == 200
    assert c.post("/api/alerting/rule", json={"name": "x"}).status_code == 400


def test_find_has_reference_and_counts(sandbox_client: ClientFactory) -> None:
    _, c, cid = make(sandbox_client)
    other = c.post("/api/actions/connector", json={"name": "o", "connector_type_id": ".index",
                                                   "config": {"index": "y"}}).json()["id"]
    for i in range(3):
        c.post("/api/alerting/rule", json=rule(cid, name=f"r{i}"))
    c.post("/api/alerting/rule", json=rule(other, "pre-slack"))
    ref = json.dumps({"type": "action", "id": cid})
    found = c.get("/api/alerting/rules/_find", params={"has_reference": ref, "per_page": 2}).json()
    assert (found["page"], found["per_page"], found["total"], len(found["data"])) == (1, 2, 3, 2)
    page2 = c.get("/api/alerting/rules/_find", params={"has_reference": ref, "per_page": 2, "page": 2}).json()
    assert len(page2["data"]) == 1
    assert {r["name"] for r in found["data"] + page2["data"]} == {"r0", "r1", "r2"}
    pre = json.dumps({"type": "action", "id": "pre-slack"})
    assert c.get("/api/alerting/rules/_find", params={"has_reference": pre}).json()["total"] == 0
    assert c.get("/s/team/api/alerting/rules/_find", params={"has_reference": ref}).json()["total"] == 0
    assert c.get("/api/alerting/rules/_find", params={"has_reference": "{bad"}).status_code == 400
    counts = {x["id"]: x["referenced_by_count"] for x in c.get("/api/actions/connectors").json()}
    assert counts == {cid: 3, other: 1, "pre-slack": 0}
    # Kibana deletes a referenced connector anyway (api-behaviour §6)
    assert c.delete(f"/api/actions/connector/{cid}").status_code == 204


def test_find_without_filter_lists_space_rules(sandbox_client: ClientFactory) -> None:
    _, c, cid = make(sandbox_client)
    rid = str(uuid.uuid4())
    c.post(f"/api/alerting/rule/{rid}", json=rule(cid))
    assert [r["id"] for r in c.get("/api/alerting/rules/_find").json()["data"]] == [rid]
