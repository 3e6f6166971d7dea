"""Types kcr does not bundle (#14): validate accepts them with one warning per type, plan checks them
against the target Kibana's GET connector_types (unknown, not enabled, not licensed, unreadable: all
errors, nothing sent), a repository adds schemas in kcr.yaml `types:` or schemas/types/, and
`kcr types --live` shows what only one side has. The sandbox learns a type kcr lacks from its seed's
`extra_types` (`.abuseipdb` is a kbn-connector-specs type: elastic/kibana
src/platform/packages/shared/kbn-connector-specs/src/specs/abuseipdb/abuseipdb.ts, `id: '.abuseipdb'`,
`minimumLicense: 'gold'`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import catalog
from reconciler.errors import ConfigError
from reconciler.model import ConnectorTypeInfo
from reconciler.planner import make_plan
from reconciler.sandbox import Sandbox
from reconciler.validate import validate
from tests.helpers import builders
from tests.helpers.cli import World, write_repo

KIBANA = "http://kibana.test"
ABUSE = ".abuseipdb"
ABUSE_SEED = {ABUSE: {"name": "AbuseIPDB", "minimum_license": "gold", "supported_feature_ids": ["workflows"]}}
ABUSE_FILE = """\
connectors:
  - id: abuse-main
    name: AbuseIPDB main
    type: .abuseipdb
    config: {region: eu, retries: 2}
    secrets: {apiKey: '${env:ABUSE_KEY}'}
  - id: abuse-backup
    name: AbuseIPDB backup
    type: .abuseipdb
    secrets: {apiKey: '${env:ABUSE_KEY}'}
  - id: audit-index
    name: Audit index
    type: .index
    config: {index: audit}
"""
SECRET = "abuse-key-value-123"


def _world(tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: dict[str, Any] | None = None,
           files: dict[str, str | bytes] | None = None) -> World:
    env = {"KIBANA_URL": KIBANA, "ABUSE_KEY": SECRET, "KCR_FINGERPRINT_KEY": "k", "NO_COLOR": "1"}
    repo = write_repo(tmp_path / "repo", files or {"connectors/default/abuse.yaml": ABUSE_FILE})
    return World(repo, env, Sandbox.from_seed({"license": "trial", **(seed or {})}), capsys)


def _writes(sb: Sandbox) -> dict[str, int]:
    return {k: v for k, v in sb.counters.items() if k.split(" ")[0] in ("POST", "PUT", "DELETE")}


# --- validate ------------------------------------------------------------------------------------------


def test_a_type_kcr_does_not_bundle_validates_with_one_warning(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert catalog.get(ABUSE) is None  # the premise: kcr ships no schema for it
    w = _world(tmp_path, capsys)
    code, out, _ = w.kcr("validate")
    assert code == 0, out
    warnings = [line for line in out.splitlines() if ": warning: " in line]
    assert len(warnings) == 1, out  # two connectors of the type, one warning
    assert warnings[0].startswith("connectors/default/abuse.yaml:4:")  # the first connector's `type:`
    assert f"kcr has no schema for `{ABUSE}`; Kibana checks its config at apply" in warnings[0]
    code, out, _ = w.kcr("validate", "--format", "json")
    body = json.loads(out)
    assert body["valid"] is True and [p["severity"] for p in body["problems"]] == ["warning"]


@pytest.mark.parametrize(("secrets", "needle"), [
    ("{apiKey: hunter2}", "secrets.apiKey: plaintext secret"),
    ("{auth: {token: hunter2}}", "secrets.auth.token: plaintext secret"),
    ("{apiKey: '${env:A'}", "malformed secret reference"),
])
def test_secrets_of_an_unbundled_type_must_still_be_references(tmp_path: Path, secrets: str, needle: str) -> None:
    root = write_repo(tmp_path, {"connectors/default/a.yaml": (
        f"connectors:\n  - id: a\n    name: A\n    type: {ABUSE}\n    config: {{anything: [1, 2]}}\n"
        f"    secrets: {secrets}\n")})
    report = validate(root)
    assert [p.line for p in report.errors] == [6] and needle in report.errors[0].message
    assert "hunter2" not in json.dumps([p.message for p in report.problems])


def test_the_file_format_is_still_checked_for_an_unbundled_type(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"connectors/default/a.yaml": (
        f"connectors:\n  - id: a\n    name: A\n    type: {ABUSE}\n    config: [not, an, object]\n"
        f"  - id: Bad Id\n    name: B\n    type: {ABUSE}\n")})
    messages = [(p.line, p.message) for p in validate(root).errors]
    assert any(line == 5 and "must be a mapping, not a list" in m for line, m in messages), messages
    assert any(line == 6 and "neither a key" in m for line, m in messages), messages


@pytest.mark.parametrize(("type_id", "severity", "needle"), [
    (".slak", "error", "did you mean '.slack'?"),  # a letter dropped from a bundled id
    (".opsgneie", "error", "did you mean '.opsgenie'?"),  # two letters swapped
    (".pagerduty2", "error", "did you mean '.pagerduty'?"),  # one edit from a long id
    (".Slack", "error", "did you mean '.slack'?"),  # another case
    (".slack-api", "error", "did you mean '.slack_api'?"),  # '-' for '_'
    ("slack", "error", "did you mean '.slack'?"),  # no leading dot
    ("carrier-pigeon", "error", "start with '.'"),
    (".gmail", "warning", "if you meant '.email'"),  # a real Kibana type one edit from .email: a hint only
    (".jina", "warning", "if you meant '.jira'"),  # likewise (kbn-connector-specs' Jina Reader)
])
def test_the_misspelling_rule(tmp_path: Path, type_id: str, severity: str, needle: str) -> None:
    root = write_repo(tmp_path, {"connectors/default/a.yaml": f"connectors:\n  - id: a\n    name: A\n"
                                                              f"    type: '{type_id}'\n"})
    [problem] = validate(root).problems
    assert (problem.severity, problem.line) == (severity, 4)
    assert needle in problem.message, problem.message


def test_declaring_a_type_in_kcr_yaml_makes_a_near_miss_known(tmp_path: Path) -> None:
    files = {"connectors/default/a.yaml": "connectors:\n  - id: a\n    name: A\n    type: .slak\n"}
    [error] = validate(write_repo(tmp_path / "one", files)).errors
    assert '`types: {".slak": {}}`' in error.message  # the error says how
    report = validate(write_repo(tmp_path / "two", {**files, "kcr.yaml": "types:\n  .slak: {}\n"}))
    assert report.ok and [p.severity for p in report.problems] == ["warning"]


# --- plan and apply against a Kibana that knows the type, and ones that do not ------------------------------


def test_plan_apply_and_replan_clean_against_a_kibana_that_knows_the_type(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys, {"extra_types": ABUSE_SEED})
    code, out, err = w.kcr("plan", "--detailed-exitcode")
    assert code == 2, out + err
    assert out.count(f"[{ABUSE}]  create") == 2, out
    assert w.sb.counters["total"] <= 1 + 3  # one space: within spaces + 3
    assert w.sb.counters.get("GET connector_types") == 1, w.sb.counters
    code, out, err = w.kcr("apply", "--auto-approve")
    assert code == 0, out + err
    stored = {c["name"]: c for c in w.sb.connectors_in("default")}
    assert stored["AbuseIPDB main"]["connector_type_id"] == ABUSE
    assert stored["AbuseIPDB main"]["config"] == {"region": "eu", "retries": 2}
    assert stored["AbuseIPDB main"]["secrets"] == {"apiKey": SECRET}
    assert stored["AbuseIPDB backup"]["config"] == {}
    w.sb.reset_counters()
    code, out, err = w.kcr("plan", "--detailed-exitcode")
    assert code == 0, out + err  # no perpetual diff: Kibana keeps the config as sent
    assert SECRET not in out + err


def test_plan_fails_naming_the_type_and_the_kibana_that_does_not_know_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys)
    code, out, err = w.kcr("plan")
    assert code == 1
    lines = [line for line in (out + err).splitlines() if f"type {ABUSE} is not available" in line]
    assert len(lines) == 2, out + err  # one per connector using it, each named
    assert any("abuse-main" in line for line in lines) and any("abuse-backup" in line for line in lines)
    assert all(f"this Kibana ({KIBANA})" in line for line in lines)
    assert _writes(w.sb) == {}
    code, out, err = w.kcr("apply", "--auto-approve")
    assert code == 1 and _writes(w.sb) == {}, out + err  # nothing sent beyond the reads
    assert w.sb.connectors_in("default") == []


@pytest.mark.parametrize(("seed", "needle"), [
    ({"enabled_action_types": [".index"]},
     f"type {ABUSE} is not enabled in xpack.actions.enabledActionTypes (kibana.yml) of this Kibana ({KIBANA})"),
    ({"license": "basic"}, f"type {ABUSE} needs a gold licence, which this Kibana's licence does not cover ({KIBANA})"),
])
def test_plan_fails_for_a_type_not_enabled_or_not_licensed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           seed: dict[str, Any], needle: str) -> None:
    w = _world(tmp_path, capsys, {"extra_types": ABUSE_SEED, **seed})
    code, out, err = w.kcr("plan")
    assert code == 1
    assert (out + err).count(needle) == 2, out + err
    assert "audit-index" not in " ".join(line for line in (out + err).splitlines() if "error" in line)
    code, _, _ = w.kcr("apply", "--auto-approve")
    assert code == 1 and _writes(w.sb) == {}


def _replacing_types(sb: Sandbox, answer: httpx.Response) -> httpx.MockTransport:
    inner = sb.transport()

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/api/actions/connector_types"):
            return answer
        return inner.handle_request(request)

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(("answer", "needle"), [
    (httpx.Response(200, json={"not": "a list"}), "connector_types"),
    (httpx.Response(200, json=[{"id": ABUSE, "name": "AbuseIPDB"}]), "minimum_license_required"),  # not trusted
    (httpx.Response(403, json={"statusCode": 403, "error": "Forbidden", "message": "no"}), "403"),
])
def test_plan_fails_closed_when_connector_types_cannot_be_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], answer: httpx.Response, needle: str) -> None:
    w = _world(tmp_path, capsys, {"extra_types": ABUSE_SEED})
    code, out, err = w.kcr("plan", transport=_replacing_types(w.sb, answer))
    assert code == 1
    assert "connector_types" in out + err and needle in out + err, out + err
    assert _writes(w.sb) == {}


def test_the_planner_fails_closed_without_connector_types() -> None:
    """Pure planner: a LiveState that lists no types (never what the client returns: it refuses an empty
    list) must not pass a type kcr cannot otherwise check."""
    want = builders.spec("abuse-main", ABUSE, config={"region": "eu"})
    plan = make_plan(builders.desired(want), builders.live_state({"default": []}, types={}), digests={}, record={},
                     check_secrets=False)
    [problem] = plan.problems
    assert problem.severity == "error" and problem.id == want.id
    assert f"this Kibana ({KIBANA}) listed no connector types" in problem.message and ABUSE in problem.message
    known = {ABUSE: ConnectorTypeInfo(ABUSE, "AbuseIPDB", minimum_license_required="gold")}
    plan = make_plan(builders.desired(want), builders.live_state({"default": []}, types=known), digests={},
                     record={}, check_secrets=False)
    assert plan.problems == () and [c.action.value for c in plan.changes] == ["create"]


def test_the_sandbox_refuses_an_extra_type_kcr_bundles() -> None:
    with pytest.raises(ConfigError, match=re.escape("'.slack' is a type of kcr's catalogue already")):
        Sandbox.from_seed({"extra_types": {".slack": {}}})


# --- the repository's own schemas ------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"region": {"enum": ["eu", "us"]}, "retries": {"type": "integer"}},
          "additionalProperties": False}
SECRETS = {"type": "object", "properties": {"apiKey": {"type": "string"}}, "required": ["apiKey"],
           "additionalProperties": False}


def _kcr_yaml_types(entry: dict[str, Any]) -> str:
    return "types:\n  .abuseipdb: " + json.dumps(entry) + "\n"


@pytest.mark.parametrize("where", ["kcr.yaml", "schemas/types/abuseipdb.json"])
def test_a_repository_schema_checks_the_type(tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    body = {"name": "AbuseIPDB", "config": SCHEMA, "secrets": SECRETS}
    given = {"kcr.yaml": _kcr_yaml_types(body)} if where == "kcr.yaml" else \
        {where: json.dumps({"id": ABUSE, **body}, indent=2)}
    w = _world(tmp_path, capsys, {"extra_types": ABUSE_SEED}, {"connectors/default/abuse.yaml": ABUSE_FILE, **given})
    code, out, _ = w.kcr("validate")
    assert code == 0 and "warning" not in out, out  # a schema: nothing to warn about
    bad = ABUSE_FILE.replace("{region: eu, retries: 2}", "{region: mars, retries: 2}").replace(
        "secrets: {apiKey: '${env:ABUSE_KEY}'}\n  - id: audit", "secrets: {key: '${env:ABUSE_KEY}'}\n  - id: audit")
    (w.repo / "connectors/default/abuse.yaml").write_text(bad)
    code, out, _ = w.kcr("validate")
    assert code == 1
    assert "abuse.yaml:5:" in out and 'config.region: must be one of "eu", "us", not "mars"' in out, out
    assert "abuse.yaml:10:" in out and "'apiKey' is a required property" in out, out
    code, out, _ = w.kcr("types", "--format", "json")
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows[ABUSE]["schema"].startswith(where) and rows[ABUSE]["required_secrets"] == ["apiKey"]
    assert rows[".index"]["schema"] == "kcr"


@pytest.mark.parametrize(("files", "where", "needle"), [
    ({"kcr.yaml": "types:\n  .abuseipdb:\n    config: {type: objekt}\n"}, "kcr.yaml:3:", "not a valid JSON Schema"),
    ({"kcr.yaml": "types:\n  .abuseipdb:\n    config: {$ref: 'https://schemas.example/x.json'}\n"}, "kcr.yaml:3:",
     "is not a local reference"),
    ({"kcr.yaml": "types:\n  .abuseipdb:\n    confg: {}\n"}, "kcr.yaml:3:", "confg"),
    ({"kcr.yaml": "types:\n  .abuseipdb:\n    config: {properties: {a: {$ref: '#/$defs/nowhere'}}}\n"},
     "kcr.yaml:3:", "'#/$defs/nowhere' points at nothing in this schema"),
    ({"kcr.yaml": "types:\n  .abuseipdb:\n    config: {$schema: 'https://schemas.example/dialect'}\n"},
     "kcr.yaml:3:", "unknown $schema"),
    ({"kcr.yaml": "types:\n  .index:\n    config: {type: object}\n"}, "kcr.yaml:3:",
     "kcr bundles a schema for .index; a repository schema replaces it only with `override: true`"),
    ({"schemas/types/a.json": '{\n  "id": ".abuseipdb",\n  "config": {"required": "region"}\n}\n'},
     "schemas/types/a.json:3:", "not a valid JSON Schema"),
    ({"schemas/types/a.json": '{\n  "id": ".abuseipdb",\n  "config": {}\n'}, "schemas/types/a.json:4:",
     "not valid JSON"),
    ({"schemas/types/a.json": '{"config": {}}'}, "schemas/types/a.json:1:", "'id' is a required property"),
    ({"kcr.yaml": "types:\n  .abuseipdb: {}\n", "schemas/types/a.json": '{"id": ".abuseipdb", "config": {}}'},
     "schemas/types/a.json:1:", "already has a schema in kcr.yaml:2"),
])
def test_invalid_repository_schemas_are_errors_at_file_and_line(tmp_path: Path, files: dict[str, str], where: str,
                                                                needle: str) -> None:
    root = write_repo(tmp_path, {"connectors/default/abuse.yaml": ABUSE_FILE, **files})
    report = validate(root)
    shown = [f"{p.location()}: {p.message}" for p in report.errors]
    assert any(s.startswith(where) and needle in s for s in shown), shown


def test_override_replaces_a_bundled_schema(tmp_path: Path) -> None:
    strict = {"type": "object", "properties": {"index": {"type": "string", "pattern": "^audit-"}},
              "required": ["index"]}
    root = write_repo(tmp_path, {"connectors/default/abuse.yaml": ABUSE_FILE,
                                 "schemas/types/index.json": json.dumps({"id": ".index", "override": True,
                                                                         "config": strict})})
    [error] = validate(root).errors
    assert error.line == 14 and "must match ^audit- (a pattern of its schema)" in error.message


def test_kcr_own_checkout_is_not_read_as_a_repository_schema_directory() -> None:
    """kcr's example repository sits at the root of its checkout, beside the bundled schemas/types/."""
    checkout = catalog.SCHEMA_DIR.resolve().parent
    assert (checkout / "connectors").is_dir() and (checkout / "schemas" / "types").is_dir()
    assert not [p for p in validate(checkout).problems if p.file.startswith("schemas/")]


# --- kcr types --live ------------------------------------------------------------------------------------


def test_types_live_shows_what_only_one_side_has(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys, {"extra_types": ABUSE_SEED}, {
        "connectors/default/abuse.yaml": ABUSE_FILE,
        "kcr.yaml": "types:\n  .in-house: {name: In-house pager, config: {type: object}}\n"})
    code, out, err = w.kcr("types", "--live")
    assert code == 0, out + err
    block = out[out.index("Types only one side knows"):]
    assert f"(Kibana {KIBANA} and kcr)" in block
    head, *rest = block.splitlines()[1:]
    assert head.startswith("Kibana has, kcr has no schema (1)") and "kcr has a schema, Kibana does not list (1)" in head
    assert rest[0].split() == [ABUSE, "AbuseIPDB", ".in-house", "In-house", "pager"]
    table = {line.split()[0]: line for line in out[:out.index("Types only")].splitlines()[1:] if line}
    assert "kcr.yaml:2" in table[".in-house"] and table[".index"].split()[-1] == "enabled"
    code, out, _ = w.kcr("types", "--live", "--format", "json")
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows[ABUSE]["only_in"] == "kibana" and rows[ABUSE]["schema"] is None and rows[ABUSE]["in_kibana"]
    assert rows[".in-house"]["only_in"] == "kcr" and rows[".in-house"]["schema"] == "kcr.yaml:2"
    assert rows[".index"]["only_in"] is None
    assert rows[".cases"]["only_in"] is None  # a system action: Kibana's list never shows it
    assert w.sb.counters.get("GET connector_types") == 2 and _writes(w.sb) == {}


def test_types_refuses_an_invalid_repository_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys, files={"kcr.yaml": "types:\n  abuseipdb: {}\n  .x: {config: {type: 3}}\n"})
    code, out, err = w.kcr("types")
    assert code == 1 and out == ""
    assert "kcr.yaml:2:" in err and "'abuseipdb' is not a connector type id" in err
    assert "kcr.yaml:3:" in err and "config schema of .x: not a valid JSON Schema" in err
