"""Posting the Markdown plan as one sticky merge-request comment through GitLab's notes API.

CI_JOB_TOKEN cannot write notes, so a project access token with `api` scope is read from
KCR_GITLAB_TOKEN and sent as PRIVATE-TOKEN. The comment carries a hidden marker per title, so each
pipeline updates its own comment instead of adding another. Only a note the token's own user wrote
is ever edited: anyone can quote the marker in a note of theirs, and kcr must not rewrite a
reviewer's words. When GitLab cannot say who the token's user is, nothing is posted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from reconciler.errors import ConfigError, ReconcilerError
from reconciler.render import markdown_text

MAX_PAGES = 20
MAX_BODY = 1_000_000  # GitLab's limit on a note's body


def _marker(title: str) -> str:
    """One line, and the title cannot close the HTML comment early (`-->`) and spill into the note."""
    safe = " ".join(title.replace("<", "&lt;").replace(">", "&gt;").split())
    return f"<!-- kcr-mr-comment: {safe} -->"


def post_mr_comment(markdown: str, title: str, env: Mapping[str, str],
                    transport: httpx.BaseTransport | None = None) -> str:
    """Create or update the comment; returns "created" or "updated"."""
    missing = [v for v in ("CI_API_V4_URL", "CI_PROJECT_ID", "CI_MERGE_REQUEST_IID", "KCR_GITLAB_TOKEN")
               if not env.get(v)]
    if missing:
        raise ConfigError(f"cannot post the MR comment: {', '.join(missing)} not set "
                          "(run in a merge-request pipeline with a KCR_GITLAB_TOKEN variable)")
    base = f"{env['CI_API_V4_URL'].rstrip('/')}/projects/{env['CI_PROJECT_ID']}/merge_requests/" \
           f"{env['CI_MERGE_REQUEST_IID']}/notes"
    # The Markdown plan brings its own heading: name it after the title (one comment per environment).
    heading, named = "### kcr plan", f"### {markdown_text(title)}"
    body = (f"{_marker(title)}\n{markdown.replace(heading, named, 1)}" if heading in markdown
            else f"{_marker(title)}\n{named}\n\n{markdown}")
    if len(body) > MAX_BODY:
        body = body[: MAX_BODY - 200] + "\n\n… (truncated: see the job's plan artifact)"
    headers = {"PRIVATE-TOKEN": env["KCR_GITLAB_TOKEN"]}
    try:
        with httpx.Client(transport=transport, headers=headers, timeout=30) as http:
            user = _token_user(http, env["CI_API_V4_URL"].rstrip("/"))
            existing = _find(http, base, _marker(title), user)
            if existing is None:
                resp = http.post(base, json={"body": body})
                verb = "created"
            else:
                resp = http.put(f"{base}/{existing}", json={"body": body})
                verb = "updated"
    except httpx.HTTPError as exc:
        raise ReconcilerError(f"GitLab could not be reached at CI_API_V4_URL ({type(exc).__name__}); "
                              "check the runner's network") from None
    if resp.status_code >= 400:
        hint = " (does KCR_GITLAB_TOKEN have the api scope?)" if resp.status_code in (401, 403) else ""
        raise ReconcilerError(f"GitLab refused the MR comment: HTTP {resp.status_code}{hint}")
    return verb


def _id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _unknown_user(status: int, what: str) -> ReconcilerError:
    return ReconcilerError(
        f"GitLab did not say which user KCR_GITLAB_TOKEN belongs to (GET /user answered HTTP {status}{what}); "
        "kcr edits only a comment written by that user, so it posted nothing. Check that the token is valid "
        "and has the api scope (a project access token works)")


def _token_user(http: httpx.Client, api: str) -> int:
    """The id of the user KCR_GITLAB_TOKEN acts as (a project access token's bot user)."""
    resp = http.get(f"{api}/user")
    if resp.status_code != 200:
        raise _unknown_user(resp.status_code, "")
    try:
        user: Any = resp.json()
    except ValueError:
        raise _unknown_user(resp.status_code, ", not JSON") from None
    uid = _id(user.get("id")) if isinstance(user, dict) else None
    if uid is None:
        raise _unknown_user(resp.status_code, " without a user id")
    return uid


def _authored_by(note: Any, user: int) -> bool:
    author = note.get("author") if isinstance(note, dict) else None
    return isinstance(author, dict) and _id(author.get("id")) == user


def _find(http: httpx.Client, base: str, marker: str, user: int) -> int | None:
    """The first note of `user` that carries the marker; a note of anyone else never counts."""
    for page in range(1, MAX_PAGES + 1):
        resp = http.get(base, params={"per_page": 100, "page": page, "sort": "asc"})
        if resp.status_code >= 400:
            raise ReconcilerError(f"GitLab refused to list MR notes: HTTP {resp.status_code}")
        try:
            notes: Any = resp.json()
        except ValueError:
            raise ReconcilerError("GitLab answered the notes list with something that is not JSON") from None
        if not isinstance(notes, list) or not notes:
            return None
        for note in notes:
            if _authored_by(note, user) and marker in str(note.get("body", "")):
                note_id = _id(note.get("id"))
                if note_id is None:
                    raise ReconcilerError("GitLab listed kcr's MR comment without a note id; nothing was posted")
                return note_id
        if not resp.headers.get("x-next-page"):
            return None
    return None
