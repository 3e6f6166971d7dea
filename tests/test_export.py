"""kcr export: naming, secret-key rules, config trimming, files; then export -> plan shows nothing to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import catalog
from reconciler.connection import Connection
from reconciler.desired import load_repository, owner_label
from reconciler.errors import ConfigError
from reconciler.export import (
    env_word,
    export_config,
    export_spaces,
    render_space,
    secret_keys_for,
    variable_names,
)
from reconciler.kibana import KibanaClient
from reconciler.model import LiveConnector
from reconciler.plan import Action
from reconciler.planner import make_plan
from reconciler.sandbox import Sandbox
from reconciler.secrets import SecretResolver
from reconciler.validate import validate_repository


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def conn(n: int, name: str, type: str = ".slack", config: dict[str, Any] | None = None, **kw: Any) -> LiveConnector:
    return LiveConnector(id=uid(n), name=name, type=type, config=config if config is not None else {}, **kw)


class FakeClient:
    def __init__(self, spaces: dict[str, list[LiveConnector]]) -> None:
        self.spaces = spaces

    def list_spaces(self) -> list[str]:
        return list(self.spaces)

    def list_connectors(self, space: str) -> list[LiveConnector]:
        return list(self.spaces[space])


@pytest.mark.parametrize(("text", "word"), [
    ("Production Slack", "PRODUCTION_SLACK"),
    ("webhookUrl", "WEBHOOK_URL"),
    ("apiKeyID", "API_KEY_ID"),
    ("security-team", "SECURITY_TEAM"),
    ("  ops // paging!! ", "OPS_PAGING"),
    ("é", ""),
])
def test_env_word(text: str, word: str) -> None:
    assert env_word(text) == word


def test_variable_names_are_unique_and_deterministic() -> None:
    a, b, c = conn(1, "Ops Alerts"), conn(2, "ops-alerts"), conn(3, "Other")
    names = variable_names("default", [a, b, c])
    assert len(set(names.values())) == 3
    assert names[uid(3)] == "KCR_DEFAULT_OTHER"
    assert names[uid(1)] == f"KCR_DEFAULT_OPS_ALERTS_{env_word(uid(1))}"  # same 8-char prefix: whole id
    assert variable_names("default", [c, b, a]) == names
    distinct = variable_names("s", [LiveConnector("aaaa1111-x", "N", ".slack", {}),
                                    LiveConnector("bbbb2222-x", "N", ".slack", {})])
    assert distinct == {"aaaa1111-x": "KCR_S_N_AAAA1111", "bbbb2222-x": "KCR_S_N_BBBB2222"}
    assert variable_names("default", [conn(4, "!!!")]) == {uid(4): "KCR_DEFAULT_CONNECTOR"}


@pytest.mark.parametrize(("type_id", "config", "keys"), [
    (".slack", {}, ("webhookUrl",)),
    (".jira", {}, ("email", "apiToken")),
    (".index", {"index": "x"}, ()),
    (".server-log", {}, ()),
    (".webhook", {"url": "https://x", "hasAuth": False}, ()),
    (".webhook", {"url": "https://x"}, ("user", "password")),
    (".webhook", {"url": "https://x", "hasAuth": True, "authType": "webhook-authentication-ssl"}, ("crt", "key")),
    (".webhook", {"url": "https://x", "authType": "webhook-authentication-ssl", "certType": "ssl-pfx"}, ("pfx",)),
    (".cases-webhook", {"hasAuth": False}, ()),
    (".servicenow", {"apiUrl": "https://x"}, ("username", "password")),
    (".servicenow-sir", {"apiUrl": "https://x", "isOAuth": True}, ("clientSecret", "privateKey")),
    (".email", {"from": "a@b", "hasAuth": False}, ()),
    (".email", {"from": "a@b"}, ("user", "password")),
    (".email", {"from": "a@b", "service": "exchange_server"}, ("clientSecret",)),
    (".xmatters", {"usesBasic": False}, ("secretsUrl",)),
    (".xmatters", {}, ("user", "password")),
    (".gen-ai", {"apiProvider": "OpenAI", "apiUrl": "https://x"}, ("apiKey",)),
    (".unknown-type", {}, ()),
])
def test_secret_keys_rule(type_id: str, config: dict[str, Any], keys: tuple[str, ...]) -> None:
    assert secret_keys_for(type_id, config) == keys


def test_credential_shapes_name_real_secret_keys() -> None:
    for ct in catalog.types().values():
        for shape in ct.credential_shapes:
            assert set(shape.secrets) <= set(ct.secret_keys()), (ct.id, shape.secrets)


def test_export_config_drops_schema_defaults_only() -> None:
    live = conn(1, "Idx", ".index", {"index": "a", "refresh": False, "executionTimeField": None})
    assert export_config("default", live) == {"index": "a"}
    kept = conn(2, "Idx", ".index", {"index": "a", "refresh": True, "executionTimeField": "@t"})
    assert export_config("default", kept) == {"index": "a", "refresh": True, "executionTimeField": "@t"}
    hook = conn(3, "H", ".webhook", {"url": "https://x", "method": "post", "headers": None, "hasAuth": True,
                                     "authType": "webhook-authentication-basic"})
    assert export_config("default", hook) == {"url": "https://x", "authType": "webhook-authentication-basic"}


def test_render_is_deterministic_safe_yaml_without_aliases() -> None:
    shared = {"k": "v"}
    conns = [conn(2, "B", ".webhook", {"url": "https://b", "headers": shared}),
             conn(1, "A", ".webhook", {"url": "https://a", "headers": shared, "hasAuth": False})]
    text, variables = render_space("default", conns)
    assert text == render_space("default", list(reversed(conns)))[0]
    assert "&" not in text and "*id" not in text
    body = yaml.safe_load(text)
    assert [c["name"] for c in body["connectors"]] == ["A", "B"]
    assert body["connectors"][0] == {"id": uid(1), "name": "A", "type": ".webhook",
                                     "config": {"hasAuth": False, "headers": {"k": "v"}, "url": "https://a"}}
    assert body["connectors"][1]["secrets"] == {"user": "${env:KCR_DEFAULT_B_USER}",
                                                "password": "${env:KCR_DEFAULT_B_PASSWORD}"}
    assert variables == ["KCR_DEFAULT_B_USER", "KCR_DEFAULT_B_PASSWORD"]


def test_export_spaces_files_skips_and_refusals(tmp_path: Path) -> None:
    client = FakeClient({
        "default": [conn(1, "Slack"), conn(9, "pre", is_preconfigured=True)],
        "ops": [LiveConnector("my-human-id", "H", ".server-log", {})],
    })
    result = export_spaces(client, ["default", "ops"], tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in result.files] == [
        "default/connectors.yaml", "default/_space.yaml", "ops/connectors.yaml", "ops/_space.yaml"]
    assert result.variables == ("KCR_DEFAULT_SLACK_WEBHOOK_URL",)
    assert result.connectors == 2
    assert result.skipped == (f"default/{uid(9)} (preconfigured)",)
    assert len(result.warnings) == 1 and "id_mode: verbatim" in result.warnings[0]
    assert yaml.safe_load((tmp_path / "default" / "_space.yaml").read_text()) == {"prune": False}
    with pytest.raises(ConfigError, match="already exist"):
        export_spaces(client, ["default"], tmp_path)
    export_spaces(client, ["default"], tmp_path, overwrite=True)
    with pytest.raises(ConfigError, match="nope not found"):
        export_spaces(client, ["nope"], tmp_path / "other")
    assert not (tmp_path / "other").exists()



def test_export_into_an_unwritable_out_dir_is_a_typed_error_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the export directory should be\n", encoding="utf-8")
    client = FakeClient({"default": [conn(1, "Slack")]})
    with pytest.raises(ConfigError, match=r"not-a-dir/default/connectors\.yaml: cannot be written"):
        export_spaces(client, ["default"], blocker)


SEED: dict[str, Any] = {
    "license": "platinum",
    "spaces": ["default", "security-team"],
    "preconfigured": {"my-slack": {"name": "Pre", "actionTypeId": ".slack", "config": {},
                                   "secrets": {"webhookUrl": "https://hooks.slack.com/pre"}}},
    "connectors": [
        {"id": uid(1), "space": "default", "name": "Ops Slack", "connector_type_id": ".slack", "config": {},
         "secrets": {"webhookUrl": "https://hooks.slack.com/1"}},
        {"id": uid(2), "space": "default", "name": "Ops Slack", "connector_type_id": ".teams", "config": {},
         "secrets": {"webhookUrl": "https://teams.example/2"}},
        {"id": uid(3), "space": "default", "name": "Index", "connector_type_id": ".index",
         "config": {"index": "alerts"}, "secrets": {}},
        {"id": uid(4), "space": "default", "name": "Hook basic", "connector_type_id": ".webhook",
         "config": {"url": "https://hook.example", "method": "put", "hasAuth": True,
                    "authType": "webhook-authentication-basic"},
         "secrets": {"user": "u", "password": "p"}},
        {"id": uid(5), "space": "default", "name": "Hook open", "connector_type_id": ".webhook",
         "config": {"url": "https://hook.example", "hasAuth": False}, "secrets": {}},
        {"id": uid(6), "space": "security-team", "name": "SNOW", "connector_type_id": ".servicenow",
         "config": {"apiUrl": "https://snow.example"}, "secrets": {"username": "u", "password": "p"}},
        {"id": uid(7), "space": "security-team", "name": "PD", "connector_type_id": ".pagerduty",
         "config": {"apiUrl": "https://events.pagerduty.com/v2/enqueue"}, "secrets": {"routingKey": "r"}},
        {"id": uid(8), "space": "security-team", "name": "Log", "connector_type_id": ".server-log",
         "config": {}, "secrets": {}},
    ],
}


def test_export_then_plan_shows_nothing_to_create_or_delete(tmp_path: Path) -> None:
    sb = Sandbox.from_seed(SEED)
    client = KibanaClient(Connection.from_env({"KIBANA_URL": "http://kibana.test"}), transport=sb.transport())
    spaces = ["default", "security-team"]
    result = export_spaces(client, spaces, tmp_path / "connectors")
    assert result.connectors == 8 and result.skipped == tuple(f"{s}/my-slack (preconfigured)" for s in spaces)
    assert "KCR_DEFAULT_HOOK_BASIC_PASSWORD" in result.variables
    assert not any("HOOK_OPEN" in v for v in result.variables)

    env = {name: f"value-of-{name.lower()}" for name in result.variables}
    assert validate_repository(tmp_path, env=env, resolve_secrets=True) == []
    desired = load_repository(tmp_path, env=env)
    live = client.read_live(spaces)
    specs = {owner_label(s): s for space in desired.spaces.values() for s in space.connectors}
    resolved = SecretResolver(env, desired.settings, tmp_path).resolve_many({o: s.secrets for o, s in specs.items()})
    digests = {s.id: resolved[o].digest(s.id, b"key") for o, s in specs.items()}
    plan = make_plan(desired, live, digests=digests, record={})
    assert {c.action for c in plan.changes} <= {Action.NOOP, Action.UPDATE}
    assert [(c.name, c.reason) for c in plan.changes if c.action is not Action.NOOP] == []
    assert len(plan.changes) == 8
    for c in plan.changes:  # ids are Kibana's, verbatim
        assert c.id in {x["id"] for x in SEED["connectors"]}
