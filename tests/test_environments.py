"""Issue #13, environments: per-environment presence and fan-out over spaces (through
`reconciler.desired.load`), and the session a command runs with (in-process through the CLI, with
the sandbox or a recording transport): which environment is selected, which Kibana and credentials
it reaches, where its record goes, and that a saved plan stays with its environment. Every refusal
happens before a request is sent."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from helpers import cli
from helpers.cli import write_repo
from helpers.transports import Recorder

from reconciler.desired import load
from reconciler.errors import Problem
from reconciler.model import derive_connector_id
from reconciler.sandbox import Sandbox
from reconciler.validate import validate

TWO = """\
environments:
  staging:
    vars: {channel: stg}
  production:
    vars: {channel: prod}
"""
LOG = """\
connectors:
  - id: log
    name: Log ${var:channel}
    type: .server-log
"""


def keys(root: Path, environment: str | None, space: str = "default") -> list[str]:
    result = load(root, env={}, environment=environment)
    assert not result.errors, [f"{p.location()}: {p.message}" for p in result.errors]
    assert result.state is not None
    return sorted(spec.key for spec in result.state.spaces[space].connectors)


def errors(root: Path, environment: str | None = None) -> list[Problem]:
    result = load(root, env={}, environment=environment)
    assert result.errors and not result.states
    return list(result.errors)


# --- presence ------------------------------------------------------------------------------------------


def test_environments_on_a_connector_limits_where_it_exists(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"kcr.yaml": TWO, "connectors/default/main.yaml": LOG + """\
  - id: pager
    name: Pager
    type: .server-log
    environments: [production]
"""})
    assert keys(root, "production") == ["log", "pager"]
    assert keys(root, "staging") == ["log"]
    every = load(root, env={})
    assert set(every.states) == {"production", "staging"} and every.environments == ("production", "staging")


def test_a_file_default_applies_to_every_item_and_an_item_overrides_it(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"kcr.yaml": TWO, "connectors/default/prod.yaml": """\
environments: [production]
connectors:
  - id: pager
    name: Pager
    type: .server-log
  - id: both
    name: Both
    type: .server-log
    environments: [staging, production]
""", "connectors/default/main.yaml": LOG})
    assert keys(root, "production") == ["both", "log", "pager"]
    assert keys(root, "staging") == ["both", "log"]


def test_an_unknown_environment_name_suggests_the_declared_one(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"kcr.yaml": TWO, "connectors/default/main.yaml": LOG + """\
  - id: pager
    name: Pager
    type: .server-log
    environments: [prodution]
"""})
    (problem,) = errors(root)
    assert problem.location() == "connectors/default/main.yaml:8:19"
    assert "environment 'prodution' is not declared in kcr.yaml (declared: production, staging)" in problem.message
    assert "did you mean 'production'?" in problem.message


def test_environments_without_declared_environments_is_refused(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"connectors/default/main.yaml": """\
environments: [production]
connectors:
  - id: log
    name: Log
    type: .server-log
"""})
    (problem,) = errors(root)
    assert problem.line == 1 and "kcr.yaml declares none" in problem.message


def test_spaces_outside_connectors_all_is_refused(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"connectors/default/main.yaml": """\
connectors:
  - id: log
    name: Log
    type: .server-log
    spaces: [default, ops]
"""})
    (problem,) = errors(root)
    assert problem.path == "connectors[0].spaces"
    assert "`spaces:` is read only in connectors/_all/" in problem.message


# --- fan-out -------------------------------------------------------------------------------------------

FANOUT = {
    "connectors/_all/log.yaml": """\
connectors:
  - id: log
    name: Log for ${var:space}
    type: .webhook
    spaces: [alpha, beta, gamma]
    config:
      url: https://hooks.example.com/${var:space}
      hasAuth: false
""",
}


def test_fan_out_gives_one_copy_per_space_with_its_own_id(tmp_path: Path) -> None:
    root = write_repo(tmp_path, FANOUT)
    result = load(root, env={})
    assert not result.errors
    assert result.state is not None
    assert sorted(result.state.spaces) == ["alpha", "beta", "gamma"]
    copies = [spec for space in result.state.spaces.values() for spec in space.connectors]
    assert len(copies) == 3 and len({spec.id for spec in copies}) == 3
    for spec in copies:
        assert spec.id == derive_connector_id(spec.space, "log")
        assert spec.name == f"Log for {spec.space}"
        assert spec.config["url"] == f"https://hooks.example.com/{spec.space}"


def test_fan_out_to_all_spaces_and_an_environment_subset(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {
        "kcr.yaml": "environments:\n  staging: {spaces: [alpha]}\n  production: {}\n",
        "connectors/alpha/_space.yaml": "prune: false\n",
        "connectors/beta/main.yaml": LOG.replace("${var:channel}", "beta"),
        "connectors/_all/log.yaml": "connectors:\n  - id: every\n    name: Every ${var:space}\n    type: .server-log\n",
    })
    result = load(root, env={})
    assert not result.errors
    production, staging = result.states["production"], result.states["staging"]
    assert sorted(staging.spaces) == ["alpha"]
    assert sorted(production.spaces) == ["alpha", "beta"]
    assert [s.name for s in staging.spaces["alpha"].connectors] == ["Every alpha"]
    assert sorted(s.name for s in production.spaces["beta"].connectors) == ["Every beta", "Log beta"]


def test_validating_a_space_the_selected_environment_lacks_is_an_error_not_silence(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {
        "kcr.yaml": "environments:\n  staging: {spaces: [alpha]}\n  production: {}\n",
        "connectors/alpha/main.yaml": LOG.replace("${var:channel}", "alpha"),
        "connectors/beta/main.yaml": LOG.replace("${var:channel}", "beta"),
    })
    report = validate(root, spaces=["beta"], env={}, environment="staging")
    assert [p.message for p in report.errors] == ["space 'beta' is not one of environment 'staging''s spaces "
                                                  "(environments.staging.spaces)"]
    assert validate(root, spaces=["beta"], env={}, environment="production").ok


def test_an_environment_listing_an_undeclared_space_is_an_error(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"kcr.yaml": "environments:\n  staging: {spaces: [default, opps]}\n",
                                 "connectors/default/main.yaml": LOG.replace("${var:channel}", "x")})
    (problem,) = errors(root)
    assert problem.file == "kcr.yaml" and problem.path == "environments.staging.spaces"
    assert "environment 'staging' lists space 'opps', which the repository does not declare" in problem.message


def test_connectors_all_names_a_space_the_environment_lacks(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"kcr.yaml": "environments:\n  staging: {spaces: [alpha]}\n", **FANOUT})
    result = load(root, env={}, environment="staging")
    assert not result.errors and result.state is not None
    assert [spec.space for space in result.state.spaces.values() for spec in space.connectors] == ["alpha"]


# --- problems per environment --------------------------------------------------------------------------


def test_a_problem_of_one_environment_names_it_and_a_shared_one_is_said_once(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {
        "kcr.yaml": "environments:\n  staging: {vars: {port: not-a-port}}\n  production: {vars: {port: 25}}\n",
        "connectors/default/main.yaml": """\
connectors:
  - id: mail
    name: Mail
    type: .email
    config:
      from: a@example.com
      host: smtp.example.com
      port: ${var:port}
      service: other
  - id: bad
    name: Bad
    type: .slak
""",
    })
    problems = errors(root)
    assert len(problems) == 2, [p.message for p in problems]
    by_line = {p.line: p.message for p in problems}
    assert by_line[8].startswith("in environment staging: ")
    assert "production" not in by_line[8]
    assert by_line[12].startswith("unknown connector type '.slak'")  # both environments: said once, unprefixed
    narrowed = load(root, env={}, environment="staging")
    assert [p.line for p in narrowed.errors] == [8, 12]
    assert not any(p.message.startswith("in environment") for p in narrowed.errors)  # one environment: no prefix
    assert [p.line for p in load(root, env={}, environment="production").errors] == [12]


def test_validate_counts_environments_connectors_and_spaces(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"kcr.yaml": TWO, "connectors/default/main.yaml": LOG, **FANOUT})
    report = validate(root)
    assert not report.errors
    assert (report.files, report.connectors, report.spaces) == (2, 2, 4)
    assert report.environments == ("production", "staging")
    assert validate(root, environment="staging").environments == ("staging",)


# --- the session: selection, Kibana, credentials, record -----------------------------------------------

KIBANA = "http://kibana.test"
STAGING_URL = "http://staging.kibana.test"
STAGING_KEY = "staging-api-key-1f2e"
SESSION_REPO = {
    "kcr.yaml": f"""\
environments:
  staging:
    kibana_url: {STAGING_URL}
    credentials: {{api_key: STAGING_KIBANA_KEY}}
    record: {{path: records/staging.json}}
    vars: {{channel: stg}}
  production:
    vars: {{channel: prod}}
""",
    "connectors/default/main.yaml": """\
connectors:
  - id: log
    name: Log ${var:channel}
    type: .server-log
  - id: slack
    name: Slack ${var:channel}
    type: .slack
    secrets:
      webhookUrl: ${env:SLACK_URL}
""",
}
BASE_ENV = {"KIBANA_URL": KIBANA, "KIBANA_API_KEY": "production-api-key", "KIBANA_USERNAME": "elastic",
            "KIBANA_PASSWORD": "changeme", "STAGING_KIBANA_KEY": STAGING_KEY, "NO_COLOR": "1",
            "SLACK_URL": "https://hooks.slack.com/services/CANARY-7c1d", "KCR_FINGERPRINT_KEY": "k" * 32}


@pytest.fixture()
def world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> cli.World:
    sb = Sandbox.from_seed({"license": "platinum", "spaces": ["default"],
                            "auth": {"api_keys": [STAGING_KEY, "production-api-key"]}})
    return cli.World(repo=write_repo(tmp_path / "repo", SESSION_REPO), env=dict(BASE_ENV), sb=sb, capsys=capsys)


def recorder(w: cli.World) -> Recorder:
    return Recorder(w.sb.transport().handle_request)


@pytest.mark.parametrize("command", [["plan"], ["drift"], ["apply", "--auto-approve"]])
def test_commands_refuse_without_a_selected_environment_and_send_nothing(world: cli.World,
                                                                         command: list[str]) -> None:
    seen = recorder(world)
    code, out, err = world.kcr(*command, transport=seen.transport())
    assert code == 1, out + err
    assert "kcr.yaml declares environments (production, staging): select one with --env NAME or KCR_ENV" in err
    assert seen.requests == []


def test_kcr_env_and_the_flag_select_and_the_flag_wins(world: cli.World) -> None:
    code, out, err = world.kcr("plan", env={**world.env, "KCR_ENV": "production"})
    assert code == 0, out + err
    assert out.startswith("Environment production: Kibana http://kibana.test")
    assert "Log prod" in out and "Log stg" not in out
    code, out, err = world.kcr("plan", "--env", "staging", env={**world.env, "KCR_ENV": "production"})
    assert code == 0, out + err
    assert "Log stg" in out and "Log prod" not in out


def test_env_without_declared_environments_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = cli.World(write_repo(tmp_path / "plain", {"connectors/default/main.yaml": LOG.replace("${var:channel}", "x")}),
                  dict(BASE_ENV), Sandbox.from_seed({"spaces": ["default"]}), capsys)
    seen = recorder(w)
    for args in (["plan", "--env", "staging"], ["validate", "--env", "staging"]):
        code, out, err = w.kcr(*args, transport=seen.transport())
        assert code == 1, out + err
        assert "environment 'staging' was selected" in out + err and "declares no environments" in out + err
    code, _, err = w.kcr("plan", env={**w.env, "KCR_ENV": "staging"}, transport=seen.transport())
    assert code == 1 and "declares no environments" in err
    assert seen.requests == []


def test_an_undeclared_environment_is_refused(world: cli.World) -> None:
    seen = recorder(world)
    code, _, err = world.kcr("plan", "--env", "prod", transport=seen.transport())
    assert code == 1 and "environment 'prod' is not declared in kcr.yaml (declared: production, staging)" in err
    assert seen.requests == []


def auth_of(seen: Recorder) -> set[str]:
    return {r.headers.get("authorization", "") for r in seen.requests}


def test_an_environment_with_its_own_url_and_key_uses_only_those(world: cli.World) -> None:
    seen = recorder(world)
    code, out, err = world.kcr("plan", "--env", "staging", transport=seen.transport())
    assert code == 0, out + err
    assert seen.requests and {r.url.host for r in seen.requests} == {"staging.kibana.test"}
    assert auth_of(seen) == {f"ApiKey {STAGING_KEY}"}  # KIBANA_API_KEY and KIBANA_USERNAME/PASSWORD dropped
    assert "several credentials" not in err.lower()


def test_an_environment_without_its_own_settings_uses_kibana_variables(world: cli.World) -> None:
    seen = recorder(world)
    env = {k: v for k, v in world.env.items() if k not in ("KIBANA_USERNAME", "KIBANA_PASSWORD")}
    code, out, err = world.kcr("plan", "--env", "production", transport=seen.transport(), env=env)
    assert code == 0, out + err
    assert {r.url.host for r in seen.requests} == {"kibana.test"}
    assert auth_of(seen) == {"ApiKey production-api-key"}


def test_a_credential_variable_that_is_not_set_is_an_error_naming_it(world: cli.World) -> None:
    seen = recorder(world)
    env = {k: v for k, v in world.env.items() if k != "STAGING_KIBANA_KEY"}
    code, out, err = world.kcr("plan", "--env", "staging", transport=seen.transport(), env=env)
    assert code == 1, out + err
    assert "environment 'staging' (kcr.yaml) reads its Kibana api key from STAGING_KIBANA_KEY, which is not set" in err
    assert seen.requests == []  # never a fall back to KIBANA_API_KEY (production's)


def test_basic_credentials_of_an_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = write_repo(tmp_path / "repo", {
        "kcr.yaml": "environments:\n  lab:\n    kibana_url_env: LAB_URL\n"
                    "    credentials: {username: LAB_USER, password: LAB_PASS}\n",
        "connectors/default/main.yaml": LOG.replace("${var:channel}", "x")})
    sb = Sandbox.from_seed({"spaces": ["default"], "auth": {"users": {"lab": "lab-pass"}}})
    w = cli.World(repo, {**BASE_ENV, "LAB_URL": "http://lab.kibana.test", "LAB_USER": "lab", "LAB_PASS": "lab-pass"},
                  sb, capsys)
    seen = recorder(w)
    code, out, err = w.kcr("plan", "--env", "lab", transport=seen.transport())
    assert code == 0, out + err
    assert auth_of(seen) == {"Basic " + base64.b64encode(b"lab:lab-pass").decode()}
    assert {r.url.host for r in seen.requests} == {"lab.kibana.test"}
    code, _, err = w.kcr("plan", "--env", "lab", transport=seen.transport(),
                         env={k: v for k, v in w.env.items() if k != "LAB_URL"})
    assert code == 1 and "environment 'lab' (kcr.yaml) reads its Kibana URL from LAB_URL, which is not set" in err


def test_a_contradicting_kibana_url_is_refused(world: cli.World) -> None:
    seen = recorder(world)
    code, _, err = world.kcr("plan", "--env", "staging", "--kibana-url", "http://other.kibana.test",
                             transport=seen.transport())
    assert code == 1
    assert "--kibana-url http://other.kibana.test is not the Kibana of environment 'staging'" in err
    assert seen.requests == []
    code, out, err = world.kcr("plan", "--env", "staging", "--kibana-url", STAGING_URL + "/")
    assert code == 0, out + err  # the same Kibana, spelt another way


def test_the_record_goes_where_the_environment_says(world: cli.World) -> None:
    code, out, err = world.kcr("apply", "--auto-approve", "--env", "staging")
    assert code == 0, out + err
    record = world.repo / "records" / "staging.json"
    assert record.is_file()
    assert derive_connector_id("default", "slack") in record.read_text()
    assert "CANARY" not in record.read_text()
    assert sorted(c["name"] for c in world.sb.connectors_in("default")) == ["Log stg", "Slack stg"]


def test_a_saved_plan_stays_with_its_environment(world: cli.World, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    code, out, err = world.kcr("plan", "--env", "staging", "--out", str(plan_file))
    assert code == 0, out + err
    assert json.loads(plan_file.read_text())["environment"] == "staging"
    seen = recorder(world)
    for env, flags in (({**world.env}, ["--env", "production"]), ({**world.env}, []),
                       ({**world.env, "KCR_ENV": "production"}, [])):
        code, out, err = world.kcr("apply", str(plan_file), *flags, transport=seen.transport(), env=env)
        assert code == 1, out + err
        assert seen.requests == [], err
        assert "staging" in err
    code, out, err = world.kcr("apply", str(plan_file), "--env", "staging")
    assert code == 0, out + err
    assert sorted(c["name"] for c in world.sb.connectors_in("default")) == ["Log stg", "Slack stg"]


def test_a_repository_without_environments_writes_no_environment_key(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    w = cli.World(write_repo(tmp_path / "plain", {"connectors/default/main.yaml": LOG.replace("${var:channel}", "x")}),
                  {"KIBANA_URL": KIBANA, "NO_COLOR": "1"}, Sandbox.from_seed({"spaces": ["default"]}), capsys)
    plan_file = tmp_path / "plan.json"
    code, out, err = w.kcr("plan", "--out", str(plan_file))
    assert code == 0, out + err
    body = json.loads(plan_file.read_text())
    assert "environment" not in body
    assert "nvironment" not in out
    code, out, err = w.kcr("apply", str(plan_file))
    assert code == 0, out + err


def test_a_problem_only_one_environment_has_is_prefixed_even_when_it_mentions_environments(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"kcr.yaml": TWO, "connectors/default/main.yaml": """\
connectors:
  - id: jira
    name: Jira
    type: .index
    environments: [production]
    config:
      index: ${env:INDEX}
"""})
    (problem,) = errors(root)
    assert problem.message.startswith("in environment production: config.index: a secret reference is read only")


@pytest.mark.parametrize("spaces", ["ops", "[]", "[Ops]"])
def test_a_malformed_spaces_list_is_an_error_not_every_space(tmp_path: Path, spaces: str) -> None:
    root = write_repo(tmp_path, {"connectors/ops/_space.yaml": "prune: true\n",
                                 "connectors/_all/hook.yaml": f"""\
connectors:
  - id: hook
    name: Hook
    type: .server-log
    spaces: {spaces}
"""})
    problems = errors(root)
    assert any(p.path == "connectors[0].spaces" and p.file == "connectors/_all/hook.yaml" for p in problems), \
        [(p.path, p.message) for p in problems]


def test_one_id_fanned_out_is_refused_as_a_global_id_clash(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"connectors/_all/hook.yaml": """\
connectors:
  - id: 0b5bd5a4-3b0f-4c59-8a8e-0d7f4b6b1f0e
    name: Hook
    type: .server-log
    spaces: [alpha, beta]
"""})
    (problem,) = errors(root)
    assert "Kibana ids are global across spaces" in problem.message


def test_load_repository_refuses_a_single_declared_environment_that_was_not_selected(tmp_path: Path) -> None:
    from reconciler.desired import load_repository
    from reconciler.errors import ConfigError

    root = write_repo(tmp_path, {"kcr.yaml": "environments:\n  only: {vars: {channel: x}}\n",
                                 "connectors/default/main.yaml": LOG})
    with pytest.raises(ConfigError, match="declares environments \\(only\\): select one"):
        load_repository(root, env={})
    assert load_repository(root, env={}, environment="only").environment == "only"


def test_validate_names_the_environment_and_the_place_of_an_undefined_var(world: cli.World) -> None:
    main = world.repo / "connectors" / "default" / "main.yaml"
    main.write_text(main.read_text().replace("name: Log ${var:channel}", "name: Log ${var:channel} ${var:team}"))
    (world.repo / "kcr.yaml").write_text(SESSION_REPO["kcr.yaml"].replace("vars: {channel: prod}",
                                                                          "vars: {channel: prod, team: ops}"))
    seen = recorder(world)
    code, out, err = world.kcr("validate", transport=seen.transport())
    assert code == 1, out + err
    assert ("connectors/default/main.yaml:3:11: error: name: ${var:team} is not defined for environment 'staging'"
            in out)
    assert "for environment 'production'" not in out
    assert "2 environments (production, staging)" in out
    code, out, err = world.kcr("validate", "--env", "production", "--format", "json", transport=seen.transport())
    assert code == 0, out + err
    assert json.loads(out)["environments"] == ["production"]
    assert seen.requests == []  # validate is offline
