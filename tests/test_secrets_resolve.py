"""SecretResolver: env (with the guard), files (confined), Vault (respx against documented bodies)."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from reconciler.errors import SecretError
from reconciler.model import Settings
from reconciler.references import Reference, is_plaintext
from reconciler.secret_backends import BACKENDS, Context, Read, Unresolved
from reconciler.secrets import SecretResolver

VAULT = "http://127.0.0.1:8200"
OWNER = "default/pd (connectors/default/pd.yaml)"


def v2_body(data: dict[str, Any], version: int) -> dict[str, Any]:
    # kv-v2 "Read secret version" sample response (hashicorp/vault api-docs/secret/kv/kv-v2)
    return {"request_id": "c1f9", "lease_id": "", "renewable": False, "lease_duration": 0,
            "data": {"data": data, "metadata": {"created_time": "2018-03-22T02:24:06.945319214Z",
                                                "custom_metadata": None, "deletion_time": "",
                                                "destroyed": False, "version": version}},
            "wrap_info": None, "warnings": None, "auth": None}


def mounts_body(path: str, version: str | None) -> dict[str, Any]:
    options = {"version": version} if version else None
    return {"request_id": "m1", "data": {"accessor": "kv_1", "config": {"default_lease_ttl": 0},
                                         "description": "key/value secret storage", "local": False,
                                         "options": options, "path": path, "seal_wrap": False, "type": "kv",
                                         "uuid": "u"}}


def login_body(token: str) -> dict[str, Any]:
    return {"request_id": "l1", "lease_id": "", "renewable": False, "lease_duration": 0, "data": None,
            "auth": {"client_token": token, "accessor": "a", "policies": ["default"], "token_policies": ["default"],
                     "metadata": {"role_name": "kcr"}, "lease_duration": 1200, "renewable": True},
            "wrap_info": None, "warnings": None}


DENIED = {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}


def resolver(env: dict[str, str], tmp_path: Path, settings: Settings | None = None) -> SecretResolver:
    return SecretResolver(env, settings or Settings(), tmp_path)


# --- env and files -------------------------------------------------------------------------------


def test_env_whole_and_inside(tmp_path: Path) -> None:
    out = resolver({"PD": "abc", "TOKEN": "t0k"}, tmp_path).resolve_many(
        {OWNER: {"routingKey": "${env:PD}", "url": "https://x/${env:TOKEN}?a=$${lit}", "opt": None}})
    assert out[OWNER].payload() == {"routingKey": "abc", "url": "https://x/t0k?a=${lit}", "opt": None}
    assert out[OWNER].vault_versions == {}


@pytest.mark.parametrize(
    ("env", "template", "needle"),
    [
        ({}, "${env:MISSING}", "MISSING is not set"),
        ({"CI_JOB_TOKEN": "CANARY-job"}, "${env:CI_JOB_TOKEN}", "credential of the kcr run itself"),
        ({"KIBANA_PASSWORD": "CANARY-k"}, "${env:KIBANA_PASSWORD}", "allow_env"),
        ({"EMPTY": "  "}, "${env:EMPTY}", "blank value"),
    ],
)
def test_env_failures_name_reference_and_owner(tmp_path: Path, env: dict[str, str], template: str,
                                               needle: str) -> None:
    with pytest.raises(SecretError) as info:
        resolver(env, tmp_path).resolve_many({OWNER: {"k": template}})
    message = str(info.value)
    assert needle in message and OWNER in message
    assert "CANARY" not in message


def test_allow_env_lets_a_credential_through(tmp_path: Path) -> None:
    out = resolver({"KIBANA_HOOK": "v"}, tmp_path, Settings(allow_env=("KIBANA_HOOK",))).resolve_many(
        {OWNER: {"k": "${env:KIBANA_HOOK}"}})
    assert out[OWNER].payload() == {"k": "v"}


def test_files_confined_and_newline_stripped(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pd").write_text("from-file\n")
    outside = tmp_path.parent / f"outside-{uuid.uuid4()}"
    outside.mkdir()
    (outside / "s").write_text("CANARY-outside\n")
    (tmp_path / "link").symlink_to(outside / "s")
    r = resolver({}, tmp_path)
    assert r.resolve_many({OWNER: {"k": "${file:secrets/pd}"}})[OWNER].payload() == {"k": "from-file"}
    for template, needle in ((f"${{file:{outside / 's'}}}", "outside the repository"),
                             ("${file:link}", "outside the repository"),
                             ("${file:../x}", "does not exist"),
                             ("${file:secrets}", "not a regular file")):
        with pytest.raises(SecretError) as info:
            r.resolve_many({OWNER: {"k": template}})
        assert needle in str(info.value) and "CANARY" not in str(info.value)
    allowed = resolver({}, tmp_path, Settings(file_roots=(str(outside),)))
    assert allowed.resolve_many({OWNER: {"k": "${file:link}"}})[OWNER].payload() == {"k": "CANARY-outside"}


def test_collect_reports_every_owner(tmp_path: Path) -> None:
    resolved, errors = resolver({"A": "a"}, tmp_path).resolve_collect(
        {"one": {"k": "${env:A}"}, "two": {"k": "${env:B}", "j": "${env:C}"}})
    assert set(resolved) == {"one"}
    assert len(errors["two"]) == 2


# --- Vault ---------------------------------------------------------------------------------------


VENV = {"VAULT_ADDR": VAULT, "VAULT_TOKEN": "s.token"}


def test_vault_v2_read_once_per_secret_and_versions(tmp_path: Path) -> None:
    with respx.mock(base_url=VAULT, assert_all_called=False) as mock:
        mount = mock.get(url__regex=r"/v1/sys/internal/ui/mounts/.*").respond(200, json=mounts_body("secret/", "2"))
        latest = mock.get("/v1/secret/data/alerting/slack", params={}).respond(
            200, json=v2_body({"webhook_url": "https://hooks", "other": "o"}, 7))
        items = {f"default/c{i} (f.yaml)": {"webhookUrl": "${vault:secret/alerting/slack#webhook_url}",
                                            "o": "${vault:secret/alerting/slack#other}"} for i in range(5)}
        out = SecretResolver(VENV, Settings(), tmp_path).resolve_many(items)
    assert latest.call_count == 1  # one read for 5 connectors x 2 keys
    assert mount.call_count == 1
    first = out["default/c0 (f.yaml)"]
    assert first.payload() == {"webhookUrl": "https://hooks", "o": "o"}
    assert first.vault_versions == {"${vault:secret/alerting/slack#webhook_url}": 7,
                                    "${vault:secret/alerting/slack#other}": 7}
    request = latest.calls[0].request
    assert request.headers["X-Vault-Token"] == "s.token"
    assert request.headers["X-Vault-Request"] == "true"


def test_vault_pinned_version_and_namespace(tmp_path: Path) -> None:
    env = {**VENV, "VAULT_NAMESPACE": "ns1/"}
    with respx.mock(base_url=VAULT, assert_all_called=False) as mock:
        mock.get(url__regex=r"/v1/sys/internal/ui/mounts/.*").respond(200, json=mounts_body("kv/team-a/", "2"))
        pinned = mock.get("/v1/kv/team-a/data/pd", params={"version": "3"}).respond(200, json=v2_body({"k": "v3"}, 3))
        out = SecretResolver(env, Settings(), tmp_path).resolve_many({OWNER: {"k": "${vault:kv/team-a/pd#k@3}"}})
    assert out[OWNER].payload() == {"k": "v3"}
    assert pinned.calls[0].request.headers["X-Vault-Namespace"] == "ns1/"
    assert out[OWNER].vault_versions == {"${vault:kv/team-a/pd#k@3}": 3}


def test_vault_v1_mount(tmp_path: Path) -> None:
    with respx.mock(base_url=VAULT, assert_all_called=False) as mock:
        mock.get(url__regex=r"/v1/sys/internal/ui/mounts/.*").respond(200, json=mounts_body("legacy/", None))
        mock.get("/v1/legacy/app").respond(200, json={"auth": None, "data": {"k": "v1value", "ttl": "1h"},
                                                      "lease_duration": 3600, "lease_id": "", "renewable": False})
        r = SecretResolver(VENV, Settings(), tmp_path)
        out = r.resolve_many({OWNER: {"k": "${vault:legacy/app#k}"}})
        assert out[OWNER].payload() == {"k": "v1value"}
        assert out[OWNER].vault_versions == {}
        with pytest.raises(SecretError) as info:
            r.resolve_many({OWNER: {"k": "${vault:legacy/app#k@2}"}})
    assert "KV v1 has no versions" in str(info.value)


def test_vault_mount_fallbacks(tmp_path: Path) -> None:
    with respx.mock(base_url=VAULT, assert_all_called=False) as mock:
        mock.get(url__regex=r"/v1/sys/internal/ui/mounts/.*").respond(403, json=DENIED)
        nested = mock.get("/v1/kv/team-a/data/pd").respond(200, json=v2_body({"k": "n"}, 1))
        first = mock.get("/v1/secret/data/x/y").respond(200, json=v2_body({"k": "f"}, 2))
        old = mock.get("/v1/old/z").respond(200, json={"data": {"k": "o"}})
        r = SecretResolver(VENV, Settings(vault_mounts=("kv", "kv/team-a", "old:v1")), tmp_path)
        out = r.resolve_many({OWNER: {"a": "${vault:kv/team-a/pd#k}", "b": "${vault:secret/x/y#k}",
                                      "c": "${vault:old/z#k}"}})
    assert out[OWNER].payload() == {"a": "n", "b": "f", "c": "o"}
    assert nested.call_count == first.call_count == old.call_count == 1


@pytest.mark.parametrize(
    ("status", "body", "template", "needles"),
    [
        (403, DENIED, "${vault:secret/app#k}", ["permission denied", "'secret/app'"]),
        (404, {"errors": []}, "${vault:secret/app#k}", ["no secret at 'secret/app'"]),
        (404, {"data": {"data": None, "metadata": {"created_time": "2018-03-22T02:24:06Z",
                                                   "deletion_time": "2018-03-22T02:36:43Z",
                                                   "destroyed": False, "version": 3}}},
         "${vault:secret/app#k@3}", ["version 3 of 'secret/app' was deleted"]),
        (404, {"data": {"data": None, "metadata": {"deletion_time": "", "destroyed": True, "version": 2}}},
         "${vault:secret/app#k@2}", ["version 2 of 'secret/app' was destroyed"]),
        (200, v2_body({"right": "CANARY-value", "other": "CANARY-2"}, 4), "${vault:secret/app#wrong}",
         ["'wrong' is not in Vault secret 'secret/app' (version 4)", "its keys: other, right"]),
        (500, {"errors": ["internal error"]}, "${vault:secret/app#k}", ["HTTP 500"]),
    ],
)
def test_vault_errors(tmp_path: Path, status: int, body: dict[str, Any], template: str, needles: list[str]) -> None:
    with respx.mock(base_url=VAULT, assert_all_called=False) as mock:
        mock.get(url__regex=r"/v1/sys/internal/ui/mounts/.*").respond(200, json=mounts_body("secret/", "2"))
        mock.get(url__regex=r"/v1/secret/data/app.*").respond(status, json=body)
        with pytest.raises(SecretError) as info:
            SecretResolver(VENV, Settings(), tmp_path).resolve_many({OWNER: {"k": template}})
    message = str(info.value)
    for needle in needles:
        assert needle in message
    assert template in message and OWNER in message
    assert "CANARY" not in message


def test_approle_login(tmp_path: Path) -> None:
    env = {"VAULT_ADDR": VAULT, "VAULT_ROLE_ID": "role-1", "VAULT_SECRET_ID": "CANARY-secret-id"}
    with respx.mock(base_url=VAULT, assert_all_called=False) as mock:
        login = mock.post("/v1/auth/approle/login").respond(200, json=login_body("s.approle"))
        mock.get(url__regex=r"/v1/sys/internal/ui/mounts/.*").respond(200, json=mounts_body("secret/", "2"))
        read = mock.get("/v1/secret/data/app").respond(200, json=v2_body({"k": "v"}, 1))
        SecretResolver(env, Settings(), tmp_path).resolve_many({OWNER: {"k": "${vault:secret/app#k}"}})
    assert login.call_count == 1
    assert b'"role_id":"role-1"' in login.calls[0].request.content.replace(b" ", b"")
    assert read.calls[0].request.headers["X-Vault-Token"] == "s.approle"


def test_jwt_login_with_role_and_path(tmp_path: Path) -> None:
    env = {"VAULT_ADDR": VAULT, "VAULT_ID_TOKEN": "eyJ.jwt", "VAULT_AUTH_ROLE": "kcr", "VAULT_AUTH_PATH": "gitlab"}
    with respx.mock(base_url=VAULT, assert_all_called=False) as mock:
        login = mock.post("/v1/auth/gitlab/login").respond(200, json=login_body("s.jwt"))
        mock.get(url__regex=r"/v1/sys/internal/ui/mounts/.*").respond(200, json=mounts_body("secret/", "2"))
        read = mock.get("/v1/secret/data/app").respond(200, json=v2_body({"k": "v"}, 1))
        SecretResolver(env, Settings(), tmp_path).resolve_many({OWNER: {"k": "${vault:secret/app#k}"}})
    body = login.calls[0].request.content
    assert b"eyJ.jwt" in body and b"kcr" in body
    assert read.calls[0].request.headers["X-Vault-Token"] == "s.jwt"


def test_login_failure_and_missing_credentials(tmp_path: Path) -> None:
    env = {"VAULT_ADDR": VAULT, "VAULT_ROLE_ID": "r", "VAULT_SECRET_ID": "CANARY-bad"}
    with respx.mock(base_url=VAULT, assert_all_called=False) as mock:
        mock.post("/v1/auth/approle/login").respond(400, json={"errors": ["invalid role or secret ID"]})
        with pytest.raises(SecretError) as info:
            SecretResolver(env, Settings(), tmp_path).resolve_many({OWNER: {"k": "${vault:secret/app#k}"}})
    assert "AppRole login failed (HTTP 400: invalid role or secret ID)" in str(info.value)
    assert "CANARY" not in str(info.value)
    with pytest.raises(SecretError) as info:
        SecretResolver({"VAULT_ADDR": VAULT}, Settings(), tmp_path).resolve_many({OWNER: {"k": "${vault:s/a#k}"}})
    assert "no Vault credentials" in str(info.value)
    with pytest.raises(SecretError) as info:
        SecretResolver({}, Settings(), tmp_path).resolve_many({OWNER: {"k": "${vault:s/a#k}"}})
    assert "VAULT_ADDR is not set" in str(info.value)


def test_token_file_from_home(tmp_path: Path) -> None:
    (tmp_path / ".vault-token").write_text("s.file\n")
    with respx.mock(base_url=VAULT, assert_all_called=False) as mock:
        mock.get(url__regex=r"/v1/sys/internal/ui/mounts/.*").respond(200, json=mounts_body("secret/", "2"))
        read = mock.get("/v1/secret/data/app").respond(200, json=v2_body({"k": "v"}, 1))
        SecretResolver({"VAULT_ADDR": VAULT, "HOME": str(tmp_path)}, Settings(), tmp_path).resolve_many(
            {OWNER: {"k": "${vault:secret/app#k}"}})
    assert read.calls[0].request.headers["X-Vault-Token"] == "s.file"


def test_transport_injection_and_unreachable(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "internal/ui/mounts" in request.url.path:
            return httpx.Response(404, json={"errors": []})
        return httpx.Response(200, json=v2_body({"k": "via-transport"}, 5))

    out = SecretResolver(VENV, Settings(), tmp_path, httpx.MockTransport(handler)).resolve_many(
        {OWNER: {"k": "${vault:secret/app#k}"}})
    assert out[OWNER].payload() == {"k": "via-transport"}

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(SecretError) as info:
        SecretResolver(VENV, Settings(), tmp_path, httpx.MockTransport(down)).resolve_many(
            {OWNER: {"k": "${vault:secret/app#k}"}})
    assert "cannot reach Vault" in str(info.value)


def test_canaries_never_leak_into_errors_or_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    env = {"GOOD": canary, "VAULT_ADDR": VAULT, "VAULT_TOKEN": canary}
    with caplog.at_level(logging.DEBUG), respx.mock(base_url=VAULT, assert_all_called=False) as mock:
        mock.get(url__regex=r"/v1/sys/internal/ui/mounts/.*").respond(200, json=mounts_body("secret/", "2"))
        mock.get("/v1/secret/data/app").respond(200, json=v2_body({"k": canary, "n": {"x": canary}}, 1))
        r = SecretResolver(env, Settings(), tmp_path)
        resolved, errors = r.resolve_collect({
            "ok": {"k": "${env:GOOD}", "v": "${vault:secret/app#k}"},
            "bad": {"a": "${vault:secret/app#missing}", "b": "${vault:secret/app#n}", "c": "${env:VAULT_TOKEN}",
                    "d": "${env:NOPE}"},
        })
    assert resolved["ok"].payload()["k"] == canary
    assert len(errors["bad"]) == 4
    text = " ".join([*errors["bad"], repr(resolved), str(resolved["ok"]), caplog.text, repr(os.environ.get("X"))])
    assert canary not in text


def test_fallback_mounts_pick_the_longest_prefix_whatever_the_order(tmp_path: Path) -> None:
    """A cached shorter mount must not capture a path under a longer configured one."""
    with respx.mock(base_url=VAULT, assert_all_called=False) as mock:
        preflight = mock.get(url__regex=r"/v1/sys/internal/ui/mounts/.*").respond(403, json=DENIED)
        wide = mock.get(url__regex=r"/v1/kv/data/a\d").respond(200, json=v2_body({"k": "w"}, 1))
        nested = mock.get("/v1/kv/team-a/y").respond(200, json={"data": {"k": "v1"}})
        r = SecretResolver(VENV, Settings(vault_mounts=("kv", "kv/team-a:v1")), tmp_path)
        refs = {f"r{i}": f"${{vault:kv/a{i}#k}}" for i in range(5)}
        out = r.resolve_many({OWNER: {**refs, "z": "${vault:kv/team-a/y#k}"}})
    assert out[OWNER].payload()["z"] == "v1"
    assert nested.call_count == 1 and wide.call_count == 5
    assert preflight.call_count == 1  # refused once: not asked again for every path


@pytest.mark.parametrize("name", ["KCR_GITLAB_TOKEN", "KCR_RECORD_HTTP_PASSWORD", "KCR_FINGERPRINT_KEY"])
def test_kcr_own_credentials_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SecretError) as err:
        resolver({name: "CANARY-own-token"}, tmp_path).resolve_many({OWNER: {"k": f"${{env:{name}}}"}})
    assert "credential of the kcr run itself" in str(err.value) and "CANARY" not in str(err.value)


def test_files_in_git_or_kcr_are_refused(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("url = https://gitlab-ci-token:CANARY-job@gitlab/x.git\n")
    with pytest.raises(SecretError) as err:
        resolver({}, tmp_path).resolve_many({OWNER: {"k": "${file:.git/config}"}})
    assert ".git" in str(err.value) and "CANARY" not in str(err.value)


@pytest.mark.parametrize(("env", "needle"), [({"VAULT_CLIENT_TIMEOUT": "soon"}, "VAULT_CLIENT_TIMEOUT"),
                                             ({"VAULT_NAMESPACE": "équipe/"}, "VAULT_NAMESPACE")])
def test_bad_vault_settings_are_secret_errors(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    with pytest.raises(SecretError) as err:
        resolver({**VENV, **env}, tmp_path).resolve_many({OWNER: {"k": "${vault:secret/x#k}"}})
    assert needle in str(err.value)


def test_vault_cli_durations_are_accepted(tmp_path: Path) -> None:
    with respx.mock(base_url=VAULT, assert_all_called=False) as mock:
        mock.get(url__regex=r"/v1/sys/internal/ui/mounts/.*").respond(200, json=mounts_body("secret/", "2"))
        mock.get("/v1/secret/data/x").respond(200, json=v2_body({"k": "v"}, 1))
        out = resolver({**VENV, "VAULT_CLIENT_TIMEOUT": "60s"}, tmp_path).resolve_many(
            {OWNER: {"k": "${vault:secret/x#k}"}})
    assert out[OWNER].payload() == {"k": "v"}


def test_env_names_and_versions_reject_a_trailing_newline() -> None:
    from reconciler.references import ReferenceSyntaxError, parse_template

    for text in ("${env:A\n}", "${vault:secret/x#k@1\n}"):
        with pytest.raises(ReferenceSyntaxError):
            parse_template(text)


# --- a new backend: one module (this class) plus one registration --------------------------------


@dataclass
class DictBackend:
    """A whole backend, as a module would hold it: its scheme, how a reference is written, its target's
    syntax, and a batched read."""

    values: Mapping[str, str]
    once_per_run: bool = False
    scheme: str = "test"
    form: str = "${test:NAME}"
    reads: list[str] = field(default_factory=list)

    def problem(self, target: str, column: int) -> str | None:
        return None if target.isidentifier() else f"${{test:...}} at column {column} needs a name"

    def read(self, refs: Sequence[Reference], context: Context) -> Mapping[str, Read | Unresolved]:
        self.reads.extend(ref.target for ref in refs)
        return {ref.text: Read(self.values[ref.target], version=2) if ref.target in self.values
                else Unresolved(f"no test value named {ref.target}") for ref in refs}


def test_a_new_backend_is_one_module_and_one_registration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = DictBackend({"pd": "CANARY-from-test"})
    with pytest.raises(SecretError) as before:
        resolver({}, tmp_path).resolve_many({OWNER: {"k": "${test:pd}"}})
    assert "does not start a reference" in str(before.value)

    monkeypatch.setitem(BACKENDS, backend.scheme, backend)  # the registration

    out = resolver({"A": "a"}, tmp_path).resolve_many(
        {OWNER: {"k": "${test:pd}", "url": "https://x/${test:pd}/${env:A}"}})
    assert out[OWNER].payload() == {"k": "CANARY-from-test", "url": "https://x/CANARY-from-test/a"}
    assert out[OWNER].vault_versions == {"${test:pd}": 2}  # a backend's versions reach the digest
    assert backend.reads == ["pd"]  # one read per distinct reference
    assert not is_plaintext("${test:pd}")  # the parser everyone uses (validation, planner) knows it too
    with pytest.raises(SecretError) as failed:
        resolver({}, tmp_path).resolve_many({OWNER: {"k": "${test:missing}", "j": "${test:9}"}})
    assert f"${{test:missing}} for {OWNER}: no test value named missing" in str(failed.value)
    assert "${test:...} at column 1 needs a name" in str(failed.value)
    with pytest.raises(SecretError) as unknown:
        resolver({}, tmp_path).resolve_many({OWNER: {"k": "${aws:prod/db#password}"}})
    assert ("write ${env:NAME}, ${file:PATH}, ${vault:MOUNT/PATH#KEY} or ${test:NAME}; a literal '${' is "
            "written '$${'") in str(unknown.value)
    assert "CANARY" not in str(failed.value) + str(unknown.value)


def test_a_once_per_run_backend_is_read_once_per_resolver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = DictBackend({"pd": "v"}, once_per_run=True)
    monkeypatch.setitem(BACKENDS, backend.scheme, backend)
    r = resolver({}, tmp_path)
    for _ in range(2):  # plan, then apply, in one run
        assert r.resolve_many({OWNER: {"k": "${test:pd}"}})[OWNER].vault_versions == {"${test:pd}": 2}
    assert backend.reads == ["pd"]
    resolver({}, tmp_path).resolve_many({OWNER: {"k": "${test:pd}"}})  # a new run reads again
    assert backend.reads == ["pd", "pd"]


def test_a_backend_failing_its_whole_batch_fails_each_reference(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    class Down(DictBackend):
        def read(self, refs: Sequence[Reference], context: Context) -> Mapping[str, Read | Unresolved]:
            raise Unresolved("the test store is down")

    monkeypatch.setitem(BACKENDS, "test", Down({}))
    resolved, errors = resolver({}, tmp_path).resolve_collect(
        {"one": {"k": "${test:a}"}, "two": {"k": "${test:b}"}})
    assert resolved == {}
    assert errors == {"one": ["${test:a} for one: the test store is down"],
                      "two": ["${test:b} for two: the test store is down"]}


def test_a_new_versioned_backend_lets_the_plan_tell_changed_from_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Versions, not the scheme's name, decide: a new backend that reports versions is compared like Vault."""
    from helpers.builders import spec

    from reconciler.model import SecretDigest
    from reconciler.plan import SecretsStatus
    from reconciler.plansecrets import secrets_status

    backend = DictBackend({"pd": "v"})
    monkeypatch.setitem(BACKENDS, backend.scheme, backend)
    wanted = spec("pager", ".pagerduty", secrets={"routingKey": "${test:pd}"})
    now = SecretDigest(vault_versions={"${test:pd}": 3})
    assert secrets_status(wanted, now, SecretDigest(vault_versions={"${test:pd}": 3})) == (SecretsStatus.UNCHANGED, ())
    assert secrets_status(wanted, now, SecretDigest(vault_versions={"${test:pd}": 2})) == (
        SecretsStatus.CHANGED, ("routingKey",))
    unversioned = spec("pager", ".pagerduty", secrets={"routingKey": "${env:PD}"})
    status, _ = secrets_status(unversioned, SecretDigest(), SecretDigest(vault_versions={"x": 1}))
    assert status is SecretsStatus.UNKNOWN
