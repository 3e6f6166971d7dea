"""A fake GitLab on a loopback socket: the REST endpoints kcr's feedback uses (the token's user, an MR's
notes, a commit's merge requests, a project's issues and their notes), with GitLab's offset pagination
(`per_page`, `page`, `x-next-page`), PRIVATE-TOKEN authentication, and scripted faults. A real HTTP
server (http.server in a thread) rather than a mock transport, so kcr's own transport, headers and
retries run as they do in CI. Started and stopped by the test: `with FakeGitLab(...).running() as api:`.

Shapes follow docs.gitlab.com/api (notes.md, commits.md "List merge requests associated with a
commit", issues.md); only the fields kcr reads or a test asserts on are kept."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    raw_target: str  # the request line's target, as sent: a token must never be in it


@dataclass
class FakeGitLab:
    token: str
    project: str = "7"
    user: dict[str, Any] = field(default_factory=lambda: {"id": 41, "username": "project_7_bot"})
    notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # MR iid -> notes
    commit_mrs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sha -> MRs
    issues: list[dict[str, Any]] = field(default_factory=list)
    issue_notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    faults: list[tuple[str, str, int, dict[str, str], Any]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    _next_id: int = 1000
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- scripting -----------------------------------------------------------------------------------

    def fail(self, method: str, path_regex: str, status: int, *, times: int = 1, headers: dict[str, str] | None = None,
             body: Any = None) -> None:
        """The next `times` requests matching answer `status` (then the endpoint works again)."""
        self.faults += [(method, path_regex, status, headers or {}, body)] * times

    def writes(self) -> list[tuple[str, str]]:
        return [(s.method, s.path) for s in self.seen if s.method != "GET"]

    # --- the server ----------------------------------------------------------------------------------

    @contextmanager
    def running(self) -> Iterator[str]:
        """The API's base URL (CI_API_V4_URL) while the server runs; stopped and closed on exit."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, headers, body = fake._answer(self.command, self.path, dict(self.headers.items()), raw)
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/api/v4"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    def _answer(self, method: str, target: str, headers: dict[str, str], raw: bytes
                ) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(target)
        path = parts.path.removeprefix("/api/v4")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body = json.loads(raw) if raw else None
        with self._lock:
            self.seen.append(Seen(method, path, query, body, target))
            for i, (m, regex, status, extra, fault_body) in enumerate(self.faults):
                if m == method and re.fullmatch(regex, path):
                    del self.faults[i]
                    return status, extra, fault_body if fault_body is not None else {"message": f"{status} fault"}
            if headers.get("PRIVATE-TOKEN") != self.token:
                return 401, {}, {"message": "401 Unauthorized"}
            return self._route(method, path, query, body)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        p = f"/projects/{self.project}"
        if (method, path) == ("GET", "/user"):
            return 200, {}, self.user
        if m := re.fullmatch(rf"{p}/merge_requests/(\d+)/notes(?:/(\d+))?", path):
            return self._notes(self.notes.setdefault(int(m[1]), []), method, m[2], query, body)
        if m := re.fullmatch(rf"{p}/repository/commits/([0-9a-f]+)/merge_requests", path):
            return self._page(self.commit_mrs.get(m[1], []), query) if method == "GET" else (405, {}, None)
        if path == f"{p}/issues":
            return self._issues(method, query, body)
        if m := re.fullmatch(rf"{p}/issues/(\d+)/notes", path):
            notes = self.issue_notes.setdefault(int(m[1]), [])
            return self._notes(notes, method, None, query, body)
        if m := re.fullmatch(rf"{p}/issues/(\d+)", path):
            issue = next((i for i in self.issues if i["iid"] == int(m[1])), None)
            if issue is None or method != "PUT":
                return 404, {}, {"message": "404 Not found"}
            if "description" in body:
                issue["description"] = body["description"]
            if body.get("state_event") == "close":
                issue["state"] = "closed"
            return 200, {}, issue
        return 404, {}, {"message": "404 Not Found"}

    def _page(self, items: list[dict[str, Any]], query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        per_page, page = min(int(query.get("per_page", 20)), 100), int(query.get("page", 1))
        chunk = items[(page - 1) * per_page: page * per_page]
        more = page * per_page < len(items)
        return 200, {"x-next-page": str(page + 1) if more else "", "x-page": str(page)}, chunk

    def _notes(self, notes: list[dict[str, Any]], method: str, note_id: str | None, query: dict[str, str],
               body: Any) -> tuple[int, dict[str, str], Any]:
        if method == "GET" and note_id is None:
            return self._page(notes, query)
        if method == "POST" and note_id is None:
            notes.append({"id": self._new_id(), "body": body["body"], "author": dict(self.user)})
            return 201, {}, notes[-1]
        note = next((n for n in notes if note_id is not None and n["id"] == int(note_id)), None)
        if method == "PUT" and note is not None:
            if note["author"]["id"] != self.user["id"]:
                return 403, {}, {"message": "403 Forbidden"}
            note["body"] = body["body"]
            return 200, {}, note
        return 404, {}, {"message": "404 Not found"}

    def _issues(self, method: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        if method == "POST":
            iid = max((i["iid"] for i in self.issues), default=0) + 1
            labels = [x for x in str(body.get("labels", "")).split(",") if x]
            self.issues.append({"id": self._new_id(), "iid": iid, "title": body["title"], "state": "opened",
                                "description": body.get("description", ""), "labels": labels,
                                "author": dict(self.user)})
            return 201, {}, self.issues[-1]
        found = [i for i in self.issues
                 if query.get("state") in (None, "all", i["state"])
                 and ("author_id" not in query or str(i["author"]["id"]) == query["author_id"])]
        return self._page(found, query)
