"""kcr's own pipeline passes GitLab's own schema and is `kcr init`'s template plus kcr's tests; its jobs
run on the example repository against two sandboxes; the MR comment is sticky (one per title) and the
token never reaches an error message."""

from __future__ import annotations

import json
import shutil
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


def test_pipeline_is_kcr_inits_template_plus_kcrs_tests() -> None:
    """kcr's own pipeline is the one `kcr init` writes for a connectors repository, plus the `tests` job
    and its stage, with kcr installed from this checkout instead of the pinned release; nothing else
    may differ (tests/test_init.py runs the template's jobs)."""
    from reconciler.init import template

    own = _pipeline()
    expected = yaml.safe_load(template("gitlab-ci.yml"))
    del expected["variables"]["KCR_VERSION"]
    expected["stages"] = ["test", *expected["stages"]]
    expected["default"]["before_script"] = ["python -m pip install --quiet ."]
    expected["tests"] = {"stage": "test", "before_script": [], "script": ["bash .ci/run"],
                         "rules": [{"if": '$CI_PIPELINE_SOURCE != "schedule"'}]}
    assert own == expected


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


def test_the_matrix_is_the_examples_environments() -> None:
    """Every environment kcr.yaml declares gets plan and drift jobs and an apply job, and no job selects
    one that is not declared."""
    from reconciler.desired import load_settings

    declared = list(load_settings(ROOT).environments)
    ci = _pipeline()
    for job in ("plan", "drift"):
        assert ci[job]["parallel"]["matrix"] == [{"KCR_ENV": declared}], job
    assert sorted(name.removeprefix("apply:") for name in ci if name.startswith("apply:")) == sorted(declared)


def test_job_scripts_plan_apply_and_drift_each_environment(tmp_path: Path) -> None:
    """The project's own jobs on its example: validate (every environment); per environment a merge
    request's plan (no secrets), then the default branch's plan and the applies in order, then the
    schedule's drift, each job's own script against its environment's sandbox: both converge to their
    own values. The record stays a local file here instead of GitLab-managed Terraform state."""
    from helpers.gitlab_ci import Runner

    from reconciler.model import derive_connector_id
    from reconciler.sandbox import Sandbox
    from reconciler.sandbox.server import running

    ci = _pipeline()
    assert ci[".kcr"]["variables"].pop("KCR_RECORD_GITLAB_STATE") == "kcr-record-$KCR_ENV"
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "connectors", repo / "connectors")
    shutil.copy(ROOT / "kcr.yaml", repo / "kcr.yaml")
    spaces = {"spaces": ["default", "observability", "security-team"]}
    sandboxes = {"staging": Sandbox.from_seed(spaces), "production": Sandbox.from_seed(spaces)}

    def secrets(env_name: str) -> dict[str, str]:
        values = {name: f"CANARY-{name.lower()}-{env_name}" for name in SECRET_VARS}
        return {name: f"https://hooks.example.com/{v}" if name.endswith("_URL") else v for name, v in values.items()}

    with running(sandboxes["staging"]) as staging_url, running(sandboxes["production"]) as production_url:
        urls = {"staging": staging_url, "production": production_url}
        scoped = {name: {"KIBANA_URL": urls[name], "KIBANA_API_KEY": "read", "KIBANA_APPLY_API_KEY": "all",
                         "KCR_RECORD": str(tmp_path / f"record-{name}.json"), **secrets(name)} for name in urls}

        def runner(kind: str) -> Runner:
            return Runner(ci, repo, tmp_path / kind.replace(" ", "-"), kind,
                          project={"KCR_FINGERPRINT_KEY": "CANARY-fingerprint-key"}, scoped=scoped,
                          protected=frozenset({*SECRET_VARS, "KIBANA_APPLY_API_KEY", "KCR_FINGERPRINT_KEY"}),
                          secrets=("CANARY",))

        mr = runner("merge request")
        assert set(mr.created) == {"tests", "validate", "plan: [staging]", "plan: [production]"}
        proc = mr.run("validate")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(mr.artifacts["validate"]["validate.json"])["environments"] == ["production", "staging"]
        for name in urls:
            proc = mr.run(f"plan: [{name}]")  # no secret is set in a merge request's pipeline
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert json.loads(mr.artifacts[f"plan: [{name}]"][f"plan-{name}.json"])["secrets_checked"] is False

        main = runner("default branch")
        for name in urls:
            proc = main.run(f"plan: [{name}]")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert sorted(main.artifacts[f"plan: [{name}]"]) == [f"plan-{name}.json", f"plan-{name}.md",
                                                                  f"tfplan-{name}.json"]
        for name in ("staging", "production"):
            proc = main.run(f"apply:{name}")
            assert proc.returncode == 0, proc.stdout + proc.stderr

        schedule = runner("schedule")
        assert set(schedule.created) == {"drift: [staging]", "drift: [production]"}
        for name in urls:
            proc = schedule.run(f"drift: [{name}]")
            assert proc.returncode == 0, proc.stdout + proc.stderr  # no drift right after apply
            assert f"drift-{name}.md" in schedule.artifacts[f"drift: [{name}]"]

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
