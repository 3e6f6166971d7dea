"""Fail closed at the limits (issue #11): KCR_TIMEOUT bounds a whole request, however slowly a server
trickles its answer; JSON nested absurdly deep is a typed error wherever it comes from; and a lock
kcr cannot read, or one whose answer was lost, never needs a human to edit files or guess ids."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import select
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import jsondepth
from reconciler import planfile as planmod
from reconciler.cli import main
from reconciler.connection import Connection
from reconciler.errors import KibanaError, KibanaUnavailable, PlanFileError, StateError
from reconciler.kibana import KibanaClient
from reconciler.state import FileBackend, HttpBackend, locked

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
CONNECTOR_ID = "0f8c6a52-5d0e-4b8e-9a51-6b6372000001"


# --------------------------------------------------------------------------------------------
# KCR_TIMEOUT bounds the whole request


class Trickler:
    """A loopback HTTP server that reads each request and then sends `answer` one byte every
    `interval` seconds, each connection in its own thread. Bounded: the answer is short and complete
    (a client without a total deadline eventually gets it), and every thread stops when the test
    calls stop(). It notes which connections the client closed before the answer was complete."""

    def __init__(self, answer: bytes, *, interval: float = 0.2, prefix: bytes = b"") -> None:
        self.answer, self.interval, self.prefix = answer, interval, prefix
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.request_lines: list[str] = []
        self.closed_early = threading.Semaphore(0)  # released once per connection the client abandoned
        self.completed = 0
        self.threads: list[threading.Thread] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self) -> None:
        while not self.stopping.is_set() and len(self.threads) < 8:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            request = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    request += chunk
            self.request_lines.append(request.split(b"\r\n", 1)[0].decode("latin-1"))
            with contextlib.suppress(OSError):
                conn.sendall(self.prefix)
            for index in range(len(self.answer)):
                if self.stopping.wait(self.interval) or self._client_gone(conn, index):
                    if not self.stopping.is_set():
                        self.closed_early.release()
                    return
            self.completed += 1

    def _client_gone(self, conn: socket.socket, index: int) -> bool:
        """Sends the next byte; True when the client has closed its end."""
        try:
            readable, _, _ = select.select([conn], [], [], 0)
            if readable and not conn.recv(1):
                return True
            conn.sendall(self.answer[index : index + 1])
        except OSError:
            return True
        return False

    def wait_closed_early(self, count: int) -> bool:
        return all(self.closed_early.acquire(timeout=10) for _ in range(count))

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.accepter.join(timeout=5)
        for thread in self.threads:
            thread.join(timeout=5)


@pytest.fixture()
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture()
def trickler() -> Iterator[Callable[..., Trickler]]:
    servers: list[Trickler] = []

    def start(answer: bytes, *, prefix: bytes = b"") -> Trickler:
        servers.append(Trickler(answer, prefix=prefix))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


HEADERS_THEN_EMPTY_LIST = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]"
BODY_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n"
BODY = b"[" + b" " * 58 + b"]"


def client_for(url: str, *, retries: int = 0) -> KibanaClient:
    return KibanaClient(Connection(url=url, timeout=1.0), retries=retries, sleep=lambda _: None)


@pytest.mark.usefixtures("no_proxy")
@pytest.mark.parametrize(
    ("answer", "prefix"),
    [(HEADERS_THEN_EMPTY_LIST, b""), (BODY, BODY_HEADERS)],
    ids=["headers trickled", "body trickled"],
)
def test_timeout_bounds_a_trickled_answer_and_retries_idempotent_reads(
    trickler: Callable[..., Trickler], answer: bytes, prefix: bytes
) -> None:
    server = trickler(answer, prefix=prefix)
    with client_for(f"http://127.0.0.1:{server.port}", retries=1) as client, pytest.raises(KibanaUnavailable) as err:
        client.list_spaces()
    message = str(err.value)
    assert "KCR_TIMEOUT=1s" in message and "GET /api/spaces/space" in message
    assert "raise KCR_TIMEOUT" in message
    # The deadline, shown without a clock: each byte comes well within KCR_TIMEOUT, so a client timing
    # single reads only would get the whole answer; kcr abandoned both attempts before it was complete.
    assert server.wait_closed_early(2)  # the first attempt and its retry, each abandoned by kcr
    assert server.completed == 0
    assert len(server.request_lines) == 2



@pytest.mark.usefixtures("no_proxy")
def test_a_trickling_state_backend_fails_the_load_instead_of_hanging(trickler: Callable[..., Trickler]) -> None:
    server = trickler(HEADERS_THEN_EMPTY_LIST)
    backend = HttpBackend(address=f"http://127.0.0.1:{server.port}/state", timeout=1.0, sleep=lambda _: None)
    try:
        with pytest.raises(StateError, match="could not be reached"):
            backend.load()
    finally:
        backend.close()
    assert server.wait_closed_early(1)
    assert server.completed == 0

@pytest.mark.usefixtures("no_proxy")
def test_timeout_is_not_retried_for_a_request_that_may_have_acted(trickler: Callable[..., Trickler]) -> None:
    server = trickler(HEADERS_THEN_EMPTY_LIST)
    with client_for(f"http://127.0.0.1:{server.port}", retries=3) as client, pytest.raises(KibanaUnavailable) as err:
        client.execute_connector("default", CONNECTOR_ID, {"message": "hi"})
    assert "KCR_TIMEOUT=1s" in str(err.value)
    assert server.wait_closed_early(1)
    assert len(server.request_lines) == 1  # a real notification is never sent twice
    assert server.request_lines[0].startswith("POST ")


@pytest.mark.usefixtures("no_proxy")
def test_timeout_holds_in_parallel_threads(trickler: Callable[..., Trickler]) -> None:
    server = trickler(HEADERS_THEN_EMPTY_LIST)
    with client_for(f"http://127.0.0.1:{server.port}") as client, ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(client.list_spaces) for _ in range(3)]
        errors = [f.exception(timeout=30) for f in futures]
    assert all(isinstance(e, KibanaUnavailable) and "KCR_TIMEOUT=1s" in str(e) for e in errors), errors
    assert server.wait_closed_early(3)


def test_timeout_holds_through_an_environment_proxy(
    trickler: Callable[..., Trickler], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = trickler(HEADERS_THEN_EMPTY_LIST)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    with client_for("http://kibana.test:5601") as client, pytest.raises(KibanaUnavailable) as err:
        client.list_spaces()
    assert "KCR_TIMEOUT=1s" in str(err.value)
    assert server.request_lines == ["GET http://kibana.test:5601/api/spaces/space HTTP/1.1"]  # it went via the proxy
    assert server.wait_closed_early(1)


# --------------------------------------------------------------------------------------------
# JSON nested too deep


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def test_depth_bound_is_exact() -> None:
    assert jsondepth.loads(nested(100)) is not None
    assert jsondepth.loads(json.dumps({"a": json.loads(nested(99))})) is not None
    for text in (nested(101), json.dumps({"a": json.loads(nested(100))})):
        with pytest.raises(jsondepth.TooDeep, match="nested deeper than 100 levels"):
            jsondepth.loads(text)


def golden_plan() -> dict[str, Any]:
    path = Path(__file__).resolve().parent / "data" / "golden" / "mixed_plan.json"
    body: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return body


@pytest.mark.parametrize("depth", [100_000, 500])
def test_deep_plan_file_is_a_plan_file_error(depth: int) -> None:
    body = golden_plan()
    change = next(c for c in body["changes"] if c.get("desired"))
    text = json.dumps(body).replace('"config": ' + json.dumps(change["desired"]["config"]),
                                    f'"config": {{"deep": {nested(depth)}}}', 1)
    assert text != json.dumps(body)
    with pytest.raises(PlanFileError, match=f"plan.json: not a kcr plan: nested deeper than {planmod.PLAN_MAX_DEPTH}"):
        planmod.loads(text, "plan.json")


def test_apply_of_a_deep_plan_exits_1_and_sends_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_file = tmp_path / "plan.json"
    plan_file.write_text('{"format_version": "1.0", "changes": ' + nested(100_000) + "}")
    sent: list[httpx.Request] = []

    def kibana(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    (tmp_path / "connectors").mkdir()
    code = main(["apply", str(plan_file), "--auto-approve", "--dir", str(tmp_path)],
                env={"KIBANA_URL": "http://kibana.test"}, transport=httpx.MockTransport(kibana))
    err = capsys.readouterr().err
    assert code == 1
    assert "nested deeper than" in err and "internal error" not in err
    assert sent == []  # nothing reached Kibana


@pytest.mark.parametrize("depth", [100_000, 500])
def test_deep_record_file_is_a_state_error(tmp_path: Path, depth: int) -> None:
    record = tmp_path / "record.json"
    record.write_text('{"format": 1, "connectors": {"x": ' + nested(depth) + "}}")
    with pytest.raises(StateError) as err:
        FileBackend(record).load()
    assert "record.json: the record of applied secrets is corrupt (nested deeper than 100 levels)" in str(err.value)


@pytest.mark.parametrize("depth", [100_000, 500])
def test_deep_http_state_is_a_state_error(depth: int) -> None:
    state = '{"version": 4, "serial": 1, "kcr_record": ' + nested(depth) + "}"
    backend = HttpBackend(address="http://127.0.0.1:1/state", sleep=lambda _: None,
                          transport=httpx.MockTransport(lambda request: httpx.Response(200, text=state)))
    with pytest.raises(StateError, match="the stored state is nested deeper than 100 levels"):
        backend.load()


def connector_json(config: str) -> str:
    return (
        '{"id": "' + CONNECTOR_ID + '", "name": "Hook", "connector_type_id": ".webhook", "is_preconfigured": false, '
        '"is_deprecated": false, "is_system_action": false, "is_missing_secrets": false, '
        '"referenced_by_count": 0, "config": ' + config + "}"
    )


@pytest.mark.parametrize("depth", [100_000, 500])
@pytest.mark.parametrize("read", ["list", "get"])
def test_deep_live_config_is_a_kibana_error(depth: int, read: str) -> None:
    body = connector_json('{"headers": ' + nested(depth) + "}")

    def kibana(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=f"[{body}]" if request.url.path.endswith("/connectors") else body)

    client = KibanaClient(Connection(url="http://kibana.test"), transport=httpx.MockTransport(kibana))
    with pytest.raises(KibanaError, match="answer nested deeper than 100 levels"):
        if read == "list":
            client.list_connectors("default")
        else:
            client.get_connector("default", CONNECTOR_ID)


# --------------------------------------------------------------------------------------------
# Locks nobody can read, and locks whose answer was lost


def force_unlock_id(message: str) -> str:
    found = re.search(r"kcr force-unlock (\S+?)`", message)
    assert found, message
    return found.group(1)


@pytest.mark.parametrize("content", [b"", b'{"ID": "3f0c', b"\xff\xfe garbage", b"{}", b"[]"],
                         ids=["empty", "truncated", "not text", "no id", "not an object"])
def test_force_unlock_clears_an_unreadable_lock_file(tmp_path: Path, content: bytes) -> None:
    backend = FileBackend(tmp_path / "record.json")
    backend.lock_path.write_bytes(content)
    with pytest.raises(StateError, match="locked by another run") as err:
        backend.lock()
    lock_id = force_unlock_id(str(err.value))
    assert lock_id == "unreadable-" + hashlib.sha256(content).hexdigest()[:16]
    assert backend.lock_path.read_bytes() == content  # nothing removed by the refusal
    FileBackend(tmp_path / "record.json").force_unlock(lock_id)
    assert not backend.lock_path.exists()
    with locked(backend):
        assert backend.lock_path.exists()


def test_force_unlock_of_an_unreadable_lock_spares_a_lock_written_since(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "record.json")
    backend.lock_path.write_bytes(b"")
    with pytest.raises(StateError) as err:
        backend.lock()
    stale_id = force_unlock_id(str(err.value))
    assert stale_id.startswith("unreadable-")
    backend.lock_path.unlink()
    holder = FileBackend(tmp_path / "record.json")
    holder.lock()  # a live run takes the lock in between
    with pytest.raises(StateError, match="nothing was removed"):
        backend.force_unlock(stale_id)
    assert holder.lock_path.exists()
    holder.unlock()


def test_cli_force_unlock_clears_an_empty_lock_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = tmp_path / "record.json"
    lock = record.with_name("record.json.lock")
    lock.write_bytes(b"")
    env = {"KIBANA_URL": "http://kibana.test", "KCR_RECORD": str(record)}
    with pytest.raises(StateError) as err:
        FileBackend(record).lock()
    lock_id = force_unlock_id(str(err.value))
    code = main(["force-unlock", lock_id, "--dir", str(tmp_path)], env=env,
                transport=httpx.MockTransport(lambda request: httpx.Response(500)))
    out, errors = capsys.readouterr()
    assert code == 0, errors
    assert f"Lock {lock_id} released." in out
    assert not lock.exists()


class LockServer:
    """Terraform's HTTP backend lock as GitLab answers it (409 with the holder while locked), where
    the answer to chosen LOCKs is lost after the server acted on them: `lose(n)` for the n-th LOCK
    gives BROKEN (the connection breaks), a status a gateway answers instead, or None (answered)."""

    def __init__(self, lose: Callable[[int], int | None]) -> None:
        self.lose = lose
        self.lock: dict[str, Any] | None = None
        self.requests: list[httpx.Request] = []
        self.locks_seen = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if request.method == "LOCK":
            self.locks_seen += 1
            if self.lock is None:
                self.lock = json.loads(request.content)
                answer = httpx.Response(200, json=self.lock)
            else:
                answer = httpx.Response(409, json=self.lock)
            lost = self.lose(self.locks_seen)
            if lost == BROKEN:
                raise httpx.ReadError("connection reset by peer", request=request)
            return answer if lost is None else httpx.Response(lost)
        if request.method == "UNLOCK":
            if self.lock is not None and json.loads(request.content).get("ID") == self.lock["ID"]:
                self.lock = None
                return httpx.Response(200)
            return httpx.Response(409, json=self.lock)
        if request.method == "GET":
            return httpx.Response(204)
        return httpx.Response(405)

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]


BROKEN = -1


def http_backend(server: LockServer) -> HttpBackend:
    return HttpBackend(address="http://127.0.0.1:1/state", lock_address="http://127.0.0.1:1/state/lock",
                       unlock_address="http://127.0.0.1:1/state/lock", transport=httpx.MockTransport(server),
                       sleep=lambda _: None)


@pytest.mark.parametrize("lost", [BROKEN, 504, 502], ids=["connection broken", "gateway timeout", "bad gateway"])
def test_a_lock_taken_before_its_answer_was_lost_is_held_and_released(lost: int) -> None:
    server = LockServer(lambda n: lost if n == 1 else None)
    backend = http_backend(server)
    with locked(backend, "kcr apply"):
        assert server.lock is not None  # the run holds the lock it took
        taken = server.lock["ID"]
    assert server.methods() == ["LOCK", "LOCK", "UNLOCK"]
    assert json.loads(server.requests[1].content)["ID"] == taken  # the same lock, asked again
    assert server.lock is None  # released by the same run: nothing left for a human to force-unlock


def test_a_lost_lock_answer_never_claims_another_runs_lock() -> None:
    other = {"ID": "someone-else", "Who": "ci@runner", "Operation": "kcr apply"}
    server = LockServer(lambda n: BROKEN if n == 1 else None)
    server.lock = dict(other)  # held by another run all along
    with pytest.raises(StateError, match="locked by ci@runner") as err:
        http_backend(server).lock()
    assert "kcr force-unlock someone-else" in str(err.value)
    assert server.lock == other
    assert "UNLOCK" not in server.methods() and "POST" not in server.methods()


def test_a_lock_whose_outcome_stays_unknown_names_this_runs_lock_id() -> None:
    server = LockServer(lambda n: BROKEN)  # every answer lost, the first LOCK did land
    with pytest.raises(StateError, match="cannot tell whether it took the lock") as err:
        http_backend(server).lock()
    assert server.lock is not None
    assert f"kcr force-unlock {server.lock['ID']}" in str(err.value)
    assert set(server.methods()) == {"LOCK"}  # no UNLOCK on a guess, no state written
