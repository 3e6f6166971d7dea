"""validate(): the report, its text and JSON forms, --resolve-secrets, and types_table."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import pytest
import respx

from reconciler.model import ConnectorTypeInfo
from reconciler.validate import format_problems_json, format_problems_text, types_table, validate


def repo(root: Path, secrets: str = "{routingKey: '${env:PD_KEY}'}") -> Path:
    (root / "connectors" / "default").mkdir(parents=True)
    (root / "connectors" / "default" / "pd.yaml").write_text(
        f"connectors:\n  - id: pd\n    name: PD\n    type: .pagerduty\n    secrets: {secrets}\n"
        "  - id: log\n    name: Log\n    type: .server-log\n")
    (root / "connectors" / "ops").mkdir()
    (root / "connectors" / "ops" / "x.yaml").write_text("connectors: []\n")
    return root


def test_offline_report_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("validate went to the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    report = validate(repo(tmp_path), env={})  # PD_KEY unset: offline validation does not care
    assert report.ok and report.problems == ()
    assert (report.files, report.connectors, report.spaces) == (2, 2, 2)
    text = format_problems_text(report)
    assert text == "2 connectors in 2 files, 2 spaces: valid\n"
    body = json.loads(format_problems_json(report))
    assert body == {"valid": True, "files": 2, "connectors": 2, "spaces": 2, "secrets_resolved": False,
                    "environments": [], "problems": []}


def test_problems_in_text_and_json(tmp_path: Path) -> None:
    report = validate(repo(tmp_path, secrets="{routingKey: plain}"))
    assert not report.ok
    text = format_problems_text(report)
    assert "connectors/default/pd.yaml:5:27: error: secrets.routingKey: plaintext secret" in text
    assert text.rstrip().endswith("2 connectors in 2 files, 2 spaces: 1 error")
    body = json.loads(format_problems_json(report))
    assert body["valid"] is False
    assert body["problems"][0]["file"] == "connectors/default/pd.yaml"
    assert body["problems"][0]["line"] == 5 and body["problems"][0]["path"] == "connectors[0].secrets.routingKey"


def test_resolve_secrets_reports_unset_variables(tmp_path: Path) -> None:
    report = validate(repo(tmp_path), resolve_secrets=True, env={})
    assert not report.ok and report.secrets_resolved
    [problem] = report.errors
    assert "environment variable PD_KEY is not set" in problem.message
    assert "default/pd (connectors/default/pd.yaml)" in problem.message
    assert (problem.file, problem.line) == ("connectors/default/pd.yaml", 5)


def test_resolve_secrets_ok_and_canary_free(tmp_path: Path) -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    report = validate(repo(tmp_path), resolve_secrets=True, env={"PD_KEY": canary})
    assert report.ok
    assert canary not in format_problems_text(report) + format_problems_json(report)


def test_resolve_vault_failure_is_a_problem(tmp_path: Path) -> None:
    root = repo(tmp_path, secrets="{routingKey: '${vault:secret/pd#key}'}")
    env = {"VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "t"}
    with respx.mock(base_url="http://127.0.0.1:8200", assert_all_called=False) as mock:
        mock.get(url__regex=r"/v1/sys/internal/ui/mounts/.*").respond(404, json={"errors": []})
        mock.get("/v1/secret/data/pd").respond(403, json={"errors": ["1 error occurred:\n\t* permission denied\n\n"]})
        report = validate(root, resolve_secrets=True, env=env)
    [problem] = report.errors
    assert "permission denied" in problem.message and "${vault:secret/pd#key}" in problem.message


def test_types_table_offline_and_live() -> None:
    rows = {r["id"]: r for r in types_table()}
    assert rows[".jira"]["required_config"] == ["apiUrl", "projectKey"]
    assert rows[".jira"]["required_secrets"] == ["email", "apiToken"]
    assert rows[".slack"]["minimum_license"] == "gold"
    assert rows[".cases"]["system_action"] is True
    assert "enabled" not in rows[".slack"]
    live = {".slack": ConnectorTypeInfo(".slack", "Slack", enabled=True, enabled_in_license=False),
            ".custom": ConnectorTypeInfo(".custom", "Custom", minimum_license_required="platinum")}
    rows = {r["id"]: r for r in types_table(live)}
    assert rows[".slack"]["enabled_in_license"] is False and rows[".slack"]["in_kibana"] is True
    assert rows[".jira"]["in_kibana"] is False and rows[".jira"]["enabled"] is False
    assert rows[".custom"]["known"] is False and rows[".custom"]["minimum_license"] == "platinum"


def test_config_text_that_only_looks_like_a_reference_is_left_alone(tmp_path: Path) -> None:
    """Only a registered scheme is refused outside `secrets`: a template language's `${...}` or an
    escaped `$${env:..}` in config is ordinary text Kibana should receive as written."""
    (tmp_path / "connectors" / "default").mkdir(parents=True)
    (tmp_path / "connectors" / "default" / "log.yaml").write_text(
        "connectors:\n  - id: idx\n    name: 'Index ${context.rule}'\n    type: .index\n"
        "    config: {index: 'alerts-$${env:X}-${unknown:y}'}\n")
    report = validate(tmp_path, env={})
    assert report.ok, format_problems_text(report)
