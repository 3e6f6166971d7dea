"""The record of applied secrets: local file (atomic, locked) and Terraform HTTP backend (GitLab)."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.errors import ConfigError, StateError
from reconciler.model import SecretDigest
from reconciler.state import (
    FileBackend,
    HttpBackend,
    backend_from_env,
    default_record_path,
    locked,
    normalize_kibana_url,
)

RECORD = {
    "0f8c6a52-5d0e-4b8e-9a51-6b6372000001": SecretDigest(hmacs={"webhookUrl": "ab" * 32}),
    "0f8c6a52-5d0e-4b8e-9a51-6b6372000002": SecretDigest(
        hmacs={"routingKey": "cd" * 32}, vault_versions={"${vault:secret/pd#key}": 3}
    ),
}


# ------------------------------------------------------------------------------------------
# local file


def test_file_round_trip(tmp_path: Path) -> None:
    backend = backend_from_env({}, tmp_path)
    assert isinstance(backend, FileBackend)
    assert backend.path == tmp_path / ".kcr" / "record.json"
    assert backend.load() == {}
    backend.save(RECORD)
    assert backend.load() == RECORD
    doc = json.loads(backend.path.read_text())
    assert doc["format"] == 1
    assert set(doc["connectors"]) == set(RECORD)
    backend.save({})
    assert backend.load() == {}


def test_record_path_settings(tmp_path: Path) -> None:
    assert backend_from_env({"KCR_RECORD": "state/r.json"}, tmp_path).path == tmp_path / "state" / "r.json"  # type: ignore[attr-defined]
    absolute = tmp_path / "abs.json"
    assert backend_from_env({"KCR_RECORD": str(absolute)}, tmp_path).path == absolute  # type: ignore[attr-defined]
    chosen = backend_from_env({"KCR_RECORD": "x.json"}, tmp_path, path="flag.json")
    assert chosen.path == tmp_path / "flag.json"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "corrupt"),
        ("[]", "not a JSON object"),
        ('{"format": 2, "connectors": {}}', "format 2"),
        ('{"format": 1, "connectors": []}', "connectors"),
        ('{"format": 1, "connectors": {"a": 5}}', "connector 'a'"),
        ('{"format": 1, "connectors": {"a": {"vault_versions": {"r": "x"}}}}', "connector 'a'"),
    ],
)
def test_corrupt_record_says_which_file_and_what_to_do(tmp_path: Path, text: str, match: str) -> None:
    backend = FileBackend(tmp_path / "record.json")
    backend.path.write_text(text)
    with pytest.raises(StateError, match=match) as info:
        backend.load()
    assert str(backend.path) in str(info.value)


def test_corrupt_json_advice(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "record.json")
    backend.path.write_text("{")
    with pytest.raises(StateError, match="--sync-secrets"):
        backend.load()


def test_failed_write_leaves_the_old_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = FileBackend(tmp_path / "record.json")
    backend.save(RECORD)
    before = backend.path.read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StateError, match="previous record is unchanged"):
        backend.save({})
    monkeypatch.undo()
    assert backend.path.read_bytes() == before
    assert backend.load() == RECORD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]  # no temporary file left


def test_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    first = FileBackend(tmp_path / "record.json", env={"CI_JOB_URL": "https://gitlab.test/-/jobs/42"})
    second = FileBackend(tmp_path / "record.json")
    first.lock("apply of plan.json")
    holder = json.loads(first.lock_path.read_text())
    assert holder["pid"] == str(os.getpid())
    assert holder["host"] == socket.gethostname()
    assert {"ID", "Who", "Created", "Operation", "Info", "time"} <= set(holder)
    with pytest.raises(StateError) as info:
        second.lock()
    text = str(info.value)
    assert holder["Who"] in text and f"pid {os.getpid()}" in text
    assert "jobs/42" in text and str(first.lock_path) in text
    second.unlock()  # not the holder: leaves the lock alone
    assert first.lock_path.exists()
    first.unlock()
    assert not first.lock_path.exists()
    second.lock()
    second.unlock()


def test_lock_file_of_unknown_shape(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "record.json")
    backend.lock_path.write_text("garbage")
    with pytest.raises(StateError, match="locked by another run"):
        backend.lock()


def test_locked_context_releases_on_error(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "record.json")
    with pytest.raises(RuntimeError), locked(backend, "apply"):
        assert backend.lock_path.exists()
        raise RuntimeError("apply failed")
    assert not backend.lock_path.exists()


# ------------------------------------------------------------------------------------------
# Terraform HTTP backend


class TerraformHttpServer:
    """Terraform's HTTP backend protocol, as GitLab implements it: GET (204 when empty), POST (refused
    without the lock ID while locked), lock/unlock with the methods given, 409/423 with the holder."""

    def __init__(self, *, lock_method: str = "LOCK", unlock_method: str = "UNLOCK", lock_path: str = "",
                 locked_status: int = 423, empty_status: int = 204) -> None:
        self.lock_method, self.unlock_method, self.lock_path = lock_method, unlock_method, lock_path
        self.locked_status, self.empty_status = locked_status, empty_status
        self.state: bytes | None = None
        self.lock: dict[str, Any] | None = None
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        path = request.url.path
        is_lock_path = path.endswith("/lock") if self.lock_path else True
        if request.method == self.lock_method and is_lock_path:
            if self.lock is not None:
                return httpx.Response(self.locked_status, json=self.lock)
            self.lock = json.loads(request.content)
            return httpx.Response(200, json=self.lock)
        if request.method == self.unlock_method and is_lock_path:
            self.lock = None
            return httpx.Response(200)
        if request.method == "GET":
            return httpx.Response(200, content=self.state) if self.state else httpx.Response(self.empty_status)
        if request.method == "POST":
            if self.lock is not None and request.url.params.get("ID") != self.lock["ID"]:
                return httpx.Response(409, json=self.lock)
            self.state = request.content
            return httpx.Response(200)
        return httpx.Response(405)


GITLAB_ENV = {
    "KCR_RECORD_GITLAB_STATE": "kcr-production",
    "CI_API_V4_URL": "https://gitlab.test/api/v4",
    "CI_PROJECT_ID": "42",
    "CI_JOB_TOKEN": "job-token-secret",
}


def test_gitlab_settings(tmp_path: Path) -> None:
    backend = backend_from_env(GITLAB_ENV, tmp_path)
    assert isinstance(backend, HttpBackend)
    assert backend.address == "https://gitlab.test/api/v4/projects/42/terraform/state/kcr-production"
    assert backend.lock_address == backend.address + "/lock"
    assert backend.unlock_address == backend.address + "/lock"
    assert (backend.lock_method, backend.unlock_method) == ("POST", "DELETE")
    assert backend.username == "gitlab-ci-token"
    assert "job-token-secret" not in repr(backend)


def test_gitlab_settings_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CI_API_V4_URL"):
        backend_from_env({"KCR_RECORD_GITLAB_STATE": "x", "CI_JOB_TOKEN": "t"}, tmp_path)
    with pytest.raises(ConfigError, match="CI_JOB_TOKEN"):
        backend_from_env({**GITLAB_ENV, "CI_JOB_TOKEN": ""}, tmp_path)
    with pytest.raises(ConfigError, match="cannot contain"):
        backend_from_env({**GITLAB_ENV, "KCR_RECORD_GITLAB_STATE": "a/b"}, tmp_path)
    with pytest.raises(ConfigError, match="not an http"):
        backend_from_env({"KCR_RECORD_HTTP_ADDRESS": "file:///etc/passwd"}, tmp_path)


def test_generic_http_settings(tmp_path: Path) -> None:
    env = {
        "KCR_RECORD_HTTP_ADDRESS": "http://127.0.0.1:8080/state/kcr",
        "KCR_RECORD_HTTP_LOCK_ADDRESS": "http://127.0.0.1:8080/state/kcr",
        "KCR_RECORD_HTTP_UNLOCK_ADDRESS": "http://127.0.0.1:8080/state/kcr",
        "KCR_RECORD_HTTP_USERNAME": "u",
        "KCR_RECORD_HTTP_PASSWORD": "p",
        "KCR_RECORD_HTTP_LOCK_METHOD": "put",
    }
    backend = backend_from_env(env, tmp_path)
    assert isinstance(backend, HttpBackend)
    assert (backend.lock_method, backend.unlock_method, backend.update_method) == ("PUT", "UNLOCK", "POST")
    assert backend.username == "u"


def test_gitlab_round_trip_with_lock(tmp_path: Path) -> None:
    server = TerraformHttpServer(lock_method="POST", unlock_method="DELETE", lock_path="/lock", locked_status=409)
    backend = backend_from_env(GITLAB_ENV, tmp_path, transport=httpx.MockTransport(server))
    assert isinstance(backend, HttpBackend)
    with locked(backend, "kcr apply"):
        assert backend.load() == {}
        backend.save(RECORD)
        backend.save(RECORD)
    assert server.lock is None
    doc = json.loads(server.state or b"")
    assert doc["version"] == 4 and doc["serial"] == 2 and doc["resources"] == []
    assert isinstance(doc["lineage"], str) and doc["lineage"]
    assert doc["kcr_record"]["format"] == 1
    # every request carries the job token as basic auth; saves carry the lock ID
    expected = "Basic " + base64.b64encode(b"gitlab-ci-token:job-token-secret").decode()
    assert all(r.headers["authorization"] == expected for r in server.requests)
    posts = [r for r in server.requests if r.method == "POST" and not r.url.path.endswith("/lock")]
    assert len(posts) == 2 and all(r.url.params.get("ID") for r in posts)
    lock_request = server.requests[0]
    assert lock_request.url.path.endswith("/terraform/state/kcr-production/lock")
    assert set(json.loads(lock_request.content)) == {"ID", "Operation", "Info", "Who", "Version", "Created", "Path"}

    # a second run reads the record back and continues the serial and lineage
    again = backend_from_env(GITLAB_ENV, tmp_path, transport=httpx.MockTransport(server))
    assert again.load() == RECORD
    again.save({})
    doc2 = json.loads(server.state or b"")
    assert doc2["serial"] == 3 and doc2["lineage"] == doc["lineage"]


def test_held_lock_names_the_holder(tmp_path: Path) -> None:
    server = TerraformHttpServer()
    env = {"KCR_RECORD_HTTP_ADDRESS": "http://127.0.0.1:1/s", "KCR_RECORD_HTTP_LOCK_ADDRESS": "http://127.0.0.1:1/s",
           "KCR_RECORD_HTTP_UNLOCK_ADDRESS": "http://127.0.0.1:1/s"}
    server.lock = {"ID": "abc-123", "Who": "alice@laptop", "Operation": "OperationTypeApply",
                   "Created": "2024-01-15T10:30:45Z", "Info": "", "Version": "1.7.0", "Path": ""}
    backend = backend_from_env(env, tmp_path, transport=httpx.MockTransport(server))
    with pytest.raises(StateError) as info:
        backend.lock("apply")
    text = str(info.value)
    assert "alice@laptop" in text and "abc-123" in text and "2024-01-15" in text
    assert server.requests[0].method == "LOCK"
    backend.unlock()  # never acquired: sends nothing
    assert [r.method for r in server.requests] == ["LOCK"]


def test_http_backend_empty_and_foreign_states(tmp_path: Path) -> None:
    server = TerraformHttpServer(empty_status=404)
    backend = HttpBackend(address="http://127.0.0.1:1/s", transport=httpx.MockTransport(server))
    assert backend.load() == {}
    backend.lock()  # locking disabled without a lock address
    backend.unlock()
    server.state = json.dumps({"version": 4, "serial": 9, "lineage": "l",
                               "resources": [{"type": "aws_instance"}]}).encode()
    with pytest.raises(StateError, match="Terraform resources"):
        backend.load()
    server.state = b"{broken"
    with pytest.raises(StateError, match="not JSON"):
        backend.load()


def test_http_backend_errors_carry_no_credentials(tmp_path: Path) -> None:
    canary = f"CANARY-{uuid.uuid4()}"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"message": "401 Unauthorized"})

    backend = HttpBackend(address=f"http://user:{canary}@127.0.0.1:1/s?token={canary}", username="u",
                          password=canary, transport=httpx.MockTransport(handler))
    with pytest.raises(StateError) as info:
        backend.load()
    assert "401" in str(info.value) and "USERNAME" in str(info.value)
    assert canary not in str(info.value) and canary not in repr(backend)

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    slept: list[float] = []
    down = HttpBackend(address="http://127.0.0.1:1/s", transport=httpx.MockTransport(broken), sleep=slept.append,
                       random=lambda: 1.0)  # the jitter's top: the backoff itself
    with pytest.raises(StateError, match="could not be reached"):
        down.load()
    assert slept == [0.5, 1.0, 2.0]  # retried, backing off, before giving up


def test_http_backend_rides_out_a_passing_failure_but_never_retries_lock() -> None:
    calls: list[str] = []
    state = {"version": 4, "serial": 1, "lineage": "l", "kcr_record": {"format": 1, "connectors": {}}}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.method == "LOCK":
            return httpx.Response(503)
        return httpx.Response(503) if calls.count(request.method) == 1 else httpx.Response(200, json=state)

    backend = HttpBackend(address="http://127.0.0.1:1/s", lock_address="http://127.0.0.1:1/s/lock",
                          transport=httpx.MockTransport(flaky), sleep=lambda _: None)
    assert backend.load() == {}
    assert calls == ["GET", "GET"]
    with pytest.raises(StateError):
        backend.lock()
    assert calls.count("LOCK") == 1


# ------------------------------------------------------------------------------------------
# a record belongs to one Kibana

KIBANA_A = "https://kibana-a.test:5601"
KIBANA_B = "https://kibana-b.test:5601"
OTHER = {"0f8c6a52-5d0e-4b8e-9a51-6b6372000001": SecretDigest(hmacs={"webhookUrl": "ef" * 32})}


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("HTTPS://Kibana.Example.COM/", "https://kibana.example.com"),
        ("https://kibana.example.com:443", "https://kibana.example.com"),
        ("http://kibana.example.com:80/kibana/", "http://kibana.example.com/kibana"),
        ("https://u:p@kibana.example.com:5601/Base?x=1", "https://kibana.example.com:5601/Base"),
        ("http://[::1]:5601", "http://[::1]:5601"),
    ],
)
def test_kibana_urls_are_normalised(url: str, normal: str) -> None:
    assert normalize_kibana_url(url) == normal


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (None, "record.json"),
        ("https://Kibana.Example.com", "record-kibana.example.com.json"),
        ("https://kibana.example.com:443/kibana", "record-kibana.example.com.json"),
        ("http://127.0.0.1:5601", "record-127.0.0.1-5601.json"),
        ("http://[::1]:5601", "record-__1-5601.json"),
    ],
)
def test_default_record_is_per_kibana(tmp_path: Path, url: str | None, name: str) -> None:
    assert default_record_path(url) == Path(".kcr") / name
    backend = backend_from_env({}, tmp_path, kibana_url=url)
    assert isinstance(backend, FileBackend)
    assert backend.path == tmp_path / ".kcr" / name


def test_applying_to_two_kibanas_keeps_two_records(tmp_path: Path) -> None:
    """The reviewer's case: apply to A, then to B with other secret values; A's plan must still see
    A's digests, not B's (derived ids are the same in every environment)."""
    backend_from_env({}, tmp_path, kibana_url=KIBANA_A).save(RECORD)
    backend_from_env({}, tmp_path, kibana_url=KIBANA_B).save(OTHER)
    assert backend_from_env({}, tmp_path, kibana_url=KIBANA_A).load() == RECORD
    assert backend_from_env({}, tmp_path, kibana_url=KIBANA_B).load() == OTHER


def test_shared_record_file_is_guarded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = {"KCR_RECORD": "shared.json"}
    a = backend_from_env(env, tmp_path, kibana_url=KIBANA_A + "/")
    a.save(RECORD)
    doc = json.loads((tmp_path / "shared.json").read_text())
    assert doc["kibana_url"] == KIBANA_A and doc["format"] == 1 and set(doc["connectors"]) == set(RECORD)

    b = backend_from_env(env, tmp_path, kibana_url=KIBANA_B)
    with caplog.at_level(logging.WARNING, logger="kcr.state"):
        assert b.load() == {}  # secrets unknown, never "unchanged"
    expected = f"the record at {tmp_path / 'shared.json'} was made for {KIBANA_A}; treating secrets as unknown"
    assert expected in caplog.text
    assert "set KCR_RECORD per Kibana" in caplog.text
    with pytest.raises(StateError) as info:
        b.save(OTHER)
    text = str(info.value)
    assert KIBANA_A in text and KIBANA_B in text and "KCR_RECORD per Kibana" in text
    with pytest.raises(StateError, match="another Kibana's record"):
        b.lock("kcr apply")
    assert not (tmp_path / "shared.json.lock").exists()  # refused before the apply, lock released
    assert a.load() == RECORD  # untouched
    assert backend_from_env(env, tmp_path).load() == RECORD  # no Kibana given: no tie

    a.save({})  # an empty record of another Kibana may be taken over
    b.lock()
    b.save(OTHER)
    b.unlock()
    assert json.loads((tmp_path / "shared.json").read_text())["kibana_url"] == KIBANA_B
    assert b.load() == OTHER and a.load() == {}


def test_record_without_url_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    FileBackend(path).save(RECORD)
    assert "kibana_url" not in json.loads(path.read_text())
    backend = FileBackend(path, kibana_url=KIBANA_A)
    assert backend.load() == RECORD
    backend.save(RECORD)
    assert json.loads(path.read_text())["kibana_url"] == KIBANA_A
    FileBackend(path).save(OTHER)  # a run that knows no Kibana keeps the owner
    assert json.loads(path.read_text())["kibana_url"] == KIBANA_A


def test_legacy_default_record_is_pointed_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    backend_from_env({}, tmp_path).save(RECORD)
    backend = backend_from_env({}, tmp_path, kibana_url=KIBANA_A)
    with caplog.at_level(logging.WARNING, logger="kcr.state"):
        assert backend.load() == {}
    assert "record.json exists" in caplog.text and "record-kibana-a.test-5601.json" in caplog.text


def test_bad_kibana_url_in_record(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    path.write_text('{"format": 1, "kibana_url": 5, "connectors": {}}')
    with pytest.raises(StateError, match="kibana_url"):
        FileBackend(path, kibana_url=KIBANA_A).load()


def test_http_record_is_tied_to_its_kibana(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = TerraformHttpServer(lock_method="POST", unlock_method="DELETE", lock_path="/lock", locked_status=409)
    a = backend_from_env(GITLAB_ENV, tmp_path, transport=httpx.MockTransport(server), kibana_url=KIBANA_A)
    with locked(a, "kcr apply"):
        a.load()
        a.save(RECORD)
    assert json.loads(server.state or b"")["kcr_record"]["kibana_url"] == KIBANA_A

    b = backend_from_env(GITLAB_ENV, tmp_path, transport=httpx.MockTransport(server), kibana_url=KIBANA_B)
    with caplog.at_level(logging.WARNING, logger="kcr.state"):
        assert b.load() == {}
    assert f"was made for {KIBANA_A}; treating secrets as unknown" in caplog.text
    assert "KCR_RECORD_GITLAB_STATE" in caplog.text
    with pytest.raises(StateError, match="another Kibana's record"):
        b.lock("kcr apply")
    assert server.lock is None  # released at once
    with pytest.raises(StateError, match="KCR_RECORD_GITLAB_STATE"):
        b.save(OTHER)
    again = backend_from_env(GITLAB_ENV, tmp_path, transport=httpx.MockTransport(server), kibana_url=KIBANA_A)
    assert again.load() == RECORD
    untied = backend_from_env(GITLAB_ENV, tmp_path, transport=httpx.MockTransport(server))
    untied.save(OTHER)
    assert json.loads(server.state or b"")["kcr_record"]["kibana_url"] == KIBANA_A


def test_skip_cert_verification_is_a_go_bool(tmp_path: Path) -> None:
    env = {"KCR_RECORD_HTTP_ADDRESS": "https://127.0.0.1:1/s"}
    assert backend_from_env({**env, "KCR_RECORD_HTTP_SKIP_CERT_VERIFICATION": "T"}, tmp_path).verify is False  # type: ignore[attr-defined]
    assert backend_from_env(env, tmp_path).verify is True  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="KCR_RECORD_HTTP_SKIP_CERT_VERIFICATION"):
        backend_from_env({**env, "KCR_RECORD_HTTP_SKIP_CERT_VERIFICATION": "yes"}, tmp_path)


def test_force_unlock_removes_only_the_named_lock(tmp_path: Path) -> None:
    from reconciler.state import FileBackend

    holder = FileBackend(tmp_path / "record.json")
    holder.lock({"Operation": "kcr apply"})
    lock_id = json.loads(holder.lock_path.read_text())["ID"]
    other = FileBackend(tmp_path / "record.json")
    with pytest.raises(StateError) as err:
        other.lock()
    assert f"kcr force-unlock {lock_id}" in str(err.value)
    with pytest.raises(StateError):
        other.force_unlock("not-the-id")
    assert holder.lock_path.exists()
    other.force_unlock(lock_id)
    assert not holder.lock_path.exists()
    with pytest.raises(StateError, match="not locked"):
        other.force_unlock(lock_id)
