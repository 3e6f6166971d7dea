"""`kcr init` (issue #15): a new user's first minutes. From an empty directory, the files it writes
validate and plan against a Kibana with nothing set but the variables it names; it never overwrites a
file without --force; and the pipeline it writes passes GitLab's schema and does what it says: each job's
script runs against two sandboxes (staging, production) as GitLab would run it, in a merge-request
pipeline (read-only key, no secrets, nothing written), on the default branch (plans with secrets, then
staging's apply, then production's, each writing only its own Kibana, each with the apply key) and on
a schedule (drift per environment)."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from helpers.cli import kcr_process, process_env, run_main
from helpers.gitlab_ci import Runner, jobs
from helpers.gitlab_fake import FakeGitLab

from reconciler import __version__
from reconciler.init import FILES, SECRET_VARIABLES, next_steps, scaffold, template
from reconciler.model import derive_connector_id
from reconciler.sandbox import Sandbox
from reconciler.sandbox.server import running

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "tests" / "data" / "gitlab" / "ci-schema.json"
ENVIRONMENTS = ("staging", "production")
CANARY = {name: f"https://hooks.slack.com/services/CANARY-{name}-{uuid.uuid4()}" for name in ENVIRONMENTS}
READ_KEY = {name: f"{name}-read-only-{uuid.uuid4()}" for name in ENVIRONMENTS}
APPLY_KEY = {name: f"{name}-all-privileges-{uuid.uuid4()}" for name in ENVIRONMENTS}
FINGERPRINT_KEY = f"CANARY-fingerprint-{uuid.uuid4()}"
GITLAB_TOKEN = f"CANARY-glpat-{uuid.uuid4()}"
MERGE_SHA = "b" * 40  # the default-branch pipelines' commit (tests/helpers/gitlab_ci.py)
EXAMPLE_ID = derive_connector_id("default", "team-alerts")


def _written_pipeline(root: Path) -> dict[str, Any]:
    data = yaml.safe_load((root / ".gitlab-ci.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# --- the files ---------------------------------------------------------------------------------------------


def test_init_writes_a_repository_that_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, ["init", str(tmp_path / "new")], env=process_env())
    assert code == 0, err
    root = tmp_path / "new"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == sorted(FILES)
    for rel in FILES:
        assert f"wrote     {rel}" in out
    assert (root / ".gitignore").read_text().splitlines()[-1] == ".kcr/"
    code, out, err = run_main(capsys, ["validate", "--dir", str(root), "--format", "json"], env=process_env())
    report = json.loads(out)
    assert code == 0 and report["problems"] == [], out + err  # no error and no warning either
    assert report["environments"] == sorted(ENVIRONMENTS)


def test_next_steps_name_every_variable_the_files_read() -> None:
    """Whatever the pipeline's scripts and the example's secrets read (beyond GitLab's predefined
    variables and what the pipeline sets itself) is named in what `kcr init` prints."""
    pipeline = yaml.safe_load(template("gitlab-ci.yml"))
    scripts = "\n".join(line for job in pipeline.values() if isinstance(job, dict) for line in job.get("script", []))
    own = {"KCR_ENV", "KCR_PLAN_FLAGS", "rc", "KIBANA_API_KEY"} | set(pipeline["variables"])
    read = {name for name in re.findall(r"\$\{?(\w+)", scripts) if not name.startswith("CI_")} - own
    read |= set(re.findall(r"\$\{env:(\w+)\}", template("example.yaml")))
    read |= {"KIBANA_URL", "KIBANA_API_KEY"}  # kcr reads them itself
    assert read == {"KIBANA_URL", "KIBANA_API_KEY", "KIBANA_APPLY_API_KEY", "KCR_GITLAB_TOKEN", *SECRET_VARIABLES}
    steps = next_steps()
    for name in [*read, "KCR_FINGERPRINT_KEY"]:
        assert re.search(rf"^\s+{name}\s+\S", steps, re.MULTILINE), name  # listed, with what it is
        assert name in template("gitlab-ci.yml"), f"the pipeline's header does not list {name}"
    assert re.search(r"KIBANA_API_KEY\s+masked, not protected: a READ-ONLY key", steps)
    assert re.search(r"KIBANA_APPLY_API_KEY\s+masked, protected: a key with ALL privileges", steps)


def test_init_never_overwrites_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kcr.yaml").write_text("# mine\n")
    (tmp_path / ".gitignore").write_text("node_modules/")
    outside = tmp_path.parent / f"{tmp_path.name}-target.yml"
    outside.write_text("not kcr's\n")
    (tmp_path / ".gitlab-ci.yml").symlink_to(outside)

    code, out, err = run_main(capsys, ["init", str(tmp_path)], env=process_env())
    assert code == 1 and out == ""
    assert "kcr.yaml, .gitlab-ci.yml already exist" in err and "--force" in err and "Nothing was written" in err
    assert (tmp_path / "kcr.yaml").read_text() == "# mine\n"
    assert not (tmp_path / "connectors").exists()
    assert (tmp_path / ".gitignore").read_text() == "node_modules/"

    code, out, err = run_main(capsys, ["init", str(tmp_path), "--force"], env=process_env())
    assert code == 0, err
    assert "replaced  kcr.yaml" in out and "wrote     connectors/default/example.yaml" in out
    assert "added     .kcr/ to .gitignore" in out
    assert (tmp_path / "kcr.yaml").read_text() == template("kcr.yaml")
    assert not (tmp_path / ".gitlab-ci.yml").is_symlink() and outside.read_text() == "not kcr's\n"
    assert (tmp_path / ".gitignore").read_text().startswith("node_modules/\n")  # kept, .kcr/ appended

    code, out, _ = run_main(capsys, ["init", str(tmp_path), "--force"], env=process_env())
    assert code == 0 and "added" not in out
    assert (tmp_path / ".gitignore").read_text().count(".kcr/") == 1


def test_init_refuses_a_file_as_its_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    code, _, err = run_main(capsys, ["init", str(tmp_path / "f")], env=process_env())
    assert code != 0 and "f" in err and (tmp_path / "f").read_text() == "x"


def test_the_templates_ship_in_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["reconciler"]
    for name in FILES.values():
        assert any(fnmatch.fnmatch(f"templates/{name}", pattern) for pattern in globs), name
        assert (ROOT / "reconciler" / "templates" / name).is_file()


def test_written_pipeline_passes_gitlabs_schema_and_orders_the_applies(tmp_path: Path) -> None:
    scaffold(tmp_path)
    ci = _written_pipeline(tmp_path)
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert [f"{e.json_path}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(ci)] == []

    for name, job in ci.items():  # a stray ": " makes a script line a mapping, which the schema lets through
        for line in job.get("script", []) + job.get("before_script", []) if isinstance(job, dict) else []:
            assert isinstance(line, str), (name, line)
    assert ci["variables"]["KCR_VERSION"] == __version__
    assert ci["default"]["before_script"] == ['python -m pip install --quiet "kcr==$KCR_VERSION"']
    assert ci["plan"]["parallel"]["matrix"] == [{"KCR_ENV": list(ENVIRONMENTS)}]
    assert ci["drift"]["parallel"]["matrix"] == [{"KCR_ENV": list(ENVIRONMENTS)}]
    assert ci["validate"]["artifacts"]["when"] == "always"
    created = jobs(ci)
    staging, production = created["apply:staging"], created["apply:production"]
    assert staging["needs"] == [{"job": "plan", "parallel": {"matrix": [{"KCR_ENV": "staging"}]}}]
    assert production["needs"] == [{"job": "plan", "parallel": {"matrix": [{"KCR_ENV": "production"}]}},
                                   {"job": "apply:staging", "artifacts": False}]
    assert (staging["resource_group"], production["resource_group"]) == ("kcr-staging", "kcr-production")
    assert production["rules"][0]["when"] == "manual" and "when" not in staging["rules"][0]
    assert staging["interruptible"] is False and production["interruptible"] is False
    assert (staging["environment"]["name"], production["environment"]["name"]) == ENVIRONMENTS
    # The environments are kcr.yaml's.
    assert list(yaml.safe_load((tmp_path / "kcr.yaml").read_text())["environments"]) == list(ENVIRONMENTS)


def test_init_then_validate_and_plan_against_a_kibana(tmp_path: Path) -> None:
    """The acceptance: an empty directory, `kcr init`, then `kcr validate` and `kcr plan --env staging`
    as processes against a sandbox on loopback, with only the variables `kcr init` names."""
    repo = tmp_path / "connectors-repo"
    repo.mkdir()
    proc = kcr_process(repo, process_env(), "init")
    assert proc.returncode == 0, proc.stderr
    assert "KIBANA_URL" in proc.stdout and "KIBANA_APPLY_API_KEY" in proc.stdout
    proc = kcr_process(repo, process_env(), "validate")
    assert proc.returncode == 0 and "valid" in proc.stdout, proc.stdout + proc.stderr

    sb = Sandbox.from_seed({"auth": {"api_keys": [READ_KEY["staging"]]}})
    with running(sb) as url:
        env = process_env(KIBANA_URL=url, KIBANA_API_KEY=READ_KEY["staging"], SLACK_WEBHOOK_URL=CANARY["staging"],
                          KCR_FINGERPRINT_KEY=FINGERPRINT_KEY)
        proc = kcr_process(repo, env, "plan", "--env", "staging", "--detailed-exitcode",
                           secrets=[CANARY["staging"], FINGERPRINT_KEY])
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert '"Alerts for platform-staging (staging)"' in proc.stdout and "1 to create" in proc.stdout
        # A merge request's plan: no secret variable at all, and it still plans.
        env = process_env(KIBANA_URL=url, KIBANA_API_KEY=READ_KEY["staging"])
        proc = kcr_process(repo, env, "plan", "--env", "staging", "--no-secrets")
        assert proc.returncode == 0 and "1 to create" in proc.stdout, proc.stdout + proc.stderr
    assert sb.connectors_in("default") == []


# --- the pipeline's jobs, run ---------------------------------------------------------------------------


def _accepting(sb: Sandbox, key: str) -> None:
    """From now on the sandbox takes only `key`: a job using another key fails with 401. (The sandbox
    does not tell read-only keys from all-privileges ones; accepting one key per kind of job shows
    which key each job sends.)"""
    sb.settings = dataclasses.replace(sb.settings, auth_enabled=True, api_keys=frozenset({key}))


def _writes(sb: Sandbox) -> int:
    return sum(n for key, n in sb.counters.items() if key.split(" ")[0] in ("POST", "PUT", "DELETE"))


@pytest.fixture()
def kibanas() -> Iterator[tuple[dict[str, Sandbox], dict[str, str]]]:
    sandboxes = {name: Sandbox.from_seed({"auth": {"api_keys": [READ_KEY[name]]}}) for name in ENVIRONMENTS}
    with running(sandboxes["staging"]) as staging, running(sandboxes["production"]) as production:
        yield sandboxes, {"staging": staging, "production": production}


def _runner(ci: dict[str, Any], repo: Path, work: Path, kind: str, urls: dict[str, str],
            **project: str) -> Runner:
    """GitLab's settings as `kcr init` says to make them: per environment KIBANA_URL, the read-only key
    (unprotected), the apply key and the secret (protected); the fingerprint key (protected). The
    record is a local file per environment here, instead of GitLab-managed Terraform state."""
    scoped = {name: {"KIBANA_URL": urls[name], "KIBANA_API_KEY": READ_KEY[name],
                     "KIBANA_APPLY_API_KEY": APPLY_KEY[name], "SLACK_WEBHOOK_URL": CANARY[name],
                     "KCR_RECORD": str(work.parent / f"record-{name}.json")} for name in ENVIRONMENTS}
    return Runner(ci, repo, work, kind, project={"KCR_FINGERPRINT_KEY": FINGERPRINT_KEY, **project}, scoped=scoped,
                  protected=frozenset({"KIBANA_APPLY_API_KEY", "SLACK_WEBHOOK_URL", "KCR_FINGERPRINT_KEY"}),
                  secrets=(*CANARY.values(), *APPLY_KEY.values(), FINGERPRINT_KEY, GITLAB_TOKEN))


def _pipeline_for_test(repo: Path) -> dict[str, Any]:
    ci = _written_pipeline(repo)
    assert ci[".kcr"]["variables"].pop("KCR_RECORD_GITLAB_STATE") == "kcr-record-$KCR_ENV"
    return ci


@pytest.fixture()
def gitlab() -> Iterator[tuple[FakeGitLab, dict[str, str]]]:
    """The fake GitLab, and the CI/CD settings that point kcr at it (the token unprotected: MR pipelines comment)."""
    fake = FakeGitLab(token=GITLAB_TOKEN)
    with fake.running() as api:
        yield fake, {"CI_API_V4_URL": api, "KCR_GITLAB_TOKEN": GITLAB_TOKEN}


def _bodies(notes: list[dict[str, Any]]) -> dict[str, str]:
    """Each note by its heading (kcr names it after the title: `### kcr plan (staging)`)."""
    return {re.search(r"^### (.+)$", n["body"], re.MULTILINE).group(1): n["body"] for n in notes}  # type: ignore[union-attr]


def test_merge_request_pipeline_plans_with_a_read_only_key_and_no_secrets(
        tmp_path: Path, kibanas: tuple[dict[str, Sandbox], dict[str, str]],
        gitlab: tuple[FakeGitLab, dict[str, str]]) -> None:
    sandboxes, urls = kibanas
    fake, settings = gitlab
    repo = tmp_path / "repo"
    scaffold(repo)
    ci = _pipeline_for_test(repo)
    mr = _runner(ci, repo, tmp_path / "mr", "merge request", urls, **settings)
    assert mr.created == {"validate": "on_success", "plan: [staging]": "on_success",
                          "plan: [production]": "on_success"}
    proc = mr.run("validate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(mr.artifacts["validate"]["validate.json"])["problems"] == []

    for name in ENVIRONMENTS:
        proc = mr.run(f"plan: [{name}]")
        assert proc.returncode == 0, proc.stdout + proc.stderr  # kcr said 2 (changes): the job passes
        assert "not checked (--no-secrets)" in proc.stdout
        files = mr.artifacts[f"plan: [{name}]"]
        assert sorted(files) == sorted([f"plan-{name}.json", f"plan-{name}.md", f"tfplan-{name}.json"])
        saved = json.loads(files[f"plan-{name}.json"])
        assert saved["environment"] == name and saved["secrets_checked"] is False and saved["summary"]["create"] == 1
        assert json.loads(files[f"tfplan-{name}.json"])["create"] == 1
        assert [c["args"][0] for c in mr.calls] == ["plan", "mr-comment"]
    assert all(_writes(sb) == 0 and sb.connectors_in("default") == [] for sb in sandboxes.values())
    notes = _bodies(fake.notes[3])
    assert sorted(notes) == ["kcr plan (production)", "kcr plan (staging)"]
    assert "Alerts for platform-staging (staging)" in notes["kcr plan (staging)"]
    assert "Alerts for platform (production)" in notes["kcr plan (production)"]

    # Sticky: the next pipeline of the MR updates each environment's note rather than adding one.
    again = _runner(ci, repo, tmp_path / "again", "merge request", urls, **settings)
    assert again.run("plan: [staging]").returncode == 0
    assert len(fake.notes[3]) == 2 and ("PUT", f"/projects/7/merge_requests/3/notes/{fake.notes[3][0]['id']}") in \
        fake.writes()

    # Without the token, no comment is attempted and the plan still passes.
    quiet = _runner(ci, repo, tmp_path / "quiet", "merge request", urls)
    assert quiet.run("plan: [staging]").returncode == 0
    assert [c["args"][0] for c in quiet.calls] == ["plan"]
    # A failing plan fails its job (exit 1 is not "changes"), and posts nothing.
    proc = mr.run("plan: [staging]", KIBANA_API_KEY="not-the-key")
    assert proc.returncode == 1 and "401" in proc.stdout + proc.stderr
    assert [c["args"][0] for c in mr.calls] == ["plan"]


def test_validate_keeps_its_json_report_when_validation_fails(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    scaffold(repo)
    example = repo / "connectors" / "default" / "example.yaml"
    example.write_text(example.read_text().replace("${env:SLACK_WEBHOOK_URL}", "https://hooks.slack.com/literal"))
    mr = Runner(_written_pipeline(repo), repo, tmp_path / "mr", "merge request")
    proc = mr.run("validate")
    assert proc.returncode == 1
    assert "example.yaml" in proc.stdout + proc.stderr  # the text run, in the job's log
    report = json.loads(mr.artifacts["validate"]["validate.json"])
    assert [p["severity"] for p in report["problems"]] == ["error"] and "example.yaml" in report["problems"][0]["file"]


def _plan_and_apply(ci: dict[str, Any], repo: Path, work: Path, urls: dict[str, str],
                    sandboxes: dict[str, Sandbox], names: tuple[str, ...] = ENVIRONMENTS, **project: str) -> Runner:
    """A default-branch pipeline: plans (the Kibana taking only the read-only key), then the applies in
    order (taking only the all-privileges key)."""
    main = _runner(ci, repo, work, "default branch", urls, **project)
    for name in names:
        _accepting(sandboxes[name], READ_KEY[name])
        proc = main.run(f"plan: [{name}]")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in names:
        _accepting(sandboxes[name], APPLY_KEY[name])
        proc = main.run(f"apply:{name}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        _accepting(sandboxes[name], READ_KEY[name])
    return main


def test_default_branch_applies_staging_then_production_each_to_its_own_kibana(
        tmp_path: Path, kibanas: tuple[dict[str, Sandbox], dict[str, str]],
        gitlab: tuple[FakeGitLab, dict[str, str]]) -> None:
    sandboxes, urls = kibanas
    fake, settings = gitlab
    # The merged MR (!3) and another one that also contains the commit (!4, still open).
    fake.commit_mrs[MERGE_SHA] = [{"iid": 4, "state": "opened", "sha": "d" * 40},
                                  {"iid": 3, "state": "merged", "sha": "c" * 40, "merge_commit_sha": MERGE_SHA}]
    repo = tmp_path / "repo"
    scaffold(repo)
    ci = _pipeline_for_test(repo)
    main = _runner(ci, repo, tmp_path / "main", "default branch", urls, **settings)
    assert main.created == {"validate": "on_success", "plan: [staging]": "on_success",
                            "plan: [production]": "on_success", "apply:staging": "on_success",
                            "apply:production": "manual"}
    for name in ENVIRONMENTS:
        _accepting(sandboxes[name], READ_KEY[name])
        proc = main.run(f"plan: [{name}]")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        saved = json.loads(main.artifacts[f"plan: [{name}]"][f"plan-{name}.json"])
        assert saved["secrets_checked"] is True and saved["summary"]["create"] == 1
        assert [c["args"][0] for c in main.calls] == ["plan"]  # no MR pipeline: the apply reports
    assert all(_writes(sb) == 0 for sb in sandboxes.values())

    # Production waits for staging's apply: it cannot run first.
    with pytest.raises(AssertionError, match="needs apply:staging"):
        main.run("apply:production")

    # Only the all-privileges key writes; without it, apply stops before any request.
    for name in ENVIRONMENTS:
        _accepting(sandboxes[name], APPLY_KEY[name])
    requests = sandboxes["staging"].counters["total"]
    proc = main.run("apply:staging", KIBANA_APPLY_API_KEY="")
    assert proc.returncode != 0 and "KIBANA_APPLY_API_KEY: is not set (the Kibana key apply writes with" in proc.stderr
    assert sandboxes["staging"].counters["total"] == requests and fake.writes() == []

    proc = main.run("apply:staging")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    staging = sandboxes["staging"].connectors_in("default")
    assert [(c["id"], c["name"], c["secrets"]) for c in staging] == \
        [(EXAMPLE_ID, "Alerts for platform-staging (staging)", {"webhookUrl": CANARY["staging"]})]
    assert _writes(sandboxes["production"]) == 0 and sandboxes["production"].connectors_in("default") == []
    assert 4 not in fake.notes and list(_bodies(fake.notes[3])) == ["kcr apply (staging)"]
    report = main.artifacts["apply:staging"]["apply-staging.md"].decode()
    assert f"default/{EXAMPLE_ID}" in report and "Alerts for platform-staging (staging)" in report
    assert report.split("\n### kcr apply\n", 1)[1].strip() in fake.notes[3][0]["body"]  # the report, as the note

    before, staging_writes = staging, _writes(sandboxes["staging"])
    proc = main.run("apply:production")  # the click
    assert proc.returncode == 0, proc.stdout + proc.stderr
    production = sandboxes["production"].connectors_in("default")
    assert [(c["name"], c["secrets"]) for c in production] == \
        [("Alerts for platform (production)", {"webhookUrl": CANARY["production"]})]
    assert sandboxes["staging"].connectors_in("default") == before and _writes(sandboxes["staging"]) == staging_writes
    assert sorted(_bodies(fake.notes[3])) == ["kcr apply (production)", "kcr apply (staging)"] and 4 not in fake.notes

    # Converged: the next pipeline plans nothing.
    again = _runner(ci, repo, tmp_path / "again", "default branch", urls)
    for name in ENVIRONMENTS:
        _accepting(sandboxes[name], READ_KEY[name])
        assert again.run(f"plan: [{name}]").returncode == 0
        assert json.loads(again.artifacts[f"plan: [{name}]"][f"plan-{name}.json"])["summary"].get("create", 0) == 0


def test_schedule_runs_drift_per_environment_with_an_issue_while_it_stands(
        tmp_path: Path, kibanas: tuple[dict[str, Sandbox], dict[str, str]],
        gitlab: tuple[FakeGitLab, dict[str, str]]) -> None:
    sandboxes, urls = kibanas
    fake, settings = gitlab
    repo = tmp_path / "repo"
    scaffold(repo)
    ci = _pipeline_for_test(repo)
    _plan_and_apply(ci, repo, tmp_path / "main", urls, sandboxes)

    schedule = _runner(ci, repo, tmp_path / "schedule", "schedule", urls, **settings)
    assert schedule.created == {"drift: [staging]": "on_success", "drift: [production]": "on_success"}
    for name in ENVIRONMENTS:
        proc = schedule.run(f"drift: [{name}]")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "--gitlab-issue" in schedule.calls[0]["args"]
    assert fake.issues == []

    # A hand edit in staging's Kibana: staging's drift job fails (exit 2), with its report and an issue.
    _accepting(sandboxes["staging"], APPLY_KEY["staging"])
    with httpx.Client(base_url=urls["staging"], headers={"Authorization": f"ApiKey {APPLY_KEY['staging']}",
                                                          "kbn-xsrf": "true"}) as kibana:
        kibana.put(f"/api/actions/connector/{EXAMPLE_ID}",
                   json={"name": "renamed by hand", "config": {},
                         "secrets": {"webhookUrl": CANARY["staging"]}}).raise_for_status()
    _accepting(sandboxes["staging"], READ_KEY["staging"])
    proc = schedule.run("drift: [staging]")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "renamed by hand" in schedule.artifacts["drift: [staging]"]["drift-staging.md"].decode()
    assert schedule.run("drift: [production]").returncode == 0
    assert [(i["title"], i["state"]) for i in fake.issues] == [("kcr drift (staging)", "opened")]
    assert "renamed by hand" in fake.issues[0]["description"]

    # The default branch's pipeline puts staging back; the next drift run closes the issue.
    _plan_and_apply(ci, repo, tmp_path / "fix", urls, sandboxes, ("staging",))
    assert schedule.run("drift: [staging]").returncode == 0
    assert [(i["title"], i["state"]) for i in fake.issues] == [("kcr drift (staging)", "closed")]

    # Without the token, drift is not asked for an issue (and passes).
    quiet = _runner(ci, repo, tmp_path / "quiet", "schedule", urls)
    assert quiet.run("drift: [production]").returncode == 0 and "--gitlab-issue" not in quiet.calls[0]["args"]
