"""Secret canaries (SPEC §11): every command runs with unique `CANARY-<uuid>` secret values — in
environment variables (whole and inside a larger string), in a `${file:..}` file, in Vault answers
(respx on a loopback Vault URL) — and with canary credentials (the Kibana API key, the Vault token).
No canary may reach stdout, stderr, the logs (debug included), an exception message, or any file kcr
writes (plan, Markdown, GitLab report, record, exported files). Where apply runs, the canaries must
have reached the sandbox's store, so these tests fail if secrets silently stop flowing.

In-process runs go through `reconciler.cli.main(argv, env, transport)`; a few run `python -m
reconciler` against a loopback sandbox server for the real stdout/stderr of a process."""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from helpers import cli
from helpers.cli import kcr_process, write_repo

from reconciler.errors import ReconcilerError
from reconciler.model import Settings, derive_connector_id
from reconciler.sandbox import Sandbox
from reconciler.sandbox.server import running
from reconciler.secrets import SecretResolver

KIBANA = "http://kibana.test"
VAULT = "http://127.0.0.1:8200"


def _canary(label: str) -> str:
    return f"CANARY-{label}-{uuid.uuid4()}"


SLACK_PART = _canary("slack-token")  # inside a larger string: https://hooks.example.com/${env:..}
TEAMS_URL = f"https://teams.example.com/{_canary('teams')}"  # a whole value
FILE_SECRET = _canary("file")
VAULT_SECRET = _canary("vault")
VAULT_OTHER = _canary("vault-other")  # another key of the same Vault secret, never asked for
API_KEY = _canary("kibana-api-key")
VAULT_TOKEN = _canary("vault-token")
FINGERPRINT_KEY = _canary("fingerprint-key")
CANARIES = (SLACK_PART, TEAMS_URL, FILE_SECRET, VAULT_SECRET, VAULT_OTHER, API_KEY, VAULT_TOKEN, FINGERPRINT_KEY)
MARKERS = ("CANARY-",)

REPO: dict[str, str] = {
    "connectors/default/_space.yaml": "prune: true\n",
    "connectors/default/chat.yaml": """\
connectors:
  - id: slack-main
    name: Slack main
    type: .slack
    secrets:
      webhookUrl: https://hooks.example.com/${env:SLACK_TOKEN}
  - id: teams
    name: Teams
    type: .teams
    secrets:
      webhookUrl: ${env:TEAMS_URL}
""",
    "connectors/default/paging.yaml": """\
connectors:
  - id: pagerduty
    name: PagerDuty
    type: .pagerduty
    secrets:
      routingKey: ${file:secrets/routing-key.txt}
  - id: opsgenie
    name: Opsgenie
    type: .opsgenie
    config:
      apiUrl: https://api.opsgenie.com
    secrets:
      apiKey: ${vault:secret/alerting/opsgenie#api_key}
""",
    "connectors/ops/index.yaml": """\
connectors:
  - id: history
    name: History
    type: .index
    config:
      index: ops-history
""",
}
SECRET_INPUTS = ("secrets/routing-key.txt",)

SLACK_ID = derive_connector_id("default", "slack-main")
TEAMS_ID = derive_connector_id("default", "teams")
PD_ID = derive_connector_id("default", "pagerduty")
OG_ID = derive_connector_id("default", "opsgenie")


def seed(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"license": "platinum", "spaces": ["default", "ops"], "auth": {"api_keys": [API_KEY]}}
    base.update(extra)
    return base


@dataclass
class World(cli.World):
    tmp: Path  # everything kcr may write is under it


def _vault_routes(router: respx.MockRouter, status: int = 200, data: dict[str, Any] | None = None) -> None:
    router.get(f"{VAULT}/v1/sys/internal/ui/mounts/secret/alerting/opsgenie").respond(
        200, json={"data": {"path": "secret/", "type": "kv", "options": {"version": "2"}}})
    if status == 200:
        body = {"data": {"data": data if data is not None else {"api_key": VAULT_SECRET, "other": VAULT_OTHER},
                         "metadata": {"version": 3}}}
        router.get(f"{VAULT}/v1/secret/data/alerting/opsgenie").respond(200, json=body)
    elif status == 404:
        router.get(f"{VAULT}/v1/secret/data/alerting/opsgenie").respond(404, json={"errors": []})
    else:
        router.get(f"{VAULT}/v1/secret/data/alerting/opsgenie").respond(status, json={"errors": ["permission denied"]})


@pytest.fixture()
def vault() -> Iterator[respx.MockRouter]:
    """Vault on a loopback URL, answered by respx; the sandbox transport is not httpcore, so it is untouched."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        _vault_routes(router)
        yield router


def _env(**extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "NO_COLOR": "1",
        "KIBANA_URL": KIBANA, "KIBANA_API_KEY": API_KEY, "KCR_FINGERPRINT_KEY": FINGERPRINT_KEY,
        "SLACK_TOKEN": SLACK_PART, "TEAMS_URL": TEAMS_URL,
        "VAULT_ADDR": VAULT, "VAULT_TOKEN": VAULT_TOKEN,
    }
    env.update(extra)
    return env


@pytest.fixture()
def world(tmp_path: Path, vault: respx.MockRouter, capsys: pytest.CaptureFixture[str]) -> World:
    repo = write_repo(tmp_path / "repo", {**REPO, SECRET_INPUTS[0]: FILE_SECRET + "\n"})
    return World(repo, _env(), Sandbox.from_seed(seed()), capsys, tmp=tmp_path)


def assert_clean(*texts: str) -> None:
    for text in texts:
        for marker in MARKERS:
            assert marker not in text, f"a canary leaked:\n{text[max(0, text.find(marker) - 300):][:600]}"
    for text in texts:
        assert "Traceback" not in text, text


def assert_files_clean(w: World) -> list[Path]:
    """Every file under tmp that is not an input of the test (the repo's YAML, the secret file)."""
    inputs = {w.repo / rel for rel in (*REPO, *SECRET_INPUTS)}
    checked = []
    for path in w.tmp.rglob("*"):
        if not path.is_file() or path in inputs:
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for marker in MARKERS:
            assert marker not in text, f"a canary leaked into {path}"
        checked.append(path)
    return checked


def run(w: World, caplog: pytest.LogCaptureFixture, *args: str,
        transport: httpx.BaseTransport | None = None) -> tuple[int, str]:
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    code, out, err = w.kcr(*args, transport=transport)
    assert_clean(out, err, caplog.text)
    assert_files_clean(w)
    return code, out + err


def assert_secrets_reached(sb: Sandbox) -> None:
    stored = {c["id"]: c["secrets"] for c in sb.connectors_in("default")}
    assert stored[SLACK_ID] == {"webhookUrl": f"https://hooks.example.com/{SLACK_PART}"}
    assert stored[TEAMS_ID] == {"webhookUrl": TEAMS_URL}
    assert stored[PD_ID] == {"routingKey": FILE_SECRET}
    assert stored[OG_ID] == {"apiKey": VAULT_SECRET}


Run = Callable[..., tuple[int, str]]


@pytest.fixture()
def kcr(world: World, caplog: pytest.LogCaptureFixture) -> Run:
    def go(*args: str, transport: httpx.BaseTransport | None = None) -> tuple[int, str]:
        return run(world, caplog, *args, transport=transport)

    return go


# --- offline and planning --------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--resolve-secrets"], ["--format", "json"],
                                   ["--resolve-secrets", "--format", "json", "-vv"]])
def test_validate(kcr: Run, world: World, vault: respx.MockRouter, extra: list[str]) -> None:
    code, out = kcr("validate", *extra)
    assert code == 0, out
    assert ("secrets resolved" in out or '"secrets_resolved": true' in out) == ("--resolve-secrets" in extra)
    assert vault.calls.call_count == (2 if "--resolve-secrets" in extra else 0)
    assert world.sb.counters["total"] == 0


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_plan_every_format_and_report_files(kcr: Run, world: World, fmt: str) -> None:
    out_dir = world.tmp / "out"
    code, out = kcr("plan", "-vv", "--format", fmt, "--detailed-exitcode", "--out", str(out_dir / "plan.json"),
                    "--markdown-out", str(out_dir / "plan.md"), "--gitlab-report", str(out_dir / "tf.json"))
    assert code == 2, out
    assert json.loads((out_dir / "tf.json").read_text())["create"] == 5
    saved = json.loads((out_dir / "plan.json").read_text())
    assert {c["id"] for c in saved["changes"]} >= {SLACK_ID, TEAMS_ID, PD_ID, OG_ID}
    assert (out_dir / "plan.md").stat().st_size > 0
    assert world.sb.connectors_in("default") == []  # planning changes nothing


def test_plan_without_fingerprint_key_and_sync_secrets(kcr: Run, world: World) -> None:
    del world.env["KCR_FINGERPRINT_KEY"]
    code, out = kcr("plan", "--sync-secrets", "--format", "json")
    assert code == 0, out
    assert json.JSONDecoder().raw_decode(out)[0]["summary"]["create"] == 5


# --- apply, drift, export, test, types -------------------------------------------------------------------


def test_apply_saved_plan_then_drift_export_test(kcr: Run, world: World) -> None:
    plan_file = world.tmp / "plan.json"
    assert kcr("plan", "--out", str(plan_file))[0] == 0
    code, out = kcr("apply", str(plan_file), "-vv")
    assert code == 0, out
    assert_secrets_reached(world.sb)
    assert list((world.repo / ".kcr").glob("record*.json"))  # checked for canaries by assert_files_clean

    assert kcr("drift", "-vv")[0] == 0
    for fmt in ("json", "markdown"):
        assert kcr("drift", "--format", fmt, "--markdown-out", str(world.tmp / "drift.md"),
                   "--gitlab-report", str(world.tmp / "drift.json"))[0] == 0
    # A new secret value: the record (HMAC) says "changed", still without any value shown.
    world.env["TEAMS_URL"] = f"https://teams.example.com/{_canary('teams-rotated')}"
    code, out = kcr("drift", "--format", "json")
    assert code == 2, out
    assert json.JSONDecoder().raw_decode(out)[0]["summary"]["update"] == 1

    code, out = kcr("export", "--out-dir", str(world.tmp / "exported"), "-vv")
    assert code == 0, out
    assert list((world.tmp / "exported").rglob("*.yaml"))

    code, out = kcr("test", SLACK_ID, "--params", json.dumps({"message": "hello"}), "-vv")
    assert code == 0, out
    assert world.sb.executions[-1]["connector_id"] == SLACK_ID

    code, out = kcr("types", "--live", "--format", "json", "-vv")
    assert code == 0
    rows, _ = json.JSONDecoder().raw_decode(out)  # stdout's JSON; -vv's request log follows on stderr
    assert any(row["id"] == ".slack" and row["enabled"] for row in rows)


def test_apply_auto_approve_and_sync_secrets(kcr: Run, world: World) -> None:
    code, out = kcr("apply", "--auto-approve", "-vv")
    assert code == 0, out
    assert_secrets_reached(world.sb)
    code, out = kcr("apply", "--auto-approve", "--sync-secrets", "--format", "json")
    assert code == 0, out
    assert_secrets_reached(world.sb)


# --- error paths -----------------------------------------------------------------------------------------


def test_bad_input_in_a_secret_bearing_repo(kcr: Run, world: World) -> None:
    (world.repo / "connectors/default/broken.yaml").write_text("connectors:\n  - id: [unclosed\n")
    for args in (["validate"], ["validate", "--resolve-secrets", "-vv"], ["plan", "-vv"], ["apply", "--auto-approve"]):
        code, out = kcr(*args)
        assert code == 1, (args, out)
        assert "connectors/default/broken.yaml:" in out
    assert world.sb.counters["total"] == 0


def test_licence_too_low_kibana_403(kcr: Run, world: World) -> None:
    plan_file = world.tmp / "plan.json"
    assert kcr("plan", "--out", str(plan_file))[0] == 0
    basic = Sandbox.from_seed(seed(license="basic"))
    code, out = kcr("apply", str(plan_file), "-vv", transport=basic.transport())
    assert code == 1, out
    assert "licen" in out.lower()
    assert basic.connectors_in("default") == [c for c in basic.connectors_in("default") if c["connector_type_id"]
                                              not in (".slack", ".teams", ".pagerduty", ".opsgenie")]
    # The plan itself, made against the basic licence, reports the problem before any write.
    code, out = kcr("plan", "-vv", transport=basic.transport())
    assert code == 1, out


def test_allowed_hosts_refusal_quotes_the_url(kcr: Run, world: World) -> None:
    """Kibana's allowlist message quotes the target URL, i.e. the secret webhook: it must be masked."""
    strict = Sandbox.from_seed(seed(allowed_hosts=["api.opsgenie.com", "events.pagerduty.com"]))
    code, out = kcr("apply", "--auto-approve", "-vv", transport=strict.transport())
    assert code == 1, out
    assert "allowedHosts" in out or "allowed" in out.lower()
    assert {c["id"] for c in strict.connectors_in("default")} >= {PD_ID, OG_ID}


def _delegating(sb: Sandbox, write: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    inner = sb.transport()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method in ("POST", "PUT") and "/_execute" not in request.url.path \
                and "/api/actions/connector/" in request.url.path:
            return write(request)
        return inner.handle_request(request)

    return httpx.MockTransport(handler)


def test_kibana_500_everywhere(kcr: Run, world: World) -> None:
    broken = httpx.MockTransport(lambda r: httpx.Response(500, json={"statusCode": 500, "error": "Internal Server "
                                                                     "Error", "message": "boom"}))
    for args in (["plan", "-vv"], ["apply", "--auto-approve"], ["drift"], ["export", "--out-dir", "x"],
                 ["test", SLACK_ID], ["types", "--live"]):
        code, out = kcr(*args, transport=broken)
        assert code == 1, (args, out)
        assert "500" in out


def test_kibana_500_on_writes(kcr: Run, world: World) -> None:
    failing = _delegating(world.sb, lambda r: httpx.Response(500, json={"statusCode": 500, "message": "boom"}))
    code, out = kcr("apply", "--auto-approve", "-vv", transport=failing)
    assert code == 1, out


@pytest.mark.parametrize("shape", ["json-message", "plain-text", "error-field"])
def test_kibana_echoing_the_request_body(kcr: Run, world: World, shape: str) -> None:
    """A Kibana (or a proxy in front of it) that quotes the whole request body in its error."""

    echoed: list[str] = []

    def echo(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        echoed.append(body)
        if shape == "json-message":
            return httpx.Response(400, json={"statusCode": 400, "error": "Bad Request", "message": f"bad: {body}"})
        if shape == "error-field":
            return httpx.Response(400, json={"statusCode": 400, "error": f"bad: {body}"})
        return httpx.Response(400, text=f"bad request {body}")

    code, out = kcr("apply", "--auto-approve", "-vv", transport=_delegating(world.sb, echo))
    assert code == 1, out
    assert "400" in out
    assert sum("CANARY-" in body for body in echoed) == 4  # the secrets really were sent, and echoed


@pytest.mark.parametrize("status", [403, 404, 500])
def test_vault_errors(kcr: Run, world: World, vault: respx.MockRouter, status: int) -> None:
    vault.routes.clear()
    _vault_routes(vault, status=status)
    for args in (["validate", "--resolve-secrets"], ["plan", "-vv"], ["apply", "--auto-approve"]):
        code, out = kcr(*args)
        assert code == 1, (args, out)
        assert "${vault:secret/alerting/opsgenie#api_key}" in out
        assert "default/opsgenie" in out
    assert world.sb.counters["total"] == 0  # secrets resolve before any request to Kibana


@pytest.mark.parametrize("data", [{"other": VAULT_OTHER}, {"api_key": {"nested": VAULT_SECRET}}, {"api_key": "  "}])
def test_vault_key_missing_or_not_a_string(kcr: Run, world: World, vault: respx.MockRouter,
                                           data: dict[str, Any]) -> None:
    vault.routes.clear()
    _vault_routes(vault, data=data)
    code, out = kcr("plan")
    assert code == 1, out
    assert "api_key" in out or "blank" in out


def test_missing_env_and_file(kcr: Run, world: World) -> None:
    del world.env["TEAMS_URL"]
    (world.repo / SECRET_INPUTS[0]).unlink()
    code, out = kcr("plan", "-vv")
    assert code == 1, out
    assert "TEAMS_URL" in out and "routing-key.txt" in out
    assert world.sb.counters["total"] == 0


def test_exception_texts_and_reprs(world: World) -> None:
    """What the CLI would print comes from these: the error and the resolved values' repr."""
    resolver = SecretResolver(world.env, Settings(), world.repo)
    resolved = resolver.resolve_many({"a": {"webhookUrl": "https://hooks.example.com/${env:SLACK_TOKEN}"},
                                      "b": {"k": "${file:secrets/routing-key.txt}"},
                                      "c": {"k": "${vault:secret/alerting/opsgenie#api_key}"}})
    texts = [repr(resolved), str(resolved), *(repr(r) for r in resolved.values()),
             *(f"{v}" for r in resolved.values() for v in r.values.values())]
    assert_clean(*texts)
    assert resolved["c"].payload() == {"k": VAULT_SECRET}
    with pytest.raises(ReconcilerError) as info:
        resolver.resolve_many({"a": {"x": "${env:NOPE}"}, "c": {"k": "${vault:secret/alerting/opsgenie#other_key}"}})
    assert_clean(str(info.value), repr(info.value))
    assert "NOPE" in str(info.value)


# --- real processes --------------------------------------------------------------------------------------


def test_subprocess_commands(tmp_path: Path) -> None:
    """A real process's stdout and stderr, against a loopback sandbox server (no Vault here)."""
    files = {rel: text.split("  - id: opsgenie")[0] if rel.endswith("paging.yaml") else text
             for rel, text in REPO.items()}
    repo = write_repo(tmp_path / "repo", {**files, SECRET_INPUTS[0]: FILE_SECRET + "\n"})
    sb = Sandbox.from_seed(seed())
    with running(sb) as url:
        env = _env(KIBANA_URL=url)
        env.pop("VAULT_ADDR")

        def kcr(*args: str, expect: int = 0) -> str:
            proc = kcr_process(repo, env, *args, secrets=MARKERS)
            assert_clean(proc.stdout, proc.stderr)
            assert proc.returncode == expect, proc.stdout + proc.stderr
            return proc.stdout + proc.stderr

        kcr("validate", "--resolve-secrets", "-vv")
        kcr("plan", "-vv", "--out", "plan.json", "--markdown-out", "plan.md", "--gitlab-report", "tf.json")
        kcr("plan", "--format", "json")
        kcr("apply", "plan.json", "-vv")
        stored = {c["id"]: c["secrets"] for c in sb.connectors_in("default")}
        assert stored[SLACK_ID] == {"webhookUrl": f"https://hooks.example.com/{SLACK_PART}"}
        assert stored[PD_ID] == {"routingKey": FILE_SECRET}
        kcr("drift", "-vv")
        kcr("export", "--out-dir", str(tmp_path / "exported"), "-vv")
        kcr("test", TEAMS_ID, "-vv")
        kcr("types", "--live", "-vv")
        env.pop("TEAMS_URL")
        out = kcr("plan", "-vv", expect=1)
        assert "TEAMS_URL" in out
    inputs = {repo / rel for rel in (*REPO, *SECRET_INPUTS)}
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p not in inputs]
    assert len(written) >= 4
    for path in written:
        assert "CANARY-" not in path.read_text(errors="replace"), path


@pytest.mark.parametrize("odd", ['quote"d', "back\\slash", "uni\u00e9code", "tab\there"])
def test_echoed_secret_with_characters_json_escapes(kcr: Run, world: World, odd: str) -> None:
    """An echoed body holds each secret JSON-encoded: masking must match that form too."""
    (world.repo / SECRET_INPUTS[0]).write_text(f"{odd}-{FILE_SECRET}\n")

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"statusCode": 400, "error": "Bad Request",
                                         "message": f"bad: {request.content.decode()}"})

    code, out = kcr("apply", "--auto-approve", transport=_delegating(world.sb, echo))
    assert code == 1, out
    assert "bad: {" in out and "routingKey" in out, out


# --- encoded echoes and Vault login errors (issue #11) ---------------------------------------------------


def _encodings(value: str) -> dict[str, str]:
    """How a proxy or an error page could echo a value, computed here, not with kcr's Masker."""
    raw = value.encode()
    return {
        "html": html.escape(value, quote=True), "html-39": html.escape(value, quote=True).replace("&#x27;", "&#39;"),
        "url": urllib.parse.quote(value, safe=""), "url-plus": urllib.parse.quote_plus(value),
        "base64": base64.b64encode(raw).decode(), "base64-unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(raw).decode(),
        "base64url-unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


def _base64_cores(value: str) -> list[str]:
    """The base64 characters of `value` alone, at each byte offset it may start at in a longer text."""
    raw = value.encode()
    return [base64.b64encode(b"\0" * k + raw).decode()[skip:(k + len(raw)) * 4 // 3]
            for k, skip in ((0, 0), (1, 2), (2, 3))]


def assert_no_encoded_canary(w: World, text: str, *values: str) -> None:
    """No encoded form of any value in the output or in any file kcr wrote."""
    inputs = {w.repo / rel for rel in (*REPO, *SECRET_INPUTS)}
    files = [p.read_text(errors="replace") for p in w.tmp.rglob("*")
             if p.is_file() and p not in inputs]
    for value in values:
        forms = [*_encodings(value).items(), *(("base64 at an offset", f) for f in _base64_cores(value))]
        for name, form in forms:
            assert form not in text, f"the {name} form of a canary leaked: {text[:600]}"
            assert not any(form in f for f in files), f"the {name} form of a canary leaked into a file"


ENCODINGS = ("html", "url", "url-plus", "base64", "base64url-unpadded")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("what", ["each secret", "whole body"])
def test_kibana_echoing_secrets_encoded(kcr: Run, world: World, encoding: str, what: str) -> None:
    """A Kibana (or a proxy, an error page) that quotes the secrets it received HTML-escaped, URL-encoded
    or in base64: each value on its own, or the whole request body encoded at once. The file secret
    holds characters that HTML, URLs and JSON each escape, so no encoding equals the raw value."""
    odd = f"o'dd \"&<>+/ {FILE_SECRET}"
    (world.repo / SECRET_INPUTS[0]).write_text(odd + "\n")
    echoed: list[str] = []

    def echo(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        secrets = json.loads(body).get("secrets") or {}
        echoed.extend(str(v) for v in secrets.values())
        quoted = [_encodings(body)[encoding]] if what == "whole body" else \
            [_encodings(str(v))[encoding] for v in secrets.values()]
        return httpx.Response(400, json={"statusCode": 400, "error": "Bad Request",
                                         "message": f"bad request: {' '.join(quoted)}"})

    code, out = kcr("apply", "--auto-approve", "-vv", transport=_delegating(world.sb, echo))
    assert code == 1, out
    assert "bad request: ***" in out or "bad request: " in out
    assert sum("CANARY-" in v for v in echoed) == 4  # the secrets were sent, and echoed
    assert odd in echoed
    assert_no_encoded_canary(world, out, SLACK_PART, TEAMS_URL, FILE_SECRET, VAULT_SECRET,
                             f"https://hooks.example.com/{SLACK_PART}", odd, json.dumps(odd)[1:-1])


ROLE_ID, SECRET_ID, JWT = _canary("role-id"), _canary("secret-id"), _canary("jwt")


@pytest.mark.parametrize("method", ["approle", "jwt"])
def test_vault_login_errors_echoing_the_credentials(kcr: Run, world: World, vault: respx.MockRouter,
                                                    method: str) -> None:
    """A Vault whose login refusal quotes the credentials it was given, raw and encoded."""
    del world.env["VAULT_TOKEN"]
    if method == "approle":
        world.env.update(VAULT_ROLE_ID=ROLE_ID, VAULT_SECRET_ID=SECRET_ID)
        sent = (ROLE_ID, SECRET_ID)
    else:
        world.env.update(VAULT_ID_TOKEN=JWT, VAULT_AUTH_ROLE="kcr")
        sent = (JWT,)
    errors = [f"invalid credential {form}" for value in sent for form in (value, *_encodings(value).values())]
    vault.post(f"{VAULT}/v1/auth/{method}/login").respond(400, json={"errors": errors})
    for args in (["validate", "--resolve-secrets", "-vv"], ["plan", "-vv"], ["apply", "--auto-approve", "-vv"]):
        code, out = kcr(*args)
        assert code == 1, (args, out)
        assert "login failed (HTTP 400: invalid credential ***" in out
        assert_no_encoded_canary(world, out, *sent)
    assert world.sb.counters["total"] == 0  # nothing reached Kibana
    assert vault.calls.call_count >= 3
