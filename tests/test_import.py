"""`kcr import ID --space S [--into FILE]`: one live connector appended to a connector file (comments
kept), its UUID kept, secrets as ${env:..} placeholders; then the next plan neither creates nor deletes
it. The refusals write nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.cli import World, kcr_process, process_env, write_repo

from reconciler.adopt import appended, find_live
from reconciler.errors import ConfigError
from reconciler.model import LiveConnector, derive_connector_id
from reconciler.sandbox import Sandbox
from reconciler.sandbox.server import running


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


SLACK, HOOK, LOG, TWIN = uid(1), uid(2), uid(3), uid(4)
SLACK_SECRET = "https://hooks.slack.com/services/CANARY-import"
BY_KEY = derive_connector_id("ops", "paging")  # a connector kcr created from a key


def seed() -> dict[str, Any]:
    return {
        "license": "platinum",
        "spaces": ["default", "ops"],
        "preconfigured": {"my-slack": {"name": "Pre", "actionTypeId": ".slack", "config": {},
                                       "secrets": {"webhookUrl": "https://hooks.slack.com/pre"}}},
        "connectors": [
            {"id": SLACK, "space": "ops", "name": "Ops Slack", "connector_type_id": ".slack", "config": {},
             "secrets": {"webhookUrl": SLACK_SECRET}},
            {"id": HOOK, "space": "ops", "name": "Hook", "connector_type_id": ".webhook",
             "config": {"url": "https://hook.example", "method": "put", "hasAuth": True,
                        "authType": "webhook-authentication-basic"},
             "secrets": {"user": "u", "password": "p"}},
            {"id": LOG, "space": "ops", "name": "Log", "connector_type_id": ".server-log", "config": {},
             "secrets": {}},
            {"id": TWIN, "space": "default", "name": "Ops Slack", "connector_type_id": ".slack", "config": {},
             "secrets": {"webhookUrl": "https://hooks.slack.com/twin"}},
            {"id": BY_KEY, "space": "ops", "name": "Paging", "connector_type_id": ".server-log", "config": {},
             "secrets": {}},
        ],
    }


MAIN = f"""# Hand-written: these comments must survive an import.
connectors:
  - id: {LOG}   # adopted long ago
    name: Log
    type: .server-log
  - id: paging
    name: Paging
    type: .server-log

# trailing notes, after the list
"""
ENV = {"KIBANA_URL": "http://kibana.test", "KIBANA_API_KEY": "k", "NO_COLOR": "1"}


def _world(tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str] | None = None) -> World:
    repo = write_repo(tmp_path / "repo", files if files is not None else {"connectors/ops/main.yaml": MAIN})
    return World(repo, dict(ENV), Sandbox.from_seed(seed()), capsys)


def _snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _actions(out: str) -> dict[str, str]:
    return {c["id"]: c["action"] for c in json.loads(out)["changes"]}


# --- the round trip ---------------------------------------------------------------------------------------


def test_import_then_plan_shows_no_create_or_delete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys)
    code, out, err = w.kcr("plan", "--format", "json")
    assert code == 0, err
    assert _actions(out)[SLACK] == "unmanaged" and _actions(out)[HOOK] == "unmanaged"

    code, out, err = w.kcr("import", SLACK, "--space", "ops", "--into", "connectors/ops/main.yaml")
    assert code == 0, err
    assert "appended to connectors/ops/main.yaml" in out and "KCR_OPS_OPS_SLACK_WEBHOOK_URL" in out
    text = (w.repo / "connectors/ops/main.yaml").read_text()
    head = MAIN.partition("\n# trailing notes")[0]
    assert text.startswith(head) and text.endswith("# trailing notes, after the list\n")  # comments kept
    assert yaml.safe_load(text)["connectors"][-1] == {
        "id": SLACK, "name": "Ops Slack", "type": ".slack",
        "secrets": {"webhookUrl": "${env:KCR_OPS_OPS_SLACK_WEBHOOK_URL}"}}

    code, out, err = w.kcr("import", HOOK, "--space", "ops")
    assert code == 0, err
    assert "created connectors/ops/imported.yaml" in out
    assert "KCR_OPS_HOOK_USER" in out and "KCR_OPS_HOOK_PASSWORD" in out
    assert SLACK_SECRET not in out + err  # Kibana never returned it, and kcr never prints one

    w.env.update(KCR_OPS_OPS_SLACK_WEBHOOK_URL=SLACK_SECRET, KCR_OPS_HOOK_USER="u", KCR_OPS_HOOK_PASSWORD="p")
    code, out, err = w.kcr("plan", "--detailed-exitcode")
    # Honest: nothing to create, delete or update, but kcr has no record of the secrets it never pushed
    assert code == 0, out + err
    assert "No changes." in out and "secrets unknown for 2" in out
    code, out, _ = w.kcr("plan", "--format", "json")
    assert {_actions(out)[i] for i in (SLACK, HOOK, LOG)} == {"no-op"}

    # the documented next step makes the secrets known: push them once, then the plan is clean
    w.env["KCR_FINGERPRINT_KEY"] = "fp"
    code, out, err = w.kcr("apply", "--sync-secrets", "--auto-approve")
    assert code == 0, out + err
    code, out, err = w.kcr("plan", "--detailed-exitcode")
    assert code == 0 and "unknown" not in out, out + err
    assert {c["id"] for c in w.sb.connectors_in("ops")} == {SLACK, HOOK, LOG, BY_KEY}  # ids kept


def test_import_round_trip_as_a_process_over_a_socket(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"connectors/ops/main.yaml": MAIN})
    with running(Sandbox.from_seed(seed())) as url:
        env = process_env(KIBANA_URL=url, KIBANA_API_KEY="k", NO_COLOR="1")
        proc = kcr_process(repo, env, "import", SLACK, "--space", "ops")
        assert proc.returncode == 0, proc.stderr
        env["KCR_OPS_OPS_SLACK_WEBHOOK_URL"] = SLACK_SECRET
        proc = kcr_process(repo, env, "plan", "--detailed-exitcode", "--format", "json", secrets=[SLACK_SECRET])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert _actions(proc.stdout)[SLACK] == "no-op"
        assert not {"create", "delete", "recreate"} & set(_actions(proc.stdout).values())


def test_variables_never_collide_with_ones_the_repository_reads(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys, {"connectors/ops/main.yaml": MAIN, "connectors/default/a.yaml": (
        "connectors:\n  - id: other\n    name: Other\n    type: .slack\n"
        "    secrets:\n      webhookUrl: ${env:KCR_DEFAULT_OPS_SLACK_WEBHOOK_URL}\n")})
    code, out, err = w.kcr("import", TWIN, "--space", "default")
    assert code == 0, err
    assert "KCR_DEFAULT_OPS_SLACK_00000000_WEBHOOK_URL" in out
    item = yaml.safe_load((w.repo / "connectors/default/imported.yaml").read_text())["connectors"][0]
    assert item["secrets"] == {"webhookUrl": "${env:KCR_DEFAULT_OPS_SLACK_00000000_WEBHOOK_URL}"}


def test_with_environments_the_item_belongs_to_the_environment_it_was_read_from(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys, {"kcr.yaml": "environments:\n  staging: {}\n  production: {}\n",
                                  "connectors/ops/main.yaml": MAIN})
    code, _, err = w.kcr("import", LOG.replace("3", "9"), "--space", "ops")
    assert code == 1 and "select one with --env" in err
    code, out, err = w.kcr("import", SLACK, "--space", "ops", "--env", "production")
    assert code == 0, err
    assert "environment production only" in out
    item = yaml.safe_load((w.repo / "connectors/ops/imported.yaml").read_text())["connectors"][0]
    assert item["environments"] == ["production"]
    w.env["KCR_OPS_OPS_SLACK_WEBHOOK_URL"] = SLACK_SECRET
    code, out, _ = w.kcr("plan", "--env", "production", "--format", "json")
    assert code == 0 and _actions(out)[SLACK] == "no-op"
    code, out, _ = w.kcr("plan", "--env", "staging", "--format", "json")  # same Kibana here: not declared
    assert code == 0 and _actions(out)[SLACK] == "unmanaged"


def test_appending_to_an_empty_flow_list_and_a_file_without_final_newline() -> None:
    entry = {"id": SLACK, "name": "S", "type": ".slack"}
    new = appended("connectors: []  # none yet\n", entry, "imported", "f.yaml")
    assert yaml.safe_load(new) == {"connectors": [entry]} and "# none yet" in new
    new = appended("connectors:\n- id: a\n  name: A\n  type: .slack", entry, "imported", "f.yaml")
    assert yaml.safe_load(new)["connectors"][1] == entry
    new = appended("connectors:\r\n  - id: a\r\n    name: A\r\n    type: .slack\r\n", entry, "imported", "f.yaml")
    assert yaml.safe_load(new)["connectors"][1] == entry and "\n" not in new.replace("\r\n", "")
    after = "connectors:\n  - id: a\n    name: A\n    type: .slack  # mine\n# about environments\nenvironments: [x]\n"
    new = appended(after, entry, "imported", "f.yaml")
    assert yaml.safe_load(new) == {"connectors": [yaml.safe_load(after)["connectors"][0], entry], "environments": ["x"]}
    assert new.index("# about environments") > new.index(SLACK)  # inserted after the last item's own lines
    with pytest.raises(ConfigError, match="rewrite it as a block list"):
        appended("connectors: [{id: a, name: A, type: .slack}]\n", entry, "imported", "f.yaml")


# --- refusals: each writes nothing -------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "said"), [
    ((SLACK.replace("1", "7"), "--space", "ops"), "Kibana has no connector"),
    ((LOG, "--space", "ops"), f"connector {LOG} is already declared in connectors/ops/main.yaml"),
    ((BY_KEY, "--space", "ops"), "already declared in connectors/ops/main.yaml (space ops, id paging)"),
    (("my-slack", "--space", "ops"), "is a preconfigured connector"),
    ((SLACK, "--space", "nowhere"), "space 'nowhere' not found in Kibana"),
    ((SLACK,), "give exactly one --space"),
    ((SLACK, "--space", "ops", "--space", "default"), "give exactly one --space"),
    ((SLACK, "--space", "ops", "--into", "connectors/default/x.yaml"), "outside connectors/ops/"),
    ((SLACK, "--space", "ops", "--into", "connectors/ops/sub/x.yaml"), "outside connectors/ops/"),
    ((SLACK, "--space", "ops", "--into", "x.yaml"), "outside connectors/ops/"),
    ((SLACK, "--space", "ops", "--into", "connectors/ops/../ops/x.yaml"), "relative to the repository"),
    ((SLACK, "--space", "ops", "--into", "connectors/ops/notes.txt"), "only *.yaml and *.yml"),
    ((SLACK, "--space", "ops", "--into", "connectors/ops/_space.yaml"), "the space's settings file"),
    ((SLACK, "--space", "ops", "--into", "connectors/ops/settings.yaml"), "not a kcr connector file"),
    ((SLACK, "--space", "_all"), "not a space id"),
])
def test_refusals_name_the_reason_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   args: tuple[str, ...], said: str) -> None:
    w = _world(tmp_path, capsys)
    if "settings.yaml" in " ".join(args):  # a YAML file that is not a connector file
        (w.repo / "connectors/ops/settings.yaml").write_text("prune: false\n")
    before = _snapshot(w.repo)
    code, _, err = w.kcr("import", *args)
    assert code == 1
    assert said in err, err
    assert _snapshot(w.repo) == before


def test_a_result_that_would_not_validate_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the repository's own schema for .slack wants a config key the live connector does not have
    strict = {"id": ".slack", "override": True,
              "config": {"type": "object", "properties": {"channel": {"type": "string"}}, "required": ["channel"]}}
    w = _world(tmp_path, capsys, {"connectors/ops/main.yaml": MAIN, "schemas/types/slack.json": json.dumps(strict)})
    before = _snapshot(w.repo)
    code, _, err = w.kcr("import", SLACK, "--space", "ops", "--into", "connectors/ops/main.yaml")
    assert code == 1
    assert "after the import" in err and "channel" in err
    assert _snapshot(w.repo) == before


def test_a_repository_with_errors_is_not_added_to(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys, {"connectors/ops/main.yaml": MAIN + "  - oops\n"})
    before = _snapshot(w.repo)
    code, _, err = w.kcr("import", SLACK, "--space", "ops")
    assert code == 1 and "fix the problems above first" in err
    assert _snapshot(w.repo) == before


def test_system_actions_are_refused() -> None:
    class Client:
        def list_spaces(self) -> list[str]:
            return ["default"]

        def list_connectors(self, space: str) -> list[LiveConnector]:
            return [LiveConnector("system-connector-.cases", "Cases", ".cases", {}, is_system_action=True)]

    with pytest.raises(ConfigError, match="is a system action"):
        find_live(Client(), "default", "system-connector-.cases")
