"""Kibana's per-type rules are the product's (`reconciler.type_rules`): `kcr validate` quotes a broken rule
at its connector, and the sandbox answers the same finding as Kibana's 400, word for word."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
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


@pytest.fixture
def add_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """A catalogue of the shipped types plus the ones a test adds: `add_type(copy_of, id, edit)` writes a
    copy of `copy_of`'s schema file under the new id, after `edit` (if any) changed its data."""
    types_dir = tmp_path / "types"
    types_dir.mkdir()
    for path in (catalog.SCHEMA_DIR / "types").glob("*.json"):
        (types_dir / path.name).write_bytes(path.read_bytes())

    def add(copy_of: str, type_id: str, edit: Callable[[dict[str, Any]], None] | None = None) -> None:
        raw = json.loads((types_dir / f"{copy_of}.json").read_text(encoding="utf-8"))
        raw["id"] = type_id
        if edit is not None:
            edit(raw)
        (types_dir / f"{type_id.lstrip('.')}.json").write_text(json.dumps(raw), encoding="utf-8")
        catalog.types.cache_clear()

    monkeypatch.setattr(catalog, "SCHEMA_DIR", tmp_path)
    catalog.types.cache_clear()
    try:
        yield add
    finally:
        monkeypatch.undo()
        catalog.types.cache_clear()


def test_a_new_type_of_a_family_is_its_schema_file_alone(add_type: Callable[..., None]) -> None:
    """A ServiceNow type kcr has never seen, added as one schema file: the family's rule and its
    credential shapes apply with no code."""
    add_type("servicenow", ".servicenow-next")
    [finding] = type_rules.connector_rules(".servicenow-next", {}, {}, {})
    assert finding.message.endswith("username and password must be set when isOAuth is false")
    assert export.secret_keys_for(".servicenow-next", {"isOAuth": True}) == ("clientSecret", "privateKey")


def test_a_new_type_gets_its_schema_declared_data_rules(add_type: Callable[..., None]) -> None:
    """A type in no family and with no entry in `type_rules.RULES`: the URL facts and read-as-sent keys
    its schema file declares (schemas/README) are checked with no code."""
    def fixed_url(raw: dict[str, Any]) -> None:
        raw["secrets"]["x-kibana-fixed-urls"] = ["https://api.chat.example/v1/"]

    def parse_message(raw: dict[str, Any]) -> None:
        raw["secrets"]["properties"]["webhookUrl"]["x-kibana-url-parse-message"] = "chat-next: no host in {key}"

    add_type("slack_api", ".chat-next", fixed_url)
    add_type("teams", ".hook-next", parse_message)
    add_type("xmatters", ".pager-next")
    assert ".chat-next" not in type_rules.RULES and catalog.family(".chat-next") == ".chat-next"

    [refused] = type_rules.part_rules(".chat-next", "secrets", {"token": "t"}, ["slack.com"])
    assert refused == type_rules.Finding(("secrets",), "error validating action type secrets: target hostname "
                                         '"api.chat.example" is not added to the Kibana config '
                                         "xpack.actions.allowedHosts")
    assert type_rules.part_rules(".chat-next", "secrets", {"token": "t"}, ["api.chat.example"]) == []
    [unparsable] = type_rules.part_rules(".hook-next", "secrets", {"webhookUrl": "not a url"})
    assert unparsable.message == "error validating action type secrets: chat-next: no host in webhookUrl"
    [omitted] = type_rules.offline_rules(".pager-next").stored_differently({"configUrl": "https://x.example"})
    assert omitted.message.startswith("config.usesBasic: set it explicitly")
