"""CLI behaviour (SPEC §1, §4, §6, §7) through `reconciler.cli.main(argv, env, transport)` against the
in-process sandbox: exit codes, --space and --dir, apply's refusals (no terminal, another Kibana),
types, --help, kcr test, export then plan, the demo, and internal errors without tracebacks."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.cli import World, write_repo

from reconciler.cli import main
from reconciler.model import derive_connector_id
from reconciler.sandbox import Sandbox

KIBANA = "http://kibana.test"
REFERENCED = str(uuid.UUID(int=11, version=4))
STRAY = str(uuid.UUID(int=12, version=4))
RULE = str(uuid.UUID(int=13, version=4))
SLACK_ID = derive_connector_id("default", "slack-main")
HISTORY_ID = derive_connector_id("ops", "history")
PROJECT = Path(__file__).resolve().parent.parent

REPO = {
    "connectors/default/chat.yaml": """\
connectors:
  - id: slack-main
    name: Slack main
    type: .slack
    secrets:
      webhookUrl: ${env:SLACK_URL}
""",
    "connectors/ops/index.yaml": """\
connectors:
  - id: history
    name: History
    type: .index
    config:
      index: ops-history
""",
}


def seed(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"license": "platinum", "spaces": ["default", "ops"]}
    base.update(extra)
    return base


@pytest.fixture()
def world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> World:
    env = {"KIBANA_URL": KIBANA, "SLACK_URL": "https://hooks.example.com/T0/B0/x", "KCR_FINGERPRINT_KEY": "k",
           "NO_COLOR": "1"}
    return World(write_repo(tmp_path / "repo", REPO), env, Sandbox.from_seed(seed()), capsys)


def converge(w: World) -> None:
    code, out, err = w.kcr("apply", "--auto-approve")
    assert code == 0, out + err


# --- exit codes ------------------------------------------------------------------------------------------


def test_plan_exit_codes(world: World) -> None:
    code, out, _ = world.kcr("plan")
    assert code == 0, out  # changes, but no --detailed-exitcode
    assert "Plan: 2 to create" in out
    assert world.kcr("plan", "--detailed-exitcode")[0] == 2
    converge(world)
    assert world.kcr("plan", "--detailed-exitcode")[0] == 0
    assert world.kcr("plan")[0] == 0
    # An error: a declared space Kibana does not have.
    (world.repo / "connectors/typo-space").mkdir()
    (world.repo / "connectors/typo-space/x.yaml").write_text(REPO["connectors/ops/index.yaml"])
    code, out, err = world.kcr("plan", "--detailed-exitcode")
    assert code == 1, out + err
    assert "typo-space" in out + err


def test_drift_exit_codes(world: World) -> None:
    assert world.kcr("drift")[0] == 2
    converge(world)
    code, out, _ = world.kcr("drift")
    assert code == 0, out
    world.env["SLACK_URL"] = "https://hooks.example.com/T0/B0/rotated"
    code, out, _ = world.kcr("drift", "--format", "json")
    assert code == 2
    assert json.loads(out)["summary"]["update"] == 1
    assert world.kcr("drift", env={**world.env, "KIBANA_URL": "not a url"})[0] == 1
    assert world.kcr("drift", env={k: v for k, v in world.env.items() if k != "SLACK_URL"})[0] == 1


def test_apply_blocked_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sb = Sandbox.from_seed(seed(
        connectors=[{"id": REFERENCED, "space": "ops", "name": "Used", "connector_type_id": ".server-log"},
                    {"id": STRAY, "space": "ops", "name": "Stray", "connector_type_id": ".server-log"}],
        rules=[{"id": RULE, "space": "ops", "name": "CPU high", "actions": [{"id": REFERENCED, "group": "default"}]}]))
    repo = tmp_path / "repo"
    (repo / "connectors/ops").mkdir(parents=True)
    (repo / "connectors/ops/_space.yaml").write_text("prune: true\n")
    (repo / "connectors/ops/index.yaml").write_text(REPO["connectors/ops/index.yaml"])
    w = World(repo, {"KIBANA_URL": KIBANA}, sb, capsys)
    code, out, _ = w.kcr("plan", "--out", str(tmp_path / "plan.json"), "--detailed-exitcode")
    assert code == 2
    assert "CPU high" in out and "BLOCKED" in out.upper()
    code, out, err = w.kcr("apply", str(tmp_path / "plan.json"))
    assert code == 3, out + err
    ids = {c["id"] for c in sb.connectors_in("ops")}
    assert REFERENCED in ids and STRAY not in ids and HISTORY_ID in ids  # the rest proceeded
    assert w.kcr("apply", "--auto-approve", "--allow-referenced", REFERENCED)[0] == 0
    assert REFERENCED not in {c["id"] for c in sb.connectors_in("ops")}


# --- scope ------------------------------------------------------------------------------------------------


def test_space_filter(world: World) -> None:
    code, out, _ = world.kcr("plan", "--space", "ops", "--format", "json")
    assert code == 0
    assert {c["address"].split("/")[0] for c in json.loads(out)["changes"]} == {"ops"}
    assert world.sb.counters.get("GET list_connectors", 0) <= 1
    code, out, _ = world.kcr("apply", "--auto-approve", "--space", "ops")
    assert code == 0, out
    assert world.sb.connectors_in("default") == []
    assert [c["id"] for c in world.sb.connectors_in("ops")] == [HISTORY_ID]
    code, out, _ = world.kcr("plan", "--space", "default", "--space", "ops", "--format", "json")
    assert json.loads(out)["summary"]["create"] == 1


def test_dir_and_current_directory(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = world.kcr("validate", dir=False)
    assert code == 1 and "connectors" in out + err  # no repository here
    monkeypatch.chdir(world.repo)
    code, out, _ = world.kcr("validate", dir=False)
    assert code == 0, out
    assert "2 connectors in 2 files, 2 spaces" in out
    code, out, _ = world.kcr("validate")  # --dir from elsewhere gives the same
    assert "2 connectors in 2 files, 2 spaces" in out


# --- apply's refusals -------------------------------------------------------------------------------------


def test_apply_without_terminal_or_auto_approve_refuses(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    code, _, err = world.kcr("apply")
    assert code == 1
    assert "--auto-approve" in err and "no terminal" in err
    assert world.sb.connectors_in("default") == [] and world.sb.connectors_in("ops") == []
    assert not any(k.startswith(("POST", "PUT", "DELETE")) for k in world.sb.counters)


def test_apply_nothing_to_do_needs_no_approval(world: World) -> None:
    converge(world)
    code, out, _ = world.kcr("apply")
    assert code == 0, out


def test_apply_saved_plan_against_another_kibana_refuses(world: World, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    assert world.kcr("plan", "--out", str(plan))[0] == 0
    other = Sandbox.from_seed(seed())
    code, out, err = world.kcr("apply", str(plan), transport=other.transport(),
                               env={**world.env, "KIBANA_URL": "http://other-kibana.test"})
    assert code == 1, out + err
    assert "other-kibana.test" in err and KIBANA in err
    assert other.connectors_in("default") == [] and other.connectors_in("ops") == []


def test_apply_saved_plan_needs_the_target_confirmed(world: World, tmp_path: Path) -> None:
    """The URL inside a plan is never the target by itself (it used to be, sending the credentials
    wherever the file said); --kibana-url naming the same Kibana confirms it."""
    plan = tmp_path / "plan.json"
    assert world.kcr("plan", "--out", str(plan))[0] == 0
    env = {k: v for k, v in world.env.items() if k != "KIBANA_URL"}
    world.sb.reset_counters()
    code, out, err = world.kcr("apply", str(plan), env=env)
    assert code == 1 and "set KIBANA_URL or pass --kibana-url" in err, out + err
    assert world.sb.counters["total"] == 0
    code, out, err = world.kcr("apply", str(plan), "--kibana-url", KIBANA + "/", env=env)
    assert code == 0, out + err
    assert [c["id"] for c in world.sb.connectors_in("default")] == [SLACK_ID]


def test_apply_bad_plan_file(world: World, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text("{not json")
    code, _, err = world.kcr("apply", str(plan))
    assert code == 1
    assert "plan.json" in err
    assert world.sb.counters["total"] == 0


# --- types, help, test ------------------------------------------------------------------------------------


def test_types(world: World) -> None:
    code, out, _ = world.kcr("types")
    assert code == 0
    assert out.splitlines()[0].split()[:2] == ["TYPE", "NAME"]
    assert any(line.startswith(".slack ") for line in out.splitlines())
    code, out, _ = world.kcr("types", "--format", "json")
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows[".slack"]["required_secrets"] == ["webhookUrl"]
    assert rows[".opsgenie"]["minimum_license"] == "platinum"
    assert world.sb.counters["total"] == 0  # offline
    basic = Sandbox.from_seed(seed(license="basic"))
    code, out, _ = world.kcr("types", "--live", "--format", "json", transport=basic.transport())
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows[".slack"]["enabled"] is False and rows[".slack"]["enabled_in_license"] is False
    assert rows[".index"]["enabled"] is True
    code, out, _ = world.kcr("types", "--live", transport=basic.transport())
    assert "disabled (licence)" in out


def test_help_lists_every_command(world: World) -> None:
    code, out, _ = world.kcr("--help", dir=False)
    assert code == 0
    for command in ("validate", "plan", "apply", "drift", "export", "types", "test", "sandbox", "demo"):
        assert f"  {command} " in out or f"  {command}\n" in out, command
    assert "Exit codes" in out
    for command in ("plan", "apply", "drift", "export", "test"):
        code, out, _ = world.kcr(command, "--help", dir=False)
        assert code == 0 and "--space" in out and "--dir" in out, command


def test_connector_test_ok_and_errors(world: World) -> None:
    converge(world)
    code, out, _ = world.kcr("test", SLACK_ID, "--params", '{"message": "hi"}')
    assert code == 0, out
    assert f"default/{SLACK_ID}: ok" in out
    assert world.sb.executions[-1]["params"] == {"message": "hi"}
    code, out, err = world.kcr("test", str(uuid.uuid4()))
    assert code == 1 and "unknown connector" in err and "404" not in err  # said in words, not Kibana's raw 404
    code, out, err = world.kcr("test", SLACK_ID, "--params", "[1]")
    assert code == 1 and "JSON object" in err
    code, out, err = world.kcr("test", HISTORY_ID, "--space", "ops", "--params", "{")
    assert code == 1 and "not valid JSON" in err
    n = len(world.sb.executions)
    code, _, err = world.kcr("test", "../../api/security")
    assert code == 1 and "Traceback" not in err
    assert len(world.sb.executions) == n


def test_connector_test_kibana_reports_an_error(world: World) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "error", "connector_id": SLACK_ID, "message": "an error occurred "
                                         "while running the action", "service_message": "invalid_token",
                                         "retry": False})

    code, out, _ = world.kcr("test", SLACK_ID, transport=httpx.MockTransport(answer))
    assert code == 1
    assert "error: an error occurred" in out and "invalid_token" in out


# --- export then plan -------------------------------------------------------------------------------------


def test_export_then_plan_shows_no_create_or_delete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sb = Sandbox.from_seed(seed(connectors=[
        {"id": str(uuid.UUID(int=21, version=4)), "space": "default", "name": "Slack", "connector_type_id": ".slack",
         "secrets": {"webhookUrl": "https://hooks.example.com/a"}},
        {"id": str(uuid.UUID(int=22, version=4)), "space": "default", "name": "Hook", "connector_type_id": ".webhook",
         "config": {"url": "https://hooks.example.com/b", "hasAuth": True}, "secrets": {"user": "u", "password": "p"}},
        {"id": str(uuid.UUID(int=23, version=4)), "space": "ops", "name": "Index", "connector_type_id": ".index",
         "config": {"index": "ops"}},
        {"id": str(uuid.UUID(int=24, version=4)), "space": "ops", "name": "Log", "connector_type_id": ".server-log"},
    ], preconfigured={"yml-log": {"name": "From kibana.yml", "actionTypeId": ".server-log"}}))
    repo = tmp_path / "adopted"
    w = World(repo, {"KIBANA_URL": KIBANA, "NO_COLOR": "1"}, sb, capsys)
    code, out, _ = w.kcr("export")
    assert code == 0, out
    assert len(list((repo / "connectors").rglob("*.yaml"))) >= 2
    variables = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert len(variables) == 3, out  # slack url, webhook user + password
    assert "yml-log" not in "".join(p.read_text() for p in (repo / "connectors").rglob("*.yaml"))
    assert w.kcr("validate")[0] == 0
    w.env.update({name: f"https://hooks.example.com/{name.lower()}" for name in variables})
    code, out, err = w.kcr("plan", "--format", "json")
    assert code == 0, out + err
    actions = {c["action"] for c in json.loads(out)["changes"]}
    assert not actions & {"create", "delete", "recreate"}, actions
    before = {s: sb.connectors_in(s) for s in ("default", "ops")}
    code, out, err = w.kcr("export", "--space", "ops", "--out-dir", str(tmp_path / "ops-only"))
    assert code == 0
    assert [p.parent.name for p in (tmp_path / "ops-only").rglob("connectors.yaml")] == ["ops"]
    assert {s: sb.connectors_in(s) for s in ("default", "ops")} == before  # export never writes to Kibana


# --- demo and internal errors -----------------------------------------------------------------------------


def test_demo_runs(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KIBANA_URL", "KIBANA_API_KEY", "KCR_RECORD"):
        monkeypatch.delenv(name, raising=False)
    code = main(["demo", "--dir", str(PROJECT)], env={})
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "Traceback" not in err
    # one sandbox per environment, each on its own loopback port, each planned, applied and re-planned
    urls = dict(re.findall(r"^  (staging|production) +(http://127\.0\.0\.1:\d+)$", out, re.MULTILINE))
    assert set(urls) == {"staging", "production"} and urls["staging"] != urls["production"], out
    for name, url in urls.items():
        assert f"KIBANA_URL={url} kcr apply --env {name} " in out
        assert f"Environment {name}: Kibana {url}" in out
    assert out.count("No changes. Kibana matches the repository.") == 2
    # the same files, different values: staging's overrides, production's defaults and its own connector
    staging, production = out.split("kcr plan --env production --out", 1)
    assert '"Slack #alerts-staging"' in staging and '"SecOps Jira (SECSTG)"' in staging
    assert "pagerduty-oncall" not in staging and "config.port: + 587" in staging
    assert '"Slack #alerts"' in production and '"SecOps Jira (SECOPS)"' in production
    assert "(pagerduty-oncall)" in production and "config.port: + 465" in production
    assert "only in production: default/pagerduty-oncall." in out.splitlines()[-1]
    assert "not-a-real-secret" not in out + err  # the fake secrets are named, never shown


def test_unexpected_error_is_one_line(world: World) -> None:
    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug with a local value")

    code, _, err = world.kcr("plan", transport=httpx.MockTransport(explode))
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "internal error (RuntimeError)" in lines[0] and "KCR_DEBUG" in lines[0]
    assert "a bug with a local value" not in err
    with pytest.raises(RuntimeError):
        main(["plan", "--dir", str(world.repo)], env={**world.env, "KCR_DEBUG": "1"},
             transport=httpx.MockTransport(explode))


def test_kibana_unreachable_and_bad_credentials(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler import kibana

    waits: list[float] = []
    real_init = kibana.KibanaClient.__init__

    def no_sleep_init(self: kibana.KibanaClient, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **{**kwargs, "sleep": waits.append})

    monkeypatch.setattr(kibana.KibanaClient, "__init__", no_sleep_init)
    attempts: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        raise httpx.ConnectError("connection refused", request=request)

    code, _, err = world.kcr("plan", transport=httpx.MockTransport(refuse))
    assert code == 1 and "Error:" in err and "internal error" not in err
    assert 1 < len(attempts) <= 10 and len(waits) == len(attempts) - 1  # retried with backoff, then gave up
    locked = Sandbox.from_seed(seed(auth={"api_keys": ["right"]}))
    code, _, err = world.kcr("plan", transport=locked.transport(), env={**world.env, "KIBANA_API_KEY": "wrong"})
    assert code == 1 and "401" in err and "KIBANA_API_KEY" in err
    code, _, err = world.kcr("plan", env={k: v for k, v in world.env.items() if k != "KIBANA_URL"})
    assert code == 1 and "KIBANA_URL" in err


def test_kcr_test_accepts_a_repository_key(tmp_path: Path) -> None:
    """Users know their keys, not the derived UUIDs: `kcr test prod-log` runs the derived id."""
    from reconciler.model import derive_connector_id

    (tmp_path / "connectors" / "default").mkdir(parents=True)
    cid = derive_connector_id("default", "prod-log")
    sb = Sandbox.from_seed({"connectors": [{"id": cid, "space": "default", "name": "Log",
                                            "connector_type_id": ".server-log", "config": {}, "secrets": {}}]})
    code = main(["test", "prod-log", "--params", '{"message": "hello"}', "--dir", str(tmp_path)],
                env={"KIBANA_URL": "http://kibana.test"}, transport=sb.transport())
    assert code == 0
    assert [e["connector_id"] for e in sb.executions] == [cid]


def test_plan_warns_once_when_env_secrets_cannot_be_compared(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "connectors" / "default"
    d.mkdir(parents=True)
    (d / "a.yaml").write_text("connectors:\n  - id: pd\n    name: PD\n    type: .pagerduty\n"
                              "    secrets:\n      routingKey: ${env:PD_KEY}\n")
    env = {"KIBANA_URL": "http://kibana.test", "PD_KEY": "x-routing-key", "KCR_RECORD": str(tmp_path / "r.json")}
    sb = Sandbox.from_seed({})
    assert main(["plan", "--dir", str(tmp_path)], env=env, transport=sb.transport()) == 0
    assert capsys.readouterr().err.count("KCR_FINGERPRINT_KEY is not set") == 1
    assert main(["plan", "--dir", str(tmp_path)], env={**env, "KCR_FINGERPRINT_KEY": "k"},
                transport=sb.transport()) == 0
    assert "KCR_FINGERPRINT_KEY" not in capsys.readouterr().err


def test_a_one_run_apply_reads_each_vault_secret_once(tmp_path: Path) -> None:
    import respx

    d = tmp_path / "connectors" / "default"
    d.mkdir(parents=True)
    (d / "a.yaml").write_text("connectors:\n  - id: pd\n    name: PD\n    type: .pagerduty\n"
                              "    secrets:\n      routingKey: ${vault:secret/pd#key}\n")
    env = {"KIBANA_URL": "http://kibana.test", "VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "t",
           "KCR_RECORD": str(tmp_path / "r.json")}
    sb = Sandbox.from_seed({})
    body = {"data": {"data": {"key": "rk-from-vault"}, "metadata": {"version": 3}}}
    with respx.mock(base_url="http://127.0.0.1:8200", assert_all_called=False) as vault:
        vault.get(url__regex=r"/v1/sys/internal/ui/mounts/.*").respond(
            200, json={"data": {"path": "secret/", "type": "kv", "options": {"version": "2"}}})
        read = vault.get("/v1/secret/data/pd").respond(200, json=body)
        assert main(["apply", "--auto-approve", "--dir", str(tmp_path)], env=env, transport=sb.transport()) == 0
    assert read.call_count == 1
    assert sb.connectors_in("default")[0]["secrets"] == {"routingKey": "rk-from-vault"}
