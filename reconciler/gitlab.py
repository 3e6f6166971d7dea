"""Feedback on GitLab: a Markdown plan or apply report as one sticky note on a merge request, and one
drift issue per environment, opened while drift stands and closed once it is gone (as Atlantis/tfcmt
comment on the MR and tfaction opens and closes drift issues for Terraform). The calls, retries and
error wording are `gitlab_api`'s.

Which merge request: the pipeline's own (CI_MERGE_REQUEST_IID), else the one the commit came from
(CI_COMMIT_SHA through GET /projects/:id/repository/commits/:sha/merge_requests), which is how an apply
on the default branch reports back to the MR that was merged. A note is "sticky" through a hidden
marker holding its title, which names the environment, so each environment's plan and apply keep
one note each and re-runs update it instead of adding another.

Only a note or issue the token's own user wrote is ever edited or closed: anyone can quote a marker in
a note or issue of theirs, and kcr must not rewrite a reviewer's words. When GitLab cannot say who the
token's user is, nothing is posted."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from reconciler.errors import ConfigError
from reconciler.gitlab_api import TOKEN_VAR, GitLab, GitLabAuthError, GitLabError, GitLabNotFound
from reconciler.render import markdown_text
from reconciler.retry import RetryPolicy

MAX_BODY = 1_000_000  # GitLab's limit on a note's body and an issue's description is 1,048,576 characters
DRIFT_LABEL = "kcr-drift"
_HEADING = re.compile(r"^### (kcr [a-z][a-z -]*)$", re.MULTILINE)
_SHA = re.compile(r"[0-9a-f]{7,64}")
_JOB_URL = re.compile(r"https?://[\w.:-]+/[\w./%~-]*")
_GITLAB = ("CI_API_V4_URL", "CI_PROJECT_ID", TOKEN_VAR)


@dataclass(frozen=True)
class Posted:
    """What `comment_on_mr` did: "created", "updated", or "skipped" (the commit came from no MR)."""

    verb: str
    merge_request: int | None = None


def titled(title: str, environment: str | None) -> str:
    """The title, naming the environment (once) so that each environment keeps a note of its own."""
    if environment and f"({environment})" not in title:
        return f"{title} ({environment})"
    return title


def _marker(title: str) -> str:
    """One line, and the title cannot close the HTML comment early (`-->`) and spill into the note."""
    safe = " ".join(title.replace("<", "&lt;").replace(">", "&gt;").split())
    return f"<!-- kcr-mr-comment: {safe} -->"


def _named(markdown: str, title: str) -> str:
    """kcr's Markdown brings its own heading (`### kcr plan`, `### kcr apply`): named after the title,
    so the note has one heading."""
    named = f"### {markdown_text(title)}"
    if _HEADING.search(markdown):
        return _HEADING.sub(lambda _: named, markdown, count=1)
    return f"{named}\n\n{markdown}"


def _capped(body: str, artifact: str) -> str:
    if len(body) <= MAX_BODY:
        return body
    return body[: MAX_BODY - 200] + f"\n\n… (truncated: see the job's {artifact} artifact)"


def default_title(markdown: str) -> str:
    """The report's own heading (`kcr plan`, `kcr apply`), so a plan and an apply keep separate notes."""
    found = _HEADING.search(markdown)
    return found.group(1) if found else "kcr plan"


# --- the merge request's sticky note -------------------------------------------------------------------------


def comment_on_mr(markdown: str, env: Mapping[str, str], *, title: str | None = None, environment: str | None = None,
                  transport: httpx.BaseTransport | None = None, policy: RetryPolicy | None = None) -> Posted:
    """Create or update the note titled `title` (default: the report's heading) for `environment`."""
    title = titled(title or default_title(markdown), environment)
    missing = [n for n in _GITLAB if not env.get(n)]
    if not env.get("CI_MERGE_REQUEST_IID") and not env.get("CI_COMMIT_SHA"):
        missing.append("CI_MERGE_REQUEST_IID or CI_COMMIT_SHA")
    if missing:
        raise ConfigError(f"cannot post the MR comment: {', '.join(missing)} not set (run it in a GitLab CI job: "
                          "a merge-request pipeline names its MR, any other finds the MR its commit came from; "
                          f"{TOKEN_VAR} must hold a token with the api scope)")
    marker = _marker(title)
    body = _capped(f"{marker}\n{_named(markdown, title)}", "report")
    with GitLab(env, doing="post the MR comment", transport=transport, policy=policy) as api:
        user = api.user_id()
        iid = _merge_request(api, env)
        if iid is None:
            return Posted("skipped")
        notes = f"{api.project}/merge_requests/{iid}/notes"
        existing = _own_note(api.pages(notes, {"sort": "asc", "order_by": "created_at"}), marker, user)
        if existing is None:
            api.post(notes, {"body": body})
            return Posted("created", iid)
        api.put(f"{notes}/{existing}", {"body": body})
        return Posted("updated", iid)


def post_mr_comment(markdown: str, title: str, env: Mapping[str, str], transport: httpx.BaseTransport | None = None,
                    *, environment: str | None = None, policy: RetryPolicy | None = None) -> str:
    """`comment_on_mr` with an explicit title; returns "created", "updated" or "skipped"."""
    return comment_on_mr(markdown, env, title=title, environment=environment, transport=transport,
                         policy=policy).verb


def _id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _authored_by(item: Any, user: int) -> bool:
    author = item.get("author") if isinstance(item, dict) else None
    return isinstance(author, dict) and _id(author.get("id")) == user


def _own_note(notes: Iterable[Any], marker: str, user: int) -> int | None:
    """The first note of `user` that carries the marker; a note of anyone else never counts."""
    for note in notes:
        if _authored_by(note, user) and marker in str(note.get("body", "")):
            note_id = _id(note.get("id"))
            if note_id is None:
                raise GitLabError("GitLab listed kcr's MR comment without a note id; nothing was posted")
            return note_id
    return None


def _merge_request(api: GitLab, env: Mapping[str, str]) -> int | None:
    """The pipeline's MR, else the MR the commit came from; None when it came from none."""
    given = env.get("CI_MERGE_REQUEST_IID", "").strip()
    if given:
        if not given.isdigit():
            raise ConfigError(f"CI_MERGE_REQUEST_IID is {given!r}, not a merge request's number")
        return int(given)
    sha = env.get("CI_COMMIT_SHA", "").strip().lower()
    if not _SHA.fullmatch(sha):
        raise ConfigError("CI_COMMIT_SHA is not a commit id; run `kcr mr-comment` in a GitLab CI job")
    return pick_merge_request(list(api.pages(f"{api.project}/repository/commits/{sha}/merge_requests")), sha)


def pick_merge_request(found: list[Any], sha: str) -> int | None:
    """Which of the commit's MRs it came from. GitLab lists every MR whose commits include it
    (gitlab-org/gitlab#299547 asks for that to be documented), so the MR is chosen by how the commit
    relates to it: the merge or squash commit of a merged MR, then the head of a merged MR
    (fast-forward), then the only merged MR, then the head of an open MR (a branch pipeline). Among
    equals, the newest MR. None when no MR fits: nothing is posted rather than on the wrong MR."""
    mrs = [m for m in found if isinstance(m, dict) and _id(m.get("iid")) is not None]
    merged = [m for m in mrs if m.get("state") == "merged"]
    for group in ([m for m in merged if sha in (m.get("merge_commit_sha"), m.get("squash_commit_sha"))],
                  [m for m in merged if m.get("sha") == sha],
                  merged if len(merged) == 1 else [],
                  [m for m in mrs if m.get("state") == "opened" and m.get("sha") == sha]):
        if group:
            return max(int(m["iid"]) for m in group)
    return None


# --- the drift issue -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftIssue:
    """What `track_drift` did: "opened", "updated", "unchanged", "closed", or "none" (no drift, no issue)."""

    verb: str
    issues: tuple[int, ...] = ()


def drift_title(environment: str | None) -> str:
    return f"kcr drift ({environment})" if environment else "kcr drift"


def _drift_marker(environment: str | None) -> str:
    return f"<!-- kcr-drift-issue: {environment} -->" if environment else "<!-- kcr-drift-issue -->"


def track_drift(drifted: bool, markdown: str, environment: str | None, env: Mapping[str, str], *,
                transport: httpx.BaseTransport | None = None, policy: RetryPolicy | None = None) -> DriftIssue:
    """While `drifted`, keep one open issue for the environment whose description is `markdown` (the
    drift plan); once not, close it with a note. The issue is found among the open issues the token's
    user wrote, by the marker in its description, so re-runs never open a second one."""
    marker = _drift_marker(environment)
    with GitLab(env, doing="open or close the drift issue", transport=transport, policy=policy) as api:
        user = api.user_id()
        issues = f"{api.project}/issues"
        try:
            mine = [i for i in api.pages(issues, {"state": "opened", "author_id": user, "sort": "asc"})
                    if _authored_by(i, user) and marker in str(i.get("description") or "")
                    and _id(i.get("iid")) is not None]
            if drifted:
                return _report(api, issues, mine, marker, markdown, environment)
            return _close(api, issues, mine, env)
        except (GitLabAuthError, GitLabNotFound) as exc:
            raise type(exc)(f"{exc}. Are issues enabled for the project (Settings > General > Visibility)?") from None


def _report(api: GitLab, issues: str, mine: list[dict[str, Any]], marker: str, markdown: str,
            environment: str | None) -> DriftIssue:
    title = drift_title(environment)
    description = _capped(f"{marker}\n{_named(markdown, title)}\n\n---\nOpened by `kcr drift --gitlab-issue`, "
                          "which updates this description while the drift stands and closes the issue once Kibana "
                          "matches the repository again (apply the repository, or change the files to match).",
                          "drift report")
    if not mine:
        created = api.post(issues, {"title": title, "description": description, "labels": DRIFT_LABEL})
        iid = _id(created.get("iid")) if isinstance(created, dict) else None
        return DriftIssue("opened", (iid,) if iid is not None else ())
    first = mine[0]  # the oldest; a duplicate some race opened is closed once drift is gone
    iid = int(first["iid"])
    if first.get("description") == description:
        return DriftIssue("unchanged", (iid,))
    api.put(f"{issues}/{iid}", {"description": description})
    return DriftIssue("updated", (iid,))


def _close(api: GitLab, issues: str, mine: list[dict[str, Any]], env: Mapping[str, str]) -> DriftIssue:
    if not mine:
        return DriftIssue("none")
    job = env.get("CI_JOB_URL", "")
    seen = f" (checked by {job})" if _JOB_URL.fullmatch(job) else ""
    closed = []
    for issue in mine:
        iid = int(issue["iid"])
        api.post(f"{issues}/{iid}/notes", {"body": f"Drift resolved: Kibana matches the repository again{seen}. "
                                                  "Closed by `kcr drift --gitlab-issue`."})
        api.put(f"{issues}/{iid}", {"state_event": "close"})
        closed.append(iid)
    return DriftIssue("closed", tuple(closed))
