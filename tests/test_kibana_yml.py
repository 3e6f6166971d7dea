"""Issue #17: one repository, both ways. Connectors the files place in kibana.yml (`preconfigured`) are
rendered by `kcr render kibana-yml`, seeded into the sandbox as its `preconfigured` (kibana.yml's
shape), and then planned clean; a rename in the files is drift (exit 2) and never an API write. Secrets
reach the keystore script, the ECK Secret or the kibana.yml only where asked (canaries), and
`kcr render allowed-hosts` is exactly the allowlist the declared connectors need."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers.cli import World, write_repo

from reconciler import render_kibana
from reconciler.desired import load_repository
from reconciler.model import derive_connector_id
from reconciler.sandbox import Sandbox
from reconciler.secrets import SecretResolver

KIBANA = "http://kibana.test"
CANARIES = {"SLACK_URL": "https://hooks.slack.com/services/CANARY-slack-5e1", "JIRA_TOKEN": "CANARY-jira-77a",
            "TEAMS_URL": "https://acme.webhook.office.com/CANARY-teams-9b2", "PD_KEY": "12345"}
ENV = {"KIBANA_URL": KIBANA, "KCR_FINGERPRINT_KEY": "k" * 32, "NO_COLOR": "1", "JIRA_EMAIL": "ops@example.com",
       **CANARIES}
SECRET_VALUES = [v for v in CANARIES.values() if "CANARY" in v]
TEAMS = derive_connector_id("default", "teams-pre")
PAGER = derive_connector_id("default", "pager-oncall")
PREFIX = "xpack.actions.preconfigured"

REPO = {
    "kcr.yaml": """\
environments:
  staging: {}
  production:
    preconfigured: ["pager-*"]
""",
    "connectors/default/chat.yaml": """\
connectors:
  - id: slack-api
    name: Slack API
    type: .slack
    secrets:
      webhookUrl: ${env:SLACK_URL}
  - id: jira-api
    name: Jira
    type: .jira
    config:
      apiUrl: https://acme.atlassian.net
      projectKey: OPS
    secrets:
      email: ${env:JIRA_EMAIL}
      apiToken: ${env:JIRA_TOKEN}
  - id: teams-pre
    name: Teams preconfigured
    type: .teams
    preconfigured: true
    secrets:
      webhookUrl: ${env:TEAMS_URL}
  - id: pager-oncall
    name: PagerDuty on call
    type: .pagerduty
    secrets:
      routingKey: ${env:PD_KEY}
""",
}


def _world(tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: dict[str, Any] | None = None) -> World:
    repo = tmp_path / "repo"
    if not repo.exists():
        write_repo(repo, REPO)
    return World(repo, dict(ENV), Sandbox.from_seed(seed or {}), capsys)


def _render(w: World, tmp_path: Path, *extra: str) -> tuple[dict[str, Any], str, str, str]:
    """(the preconfigured block, the kibana.yml text, stdout, stderr) of `kcr render kibana-yml`."""
    out_file = tmp_path / "kibana.yml"
    code, out, err = w.kcr("render", "kibana-yml", "--env", "production", "-o", str(out_file), *extra)
    assert code == 0, err
    text = out_file.read_text(encoding="utf-8")
    return yaml.safe_load(text)[PREFIX], text, out, err


def _live(sb: Sandbox) -> list[dict[str, Any]]:
    with httpx.Client(transport=sb.transport(), base_url=KIBANA) as client:
        answer = client.get("/api/actions/connectors")
        assert answer.status_code == 200
        return list(answer.json())


def test_rendered_block_seeds_a_kibana_that_plans_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    block, text, script, _ = _render(_world(tmp_path, capsys), tmp_path)
    assert set(block) == {TEAMS, PAGER}  # keyed by Kibana id; the two API connectors are not in it
    assert block[PAGER] == {"name": "PagerDuty on call", "actionTypeId": ".pagerduty"}
    assert not any(value in text for value in CANARIES.values())  # no secret in kibana.yml, not even "12345"
    assert f"{PREFIX}.{TEAMS}.secrets.webhookUrl" in script and f"{PREFIX}.{PAGER}.secrets.routingKey" in script
    w = _world(tmp_path, capsys, {"preconfigured": block})
    listed = {c["id"]: c for c in _live(w.sb)}
    assert {TEAMS, PAGER} <= set(listed) and listed[TEAMS]["is_preconfigured"] and listed[PAGER]["is_preconfigured"]
    code, _, err = w.kcr("apply", "--env", "production", "--auto-approve")  # the two API connectors
    assert code == 0, err
    assert {c["id"] for c in w.sb.connectors_in("default")} == {derive_connector_id("default", k)
                                                               for k in ("slack-api", "jira-api")}
    code, out, err = w.kcr("plan", "--env", "production", "--detailed-exitcode")
    assert code == 0, out + err
    assert "drift" not in out


def test_a_rename_in_the_files_is_drift_never_a_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    block, *_ = _render(_world(tmp_path, capsys), tmp_path)
    w = _world(tmp_path, capsys, {"preconfigured": block})
    assert w.kcr("apply", "--env", "production", "--auto-approve")[0] == 0
    chat = w.repo / "connectors/default/chat.yaml"
    chat.write_text(chat.read_text().replace("PagerDuty on call", "PagerDuty primary"), encoding="utf-8")
    code, out, _ = w.kcr("plan", "--env", "production", "--detailed-exitcode")
    assert code == 2
    assert "drift" in out and "'PagerDuty on call' in Kibana, 'PagerDuty primary' in the files" in out
    assert w.kcr("drift", "--env", "production")[0] == 2
    code, out, _ = w.kcr("plan", "--env", "production", "--format", "json")
    problems = json.loads(out)["problems"]
    assert [(p["id"], p["severity"]) for p in problems] == [(PAGER, "drift")]
    w.sb.reset_counters()
    assert w.kcr("apply", "--env", "production", "--auto-approve")[0] == 0
    assert not any(k.startswith(("POST", "PUT", "DELETE")) and v for k, v in w.sb.counters.items()), w.sb.counters
    assert {c["id"]: c["name"] for c in _live(w.sb)}[PAGER] == "PagerDuty on call"


def test_a_missing_preconfigured_connector_is_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    block, *_ = _render(_world(tmp_path, capsys), tmp_path)
    w = _world(tmp_path, capsys, {"preconfigured": {TEAMS: block[TEAMS]}})
    assert w.kcr("apply", "--env", "production", "--auto-approve")[0] == 0
    code, out, _ = w.kcr("plan", "--env", "production", "--detailed-exitcode")
    assert code == 2 and "does not list it" in out and PAGER in out
    assert PAGER not in {c["id"] for c in w.sb.connectors_in("default")}  # never created through the API


def test_the_environment_decides_and_a_connector_may_overrule(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", REPO)
    placed = {s.key: s.preconfigured for s in load_repository(repo, env=ENV, environment="staging")
              .spaces["default"].connectors}
    assert placed == {"slack-api": False, "jira-api": False, "teams-pre": True, "pager-oncall": False}
    chat = repo / "connectors/default/chat.yaml"
    chat.write_text(chat.read_text() + "    preconfigured: false\n", encoding="utf-8")
    production = load_repository(repo, env=ENV, environment="production").spaces["default"].connectors
    assert {s.key: s.preconfigured for s in production}["pager-oncall"] is False


# --- secrets: where asked, nowhere else -------------------------------------------------------------------


def test_keystore_script_holds_no_value_and_feeds_the_keystore(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys)
    _, text, script, err = _render(w, tmp_path)
    assert not any(v in script + err + text for v in CANARIES.values())
    keystore = tmp_path / "fake-keystore"  # records what `add --stdin --force SETTING` reads, per setting
    keystore.write_text('#!/bin/sh\n[ "$1 $2 $3" = "add --stdin --force" ] || exit 9\ncat > "$0.$4"\n')
    keystore.chmod(keystore.stat().st_mode | stat.S_IXUSR)
    for setting, expected in ((f"{PREFIX}.{TEAMS}.secrets.webhookUrl", CANARIES["TEAMS_URL"]),
                              (f"{PREFIX}.{PAGER}.secrets.routingKey", '"12345"')):  # JSON-quoted: stays a string
        assert setting in script
        code, out, err = w.kcr("render", "keystore-value", "--env", "production", "--keystore", str(keystore), setting)
        assert code == 0, err
        assert out == "" and not any(v in err for v in SECRET_VALUES)
        assert Path(f"{keystore}.{setting}").read_text() == expected
    code, out, err = w.kcr("render", "keystore-value", "--env", "production", f"{PREFIX}.{TEAMS}.secrets.webhookUrl")
    assert code == 1 and "give --keystore BIN" in err  # no keystore to feed: the value is printed nowhere
    assert not any(v in out + err for v in SECRET_VALUES)
    code, _, err = w.kcr("render", "keystore-value", "--env", "production", "--keystore", str(keystore),
                         f"{PREFIX}.{TEAMS}.secrets.nope")
    assert code == 1 and "not a secret of a preconfigured connector" in err


def test_eck_secret_carries_values_only_where_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys)
    manifest = tmp_path / "eck-secret.yaml"
    _, text, out, err = _render(w, tmp_path, "--format", "eck", "--secrets-out", str(manifest))
    assert not any(v in text + out + err for v in CANARIES.values())
    assert "warning" in err and "secret value" in err
    body = yaml.safe_load(manifest.read_text())
    assert body["kind"] == "Secret" and body["metadata"]["name"] == "kcr-kibana-preconfigured-production"
    decoded = {k: base64.b64decode(v).decode() for k, v in body["data"].items()}
    assert decoded == {f"{PREFIX}.{TEAMS}.secrets.webhookUrl": CANARIES["TEAMS_URL"],
                       f"{PREFIX}.{PAGER}.secrets.routingKey": '"12345"'}
    assert stat.S_IMODE(os.stat(manifest).st_mode) & 0o077 == 0
    code, _, err = w.kcr("render", "kibana-yml", "--env", "production", "--format", "eck")
    assert code == 1 and "both go to stdout" in err  # refused before anything is written


def test_secrets_in_file_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    block, text, out, err = _render(_world(tmp_path, capsys), tmp_path, "--secrets-in-file")
    assert block[TEAMS]["secrets"] == {"webhookUrl": CANARIES["TEAMS_URL"]}
    assert "SECRETS IN CLEAR" in text and "warning" in err
    assert not any(v in out + err for v in SECRET_VALUES)


# --- hardening --------------------------------------------------------------------------------------------


def _payloads(repo: Path) -> dict[str, tuple[str, dict[str, Any], dict[str, Any]]]:
    """Every declared connector (both ways) as an API create body: key -> (type, config, secrets)."""
    desired = load_repository(repo, env=ENV, environment="production")
    specs = [s for s in desired.spaces["default"].connectors]
    values = SecretResolver(ENV, desired.settings, repo).resolve_many({s.key: s.secrets for s in specs})
    return {s.key: (s.type, dict(s.config), values[s.key].payload()) for s in specs}


def _created(hosts: list[str], payloads: dict[str, tuple[str, dict[str, Any], dict[str, Any]]]) -> set[str]:
    sb = Sandbox.from_seed({"allowed_hosts": hosts})
    with httpx.Client(transport=sb.transport(), base_url=KIBANA, headers={"kbn-xsrf": "true"}) as client:
        return {key for key, (type_id, config, secrets) in payloads.items()
                if client.post("/api/actions/connector", json={"name": key, "connector_type_id": type_id,
                                                               "config": config, "secrets": secrets}).status_code
                == 200}


def test_allowed_hosts_is_exactly_what_the_connectors_need(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys)
    code, out, _ = w.kcr("render", "allowed-hosts", "--env", "production", "--format", "json", "--resolve-secrets")
    assert code == 0 and not any(v in out for v in SECRET_VALUES)
    found = json.loads(out)
    hosts = found["allowedHosts"]
    assert hosts == ["acme.atlassian.net", "acme.webhook.office.com", "events.pagerduty.com", "hooks.slack.com"]
    assert found["enabledActionTypes"] == [".jira", ".slack"]  # the API connectors': preconfigured ones run anyway
    assert found["preconfiguredTypes"] == [".pagerduty", ".teams"]
    payloads = _payloads(w.repo)
    assert _created(hosts, payloads) == set(payloads)
    for host in hosts:
        needing = {k.split("/", 1)[1] for k in found["neededBy"][host]}
        assert _created([h for h in hosts if h != host], payloads) == set(payloads) - needing, host


def test_allowed_hosts_offline_names_what_it_cannot_tell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys)
    chat = w.repo / "connectors/default/chat.yaml"
    chat.write_text(chat.read_text().replace("${env:SLACK_URL}", "https://hooks.slack.com/services/${env:SLACK_PATH}"))
    code, out, _ = w.kcr("render", "allowed-hosts", "--env", "production")
    assert code == 0
    body = yaml.safe_load(out)
    assert "hooks.slack.com" in body["xpack.actions.allowedHosts"]  # written before the reference
    assert "acme.webhook.office.com" not in body["xpack.actions.allowedHosts"]
    assert "# not listed: default/teams-pre secrets.webhookUrl" in out


def test_plan_warns_of_a_used_type_not_enabled_in_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    block, *_ = _render(_world(tmp_path, capsys), tmp_path)
    w = _world(tmp_path, capsys, {"preconfigured": block})
    assert w.kcr("apply", "--env", "production", "--auto-approve")[0] == 0
    state = tmp_path / "state.json"
    w.sb.save_state(state)
    disabled = Sandbox.from_seed({"preconfigured": block, "enabled_action_types": [".slack", ".pagerduty"]})
    disabled.load_state(state)
    code, out, _ = w.kcr("plan", "--env", "production", transport=disabled.transport())
    assert code == 0
    assert "type .jira is not enabled in xpack.actions.enabledActionTypes" in out and "jira-api uses it" in out
    assert ".pagerduty is not enabled" not in out and ".teams is not enabled" not in out


def test_a_fanned_out_preconfigured_connector_renders_one_entry_per_space(tmp_path: Path) -> None:
    """connectors/_all/ copies are connectors of their own (ids are global): each is its own kibana.yml
    entry under its derived id, named for its space."""
    repo = write_repo(tmp_path / "fan", {
        "connectors/ops/_space.yaml": "prune: false\n",
        "connectors/web/_space.yaml": "prune: false\n",
        "connectors/_all/log.yaml": "connectors:\n  - id: server-log\n    name: Log ${var:space}\n"
                                    "    type: .server-log\n    preconfigured: true\n",
    })
    rendered = render_kibana.kibana_yml(load_repository(repo, env={}))
    block = yaml.safe_load(rendered.kibana_yml)[PREFIX]
    assert sorted(block) == sorted(derive_connector_id(space, "server-log") for space in ("ops", "web"))
    for space in ("ops", "web"):
        entry = block[derive_connector_id(space, "server-log")]
        assert (entry["name"], entry["actionTypeId"]) == (f"Log {space}", ".server-log")
    assert rendered.secrets is None
