"""GitLab file variables: `${file:${env:NAME}}` (NAME holds the path of a temporary file the runner
wrote) and `file_roots` entries expanding `${env:..}` (`${env:CI_PROJECT_DIR}.tmp`, where GitLab writes
them). End to end through `kcr plan`/`apply` against the in-process sandbox; the canary secret never
reaches the output, nor does the path a variable holds."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from helpers.cli import World, write_repo

from reconciler.model import Settings, derive_connector_id
from reconciler.references import Reference, ReferenceSyntaxError, parse_template
from reconciler.sandbox import Sandbox
from reconciler.secret_backends.file import RootError, expand_root

CANARY = f"CANARY-file-variable-{uuid.uuid4()}"
WEBHOOK = f"https://hooks.slack.com/services/{CANARY}"
CONNECTOR = """connectors:
  - id: team-slack
    name: Team Slack
    type: .slack
    secrets:
      webhookUrl: ${file:${env:SLACK_WEBHOOK_FILE}}
"""
KCR_YAML = """# settings
file_roots:
  - /run/secrets
  - ${env:CI_PROJECT_DIR}.tmp
"""
ROOT_LINE = 4  # the `${env:CI_PROJECT_DIR}.tmp` entry in KCR_YAML


def _world(tmp_path: Path, capsys: pytest.CaptureFixture[str], *, kcr_yaml: str = KCR_YAML,
           connector: str = CONNECTOR) -> World:
    """A GitLab job's layout: the clone in <builds>/proj, the runner's file variables in
    <builds>/proj.tmp/<NAME> (content with a trailing newline, as GitLab writes it)."""
    repo = write_repo(tmp_path / "proj", {"kcr.yaml": kcr_yaml, "connectors/default/team.yaml": connector})
    variable = tmp_path / "proj.tmp" / "SLACK_WEBHOOK_FILE"
    variable.parent.mkdir()
    variable.write_text(WEBHOOK + "\n", encoding="utf-8")
    env = {"KIBANA_URL": "http://kibana.test", "KIBANA_API_KEY": "k", "KCR_FINGERPRINT_KEY": "fp", "NO_COLOR": "1",
           "CI_PROJECT_DIR": str(repo), "SLACK_WEBHOOK_FILE": str(variable)}
    return World(repo, env, Sandbox.from_seed({"spaces": ["default"]}), capsys)


def _no_canary(*texts: str) -> None:
    for text in texts:
        assert CANARY not in text, "the secret reached the output"


# --- syntax -----------------------------------------------------------------------------------------------


def test_a_file_whose_path_a_variable_holds_parses_as_one_file_reference() -> None:
    template = parse_template("Bearer ${file:${env:TOKEN_FILE}}!")
    assert template.parts == ("Bearer ", Reference("file", "${env:TOKEN_FILE}"), "!")
    ref = template.references[0]
    assert ref.text == "${file:${env:TOKEN_FILE}}" and ref.env_name == "TOKEN_FILE"
    assert Reference("file", "certs/ca.pem").env_name is None and Reference("env", "X").env_name == "X"
    escaped = parse_template("$${file:${env:X}}")  # the escape still wins: a literal, then ${env:X}
    assert escaped.parts == ("${file:", Reference("env", "X"), "}")


@pytest.mark.parametrize(("text", "said"), [
    ("${file:${env:}}", "variable name"),
    ("${file:${env:9LIVES}}", "variable name"),
    ("${file:${env:A}", "closed by '}}'"),
    ("${file:${env:A}x}", "closed by '}}'"),
    ("${file:${vault:kv/x#y}}", "nested"),
    ("${vault:${env:A}}", "nested"),
    ("${file:${env:${env:A}}}", "variable name"),
])
def test_other_nestings_are_refused_without_echoing_the_string(text: str, said: str) -> None:
    with pytest.raises(ReferenceSyntaxError) as caught:
        parse_template(text)
    assert said in str(caught.value)
    assert text not in str(caught.value)


# --- file_roots: ${env:..} ---------------------------------------------------------------------------------


def test_file_roots_entries_expand_env_and_refuse_what_cannot_be_expanded() -> None:
    env = {"CI_PROJECT_DIR": "/builds/g/p", "CI_JOB_TOKEN": "tok"}
    assert expand_root("${env:CI_PROJECT_DIR}.tmp", env, Settings()) == "/builds/g/p.tmp"
    assert expand_root("/run/$${odd}/$x", env, Settings()) == "/run/${odd}/$x"
    for entry, said in [("${vault:kv/x#y}", "may only read ${env:NAME}"), ("${CI_PROJECT_DIR}", "may only read"),
                        ("${env:CI_PROJECT_DIR", "never closed"), ("${env:A-B}", "variable name"),
                        ("/x/${env:CI_JOB_TOKEN}", "credential of the kcr run")]:
        with pytest.raises(RootError) as caught:
            expand_root(entry, env, Settings())
        assert said in str(caught.value) and not caught.value.unset
        assert "tok" not in str(caught.value)
    with pytest.raises(RootError) as unset:
        expand_root("${env:MISSING}.tmp", env, Settings())
    assert unset.value.unset and "${env:MISSING}" in str(unset.value)
    with pytest.raises(RootError, match="empty path"):
        expand_root("${env:EMPTY}", {"EMPTY": ""}, Settings())


# --- end to end -------------------------------------------------------------------------------------------


def test_plan_and_apply_read_the_file_a_gitlab_file_variable_names(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys)
    code, out, err = w.kcr("validate")
    assert code == 0, out + err
    code, out, err = w.kcr("plan", "--detailed-exitcode")
    assert code == 2, out + err
    assert "create" in out
    _no_canary(out, err)
    code, out, err = w.kcr("apply", "--auto-approve")
    assert code == 0, out + err
    _no_canary(out, err)
    [created] = w.sb.connectors_in("default")
    assert created["id"] == derive_connector_id("default", "team-slack")
    assert created["secrets"] == {"webhookUrl": WEBHOOK}  # the runner's trailing newline stripped
    code, out, err = w.kcr("plan", "--detailed-exitcode")
    assert code == 0, out + err


def test_a_file_outside_the_repository_and_file_roots_is_refused(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys, kcr_yaml="file_roots: [/run/secrets]\n")
    code, out, err = w.kcr("plan")
    assert code == 1
    assert "the file $SLACK_WEBHOOK_FILE names is outside the repository and the file_roots" in err
    assert w.env["SLACK_WEBHOOK_FILE"] not in out + err  # the path a variable holds is never shown
    _no_canary(out, err)
    # a link inside the root leading out of it is judged where it leads (symlinks resolved)
    w = _world(tmp_path / "second", capsys)
    outside = tmp_path / "elsewhere.txt"
    outside.write_text(WEBHOOK, encoding="utf-8")
    link = tmp_path / "second" / "proj.tmp" / "LINK"
    link.symlink_to(outside)
    code, out, err = w.kcr("plan", env={**w.env, "SLACK_WEBHOOK_FILE": str(link)})
    assert code == 1 and "outside the repository and the file_roots" in err
    _no_canary(out, err)
    assert w.sb.connectors_in("default") == []


def test_a_variable_holding_the_secret_itself_is_never_shown(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys)
    code, out, err = w.kcr("plan", env={**w.env, "SLACK_WEBHOOK_FILE": WEBHOOK})  # a Variable, not a File
    assert code == 1
    assert "$SLACK_WEBHOOK_FILE must hold a file's path" in err and "${env:SLACK_WEBHOOK_FILE}" in err
    _no_canary(out, err)
    code, out, err = w.kcr("plan", env={k: v for k, v in w.env.items() if k != "SLACK_WEBHOOK_FILE"})
    assert code == 1 and "environment variable SLACK_WEBHOOK_FILE is not set" in err


def test_the_exfiltration_guard_applies_to_the_variable_holding_the_path(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys, connector=CONNECTOR.replace("SLACK_WEBHOOK_FILE", "CI_JOB_TOKEN"))
    code, out, _ = w.kcr("validate")  # offline: refused before anything is read
    assert code == 1
    assert "connectors/default/team.yaml:6" in out and "CI_JOB_TOKEN is a credential of the kcr run" in out
    code, out, err = w.kcr("plan", env={**w.env, "CI_JOB_TOKEN": CANARY})
    assert code == 1 and "credential of the kcr run" in out + err
    _no_canary(out, err)


def test_an_unset_variable_in_file_roots_is_an_error_at_its_kcr_yaml_line(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(tmp_path, capsys)
    env = {k: v for k, v in w.env.items() if k != "CI_PROJECT_DIR"}
    code, out, err = w.kcr("plan", env=env)
    assert code == 1
    assert f"kcr.yaml:{ROOT_LINE}" in err and "${env:CI_PROJECT_DIR}, which is not set" in err
    assert w.sb.connectors_in("default") == []
    # offline validation may not see the variable (as for env-fed vars): a warning at the same line
    code, out, err = w.kcr("validate", env=env)
    assert code == 0, out + err
    assert f"kcr.yaml:{ROOT_LINE}" in out and "warning" in out


@pytest.mark.parametrize("entry", ["${vault:kv/ci#dir}", "${env:CI_PROJECT_DIR.tmp", "${CI_PROJECT_DIR}.tmp"])
def test_a_file_roots_entry_that_cannot_be_expanded_is_never_kept_literally(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], entry: str) -> None:
    w = _world(tmp_path, capsys, kcr_yaml=f"file_roots:\n  - '{entry}'\n")
    code, out, _ = w.kcr("validate")
    assert code == 1 and "kcr.yaml:2" in out and "error" in out
    code, out, err = w.kcr("plan")
    assert code == 1 and "kcr.yaml:2" in err
    assert w.sb.connectors_in("default") == []


def test_a_file_a_guarded_variable_names_is_refused_however_it_is_reached(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the runner writes every File variable of the job into the same directory, credentials included
    w = _world(tmp_path, capsys, connector=CONNECTOR.replace("${file:${env:SLACK_WEBHOOK_FILE}}",
                                                             "${file:../proj.tmp/KIBANA_TOKEN_FILE}"))
    credential = tmp_path / "proj.tmp" / "KIBANA_TOKEN_FILE"
    credential.write_text(CANARY, encoding="utf-8")
    code, out, err = w.kcr("plan", env={**w.env, "KIBANA_TOKEN_FILE": str(credential)})
    assert code == 1
    assert "is the file $KIBANA_TOKEN_FILE names" in err and "credential of the kcr run" in err
    _no_canary(out, err)
    assert w.sb.connectors_in("default") == []
