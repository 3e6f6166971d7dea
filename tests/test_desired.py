"""load_repository: a good repository, a table of bad ones, and arbitrary input never crashing."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml
from helpers.cli import write_repo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.desired import load, load_repository
from reconciler.errors import ValidationError
from reconciler.model import ConnectorSpec, Settings, SpaceSettings, derive_connector_id
from reconciler.validate import validate_repository

GOOD = {
    "kcr.yaml": """\
id_mode: uuid5
vault:
  mounts: [kv/team-a, legacy:v1]
allow_env: ["PAGERDUTY_*"]
file_roots: [/run/secrets]
""",
    "connectors/default/_space.yaml": "prune: true\nignore: ['legacy-*']\n",
    "connectors/default/slack.yaml": """\
connectors:
  - id: prod-slack-alerts
    name: Production Slack Alerts
    type: .slack
    secrets:
      webhookUrl: ${vault:secret/alerting/slack#webhook_url}
  - id: 0b5bd5a4-3b0f-4c59-8a8e-0d7f4b6b1f0e
    name: Adopted
    type: .server-log
""",
    "connectors/default/paging.yml": """\
connectors:
  - id: pagerduty-oncall
    name: PagerDuty Incidents
    type: .pagerduty
    config:
      apiUrl: https://events.pagerduty.com/v2/enqueue
    secrets:
      routingKey: ${env:PAGERDUTY_ROUTING_KEY}
    protect: true
  - id: hook
    name: Hook
    type: .webhook
    config: {url: "https://hooks.example/x", hasAuth: true}
    secrets:
      user: ${env:HOOK_USER}
      password: ${file:secrets/hook}
      secretHeaders:
        Authorization: Bearer ${env:HOOK_TOKEN}
""",
    "connectors/security-team/jira.yaml": """\
connectors:
  - id: prod-slack-alerts
    name: Security Jira
    type: .jira
    config: {apiUrl: "https://jira.example", projectKey: SEC}
    secrets: {email: "${env:JIRA_EMAIL}", apiToken: "${vault:kv/team-a/jira#token@3}"}
""",
    "connectors/.gitkeep": "",  # a placeholder is allowed; any other non-space entry is an error
}


def test_good_repository(tmp_path: Path) -> None:
    state = load_repository(write_repo(tmp_path, dict(GOOD)))
    assert state.settings == Settings(id_mode="uuid5", vault_mounts=("kv/team-a", "legacy:v1"),
                                      allow_env=("PAGERDUTY_*",), file_roots=("/run/secrets",))
    assert sorted(state.spaces) == ["default", "security-team"]
    default = state.spaces["default"]
    assert default.settings == SpaceSettings(prune=True, ignore=("legacy-*",))
    assert default.directory == "connectors/default"
    assert [c.key for c in default.connectors] == ["pagerduty-oncall", "hook", "prod-slack-alerts",
                                                   "0b5bd5a4-3b0f-4c59-8a8e-0d7f4b6b1f0e"]  # files sorted by name
    pd = default.connectors[0]
    assert pd == ConnectorSpec(
        space="default", key="pagerduty-oncall", id="ade08901-ed7f-5e9a-a0d8-0993aef8561f",
        name="PagerDuty Incidents", type=".pagerduty",
        config={"apiUrl": "https://events.pagerduty.com/v2/enqueue"},
        secrets={"routingKey": "${env:PAGERDUTY_ROUTING_KEY}"}, protect=True,
        location=pd.location, locations=pd.locations)
    # derived ids are documented: uuid5(KCR_ID_NAMESPACE, "<space>/<key>"), stable across runs and machines
    assert pd.id == str(uuid.uuid5(uuid.UUID("6f1c3a52-5d0e-5b8e-9a51-6b6372000001"), "default/pagerduty-oncall"))
    assert pd.location is not None and (pd.location.file, pd.location.line) == ("connectors/default/paging.yml", 2)
    assert pd.locations["config.apiUrl"].line == 6 and pd.locations["secrets.routingKey"].line == 8
    adopted = default.connectors[3]
    assert adopted.id == adopted.key and adopted.config == {} and adopted.secrets == {}
    same_key = state.spaces["security-team"].connectors[0]
    assert same_key.key == "prod-slack-alerts" and same_key.id == derive_connector_id("security-team",
                                                                                    "prod-slack-alerts")
    assert same_key.id != default.connectors[2].id


def test_verbatim_ids_and_space_filter(tmp_path: Path) -> None:
    files = dict(GOOD)
    files["kcr.yaml"] = "id_mode: verbatim\n"
    del files["connectors/security-team/jira.yaml"]
    state = load_repository(write_repo(tmp_path, files), spaces=["default"])
    assert [c.id for c in state.spaces["default"].connectors][:2] == ["pagerduty-oncall", "hook"]


def test_space_filter_names_missing_space(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        load_repository(write_repo(tmp_path, dict(GOOD)), spaces=["nope"])
    assert "space 'nope' has no directory" in str(info.value)


CONNECTOR = "connectors:\n  - id: {id}\n    name: {name}\n    type: {type}\n{rest}"


def one(id: str = "ok", name: str = "N", type: str = ".server-log", rest: str = "") -> str:
    return CONNECTOR.format(id=id, name=name, type=type, rest=rest)


BAD: list[tuple[str, dict[str, str | bytes], str, int | None]] = [
    ("malformed yaml", {"connectors/default/a.yaml": "connectors:\n  - id: [x\n"}, "malformed YAML", 3),
    ("duplicate keys", {"connectors/default/a.yaml": one(rest="    name: again\n")},
     "duplicate key 'name' (first defined at line 3, again at line 5)", 5),
    ("path traversal id", {"connectors/default/a.yaml": one(id="../../api/security")}, "neither a key", 2),
    ("uppercase id", {"connectors/default/a.yaml": one(id="Prod")}, "neither a key", 2),
    ("id with space", {"connectors/default/a.yaml": one(id="'a b'")}, "neither a key", 2),
    ("id not a string", {"connectors/default/a.yaml": one(id="[1]")}, "must be a string, not a list", 2),
    ("missing name", {"connectors/default/a.yaml": "connectors:\n  - id: x\n    type: .server-log\n"},
     "'name' is a required property", 2),
    ("bad space dir", {"connectors/Prod/a.yaml": one()}, "is not a Kibana space id", None),
    ("dotted space dir", {"connectors/a.b/a.yaml": one()}, "is not a Kibana space id", None),
    ("file outside a space", {"connectors/a.yaml": one()}, "belong in a space directory", None),
    ("misspelt type", {"connectors/default/a.yaml": one(type=".pagerdty")},
     "unknown connector type '.pagerdty'; did you mean '.pagerduty'?", 4),
    ("near-miss type", {"connectors/default/a.yaml": one(type="slack")}, "did you mean '.slack'?", 4),
    ("system action", {"connectors/default/a.yaml": one(type=".cases")}, "system action", 4),
    ("config schema", {"connectors/default/a.yaml": one(type=".jira", rest="    config: {projectKey: K}\n"
                                                        "    secrets: {email: '${env:E}', apiToken: '${env:T}'}\n")},
     "config.apiUrl: 'apiUrl' is a required property", 5),
    ("kibana cross-field rule", {"connectors/default/a.yaml": one(
        type=".email", rest="    config: {from: a@example.com, host: smtp.example.com, port: 25, hasAuth: true}\n")},
     "Kibana would refuse this connector: error validating action type connector: [user] is required", 2),
    ("kibana url parse", {"connectors/default/a.yaml": one(
        type=".webhook", rest="    config: {url: not a url, hasAuth: false}\n")},
     "unable to parse url", 2),
    ("config extra key", {"connectors/default/a.yaml": one(rest="    config: {bogus: 1}\n")},
     "unknown key 'bogus'", 5),
    ("config wrong type", {"connectors/default/a.yaml": one(type=".index", rest="    config: {index: 5}\n")},
     "config.index: must be a string, not 5", 5),
    ("blank name", {"connectors/default/a.yaml": one(name="'  '")}, "name: value '' is not valid", 3),
    ("blank config", {"connectors/default/a.yaml": one(type=".index", rest="    config: {index: ''}\n")},
     "config.index: value '' is not valid", 5),
    ("blank in array", {"connectors/default/a.yaml": one(type=".index", rest="    config: {index: i, x: [' ']}\n")},
     "config.x[0]: value '' is not valid", 5),
    ("plaintext secret", {"connectors/default/a.yaml": one(type=".slack", rest="    secrets: {webhookUrl: hunter2}\n")},
     "secrets.webhookUrl: plaintext secret", 5),
    ("nested plaintext", {"connectors/default/a.yaml": one(
        type=".webhook", rest="    config: {url: 'https://x'}\n    secrets: {secretHeaders: {X: plain}}\n")},
     "secrets.secretHeaders.X: plaintext secret", 6),
    ("numeric secret", {"connectors/default/a.yaml": one(type=".slack", rest="    secrets: {webhookUrl: 1234}\n")},
     "plaintext secret", 5),
    ("malformed reference", {"connectors/default/a.yaml": one(type=".slack",
                                                              rest="    secrets: {webhookUrl: '${env:A'}\n")},
     "malformed secret reference", 5),
    ("gitlab style vault", {"connectors/default/a.yaml": one(
        type=".slack", rest="    secrets: {webhookUrl: '${vault:prod/db/password@ops}'}\n")},
     "after @ comes a version number", 5),
    ("missing secrets", {"connectors/default/a.yaml": one(type=".slack")}, "needs secrets (webhookUrl)", 2),
    ("secrets shape", {"connectors/default/a.yaml": one(type=".slack", rest="    secrets: {hook: '${env:A}'}\n")},
     "secrets.webhookUrl: 'webhookUrl' is a required property", 5),
    ("run credential", {"connectors/default/a.yaml": one(
        type=".slack", rest="    secrets: {webhookUrl: 'https://x/${env:CI_JOB_TOKEN}'}\n")},
     "CI_JOB_TOKEN is a credential of the kcr run itself", 5),
    ("vault token", {"connectors/default/a.yaml": one(
        type=".slack", rest="    secrets: {webhookUrl: '${env:VAULT_TOKEN}'}\n")},
     "allow_env", 5),
    ("duplicate across files", {"connectors/default/a.yaml": one(id="x"), "connectors/default/b.yaml": one(id="x")},
     "duplicate id 'x' in space 'default' (first declared at connectors/default/a.yaml:2:5)", 2),
    ("uuid clashes with derived id", {"connectors/default/a.yaml": one(id="x"),
                                      "connectors/default/b.yaml": one(id=derive_connector_id("default", "x"))},
     "both become Kibana id", 2),
    ("uuid in two spaces", {"connectors/default/a.yaml": one(id="0b5bd5a4-3b0f-4c59-8a8e-0d7f4b6b1f0e"),
                            "connectors/other/a.yaml": one(id="0b5bd5a4-3b0f-4c59-8a8e-0d7f4b6b1f0e")},
     "global across spaces", 2),
    ("protect not bool", {"connectors/default/a.yaml": one(rest="    protect: maybe\n")},
     "must be true or false, not \"maybe\"", 5),
    ("unknown connector key", {"connectors/default/a.yaml": one(rest="    secret: {}\n")},
     "unknown key 'secret' (did you mean 'secrets'?)", 5),  # the key's own line
    ("not a list", {"connectors/default/a.yaml": "connectors: {id: x}\n"}, "must be a list, not a mapping", 1),
    ("empty file", {"connectors/default/a.yaml": ""}, "the file is empty", 1),
    ("alias bomb", {"connectors/default/a.yaml": "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join(['*a' if i == 0 else f'*a{i - 1}'] * 10)}]\n" for i in range(8))},
     "alias bomb", None),
    ("huge file", {"connectors/default/a.yaml": "connectors: []\n#" + "x" * (1024 * 1024 + 10) + "\n"},
     "byte limit", None),
    ("not utf-8", {"connectors/default/a.yaml": b"connectors:\n  - id: \xe9t\xe9\n"}, "not UTF-8", 2),
    ("bad settings", {"kcr.yaml": "id_mode: fancy\n", "connectors/default/a.yaml": one()},
     'must be one of "uuid5", "verbatim", not "fancy"', 1),
    ("bad space settings", {"connectors/default/_space.yaml": "prune: yes please\n",
                            "connectors/default/a.yaml": one()},
     'must be true or false, not "yes please"', 1),
    ("no connectors dir", {"kcr.yaml": ""}, "no connectors/ directory", None),
]


@pytest.mark.parametrize(("case", "files", "needle", "line"), BAD, ids=[b[0] for b in BAD])
def test_bad_repositories(tmp_path: Path, case: str, files: dict[str, str | bytes], needle: str,
                          line: int | None) -> None:
    with pytest.raises(ValidationError) as info:
        load_repository(write_repo(tmp_path, files))
    matching = [p for p in info.value.problems if needle in p.message]
    assert matching, f"{case}: {needle!r} not in {[str(p) for p in info.value.problems]}"
    problem = matching[0]
    assert problem.file and (problem.file.startswith("connectors") or problem.file == "kcr.yaml")
    if line is not None:
        assert problem.line == line, str(problem)
        assert problem.column is not None


def test_every_problem_at_once(tmp_path: Path) -> None:
    write_repo(tmp_path, {"connectors/default/a.yaml": one(id="A", type="slack") + "  - id: b\n    name: ''\n"
                     "    type: .server-log\n", "connectors/default/b.yaml": "x: [\n"})
    problems = validate_repository(tmp_path)
    messages = " | ".join(p.message for p in problems)
    for needle in ("neither a key", "did you mean '.slack'", "value '' is not valid", "malformed YAML"):
        assert needle in messages


def test_plaintext_allowed_is_a_warning(tmp_path: Path) -> None:
    write_repo(tmp_path, {"connectors/default/a.yaml": one(type=".slack", rest="    secrets: {webhookUrl: CANARY-x}\n"),
                     "kcr.yaml": "allow_plaintext_secrets: true\n"})
    result = load(tmp_path)
    assert result.state is not None
    assert [p.severity for p in result.problems] == ["warning"]
    assert "CANARY" not in str(result.problems[0])
    write_repo(tmp_path, {"kcr.yaml": ""})
    assert load(tmp_path).state is None
    assert load(tmp_path, allow_plaintext_secrets=True).state is not None


def test_canary_secrets_never_in_problems(tmp_path: Path) -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    write_repo(tmp_path, {"connectors/default/a.yaml": one(
        type=".webhook", rest=f"    config: {{url: 'https://x'}}\n    secrets: {{user: {canary}, pfx: '{canary}',"
                              f" secretHeaders: {{X: '{canary}'}}, bogus: '{canary}'}}\n")})
    problems = validate_repository(tmp_path)
    assert problems
    assert all(canary not in str(p) for p in problems)


yamlish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12)
    | st.sampled_from([".slack", ".webhook", "${env:A}", "${vault:a/b#c}", "connectors", "id", ""]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["connectors", "id", "name", "type", "config", "secrets", "protect", "url",
                                       "webhookUrl", "x"]) | st.text(max_size=6), children, max_size=4),
    max_leaves=15,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(doc=yamlish | st.fixed_dictionaries({"connectors": st.lists(yamlish, max_size=3)}),
       raw=st.none() | st.binary(max_size=80))
def test_any_document_loads_or_fails_validation(tmp_path: Path, doc: object, raw: bytes | None) -> None:
    data = raw if raw is not None else yaml.safe_dump(doc).encode("utf-8")
    write_repo(tmp_path, {"connectors/default/h.yaml": data})
    try:
        state = load_repository(tmp_path)
    except ValidationError as exc:
        assert exc.problems
    else:
        assert "default" in state.spaces
