"""`kcr ci generate` (issue #13): the child pipeline and the parent's two jobs pass GitLab's own schema,
fan out (plans free of `needs`, each apply needing only its own plan and holding its own resource
group), keep environment names strings whatever they look like, and refuse what they cannot generate.
And the jobs do what they say: every generated script line is run as a GitLab runner would (one bash
script, `set -eo pipefail`, the job's variables over the environment-scoped ones of its `environment:`)
against two sandboxes over loopback, in a merge-request pipeline and in a default-branch one."""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from helpers.cli import PROCESS_TIMEOUT_S, process_env, run_main, write_repo
from helpers.gitlab_ci import resolved

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
KCR = Path(sys.executable).with_name("kcr")  # the venv's console script, for the scripts' `kcr`


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
# What GitLab sets in a child pipeline: the source is always parent_pipeline; a merge request's has no
# CI_COMMIT_BRANCH (its ref is refs/merge-requests/N/head).
PREDEFINED = {
    "merge request": {"CI": "true", "GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "parent_pipeline",
                      "CI_DEFAULT_BRANCH": "main", "CI_COMMIT_REF_NAME": "feature", "CI_MERGE_REQUEST_IID": "3"},
    "default branch": {"CI": "true", "GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "parent_pipeline",
                       "CI_DEFAULT_BRANCH": "main", "CI_COMMIT_REF_NAME": "main", "CI_COMMIT_BRANCH": "main"},
}


def _holds(condition: str, variables: Mapping[str, str]) -> bool:
    """GitLab's `rules:if`, the part the generator writes (`&&` of `==`/`!=` comparisons); anything
    else fails the test rather than being guessed at."""
    def value(token: str) -> str | None:
        return variables.get(token[1:]) if token.startswith("$") else token[1:-1]

    results = []
    for part in condition.split("&&"):
        match = re.fullmatch(r'\s*(\$\w+|"[^"]*")\s*(==|!=)\s*(\$\w+|"[^"]*")\s*', part)
        assert match, f"the test cannot read the rule {condition!r}"
        left, op, right = match.groups()
        results.append((value(left) == value(right)) == (op == "=="))
    return all(results)


def _when(job: Mapping[str, Any], variables: Mapping[str, str]) -> tuple[str, dict[str, str]] | None:
    """The job's `when` in this pipeline and the variables its rule sets, or None: not in it."""
    for rule in job.get("rules", [{}]):
        if "if" not in rule or _holds(rule["if"], variables):
            return str(rule.get("when", job.get("when", "on_success"))), dict(rule.get("variables", {}))
    return None


def _venv_kcr(line: str) -> str:
    """`kcr` as a command word becomes the venv's executable (in GitLab, `default: before_script` installs it)."""
    return re.sub(r"(^|[;&|]\s*)kcr(?= )", lambda m: m.group(1) + shlex.quote(str(KCR)), line)


class GitLab:
    """Just enough of a runner: a fresh clone per job, the `needs` artifacts unpacked into it, variables
    by GitLab's precedence (job YAML < project < environment-scoped, protected ones only on the
    default branch), and the script as one bash script."""

    def __init__(self, repo: Path, work: Path, urls: Mapping[str, str], kind: str) -> None:
        self.repo, self.work, self.kind = repo, work, kind
        self.predefined = PREDEFINED[kind]
        self.scoped = {name: {"KIBANA_URL": urls[name], "KIBANA_API_KEY": API_KEYS[name],
                              "KCR_RECORD": str(work.parent / f"record-{name}.json")} for name in ENVIRONMENTS}
        self.protected = {"KCR_FINGERPRINT_KEY": FINGERPRINT_KEY}
        self.protected_scoped = {name: {"SLACK_URL": CANARY[name]} for name in ENVIRONMENTS}
        self.artifacts: dict[str, dict[str, bytes]] = {}
        self.runs = 0

    def env(self, job: Mapping[str, Any]) -> dict[str, str]:
        scope = job["environment"]["name"]
        created = _when(job, self.predefined)
        assert created is not None, "this job is not in this pipeline"
        env = process_env(NO_COLOR="1", **self.predefined)
        env.update(job.get("variables", {}))
        env.update(created[1])  # rules:variables win over the job's own
        env.update(self.scoped[scope])
        if self.kind == "default branch":
            env.update(self.protected)
            env.update(self.protected_scoped[scope])
        return env

    def run(self, name: str, child: Mapping[str, Any], **override: str) -> subprocess.CompletedProcess[str]:
        job = resolved(child, name)
        assert "before_script" not in job  # the default's, skipped: the venv has this kcr
        assert child["default"]["before_script"] == [DEFAULT_INSTALL]
        self.runs += 1
        clone = self.work / f"{self.runs}-{self.kind}-{name}".replace(":", "-").replace(" ", "-")
        shutil.copytree(self.repo, clone)
        for need in job.get("needs", []):
            if need.get("artifacts", True):
                for rel, data in self.artifacts[need["job"]].items():
                    (clone / rel).write_bytes(data)
        script = "\n".join(["set -eo pipefail", *(_venv_kcr(line) for line in job["script"])]) + "\n"
        proc = subprocess.run(["bash", "-c", script], cwd=clone, env={**self.env(job), **override},
                              capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, stdin=subprocess.DEVNULL)
        for secret in (*CANARY.values(), FINGERPRINT_KEY):
            assert secret not in proc.stdout + proc.stderr, "a secret reached the job log"
        assert "Traceback" not in proc.stderr, proc.stderr
        artifacts = job.get("artifacts", {})
        paths = [*artifacts.get("paths", []), *artifacts.get("reports", {}).values()]
        self.artifacts[name] = {rel: (clone / rel).read_bytes() for rel in paths if (clone / rel).is_file()}
        if proc.returncode == 0:
            assert sorted(self.artifacts[name]) == sorted(paths), "a passing job without all its artifacts"
        for data in self.artifacts[name].values():
            assert all(secret.encode() not in data for secret in (*CANARY.values(), FINGERPRINT_KEY))
        return proc

    def pipeline(self, child: Mapping[str, Any]) -> dict[str, str]:
        """Each job's `when` in this pipeline (jobs its rules leave out are absent)."""
        jobs = {name: _when(resolved(child, name), self.predefined) for name in child
                if name not in ("stages", "variables", "default") and not name.startswith(".")}
        return {name: created[0] for name, created in jobs.items() if created is not None}


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
    mr = GitLab(repo, tmp_path / "jobs", urls, "merge request")
    assert mr.pipeline(child) == {"plan:production": "on_success", "plan:staging": "on_success"}
    for name in ENVIRONMENTS:
        proc = mr.run(f"plan:{name}", child)
        assert proc.returncode == 0, proc.stdout + proc.stderr  # kcr said 2 (changes): the job passes
        assert "not checked (--no-secrets)" in proc.stdout
        saved = json.loads(mr.artifacts[f"plan:{name}"][f"plan-{name}.json"])
        assert saved["environment"] == name and saved["secrets_checked"] is False
        assert saved["summary"]["create"] == 2
        assert f"Chat P-{name}" in mr.artifacts[f"plan:{name}"][f"plan-{name}.md"].decode()
        assert json.loads(mr.artifacts[f"plan:{name}"][f"plan-{name}.tfreport.json"])["create"] == 2
    assert all(_writes(sb) == 0 and sb.connectors_in("default") == [] for sb in sandboxes.values())

    # A failing plan fails its job (exit 1 is not "changes").
    proc = mr.run("plan:staging", child, KIBANA_API_KEY="not-the-key")
    assert proc.returncode == 1 and "401" in proc.stdout + proc.stderr

    # The default branch: plans with secrets, then each apply with its own plan, one Kibana at a time.
    main = GitLab(repo, tmp_path / "jobs", urls, "default branch")
    assert main.pipeline(child) == dict.fromkeys(
        ["plan:production", "apply:production", "plan:staging", "apply:staging"], "on_success")
    for name in ENVIRONMENTS:
        proc = main.run(f"plan:{name}", child)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "--no-secrets" not in proc.stdout
        assert json.loads(main.artifacts[f"plan:{name}"][f"plan-{name}.json"])["secrets_checked"] is True
    assert all(_writes(sb) == 0 for sb in sandboxes.values())

    proc = main.run("apply:staging", child)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    staging = _names(sandboxes["staging"])
    assert set(staging) == {"Chat P-staging", "History (staging)"}
    assert staging["Chat P-staging"]["secrets"] == {"webhookUrl": CANARY["staging"]}
    assert staging["History (staging)"]["config"]["index"] == "history-staging"
    assert _writes(sandboxes["production"]) == 0 and sandboxes["production"].connectors_in("default") == []

    before = sandboxes["staging"].connectors_in("default")
    staging_writes = _writes(sandboxes["staging"])
    proc = main.run("apply:production", child)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    production = _names(sandboxes["production"])
    assert set(production) == {"Chat P-production", "History (production)"}
    assert production["Chat P-production"]["secrets"] == {"webhookUrl": CANARY["production"]}
    assert sandboxes["staging"].connectors_in("default") == before and _writes(sandboxes["staging"]) == staging_writes

    # Converged: the next pipeline's plans find nothing to do.
    again = GitLab(repo, tmp_path / "again", urls, "default branch")
    for name in ENVIRONMENTS:
        assert again.run(f"plan:{name}", child).returncode == 0
        assert json.loads(again.artifacts[f"plan:{name}"][f"plan-{name}.json"])["summary"].get("create", 0) == 0
