"""End to end: the `kcr` command, as a user runs it (a subprocess, cwd = a user repository,
KIBANA_URL + KIBANA_API_KEY), against the sandbox over a real loopback socket. One mixed change set
through plan, a hand edit after planning, apply of the saved plan, convergence, and drift; with
canary secret values that must reach the sandbox's store and nothing kcr prints or writes."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.cli import kcr_process, process_env, write_repo

from reconciler.model import UUID_PATTERN, derive_connector_id
from reconciler.sandbox import Sandbox
from reconciler.sandbox.server import running

API_KEY = "e2e-api-key"
CANARY = f"CANARY-{uuid.uuid4()}"
STALE_KEY = "hand-edited"
REFERENCED = str(uuid.UUID(int=1, version=4))
PRUNABLE = str(uuid.UUID(int=2, version=4))
UNMANAGED = str(uuid.UUID(int=3, version=4))
RULE = str(uuid.UUID(int=9, version=4))

REPO: dict[str, str] = {
    "connectors/default/_space.yaml": "prune: false\n",
    "connectors/default/chat.yaml": """\
connectors:
  - id: slack-main
    name: Slack main (renamed)
    type: .slack
    secrets:
      webhookUrl: ${env:E2E_SLACK_URL}
  - id: notify
    name: Notify
    type: .teams
    secrets:
      webhookUrl: ${env:E2E_TEAMS_URL}
  - id: hand-edited
    name: Will be edited by hand
    type: .index
    config:
      index: desired-index
  - id: brand-new
    name: Brand new PagerDuty
    type: .pagerduty
    secrets:
      routingKey: ${env:E2E_ROUTING_KEY}
""",
    "connectors/ops/_space.yaml": "prune: true\n",
    "connectors/ops/index.yaml": """\
connectors:
  - id: ops-history
    name: Ops history
    type: .index
    config:
      index: ops-history
""",
}


def _seed() -> dict[str, Any]:
    return {
        "license": "platinum",
        "spaces": ["default", "ops"],
        "auth": {"api_keys": [API_KEY]},
        "preconfigured": {"kibana-yml-log": {"name": "From kibana.yml", "actionTypeId": ".server-log",
                                             "config": {}, "secrets": {}}},
        "connectors": [
            {"id": derive_connector_id("default", "slack-main"), "space": "default", "name": "Slack main",
             "connector_type_id": ".slack", "config": {}, "secrets": {"webhookUrl": "https://old.example.com/x"}},
            {"id": derive_connector_id("default", "notify"), "space": "default", "name": "Notify",
             "connector_type_id": ".slack", "config": {}, "secrets": {"webhookUrl": "https://old.example.com/y"}},
            {"id": derive_connector_id("default", STALE_KEY), "space": "default", "name": "Will be edited by hand",
             "connector_type_id": ".index", "config": {"index": "old-index"}, "secrets": {}},
            {"id": UNMANAGED, "space": "default", "name": "Clicked in the UI", "connector_type_id": ".server-log",
             "config": {}, "secrets": {}},
            {"id": REFERENCED, "space": "ops", "name": "Used by a rule", "connector_type_id": ".server-log",
             "config": {}, "secrets": {}},
            {"id": PRUNABLE, "space": "ops", "name": "Nobody uses me", "connector_type_id": ".server-log",
             "config": {}, "secrets": {}},
        ],
        "rules": [{"id": RULE, "space": "ops", "name": "CPU high",
                   "actions": [{"id": REFERENCED, "group": "default", "params": {"message": "hi"}}]}],
    }


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[tuple[Sandbox, str, Path, dict[str, str]]]:
    repo = write_repo(tmp_path / "repo", REPO)
    sb = Sandbox.from_seed(_seed())
    with running(sb) as url:
        env = process_env(
            KIBANA_URL=url, KIBANA_API_KEY=API_KEY, KCR_FINGERPRINT_KEY="e2e-key",
            E2E_SLACK_URL=f"https://hooks.slack.com/services/{CANARY}",
            E2E_TEAMS_URL=f"https://teams.example.com/{CANARY}",
            E2E_ROUTING_KEY=CANARY, NO_COLOR="1",
        )
        yield sb, url, repo, env


def kcr(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return kcr_process(repo, env, *args, secrets=[CANARY])


def _by_id(sb: Sandbox, space: str) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in sb.connectors_in(space)}


def _files_written_by_kcr(repo: Path) -> list[Path]:
    return [p for p in repo.rglob("*") if p.is_file() and not p.name.endswith(".yaml")]


def test_plan_apply_converge_and_drift(world: tuple[Sandbox, str, Path, dict[str, str]]) -> None:
    sb, url, repo, env = world
    headers = {"Authorization": f"ApiKey {API_KEY}", "kbn-xsrf": "true"}

    proc = kcr(repo, env, "plan", "--out", "plan.json", "--detailed-exitcode", "--gitlab-report", "tf.json",
               "--markdown-out", "plan.md")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    saved = json.loads((repo / "plan.json").read_text())
    actions = {c["address"]: c["action"] for c in saved["changes"]}
    stale_id = derive_connector_id("default", STALE_KEY)
    assert actions[f"default/{derive_connector_id('default', 'brand-new')}"] == "create"
    assert actions[f"default/{derive_connector_id('default', 'notify')}"] == "recreate"
    assert actions[f"default/{derive_connector_id('default', 'slack-main')}"] == "update"
    assert actions[f"default/{stale_id}"] == "update"
    assert actions[f"default/{UNMANAGED}"] == "unmanaged"
    assert actions[f"ops/{PRUNABLE}"] == "delete"
    assert actions[f"ops/{REFERENCED}"] == "delete"
    blocked = next(c for c in saved["changes"] if c["id"] == REFERENCED)
    assert blocked["guard"]["blocked"] is True
    assert [r["name"] for r in blocked["guard"]["rules"]] == ["CPU high"]
    assert "kibana-yml-log" not in actions.values() and not any("kibana-yml-log" in a for a in actions)
    assert "CPU high" in proc.stdout
    report = json.loads((repo / "tf.json").read_text())
    assert set(report) == {"create", "update", "delete"}

    # A hand edit after planning: apply must refuse that action as stale and do the rest.
    r = httpx.put(f"{url}/api/actions/connector/{stale_id}", headers=headers,
                  json={"name": "Edited by hand", "config": {"index": "hand-index"}, "secrets": {}})
    assert r.status_code == 200, r.text

    proc = kcr(repo, env, "apply", "plan.json")
    assert proc.returncode != 0
    assert "stale" in (proc.stdout + proc.stderr).lower()
    default = _by_id(sb, "default")
    assert default[stale_id]["name"] == "Edited by hand"  # left as edited
    new_id = derive_connector_id("default", "brand-new")
    assert new_id in default and __import__("re").match(UUID_PATTERN, new_id)
    assert default[new_id]["secrets"] == {"routingKey": CANARY}  # the secret reached "Kibana"
    notify = default[derive_connector_id("default", "notify")]
    assert notify["connector_type_id"] == ".teams"  # recreated with the same id
    assert UNMANAGED in default
    ops = _by_id(sb, "ops")
    assert REFERENCED in ops  # referenced: survives
    assert PRUNABLE not in ops  # unreferenced and undeclared: pruned
    assert sum(1 for c in sb.connectors_in("default") if c["name"] == "Brand new PagerDuty") == 1

    # Once the rule is gone, a plain apply converges and a re-plan shows nothing to do.
    assert httpx.delete(f"{url}/s/ops/api/alerting/rule/{RULE}", headers=headers).status_code in (200, 204)
    proc = kcr(repo, env, "apply", "--auto-approve")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert REFERENCED not in _by_id(sb, "ops")
    assert _by_id(sb, "default")[stale_id]["config"]["index"] == "desired-index"
    proc = kcr(repo, env, "plan", "--detailed-exitcode")
    assert proc.returncode == 0, proc.stdout

    assert kcr(repo, env, "drift").returncode == 0
    r = httpx.put(f"{url}/api/actions/connector/{new_id}", headers=headers,
                  json={"name": "Renamed in the UI", "config": {}, "secrets": {"routingKey": "x"}})
    assert r.status_code == 200
    proc = kcr(repo, env, "drift", "--format", "json")
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["summary"]["update"] >= 1

    for path in _files_written_by_kcr(repo):
        assert CANARY not in path.read_text(errors="replace"), path
