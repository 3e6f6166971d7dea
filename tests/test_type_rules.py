"""Kibana's per-type rules are the product's (`reconciler.type_rules`): `kcr validate` quotes a broken rule
at its connector, and the sandbox answers the same finding as Kibana's 400, word for word."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import catalog, export, type_rules
from reconciler.sandbox import Sandbox
from reconciler.validate import validate

EMAIL_CONFIG = {"from": "a@example.com", "host": "smtp.example.com", "port": 25, "hasAuth": True}
KIBANA_SAYS = "error validating action type connector: [user] is required"


def _repo(root: Path) -> Path:
    (root / "connectors/default").mkdir(parents=True)
    (root / "connectors/default/mail.yaml").write_text(
        "connectors:\n  - id: mail\n    name: Mail\n    type: .email\n"
        "    config: {from: a@example.com, host: smtp.example.com, port: 25, hasAuth: true}\n", encoding="utf-8")
    return root


@pytest.fixture
def kibana() -> Iterator[httpx.Client]:
    sandbox = Sandbox.from_seed(None)
    with httpx.Client(transport=sandbox.transport(), base_url="http://kibana.test",
                      headers={"kbn-xsrf": "kcr-tests"}) as client:
        yield client


def _create(client: httpx.Client, config: dict[str, Any]) -> httpx.Response:
    return client.post("/api/actions/connector", json={"name": "Mail", "connector_type_id": ".email",
                                                        "config": config, "secrets": {}})


def _refusals(root: Path) -> list[str]:
    return [p.message for p in validate(root, env={}).errors]


def test_a_broken_rule_reads_the_same_on_both_sides(tmp_path: Path, kibana: httpx.Client) -> None:
    assert type_rules.connector_rules(".email", EMAIL_CONFIG, EMAIL_CONFIG, {}) == [type_rules.Finding((), KIBANA_SAYS)]
    assert _refusals(_repo(tmp_path)) == [f"Kibana would refuse this connector: {KIBANA_SAYS}"]
    response = _create(kibana, EMAIL_CONFIG)
    assert response.status_code == 400 and response.json()["message"] == KIBANA_SAYS


def test_both_sides_ask_the_rules_module(tmp_path: Path, kibana: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule changed in type_rules alone changes what validate reports and what the sandbox answers."""
    changed = type_rules.Finding((), "error validating action type connector: a rule only type_rules knows")
    monkeypatch.setattr(type_rules, "connector_rules", lambda *args, **kwargs: [changed])
    assert _refusals(_repo(tmp_path)) == [f"Kibana would refuse this connector: {changed.message}"]
    response = _create(kibana, EMAIL_CONFIG)
    assert response.status_code == 400 and response.json()["message"] == changed.message


def test_findings_name_the_field_and_stop_where_kibana_stops() -> None:
    config = {"webhookIntegrationUrl": "not a url"}  # Kibana refuses it twice over; it says so once
    findings = type_rules.part_rules(".torq", "config", config)
    assert [f.path for f in findings] == [("config", "webhookIntegrationUrl")]
    assert findings[0].message.startswith("error validating action type config: error configuring send to Torq")
    assert type_rules.closed_values(".email", {"service": "nope"})[0].path == ("config", "service")
    assert type_rules.part_rules(".torq", "config", {"webhookIntegrationUrl": "https://hooks.torq.io/x"}) == []


def test_a_new_type_of_a_family_is_its_schema_file_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ServiceNow type kcr has never seen, added as one schema file: the family's rule and its
    credential shapes apply with no code."""
    types_dir = tmp_path / "types"
    types_dir.mkdir()
    for path in (catalog.SCHEMA_DIR / "types").glob("*.json"):
        (types_dir / path.name).write_bytes(path.read_bytes())
    raw = json.loads((types_dir / "servicenow.json").read_text(encoding="utf-8"))
    (types_dir / "servicenow-next.json").write_text(json.dumps({**raw, "id": ".servicenow-next"}), encoding="utf-8")
    monkeypatch.setattr(catalog, "SCHEMA_DIR", tmp_path)
    catalog.types.cache_clear()
    try:
        [finding] = type_rules.connector_rules(".servicenow-next", {}, {}, {})
        assert finding.message.endswith("username and password must be set when isOAuth is false")
        assert export.secret_keys_for(".servicenow-next", {"isOAuth": True}) == ("clientSecret", "privateKey")
    finally:
        monkeypatch.undo()
        catalog.types.cache_clear()
