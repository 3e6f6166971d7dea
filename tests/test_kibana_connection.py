"""Connection.from_env: URL, credentials in the Terraform provider's precedence, TLS settings."""

from __future__ import annotations

import base64
import logging
import ssl
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from reconciler.connection import (
    Connection,
    check_space,
    connector_path,
    default_ssl_context,
    parse_go_bool,
    redact_url,
    space_prefix,
)
from reconciler.errors import ConfigError
from reconciler.kibana import KibanaClient

URL = {"KIBANA_URL": "https://kibana.test:5601"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("env", "header", "kind"),
    [
        ({}, None, "none"),
        ({"KIBANA_API_KEY": "ZW5jb2RlZA=="}, "ApiKey ZW5jb2RlZA==", "apikey"),
        ({"KIBANA_API_KEY": "myid:mykey"}, f"ApiKey {b64('myid:mykey')}", "apikey"),
        ({"KIBANA_BEARER_TOKEN": "tok"}, "Bearer tok", "bearer"),
        ({"KIBANA_USERNAME": "u", "KIBANA_PASSWORD": "p"}, f"Basic {b64('u:p')}", "basic"),
        ({"KIBANA_BEARER_TOKEN": "tok", "KIBANA_API_KEY": "k"}, "Bearer tok", "bearer"),
        ({"KIBANA_API_KEY": "k", "KIBANA_USERNAME": "u", "KIBANA_PASSWORD": "p"}, "ApiKey k", "apikey"),
        ({"ELASTICSEARCH_API_KEY": "esk"}, "ApiKey esk", "apikey"),
        ({"ELASTICSEARCH_BEARER_TOKEN": "est"}, "Bearer est", "bearer"),
        ({"ELASTICSEARCH_USERNAME": "eu", "ELASTICSEARCH_PASSWORD": "ep"}, f"Basic {b64('eu:ep')}", "basic"),
        # any KIBANA_* credential wins over any ELASTICSEARCH_* one
        ({"KIBANA_USERNAME": "u", "KIBANA_PASSWORD": "p", "ELASTICSEARCH_BEARER_TOKEN": "est"},
         f"Basic {b64('u:p')}", "basic"),
        ({"ELASTICSEARCH_BEARER_TOKEN": "est", "ELASTICSEARCH_API_KEY": "esk"}, "Bearer est", "bearer"),
    ],
)
def test_credential_precedence(env: dict[str, str], header: str | None, kind: str) -> None:
    conn = Connection.from_env({**URL, **env})
    assert conn.auth_header == header
    assert conn.auth_kind == kind


def test_flags_override_environment() -> None:
    conn = Connection.from_env(
        {**URL, "KIBANA_BEARER_TOKEN": "envtok"}, url="http://127.0.0.1:5601/", api_key="flagkey"
    )
    assert conn.url == "http://127.0.0.1:5601"
    assert conn.auth_header == "ApiKey flagkey"


def test_several_credentials_warn(caplog: pytest.LogCaptureFixture) -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    with caplog.at_level(logging.WARNING, logger="kcr.kibana"):
        Connection.from_env({**URL, "KIBANA_API_KEY": canary, "ELASTICSEARCH_USERNAME": "u",
                             "ELASTICSEARCH_PASSWORD": canary})
    text = caplog.text
    assert "several Kibana credentials" in text
    assert "KIBANA_API_KEY" in text and "ELASTICSEARCH_USERNAME" in text
    assert canary not in text


def test_half_basic_credentials_are_an_error() -> None:
    with pytest.raises(ConfigError, match="KIBANA_USERNAME is set but KIBANA_PASSWORD is not"):
        Connection.from_env({**URL, "KIBANA_USERNAME": "u"})


def test_missing_url_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="KIBANA_URL"):
        Connection.from_env({})


def test_kibana_endpoint_alias() -> None:
    assert Connection.from_env({"KIBANA_ENDPOINT": "http://127.0.0.1:5601"}).url == "http://127.0.0.1:5601"
    both = {"KIBANA_URL": "http://127.0.0.1:1", "KIBANA_ENDPOINT": "http://127.0.0.1:2"}
    assert Connection.from_env(both).url == "http://127.0.0.1:1"


@pytest.mark.parametrize("url", ["kibana.test", "ftp://kibana.test", "https://u:p@kibana.test", "https://k.test/?a=1"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Connection.from_env({"KIBANA_URL": url})
    assert "u:p" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "drop", "space"),
    [
        ("https://kibana.test/s/ops", "/s/ops", True),
        ("https://kibana.test/s/ops/", "/s/ops", True),
        ("https://kibana.test/kibana/s/ops", "/s/ops", True),
        ("https://kibana.test/s/ops/app/home", "/s/ops/app/home", True),
        ("https://kibana.test/app/management", "/app/management", False),
        ("https://kibana.test/kibana/app", "/app", False),
    ],
)
def test_space_or_app_url_is_refused(url: str, drop: str, space: bool) -> None:
    with pytest.raises(ConfigError) as info:
        Connection.from_env({"KIBANA_URL": url})
    text = str(info.value)
    assert text.startswith("KIBANA_URL must be Kibana's base URL (including server.basePath if any), "
                           "not a space or app URL: ")
    assert f"drop `{drop}`" in text
    assert ("use `--space`/the directory name" in text) is space
    with pytest.raises(ConfigError, match="--kibana-url must be Kibana's base URL"):
        Connection.from_env({}, url=url)


@pytest.mark.parametrize("url", ["https://kibana.test/kibana", "https://kibana.test/s", "https://kibana.test/apps/kb",
                                 "https://kibana.test/sec/ops", "http://127.0.0.1:5601/"])
def test_base_paths_are_kept(url: str) -> None:
    assert Connection.from_env({"KIBANA_URL": url}).url == url.rstrip("/")


def test_url_with_a_bad_port_is_refused() -> None:
    with pytest.raises(ConfigError, match="port"):
        Connection.from_env({"KIBANA_URL": "https://kibana.test:99999"})


def test_repr_never_shows_credentials() -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    for env in (
        {"KIBANA_API_KEY": canary},
        {"KIBANA_BEARER_TOKEN": canary},
        {"KIBANA_USERNAME": "elastic", "KIBANA_PASSWORD": canary},
    ):
        conn = Connection.from_env({**URL, **env})
        for text in (repr(conn), str(conn), repr(KibanaClient(conn))):
            assert canary not in text
            assert b64(f"elastic:{canary}") not in text
        assert "kibana.test" in repr(conn)


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "true", "True"])
def test_insecure_true_values(value: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kcr.kibana"):
        conn = Connection.from_env({**URL, "KIBANA_INSECURE": value})
    assert conn.insecure is True
    assert conn.verify() is False
    assert "verification is disabled" in caplog.text


@pytest.mark.parametrize("value", ["0", "f", "F", "FALSE", "false", "False", ""])
def test_insecure_false_values(value: str) -> None:
    conn = Connection.from_env({**URL, "KIBANA_INSECURE": value})
    assert conn.insecure is False
    verify = conn.verify()
    assert isinstance(verify, ssl.SSLContext) and verify.verify_mode == ssl.CERT_REQUIRED and verify.check_hostname
    assert verify is default_ssl_context()  # built once per process, not per client


def test_insecure_garbage_is_an_error() -> None:
    with pytest.raises(ConfigError, match="KIBANA_INSECURE"):
        Connection.from_env({**URL, "KIBANA_INSECURE": "yes"})
    assert parse_go_bool("X", "T") is True


def is_trustme(cert: Mapping[str, Any]) -> bool:
    subject = cert["subject"]
    assert isinstance(subject, tuple)
    return any(k == "organizationName" and v.startswith("trustme") for rdn in subject for k, v in rdn)


def test_ca_bundle_from_several_files(tmp_path: Path) -> None:
    cas = [trustme.CA(), trustme.CA()]
    paths = []
    for i, ca in enumerate(cas):
        path = tmp_path / f"ca{i}.pem"
        ca.cert_pem.write_to_path(str(path))
        paths.append(str(path))
    conn = Connection.from_env({**URL, "KIBANA_CA_CERTS": ", ".join(paths)})
    assert conn.ca_certs == tuple(paths)
    ctx = conn.verify()
    assert isinstance(ctx, ssl.SSLContext)
    loaded = [c for c in ctx.get_ca_certs() if is_trustme(c)]
    assert len(loaded) == 2


def test_ca_cert_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"KIBANA_CA_CERT.*does not exist"):
        Connection.from_env({**URL, "KIBANA_CA_CERT": str(tmp_path / "missing.pem")})
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="not a readable PEM"):
        Connection.from_env({**URL, "KIBANA_CA_CERT": str(bad)})


def test_timeouts() -> None:
    assert Connection.from_env(URL).timeout == 60.0
    assert Connection.from_env({**URL, "KCR_TIMEOUT": "5"}).timeout == 5.0
    assert Connection.from_env({**URL, "KCR_TIMEOUT": "5"}, timeout=2).timeout == 2
    with pytest.raises(ConfigError, match="KCR_TIMEOUT"):
        Connection.from_env({**URL, "KCR_TIMEOUT": "soon"})
    sent: list[httpx.Request] = []
    answer = httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200, json=[]))
    with KibanaClient(Connection.from_env(URL), transport=answer) as client:
        client.list_connectors("default")
    timeout = sent[0].extensions["timeout"]  # what every transport reads, httpx's and kcr's own
    assert (timeout["connect"], timeout["read"]) == (10.0, 60.0)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@kibana.test:5601/base?token=t#frag", "https://kibana.test:5601/base"),
        ("http://[::1]:5601/", "http://[::1]:5601/"),
        ("https://u:p@kibana.test:port/", "https://kibana.test/"),  # a bad port is dropped, not echoed
    ],
)
def test_redact_url_keeps_only_where(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_paths_keep_each_id_to_one_segment() -> None:
    assert space_prefix("default") == "" and space_prefix("ops") == "/s/ops"
    assert connector_path("ops") == "/s/ops/api/actions/connector"
    assert connector_path("default", "a b", "/_execute") == "/api/actions/connector/a%20b/_execute"
    with pytest.raises(ConfigError, match="space id"):
        check_space("Ops/../x")
    assert connector_path("default", "..") == "/api/actions/connector/%2E%2E"  # never resolved to the parent
    assert connector_path("default", "a/b?c") == "/api/actions/connector/a%2Fb%3Fc"
