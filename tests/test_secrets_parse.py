"""Reference syntax, the Secret type, ResolvedSecrets and the exfiltration guard (no I/O)."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import logging
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.masking import Secret
from reconciler.model import Settings
from reconciler.references import (
    Reference,
    ReferenceSyntaxError,
    Template,
    is_plaintext,
    parse_template,
    references_in,
)
from reconciler.secret_backends.guard import RUN_CREDENTIALS, guard_refusal
from reconciler.secret_backends.vault import VaultTarget, vault_target
from reconciler.secrets import ResolvedSecrets


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("${env:TOKEN}", (Reference("env", "TOKEN"),)),
        ("https://x/${env:TOKEN}/y", ("https://x/", Reference("env", "TOKEN"), "/y")),
        ("${file:/run/secrets/pd}", (Reference("file", "/run/secrets/pd"),)),
        ("${vault:secret/alerting/slack#webhook_url}", (Reference("vault", "secret/alerting/slack#webhook_url"),)),
        ("${vault:kv/team-a/pd#key@12}", (Reference("vault", "kv/team-a/pd#key@12"),)),
        ("$${env:X}", ("${env:X}",)),
        ("cost $5 and $$", ("cost $5 and $$",)),
        ("a$${b}${env:C}", ("a${b}", Reference("env", "C"))),
        ("", ("",)),
    ],
)
def test_parse(text: str, parts: tuple[object, ...]) -> None:
    assert parse_template(text).parts == parts


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("${env:1BAD}", "variable name"),
        ("${env:}", "variable name"),
        ("${nope:x}", "does not start a reference"),
        ("${TOKEN}", "does not start a reference"),
        ("${env:A", "never closed"),
        ("${file:}", "needs a path"),
        ("${vault:secret#key}", "MOUNT/PATH"),
        ("${vault:secret/x}", "after '#'"),
        ("${vault:secret//x#k}", "non-empty segments"),
        ("${vault:secret/../x#k}", "'..'"),
        ("${vault:secret/x#}", "exactly one key"),
        ("${vault:production/db#password@ops}", "after @ comes a version number"),
        ("${vault:production/db/password@ops}", "the mount is the first path segment"),
        ("${vault:secret/x#k@0}", "start at 1"),
        ("${vault:secret/x#k@v2}", "digits only"),
        ("${env:${env:X}}", "nested"),
    ],
)
def test_syntax_errors(text: str, needle: str) -> None:
    with pytest.raises(ReferenceSyntaxError) as info:
        parse_template(text)
    assert needle in str(info.value)


def test_vault_target_splits_path_key_and_version() -> None:
    assert vault_target("secret/alerting/slack#webhook_url") == VaultTarget("secret/alerting/slack", "webhook_url")
    assert vault_target("kv/team-a/pd#key@12") == VaultTarget("kv/team-a/pd", "key", 12)


def test_unknown_scheme_lists_the_registered_ones() -> None:
    with pytest.raises(ReferenceSyntaxError) as info:
        parse_template("x ${aws:prod/db#password}")
    assert str(info.value) == ("'${' at column 3 does not start a reference: write ${env:NAME}, ${file:PATH} or "
                               "${vault:MOUNT/PATH#KEY}; a literal '${' is written '$${'")


def test_syntax_error_never_repeats_the_string() -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    for text in (f"${{{canary}", f"${{x:{canary}}}", f"{canary}${{env:"):
        with pytest.raises(ReferenceSyntaxError) as info:
            parse_template(text)
        assert canary not in str(info.value)


def test_render_and_helpers() -> None:
    template = parse_template("https://h/${env:A}?k=${vault:s/p#k}")
    assert template.render({"${env:A}": "1", "${vault:s/p#k}": "2"}) == "https://h/1?k=2"
    assert not template.is_whole
    assert parse_template("${env:A}").is_whole
    assert [r.text for r in references_in({"a": ["${env:A}", {"b": "x ${file:f}"}], "n": None})] == [
        "${env:A}", "${file:f}"]
    assert is_plaintext("hunter2") and is_plaintext(42) and is_plaintext("$${env:A}")
    assert not is_plaintext("${env:A}") and not is_plaintext(None) and not is_plaintext("${env:")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("${}:#@/envfilvault.AZ_09 \\")) | st.characters(), max_size=60))
def test_any_text_parses_or_raises_syntax_error(text: str) -> None:
    try:
        template = parse_template(text)
    except ReferenceSyntaxError:
        return
    assert isinstance(template, Template)
    # rendering each reference as its own text gives back the input, with $${ escapes undone
    rendered = template.render({r.text: r.text for r in template.references})
    assert rendered.replace("${", "") == text.replace("$${", "${").replace("${", "")


def test_guard() -> None:
    plain = Settings()
    for name in ("CI_JOB_TOKEN", "CI_JOB_JWT_V2", "VAULT_TOKEN", "VAULT_SECRET_ID", "VAULT_ID_TOKEN",
                 "KIBANA_API_KEY", "ELASTICSEARCH_PASSWORD", "KCR_FINGERPRINT_KEY"):
        refusal = guard_refusal(name, plain)
        assert refusal is not None and "allow_env" in refusal and name in refusal
    assert guard_refusal("MY_JWT", plain, jwt_var="MY_JWT") is not None
    assert guard_refusal("PAGERDUTY_KEY", plain) is None
    assert guard_refusal("KIBANA_WEBHOOK", Settings(allow_env=("KIBANA_WEB*",))) is None


@pytest.mark.parametrize("name", ["CI_JOB_TOKEN", "CI_JOB_TOKENS", "XCI_JOB_TOKEN", "CI_JOB_JWT", "CI_JOB_JWTX",
                                  "CI_JOB_JWT_", "CI_JOB_JWT_V2", "KIBANA_", "KIBANA", "KIBANA_URL\n", "XKIBANA_URL",
                                  "ELASTICSEARCH_X", "KCR_RECORD_HTTP_PASSWORD", "KCR_RECORD_HTTP", "VAULT_TOKEN_2"])
def test_guard_matches_as_each_glob_would(name: str) -> None:
    """The fixed names are matched at once (one pattern); the verdict and the glob named are each glob's."""
    matching = [p for p in RUN_CREDENTIALS if fnmatch.fnmatchcase(name, p)]
    refusal = guard_refusal(name, Settings())
    assert (refusal is not None) == bool(matching)
    if matching:
        assert f"matches {matching[0]!r}" in str(refusal)


def test_a_template_is_parsed_once_and_a_bad_one_fails_every_time() -> None:
    text = "https://hooks.example/${env:HOOK_TOKEN}"
    assert parse_template(text) is parse_template(text)
    for _ in range(2):
        with pytest.raises(ReferenceSyntaxError, match="never closed"):
            parse_template("${env:UNCLOSED")


def test_secret_masks_itself(caplog: pytest.LogCaptureFixture) -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    secret = Secret(canary)
    resolved = ResolvedSecrets({"token": secret, "headers": {"X": Secret(canary)}}, {"${vault:a/b#c}": 3})
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("kcr.test").info("value %s %r", secret, resolved)
        logging.getLogger("kcr.test").info(f"{secret} {secret!r} {secret:>40}")
    shown = " ".join([repr(secret), str(secret), f"{secret}", format(secret, "s"), repr(resolved), str(resolved),
                      repr([secret]), repr({"k": secret}), caplog.text])
    assert canary not in shown
    assert secret.reveal() == canary
    assert resolved.payload() == {"token": canary, "headers": {"X": canary}}
    with pytest.raises(AttributeError):
        secret._value = "x"  # type: ignore[misc]


def test_digest_is_hmac_over_canonical_json() -> None:
    resolved = ResolvedSecrets({"routingKey": Secret("abc"), "h": {"b": Secret("2"), "a": Secret("1")}},
                               {"${vault:s/p#k}": 4})
    key = b"fingerprint-key"
    digest = resolved.digest("conn-1", key)
    expected = hmac.new(key, json.dumps(["conn-1", "routingKey", "abc"], separators=(",", ":")).encode(),
                        hashlib.sha256).hexdigest()
    assert digest.hmacs["routingKey"] == expected
    assert set(digest.hmacs) == {"routingKey", "h"}
    assert digest.vault_versions == {"${vault:s/p#k}": 4}
    assert resolved.digest("conn-2", key).hmacs["routingKey"] != expected  # bound to the connector
    assert resolved.digest("conn-1", None).hmacs == {}
    same = ResolvedSecrets({"h": {"a": Secret("1"), "b": Secret("2")}, "routingKey": Secret("abc")})
    assert same.digest("conn-1", key).hmacs == digest.hmacs  # key order does not matter


def test_masker_hides_raw_escaped_and_numeric_forms() -> None:
    from reconciler.masking import Masker

    mask = Masker({"a": 'pa"ss\\word', "b": ["tab\there", 123456]}, {"c": Secret("wrapped-value")})
    text = 'got pa"ss\\word, "pa\\"ss\\\\word", tab\\there, 123456 and wrapped-value; ok=ab'
    out = mask(text)
    for leaked in ('pa"ss', "pa\\\"ss", "tab\\there", "123456", "wrapped-value"):
        assert leaked not in out
    assert out.endswith("ok=ab")  # short values are left alone
