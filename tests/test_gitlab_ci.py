"""The pipeline file passes GitLab's own schema and has the jobs SPEC §9 promises; the MR comment
is sticky (one per title) and the token never reaches an error message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from reconciler.errors import ConfigError
from reconciler.gitlab import post_mr_comment

ROOT = Path(__file__).resolve().parent.parent
# GitLab's schema, kept in the repository (tests/data/gitlab/README.md) so this test runs wherever the
# repository does, the pipeline's own `tests` job included; `shared/` beside the clone has the original.
SCHEMA = ROOT / "tests" / "data" / "gitlab" / "ci-schema.json"
SHARED_SCHEMA = ROOT.parent / "shared" / "gitlab" / "ci-schema.json"


def _pipeline() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_pipeline_passes_gitlabs_schema() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = [f"{e.json_path}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(_pipeline())]
    assert errors == []


def test_the_schema_is_the_shared_copy() -> None:
    """A newer schema in `shared/` must be copied here; a clone without `shared/` beside it (the
    pipeline's `tests` job) has nothing to compare with."""
    if SHARED_SCHEMA.exists():
        assert SCHEMA.read_bytes() == SHARED_SCHEMA.read_bytes(), f"copy {SHARED_SCHEMA} to {SCHEMA}"


def test_pipeline_has_the_promised_jobs() -> None:
    ci = _pipeline()
    for job in ("tests", "validate", "plan", "apply", "drift"):
        assert job in ci, job
    assert ci["plan"]["artifacts"]["reports"]["terraform"].startswith("tfplan-")
    assert any("merge_request_event" in r["if"] for r in ci["plan"]["rules"])
    assert ci["apply"]["resource_group"] == "kibana-$KCR_ENV"
    assert ci["apply"]["interruptible"] is False
    assert any("$CI_DEFAULT_BRANCH" in r["if"] for r in ci["apply"]["rules"])
    assert any('"schedule"' in r["if"] for r in ci["drift"]["rules"])
    assert ci[".kcr"]["parallel"]["matrix"][0]["KCR_ENV"] == ["staging", "production"]
    assert "VAULT_ID_TOKEN" in ci[".kcr"]["id_tokens"]
    assert "bash .ci/run" in ci["tests"]["script"]


ENV = {"CI_API_V4_URL": "http://127.0.0.1:9/api/v4", "CI_PROJECT_ID": "7", "CI_MERGE_REQUEST_IID": "3",
       "KCR_GITLAB_TOKEN": "CANARY-glpat-token"}


def _gitlab(notes: list[dict[str, Any]], calls: list[tuple[str, str]]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path))
        assert request.headers["PRIVATE-TOKEN"] == ENV["KCR_GITLAB_TOKEN"]
        if request.method == "GET" and request.url.path == "/api/v4/user":
            return httpx.Response(200, json={"id": 5, "username": "project_7_bot"})
        if request.method == "GET":
            return httpx.Response(200, json=notes)
        body = json.loads(request.content)
        if request.method == "POST":
            notes.append({"id": 99, "body": body["body"], "author": {"id": 5}})
            return httpx.Response(201, json=notes[-1])
        return httpx.Response(200, json={"id": int(request.url.path.rsplit("/", 1)[1]), "body": body["body"]})

    return httpx.MockTransport(handler)


def test_mr_comment_is_created_then_updated() -> None:
    notes: list[dict[str, Any]] = [{"id": 1, "body": "LGTM"}]
    calls: list[tuple[str, str]] = []
    assert post_mr_comment("plan A", "kcr plan (staging)", ENV, transport=_gitlab(notes, calls)) == "created"
    assert post_mr_comment("plan B", "kcr plan (staging)", ENV, transport=_gitlab(notes, calls)) == "updated"
    assert ("PUT", "/api/v4/projects/7/merge_requests/3/notes/99") in calls
    assert post_mr_comment("plan C", "kcr plan (production)", ENV, transport=_gitlab(notes, calls)) == "created"


def test_mr_comment_needs_its_variables_and_hides_the_token() -> None:
    with pytest.raises(ConfigError) as err:
        post_mr_comment("x", "t", {**ENV, "CI_MERGE_REQUEST_IID": ""})
    assert "CI_MERGE_REQUEST_IID" in str(err.value)
    assert "CANARY" not in str(err.value)


def test_mr_comment_network_failure_is_a_clear_error() -> None:
    from reconciler.errors import ReconcilerError

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ReconcilerError) as err:
        post_mr_comment("x", "t", ENV, transport=httpx.MockTransport(refuse))
    assert "CI_API_V4_URL" in str(err.value) and "CANARY" not in str(err.value)


def test_mr_comment_has_one_heading_named_after_the_title() -> None:
    notes: list[dict[str, Any]] = []
    post_mr_comment("<!-- kcr-plan -->\n### kcr plan\n\nPlan: 1 to create.", "kcr plan (staging)", ENV,
                    transport=_gitlab(notes, []))
    body = notes[-1]["body"]
    assert body.count("### ") == 1 and "### kcr plan (staging)" in body


# --- the jobs' scripts, run against the shipped example and two sandboxes -----------------------------

SECRET_VARS = ("SLACK_WEBHOOK_URL", "TEAMS_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY", "SMTP_USER", "SMTP_PASSWORD",
               "JIRA_EMAIL", "JIRA_API_TOKEN", "SOAR_WEBHOOK_USER", "SOAR_WEBHOOK_PASSWORD")


def _job_env(ci: dict[str, Any], job: str, bindir: Path, **extra: str) -> dict[str, str]:
    """What GitLab gives the job's shell: the job's variables (`$KCR_ENV` expanded as GitLab does),
    the secrets as environment-scoped variables would (canaries), and `kcr` on PATH. The record stays
    a local file here instead of GitLab-managed Terraform state."""
    from helpers.cli import process_env

    env = process_env(**extra)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    variables = {**ci.get(".kcr", {}).get("variables", {}), **ci[job].get("variables", {})} \
        if ci[job].get("extends") == ".kcr" else dict(ci[job].get("variables", {}))
    for name, value in variables.items():
        env[name] = str(value).replace("$KCR_ENV", env.get("KCR_ENV", ""))
    for name in SECRET_VARS:
        value = f"CANARY-{name.lower()}-{env.get('KCR_ENV', 'none')}"
        env[name] = f"https://hooks.example.com/{value}" if name.endswith("_URL") else value
    env["KCR_FINGERPRINT_KEY"] = "CANARY-fingerprint-key"
    return env


def _run_job(ci: dict[str, Any], job: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The job's script lines in one shell that stops at the first failing line, as GitLab's runner does."""
    script = "\n".join(ci[job]["script"])
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "CANARY" not in proc.stdout + proc.stderr, f"a secret reached the {job} job's output"
    return proc


def _expanded(paths: list[str], env_name: str) -> list[str]:
    return [p.replace("$KCR_ENV", env_name) for p in paths]


def test_the_matrix_is_the_examples_environments() -> None:
    """Every environment kcr.yaml declares gets plan, apply and drift jobs, and no job selects one
    that is not declared."""
    from reconciler.desired import load_settings

    assert _pipeline()[".kcr"]["parallel"]["matrix"][0]["KCR_ENV"] == list(load_settings(ROOT).environments)


def test_job_scripts_plan_apply_and_drift_each_environment(tmp_path: Path) -> None:
    """validate (every environment), then per matrix entry plan -> apply of that plan -> drift, each
    job's own script against its environment's sandbox: both converge to their own values."""
    from reconciler.model import derive_connector_id
    from reconciler.sandbox import Sandbox
    from reconciler.sandbox.server import running

    ci = _pipeline()
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "connectors", repo / "connectors")
    shutil.copy(ROOT / "kcr.yaml", repo / "kcr.yaml")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "kcr").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m reconciler "$@"\n')
    (bindir / "kcr").chmod(0o755)

    proc = _run_job(ci, "validate", repo, _job_env(ci, "validate", bindir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((repo / "validate.json").read_text())["environments"] == ["production", "staging"]

    spaces = {"spaces": ["default", "observability", "security-team"]}
    sandboxes = {"staging": Sandbox.from_seed(spaces), "production": Sandbox.from_seed(spaces)}
    with running(sandboxes["staging"]) as staging_url, running(sandboxes["production"]) as production_url:
        urls = {"staging": staging_url, "production": production_url}
        for name in ci[".kcr"]["parallel"]["matrix"][0]["KCR_ENV"]:
            env = _job_env(ci, "plan", bindir, KCR_ENV=name, KIBANA_URL=urls[name],
                           KCR_RECORD=str(tmp_path / f"record-{name}.json"))
            proc = _run_job(ci, "plan", repo, env)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            plan = ci["plan"]["artifacts"]
            for path in _expanded([*plan["paths"], plan["reports"]["terraform"]], name):
                assert (repo / path).is_file(), path
                assert "CANARY" not in (repo / path).read_text()
            assert json.loads((repo / f"plan-{name}.json").read_text())["environment"] == name
            proc = _run_job(ci, "apply", repo, env)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            proc = _run_job(ci, "drift", repo, env)
            assert proc.returncode == 0, proc.stdout + proc.stderr  # no drift right after apply
            assert all((repo / p).is_file() for p in _expanded(ci["drift"]["artifacts"]["paths"], name))

    def named(env_name: str, space: str) -> dict[str, str]:
        return {c["id"]: c["name"] for c in sandboxes[env_name].connectors_in(space)}

    pagerduty = derive_connector_id("default", "pagerduty-oncall")
    slack = derive_connector_id("default", "slack-alerts")
    assert pagerduty in named("production", "default") and pagerduty not in named("staging", "default")
    assert (named("staging", "default")[slack], named("production", "default")[slack]) == \
        ("Slack #alerts-staging", "Slack #alerts")
    for env_name in sandboxes:  # the fan-out connector: one copy per space, each its own id and name
        for space in spaces["spaces"]:
            assert named(env_name, space)[derive_connector_id(space, "server-log")] == \
                f"Kibana server log ({space}, {env_name})"
