"""Issue #13, many Kibanas at once: `kcr plan --all-envs` and `kcr drift --all-envs` plan every
environment of kcr.yaml into one report (a section per environment, text, Markdown and JSON) with one
exit code; an environment's error is its own section and never hides the others; an environment
without a Kibana URL of its own, and flags naming one environment, Kibana or plan file, are refused
before any request; the files are read once for all environments; and no secret reaches the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.cli import kcr_process, process_env, run_main, write_repo
from helpers.transports import Recorder

from reconciler import desired, envs_plan, pipeline
from reconciler.errors import Problem
from reconciler.plan import Action, Change, Plan
from reconciler.render import MARKER
from reconciler.sandbox import Sandbox
from reconciler.sandbox.server import running

STAGING, PRODUCTION, DEV = "http://staging.test", "http://production.test", "http://dev.test"
CANARIES = {"SLACK_URL": "https://hooks.example.com/CANARY-slack-5e1d", "STAGING_KEY": "CANARY-staging-key-0a9c",
            "PRODUCTION_KEY": "CANARY-production-key-77b3", "KIBANA_API_KEY": "CANARY-shared-key-31f0"}
KEY = "a-fingerprint-key-for-tests-0123456789"

SETTINGS = """\
vars:
  project: OPS
environments:
  staging:
    kibana_url: http://staging.test
    credentials: {api_key: STAGING_KEY}
    vars: {channel: "#stg"}
  production:
    kibana_url_env: PRODUCTION_URL
    credentials: {api_key: PRODUCTION_KEY}
    vars: {channel: "#prod"}
"""
CONNECTORS = {
    "connectors/default/alerts.yaml": """\
connectors:
  - id: slack
    name: Slack ${var:channel}
    type: .slack
    secrets:
      webhookUrl: ${env:SLACK_URL}
  - id: history
    name: History (${var:env})
    type: .index
    config:
      index: alerts-${var:env}
  - id: pager-log
    name: Production only
    type: .server-log
    environments: [production]
""",
}


class Kibanas:
    """One in-process sandbox per Kibana host, each request routed by host and recorded."""

    def __init__(self, hosts: list[str]) -> None:
        self.sandboxes = {host: Sandbox.from_seed({"license": "platinum", "spaces": ["default"], "connectors": []})
                          for host in hosts}
        self.refused: set[str] = set()
        self.recorder = Recorder(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in self.refused:
            return httpx.Response(401, json={"statusCode": 401, "error": "Unauthorized", "message": "bad key"})
        return self.sandboxes[request.url.host].transport().handle_request(request)

    def transport(self) -> httpx.MockTransport:
        return self.recorder.transport()

    def hosts_asked(self) -> set[str]:
        return {r.url.host for r in self.recorder.requests}


@pytest.fixture()
def env() -> dict[str, str]:
    return {"PRODUCTION_URL": PRODUCTION, "KCR_FINGERPRINT_KEY": KEY, "NO_COLOR": "1", **CANARIES}


@pytest.fixture()
def kibanas() -> Kibanas:
    return Kibanas(["staging.test", "production.test", "dev.test"])


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    return write_repo(tmp_path / "repo", {"kcr.yaml": SETTINGS, **CONNECTORS})


def kcr(capsys: pytest.CaptureFixture[str], kibanas: Kibanas, env: dict[str, str], repo: Path,
        *args: str) -> tuple[int, str, str]:
    code, out, err = run_main(capsys, [*args, "--dir", str(repo)], env=env, transport=kibanas.transport())
    for value in CANARIES.values():
        assert value not in out + err, "a secret reached the output"
    return code, out, err


@pytest.fixture()
def applied(capsys: pytest.CaptureFixture[str], kibanas: Kibanas, env: dict[str, str], repo: Path) -> Path:
    """Both environments applied one at a time, so a plan of either is clean."""
    for name in ("staging", "production"):
        code, out, err = kcr(capsys, kibanas, env, repo, "apply", "--env", name, "--auto-approve")
        assert code == 0, out + err
    kibanas.recorder.requests.clear()
    return repo


def sections(out: str) -> dict[str, str]:
    """The text report's sections by environment."""
    found: dict[str, str] = {}
    for chunk in out.split("=== environment ")[1:]:
        name, _, body = chunk.partition(" ===\n")
        found[name] = body
    return found


# --- sections and exit codes ----------------------------------------------------------------------------


def test_a_clean_repository_plans_every_environment_and_exits_0(capsys: pytest.CaptureFixture[str],
                                                                  kibanas: Kibanas, env: dict[str, str],
                                                                  applied: Path) -> None:
    code, out, _ = kcr(capsys, kibanas, env, applied, "plan", "--all-envs", "--detailed-exitcode")
    assert code == 0, out
    by_env = sections(out)
    assert list(by_env) == ["production", "staging"]
    assert f"Kibana {PRODUCTION}" in by_env["production"] and f"Kibana {STAGING}" in by_env["staging"]
    assert all("No changes. Kibana matches the repository." in body for body in by_env.values())
    assert "2 environments planned, none with errors, none with changes." in out
    assert kibanas.hosts_asked() == {"staging.test", "production.test"}


def test_one_environment_with_changes_exits_2_with_detailed_exitcode(capsys: pytest.CaptureFixture[str],
                                                                     kibanas: Kibanas, env: dict[str, str],
                                                                     applied: Path) -> None:
    (applied / "kcr.yaml").write_text(SETTINGS.replace('"#prod"', '"#prod-new"'), encoding="utf-8")
    code, out, _ = kcr(capsys, kibanas, env, applied, "plan", "--all-envs", "--detailed-exitcode")
    assert code == 2, out
    by_env = sections(out)
    assert '"Slack #prod-new"' in by_env["production"] and "update" in by_env["production"]
    assert "No changes. Kibana matches the repository." in by_env["staging"]
    assert "  production: 1 to update\n  staging: no changes\n" in out
    code, _, _ = kcr(capsys, kibanas, env, applied, "plan", "--all-envs")
    assert code == 0
    code, out, _ = kcr(capsys, kibanas, env, applied, "drift", "--all-envs")
    assert code == 2 and "1 with changes" in out


def test_an_erroring_environment_exits_1_and_the_others_still_show(capsys: pytest.CaptureFixture[str],
                                                                   kibanas: Kibanas, env: dict[str, str],
                                                                   applied: Path) -> None:
    kibanas.refused.add("production.test")
    code, out, _ = kcr(capsys, kibanas, env, applied, "plan", "--all-envs", "--detailed-exitcode")
    assert code == 1, out
    by_env = sections(out)
    assert by_env["production"].startswith("Error: ") and "401" in by_env["production"]
    assert "No changes. Kibana matches the repository." in by_env["staging"]
    assert "  production: error\n  staging: no changes\n" in out
    code, out, _ = kcr(capsys, kibanas, env, applied, "drift", "--all-envs")
    assert code == 1 and "Kibana matches the repository" in sections(out)["staging"]


def test_an_unset_url_variable_is_that_environments_error(capsys: pytest.CaptureFixture[str], kibanas: Kibanas,
                                                          env: dict[str, str], applied: Path) -> None:
    del env["PRODUCTION_URL"]
    code, out, _ = kcr(capsys, kibanas, env, applied, "plan", "--all-envs")
    assert code == 1
    assert "reads its Kibana URL from PRODUCTION_URL, which is not set" in sections(out)["production"]
    assert "No changes" in sections(out)["staging"]
    assert kibanas.hosts_asked() == {"staging.test"}


def test_a_file_problem_in_one_environment_leaves_the_other_planned(capsys: pytest.CaptureFixture[str],
                                                                    kibanas: Kibanas, env: dict[str, str],
                                                                    applied: Path) -> None:
    """An undefined var only production reads: the whole reading has errors, so each environment is read
    alone and only production's section carries them."""
    write_repo(applied, {"connectors/default/more.yaml": """\
connectors:
  - id: jira
    name: Jira ${var:only_in_staging}
    type: .server-log
    environments: [production]
"""})
    code, out, _ = kcr(capsys, kibanas, env, applied, "plan", "--all-envs", "--format", "json")
    assert code == 1
    report = json.loads(out)["environments"]
    assert "only_in_staging" in report["production"]["error"]
    assert report["production"]["problems"][0]["file"] == "connectors/default/more.yaml"
    assert report["staging"]["environment"] == "staging" and report["staging"]["summary"]["no-op"] == 2


def test_a_plan_with_errors_is_an_error_and_changes_elsewhere_do_not_hide_it() -> None:
    error = Problem.in_kibana("default", None, "error", "unknown space 'default'")
    change = Change(id="x", space="default", action=Action.CREATE, reason="declared, not in Kibana", name="X",
                    type=".server-log")
    clean, changed = Plan("http://a.test", ("default",), ()), Plan("http://b.test", ("default",), (change,))
    broken = Plan("http://c.test", ("default",), (), problems=(error,))
    result = envs_plan.AllEnvs((envs_plan.Outcome("a", clean), envs_plan.Outcome("b", changed)))
    assert (result.exit_code(detailed=False), result.exit_code(detailed=True)) == (0, 2)
    result = envs_plan.AllEnvs((*result.outcomes, envs_plan.Outcome("c", broken)))
    assert (result.exit_code(detailed=False), result.exit_code(detailed=True)) == (1, 1)
    assert "  c: plan has errors\n" in envs_plan.text(result, color=False)


def test_a_space_no_environment_has_is_each_sections_error(capsys: pytest.CaptureFixture[str], kibanas: Kibanas,
                                                           env: dict[str, str], applied: Path) -> None:
    code, out, _ = kcr(capsys, kibanas, env, applied, "plan", "--all-envs", "--space", "nowhere")
    assert code == 1
    assert [body.startswith("Error: ") and "'nowhere'" in body for body in sections(out).values()] == [True, True]
    assert kibanas.recorder.requests == []


# --- the report's shapes ----------------------------------------------------------------------------------


def test_json_has_one_plan_per_environment(capsys: pytest.CaptureFixture[str], kibanas: Kibanas,
                                           env: dict[str, str], applied: Path) -> None:
    kibanas.refused.add("staging.test")
    code, out, _ = kcr(capsys, kibanas, env, applied, "plan", "--all-envs", "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert list(report) == ["environments"]
    production, staging = report["environments"]["production"], report["environments"]["staging"]
    assert production["environment"] == "production" and production["kibana_url"] == PRODUCTION
    assert {c["address"].split("/")[0] for c in production["changes"]} == {"default"}
    assert "mac" not in production  # a report for review: apply takes one environment's `kcr plan --out`
    assert set(staging) == {"error", "problems"} and "401" in staging["error"]


def test_markdown_and_gitlab_report_are_combined(capsys: pytest.CaptureFixture[str], kibanas: Kibanas,
                                                 env: dict[str, str], repo: Path, tmp_path: Path) -> None:
    md, gl = tmp_path / "plan.md", tmp_path / "report.json"
    code, out, _ = kcr(capsys, kibanas, env, repo, "plan", "--all-envs", "--format", "markdown", "--no-secrets",
                       "--markdown-out", str(md), "--gitlab-report", str(gl))
    assert code == 0
    text = md.read_text(encoding="utf-8")
    assert text == out
    assert text.count(MARKER) == 1 and text.count("### kcr plan") == 1
    assert "| `production` | 3 | 0 | 0 | 0 | 0 | 3 to create |" in text
    assert "| `staging` | 2 | 0 | 0 | 0 | 0 | 2 to create |" in text
    assert text.index("#### Environment `production`") < text.index("#### Environment `staging`")
    assert "##### Changes" in text  # each plan's own headings one level down
    assert json.loads(gl.read_text(encoding="utf-8")) == {"create": 5, "update": 0, "delete": 0}
    for value in CANARIES.values():
        assert value not in text


def test_no_secret_reaches_any_output(capsys: pytest.CaptureFixture[str], kibanas: Kibanas, env: dict[str, str],
                                      repo: Path, tmp_path: Path) -> None:
    """The plan creates the Slack connector in both environments (its secret resolved, its digest
    compared), with every request logged; the canaries are checked in stdout, stderr (by `kcr`) and
    the files written."""
    md, gl = tmp_path / "plan.md", tmp_path / "report.json"
    for fmt in ("text", "json", "markdown"):
        code, out, err = kcr(capsys, kibanas, env, repo, "plan", "--all-envs", "-vv", "--format", fmt,
                             "--markdown-out", str(md), "--gitlab-report", str(gl))
        assert code == 0, out + err
        assert "secrets: set (keys: webhookUrl)" in out or "webhookUrl" in out
        written = md.read_text(encoding="utf-8") + gl.read_text(encoding="utf-8")
        for value in CANARIES.values():
            assert value not in written


def test_log_lines_name_the_environment(capsys: pytest.CaptureFixture[str], kibanas: Kibanas,
                                        env: dict[str, str], applied: Path) -> None:
    code, _, err = kcr(capsys, kibanas, env, applied, "plan", "--all-envs", "-v")
    assert code == 0
    requests = [line for line in err.splitlines() if line.startswith("INFO kcr.kibana: ")]
    per_space_lists = [line for line in requests if "/api/actions/connectors ->" in line]
    assert len(per_space_lists) == 2, err  # read on the client's own pool: the label follows them
    for name in ("staging", "production"):
        assert sum(f"kcr.kibana: environment {name}: GET " in line for line in requests) >= 3, err
    assert all(": environment " in line for line in requests), err


# --- refusals, before any request ---------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "extra_env", "says"), [
    (["--env", "staging"], {}, "--env staging names one"),
    ([], {"KCR_ENV": "staging"}, "KCR_ENV=staging names one"),
    (["--kibana-url", STAGING], {}, "drop --kibana-url"),
    (["--out", "plan.json"], {}, "`kcr ci generate`"),
])
def test_flags_naming_one_environment_are_refused(capsys: pytest.CaptureFixture[str], kibanas: Kibanas,
                                                  env: dict[str, str], repo: Path, args: list[str],
                                                  extra_env: dict[str, str], says: str) -> None:
    code, out, err = kcr(capsys, kibanas, {**env, **extra_env}, repo, "plan", "--all-envs", *args)
    assert code == 1 and says in err and out == ""
    assert kibanas.recorder.requests == []


def test_an_environment_without_its_own_url_is_refused(capsys: pytest.CaptureFixture[str], kibanas: Kibanas,
                                                       env: dict[str, str], repo: Path) -> None:
    (repo / "kcr.yaml").write_text(SETTINGS + "  dev:\n    vars: {channel: \"#dev\"}\n", encoding="utf-8")
    code, out, err = kcr(capsys, kibanas, {**env, "KIBANA_URL": DEV}, repo, "drift", "--all-envs")
    assert code == 1 and out == ""
    assert "environment dev has no Kibana URL of its own in kcr.yaml" in err
    assert "`kibana_url:` or `kibana_url_env:`" in err
    assert kibanas.recorder.requests == []


def test_one_shared_credential_is_not_sent_to_several_kibanas(capsys: pytest.CaptureFixture[str], kibanas: Kibanas,
                                                             env: dict[str, str], repo: Path) -> None:
    shared = SETTINGS.replace("    credentials: {api_key: STAGING_KEY}\n", "").replace(
        "    credentials: {api_key: PRODUCTION_KEY}\n", "")
    (repo / "kcr.yaml").write_text(shared, encoding="utf-8")
    code, out, err = kcr(capsys, kibanas, env, repo, "plan", "--all-envs")
    assert code == 1 and out == ""
    assert "environments production, staging declare no `credentials:`" in err and "KIBANA_API_KEY" in err
    assert CANARIES["KIBANA_API_KEY"] not in err
    assert kibanas.recorder.requests == []


def test_a_repository_without_environments_is_refused(capsys: pytest.CaptureFixture[str], kibanas: Kibanas,
                                                      env: dict[str, str], tmp_path: Path) -> None:
    bare = write_repo(tmp_path / "bare", {"connectors/default/a.yaml": "connectors: []\n"})
    code, _, err = kcr(capsys, kibanas, {**env, "KIBANA_URL": DEV}, bare, "plan", "--all-envs")
    assert code == 1 and "declares none" in err
    code, _, err = kcr(capsys, kibanas, env, bare, "plan", "--env-parallelism", "2")
    assert code == 1 and "add --all-envs" in err
    assert kibanas.recorder.requests == []


# --- one reading of the files ------------------------------------------------------------------------------


def test_files_are_read_once_for_every_environment(capsys: pytest.CaptureFixture[str], kibanas: Kibanas,
                                                   env: dict[str, str], applied: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real_load = desired.load

    def counting_load(*args: Any, **kwargs: Any) -> desired.LoadResult:
        calls.append(kwargs.get("environment"))
        return real_load(*args, **kwargs)

    def no_load_repository(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an environment read the files again")

    monkeypatch.setattr(envs_plan, "load", counting_load)
    monkeypatch.setattr(pipeline, "load_repository", no_load_repository)
    code, out, _ = kcr(capsys, kibanas, env, applied, "plan", "--all-envs", "--env-parallelism", "1")
    assert code == 0, out
    assert calls == [None]


# --- over loopback, as a user runs it ---------------------------------------------------------------------------


def test_all_envs_against_two_loopback_sandboxes(tmp_path: Path) -> None:
    seed = {"license": "platinum", "spaces": ["default"], "connectors": []}
    with running(Sandbox.from_seed(seed)) as staging, running(Sandbox.from_seed(seed)) as production:
        settings = SETTINGS.replace("http://staging.test", staging)
        repo = write_repo(tmp_path / "repo", {"kcr.yaml": settings, **CONNECTORS})
        env = process_env(PRODUCTION_URL=production, KCR_FINGERPRINT_KEY=KEY, NO_COLOR="1", **CANARIES)
        proc = kcr_process(repo, env, "plan", "--all-envs", "--detailed-exitcode", secrets=CANARIES.values())
        assert proc.returncode == 2, proc.stdout + proc.stderr
        by_env = sections(proc.stdout)
        assert f"Kibana {staging}" in by_env["staging"] and f"Kibana {production}" in by_env["production"]
        assert "Plan: 3 to create" in by_env["production"] and "Plan: 2 to create" in by_env["staging"]


# --- forked workers ----------------------------------------------------------------------------------------


def test_errors_cross_a_process_whole() -> None:
    """A forked environment's error comes back through pickle: rebuilt from its problems and status,
    not from its message (a ValidationError made from a string would list its characters)."""
    import pickle

    from reconciler.errors import KibanaAuthError, ValidationError

    problem = Problem("connectors/default/a.yaml", "name: value '' is not valid", 3, 5)
    back = pickle.loads(pickle.dumps(ValidationError([problem])))
    assert isinstance(back, ValidationError) and back.problems == (problem,)
    auth = pickle.loads(pickle.dumps(KibanaAuthError("Kibana answered 401", 401)))
    assert isinstance(auth, KibanaAuthError) and auth.status == 401 and str(auth) == "Kibana answered 401"


def test_forked_workers_only_for_the_network_and_several_environments(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    session = pipeline.Session(root=tmp_path, env={})
    monkeypatch.setattr(envs_plan.os, "cpu_count", lambda: 4)
    assert envs_plan._forks(session, 2)
    assert not envs_plan._forks(session, 1)
    assert not envs_plan._forks(pipeline.Session(root=tmp_path, env={}, transport=object()), 4)
    monkeypatch.setattr(envs_plan.os, "cpu_count", lambda: 1)
    assert not envs_plan._forks(session, 4)
