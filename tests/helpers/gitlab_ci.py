"""Just enough of GitLab to run a `.gitlab-ci.yml`'s jobs in a test: which jobs a pipeline creates
(`workflow:rules`, `rules:if` with the `&&` of `==`/`!=` comparisons these files use, `when`,
`rules:variables`), `extends` (hashes merged deeply, anything else replaced), `parallel:matrix` (jobs
named `plan: [staging]`), `needs` (including `parallel:matrix` entries; a job runs only after what it needs
passed, and gets their artifacts), and variables by GitLab's precedence: predefined < global YAML < job
YAML (matrix and `rules:variables` included) < project CI/CD variables < those scoped to the job's
`environment:`, protected ones only on a protected ref (the default branch, schedules on it).

Each job runs in a fresh copy of the repository as one bash script under `set -eo pipefail`, as the
runner does. `before_script` (installing kcr) is not run: `kcr` on PATH is a shim that runs this
checkout's kcr and records each call (`Runner.calls`: the arguments and KCR_ENV) for the test. GitLab's
API, for `kcr mr-comment` and `drift --gitlab-issue`, is whatever CI_API_V4_URL names (a test passes its
fake's URL in `project`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.cli import PROCESS_TIMEOUT_S, process_env

KEYWORDS = {"stages", "variables", "default", "workflow", "include", "image", "services", "cache", "before_script",
            "after_script"}
PREDEFINED: dict[str, dict[str, str]] = {
    "merge request": {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_COMMIT_REF_NAME": "feature",
                      "CI_MERGE_REQUEST_IID": "3", "CI_COMMIT_SHA": "a" * 40},
    "default branch": {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_REF_NAME": "main", "CI_COMMIT_BRANCH": "main",
                       "CI_COMMIT_SHA": "b" * 40},
    "schedule": {"CI_PIPELINE_SOURCE": "schedule", "CI_COMMIT_REF_NAME": "main", "CI_COMMIT_BRANCH": "main",
                 "CI_COMMIT_SHA": "b" * 40},
    # A child pipeline (`trigger: include: artifact:`): the source is always parent_pipeline; a merge
    # request's has no CI_COMMIT_BRANCH (its ref is refs/merge-requests/N/head).
    "child merge request": {"CI_PIPELINE_SOURCE": "parent_pipeline", "CI_COMMIT_REF_NAME": "feature",
                            "CI_MERGE_REQUEST_IID": "3", "CI_COMMIT_SHA": "a" * 40},
    "child default branch": {"CI_PIPELINE_SOURCE": "parent_pipeline", "CI_COMMIT_REF_NAME": "main",
                             "CI_COMMIT_BRANCH": "main", "CI_COMMIT_SHA": "b" * 40},
}
PROTECTED_REFS = {"main"}
_SHIM = """import json, os, sys
with open(os.environ["CI_EMU_CALLS"], "a", encoding="utf-8") as handle:
    handle.write(json.dumps({"args": sys.argv[1:], "env": os.environ.get("KCR_ENV")}) + "\\n")
os.execv(sys.executable, [sys.executable, "-m", "reconciler", *sys.argv[1:]])
"""


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """GitLab's `extends`: hashes merge deeply, anything else (lists included) is replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def resolved(pipeline: Mapping[str, Any], name: str) -> dict[str, Any]:
    job = pipeline[name]
    parents = job.get("extends", [])
    base: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        base = merged(base, resolved(pipeline, parent))
    return merged(base, {key: value for key, value in job.items() if key != "extends"})


def matrix_name(job: str, entry: Mapping[str, Any]) -> str:
    return f"{job}: [{', '.join(str(v) for v in entry.values())}]"


def jobs(pipeline: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every job as GitLab creates it: `extends` resolved, matrix entries as their own jobs with their
    variables."""
    out: dict[str, dict[str, Any]] = {}
    for name in pipeline:
        if name in KEYWORDS or name.startswith("."):
            continue
        job = resolved(pipeline, name)
        matrix = job.pop("parallel", {}).get("matrix")
        if not matrix:
            out[name] = job
            continue
        for group in matrix:
            keys = list(group)
            values = [group[k] if isinstance(group[k], list) else [group[k]] for k in keys]
            for combo in _product(values):
                entry = dict(zip(keys, combo, strict=True))
                out[matrix_name(name, entry)] = merged(job, {"variables": entry})
    return out


def _product(values: list[list[Any]]) -> Iterable[tuple[Any, ...]]:
    if not values:
        yield ()
        return
    for first in values[0]:
        for rest in _product(values[1:]):
            yield (first, *rest)


def holds(condition: str, variables: Mapping[str, str]) -> bool:
    """`rules:if`: the `&&` of `==`/`!=` comparisons; anything else fails the test rather than being guessed."""
    def value(token: str) -> str | None:
        return variables.get(token[1:]) if token.startswith("$") else token[1:-1]

    results = []
    for part in condition.split("&&"):
        match = re.fullmatch(r'\s*(\$\w+|"[^"]*")\s*(==|!=)\s*(\$\w+|"[^"]*")\s*', part)
        assert match, f"the test cannot read the rule {condition!r}"
        left, op, right = match.groups()
        results.append((value(left) == value(right)) == (op == "=="))
    return all(results)


def when(rules: list[dict[str, Any]] | None, variables: Mapping[str, str],
         default: str = "on_success") -> tuple[str, dict[str, str]] | None:
    """The `when` these rules give and the variables their matching rule sets; None: the job is not created."""
    for rule in rules if rules is not None else [{}]:
        if "if" not in rule or holds(rule["if"], variables):
            return str(rule.get("when", default)), {k: str(v) for k, v in rule.get("variables", {}).items()}
    return None


def expand(text: str, variables: Mapping[str, str]) -> str:
    """`$NAME` and `${NAME}` as GitLab expands them in YAML (unknown: empty)."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), ""), text)


@dataclass
class Runner:
    """One pipeline of `pipeline` (a `.gitlab-ci.yml` as data) of the given kind for the repository at
    `repo`. `project` and `scoped` ({environment: variables}) are the CI/CD settings; names in
    `protected` reach only protected refs. `secrets` must never appear in a log or an artifact."""

    pipeline: Mapping[str, Any]
    repo: Path
    work: Path
    kind: str
    project: Mapping[str, str] = field(default_factory=dict)
    scoped: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    protected: frozenset[str] = frozenset()
    secrets: tuple[str, ...] = ()
    artifacts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    runs: int = 0

    def __post_init__(self) -> None:
        self.predefined = {"CI": "true", "GITLAB_CI": "true", "CI_DEFAULT_BRANCH": "main", "CI_PROJECT_ID": "7",
                           "CI_API_V4_URL": "http://127.0.0.1:9/api/v4", **PREDEFINED[self.kind]}
        self.work.mkdir(parents=True, exist_ok=True)
        self.bindir = self.work / "bin"
        self.bindir.mkdir(exist_ok=True)
        shim = self.bindir / "kcr"
        shim.write_text(f"#!{sys.executable}\n{_SHIM}", encoding="utf-8")
        shim.chmod(0o755)

    @property
    def created(self) -> dict[str, str]:
        """Each job of this pipeline and its `when` (none at all when `workflow:rules` refuse the pipeline)."""
        workflow = self.pipeline.get("workflow", {}).get("rules")
        if workflow is not None and when(workflow, self.predefined) is None:
            return {}
        out = {}
        for name, job in jobs(self.pipeline).items():
            variables = {**self.predefined, **self._yaml_variables(job)}
            got = when(job.get("rules"), variables, job.get("when", "on_success"))
            if got is not None:
                out[name] = got[0]
        return out

    def _yaml_variables(self, job: Mapping[str, Any]) -> dict[str, str]:
        return {k: str(v) for k, v in {**self.pipeline.get("variables", {}), **job.get("variables", {})}.items()}

    def env(self, name: str, job: Mapping[str, Any]) -> dict[str, str]:
        yaml_vars = self._yaml_variables(job)
        got = when(job.get("rules"), {**self.predefined, **yaml_vars}, job.get("when", "on_success"))
        assert got is not None, f"{name} is not in a {self.kind} pipeline"
        yaml_vars.update(got[1])
        context = {**self.predefined, **yaml_vars}
        yaml_vars = {k: expand(v, context) for k, v in yaml_vars.items()}
        settings = dict(self.project)
        environment = job.get("environment", {})
        scope = expand(environment.get("name", ""), {**self.predefined, **yaml_vars}) if environment else ""
        settings.update(self.scoped.get(scope, {}))
        if self.predefined["CI_COMMIT_REF_NAME"] not in PROTECTED_REFS:
            settings = {k: v for k, v in settings.items() if k not in self.protected}
        env = process_env(NO_COLOR="1", **self.predefined)
        env.update(yaml_vars)
        env.update(settings)
        if scope:
            env["CI_ENVIRONMENT_NAME"] = scope
        env["PATH"] = f"{self.bindir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def _needs(self, job: Mapping[str, Any]) -> list[tuple[str, bool]]:
        out = []
        for need in job.get("needs", []):
            need = {"job": need} if isinstance(need, str) else need
            matrix = need.get("parallel", {}).get("matrix")
            names = [matrix_name(need["job"], entry) for entry in matrix] if matrix else [need["job"]]
            out += [(n, bool(need.get("artifacts", True))) for n in names]
        return out

    def run(self, name: str, **override: str) -> subprocess.CompletedProcess[str]:
        """Run one job (its `needs` must have passed; their artifacts are unpacked first)."""
        job = jobs(self.pipeline)[name]
        assert name in self.created, f"{name} is not in a {self.kind} pipeline"
        self.runs += 1
        clone = self.work / f"{self.runs}-{re.sub(r'[^a-z0-9]+', '-', name)}"
        shutil.copytree(self.repo, clone)
        for need, with_artifacts in self._needs(job):
            assert self.status.get(need) == 0, f"{name} needs {need}, which has not passed"
            if with_artifacts:
                for rel, data in self.artifacts[need].items():
                    (clone / rel).write_bytes(data)
        env = {**self.env(name, job), **override}
        calls = self.work / "calls.jsonl"
        calls.write_text("", encoding="utf-8")
        env["CI_EMU_CALLS"] = str(calls)
        env["CI_PROJECT_DIR"] = str(clone)
        script = "\n".join(["set -eo pipefail", *job["script"]]) + "\n"
        proc = subprocess.run(["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True,
                              timeout=PROCESS_TIMEOUT_S, stdin=subprocess.DEVNULL)
        self.status[name] = proc.returncode
        self.calls = [json.loads(line) for line in calls.read_text(encoding="utf-8").splitlines()]
        log = proc.stdout + proc.stderr
        assert "Traceback" not in log, log
        for secret in self.secrets:
            assert secret not in log, f"a secret reached the {name} job's log"
        artifacts = job.get("artifacts", {})
        context = {**self.predefined, **self._yaml_variables(job)}
        paths = [expand(p, context) for p in [*artifacts.get("paths", []), *artifacts.get("reports", {}).values()]]
        if proc.returncode == 0 or artifacts.get("when") == "always":
            self.artifacts[name] = {rel: (clone / rel).read_bytes() for rel in paths if (clone / rel).is_file()}
        for data in self.artifacts.get(name, {}).values():
            assert all(secret.encode() not in data for secret in self.secrets), f"a secret reached {name}'s artifacts"
        return proc
