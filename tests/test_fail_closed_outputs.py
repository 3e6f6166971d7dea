"""Issue #11, fail closed on what kcr writes out: a secret echoed back HTML-, URL- or base64-encoded
is masked like the raw one, and so are the Vault login credentials a Vault echoes; a record of applied
secrets written with another KCR_FINGERPRINT_KEY makes its secrets unknown (said once) instead of
"changed" everywhere; strings from Kibana render inert in the Markdown plan; and `kcr mr-comment`
edits only a note written by its own token's user."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from helpers.cli import run_main, write_repo
from markdown_it import MarkdownIt

from reconciler import render
from reconciler.cli import main
from reconciler.errors import Problem, ReconcilerError, SecretError, StateError
from reconciler.gitlab import post_mr_comment
from reconciler.masking import Masker
from reconciler.model import RuleRef, SecretDigest, Settings, derive_connector_id
from reconciler.plan import Action, Change, FieldDiff, Guard, Plan, SecretsStatus
from reconciler.sandbox import Sandbox
from reconciler.secrets import SecretResolver
from reconciler.state import FileBackend, HttpBackend

KIBANA = "http://kibana.test"
VAULT = "http://127.0.0.1:8200"
WARNING = "the record was written with another key: secrets unknown"
ADVICE = "restore the key, or run `kcr apply --sync-secrets` to re-record"


def canary(label: str) -> str:
    return f"CANARY-{label}-{uuid.uuid4()}"


def encoded_forms(value: str) -> dict[str, str]:
    """The spellings an echoing server could print, computed here independently of the Masker."""
    raw = value.encode()
    return {
        "raw": value,
        "html": html.escape(value, quote=True),
        "html-39": html.escape(value, quote=True).replace("&#x27;", "&#39;"),
        "url": urllib.parse.quote(value, safe=""),
        "url-plus": urllib.parse.quote_plus(value),
        "base64": base64.b64encode(raw).decode(),
        "base64-unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(raw).decode(),
        "base64url-unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


def assert_no_form_of(text: str, *values: str) -> None:
    for value in values:
        for name, form in encoded_forms(value).items():
            assert form not in text, f"the {name} form of a secret leaked: {text[:600]}"


def key_check_of(key: str) -> str:
    return hmac.new(key.encode(), b"kcr-key-check-v1", hashlib.sha256).hexdigest()


# --- the Masker --------------------------------------------------------------------------------------------


ODD = "pa ss/wo'rd\"&<x>+=?%"


@pytest.mark.parametrize("form", [name for name in encoded_forms("x") if name != "raw"])
def test_masker_masks_every_encoded_form_of_a_secret(form: str) -> None:
    secret = f"{ODD}{canary('masked')}"
    echoed = encoded_forms(secret)[form]
    masked = Masker({"webhookUrl": secret})(f"Bad Request: received {echoed} (rejected)")
    assert masked == "Bad Request: received *** (rejected)"


def test_masker_masks_base64_at_any_offset_inside_a_longer_encoding() -> None:
    """Basic auth's `user:secret`, a token inside a JWT: the secret does not start the encoded text."""
    secret = canary("basic")
    mask = Masker(secret)
    for prefix in ("", "u", "us", "user:", "a-longer-user:"):
        for suffix in ("", "@", "@h", "@host"):
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                text = encode(f"{prefix}{secret}{suffix}".encode()).decode()
                assert_no_form_of(mask(text), secret)
                inner = encode(b"\0" * (len(prefix) % 3) + secret.encode()).decode()
                skip = {0: 0, 1: 2, 2: 3}[len(prefix) % 3]
                assert inner[skip:(len(prefix) % 3 + len(secret)) * 4 // 3] not in mask(text)


def test_masker_keeps_the_minimum_length_for_values_and_forms() -> None:
    short = Masker("abc")  # under the minimum: masked nowhere, in no form
    assert short("abc YWJj YWJ abc%20") == "abc YWJj YWJ abc%20"
    four = Masker("abcd", {"n": 12})
    assert four("abcd YWJjZA== plain words: a, ab, abc, 12, Y, YW") == "*** *** plain words: a, ab, abc, 12, Y, YW"


# --- Vault login errors -----------------------------------------------------------------------------------


def echoing_vault(router: respx.MockRouter, *secrets: str) -> None:
    """A Vault (or a proxy in front of it) whose login errors quote the credentials, in every form."""
    errors = [f"{name}: {form}" for s in secrets for name, form in encoded_forms(s).items()]
    for path in ("approle", "jwt", "gitlab-jwt"):
        router.post(f"{VAULT}/v1/auth/{path}/login").respond(400, json={"errors": errors})


def resolve_vault(env: dict[str, str], tmp_path: Path) -> str:
    resolver = SecretResolver({"VAULT_ADDR": VAULT, **env}, Settings(), tmp_path)
    with pytest.raises(SecretError) as info:
        resolver.resolve_many({"default/opsgenie": {"apiKey": "${vault:secret/alerting/opsgenie#api_key}"}})
    return str(info.value)


def test_vault_approle_login_error_masks_role_id_and_secret_id(tmp_path: Path) -> None:
    role_id, secret_id = canary("role-id"), canary("secret-id")
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        echoing_vault(router, role_id, secret_id)
        message = resolve_vault({"VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id}, tmp_path)
    assert "Vault AppRole login failed (HTTP 400: raw: ***; html: ***" in message
    assert "CANARY-" not in message
    assert_no_form_of(message, role_id, secret_id)


@pytest.mark.parametrize("auth_path", ["", "gitlab-jwt"])
def test_vault_jwt_login_error_masks_the_jwt(tmp_path: Path, auth_path: str) -> None:
    jwt = canary("jwt")
    env = {"VAULT_ID_TOKEN": jwt, "VAULT_AUTH_ROLE": "kcr-deploy"}
    if auth_path:
        env["VAULT_AUTH_PATH"] = auth_path
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        echoing_vault(router, jwt)
        message = resolve_vault(env, tmp_path)
    assert f"JWT ({auth_path or 'jwt'}) login failed (HTTP 400: raw: ***" in message
    assert_no_form_of(message, jwt)


def test_vault_read_error_masks_the_token(tmp_path: Path) -> None:
    """A token from VAULT_TOKEN (or a login) echoed in a refusal, the way a token lookup would be."""
    token = canary("vault-token")
    errors = [f"permission denied for {form}" for form in encoded_forms(token).values()]
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.get(f"{VAULT}/v1/sys/internal/ui/mounts/secret/alerting/opsgenie").respond(
            200, json={"data": {"path": "secret/", "type": "kv", "options": {"version": "2"}}})
        router.get(f"{VAULT}/v1/secret/data/alerting/opsgenie").respond(403, json={"errors": errors})
        message = resolve_vault({"VAULT_TOKEN": token}, tmp_path)
    assert "permission denied reading 'secret/alerting/opsgenie' from Vault: permission denied for ***" in message
    assert_no_form_of(message, token)


# --- the record's key check -------------------------------------------------------------------------------


KEY_A, KEY_B = "key-A-" + "a" * 26, "key-B-" + "b" * 26
DIGESTS = {
    "env-only": SecretDigest(hmacs={"webhookUrl": "1" * 64}),
    "vault-only": SecretDigest(hmacs={"apiKey": "2" * 64}, vault_versions={"${vault:secret/a#k}": 3}),
    "keyless": SecretDigest(),
}


def test_record_stores_the_key_check_never_the_key(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    FileBackend(path, fingerprint_key=KEY_A.encode()).save(DIGESTS)
    doc = json.loads(path.read_text())
    assert doc["key_check"] == key_check_of(KEY_A)
    assert KEY_A not in path.read_text()
    FileBackend(path).save(DIGESTS)  # a run without a key keeps the check its kept HMACs were made with
    assert json.loads(path.read_text())["key_check"] == key_check_of(KEY_A)
    fresh = tmp_path / "fresh.json"
    FileBackend(fresh).save(DIGESTS)
    assert "key_check" not in json.loads(fresh.read_text())  # absent when no key


def test_record_of_another_key_loads_its_hmacs_as_unknown(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    FileBackend(path, fingerprint_key=KEY_A.encode()).save(DIGESTS)
    same = FileBackend(path, fingerprint_key=KEY_A.encode())
    assert same.load() == DIGESTS and same.key_warning is None
    other = FileBackend(path, fingerprint_key=KEY_B.encode())
    loaded = other.load()
    # HMACs gone; Vault versions (not keyed) kept; an entry with nothing comparable left out (unknown)
    assert loaded == {"vault-only": SecretDigest(vault_versions={"${vault:secret/a#k}": 3}),
                      "keyless": SecretDigest()}
    assert other.key_warning is not None and WARNING in other.key_warning and ADVICE in other.key_warning
    assert str(path) in other.key_warning and KEY_A not in other.key_warning and KEY_B not in other.key_warning
    other.save(loaded)  # what an apply under the new key writes: its own check, no stale HMAC
    doc = json.loads(path.read_text())
    assert doc["key_check"] == key_check_of(KEY_B)
    assert all(not entry["hmacs"] for entry in doc["connectors"].values())


def test_record_without_a_key_check_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    old = {"format": 1, "connectors": {cid: d.to_json() for cid, d in DIGESTS.items()}}
    path.write_text(json.dumps(old))
    backend = FileBackend(path, fingerprint_key=KEY_B.encode())
    assert backend.load() == DIGESTS and backend.key_warning is None
    backend.save(DIGESTS)
    assert json.loads(path.read_text())["key_check"] == key_check_of(KEY_B)


def test_a_malformed_key_check_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    path.write_text(json.dumps({"format": 1, "key_check": KEY_A, "connectors": {}}))
    with pytest.raises(StateError, match="key_check"):
        FileBackend(path, fingerprint_key=KEY_A.encode()).load()


class StateServer:
    """Terraform's HTTP backend protocol, keeping every document POSTed."""

    def __init__(self) -> None:
        self.posted: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=self.posted[-1]) if self.posted else httpx.Response(204)
        if request.method == "POST":
            self.posted.append(json.loads(request.content))
        return httpx.Response(200)


def test_http_record_carries_the_key_check_and_detects_another_key() -> None:
    server = StateServer()
    address = "http://127.0.0.1:1/state"
    HttpBackend(address=address, transport=httpx.MockTransport(server), fingerprint_key=KEY_A.encode()).save(DIGESTS)
    assert server.posted[-1]["kcr_record"]["key_check"] == key_check_of(KEY_A)
    other = HttpBackend(address=address, transport=httpx.MockTransport(server), fingerprint_key=KEY_B.encode())
    assert "env-only" not in other.load()
    assert other.key_warning is not None and WARNING in other.key_warning and address in other.key_warning


# --- the record's key check, through the commands -----------------------------------------------------------


REPO = {
    "connectors/default/_space.yaml": "prune: true\n",
    "connectors/default/chat.yaml": """\
connectors:
  - id: chat
    name: Chat
    type: .slack
    secrets:
      webhookUrl: https://hooks.example.com/${env:HOOK}
  - id: pager
    name: Pager
    type: .pagerduty
    secrets:
      routingKey: ${env:ROUTING}
""",
}


def writes(sb: Sandbox) -> dict[str, int]:
    return {name: n for name, n in sb.counters.items() if name.split()[0] in ("POST", "PUT", "DELETE")}


Kcr = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def kcr_world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[Kcr, Sandbox, dict[str, str]]]:
    repo = write_repo(tmp_path / "repo", REPO)
    sb = Sandbox.from_seed({"license": "platinum", "spaces": ["default"]})
    env = {"KIBANA_URL": KIBANA, "HOOK": canary("hook"), "ROUTING": canary("routing"), "KCR_FINGERPRINT_KEY": KEY_A,
           "NO_COLOR": "1"}

    def kcr(*args: str, extra_env: dict[str, str] | None = None) -> tuple[int, str, str]:
        return run_main(capsys, [*args, "--dir", str(repo)], env={**env, **(extra_env or {})},
                        transport=sb.transport())

    yield kcr, sb, env


def test_drift_under_another_key_says_unknown_once_instead_of_alarming(kcr_world: tuple[Kcr, Sandbox, Any]) -> None:
    kcr, sb, env = kcr_world
    assert kcr("apply", "--auto-approve")[0] == 0
    assert kcr("drift")[0] == 0
    env["KCR_FINGERPRINT_KEY"] = KEY_B
    before = writes(sb)

    code, out, err = kcr("drift")
    assert code == 0, out + err  # not "2: every secret changed"
    assert err.count(WARNING) == 1 and ADVICE in err
    assert len([line for line in err.splitlines() if WARNING in line]) == 1
    assert KEY_A not in out + err and KEY_B not in out + err

    code, out, err = kcr("plan", "--format", "json")
    assert code == 0 and err.count(WARNING) == 1
    changes = json.JSONDecoder().raw_decode(out)[0]["changes"]
    assert {c["secrets"] for c in changes} == {"unknown"}
    assert "secrets unknown for 2" in kcr("plan")[1]

    code, out, err = kcr("apply", "--auto-approve")  # plans (warns) and has nothing to do: said once, not twice
    assert code == 0 and err.count(WARNING) == 1
    assert writes(sb) == before  # nothing was sent under the other key


def test_sync_secrets_re_records_under_the_new_key(kcr_world: tuple[Kcr, Sandbox, Any], tmp_path: Path) -> None:
    kcr, sb, env = kcr_world
    assert kcr("apply", "--auto-approve")[0] == 0
    env["KCR_FINGERPRINT_KEY"] = KEY_B
    before = writes(sb)
    code, out, err = kcr("apply", "--auto-approve", "--sync-secrets")
    assert code == 0, out + err
    assert err.count(WARNING) == 1
    sent = {name: n - before.get(name, 0) for name, n in writes(sb).items() if n != before.get(name, 0)}
    assert sent == {"PUT update_connector": 2}  # the two secrets pushed again; nothing created or deleted
    record = next((tmp_path / "repo" / ".kcr").glob("record*.json"))
    assert json.loads(record.read_text())["key_check"] == key_check_of(KEY_B)
    code, out, err = kcr("drift")
    assert code == 0 and WARNING not in err
    env["HOOK"] = canary("hook-rotated")  # and a real rotation shows again
    assert kcr("drift")[0] == 2


def test_apply_writes_the_key_check_on_every_save_of_an_http_record(kcr_world: tuple[Kcr, Sandbox, Any]) -> None:
    kcr, sb, _ = kcr_world
    server = StateServer()
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.route(url__startswith="http://127.0.0.1:9/state").mock(side_effect=server)
        code, out, err = kcr("apply", "--auto-approve", extra_env={"KCR_RECORD_HTTP_ADDRESS": "http://127.0.0.1:9/state"})
    assert code == 0, out + err
    assert server.posted, "the apply saved no record"
    assert all(doc["kcr_record"]["key_check"] == key_check_of(KEY_A) for doc in server.posted)
    assert set(writes(sb)) == {"POST create_connector"}  # two creates; no update, no delete
    assert {c["id"] for c in sb.connectors_in("default")} == {derive_connector_id("default", "chat"),
                                                               derive_connector_id("default", "pager")}


# --- Markdown ----------------------------------------------------------------------------------------------


EVIL = [
    "Slack](https://evil.example)",
    "[click me](https://evil.example)",
    "![pixel](https://evil.example/p.png)",
    "`code` and ``more``",
    "*strong* **bold** _em_ ~~gone~~",
    "cr\r## Heading\r\n| x | y |",
    "\\[escaped\\](x) &amp; &#60;img&#62;",
    "$`\\href{https://evil.example}{x}`$ {+ added +} [[_TOC_]]",
]
ALREADY_ESCAPED = [  # by the HTML escaping before issue #11; kept here so the new escaping keeps them inert
    "<img src=x onerror=alert(1)>",
    '<a href="https://evil.example">Slack</a>',
    "<script>alert(1)</script>",
    "a | b | c",
    "# Heading",
    "line\n# Heading\n- item\n> quote",
    "<https://evil.example>",
]
PLAIN = "plain name"


def evil_plan(s: str) -> Plan:
    """`s` in every place the Markdown view interpolates a string that Kibana or the repository supplies."""
    rule = RuleRef(id=s, name=s)
    return Plan(
        kibana_url=KIBANA,
        spaces=("default",),
        changes=(
            Change(space="default", id="c1", action=Action.UPDATE, reason=s, name=s, type=".webhook",
                   diffs=(FieldDiff(path=f"config.{s}", before=s, after="x"), FieldDiff(path="name", before=s,
                                                                                       after=None, kind="removed")),
                   secrets=SecretsStatus.CHANGED, secret_keys_changed=(s,), live_fingerprint="f" * 64),
            Change(space="default", id="c2", action=Action.DELETE, reason="not declared", name=s, type=s,
                   referenced_by_count=2, live_fingerprint="e" * 64,
                   guard=Guard(blocked=True, reasons=(s,), rules=(rule, RuleRef(id="r2", name=f"[{s}")))),
            Change(space="default", id="c3", action=Action.UNMANAGED, reason="declared nowhere", name=s, type=s),
        ),
        problems=(Problem.in_kibana("default", "c1", "warning", s),),
    )


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "br":
            self.tags.append(tag)


def rendered_tags(markdown: str) -> list[str]:
    """The HTML elements a CommonMark + GFM-tables renderer (raw HTML allowed, as GitLab does) makes."""
    parser = Tags()
    parser.feed(MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(markdown))
    return parser.tags


@pytest.mark.parametrize("s", EVIL)
def test_markdown_renders_strings_from_kibana_inert(s: str) -> None:
    """The same elements, in the same order, as the plan whose strings are plain: no link, image, raw
    HTML, code span, emphasis, heading, quote, list or extra table cell comes from the string."""
    md = render.markdown(evil_plan(s))
    assert rendered_tags(md) == rendered_tags(render.markdown(evil_plan(PLAIN)))
    assert "<img" not in md and "<script" not in md and "<a " not in md.lower()
    assert not any(line.startswith(("#", ">", "- item")) and "kcr plan" not in line and "####" not in line
                   for line in md.splitlines())


def test_markdown_renders_all_hostile_strings_inert_together() -> None:
    s = " ".join([*EVIL, *ALREADY_ESCAPED])
    md = render.markdown(evil_plan(s))
    assert rendered_tags(md) == rendered_tags(render.markdown(evil_plan(PLAIN)))
    assert "<img" not in md and "<script" not in md and "<a " not in md.lower()


def test_markdown_mentions_and_autolinks_are_broken() -> None:
    """GitLab (and GFM's autolink extension) find `@name` and URLs in the rendered text, entities
    decoded: a zero-width space keeps a name from notifying a project or becoming a link."""
    md = render.markdown(evil_plan("@all see https://evil.example or www.evil.example, mail@evil.example"))
    assert "@all" not in md and "https://" not in md and "www.evil" not in md and "mail@evil" not in md
    text = html.unescape(md)
    assert "@\u200ball" in text and "https:\u200b//evil.example" in text  # still readable, not a mention or link



@pytest.mark.parametrize("reference", ["#12", "!3", "~security", '~"on call"', "%v1.0", "$7", "&4", "group/project#5"])
def test_markdown_gitlab_references_are_broken(reference: str) -> None:
    """GitLab links `#12` and friends in rendered text and posts "mentioned in" notes on the target:
    a zero-width space after the prefix keeps a connector name from reaching another issue."""
    md = render.markdown(evil_plan(f"see {reference} now"))
    prose = html.unescape(re.sub(r"<code>.*?</code>", "", md))  # GitLab finds no reference inside code
    assert "see " in prose and reference not in prose
    assert "\u200b" in prose.split("see ", 1)[1][: len(reference) + 1]


@pytest.mark.parametrize("char", ["\x9b", "\u202e", "\u2066", "\x1b"], ids=["C1 CSI", "RLO", "LRI", "ESC"])
def test_unprintable_and_bidi_characters_never_reach_the_text_or_markdown_output(char: str) -> None:
    plan = evil_plan(f"safe{char}name")
    for out in (render.text(plan, color=False), html.unescape(render.markdown(plan))):
        assert char not in out

def test_drift_markdown_report_escapes_a_kibana_connector_name(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", REPO)
    (repo / "connectors/default/_space.yaml").write_text("prune: false\n")
    name = "[Slack](https://evil.example) <img src=x onerror=alert(1)>"
    sb = Sandbox.from_seed({"license": "platinum", "spaces": ["default"], "connectors": [
        {"id": "0f8c6a52-5d0e-4b8e-9a51-6b6372000001", "space": "default", "name": name,
         "connector_type_id": ".server-log", "config": {}, "secrets": {}}]})
    env = {"KIBANA_URL": KIBANA, "HOOK": "h" * 8, "ROUTING": "r" * 8}
    md_file = tmp_path / "drift.md"
    code = main(["drift", "--dir", str(repo), "--markdown-out", str(md_file)], env=env, transport=sb.transport())
    assert code == 2
    md = md_file.read_text()
    assert "Unmanaged connectors (1)" in md
    assert "[Slack](" not in md and "<img" not in md
    assert "&#91;Slack&#93;(https&#58;&#8203;//evil.example) &lt;img src=x onerror=alert(1)&gt;" in md


# --- kcr mr-comment ------------------------------------------------------------------------------------------


GITLAB = "http://127.0.0.1:9/api/v4"
GITLAB_ENV = {"CI_API_V4_URL": GITLAB, "CI_PROJECT_ID": "7", "CI_MERGE_REQUEST_IID": "3",
              "KCR_GITLAB_TOKEN": "glpat-" + "t" * 20}
NOTES = f"{GITLAB}/projects/7/merge_requests/3/notes"
BOT, REVIEWER = 41, 42
MARKER = "<!-- kcr-mr-comment: kcr plan (staging) -->"


def gitlab_routes(router: respx.MockRouter, notes: list[dict[str, Any]], user: httpx.Response) -> None:
    router.get(f"{GITLAB}/user").mock(return_value=user)
    router.get(NOTES).respond(200, json=notes)
    router.post(NOTES).respond(201, json={"id": 500})
    router.put(url__regex=rf"{NOTES}/\d+").respond(200, json={"id": 1})


def test_mr_comment_never_edits_a_reviewers_note_that_quotes_the_marker() -> None:
    notes = [{"id": 10, "body": f"> {MARKER}\n> this plan looks wrong", "author": {"id": REVIEWER}},
             {"id": 11, "body": f"{MARKER}\nold plan", "author": {"id": REVIEWER, "username": "project_7_bot"}}]
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        gitlab_routes(router, notes, httpx.Response(200, json={"id": BOT, "username": "project_7_bot"}))
        assert post_mr_comment("plan", "kcr plan (staging)", GITLAB_ENV) == "created"
        methods = [(call.request.method, call.request.url.path) for call in router.calls]
    assert ("POST", "/api/v4/projects/7/merge_requests/3/notes") in methods
    assert not [m for m in methods if m[0] in ("PUT", "DELETE")]  # no note of anyone else was touched


def test_mr_comment_updates_only_the_token_users_own_note() -> None:
    notes = [{"id": 10, "body": f"{MARKER}\nquoted", "author": {"id": REVIEWER}},
             {"id": 12, "body": f"{MARKER}\nold plan", "author": {"id": BOT}}]
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        gitlab_routes(router, notes, httpx.Response(200, json={"id": BOT}))
        assert post_mr_comment("plan", "kcr plan (staging)", GITLAB_ENV) == "updated"
        writes_made = [(c.request.method, c.request.url.path) for c in router.calls if c.request.method != "GET"]
    assert writes_made == [("PUT", "/api/v4/projects/7/merge_requests/3/notes/12")]


@pytest.mark.parametrize("user", [httpx.Response(401, json={"message": "401 Unauthorized"}),
                                  httpx.Response(200, text="<html>sign in</html>"),
                                  httpx.Response(200, json={"username": "no-id"}),
                                  httpx.Response(200, json={"id": True})])
def test_mr_comment_refuses_when_the_token_user_is_unknown(user: httpx.Response) -> None:
    notes = [{"id": 12, "body": f"{MARKER}\nold plan", "author": {"id": BOT}}]
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        gitlab_routes(router, notes, user)
        with pytest.raises(ReconcilerError) as info:
            post_mr_comment("plan", "kcr plan (staging)", GITLAB_ENV)
        methods = [c.request.method for c in router.calls]
    assert "which user KCR_GITLAB_TOKEN belongs to" in str(info.value) and "posted nothing" in str(info.value)
    assert GITLAB_ENV["KCR_GITLAB_TOKEN"] not in str(info.value)
    assert methods == ["GET"]  # the user lookup only: no notes listed, nothing posted or edited


def test_mr_comment_refusal_through_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    md = tmp_path / "plan.md"
    md.write_text(render.markdown(evil_plan(PLAIN)))
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        gitlab_routes(router, [], httpx.Response(403, json={"message": "403 Forbidden"}))
        code = main(["mr-comment", str(md)], env=GITLAB_ENV)
        assert [c.request.method for c in router.calls] == ["GET"]
    assert code == 1
    assert "posted nothing" in capsys.readouterr().err


def test_mr_comment_title_cannot_close_the_marker_or_inject_markdown() -> None:
    title = "staging --> [click](https://evil.example)\n# x"
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        gitlab_routes(router, [], httpx.Response(200, json={"id": BOT}))
        post_mr_comment("<!-- kcr-plan -->\n### kcr plan\n\nbody", title, GITLAB_ENV)
        body = json.loads(next(c.request for c in router.calls if c.request.method == "POST").content)["body"]
    first = body.splitlines()[0]
    assert first.startswith("<!-- kcr-mr-comment: ") and first.count("-->") == 1 and first.endswith("-->")
    assert [line for line in body.splitlines() if line.startswith("#")] == [
        "### staging --&gt; &#91;click&#93;(https&#58;&#8203;//evil.example)<br>&#35; x"]


@pytest.mark.parametrize(
    "echo",
    ['{"url":"https:\\/\\/hooks.example\\/T0\\/B1\\/CANARYslash"}',
     "https:&#x2F;&#x2F;hooks.example&#x2F;T0&#x2F;B1&#x2F;CANARYslash",
     "https:&#47;&#47;hooks.example&#47;T0&#47;B1&#47;CANARYslash"],
    ids=["JSON with escaped slashes", "HTML hex slash entity", "HTML decimal slash entity"],
)
def test_masker_masks_slash_escaping_encoders(echo: str) -> None:
    assert "CANARYslash" not in Masker("https://hooks.example/T0/B1/CANARYslash")(echo)
