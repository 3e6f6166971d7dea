"""No perpetual diffs, for every connector type kcr knows (the top complaint against the Terraform
provider): a connector declared minimally, or with some of Kibana's defaults spelled out, must after
one apply plan as "no changes" however Kibana fills defaults in, coerces values (`port: "587"` -> 587),
stores null for an absent key, or picks a value itself (webhook `authType`). Exporting it and planning
the exported repository must also show nothing to do: adoption creates, deletes and updates nothing.

Each case runs the real CLI in-process (`main(argv, env=..., transport=...)`) against its own in-process
sandbox, so a failure names the type and variant, and the whole file takes a few seconds."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers.cli import run_main

from reconciler import catalog
from reconciler.model import derive_connector_id
from reconciler.sandbox import Sandbox

KIBANA = "http://kibana.test"
SPACE = "default"
_REF = re.compile(r"^\$\{env:([A-Z0-9_]+)\}$")
_PEM_CERT = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n").decode()
_PEM_KEY = base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nMIIEfake\n-----END PRIVATE KEY-----\n").decode()
_MAPPING = {"id": "a1b2c3", "key": "rule-name", "name": "Rule name", "fieldType": "text"}


@dataclass(frozen=True)
class Variant:
    """One connector: `secrets` holds the plain values the `${env:..}` references resolve to (nested
    objects allowed: each leaf becomes its own reference)."""

    type: str
    name: str
    config: Mapping[str, Any] | None = None
    secrets: Mapping[str, Any] = field(default_factory=dict)
    xfail: str | None = None  # a known product defect: strict xfail with this reason

    @property
    def key(self) -> str:
        return re.sub(r"[^a-z0-9-]+", "-", f"{self.type.lstrip('.')}-{self.name}".lower()).strip("-")


UP = {"user": "ops-bot", "password": "CANARY-pw-1"}

VARIANTS: tuple[Variant, ...] = (
    # --- AI ---------------------------------------------------------------------------------------------
    Variant(".bedrock", "minimal", {"apiUrl": "https://bedrock-runtime.us-east-1.amazonaws.com"},
            {"accessKey": "AKIAFAKE", "secret": "CANARY-bedrock"}),
    Variant(".bedrock", "explicit", {"apiUrl": "https://bedrock-runtime.us-east-1.amazonaws.com",
                                     "region": "us-east-1", "defaultModel": "anthropic.claude-v2",
                                     "contextWindowLength": "200000", "temperature": 0.5},
            {"accessKey": "AKIAFAKE", "secret": "CANARY-bedrock"}),
    Variant(".gemini", "minimal", {"apiUrl": "https://us-central1-aiplatform.googleapis.com",
                                   "gcpRegion": "us-central1", "gcpProjectID": "proj-1"},
            {"credentialsJson": json.dumps({"type": "service_account", "project_id": "proj-1"})}),
    Variant(".gemini", "explicit", {"apiUrl": "https://us-central1-aiplatform.googleapis.com",
                                    "gcpRegion": "us-central1", "gcpProjectID": "proj-1",
                                    "defaultModel": "gemini-2.5-pro", "temperature": "0.2",
                                    "contextWindowLength": 1000000.0},
            {"credentialsJson": json.dumps({"type": "service_account", "project_id": "proj-1"})}),
    Variant(".gen-ai", "openai-minimal", {"apiProvider": "OpenAI",
                                          "apiUrl": "https://api.openai.com/v1/chat/completions"},
            {"apiKey": "CANARY-sk"}),
    Variant(".gen-ai", "openai-explicit", {"apiProvider": "OpenAI",
                                           "apiUrl": "https://api.openai.com/v1/chat/completions",
                                           "defaultModel": "gpt-4.1", "organizationId": "org-1",
                                           "projectId": "proj-1", "headers": {"X-Team": "sre"},
                                           "contextWindowLength": "128000", "temperature": "0"},
            {"apiKey": "CANARY-sk"}),
    Variant(".gen-ai", "azure", {"apiProvider": "Azure OpenAI",
                                 "apiUrl": "https://my.openai.azure.com/openai/deployments/gpt4/chat/completions"
                                           "?api-version=2024-02-01"},
            {"apiKey": "CANARY-azure"}),
    Variant(".gen-ai", "other-minimal", {"apiProvider": "Other", "apiUrl": "https://llm.example.com/v1/chat",
                                         "defaultModel": "llama-3"},
            {"apiKey": "CANARY-other"}),
    Variant(".gen-ai", "other-explicit", {"apiProvider": "Other", "apiUrl": "https://llm.example.com/v1/chat",
                                          "defaultModel": "llama-3", "verificationMode": "full",
                                          "enableNativeFunctionCalling": False},
            {"apiKey": "CANARY-other"}),
    Variant(".gen-ai", "other-pki", {"apiProvider": "Other", "apiUrl": "https://llm.example.com/v1/chat",
                                     "defaultModel": "llama-3", "verificationMode": "certificate"},
            {"certificateData": _PEM_CERT, "privateKeyData": _PEM_KEY}),
    Variant(".inference", "minimal", {"provider": "openai", "taskType": "chat_completion",
                                      "inferenceId": "npd-minimal"}),
    Variant(".inference", "explicit", {"provider": "openai", "taskType": "completion", "inferenceId": "npd-explicit",
                                       "providerConfig": {"model_id": "gpt-4o"}, "taskTypeConfig": {},
                                       "contextWindowLength": "32000"},
            {"providerSecrets": {"api_key": "CANARY-inference"}}),
    Variant(".mcp", "minimal", {"serverUrl": "https://mcp.example.com/sse"}),
    Variant(".mcp", "bearer", {"serverUrl": "https://mcp.example.com/sse", "hasAuth": True, "authType": "bearer"},
            {"token": "CANARY-mcp"}),
    Variant(".mcp", "apikey", {"serverUrl": "https://mcp.example.com/sse", "hasAuth": True, "authType": "apiKey",
                               "apiKeyHeaderName": "X-Key", "headers": {"X-Team": "sre"}},
            {"apiKey": "CANARY-mcp-key"}),
    Variant(".mcp", "no-auth", {"serverUrl": "https://mcp.example.com/sse", "hasAuth": False}),
    # --- notification ---------------------------------------------------------------------------------
    Variant(".email", "minimal", {"from": "alerts@example.com", "host": "smtp.example.com", "port": 587}, UP),
    Variant(".email", "explicit", {"service": "other", "from": "alerts@example.com", "host": "smtp.example.com",
                                   "port": "587", "secure": False, "hasAuth": True, "tenantId": None,
                                   "clientId": None, "oauthTokenUrl": None}, UP),
    Variant(".email", "no-auth", {"from": "alerts@example.com", "host": "smtp.example.com", "port": 25,
                                  "secure": None, "hasAuth": False}),
    Variant(".email", "port-float", {"from": "alerts@example.com", "host": "smtp.example.com", "port": 465.0,
                                     "secure": True}, UP),
    Variant(".email", "gmail", {"service": "gmail", "from": "alerts@example.com", "hasAuth": True}, UP),
    Variant(".email", "exchange", {"service": "exchange_server", "from": "alerts@example.com",
                                   "clientId": "client-1", "tenantId": "tenant-1"},
            {"clientSecret": "CANARY-exchange"}),
    Variant(".index", "minimal", {"index": "alerts-history"}),
    Variant(".index", "explicit", {"index": "alerts-history", "refresh": False, "executionTimeField": None}),
    Variant(".index", "refresh", {"index": "alerts-history", "refresh": True, "executionTimeField": "@timestamp"}),
    Variant(".pagerduty", "minimal", None, {"routingKey": "CANARY-pd"}),
    Variant(".pagerduty", "null-url", {"apiUrl": None}, {"routingKey": "CANARY-pd"}),
    Variant(".pagerduty", "explicit", {"apiUrl": "https://events.pagerduty.com/v2/enqueue"},
            {"routingKey": "CANARY-pd"}),
    Variant(".server-log", "minimal"),
    Variant(".server-log", "explicit", {}),
    Variant(".slack", "minimal", None, {"webhookUrl": "https://hooks.slack.com/services/T0/B0/CANARY"}),
    Variant(".slack_api", "minimal", None, {"token": "xoxb-CANARY"}),
    Variant(".slack_api", "channels", {"allowedChannels": [{"id": "C01", "name": "alerts"},
                                                           {"id": "C02", "name": "ops"}]},
            {"token": "xoxb-CANARY"}),
    Variant(".teams", "minimal", None, {"webhookUrl": "https://example.webhook.office.com/webhookb2/CANARY"}),
    Variant(".webhook", "minimal", {"url": "https://hooks.example.com/alert"}, UP),
    Variant(".webhook", "basic-explicit", {"url": "https://hooks.example.com/alert", "method": "post",
                                           "hasAuth": True, "authType": "webhook-authentication-basic",
                                           "headers": {"Content-Type": "application/json"}}, UP),
    Variant(".webhook", "no-auth", {"url": "https://hooks.example.com/alert", "hasAuth": False}),
    Variant(".webhook", "no-auth-explicit", {"url": "https://hooks.example.com/alert", "method": "put",
                                             "hasAuth": False, "authType": None, "headers": None}),
    Variant(".webhook", "ssl", {"url": "https://hooks.example.com/alert", "hasAuth": True,
                                "authType": "webhook-authentication-ssl", "certType": "ssl-crt-key",
                                "verificationMode": "full"},
            {"crt": _PEM_CERT, "key": _PEM_KEY}),
    Variant(".webhook", "oauth2", {"url": "https://hooks.example.com/alert", "hasAuth": True,
                                   "authType": "webhook-oauth2-client-credentials",
                                   "accessTokenUrl": "https://login.example.com/token", "clientId": "client-1",
                                   "scope": "alerts"},
            {"clientSecret": "CANARY-oauth"}),
    Variant(".webhook", "secret-headers", {"url": "https://hooks.example.com/alert", "hasAuth": False},
            {"secretHeaders": {"X-Token": "CANARY-header"}}),
    Variant(".xmatters", "basic", {"configUrl": "https://acme.xmatters.com/api/integration/1/functions/x/triggers",
                                   "usesBasic": True}, UP),
    Variant(".xmatters", "url", {"usesBasic": False},
            {"secretsUrl": "https://acme.xmatters.com/api/integration/1/functions/x/triggers?apiKey=CANARY"}),
    # --- case management / SIEM / SOAR -------------------------------------------------------------------
    Variant(".cases-webhook", "minimal", {
        "createIncidentUrl": "https://cases.example.com/api/issue",
        "createIncidentJson": '{"fields":{"summary":{{{case.title}}}}}',
        "createIncidentResponseKey": "id",
        "getIncidentUrl": "https://cases.example.com/api/issue/{{{external.system.id}}}",
        "getIncidentResponseExternalTitleKey": "key",
        "viewIncidentUrl": "https://cases.example.com/browse/{{{external.system.title}}}",
        "updateIncidentUrl": "https://cases.example.com/api/issue/{{{external.system.id}}}",
        "updateIncidentJson": '{"fields":{"summary":{{{case.title}}}}}',
    }, UP),
    Variant(".cases-webhook", "explicit-no-auth", {
        "createIncidentUrl": "https://cases.example.com/api/issue",
        "createIncidentMethod": "post",
        "createIncidentJson": '{"fields":{"summary":{{{case.title}}}}}',
        "createIncidentResponseKey": "id",
        "getIncidentMethod": "get",
        "getIncidentUrl": "https://cases.example.com/api/issue/{{{external.system.id}}}",
        "getIncidentJson": None,
        "getIncidentResponseExternalTitleKey": "key",
        "viewIncidentUrl": "https://cases.example.com/browse/{{{external.system.title}}}",
        "updateIncidentUrl": "https://cases.example.com/api/issue/{{{external.system.id}}}",
        "updateIncidentMethod": "put",
        "updateIncidentJson": '{"fields":{"summary":{{{case.title}}}}}',
        "createCommentUrl": "https://cases.example.com/api/issue/{{{external.system.id}}}/comment",
        "createCommentMethod": "post",
        "createCommentJson": '{"body":{{{case.comment}}}}',
        "headers": {"X-Team": "sre"},
        "hasAuth": False,
        "authType": None,
    }),
    Variant(".crowdstrike", "minimal", {"url": "https://api.crowdstrike.com"},
            {"clientId": "client-1", "clientSecret": "CANARY-cs"}),
    Variant(".d3security", "minimal", {"url": "https://d3.example.com/api"}, {"token": "CANARY-d3"}),
    Variant(".jira", "minimal", {"apiUrl": "https://acme.atlassian.net", "projectKey": "OPS"},
            {"email": "bot@example.com", "apiToken": "CANARY-jira"}),
    Variant(".jira-service-management", "minimal", {"apiUrl": "https://api.atlassian.com/jsm/ops/integration"},
            {"apiKey": "CANARY-jsm"}),
    Variant(".microsoft_defender_endpoint", "minimal", {
        "clientId": "client-1", "tenantId": "tenant-1", "oAuthServerUrl": "https://login.microsoftonline.com",
        "oAuthScope": "https://api.securitycenter.microsoft.com/.default",
        "apiUrl": "https://api.securitycenter.microsoft.com"}, {"clientSecret": "CANARY-mde"}),
    Variant(".opsgenie", "minimal", {"apiUrl": "https://api.opsgenie.com"}, {"apiKey": "CANARY-og"}),
    Variant(".resilient", "minimal", {"apiUrl": "https://resilient.example.com", "orgId": "201"},
            {"apiKeyId": "key-1", "apiKeySecret": "CANARY-res"}),
    Variant(".sentinelone", "minimal", {"url": "https://usea1.sentinelone.net"}, {"token": "CANARY-s1"}),
    Variant(".servicenow", "minimal", {"apiUrl": "https://acme.service-now.com"},
            {"username": "admin", "password": "CANARY-sn"}),
    Variant(".servicenow", "explicit", {"apiUrl": "https://acme.service-now.com", "isOAuth": False,
                                        "usesTableApi": True, "clientId": None, "userIdentifierValue": None,
                                        "jwtKeyId": None},
            {"username": "admin", "password": "CANARY-sn"}),
    Variant(".servicenow", "oauth", {"apiUrl": "https://acme.service-now.com", "isOAuth": True,
                                     "usesTableApi": False, "clientId": "client-1",
                                     "userIdentifierValue": "bot@example.com", "jwtKeyId": "kid-1"},
            {"clientSecret": "CANARY-sn-oauth", "privateKey": "CANARY-sn-pk"}),
    Variant(".servicenow-sir", "minimal", {"apiUrl": "https://acme.service-now.com"},
            {"username": "admin", "password": "CANARY-sir"}),
    Variant(".servicenow-sir", "explicit", {"apiUrl": "https://acme.service-now.com", "isOAuth": False,
                                            "usesTableApi": False},
            {"username": "admin", "password": "CANARY-sir"}),
    Variant(".servicenow-itom", "minimal", {"apiUrl": "https://acme.service-now.com"},
            {"username": "admin", "password": "CANARY-itom"}),
    Variant(".servicenow-itom", "oauth", {"apiUrl": "https://acme.service-now.com", "isOAuth": True,
                                          "clientId": "client-1", "userIdentifierValue": "bot@example.com",
                                          "jwtKeyId": "kid-1"},
            {"clientSecret": "CANARY-itom-oauth", "privateKey": "CANARY-itom-pk"}),
    Variant(".swimlane", "minimal", {"apiUrl": "https://swimlane.example.com/api", "appId": "app-1",
                                     "connectorType": "all", "mappings": {}},
            {"apiToken": "CANARY-sw"}),
    Variant(".swimlane", "mappings", {"apiUrl": "https://swimlane.example.com/api", "appId": "app-1",
                                      "connectorType": "alerts",
                                      "mappings": {"ruleNameConfig": _MAPPING, "alertIdConfig": _MAPPING,
                                                   "severityConfig": None}},
            {"apiToken": "CANARY-sw"}),
    Variant(".thehive", "minimal", {"url": "https://thehive.example.com"}, {"apiKey": "CANARY-hive"}),
    Variant(".thehive", "explicit", {"url": "https://thehive.example.com", "organisation": None},
            {"apiKey": "CANARY-hive"}),
    Variant(".thehive", "organisation", {"url": "https://thehive.example.com", "organisation": "acme"},
            {"apiKey": "CANARY-hive"}),
    Variant(".tines", "minimal", {"url": "https://acme.tines.com"},
            {"email": "bot@example.com", "token": "CANARY-tines"}),
    Variant(".torq", "minimal", {"webhookIntegrationUrl": "https://hooks.torq.io/v1/webhooks/abc"},
            {"token": "CANARY-torq"}),
    Variant(".xsoar", "minimal", {"url": "https://xsoar.example.com"}, {"apiKey": "CANARY-xsoar"}),
    Variant(".xsoar", "explicit", {"url": "https://xsoar.example.com"},
            {"apiKey": "CANARY-xsoar", "apiKeyID": "7"}),
    # --- current Kibana main (issue #14): .http and two spec connectors --------------------------------
    Variant(".http", "no-auth", {"url": "https://api.example.com", "hasAuth": False}),
    Variant(".http", "basic", {"url": "https://api.example.com"}, UP),
    Variant(".http", "explicit", {"url": "https://api.example.com", "headers": {"X-Team": "sre"}, "hasAuth": True,
                                  "authType": "webhook-authentication-basic", "proxyUrl": None,
                                  "hasProxyAuth": False}, UP),
    Variant(".http", "oauth2", {"url": "https://api.example.com", "hasAuth": True,
                                "authType": "webhook-oauth2-client-credentials",
                                "accessTokenUrl": "https://login.example.com/token", "clientId": "client-1"},
            {"clientSecret": "CANARY-http-oauth"}),
    Variant(".slack2", "bearer", None, {"authType": "bearer", "token": "CANARY-slack2"}),
    Variant(".jira-cloud", "basic", {"subdomain": "acme"},
            {"authType": "basic", "username": "bot@example.com", "password": "CANARY-jira-cloud"}),
    Variant(".jira-cloud", "selected", {"subdomain": "acme", "cloudId": "cloud-1",
                                        "selectedActions": ["createIssue", "addComment"]},
            {"authType": "basic", "username": "bot@example.com", "password": "CANARY-jira-cloud"}),
)


def _env_name(*parts: str) -> str:
    return "NPD_" + re.sub(r"[^A-Z0-9]+", "_", "_".join(parts).upper()).strip("_")


def _references(value: Any, path: tuple[str, ...] = ()) -> tuple[Any, dict[str, str]]:
    """The secrets as `${env:..}` references, and the environment that resolves them."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        env: dict[str, str] = {}
        for k, v in value.items():
            out[k], sub = _references(v, (*path, str(k)))
            env.update(sub)
        return out, env
    name = _env_name(*path)
    return f"${{env:{name}}}", {name: str(value)}


@dataclass
class World:
    tmp: Path
    sb: Sandbox
    capsys: pytest.CaptureFixture[str]

    def kcr(self, repo: Path, env: Mapping[str, str], *args: str) -> tuple[int, str]:
        code, out, err = run_main(self.capsys, [*args, "--dir", str(repo)], env=env, transport=self.sb.transport())
        assert "CANARY" not in out + err, f"a secret value reached the output of kcr {args[0]}"
        return code, out + err


def _base_env(record: Path) -> dict[str, str]:
    return {"KIBANA_URL": KIBANA, "KCR_FINGERPRINT_KEY": "npd-fingerprint-key", "KCR_RECORD": str(record),
            "NO_COLOR": "1"}


def _write_repo(repo: Path, v: Variant) -> dict[str, str]:
    entry: dict[str, Any] = {"id": v.key, "name": f"NPD {v.type} {v.name}", "type": v.type}
    if v.config is not None:
        entry["config"] = dict(v.config)
    refs, env = _references(v.secrets)
    if refs:
        entry["secrets"] = refs
    target = repo / "connectors" / SPACE / f"{v.type.lstrip('.')}.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(yaml.safe_dump({"connectors": [entry]}, sort_keys=False), encoding="utf-8")
    return env


def _mutations(sb: Sandbox) -> dict[str, int]:
    return {k: n for k, n in sb.counters.items() if k.split(" ", 1)[0] in ("POST", "PUT", "DELETE")
            and "execute" not in k}


def _actions(output: str) -> list[tuple[str, str]]:
    plan = json.loads(output[output.index("{"):])
    return [(c["action"], c["id"]) for c in plan["changes"]]


def _exported_env(out_dir: Path, v: Variant) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The exported connectors, and each exported variable set to the value the original repository's
    reference resolved to (same connector, same secret key)."""
    doc = yaml.safe_load((out_dir / SPACE / "connectors.yaml").read_text(encoding="utf-8"))
    entries: list[dict[str, Any]] = doc["connectors"]
    env: dict[str, str] = {}
    for entry in entries:
        known = catalog.get(entry["type"])
        for key, ref in (entry.get("secrets") or {}).items():
            if known is not None and known.is_plain_value(key, ref):  # x-kcr-plain: exported as a literal
                assert ref == v.secrets.get(key), f"export wrote {key}: {ref!r}, the variant declares another"
                continue
            m = _REF.match(str(ref))
            assert m, f"export wrote a secret that is not an ${{env:..}} reference: {key}"
            original = v.secrets.get(key)
            # A key the connector was never declared with (export guesses the shape from config) still
            # needs a value for the plan to resolve; it must not matter to the plan.
            env[m.group(1)] = original if isinstance(original, str) else f"npd-unset-{key}"
    return env, entries


def _params(known_failures: Mapping[tuple[str, str], str] | None = None) -> Iterator[Any]:
    """Every variant; a known failure (by type and variant name: an assertion of the test fails) and a
    known product defect (`Variant.xfail`) are strict xfails with their reason."""
    for v in VARIANTS:
        known = (known_failures or {}).get((v.type, v.name))
        marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=known)] if known else \
            [pytest.mark.xfail(strict=True, reason=v.xfail)] if v.xfail else []
        yield pytest.param(v, id=f"{v.type}:{v.name}", marks=marks)


_GUESSED = "export guesses the secret shape from config, and optional secrets are not guessed: "
# Variants whose exported secret keys are not the declared ones, so the digests cannot match.
EXPORT_GUESSES_OTHER_SECRETS: dict[tuple[str, str], str] = {
    (".gen-ai", "other-pki"): _GUESSED + "export writes apiKey, the variant declares certificateData and "
                                         "privateKeyData",
    (".inference", "explicit"): _GUESSED + "export writes no secret, the variant declares providerSecrets",
    (".webhook", "secret-headers"): _GUESSED + "export writes no secret, the variant declares secretHeaders",
    (".xsoar", "explicit"): _GUESSED + "export writes apiKey, the variant declares apiKey and apiKeyID",
}


def test_every_type_is_covered() -> None:
    """A new type in the catalogue must get a variant here, or it has no no-perpetual-diff proof."""
    wanted = {t for t, ct in catalog.types().items() if not ct.is_system_action}
    covered = {v.type for v in VARIANTS}
    assert wanted - covered == set(), "types without a variant"
    assert covered - wanted == set(), "variants for unknown or system types"
    assert len({v.key for v in VARIANTS}) == len(VARIANTS), "variant keys must be unique"


@pytest.mark.parametrize("v", list(_params()))
def test_no_perpetual_diff(v: Variant, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = World(tmp_path, Sandbox.from_seed({"license": "trial"}), capsys)
    repo = tmp_path / "repo"
    secrets_env = _write_repo(repo, v)
    env = {**_base_env(tmp_path / "record.json"), **secrets_env}

    # 1. offline validation
    code, out = world.kcr(repo, env, "validate")
    assert code == 0, f"validate: {out}"

    # 2. apply creates it, with the resolved secrets
    code, out = world.kcr(repo, env, "apply", "--auto-approve")
    assert code == 0, f"apply: {out}"
    cid = derive_connector_id(SPACE, v.key)
    stored = {c["id"]: c for c in world.sb.connectors_in(SPACE)}
    assert set(stored) == {cid}, stored.keys()
    assert stored[cid]["connector_type_id"] == v.type
    for key, value in v.secrets.items():
        assert stored[cid]["secrets"].get(key) == value, f"secret {key} did not reach Kibana as resolved"

    # 3. no perpetual diff: the next plan is empty, and apply sends nothing
    code, out = world.kcr(repo, env, "plan", "--detailed-exitcode")
    assert code == 0, f"perpetual diff after apply:\n{out}"
    before = _mutations(world.sb)
    code, out = world.kcr(repo, env, "apply", "--auto-approve")
    assert code == 0, f"second apply: {out}"
    assert _mutations(world.sb) == before, "a second apply sent a write request"

    # 4. export round-trip: the exported repository plans no create, delete or update
    exported = tmp_path / "exported"
    code, out = world.kcr(repo, env, "export", "--out-dir", str(exported / "connectors"))
    assert code == 0, f"export: {out}"
    export_env, entries = _exported_env(exported / "connectors", v)
    assert [e["id"] for e in entries] == [cid]
    assert not [p for p in exported.rglob("*") if p.is_file() and "CANARY" in p.read_text(encoding="utf-8")]
    adopt_env = {**_base_env(tmp_path / "adopt-record.json"), **export_env}
    code, out = world.kcr(exported, adopt_env, "validate")
    assert code == 0, f"validate of the exported repository:\n{out}"
    code, out = world.kcr(exported, adopt_env, "plan", "--detailed-exitcode", "--format", "json")
    assert code == 0, f"export round-trip is not clean:\n{out}"
    assert _actions(out) == [("no-op", cid)], out
    code, out = world.kcr(exported, adopt_env, "plan", "--detailed-exitcode")
    assert code == 0, f"export round-trip (text):\n{out}"


@pytest.mark.parametrize("v", list(_params(EXPORT_GUESSES_OTHER_SECRETS)))
def test_export_round_trip_keeps_secret_digests(v: Variant, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Adopting into the same record (same Kibana, same secret values): the exported secret keys are
    the declared ones, so the fingerprints match and the plan says `unchanged`, not `changed`."""
    world = World(tmp_path, Sandbox.from_seed({"license": "trial"}), capsys)
    repo = tmp_path / "repo"
    record = tmp_path / "record.json"
    env = {**_base_env(record), **_write_repo(repo, v)}
    assert world.kcr(repo, env, "apply", "--auto-approve")[0] == 0
    exported = tmp_path / "exported"
    assert world.kcr(repo, env, "export", "--out-dir", str(exported / "connectors"))[0] == 0
    export_env, _ = _exported_env(exported / "connectors", v)
    code, out = world.kcr(exported, {**_base_env(record), **export_env}, "plan", "--detailed-exitcode",
                          "--format", "json")
    assert code == 0, f"export round-trip with the same record:\n{out}"
    plan = json.loads(out[out.index("{"):])
    statuses = {c["secrets"] for c in plan["changes"]}
    assert statuses <= {"unchanged", "none"}, statuses


# --- keys Kibana drops silently -----------------------------------------------------------------------

_CONNECTOR_PATH = re.compile(r"/api/actions/connector/([^/]+)$")


class _StripsUnknownKeys(httpx.BaseTransport):
    """Kibana as connector-types.md describes the .mcp type: its zod config schema is not strict, so
    unknown keys are dropped on save instead of refused. Wraps the sandbox (which keeps them)."""

    def __init__(self, sb: Sandbox, type_id: str) -> None:
        self.inner = sb.transport()
        self.sb = sb
        self.type_id = type_id
        ct = catalog.get(type_id)
        assert ct is not None
        self.known = set(ct.config_schema.get("properties") or {})

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        m = _CONNECTOR_PATH.search(request.url.path)
        if request.method in ("POST", "PUT") and m:
            body = json.loads(request.read() or b"{}")
            types = {c["id"]: c["connector_type_id"] for c in self.sb.connectors_in(SPACE)}
            if body.get("connector_type_id", types.get(m.group(1))) == self.type_id:
                body["config"] = {k: v for k, v in (body.get("config") or {}).items() if k in self.known}
                headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
                request = httpx.Request(request.method, request.url, headers=headers, content=json.dumps(body))
        return self.inner.handle_request(request)


def test_key_kibana_drops_is_warned_about_and_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key Kibana would silently drop: `kcr validate` warns (it does not refuse), and the plan after
    apply is clean, never an update that comes back after every apply."""
    sb = Sandbox.from_seed({"license": "trial"})
    v = Variant(".mcp", "unknown-key", {"serverUrl": "https://mcp.example.com/sse", "hasAuth": False,
                                        "tools": [{"name": "search", "enabled": True}]})
    repo = tmp_path / "repo"
    env = {**_base_env(tmp_path / "record.json"), **_write_repo(repo, v)}
    transport = _StripsUnknownKeys(sb, ".mcp")

    def kcr(*args: str) -> tuple[int, str]:
        code, out, err = run_main(capsys, [*args, "--dir", str(repo)], env=env, transport=transport)
        return code, out + err

    code, out = kcr("validate")
    assert code == 0 and "config.tools: Kibana's .mcp schema does not know this key and drops it on save" in out, out
    code, out = kcr("apply", "--auto-approve")
    assert code == 0, out
    stored = sb.connectors_in(SPACE)
    assert len(stored) == 1 and "tools" not in stored[0]["config"], "the wrapper models Kibana dropping the key"
    code, out = kcr("plan", "--detailed-exitcode")
    assert code == 0, f"perpetual diff:\n{out}"


def test_xmatters_without_uses_basic_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v = Variant(".xmatters", "url-implicit", None,
                {"secretsUrl": "https://acme.xmatters.com/api/integration/1/functions/x/triggers?apiKey=CANARY"})
    world = World(tmp_path, Sandbox.from_seed({"license": "trial"}), capsys)
    repo = tmp_path / "repo"
    env = {**_base_env(tmp_path / "record.json"), **_write_repo(repo, v)}
    # What Kibana does with it (the reason it must be refused up front): accepted, stored as basic auth.
    client = httpx.Client(transport=world.sb.transport(), base_url="http://kibana.test")
    created = client.post("/api/actions/connector", headers={"kbn-xsrf": "true"}, json={
        "name": "x", "connector_type_id": ".xmatters", "config": {},
        "secrets": {"secretsUrl": "https://acme.xmatters.com/api/integration/1/functions/x/triggers?apiKey=k"}})
    assert created.status_code == 200 and created.json()["config"]["usesBasic"] is True
    code, out = world.kcr(repo, env, "validate")
    assert code == 1 and "usesBasic" in out, out
