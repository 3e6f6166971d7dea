"""The pipeline file passes GitLab's own schema and has the jobs SPEC §9 promises; the MR comment
is sticky (one per title) and the token never reaches an error message."""

from __future__ import annotations

import json
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
