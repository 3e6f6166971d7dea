"""What a `kcr plan` process does before its work, kept to what the work needs (issue #16): a valid
repository's plan imports no jsonschema (its compiled checks answer), no rich or pygments (httpx's
command line, which kcr never runs), and an http:// Kibana costs no trust store. The shortcuts give the
answers the long way gives: the errors are still jsonschema's, worded as before, and TLS, where any
is possible, is verified against the full trust store."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.cli import PROCESS_TIMEOUT_S, process_env, write_repo

from reconciler.connection import Connection, default_ssl_context
from reconciler.desired import load
from reconciler.sandbox import Sandbox
from reconciler.sandbox.server import running
from reconciler.schema_validator import SchemaValidator

REPO = {
    "connectors/default/team.yaml": """\
connectors:
  - id: log
    name: Server log
    type: .server-log
  - id: index
    name: Alerts index
    type: .index
    config:
      index: alerts-ops
""",
}

# The process runs kcr as the console script does, then says which modules it imported.
RUN_AND_LIST = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["kcr", *sys.argv[1:]]
from reconciler.cli import main
main()
"""


def _seed(repo: Path) -> dict[str, object]:
    state = load(repo, None, {}).state
    assert state is not None
    return {"spaces": ["default"], "connectors": [
        {"id": spec.id, "space": spec.space, "name": spec.name, "connector_type_id": spec.type,
         "config": dict(spec.config), "secrets": {}} for spec in state.spaces["default"].connectors]}


def test_a_no_change_plan_imports_neither_jsonschema_nor_httpx_command_line(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", REPO)
    with running(Sandbox.from_seed(_seed(repo))) as url:
        proc = subprocess.run([sys.executable, "-c", RUN_AND_LIST, "plan", "--detailed-exitcode", "--dir", str(repo)],
                              env=process_env(KIBANA_URL=url, NO_COLOR="1"), capture_output=True, text=True,
                              timeout=PROCESS_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 unchanged" in proc.stdout
    modules = json.loads(proc.stderr.strip().splitlines()[-1])
    assert "httpx" in modules  # it did talk to Kibana
    top = {m.split(".")[0] for m in modules}
    assert top.isdisjoint({"jsonschema", "referencing", "rich", "pygments"}), top & {"jsonschema", "rich"}


def test_an_invalid_connector_is_still_worded_by_jsonschema(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"connectors/default/team.yaml": REPO["connectors/default/team.yaml"]
                                          .replace("index: alerts-ops", "index: 42")})
    problems = load(repo, None, {}).errors
    assert [(p.line, p.message) for p in problems] == [(9, "config.index: must be a string, not 42")]


def test_a_schema_validator_is_the_jsonschema_validator_its_schema_names() -> None:
    for schema, name in [({"type": "string"}, "Draft202012Validator"),
                         ({"$schema": "http://json-schema.org/draft-07/schema#", "type": "string"}, "Draft7Validator"),
                         ({"$schema": "https://example.com/unknown", "type": "string"}, "Draft202012Validator")]:
        v = SchemaValidator(schema)
        assert type(v.built).__name__ == name
        assert v.is_valid("x") and not v.is_valid(1)
        assert [e.message for e in v.iter_errors(1)] == ["1 is not of type 'string'"]
        assert v.built.format_checker is None


def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_an_http_kibana_trusts_no_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing there is TLS; were a TLS connection made all the same, no server could pass verification."""
    _no_proxy(monkeypatch)
    ctx = Connection.from_env({"KIBANA_URL": "http://kibana.internal:5601"}).verify()
    assert isinstance(ctx, ssl.SSLContext) and ctx is not default_ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname and ctx.get_ca_certs() == []
    monkeypatch.setenv("NO_PROXY", "localhost")  # names no proxy: still nothing is TLS
    assert Connection.from_env({"KIBANA_URL": "http://kibana.internal:5601"}).verify() is ctx


@pytest.mark.parametrize("proxy", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
def test_an_http_kibana_behind_a_proxy_keeps_the_full_trust(monkeypatch: pytest.MonkeyPatch, proxy: str) -> None:
    """httpx reads the proxy variables, and an https:// proxy is reached over TLS."""
    _no_proxy(monkeypatch)
    monkeypatch.setenv(proxy, "https://proxy.internal:3128")
    assert Connection.from_env({"KIBANA_URL": "http://kibana.internal:5601"}).verify() is default_ssl_context()


def test_an_https_kibana_keeps_the_full_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxy(monkeypatch)
    assert Connection.from_env({"KIBANA_URL": "https://kibana.internal:5601"}).verify() is default_ssl_context()
    assert Connection.from_env({"KIBANA_URL": "http://k:5601", "KIBANA_INSECURE": "true"}).verify() is False
