"""GitLab's REST API as kcr's feedback (MR notes, drift issues) uses it: where it is (CI_API_V4_URL,
CI_PROJECT_ID), who kcr is there (KCR_GITLAB_TOKEN, sent as PRIVATE-TOKEN), how calls are repeated
(reconciler/retry.py: a 429 always, a transport failure or a 502-504 only for a call safe to send
twice), how long lists are paged, and how failures are worded. Separate from the notes and issues in
`gitlab`, which decide what to write, so that transport, retries and wording are written and tested once.

    GitLabError (ReconcilerError, exit 1)   GitLab refused or answered something unreadable
    ├── GitLabAuthError                     401/403: the token, its scope or its role
    ├── GitLabNotFound                      404: the project or object is not visible to the token
    └── GitLabUnavailable                   transport failure, 429 or 5xx after the retries

Every message names the call (`GET /projects/7/issues`, never the host or the query) and what to do; the
token is never in one: it travels in a header, and any text GitLab sends back is masked with it.

GitLab's conventions used here: `x-next-page` (empty on the last page) for offset pagination, and
`{"message": ...}` or `{"error": ..., "error_description": ...}` error bodies (docs.gitlab.com/api/rest).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from reconciler.errors import ConfigError, ReconcilerError
from reconciler.masking import Masker
from reconciler.retry import RetryPolicy

TOKEN_VAR = "KCR_GITLAB_TOKEN"
PER_PAGE = 100
MAX_PAGES = 50  # 5,000 notes or issues: past that kcr stops looking (and may add one more note)
TIMEOUT = 30.0
DEFAULT_POLICY = RetryPolicy(retries=3, throttled=5, backoff=0.5, max_backoff=10.0)
_MESSAGE_WIDTH = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+")

SCOPE_HINT = (f"{TOKEN_VAR} must be a project access token (or a bot user's token) with the `api` scope and at "
              "least the Reporter role, set as a masked CI/CD variable; CI_JOB_TOKEN cannot write notes or issues")


class GitLabError(ReconcilerError):
    """GitLab answered with an error, or something that is not what its API documents."""


class GitLabAuthError(GitLabError):
    pass


class GitLabNotFound(GitLabError):
    pass


class GitLabUnavailable(GitLabError):
    pass


def require(env: Mapping[str, str], names: tuple[str, ...], doing: str, hint: str) -> None:
    """A ConfigError naming every missing variable at once, before any request."""
    missing = [n for n in names if not env.get(n)]
    if missing:
        raise ConfigError(f"cannot {doing}: {', '.join(missing)} not set ({hint})")


def _id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class GitLab:
    """One project's API, for one command. `transport` and `policy` are injected for tests (a fake
    transport; a policy whose `sleep` records instead of waiting)."""

    def __init__(self, env: Mapping[str, str], *, doing: str, transport: httpx.BaseTransport | None = None,
                 policy: RetryPolicy | None = None) -> None:
        require(env, ("CI_API_V4_URL", "CI_PROJECT_ID", TOKEN_VAR), doing,
                f"run it in a GitLab CI job, with a {TOKEN_VAR} variable")
        self._token = env[TOKEN_VAR]
        self._mask = Masker(self._token)
        self._api = env["CI_API_V4_URL"].rstrip("/")
        self.project = f"/projects/{quote(env['CI_PROJECT_ID'], safe='')}"
        self._policy = policy or DEFAULT_POLICY
        self._http = httpx.Client(transport=transport, headers={"PRIVATE-TOKEN": self._token}, timeout=TIMEOUT,
                                  follow_redirects=False)

    def __enter__(self) -> GitLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    # --- calls ---------------------------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        return self._json("GET", path, self._send("GET", path, params=params, repeat=True))

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        """Not repeated after a failure that may have reached GitLab (it would add a second note);
        a 429 is, since GitLab did nothing."""
        return self._json("POST", path, self._send("POST", path, json=body, repeat=False))

    def put(self, path: str, body: Mapping[str, Any]) -> Any:
        return self._json("PUT", path, self._send("PUT", path, json=body, repeat=True))

    def pages(self, path: str, params: Mapping[str, str | int] | None = None) -> Iterator[Any]:
        """Every item of a list, page by page (`x-next-page`), at most MAX_PAGES pages."""
        for page in range(1, MAX_PAGES + 1):
            query = {**(params or {}), "per_page": PER_PAGE, "page": page}
            response = self._send("GET", path, params=query, repeat=True)
            items = self._json("GET", path, response)
            if not isinstance(items, list):
                raise GitLabError(f"GitLab answered GET {path} with something that is not a list; "
                                  "is CI_API_V4_URL GitLab's API (ending in /api/v4)?")
            yield from items
            if not items or not response.headers.get("x-next-page", "").strip():
                return

    def user_id(self) -> int:
        """The id of the user the token acts as (a project access token's bot user): kcr edits only
        what that user wrote."""
        try:
            user = self.get("/user")
        except GitLabError as exc:
            raise type(exc)(f"GitLab did not say which user {TOKEN_VAR} belongs to, and kcr edits only what that "
                            f"user wrote, so it posted nothing: {exc}") from None
        uid = _id(user.get("id")) if isinstance(user, dict) else None
        if uid is None:
            raise GitLabAuthError(f"GitLab did not say which user {TOKEN_VAR} belongs to (GET /user answered "
                                  f"without a user id); kcr edits only what that user wrote, so it posted nothing. "
                                  f"{SCOPE_HINT}")
        return uid

    # --- transport and wording -----------------------------------------------------------------------

    def _send(self, method: str, path: str, *, repeat: bool, params: Mapping[str, str | int] | None = None,
              json: Mapping[str, Any] | None = None) -> httpx.Response:
        url = self._api + path
        try:
            sent = self._policy.call(lambda: self._http.request(method, url, params=params, json=json), repeat=repeat)
        except httpx.HTTPError as exc:
            raise GitLabUnavailable(f"GitLab could not be reached at CI_API_V4_URL for {method} {path} "
                                    f"({type(exc).__name__}); check the runner's network and CI_API_V4_URL, "
                                    "then re-run the job") from None
        response = sent.response
        if response.status_code < 400:
            return response
        raise self._refused(method, path, response)

    def _refused(self, method: str, path: str, response: httpx.Response) -> GitLabError:
        status = response.status_code
        said = self._said(response)
        head = f"GitLab refused {method} {path}: HTTP {status}{f' ({said})' if said else ''}"
        if status == 401:
            return GitLabAuthError(f"{head}; {TOKEN_VAR} was not accepted (expired, revoked or mistyped?). "
                                   f"{SCOPE_HINT}")
        if status == 403:
            return GitLabAuthError(f"{head}; the token may not do this. {SCOPE_HINT}")
        if status == 404:
            return GitLabNotFound(f"{head}; the project (CI_PROJECT_ID) or the object is not visible to "
                                  f"{TOKEN_VAR}: check that the token belongs to this project")
        if status == 429 or status >= 500:
            return GitLabUnavailable(f"{head}; GitLab stayed busy or unavailable after retries: re-run the job")
        return GitLabError(f"{head}; this is likely a kcr bug or an unusual GitLab version: report it")

    def _said(self, response: httpx.Response) -> str:
        """GitLab's own reason, cleaned (control characters, the token) and cut short."""
        try:
            body = response.json()
        except ValueError:
            return ""
        if not isinstance(body, dict):
            return ""
        said = body.get("message") or body.get("error_description") or body.get("error") or ""
        text = said if isinstance(said, str) else str(said)
        text = _CONTROL.sub(" ", self._mask(text)).strip()
        return text if len(text) <= _MESSAGE_WIDTH else text[: _MESSAGE_WIDTH - 1] + "…"

    def _json(self, method: str, path: str, response: httpx.Response) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise GitLabError(f"GitLab answered {method} {path} with something that is not JSON; is CI_API_V4_URL "
                              "GitLab's API (ending in /api/v4)?") from None


__all__ = ["DEFAULT_POLICY", "SCOPE_HINT", "TOKEN_VAR", "GitLab", "GitLabAuthError", "GitLabError", "GitLabNotFound",
           "GitLabUnavailable", "require"]
