"""`kcr ci generate`: a GitLab child pipeline with one plan job and one apply job per kcr.yaml
environment, so that a repository with hundreds of Kibanas fans out over GitLab's runners. GitLab is
the distributed engine (scheduling, retries, logs, artifacts, serialization); each job stays one
`kcr` run against one Kibana, exactly what a person would run by hand.

The parent pipeline runs `kcr ci generate --output kcr-pipeline.yml` in a job and triggers the file
as a dynamic child pipeline (`trigger: include: [{artifact, job}]`, PARENT_SNIPPET). Per environment E:

- `plan:E` (no `needs`, so every plan starts at once) plans into plan-E.json, plan-E.md and
  plan-E.tfreport.json (kept `when: always`, a failed plan's report is what one reads), and exits 0
  on "changes" (kcr's 2) too.
- `apply:E`, on the default branch only, `needs` nothing but `plan:E` (so one slow Kibana holds back
  no other), applies that exact saved plan, and holds the `kcr-E` resource group so that two
  pipelines never apply to one Kibana at once. `--manual E` makes it wait for a click.

Plan with or without secrets: one plan job per environment whose rules choose (`rules:variables`
sets KCR_PLAN_FLAGS to `--no-secrets` or nothing), rather than a test in the script or two job
variants. In a child pipeline `$CI_PIPELINE_SOURCE` is always "parent_pipeline", so
"merge_request_event" can never be seen there; the rule asks what the apply rule asks
(`$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH`) and plans with `--no-secrets` everywhere else, where
GitLab withholds protected variables and nothing is applied. One condition for both means the plan
an apply job receives always had its secrets checked, and either way a misjudged pipeline fails
safe: apply refuses a plan without secrets, and a plan wanting absent secrets fails. Rules, not
shell, so GitLab shows the choice in the job's variables and the test evaluates the very rule; one
job, not two, so `plan:E` is the same name in every pipeline (what `apply:E` needs) and the file
does not double, which counts with hundreds of environments (GitLab caps a configuration's size).

Environment names (kcr.yaml keys, `^[a-z0-9][a-z0-9_-]{0,62}$`) are safe in job names, resource
groups, file names and shell words; they are still checked here, and shell-quoted, so that a looser
settings schema one day cannot turn a name into a command. The YAML is emitted by pyyaml from data,
never from text templates, so a name such as `on` or `123` stays a string."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reconciler import __version__
from reconciler.desired import load_settings
from reconciler.errors import ConfigError

DEFAULT_OUTPUT = "kcr-pipeline.yml"
DEFAULT_IMAGE = "python:3.11-slim"
DEFAULT_INSTALL = f"python -m pip install --quiet kcr=={__version__}"
GENERATE_JOB = "kcr:generate"
TRIGGER_JOB = "kcr:environments"
ON_DEFAULT_BRANCH = "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"
PLAN_TEMPLATE = ".kcr:plan"
APPLY_TEMPLATE = ".kcr:apply"
PLAN_FLAGS = "KCR_PLAN_FLAGS"  # set by the plan template's rules: --no-secrets, or nothing
_PARENT_RULES = ('$CI_PIPELINE_SOURCE == "merge_request_event"',
                 f'{ON_DEFAULT_BRANCH} && $CI_PIPELINE_SOURCE != "schedule"')
_SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_HEADER = (f"# Written by `kcr ci generate` (kcr {__version__}) from kcr.yaml's environments: a GitLab child\n"
           "# pipeline, one plan and one apply job per environment. Regenerate it rather than edit it.\n")


@dataclass(frozen=True)
class Generated:
    """The child pipeline (as data and as YAML text) and the note for stderr."""

    pipeline: dict[str, Any]
    text: str
    note: str


def generate(root: Path, *, output: str = "-", install: str | None = None, image: str | None = None,
             manual: Sequence[str] = ()) -> Generated:
    """The child pipeline for the environments of `root`/kcr.yaml; ConfigError when there are none or
    `manual` names one that is not declared (ValidationError for a broken kcr.yaml)."""
    names = environment_names(root)
    unknown = sorted(set(manual) - set(names))
    if unknown:
        raise ConfigError(f"--manual {', '.join(unknown)}: not declared in kcr.yaml's environments "
                          f"(declared: {', '.join(names)})")
    install = install or DEFAULT_INSTALL
    image = image or DEFAULT_IMAGE
    pipeline = child_pipeline(names, install=install, image=image, manual=manual)
    artifact = DEFAULT_OUTPUT if output == "-" else output
    command = generate_command(artifact, root=root, install=install, image=image, manual=manual)
    snippet = dump(parent_snippet(artifact, command=command, install=install, image=image))
    note = (f"kcr ci generate: {len(names)} environment(s), {2 * len(names)} jobs. Run it as a child pipeline "
            f"by adding these jobs to .gitlab-ci.yml (give them a `stage:` if yours has no `test`):\n\n{snippet}")
    return Generated(pipeline, _HEADER + dump(pipeline), note)


def environment_names(root: Path) -> list[str]:
    """kcr.yaml's environments, sorted so that the file does not change when kcr.yaml is reordered."""
    settings = load_settings(root)
    names = sorted(settings.environments)
    if not names:
        raise ConfigError(f"{root / 'kcr.yaml'} declares no environments: `kcr ci generate` writes a plan and an "
                          "apply job per environment. Declare `environments:` in kcr.yaml, or keep a single "
                          "Kibana's plan/apply jobs in .gitlab-ci.yml as they are")
    for name in names:
        if not _SAFE_NAME.match(name):  # the settings schema allows no other; fail closed if it ever does
            raise ConfigError(f"environment {name!r} (kcr.yaml): a CI job name needs lower-case letters, digits, "
                              "'-' and '_' (at most 63); rename it")
    return names


def child_pipeline(names: Iterable[str], *, install: str, image: str, manual: Sequence[str] = ()) -> dict[str, Any]:
    """The child pipeline as data: `default` installs the pinned kcr, two hidden templates hold what
    every plan and every apply job shares (the file stays small: GitLab caps a configuration's parsed
    size), then plan:E and apply:E per E with only what names E."""
    pipeline: dict[str, Any] = {
        "stages": ["plan", "apply"],
        "variables": {"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        "default": {"image": image, "before_script": [install], "interruptible": True},
        PLAN_TEMPLATE: {
            "stage": "plan",
            "environment": {"action": "prepare"},
            "rules": [
                # Where apply runs (the apply rule's own condition) the plan checks secrets; elsewhere
                # GitLab withholds protected variables and nothing is applied (see the module docstring).
                {"if": ON_DEFAULT_BRANCH, "variables": {PLAN_FLAGS: ""}},
                {"when": "on_success", "variables": {PLAN_FLAGS: "--no-secrets"}},
            ],
            "artifacts": {"when": "always", "expire_in": "1 week"},
        },
        APPLY_TEMPLATE: {
            "stage": "apply",
            "interruptible": False,  # an apply stopped halfway leaves Kibana half changed
            "rules": [{"if": ON_DEFAULT_BRANCH}],
        },
    }
    for name in names:
        pipeline[plan_job_name(name)] = plan_job(name)
        pipeline[apply_job_name(name)] = apply_job(name, manual=name in manual)
    return pipeline


def plan_job_name(name: str) -> str:
    return f"plan:{name}"


def apply_job_name(name: str) -> str:
    return f"apply:{name}"


def plan_files(name: str) -> tuple[str, str, str]:
    """The saved plan, its Markdown and its GitLab (terraform) report."""
    return f"plan-{name}.json", f"plan-{name}.md", f"plan-{name}.tfreport.json"


def plan_job(name: str) -> dict[str, Any]:
    saved, markdown, report = plan_files(name)
    words = ["kcr", "plan", "--env", name, "--out", saved, "--gitlab-report", report, "--markdown-out", markdown,
             "--detailed-exitcode"]
    return {
        "extends": PLAN_TEMPLATE,
        "variables": {"KCR_ENV": name},
        "environment": {"name": name},
        # kcr's 2 ("changes") is a plan's success; under the runner's `set -e` any other failure fails the job.
        "script": [f"{shlex.join(words)} ${PLAN_FLAGS} || [ $? -eq 2 ]"],
        "artifacts": {"paths": [saved, markdown], "reports": {"terraform": report}},
    }


def apply_job(name: str, *, manual: bool = False) -> dict[str, Any]:
    job: dict[str, Any] = {
        "extends": APPLY_TEMPLATE,
        "variables": {"KCR_ENV": name},
        "needs": [{"job": plan_job_name(name), "artifacts": True}],
        "resource_group": f"kcr-{name}",
        "environment": {"name": name},
        "script": [shlex.join(["kcr", "apply", "--env", name, plan_files(name)[0]])],
    }
    if manual:
        job["rules"] = [{"if": ON_DEFAULT_BRANCH, "when": "manual"}]
    return job


def generate_command(artifact: str, *, root: Path | None = None, install: str = DEFAULT_INSTALL,
                     image: str = DEFAULT_IMAGE, manual: Sequence[str] = ()) -> str:
    """The `kcr ci generate` line the parent's job runs to reproduce this very file."""
    words = ["kcr", "ci", "generate", "--output", artifact]
    if root is not None and root != Path("."):
        words += ["--dir", str(root)]
    if install != DEFAULT_INSTALL:
        words += ["--install", install]
    if image != DEFAULT_IMAGE:
        words += ["--image", image]
    for name in sorted(set(manual)):
        words += ["--manual", name]
    return shlex.join(words)


def parent_snippet(artifact: str = DEFAULT_OUTPUT, *, command: str | None = None, install: str = DEFAULT_INSTALL,
                   image: str = DEFAULT_IMAGE) -> dict[str, Any]:
    """The two jobs the parent pipeline needs: one writes the child pipeline as an artifact, the other
    triggers it and takes its status (`strategy: depend`). The trigger job inherits none of the
    parent's global variables: GitLab forwards a trigger job's variables to the child above the child's
    own job variables, so a global `KCR_ENV` (or a record name built from it) would send every child
    job to the same Kibana."""
    rules = [{"if": condition} for condition in _PARENT_RULES]
    return {
        GENERATE_JOB: {
            "image": image,
            "before_script": [install],
            "script": [command or generate_command(artifact, install=install, image=image)],
            "artifacts": {"paths": [artifact], "expire_in": "1 week"},
            "rules": [dict(rule) for rule in rules],
        },
        TRIGGER_JOB: {
            "needs": [GENERATE_JOB],
            "inherit": {"variables": False},
            "trigger": {"include": [{"artifact": artifact, "job": GENERATE_JOB}], "strategy": "depend"},
            "rules": [dict(rule) for rule in rules],
        },
    }


def dump(data: Mapping[str, Any]) -> str:
    """YAML from data (strings that read as something else come out quoted), in the order given, one
    line per script line whatever its length."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False, width=10_000, allow_unicode=True)


PARENT_SNIPPET = dump(parent_snippet())
