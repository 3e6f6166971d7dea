"""`kcr ci generate` (issue #13): the child pipeline and the parent's two jobs pass GitLab's own schema,
fan out (plans free of `needs`, each apply needing only its own plan and holding its own resource
group), keep environment names strings whatever they look like, and refuse what they cannot generate.
And the jobs do what they say: every generated script line is run as a GitLab runner would (one bash
script, `set -eo pipefail`, the job's variables over the environment-scoped ones of its `environment:`)
against two sandboxes over loopback, in a merge-request pipeline and in a default-branch one, by the
runner emulation the other pipeline tests use (tests/helpers/gitlab_ci.py)."""

from __future__ import annotations

import functools
import json
import shlex
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from helpers.cli import run_main, write_repo
from helpers.gitlab_ci import Runner, resolved

from reconciler import __version__
from reconciler.ci_generate import (
    DEFAULT_INSTALL,
    DEFAULT_OUTPUT,
    GENERATE_JOB,
    PARENT_SNIPPET,
    TRIGGER_JOB,
    dump,
    generate,
    parent_snippet,
)
from reconciler.errors import ConfigError, ValidationError
from reconciler.sandbox import Sandbox
from reconciler.sandbox.server import running

SCHEMA = Path(__file__).resolve().parent / "data" / "gitlab" / "ci-schema.json"


@functools.cache
def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))


def _schema_errors(doc: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in _validator().iter_errors(doc)]


def _kcr_yaml(names: list[str]) -> str:
    return yaml.safe_dump({"environments": {name: {"vars": {"project": f"P-{name}"}} for name in names}})


def _repo(root: Path, names: list[str]) -> Path:
    return write_repo(root, {"kcr.yaml": _kcr_yaml(names), "connectors/default/a.yaml": CONNECTORS})


def _jobs(pipeline: Mapping[str, Any], prefix: str) -> dict[str, dict[str, Any]]:
    """The jobs whose names start with `prefix`, their `extends` resolved."""
    return {name: resolved(pipeline, name) for name in pipeline if name.startswith(prefix)}


PLAN_RULES = [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", "variables": {"KCR_PLAN_FLAGS": ""}},
              {"when": "on_success", "variables": {"KCR_PLAN_FLAGS": "--no-secrets"}}]


# --- the file ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 50])
def test_child_pipeline_passes_gitlabs_schema_and_fans_out(tmp_path: Path, count: int) -> None:
    names = [f"env-{i:02d}" for i in range(count)]
    generated = generate(_repo(tmp_path, names[::-1]))
    assert yaml.safe_load(generated.text) == generated.pipeline  # the text is the data
    assert _schema_errors(generated.pipeline) == []

    plans, applies = _jobs(generated.pipeline, "plan:"), _jobs(generated.pipeline, "apply:")
    assert list(plans) == [f"plan:{n}" for n in names]  # sorted: reordering kcr.yaml changes nothing
    assert list(applies) == [f"apply:{n}" for n in names]
    for name in names:
        plan, apply = plans[f"plan:{name}"], applies[f"apply:{name}"]
        assert "needs" not in plan  # every plan starts at once
        assert plan["rules"] == PLAN_RULES  # in every pipeline; secrets checked only where apply runs
        assert plan["variables"] == {"KCR_ENV": name} and apply["variables"] == {"KCR_ENV": name}
        assert plan["environment"] == {"name": name, "action": "prepare"}
        assert plan["stage"] == "plan" and apply["stage"] == "apply"
        assert plan["script"] == [f"kcr plan --env {name} --out plan-{name}.json --gitlab-report "
                                  f"plan-{name}.tfreport.json --markdown-out plan-{name}.md --detailed-exitcode "
                                  "$KCR_PLAN_FLAGS || [ $? -eq 2 ]"]
        assert plan["artifacts"]["when"] == "always"
        assert plan["artifacts"]["paths"] == [f"plan-{name}.json", f"plan-{name}.md"]
        assert plan["artifacts"]["reports"] == {"terraform": f"plan-{name}.tfreport.json"}
        assert apply["needs"] == [{"job": f"plan:{name}", "artifacts": True}]
        assert apply["resource_group"] == f"kcr-{name}"
        assert apply["environment"] == {"name": name}
        assert apply["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]
        assert apply["script"] == [f"kcr apply --env {name} plan-{name}.json"]
        assert apply["interruptible"] is False
    assert len({job["resource_group"] for job in applies.values()}) == count
    assert generated.pipeline["default"]["before_script"] == [f"python -m pip install --quiet kcr=={__version__}"]
    assert len(generated.text) < 1200 * count + 2000  # GitLab caps a configuration's size: keep jobs small
    assert generate(_repo(tmp_path, names)).text == generated.text  # stable


def test_names_that_read_as_other_yaml_types_stay_strings(tmp_path: Path) -> None:
    """A name is data handed to pyyaml, never text pasted into YAML: `on`, `null` or `0755` unquoted
    would reach GitLab as a boolean, nothing or a number."""
    names = sorted(["on", "no", "null", "true", "123", "1e3", "0755", "0x1f", "1_000"])
    generated = generate(_repo(tmp_path, names))
    assert _schema_errors(generated.pipeline) == []
    text = yaml.safe_load(generated.text)
    loaded = {name: resolved(text, name) for name in text if name.startswith(("plan:", "apply:"))}
    for name in names:
        assert loaded[f"plan:{name}"]["variables"]["KCR_ENV"] == name
        assert loaded[f"apply:{name}"]["environment"]["name"] == name
        assert loaded[f"apply:{name}"]["resource_group"] == f"kcr-{name}"


def test_manual_applies_wait_for_a_click(tmp_path: Path) -> None:
    generated = generate(_repo(tmp_path, ["staging", "production", "eu"]), manual=["production", "eu"])
    rules = {name: job["rules"] for name, job in _jobs(generated.pipeline, "apply:").items()}
    assert rules["apply:production"] == rules["apply:eu"] == [
        {"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", "when": "manual"}]
    assert rules["apply:staging"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]
    assert _schema_errors(generated.pipeline) == []
    assert "--manual eu --manual production" in generated.note  # the parent's job regenerates the same file


def test_install_and_image_are_the_ones_given(tmp_path: Path) -> None:
    generated = generate(_repo(tmp_path, ["staging"]), install="pip install 'kcr @ ./dist/kcr.whl'",
                         image="registry.example.com/py:3.11")
    assert generated.pipeline["default"]["before_script"] == ["pip install 'kcr @ ./dist/kcr.whl'"]
    assert generated.pipeline["default"]["image"] == "registry.example.com/py:3.11"
    snippet = yaml.safe_load(generated.note.split("\n\n", 1)[1])
    assert snippet[GENERATE_JOB]["before_script"] == ["pip install 'kcr @ ./dist/kcr.whl'"]
    assert shlex.split(snippet[GENERATE_JOB]["script"][0])[-4:] == [
        "--install", "pip install 'kcr @ ./dist/kcr.whl'", "--image", "registry.example.com/py:3.11"]


def test_parent_snippet_passes_gitlabs_schema_and_triggers_the_artifact() -> None:
    snippet = yaml.safe_load(PARENT_SNIPPET)
    assert _schema_errors(snippet) == []
    assert snippet == parent_snippet()
    generate_job, trigger_job = snippet[GENERATE_JOB], snippet[TRIGGER_JOB]
    assert generate_job["script"] == [f"kcr ci generate --output {DEFAULT_OUTPUT}"]
    assert generate_job["before_script"] == [DEFAULT_INSTALL] and f"kcr=={__version__}" in DEFAULT_INSTALL
    assert generate_job["artifacts"]["paths"] == [DEFAULT_OUTPUT]
    assert trigger_job["trigger"] == {"include": [{"artifact": DEFAULT_OUTPUT, "job": GENERATE_JOB}],
                                      "strategy": "depend"}
    assert trigger_job["needs"] == [GENERATE_JOB]
    assert trigger_job["inherit"] == {"variables": False}  # a parent's global KCR_ENV must not reach the child
    for job in (generate_job, trigger_job):
        conditions = [rule["if"] for rule in job["rules"]]
        assert '$CI_PIPELINE_SOURCE == "merge_request_event"' in conditions
        assert any("$CI_DEFAULT_BRANCH" in c and '!= "schedule"' in c for c in conditions)


def test_cli_writes_the_file_that_the_parent_job_would_write(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _repo(tmp_path / "repo", ["staging", "production"])
    code, out, err = run_main(capsys, ["ci", "generate", "--dir", str(repo), "--manual", "production"], env={})
    assert code == 0
    assert out == generate(repo, manual=["production"]).text
    assert dump(parent_snippet(DEFAULT_OUTPUT, command=f"kcr ci generate --output {DEFAULT_OUTPUT} --dir {repo} "
                                                      "--manual production")) in err

    # The parent's `kcr:generate` job, run where GitLab runs it (the clone): it writes the artifact.
    monkeypatch.chdir(repo)
    code, out, err = run_main(capsys, ["ci", "generate", "--output", "ci/child.yml"], env={})
    assert code == 0 and out == ""
    snippet = yaml.safe_load(err.split("\n\n", 1)[1])
    assert snippet[TRIGGER_JOB]["trigger"]["include"] == [{"artifact": "ci/child.yml", "job": GENERATE_JOB}]
    command = shlex.split(snippet[GENERATE_JOB]["script"][0])
    assert command[0] == "kcr"
    (repo / "ci" / "child.yml").unlink()
    assert run_main(capsys, command[1:], env={})[0] == 0
    assert (repo / "ci" / "child.yml").read_text() == generate(repo).text


def test_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = write_repo(tmp_path / "bare", {"connectors/default/a.yaml": "connectors: []\n"})
    with pytest.raises(ConfigError, match="declares no environments"):
        generate(bare)
    plain = write_repo(tmp_path / "plain", {"kcr.yaml": "vars: {a: 1}\n"})
    with pytest.raises(ConfigError, match=r"declares no environments.*Declare `environments:`"):
        generate(plain)
    with pytest.raises(ValidationError):
        generate(write_repo(tmp_path / "bad", {"kcr.yaml": "environments:\n  Prod X: {}\n"}))
    repo = _repo(tmp_path / "repo", ["staging", "production"])
    with pytest.raises(ConfigError, match=r"--manual prod: not declared .*\(declared: production, staging\)"):
        generate(repo, manual=["prod"])

    target = tmp_path / "child.yml"
    code, out, err = run_main(capsys, ["ci", "generate", "--dir", str(plain), "--output", str(target)], env={})
    assert code == 1 and "declares no environments" in err and out == ""
    assert not target.exists()


# --- the jobs, run ---------------------------------------------------------------------------------------

CONNECTORS = """\
connectors:
  - id: chat
    name: Chat ${var:project}
    type: .slack
    secrets:
      webhookUrl: ${env:SLACK_URL}
  - id: history
    name: History (${var:env})
    type: .index
    config:
      index: history-${var:env}
"""
ENVIRONMENTS = ["production", "staging"]
CANARY = {name: f"https://hooks.example.com/CANARY-{name}-{uuid.uuid4()}" for name in ENVIRONMENTS}
API_KEYS = {name: f"{name}-api-key" for name in ENVIRONMENTS}
FINGERPRINT_KEY = f"CANARY-fingerprint-{uuid.uuid4()}"


def _runner(child: Mapping[str, Any], repo: Path, work: Path, urls: Mapping[str, str], kind: str) -> Runner:
    """GitLab's settings for these two Kibanas: each environment's URL, key and record scoped to it;
    the fingerprint key and each environment's Slack URL protected (the default branch only)."""
    return Runner(
        child, repo, work, kind,
        project={"KCR_FINGERPRINT_KEY": FINGERPRINT_KEY},
        scoped={name: {"KIBANA_URL": urls[name], "KIBANA_API_KEY": API_KEYS[name], "SLACK_URL": CANARY[name],
                       "KCR_RECORD": str(work.parent / f"record-{name}.json")} for name in ENVIRONMENTS},
        protected=frozenset({"KCR_FINGERPRINT_KEY", "SLACK_URL"}),
        secrets=(*CANARY.values(), FINGERPRINT_KEY),
    )


def _passed(runner: Runner, name: str, **override: str) -> subprocess.CompletedProcess[str]:
    """Runs the job; it passes with every artifact it declares."""
    job = resolved(runner.pipeline, name)
    assert "before_script" not in job  # the default's, which installs kcr; the runner's shim runs this one
    assert runner.pipeline["default"]["before_script"] == [DEFAULT_INSTALL]
    proc = runner.run(name, **override)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    artifacts = job.get("artifacts", {})
    assert sorted(runner.artifacts[name]) == sorted([*artifacts.get("paths", []),
                                                     *artifacts.get("reports", {}).values()])
    return proc


def _seed(name: str) -> dict[str, Any]:
    return {"license": "platinum", "spaces": ["default"], "auth": {"api_keys": [API_KEYS[name]]}}


def _writes(sb: Sandbox) -> int:
    return sum(n for key, n in sb.counters.items() if key.split(" ")[0] in ("POST", "PUT", "DELETE"))


def _names(sb: Sandbox) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in sb.connectors_in("default")}


@pytest.fixture()
def kibanas() -> Iterator[tuple[dict[str, Sandbox], dict[str, str]]]:
    sandboxes = {name: Sandbox.from_seed(_seed(name)) for name in ENVIRONMENTS}
    with running(sandboxes["staging"]) as staging, running(sandboxes["production"]) as production:
        yield sandboxes, {"staging": staging, "production": production}


def test_generated_jobs_run_for_their_own_kibana(tmp_path: Path,
                                                kibanas: tuple[dict[str, Sandbox], dict[str, str]]) -> None:
    sandboxes, urls = kibanas
    repo = write_repo(tmp_path / "repo", {"kcr.yaml": _kcr_yaml(ENVIRONMENTS), "connectors/default/a.yaml": CONNECTORS})
    child = yaml.safe_load(generate(repo).text)

    # A merge request: plans only, without secrets (none is set), Kibana untouched.
    mr = _runner(child, repo, tmp_path / "mr", urls, "child merge request")
    assert mr.created == {"plan:production": "on_success", "plan:staging": "on_success"}
    for name in ENVIRONMENTS:
        proc = _passed(mr, f"plan:{name}")  # kcr said 2 (changes): the job passes
        assert "not checked (--no-secrets)" in proc.stdout
        saved = json.loads(mr.artifacts[f"plan:{name}"][f"plan-{name}.json"])
        assert saved["environment"] == name and saved["secrets_checked"] is False
        assert saved["summary"]["create"] == 2
        assert f"Chat P-{name}" in mr.artifacts[f"plan:{name}"][f"plan-{name}.md"].decode()
        assert json.loads(mr.artifacts[f"plan:{name}"][f"plan-{name}.tfreport.json"])["create"] == 2
    assert all(_writes(sb) == 0 and sb.connectors_in("default") == [] for sb in sandboxes.values())

    # A failing plan fails its job (exit 1 is not "changes").
    proc = mr.run("plan:staging", KIBANA_API_KEY="not-the-key")
    assert proc.returncode == 1 and "401" in proc.stdout + proc.stderr

    # The default branch: plans with secrets, then each apply with its own plan, one Kibana at a time.
    main = _runner(child, repo, tmp_path / "main", urls, "child default branch")
    assert main.created == dict.fromkeys(
        ["plan:production", "apply:production", "plan:staging", "apply:staging"], "on_success")
    for name in ENVIRONMENTS:
        proc = _passed(main, f"plan:{name}")
        assert "--no-secrets" not in proc.stdout
        assert json.loads(main.artifacts[f"plan:{name}"][f"plan-{name}.json"])["secrets_checked"] is True
    assert all(_writes(sb) == 0 for sb in sandboxes.values())

    _passed(main, "apply:staging")
    staging = _names(sandboxes["staging"])
    assert set(staging) == {"Chat P-staging", "History (staging)"}
    assert staging["Chat P-staging"]["secrets"] == {"webhookUrl": CANARY["staging"]}
    assert staging["History (staging)"]["config"]["index"] == "history-staging"
    assert _writes(sandboxes["production"]) == 0 and sandboxes["production"].connectors_in("default") == []

    before = sandboxes["staging"].connectors_in("default")
    staging_writes = _writes(sandboxes["staging"])
    _passed(main, "apply:production")
    production = _names(sandboxes["production"])
    assert set(production) == {"Chat P-production", "History (production)"}
    assert production["Chat P-production"]["secrets"] == {"webhookUrl": CANARY["production"]}
    assert sandboxes["staging"].connectors_in("default") == before and _writes(sandboxes["staging"]) == staging_writes

    # Converged: the next pipeline's plans find nothing to do.
    again = _runner(child, repo, tmp_path / "again", urls, "child default branch")
    for name in ENVIRONMENTS:
        _passed(again, f"plan:{name}")
        assert json.loads(again.artifacts[f"plan:{name}"][f"plan-{name}.json"])["summary"].get("create", 0) == 0
