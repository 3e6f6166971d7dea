"""The connector types bundled from current Kibana main (issue #14): `.http`, the spec connectors
`.slack2` and `.jira-cloud`, and the system types `.http-system` and `.observability-ai-assistant`.
Each regular type validates a good example and refuses a bad one naming the field; the system types are
refused by `kcr validate` as every system action is, and by the sandbox in Kibana's words; `kcr types`
lists them with their licences. (No perpetual diff: their variants in test_no_perpetual_diff.py.)

Kibana sources: src/platform/packages/shared/kbn-connector-schemas/http/schemas/v1.ts,
x-pack/platform/plugins/shared/stack_connectors/server/connector_types/http/{http_connector,validations}.ts,
src/platform/packages/shared/kbn-connector-specs/src/specs/{slack/slack,atlassian/jira-cloud/jira}.ts,
x-pack/platform/plugins/shared/actions/server/lib/single_file_connectors/create_connector_from_spec.ts,
x-pack/solutions/observability/plugins/observability_ai_assistant_app/server/rule_connector/index.ts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers.cli import run_main

from reconciler import catalog
from reconciler.sandbox import Sandbox
from reconciler.validate import format_problems_text, validate

NEW_TYPES = {".http": "gold", ".slack2": "enterprise", ".jira-cloud": "enterprise",
             ".http-system": "gold", ".observability-ai-assistant": "enterprise"}
SYSTEM = (".http-system", ".observability-ai-assistant")
REF = "${env:NT_SECRET}"


def _repo(root: Path, connector: dict[str, Any]) -> Path:
    (root / "connectors" / "default").mkdir(parents=True)
    doc = {"connectors": [{"id": "c1", "name": "C1", **connector}]}
    (root / "connectors" / "default" / "c.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return root


GOOD: dict[str, dict[str, Any]] = {
    "http-no-auth": {"type": ".http", "config": {"url": "https://api.example.com", "hasAuth": False}},
    "http-basic": {"type": ".http", "config": {"url": "https://api.example.com", "headers": {"X-Team": "sre"}},
                   "secrets": {"user": REF, "password": REF}},
    "http-oauth2": {"type": ".http", "config": {"url": "https://api.example.com", "hasAuth": True,
                                                "authType": "webhook-oauth2-client-credentials",
                                                "accessTokenUrl": "https://login.example.com/token",
                                                "clientId": "c", "additionalFields": '{"audience": "x"}'},
                    "secrets": {"clientSecret": REF}},
    "slack2": {"type": ".slack2", "secrets": {"authType": REF, "token": REF}},
    "jira-cloud": {"type": ".jira-cloud", "config": {"subdomain": "acme", "selectedActions": ["createIssue"]},
                   "secrets": {"authType": REF, "username": REF, "password": REF}},
}

# (connector, the field the message must name, a phrase of the message)
BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    "http-unknown-key": ({"type": ".http", "config": {"url": "https://a.example.com", "method": "post"}},
                         "config", "unknown key 'method'"),
    "http-no-url": ({"type": ".http", "config": {"hasAuth": False}}, "config", "url"),
    "http-auth-type-without-auth": ({"type": ".http", "config": {"url": "https://a.example.com", "hasAuth": False,
                                                                 "authType": "webhook-authentication-basic"}},
                                    "config", "authType must be null or undefined if hasAuth is false"),
    "http-additional-fields": ({"type": ".http", "config": {"url": "https://a.example.com", "hasAuth": False,
                                                            "additionalFields": "[1]"}},
                               "config", "additionalFields must be a valid JSON object"),
    "http-oauth2-missing": ({"type": ".http", "config": {"url": "https://a.example.com",
                                                         "authType": "webhook-oauth2-client-credentials",
                                                         "accessTokenUrl": "https://login.example.com/t"},
                             "secrets": {"clientSecret": REF}},
                            "config", "missing Client ID (clientId) fields"),
    "http-bad-secrets": ({"type": ".http", "config": {"url": "https://a.example.com"},
                          "secrets": {"user": REF, "token": REF}}, "secrets", "unknown key 'token'"),
    "slack2-no-auth-type": ({"type": ".slack2", "secrets": {"token": REF}}, "secrets", "authType"),
    "slack2-no-token": ({"type": ".slack2", "secrets": {"authType": REF}}, "secrets", "token"),
    "jira-cloud-no-subdomain": ({"type": ".jira-cloud", "config": {"cloudId": "x"},
                                 "secrets": {"authType": REF, "username": REF, "password": REF}},
                                "config", "subdomain"),
    "jira-cloud-empty-selection": ({"type": ".jira-cloud", "config": {"subdomain": "acme", "selectedActions": []},
                                    "secrets": {"authType": REF, "username": REF, "password": REF}},
                                   "config.selectedActions", "selectedActions"),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_example_validates(name: str, tmp_path: Path) -> None:
    report = validate(_repo(tmp_path, GOOD[name]), env={})
    assert report.ok, format_problems_text(report)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_example_is_refused_naming_the_field(name: str, tmp_path: Path) -> None:
    connector, field, phrase = BAD[name]
    report = validate(_repo(tmp_path, connector), env={})
    text = format_problems_text(report)
    assert not report.ok, text
    assert field in text and phrase in text, text


@pytest.mark.parametrize("type_id", SYSTEM)
def test_system_types_are_refused_like_every_system_action(type_id: str, tmp_path: Path) -> None:
    report = validate(_repo(tmp_path, {"type": type_id}), env={})
    text = format_problems_text(report)
    assert not report.ok and f"{type_id} is a system action: Kibana provides it and refuses to create one" in text
    # Kibana's answer (actions create.ts), as the sandbox gives it.
    client = httpx.Client(transport=Sandbox.from_seed({"license": "trial"}).transport(), base_url="http://kibana.test")
    resp = client.post("/api/actions/connector", headers={"kbn-xsrf": "true"},
                       json={"name": "x", "connector_type_id": type_id, "config": {}, "secrets": {}})
    assert resp.status_code == 400
    assert resp.json()["message"] == f"System action creation is forbidden. Action type: {type_id}."


def test_kcr_types_lists_the_new_types_with_licences(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, ["types", "--format", "json"], env={"NO_COLOR": "1"})
    assert code == 0, out
    body = json.loads(out)
    rows = {r["id"]: r for r in (body if isinstance(body, list) else body["types"])}
    for type_id, licence in NEW_TYPES.items():
        assert rows[type_id]["minimum_license"] == licence, rows.get(type_id)
    assert {t for t in SYSTEM if rows[t]["system_action"]} == set(SYSTEM)


def test_every_new_type_names_its_kibana_source() -> None:
    readme = (Path(catalog.SCHEMA_DIR) / "README.md").read_text(encoding="utf-8")
    for type_id in NEW_TYPES:
        ct = catalog.get(type_id)
        assert ct is not None
        raw = json.loads(next(p for p in (Path(catalog.SCHEMA_DIR) / "types").glob("*.json")
                              if json.loads(p.read_text(encoding="utf-8"))["id"] == type_id).read_text("utf-8"))
        assert raw["source"].startswith("elastic/kibana:") and raw["source"] in raw["sources"]
        assert any(line.startswith("| `types/") and f"| `{type_id}`" in line and f"`{raw['source']}` |" in line
                   for line in readme.splitlines()), type_id
