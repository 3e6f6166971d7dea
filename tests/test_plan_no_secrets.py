"""Issue #13, plan without secrets: `kcr plan --no-secrets` and `kcr drift --no-secrets` compare
types, names and config without resolving any secret reference (a merge-request pipeline often
cannot see production secrets), say so in every view and in the plan JSON, never count secrets as a
change, and `kcr apply` refuses the plan they save."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from helpers import cli
from helpers.cli import write_repo
from helpers.transports import Recorder

from reconciler import planfile as planmod
from reconciler.errors import PlanFileError
from reconciler.model import derive_connector_id
from reconciler.render import SECRETS_NOT_CHECKED
from reconciler.sandbox import Sandbox

KIBANA = "http://kibana.test"
VAULT = "http://vault.invalid:8200"
KEY = "a-fingerprint-key-for-tests-0123456789"
SECRET_VARS = ("SLACK_URL", "PD_KEY", "NEW_SLACK_URL")
CANARIES = {"SLACK_URL": "https://hooks.example.com/CANARY-slack-7f3a", "PD_KEY": "CANARY-pd-91b2",
            "NEW_SLACK_URL": "https://hooks.example.com/CANARY-new-c4d8"}
NOT_CHECKED_LINE = "secrets: not checked (--no-secrets)"
REPLAN = "re-plan with secrets"

APPLIED = {
    "connectors/default/alerts.yaml": """\
connectors:
  - id: slack-main
    name: Slack main
    type: .slack
    secrets:
      webhookUrl: ${env:SLACK_URL}
  - id: pager
    name: Pager
    type: .pagerduty
    secrets:
      routingKey: ${env:PD_KEY}
  - id: history
    name: History
    type: .index
    config:
      index: alerts-history
""",
}
# The review: a rename, a config change and a new connector, while every secret moves to a reference
# that cannot be read here (a Vault that does not answer, a file that does not exist).
REVIEWED = {
    "connectors/default/alerts.yaml": """\
connectors:
  - id: slack-main
    name: Slack main (renamed)
    type: .slack
    secrets:
      webhookUrl: ${vault:secret/alerting/slack#webhook_url}
  - id: pager
    name: Pager
    type: .pagerduty
    secrets:
      routingKey: ${file:secrets/pd.txt}
  - id: history
    name: History
    type: .index
    config:
      index: alerts-history-v2
  - id: slack-new
    name: Slack new
    type: .slack
    secrets:
      webhookUrl: ${env:NEW_SLACK_URL}
""",
}


def cid(key: str) -> str:
    return derive_connector_id("default", key)


class World(cli.World):
    def no_secrets_env(self) -> dict[str, str]:
        """Every secret variable unset; a Vault configured that must never be asked."""
        env = {k: v for k, v in self.env.items() if k not in SECRET_VARS}
        return {**env, "VAULT_ADDR": VAULT, "VAULT_TOKEN": "never-sent"}

    def review(self) -> None:
        write_repo(self.repo, REVIEWED)
        self.sb.reset_counters()


@pytest.fixture()
def world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> World:
    env = {"KIBANA_URL": KIBANA, "KIBANA_API_KEY": "not-a-real-api-key", "KCR_FINGERPRINT_KEY": KEY,
           "NO_COLOR": "1", **CANARIES}
    sb = Sandbox.from_seed({"license": "platinum", "spaces": ["default"], "connectors": []})
    w = World(repo=write_repo(tmp_path / "repo", APPLIED), env=env, sb=sb, capsys=capsys)
    code, out, err = w.kcr("apply", "--auto-approve")
    assert code == 0, out + err
    return w


@pytest.fixture()
def no_vault() -> Iterator[respx.Route]:
    """Any request to Vault fails the run and is counted: the test asserts there was none."""
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route(host="vault.invalid").mock(side_effect=AssertionError("Vault was asked"))
        yield route


def sandbox_recorder(w: World) -> Recorder:
    return Recorder(w.sb.transport().handle_request)


# --- plan and drift without secrets -------------------------------------------------------------------


def test_plan_no_secrets_shows_config_diffs_without_reading_any_secret(world: World, no_vault: respx.Route) -> None:
    world.review()
    env = world.no_secrets_env()
    seen = sandbox_recorder(world)
    code, out, err = world.kcr("plan", "--no-secrets", "--detailed-exitcode", env=env, transport=seen.transport())
    assert code == 2, out + err
    assert no_vault.call_count == 0
    assert seen.writes == [], "a plan only reads"
    assert '+ default/' + cid("slack-new") in out and "secrets: set (keys: webhookUrl)" in out
    assert 'name: "Slack main" → "Slack main (renamed)"' in out
    assert 'config.index: "alerts-history" → "alerts-history-v2"' in out
    assert out.count(NOT_CHECKED_LINE) == 1  # the renamed slack; the unchanged pager is a count
    assert SECRETS_NOT_CHECKED in out
    assert "Plan: 1 to create, 2 to update, 0 to recreate, 0 to delete, 0 blocked." in out
    # Without the flag, the same run asks Vault (the guard catches it) and cannot plan.
    code, out, err = world.kcr("plan", env=env)
    assert code == 1 and no_vault.call_count > 0, out + err


def test_plan_no_secrets_json_says_secrets_were_not_checked(world: World, no_vault: respx.Route) -> None:
    world.review()
    code, out, err = world.kcr("plan", "--no-secrets", "--format", "json", env=world.no_secrets_env())
    assert code == 0, out + err
    body = json.loads(out)
    assert body["secrets_checked"] is False
    by_id = {c["id"]: c for c in body["changes"]}
    assert by_id[cid("slack-main")]["secrets"] == "not-checked"
    assert by_id[cid("pager")]["action"] == "no-op" and by_id[cid("pager")]["secrets"] == "not-checked"
    assert by_id[cid("history")]["secrets"] == "none"
    assert by_id[cid("slack-new")]["secrets"] == "changed"  # a create sends what the repository declares
    assert all(c["secret_digest"] is None for c in body["changes"])
    assert planmod.loads(out, "stdout").secrets_checked is False  # the schema and consistency checks agree


def test_secrets_alone_never_count_as_a_change(world: World, no_vault: respx.Route) -> None:
    """A rotated secret is a change with secrets, none without them: the exit code follows."""
    rotated = {**world.env, "SLACK_URL": "https://hooks.example.com/rotated"}
    code, out, err = world.kcr("plan", "--detailed-exitcode", env=rotated)
    assert code == 2 and "secrets changed" in out, out + err
    env = {k: v for k, v in rotated.items() if k not in SECRET_VARS}
    for args in (("plan", "--no-secrets", "--detailed-exitcode"), ("drift", "--no-secrets")):
        code, out, err = world.kcr(*args, env=env)
        assert code == 0, (args, out + err)
        assert "3 unchanged." in out and out.rstrip().endswith("No changes.")  # never "Kibana matches"
        assert SECRETS_NOT_CHECKED in out
    assert no_vault.call_count == 0


def test_drift_no_secrets_exits_2_on_config_drift(world: World, no_vault: respx.Route) -> None:
    world.review()
    code, out, err = world.kcr("drift", "--no-secrets", env=world.no_secrets_env())
    assert code == 2, out + err
    assert NOT_CHECKED_LINE in out
    assert no_vault.call_count == 0


def test_missing_secrets_in_kibana_is_still_an_update(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """That fact comes from Kibana, not from the secrets."""
    live = {"id": cid("slack-main"), "space": "default", "name": "Slack main", "connector_type_id": ".slack",
            "config": {}, "secrets": {}, "is_missing_secrets": True}
    sb = Sandbox.from_seed({"license": "platinum", "spaces": ["default"], "connectors": [live]})
    files = {"connectors/default/alerts.yaml": APPLIED["connectors/default/alerts.yaml"].split("  - id: pager")[0]}
    w = World(repo=write_repo(tmp_path / "repo", files), env={"KIBANA_URL": KIBANA, "KIBANA_API_KEY": "k"},
              sb=sb, capsys=capsys)
    code, out, err = w.kcr("plan", "--no-secrets", "--detailed-exitcode")
    assert code == 2, out + err
    assert "secrets missing in Kibana" in out and NOT_CHECKED_LINE in out


def test_markdown_and_gitlab_report(world: World, no_vault: respx.Route) -> None:
    world.review()
    md, report = world.repo / "plan.md", world.repo / "report.json"
    code, out, err = world.kcr("plan", "--no-secrets", "--format", "markdown", "--markdown-out", str(md),
                               "--gitlab-report", str(report), env=world.no_secrets_env())
    assert code == 0, out + err
    assert md.read_text(encoding="utf-8") == out
    assert "Secrets not checked (<code>--no-secrets</code>)" in out
    assert "Secrets: not checked (--no-secrets)" in out
    assert json.loads(report.read_text(encoding="utf-8")) == {"create": 1, "update": 2, "delete": 0}


@pytest.mark.parametrize("command", ["plan", "drift"])
def test_no_secrets_and_sync_secrets_contradict(world: World, command: str) -> None:
    seen = sandbox_recorder(world)
    code, out, err = world.kcr(command, "--no-secrets", "--sync-secrets", transport=seen.transport())
    assert code == 1 and "--sync-secrets" in err and "--no-secrets" in err, out + err
    assert seen.requests == [], "refused before Kibana hears anything"


def test_one_run_apply_has_no_such_flag(world: World) -> None:
    code, out, err = world.kcr("apply", "--auto-approve", "--no-secrets")
    assert code == 1 and "No such option" in err, out + err


# --- apply refuses the plan ---------------------------------------------------------------------------


@pytest.mark.parametrize("signed", [True, False])
def test_apply_refuses_a_no_secrets_plan(world: World, no_vault: respx.Route, signed: bool) -> None:
    world.review()
    env = world.no_secrets_env() if signed else {k: v for k, v in world.no_secrets_env().items()
                                                  if k != "KCR_FINGERPRINT_KEY"}
    path = world.repo / "plan.json"
    code, out, err = world.kcr("plan", "--no-secrets", "--out", str(path), env=env)
    assert code == 0, out + err
    seen = sandbox_recorder(world)
    # Every secret is available at apply time: the plan is refused all the same.
    apply_env = {**world.env, "KCR_FINGERPRINT_KEY": KEY} if signed else \
        {k: v for k, v in world.env.items() if k != "KCR_FINGERPRINT_KEY"}
    code, out, err = world.kcr("apply", str(path), "--auto-approve", env=apply_env, transport=seen.transport())
    assert code == 1, out + err
    assert REPLAN in err and "--no-secrets" in err
    assert seen.requests == [], "nothing is sent"
    assert {c["name"] for c in world.sb.connectors_in("default")} == {"Slack main", "Pager", "History"}


def edited(mutate: Any) -> str:
    """A --no-secrets plan's JSON, edited by `mutate`, as text."""
    from helpers.builders import mixed_plan

    plan = mixed_plan()
    body = planmod.to_json(plan)
    for c in body["changes"]:
        c["secret_digest"] = None
        if c["secrets"] in ("unchanged", "unknown"):
            c["secrets"] = "not-checked"
    body["secrets_checked"] = False
    planmod.loads(json.dumps(body), "plan.json")  # a consistent --no-secrets plan loads
    mutate(body)
    return json.dumps(body)


@pytest.mark.parametrize(("mutate", "says"), [
    (lambda b: b.update(secrets_checked=True), "secrets is 'not-checked', yet secrets_checked is true"),
    (lambda b: next(c for c in b["changes"] if c["secrets"] == "not-checked").update(secrets="unchanged"),
     "a comparison a plan with secrets_checked false never makes"),
    (lambda b: next(c for c in b["changes"] if c["desired"] is not None).update(
        secret_digest={"hmacs": {}, "vault_versions": {}}), "carries a secret_digest, yet secrets_checked is false"),
    (lambda b: b.pop("secrets_checked"), "'secrets_checked' is a required property"),
])
def test_an_edit_cannot_make_a_no_secrets_plan_applicable(mutate: Any, says: str) -> None:
    with pytest.raises(PlanFileError) as info:
        planmod.loads(edited(mutate), "plan.json")
    assert says in str(info.value)


# --- canaries -----------------------------------------------------------------------------------------


def test_no_secrets_output_never_holds_a_secret_value(world: World, no_vault: respx.Route) -> None:
    """Trivially true (nothing is read), pinned all the same: with every secret variable set to a
    canary, and a file secret holding one, neither the JSON nor the Markdown carries any."""
    world.review()
    write_repo(world.repo, {"secrets/pd.txt": "CANARY-file-5e6f\n"})
    env = {**world.env, "VAULT_ADDR": VAULT, "VAULT_TOKEN": "CANARY-vault-token-0a1b"}
    canaries = [*CANARIES.values(), "CANARY-file-5e6f", "CANARY-vault-token-0a1b"]
    md = world.repo / "plan.md"
    outputs = []
    for fmt in ("json", "markdown", "text"):
        code, out, err = world.kcr("plan", "--no-secrets", "--format", fmt, "--markdown-out", str(md), env=env)
        assert code == 0, out + err
        outputs += [out, err, md.read_text(encoding="utf-8")]
    code, out, err = world.kcr("drift", "--no-secrets", env=env)
    outputs += [out, err]
    for text in outputs:
        for canary in canaries:
            assert canary not in text
        assert "CANARY" not in text
    assert no_vault.call_count == 0


def test_the_vault_guard_catches_a_request() -> None:
    """The fixture's guard itself works: a request to the Vault host is caught and counted."""
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route(host="vault.invalid").mock(side_effect=AssertionError("Vault was asked"))
        with pytest.raises(AssertionError):
            httpx.get(f"{VAULT}/v1/sys/health")
        assert route.call_count == 1
