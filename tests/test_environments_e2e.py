"""Issue #13 end to end: one repository, two Kibanas (two sandboxes over real loopback sockets) as
staging and production, `kcr` run as a user runs it (a process per command). Each environment plans
its own names and config, both apply their saved plans and re-plan clean; a production-only connector
never reaches staging; a connector fanned out over three spaces becomes three connectors with derived
ids; `plan --no-secrets` reviews config with no secret variable set and its plan cannot be applied.
A var fed by `${env:}` is shown; the canary secret never appears in anything kcr prints or writes."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.cli import kcr_process, process_env, write_repo

from reconciler.model import derive_connector_id
from reconciler.sandbox import Sandbox
from reconciler.sandbox.server import running

CANARY = f"CANARY-{uuid.uuid4()}"
REGION = f"region-shown-{uuid.uuid4().hex[:8]}"  # a var fed by ${env:}: not secret, shown in plans
KEYS = {"staging": "staging-api-key", "production": "production-api-key"}
SPACES = ("default", "ops", "team")
REPO = {
    "kcr.yaml": """\
vars:
  index: alerts-default
environments:
  staging:
    kibana_url_env: STAGING_KIBANA_URL
    credentials: {api_key: STAGING_KIBANA_KEY}
    vars:
      index: alerts-staging
      channel: "#staging"
  production:
    kibana_url_env: PRODUCTION_KIBANA_URL
    credentials: {api_key: PRODUCTION_KIBANA_KEY}
    vars:
      channel: "#production"
      region: ${env:REGION}
""",
    "connectors/default/main.yaml": """\
connectors:
  - id: history
    name: History ${var:channel}
    type: .index
    config:
      index: ${var:index}
  - id: slack
    name: Slack ${var:channel}
    type: .slack
    secrets:
      webhookUrl: ${env:SLACK_URL}
  - id: pager
    name: Pager in ${var:region}
    type: .server-log
    environments: [production]
""",
    "connectors/ops/_space.yaml": "prune: false\n",
    "connectors/team/_space.yaml": "prune: false\n",
    "connectors/_all/hook.yaml": """\
connectors:
  - id: hook
    name: Hook for ${var:space} (${var:env})
    type: .webhook
    spaces: [default, ops, team]
    config:
      url: https://hooks.example.com/${var:space}
      hasAuth: false
""",
}


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[tuple[dict[str, Sandbox], Path, dict[str, str]]]:
    repo = write_repo(tmp_path / "repo", REPO)
    boxes = {name: Sandbox.from_seed({"license": "platinum", "spaces": list(SPACES), "auth": {"api_keys": [key]}})
             for name, key in KEYS.items()}
    with running(boxes["staging"]) as staging_url, running(boxes["production"]) as production_url:
        env = process_env(STAGING_KIBANA_URL=staging_url, PRODUCTION_KIBANA_URL=production_url,
                          STAGING_KIBANA_KEY=KEYS["staging"], PRODUCTION_KIBANA_KEY=KEYS["production"],
                          REGION=REGION, SLACK_URL=f"https://hooks.slack.com/services/{CANARY}",
                          KCR_FINGERPRINT_KEY="e2e-fingerprint-key-0123456789abcdef", NO_COLOR="1")
        yield boxes, repo, env


def kcr(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return kcr_process(repo, env, *args, secrets=[CANARY])


def names(sb: Sandbox, space: str) -> dict[str, str]:
    return {c["id"]: c["name"] for c in sb.connectors_in(space)}


def test_two_environments_plan_apply_and_converge(world: tuple[dict[str, Sandbox], Path, dict[str, str]]) -> None:
    boxes, repo, env = world
    outputs: list[str] = []
    plans: dict[str, dict[str, str]] = {}
    for name in KEYS:
        proc = kcr(repo, env, "plan", "--env", name, "--out", f"{name}.json", "--detailed-exitcode")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        outputs.append(proc.stdout + proc.stderr)
        saved = json.loads((repo / f"{name}.json").read_text())
        assert saved["environment"] == name
        plans[name] = {c["address"]: c["action"] for c in saved["changes"]}
    staging_out, production_out = outputs
    assert "History #staging" in staging_out and "#production" not in staging_out
    assert "History #production" in production_out and "#staging" not in production_out
    assert "alerts-staging" in staging_out and "alerts-default" in production_out
    pager = f"default/{derive_connector_id('default', 'pager')}"
    assert plans["production"][pager] == "create" and pager not in plans["staging"]
    assert f"Pager in {REGION}" in production_out  # the env-fed var is shown
    hooks = {f"{space}/{derive_connector_id(space, 'hook')}" for space in SPACES}
    for name in KEYS:
        assert hooks <= set(plans[name])

    for name in KEYS:
        proc = kcr(repo, env, "apply", f"{name}.json", "--env", name)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    for name, sb in boxes.items():
        ids = {space: derive_connector_id(space, "hook") for space in SPACES}
        assert len(set(ids.values())) == 3
        for space, cid in ids.items():
            assert names(sb, space)[cid] == f"Hook for {space} ({name})"
            (hook,) = [c for c in sb.connectors_in(space) if c["id"] == cid]
            assert hook["config"]["url"] == f"https://hooks.example.com/{space}"
        slack = next(c for c in sb.connectors_in("default") if c["id"] == derive_connector_id("default", "slack"))
        assert slack["secrets"] == {"webhookUrl": f"https://hooks.slack.com/services/{CANARY}"}
    assert derive_connector_id("default", "pager") not in names(boxes["staging"], "default")
    assert names(boxes["production"], "default")[derive_connector_id("default", "pager")] == f"Pager in {REGION}"
    history = derive_connector_id("default", "history")
    assert boxes["staging"].connectors_in("default") != boxes["production"].connectors_in("default")
    assert {c["id"]: c["config"].get("index") for c in boxes["staging"].connectors_in("default")}[history] == \
        "alerts-staging"

    for name in KEYS:
        proc = kcr(repo, env, "plan", "--env", name, "--detailed-exitcode")
        assert proc.returncode == 0, proc.stdout + proc.stderr

    # A review without any secret: staging's index changes; every secret variable is unset.
    kcr_yaml = repo / "kcr.yaml"
    kcr_yaml.write_text(kcr_yaml.read_text().replace("alerts-staging", "alerts-staging-v2"))
    no_secrets = {k: v for k, v in env.items() if k != "SLACK_URL"}
    proc = kcr(repo, no_secrets, "plan", "--env", "staging", "--no-secrets", "--detailed-exitcode",
               "--out", "review.json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "alerts-staging-v2" in proc.stdout and "not checked" in proc.stdout
    review = json.loads((repo / "review.json").read_text())
    assert review["secrets_checked"] is False and review["environment"] == "staging"
    assert [c["action"] for c in review["changes"] if c["action"] != "no-op"] == ["update"]
    before = boxes["staging"].counters.get("total", 0)
    proc = kcr(repo, env, "apply", "review.json", "--env", "staging")
    assert proc.returncode != 0 and "--no-secrets" in proc.stdout + proc.stderr
    assert boxes["staging"].counters.get("total", 0) == before  # refused before any request

    for path in repo.rglob("*"):
        if path.is_file():
            assert CANARY not in path.read_text(errors="replace"), path
