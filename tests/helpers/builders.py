"""Small constructors for DesiredState / LiveState built by hand (no mocks), shared by the planner,
normalize, render, plan-file and fail-closed tests, plus the mixed scenario behind the golden files
(tests/data/golden/)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler import catalog
from reconciler.model import (
    ConnectorSpec,
    ConnectorTypeInfo,
    DesiredSpace,
    DesiredState,
    LiveConnector,
    LiveSpace,
    LiveState,
    Location,
    RuleRef,
    SecretDigest,
    SpaceSettings,
    derive_connector_id,
)
from reconciler.plan import Plan
from reconciler.planner import attach_rules, make_plan

URL = "http://kibana.test"
FINGERPRINT_KEY = b"test-fingerprint-key"


def spec(
    key: str,
    type: str = ".slack",
    *,
    space: str = "default",
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    protect: bool = False,
    id: str | None = None,
) -> ConnectorSpec:
    if secrets is None:
        env = key.upper().replace("-", "_")
        secrets = {"webhookUrl": f"${{env:{env}_URL}}"} if type in (".slack", ".teams") else {}
    return ConnectorSpec(
        space=space,
        key=key,
        id=id or derive_connector_id(space, key),
        name=name if name is not None else key.replace("-", " ").title(),
        type=type,
        config=dict(config or {}),
        secrets=dict(secrets),
        protect=protect,
        location=Location(f"connectors/{space}/main.yaml", 1, 3),
    )


def live(
    cid: str,
    type: str = ".slack",
    *,
    name: str = "Live",
    config: Mapping[str, Any] | None = None,
    referenced: int = 0,
    preconfigured: bool = False,
    system: bool = False,
    missing_secrets: bool | None = False,
) -> LiveConnector:
    return LiveConnector(
        id=cid,
        name=name,
        type=type,
        config=None if preconfigured else catalog.with_defaults(type, "config", config or {}),
        is_preconfigured=preconfigured,
        is_system_action=system,
        is_missing_secrets=None if preconfigured else missing_secrets,
        referenced_by_count=referenced,
    )


def live_of(s: ConnectorSpec, **kw: Any) -> LiveConnector:
    """The live twin Kibana would hold after applying `s` (config with Kibana's defaults)."""
    kw.setdefault("name", s.name)
    kw.setdefault("config", s.config)
    return live(s.id, kw.pop("type", s.type), **kw)


def desired(*specs: ConnectorSpec, settings: Mapping[str, SpaceSettings] | None = None,
            spaces: Iterable[str] = ()) -> DesiredState:
    settings = dict(settings or {})
    names = sorted({s.space for s in specs} | set(settings) | set(spaces))
    return DesiredState(
        spaces={
            sp: DesiredSpace(
                space=sp,
                settings=settings.get(sp, SpaceSettings()),
                connectors=tuple(s for s in specs if s.space == sp),
                directory=f"connectors/{sp}",
            )
            for sp in names
        }
    )


def type_infos(license: str = "platinum", *, disabled: Iterable[str] = (), missing: Iterable[str] = ()
               ) -> dict[str, ConnectorTypeInfo]:
    out = {}
    for t in catalog.types().values():
        if t.is_system_action or t.id in set(missing):
            continue
        in_license = catalog.license_allows(license, t.minimum_license)
        in_config = t.id not in set(disabled)
        out[t.id] = ConnectorTypeInfo(
            id=t.id, name=t.name, enabled=in_license and in_config, enabled_in_config=in_config,
            enabled_in_license=in_license, minimum_license_required=t.minimum_license,
        )
    return out


def live_state(spaces: Mapping[str, Iterable[LiveConnector]], *, known: Iterable[str] | None = None,
               types: Mapping[str, ConnectorTypeInfo] | None = None) -> LiveState:
    return LiveState(
        kibana_url=URL,
        spaces={sp: LiveSpace(space=sp, connectors=tuple(cs)) for sp, cs in spaces.items()},
        known_spaces=frozenset(known if known is not None else spaces),
        connector_types=type_infos() if types is None else types,
    )


def digest(secrets: Mapping[str, str], vault: Mapping[str, int] | None = None,
           key: bytes | None = FINGERPRINT_KEY) -> SecretDigest:
    """What ResolvedSecrets.digest gives for these resolved values: HMACs only, never the value."""
    hmacs = {} if key is None else {
        k: hmac.new(key, v.encode(), hashlib.sha256).hexdigest() for k, v in secrets.items()
    }
    return SecretDigest(hmacs=hmacs, vault_versions=dict(vault or {}))


# --- the mixed scenario behind tests/data/golden/ -----------------------------------------------

def mixed_inputs(secret_value: str = "s3cr3t-value") -> tuple[DesiredState, LiveState, dict[str, SecretDigest],
                                                                dict[str, SecretDigest]]:
    slack_new = spec("alerts-slack", name="Production Slack Alerts")
    hook = spec("ops-webhook", ".webhook", name="Ops webhook",
                config={"url": "https://hooks.example.com/v2", "headers": {"X-Team": "sre"}},
                secrets={"user": "${env:HOOK_USER}", "password": "${vault:secret/alerting/hook#password}"})
    index = spec("audit-index", ".index", name="Audit index", config={"index": "alerts-audit"}, secrets={})
    teams = spec("chat", ".teams", name="Chat", protect=False)
    pager = spec("pagerduty-oncall", ".pagerduty", name="PagerDuty Incidents",
                 config={"apiUrl": "https://events.pagerduty.com/v2/enqueue"},
                 secrets={"routingKey": "${env:PAGERDUTY_ROUTING_KEY}"}, protect=True)
    sec_jira = spec("sec-jira", ".jira", space="security", name="Security Jira",
                    config={"apiUrl": "https://jira.example.com", "projectKey": "SEC"},
                    secrets={"email": "${env:JIRA_EMAIL}", "apiToken": "${env:JIRA_TOKEN}"})
    sec_opsgenie = spec("sec-opsgenie", ".opsgenie", space="security", name="Security Opsgenie",
                        config={"apiUrl": "https://api.opsgenie.com"}, secrets={"apiKey": "${env:OPSGENIE_KEY}"})
    want = desired(slack_new, hook, index, teams, pager, sec_jira, sec_opsgenie,
                   settings={"default": SpaceSettings(prune=True, ignore=("legacy-*",)),
                             "security": SpaceSettings(prune=False, ignore=("legacy-*",))})
    have = live_state(
        {
            "default": [
                live_of(hook, config={"url": "https://hooks.example.com/v1", "headers": {"X-Team": "ops"}},
                        referenced=3),
                live_of(index),
                live_of(teams, type=".slack", config={}, referenced=2),
                live_of(pager, missing_secrets=True),
                live("2f1d4c61-7a8e-4c3b-9d0e-1a2b3c4d5e6f", ".server-log", name="Old log"),
                live("9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", ".email", name="Old mail",
                     config={"from": "a@example.com"}, referenced=1),
                live("legacy-mail", ".email", name="Legacy", config={"from": "b@example.com"}),
                live("my-slack1", ".slack", name="Preconfigured Slack", preconfigured=True),
            ],
            "security": [
                live_of(sec_jira),
                live("5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", ".index", name="Hand-made index",
                     config={"index": "x"}),
                live("my-slack1", ".slack", name="Preconfigured Slack", preconfigured=True),
            ],
        },
        types=type_infos("gold"),
    )
    digests = {
        slack_new.id: digest({"webhookUrl": f"https://hooks.slack.com/{secret_value}"}),
        hook.id: digest({"user": "ops", "password": secret_value},
                        vault={"${vault:secret/alerting/hook#password}": 4}),
        teams.id: digest({"webhookUrl": f"https://teams.example.com/{secret_value}"}),
        pager.id: digest({"routingKey": secret_value}),
        sec_jira.id: digest({"email": "sec@example.com", "apiToken": secret_value}),
        sec_opsgenie.id: digest({"apiKey": secret_value}),
    }
    record = {
        hook.id: digest({"user": "ops", "password": "previous"}, vault={"${vault:secret/alerting/hook#password}": 3}),
        pager.id: digest({"routingKey": secret_value}),
        sec_jira.id: digest({"email": "sec@example.com", "apiToken": secret_value}),
    }
    return want, have, digests, record


# What `client.rules_referencing` answers for the blocked recreate of the mixed scenario ("chat").
MIXED_RULES = {derive_connector_id("default", "chat"): (RuleRef(id="rule-cpu", name="CPU high", space="default"),
                                                        RuleRef(id="rule-disk", name="Disk | full", space="default"))}


def mixed_plan(secret_value: str = "s3cr3t-value") -> Plan:
    """The plan as the CLI makes it: make_plan, then the rules of the blocked connectors attached."""
    want, have, digests, record = mixed_inputs(secret_value)
    return attach_rules(make_plan(want, have, digests=digests, record=record), MIXED_RULES)


LISTED_ID = "0f8c6a52-5d0e-4b8e-9a51-6b6372000001"


def listed_body(**changes: Any) -> dict[str, Any]:
    """One entry of GET .../api/actions/connectors as Kibana 8 answers it (id LISTED_ID); a value of ...
    drops the field."""
    body: dict[str, Any] = {
        "id": LISTED_ID, "name": "Slack", "connector_type_id": ".slack", "config": {}, "is_preconfigured": False,
        "is_deprecated": False, "is_missing_secrets": False, "is_system_action": False, "referenced_by_count": 0,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}
