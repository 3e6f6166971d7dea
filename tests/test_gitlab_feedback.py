"""Issue #15, the feedback loop: `kcr apply --markdown-out` writes the apply report as Markdown;
`kcr mr-comment` posts it as one sticky note per title and environment on the pipeline's MR or on the
MR the commit came from; `kcr drift --gitlab-issue` keeps one issue per environment open while drift
stands and closes it once drift is gone. GitLab is a fake on a loopback socket (helpers/gitlab_fake.py);
Kibana is the in-process sandbox. Retries (429, 5xx, transport), typed errors and the token's masking
are checked against the same fake."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.cli import World, run_main, write_repo
from helpers.gitlab_fake import FakeGitLab

from reconciler.cli import _drift_issues
from reconciler.gitlab import comment_on_mr, pick_merge_request, track_drift
from reconciler.gitlab_api import GitLab, GitLabAuthError, GitLabUnavailable
from reconciler.retry import RetryPolicy
from reconciler.sandbox import Sandbox

TOKEN = f"glpat-CANARY-{uuid.uuid4().hex}"
SECRET = f"https://hooks.example.com/CANARY-{uuid.uuid4()}"
MERGE_SHA = "a" * 40
KIBANA = "http://kibana.test"
REPO = {
    "connectors/default/_space.yaml": "prune: true\n",
    "connectors/default/chat.yaml": """\
connectors:
  - id: slack-main
    name: Slack main
    type: .slack
    secrets:
      webhookUrl: ${env:SLACK_URL}
  - id: history
    name: History
    type: .index
    config:
      index: alerts-history
""",
}
REPO_ENVS = {
    **REPO,
    "kcr.yaml": """\
environments:
  staging:
    kibana_url: http://staging.test
    credentials: {api_key: STAGING_KEY}
  production:
    kibana_url: http://production.test
    credentials: {api_key: PRODUCTION_KEY}
""",
}


class NoWait:
    """A retry policy's sleep that records the waits instead of spending them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture()
def gitlab() -> Iterator[tuple[FakeGitLab, dict[str, str]]]:
    fake = FakeGitLab(token=TOKEN)
    with fake.running() as api:
        yield fake, {"CI_API_V4_URL": api, "CI_PROJECT_ID": "7", "KCR_GITLAB_TOKEN": TOKEN}


@pytest.fixture()
def world(tmp_path: Path, capsys: pytest.CaptureFixture[str], gitlab: tuple[FakeGitLab, dict[str, str]]) -> World:
    env = {"KIBANA_URL": KIBANA, "SLACK_URL": SECRET, "KCR_FINGERPRINT_KEY": "a-fingerprint-key", "NO_COLOR": "1",
           **gitlab[1]}
    sb = Sandbox.from_seed({"license": "platinum", "spaces": ["default"], "connectors": []})
    return World(write_repo(tmp_path / "repo", REPO), env, sb, capsys)


def no_canary(*texts: str) -> None:
    for text in texts:
        assert "CANARY" not in text, text


# --- kcr apply --markdown-out ------------------------------------------------------------------------------


def test_apply_markdown_says_what_was_done_and_never_a_secret(world: World, tmp_path: Path) -> None:
    md = tmp_path / "apply.md"
    code, out, err = world.kcr("apply", "--auto-approve", "--markdown-out", str(md))
    assert code == 0
    text = md.read_text()
    assert text.startswith("<!-- kcr-apply -->\n### kcr apply\n")
    assert "**Apply: 2 succeeded, 0 failed, 0 stale, 0 blocked.**" in text
    assert "| created | 2 |" in text and "#### Applied (2)" in text and "Slack main" in text
    assert {"webhookUrl": SECRET} in [c["secrets"] for c in world.sb.connectors_in("default")]  # it reached Kibana
    no_canary(text, out, err)
    # nothing left to do: still a report, saying so
    code, _, _ = world.kcr("apply", "--auto-approve", "--markdown-out", str(md))
    assert code == 0 and "No changes: nothing was applied." in md.read_text()


def test_apply_markdown_names_failures_first_and_the_environment(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    sb = Sandbox.from_seed({"license": "platinum", "spaces": ["default"], "connectors": []})
    env = {"KCR_ENV": "staging", "STAGING_KEY": "k1", "PRODUCTION_KEY": "k2", "SLACK_URL": SECRET, "NO_COLOR": "1",
           "KCR_FINGERPRINT_KEY": "a-fingerprint-key"}
    w = World(write_repo(tmp_path / "repo", REPO_ENVS), env, sb, capsys)
    base = sb.transport()

    def refuse_slack(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and b".slack" in request.content:
            return httpx.Response(400, json={"statusCode": 400, "error": "Bad Request",
                                             "message": f"invalid webhookUrl {SECRET}"})
        return base.handle_request(request)

    md = tmp_path / "apply.md"
    code, out, err = w.kcr("apply", "--auto-approve", "--markdown-out", str(md),
                           transport=httpx.MockTransport(refuse_slack))
    text = md.read_text()
    assert code == 1
    assert "Environment <code>staging</code>" in text
    assert text.index("#### Failed (1)") < text.index("#### Applied (1)")
    assert "| failed | 1 |" in text and "| created | 1 |" in text
    no_canary(text, out, err)


def test_apply_that_stops_early_still_writes_markdown(world: World, tmp_path: Path) -> None:
    md = tmp_path / "apply.md"
    env = {k: v for k, v in world.env.items() if k != "SLACK_URL"}  # a secret that cannot be resolved
    code, _, err = world.kcr("apply", "--auto-approve", "--markdown-out", str(md), env=env)
    assert code == 1 and "SLACK_URL" in err
    text = md.read_text()
    assert "**Apply stopped before it finished.**" in text and "SLACK&#95;URL" in text
    assert world.sb.connectors_in("default") == []  # nothing was applied


# --- kcr mr-comment --------------------------------------------------------------------------------------------


def test_mr_note_is_created_then_updated(world: World, gitlab: tuple[FakeGitLab, dict[str, str]],
                                         tmp_path: Path) -> None:
    fake, _ = gitlab
    fake.notes[3] = [{"id": 1, "body": "LGTM", "author": {"id": 99}}]
    md = tmp_path / "plan.md"
    world.kcr("plan", "--markdown-out", str(md))
    env = {**world.env, "CI_MERGE_REQUEST_IID": "3"}
    code, out, _ = world.kcr("mr-comment", str(md), env=env, dir=False)
    assert (code, out.strip()) == (0, "MR !3 comment created.")
    code, out, _ = world.kcr("mr-comment", str(md), env=env, dir=False)
    assert (code, out.strip()) == (0, "MR !3 comment updated.")
    assert [n["id"] for n in fake.notes[3]] == [1, fake.notes[3][1]["id"]]  # one note of kcr's, the reviewer's kept
    body = fake.notes[3][1]["body"]
    assert body.startswith("<!-- kcr-mr-comment: kcr plan -->\n") and "### kcr plan" in body
    assert fake.writes() == [("POST", "/projects/7/merge_requests/3/notes"),
                             ("PUT", f"/projects/7/merge_requests/3/notes/{fake.notes[3][1]['id']}")]


def test_apply_report_goes_to_the_mr_the_commit_came_from(world: World, gitlab: tuple[FakeGitLab, dict[str, str]],
                                                          tmp_path: Path) -> None:
    fake, _ = gitlab
    fake.commit_mrs[MERGE_SHA] = [
        {"iid": 11, "state": "merged", "sha": "b" * 40, "merge_commit_sha": "c" * 40},  # an older MR with the commit
        {"iid": 12, "state": "merged", "sha": "d" * 40, "merge_commit_sha": MERGE_SHA},
    ]
    md = tmp_path / "apply.md"
    world.kcr("apply", "--auto-approve", "--markdown-out", str(md))
    code, out, _ = world.kcr("mr-comment", str(md), env={**world.env, "CI_COMMIT_SHA": MERGE_SHA}, dir=False)
    assert (code, out.strip()) == (0, "MR !12 comment created.")
    assert list(fake.notes) == [12]
    assert fake.notes[12][0]["body"].startswith("<!-- kcr-mr-comment: kcr apply -->\n")
    # a commit no MR came from (a direct push): nothing posted, not an error
    code, out, _ = world.kcr("mr-comment", str(md), env={**world.env, "CI_COMMIT_SHA": "e" * 40}, dir=False)
    assert code == 0 and "nothing posted" in out and list(fake.notes) == [12]


@pytest.mark.parametrize(("mrs", "expected"), [
    ([{"iid": 5, "state": "merged", "squash_commit_sha": MERGE_SHA}, {"iid": 6, "state": "merged"}], 5),
    ([{"iid": 5, "state": "merged", "sha": MERGE_SHA}, {"iid": 6, "state": "merged", "sha": "f" * 40}], 5),
    ([{"iid": 5, "state": "merged", "sha": "f" * 40}], 5),
    ([{"iid": 5, "state": "merged"}, {"iid": 6, "state": "merged"}], None),  # neither made the commit: ambiguous
    ([{"iid": 7, "state": "opened", "sha": MERGE_SHA}, {"iid": 8, "state": "closed", "sha": MERGE_SHA}], 7),
    ([{"iid": 8, "state": "closed", "sha": MERGE_SHA}, {"iid": "9", "state": "merged"}], None),
    ([], None),
], ids=["squash commit", "fast-forward head", "the only merged MR", "ambiguous", "open MR's head", "no fit", "none"])
def test_which_mr_a_commit_came_from(mrs: list[dict[str, Any]], expected: int | None) -> None:
    assert pick_merge_request(mrs, MERGE_SHA) == expected


def test_one_note_per_environment(gitlab: tuple[FakeGitLab, dict[str, str]], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    fake, env = gitlab
    md = tmp_path / "plan.md"
    md.write_text("<!-- kcr-plan -->\n### kcr plan\n\nPlan: 1 to create.\n")
    base = {**env, "CI_MERGE_REQUEST_IID": "3"}
    assert run_main(capsys, ["mr-comment", str(md)], env={**base, "KCR_ENV": "staging"})[0] == 0
    assert run_main(capsys, ["mr-comment", str(md), "--env", "production"], env={**base, "KCR_ENV": "staging"})[0] == 0
    md.write_text("<!-- kcr-plan -->\n### kcr plan\n\nPlan: 2 to create.\n")
    code, out, _ = run_main(capsys, ["mr-comment", str(md)], env={**base, "KCR_ENV": "staging"})
    assert (code, out.strip()) == (0, "MR !3 comment updated.")
    bodies = [n["body"] for n in fake.notes[3]]
    assert [b.splitlines()[:3] for b in bodies] == [
        ["<!-- kcr-mr-comment: kcr plan (staging) -->", "<!-- kcr-plan -->", "### kcr plan (staging)"],
        ["<!-- kcr-mr-comment: kcr plan (production) -->", "<!-- kcr-plan -->", "### kcr plan (production)"]]
    assert "2 to create" in bodies[0] and "1 to create" in bodies[1]
    # a title that already names the environment (the shipped pipeline's) keeps its marker
    run_main(capsys, ["mr-comment", str(md), "--title", "kcr plan (staging)"], env={**base, "KCR_ENV": "staging"})
    assert len(fake.notes[3]) == 2


def test_own_note_found_past_the_first_page(gitlab: tuple[FakeGitLab, dict[str, str]]) -> None:
    fake, env = gitlab
    fake.notes[3] = [{"id": i, "body": f"review {i}", "author": {"id": 99}} for i in range(1, 151)]
    fake.notes[3].append({"id": 500, "body": "<!-- kcr-mr-comment: kcr plan -->\nold", "author": dict(fake.user)})
    posted = comment_on_mr("### kcr plan\n\nnew", {**env, "CI_MERGE_REQUEST_IID": "3"})
    assert (posted.verb, posted.merge_request) == ("updated", 3)
    assert fake.writes() == [("PUT", "/projects/7/merge_requests/3/notes/500")]
    assert [s.query.get("page") for s in fake.seen if s.path.endswith("/notes")] == ["1", "2"]


# --- kcr drift --gitlab-issue ----------------------------------------------------------------------------------


def test_drift_issue_opened_updated_and_closed(world: World, gitlab: tuple[FakeGitLab, dict[str, str]]) -> None:
    fake, _ = gitlab
    code, out, err = world.kcr("drift", "--gitlab-issue")
    assert code == 2 and "drift issue: opened #1" in err and "drift issue" not in out
    issue = fake.issues[0]
    assert (issue["title"], issue["labels"], issue["state"]) == ("kcr drift", ["kcr-drift"], "opened")
    assert issue["description"].startswith("<!-- kcr-drift-issue -->\n") and "### kcr drift" in issue["description"]
    assert "2 to create" in issue["description"]

    code, _, err = world.kcr("drift", "--gitlab-issue")  # the same drift: no second issue, no edit
    assert code == 2 and "drift issue: unchanged #1" in err and len(fake.issues) == 1
    assert fake.writes() == [("POST", "/projects/7/issues")]

    world.kcr("apply", "--auto-approve", "--target", "history")
    code, _, err = world.kcr("drift", "--gitlab-issue")  # less drift: the same issue, updated
    assert code == 2 and "drift issue: updated #1" in err and len(fake.issues) == 1
    assert "1 to create" in fake.issues[0]["description"]

    world.kcr("apply", "--auto-approve")
    code, out, err = world.kcr("drift", "--gitlab-issue", "--format", "json")
    assert code == 0 and "drift issue: closed #1" in err and out.lstrip().startswith("{")
    assert fake.issues[0]["state"] == "closed" and "Drift resolved" in fake.issue_notes[1][0]["body"]

    code, _, err = world.kcr("drift", "--gitlab-issue")  # in sync, no issue: nothing to do
    assert code == 0 and "drift issue: none" in err and len(fake.issues) == 1
    no_canary(*(i["description"] for i in fake.issues))


def test_drift_issue_is_one_per_environment_and_never_another_users(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], gitlab: tuple[FakeGitLab, dict[str, str]]) -> None:
    fake, gl = gitlab
    fake.issues.append({"id": 1, "iid": 1, "title": "quoting kcr", "state": "opened", "labels": [],
                        "description": "<!-- kcr-drift-issue: staging -->\nsee this", "author": {"id": 99}})
    kibanas = {"staging.test": Sandbox.from_seed({"license": "platinum", "spaces": ["default"]}),
               "production.test": Sandbox.from_seed({"license": "platinum", "spaces": ["default"]})}
    transport = httpx.MockTransport(lambda r: kibanas[r.url.host].transport().handle_request(r))
    env = {"STAGING_KEY": "k1", "PRODUCTION_KEY": "k2", "SLACK_URL": SECRET, "KCR_FINGERPRINT_KEY": "f", **gl}
    repo = write_repo(tmp_path / "repo", REPO_ENVS)
    code, _, err = run_main(capsys, ["drift", "--all-envs", "--gitlab-issue", "--dir", str(repo)], env=env,
                            transport=transport)
    assert code == 2 and "drift issue (production): opened #2" in err and "drift issue (staging): opened #3" in err
    assert [(i["title"], i["state"]) for i in fake.issues] == [
        ("quoting kcr", "opened"), ("kcr drift (production)", "opened"), ("kcr drift (staging)", "opened")]
    run_main(capsys, ["apply", "--auto-approve", "--env", "staging", "--dir", str(repo)], env=env, transport=transport)
    code, _, err = run_main(capsys, ["drift", "--gitlab-issue", "--env", "staging", "--dir", str(repo)], env=env,
                            transport=transport)
    assert code == 0 and "drift issue (staging): closed #3" in err
    assert [i["state"] for i in fake.issues] == ["opened", "opened", "closed"]  # the reviewer's issue untouched
    assert fake.issues[0]["description"] == "<!-- kcr-drift-issue: staging -->\nsee this"


def test_drift_issue_needs_a_whole_plan_and_leaves_an_errored_one(world: World,
                                                                  gitlab: tuple[FakeGitLab, dict[str, str]]) -> None:
    fake, _ = gitlab
    code, _, err = world.kcr("drift", "--gitlab-issue", "--target", "history")
    assert code == 1 and "--gitlab-issue tracks a whole environment" in err and fake.seen == []
    world.kcr("drift", "--gitlab-issue")
    writes = fake.writes()
    write_repo(world.repo, {"connectors/ops/log.yaml": "connectors:\n  - {id: log, name: Log, type: .server-log}\n"})
    code, _, err = world.kcr("drift", "--gitlab-issue")  # Kibana has no space ops: drift cannot tell
    assert code == 1 and "space ops not found" in err
    assert fake.issues[0]["state"] == "opened" and fake.writes() == writes
    _drift_issues(world.env, [("staging", None)])  # an environment that errored under --all-envs
    assert "drift issue (staging) left as it is: the plan has errors" in world.capsys.readouterr().err
    assert fake.writes() == writes


# --- the API module: retries, typed errors, the token ----------------------------------------------------------


def test_throttled_then_success(world: World, gitlab: tuple[FakeGitLab, dict[str, str]], tmp_path: Path) -> None:
    fake, _ = gitlab
    fake.fail("GET", "/user", 429, times=2, headers={"Retry-After": "0"})
    fake.fail("POST", r"/projects/7/merge_requests/3/notes", 429, headers={"Retry-After": "0"})
    md = tmp_path / "plan.md"
    md.write_text("### kcr plan\n\nx\n")
    code, out, _ = world.kcr("mr-comment", str(md), env={**world.env, "CI_MERGE_REQUEST_IID": "3"}, dir=False)
    assert (code, out.strip()) == (0, "MR !3 comment created.")
    assert len(fake.notes[3]) == 1  # the throttled POST did nothing; the repeat made the one note
    assert [s.method for s in fake.seen if s.path == "/user"] == ["GET"] * 3


def test_server_errors_repeat_reads_but_never_a_create(gitlab: tuple[FakeGitLab, dict[str, str]]) -> None:
    fake, env = gitlab
    waits = NoWait()
    policy = RetryPolicy(retries=2, sleep=waits, random=lambda: 1.0)
    fake.fail("GET", r"/projects/7/issues", 503, times=2)
    fake.fail("POST", r"/projects/7/issues", 502)
    with pytest.raises(GitLabUnavailable) as info:
        track_drift(True, "### kcr plan\n\ndrift", "staging", env, policy=policy)
    assert "POST /projects/7/issues: HTTP 502" in str(info.value) and "re-run the job" in str(info.value)
    assert [s.method for s in fake.seen if s.path == "/projects/7/issues"] == ["GET", "GET", "GET", "POST"]
    assert waits.waits == [0.5, 1.0] and fake.issues == []


def test_transport_failure_is_repeated_then_named(gitlab: tuple[FakeGitLab, dict[str, str]]) -> None:
    _, env = gitlab
    waits = NoWait()
    attempts: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(GitLabUnavailable) as info:
        comment_on_mr("x", {**env, "CI_MERGE_REQUEST_IID": "3"}, transport=httpx.MockTransport(refuse),
                      policy=RetryPolicy(retries=3, sleep=waits))
    assert len(attempts) == 4 and len(waits.waits) == 3
    assert "GET /user" in str(info.value) and "CI_API_V4_URL" in str(info.value) and TOKEN not in str(info.value)


def test_unauthorized_names_the_call_the_token_and_what_to_do(
        world: World, gitlab: tuple[FakeGitLab, dict[str, str]], tmp_path: Path) -> None:
    fake, _ = gitlab
    md = tmp_path / "plan.md"
    md.write_text("### kcr plan\n\nx\n")
    env = {**world.env, "CI_MERGE_REQUEST_IID": "3", "KCR_GITLAB_TOKEN": "glpat-CANARY-wrong-token"}
    code, out, err = world.kcr("mr-comment", str(md), env=env, dir=False)
    assert code == 1
    assert "GET /user: HTTP 401" in err and "KCR_GITLAB_TOKEN was not accepted" in err and "`api` scope" in err
    assert "posted nothing" in err and fake.writes() == []
    no_canary(out, err)


def test_token_echoed_by_gitlab_is_masked(gitlab: tuple[FakeGitLab, dict[str, str]]) -> None:
    fake, env = gitlab
    fake.fail("GET", "/user", 403, body={"message": f"token {TOKEN} lacks scope api"})
    with pytest.raises(GitLabAuthError) as info, GitLab(env, doing="test") as api:
        api.user_id()
    message = str(info.value)
    assert "lacks scope api" in message and "***" in message and "HTTP 403" in message
    no_canary(message)
    assert all(TOKEN not in s.raw_target for s in fake.seen)  # only ever in the header


def test_missing_variables_are_named_before_any_request(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    md = tmp_path / "plan.md"
    md.write_text("x")
    code, _, err = run_main(capsys, ["mr-comment", str(md)], env={"KCR_GITLAB_TOKEN": TOKEN})
    assert code == 1
    assert "CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID or CI_COMMIT_SHA not set" in err
    no_canary(err)
