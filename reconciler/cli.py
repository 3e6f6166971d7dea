"""The command line: parse flags into values, call the stage modules (the plan and apply pipelines are
in `pipeline`), and map ReconcilerError to exit codes in exactly one place (`run`, for `main` and for
each command the demo runs). Heavy modules are imported inside the commands so that `kcr --help`
stays fast."""

from __future__ import annotations

import functools
import gc
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler import __version__, cli_team
from reconciler.cli_options import (
    Globals,
    all_envs_options,
    common_options,
    echo_text,
    long_running,
    plan_exit,
    plan_options,
    selective,
    use_color,
)
from reconciler.errors import ConfigError, ExitCode, ReconcilerError

if TYPE_CHECKING:
    from reconciler.pipeline import Session
    from reconciler.plan import Plan

# --- commands ---------------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kcr")
def cli() -> None:
    """kcr: Kibana alerting connectors as code.

    \b
    Exit codes: 0 ok / no changes, 1 error, 2 changes present (plan --detailed-exitcode, drift),
    3 apply: an action was blocked by a guard (and nothing failed).
    """


@cli.command(short_help="Check the repository offline.")
@common_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--resolve-secrets", is_flag=True, help="Also resolve every secret reference (reads env, files, Vault).")
@click.option("--allow-plaintext-secrets", is_flag=True, help="Local experiments only: literal secrets warn.")
def validate(s: Session, fmt: str, resolve_secrets: bool, allow_plaintext_secrets: bool) -> int:
    """Check the repository offline: file format, connector types, ids, secret references."""
    from reconciler import validate as v

    report = v.validate(s.root, spaces=s.spaces or None, resolve_secrets=resolve_secrets, env=s.env,
                        allow_plaintext_secrets=allow_plaintext_secrets, environment=s.environment_name)
    if fmt == "json":
        click.echo(v.format_problems_json(report))
    else:
        click.echo(v.format_problems_text(report), nl=False)
    return ExitCode.ERROR if report.errors else ExitCode.OK


@cli.command(short_help="List connector types, licences, required keys.")
@common_options
@click.option("--live", is_flag=True, help="Also ask Kibana (GET connector_types): enabled, licence.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def types(s: Session, live: bool, fmt: str) -> int:
    """The connector types kcr knows (bundled, and the repository's kcr.yaml `types:` and
    schemas/types/), with licences, required keys and each schema's source; with --live, also the
    types only the Kibana or only kcr has."""
    from reconciler import validate as v
    from reconciler.repo_layout import Walker
    from reconciler.user_types import load as load_types

    walker = Walker(s.root)
    known = load_types(walker, settings_checked=False)
    for p in walker.problems:
        click.echo(f"{p.location()}: {p.severity}: {p.message}" + (f" ({p.path})" if p.path else ""), err=True)
    if any(p.severity == "error" for p in walker.problems):
        return ExitCode.ERROR
    info, url = None, None
    if live:
        with s.client() as client:
            info = client.connector_types(s.spaces[0] if s.spaces else "default")
            url = client.conn.url
    rows = v.types_table(info, known)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(v.format_types_text(rows, url), nl=False)
    return ExitCode.OK


def _plan_all_envs(s: Session, all_envs: bool, parallelism: int | None, *, fmt: str, gitlab_report: Path | None,
                   markdown_out: Path | None, color: bool, out: Path | None, sync_secrets: bool, no_secrets: bool,
                   allow_plaintext_secrets: bool, detailed: bool,
                   then: Callable[[list[tuple[str | None, Plan | None]]], None] | None = None) -> int:
    """`--all-envs`: one report and one exit code for every environment (reconciler/envs_plan.py);
    `then` gets each environment's plan (None when it errored) once the report is out."""
    from reconciler import envs_plan

    if not all_envs:
        raise ConfigError("--env-parallelism bounds --all-envs: add --all-envs, or drop --env-parallelism")
    if sync_secrets and no_secrets:
        raise ConfigError("--sync-secrets pushes the secrets, which --no-secrets never reads: use one or the other")
    envs_plan.refuse_conflicts(env_flag=click.get_current_context().params.get("environment"),
                               kcr_env=s.env.get("KCR_ENV"), kibana_url=s.kibana_url, out=out)
    options = envs_plan.Options(sync_secrets=sync_secrets, allow_plaintext_secrets=allow_plaintext_secrets,
                                check_secrets=not no_secrets,
                                parallelism=parallelism or envs_plan.DEFAULT_PARALLELISM)
    result = envs_plan.plan_all(replace(s, environment_name=None), options)
    envs_plan.write_reports(result, gitlab_report, markdown_out)
    echo_text(envs_plan.view(result, fmt, color))
    if then is not None:
        then([(o.name, o.plan if o.error is None else None) for o in result.outcomes])
    return result.exit_code(detailed)


@cli.command(short_help="Show what apply would change in Kibana.")
@common_options
@selective
@plan_options
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save the plan as JSON for `kcr apply PLAN`.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes (0 none, 1 error).")
@all_envs_options
def plan(s: Session, fmt: str, gitlab_report: Path | None, markdown_out: Path | None, no_color: bool,
         sync_secrets: bool, no_secrets: bool, allow_plaintext_secrets: bool, out: Path | None,
         detailed_exitcode: bool, all_envs: bool, env_parallelism: int | None) -> int:
    """Read Kibana, compare with the repository, and show what apply would do."""
    from reconciler import outputs, pipeline

    if all_envs or env_parallelism is not None:
        return _plan_all_envs(s, all_envs, env_parallelism, fmt=fmt, gitlab_report=gitlab_report,
                              markdown_out=markdown_out, color=use_color(s, no_color), out=out,
                              sync_secrets=sync_secrets, no_secrets=no_secrets,
                              allow_plaintext_secrets=allow_plaintext_secrets, detailed=detailed_exitcode)
    planned = pipeline.make_plan(s, sync_secrets=sync_secrets, allow_plaintext_secrets=allow_plaintext_secrets,
                                 check_secrets=not no_secrets)
    key = s.fingerprint_key
    outputs.write_reports(planned.plan, out, gitlab_report, markdown_out, key=key)
    echo_text(outputs.plan_view(planned.plan, fmt, use_color(s, no_color), key=key))
    return plan_exit(planned.plan, detailed_exitcode)


@cli.command(short_help="Plan for cron: exit 2 when Kibana drifted.")
@common_options
@selective
@plan_options
@all_envs_options
@click.option("--gitlab-issue", is_flag=True,
              help="Keep one GitLab issue per environment open while drift stands (the Markdown report), and "
                   "close it once drift is gone (needs KCR_GITLAB_TOKEN; exit codes unchanged).")
def drift(s: Session, fmt: str, gitlab_report: Path | None, markdown_out: Path | None, no_color: bool,
          sync_secrets: bool, no_secrets: bool, allow_plaintext_secrets: bool, all_envs: bool,
          env_parallelism: int | None, gitlab_issue: bool) -> int:
    """For cron jobs: 0 in sync, 2 drift, 1 error."""
    from reconciler import outputs, pipeline

    issues = functools.partial(_drift_issues, s.env) if gitlab_issue else None
    if gitlab_issue and (s.spaces or s.selection is not None):
        raise ConfigError("--gitlab-issue tracks a whole environment's drift, and a partial plan cannot say it is "
                          "gone: drop --space/--target/--exclude")
    if all_envs or env_parallelism is not None:
        return _plan_all_envs(s, all_envs, env_parallelism, fmt=fmt, gitlab_report=gitlab_report,
                              markdown_out=markdown_out, color=use_color(s, no_color), out=None,
                              sync_secrets=sync_secrets, no_secrets=no_secrets,
                              allow_plaintext_secrets=allow_plaintext_secrets, detailed=True, then=issues)
    planned = pipeline.make_plan(s, sync_secrets=sync_secrets, allow_plaintext_secrets=allow_plaintext_secrets,
                                 check_secrets=not no_secrets)
    outputs.write_reports(planned.plan, None, gitlab_report, markdown_out)
    echo_text(outputs.plan_view(planned.plan, fmt, use_color(s, no_color)))
    if issues is not None:
        issues([(planned.plan.environment, planned.plan)])
    return plan_exit(planned.plan, detailed=True)


def _drift_issues(env: Mapping[str, str], plans: Sequence[tuple[str | None, Plan | None]]) -> None:
    """Open, update or close each environment's drift issue (on stderr: stdout stays the report). An
    environment whose plan errored keeps its issue as it is: kcr cannot tell whether drift is gone."""
    from reconciler import render
    from reconciler.gitlab import track_drift

    for name, plan in plans:
        which = f"drift issue ({name})" if name else "drift issue"
        if plan is None or plan.has_errors:
            click.echo(f"{which} left as it is: the plan has errors", err=True)
            continue
        done = track_drift(plan.has_drift, render.markdown(plan), name, env)
        numbers = ", ".join(f"#{iid}" for iid in done.issues)
        click.echo(f"{which}: {done.verb}{f' {numbers}' if numbers else ''}", err=True)


@cli.command(short_help="Apply a saved plan, or plan and apply.")
@common_options
@selective
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation (CI).")
@click.option("--parallelism", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--allow-referenced", multiple=True, metavar="ID|all",
              help="Let a delete/recreate proceed although rules use the connector (repeatable).")
@click.option("--sync-secrets", is_flag=True, help="When planning here: push every connector's secrets.")
@click.option("--allow-plaintext-secrets", is_flag=True, help="Local experiments only: literal secrets warn.")
@click.option("--no-color", is_flag=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--markdown-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the apply report as Markdown (for `kcr mr-comment`), also when apply stops early.")
def apply(s: Session, plan_file: Path | None, auto_approve: bool, parallelism: int, allow_referenced: tuple[str, ...],
          sync_secrets: bool, no_color: bool, fmt: str, allow_plaintext_secrets: bool,
          markdown_out: Path | None) -> int:
    """Apply a saved plan exactly (`kcr apply plan.json`), or plan, show, ask, and apply."""
    from reconciler import outputs, render

    try:
        code, markdown = _apply(s, plan_file, auto_approve=auto_approve, parallelism=parallelism,
                                allow_referenced=allow_referenced, sync_secrets=sync_secrets, no_color=no_color,
                                fmt=fmt, allow_plaintext_secrets=allow_plaintext_secrets)
    except ReconcilerError as exc:
        if markdown_out is not None:  # the MR hears of a failed apply too; the error itself is what is raised
            try:
                outputs.write_file(markdown_out, render.apply_stopped_markdown(str(exc), s.environment_name))
            except ReconcilerError as unwritten:
                click.echo(f"warning: {unwritten}", err=True)
        raise
    if markdown_out is not None:
        outputs.write_file(markdown_out, markdown())
    return code


def _apply(s: Session, plan_file: Path | None, *, auto_approve: bool, parallelism: int,
           allow_referenced: tuple[str, ...], sync_secrets: bool, no_color: bool, fmt: str,
           allow_plaintext_secrets: bool) -> tuple[int, Callable[[], str]]:
    """`kcr apply`: its exit code and the report as Markdown, made only when --markdown-out asks for it (a
    line per change: a twentieth of a large apply's main thread when nobody reads it)."""
    from reconciler import outputs, pipeline, render
    from reconciler.apply_report import ApplyReport, exit_code

    long_running()  # thousands of requests: their cycles are collected as they come

    color = use_color(s, no_color)
    # With --format json, stdout carries the report alone (for jq): the plan and the prompt go to stderr.
    to_stderr = fmt == "json"
    if plan_file is not None:
        if s.spaces:
            raise ConfigError("a saved plan is applied whole: --space limits planning (`kcr plan --space ... --out`)")
        if s.selection is not None:
            raise ConfigError("a saved plan is applied whole: --target/--exclude belong to the plan "
                              "(`kcr plan --target ... --out`)")
        job = pipeline.saved_plan(s, plan_file)
    else:
        planned = pipeline.make_plan(s, sync_secrets=sync_secrets, allow_plaintext_secrets=allow_plaintext_secrets)
        text = outputs.plan_view(planned.plan, "text", color and not to_stderr)
        click.echo(text, nl=not text.endswith("\n"), err=to_stderr)
        if planned.plan.has_errors:
            raise ConfigError("the plan has errors (above); fix them before applying")
        if not planned.plan.has_changes:
            empty = ApplyReport((), record_updated=False)
            if to_stderr:
                click.echo(json.dumps(render.report_json(empty), indent=2))
            return ExitCode.OK, lambda: render.report_markdown(empty, planned.plan)
        if not auto_approve:
            if not sys.stdin.isatty():
                raise ConfigError("no terminal to ask for confirmation: review the plan and pass --auto-approve, "
                                  "or save it with `kcr plan --out plan.json` and run `kcr apply plan.json`")
            if not click.confirm("Apply these changes?", default=False, err=to_stderr):
                # Terraform's answer to a "no": exit 1, so a script never reads a refusal as an apply.
                click.echo("Apply cancelled.", err=to_stderr)
                return ExitCode.ERROR, lambda: render.apply_stopped_markdown(
                    "Apply cancelled at the prompt: nothing was applied.", planned.plan.environment)
        job = pipeline.one_run(planned)
    progress = functools.partial(outputs.progress_bar, color=color)
    report = pipeline.apply(s, job, parallelism=parallelism, allow_referenced=allow_referenced, progress=progress)
    if fmt == "json":
        click.echo(json.dumps(render.report_json(report), indent=2))
    else:
        echo_text(render.report_text(report, color))
    return exit_code(report), lambda: render.report_markdown(report, job.plan)


@cli.command(short_help="Write live connectors as kcr files.")
@common_options
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write (default: <dir>/connectors).")
@click.option("--overwrite", is_flag=True, help="Replace files a previous export wrote.")
def export(s: Session, out_dir: Path | None, overwrite: bool) -> int:
    """Write live connectors as kcr files (secrets become ${env:..} references) to adopt a Kibana."""
    from reconciler.export import export_spaces

    target = out_dir or (s.root / "connectors")
    with s.client() as client:
        wanted = list(s.spaces) or client.list_spaces()
        result = export_spaces(client, wanted, target, overwrite=overwrite)
    for path in result.files:
        click.echo(f"wrote {path}")
    for line in (*result.warnings, *(f"skipped {skipped}" for skipped in result.skipped)):
        click.echo(f"warning: {line}", err=True)
    _variables_to_set(result.variables, "secrets are never exported")
    return ExitCode.OK


def _variables_to_set(names: Sequence[str], why: str) -> None:
    """The `${env:..}` placeholders export and import wrote, which must be set before a plan."""
    if names:
        click.echo(f"\nSet these variables ({why}) before `kcr plan`:")
        for name in names:
            click.echo(f"  {name}")


@cli.command("import", short_help="Adopt one live connector into a file.")
@common_options
@click.argument("connector_id")
@click.option("--into", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The connector file to append to, relative to the repository (default: "
                   "connectors/SPACE/imported.yaml); created when missing.")
def import_(s: Session, connector_id: str, into: Path | None) -> int:
    """Append the live connector CONNECTOR_ID of --space to a connector file, keeping its id (so the next
    plan neither creates nor deletes it), with ${env:..} placeholders for its secrets."""
    from reconciler.adopt import import_connector

    if len(s.spaces) != 1:
        raise ConfigError("kcr import reads one space: give exactly one --space (the connector's space in Kibana)")
    with s.client() as client:
        result = import_connector(client, s.root, s.spaces[0], connector_id, into=into, env=s.env,
                                  environment=s.environment.name if s.environment is not None else None)
    verb = "created" if result.created else "appended to"
    click.echo(f"{verb} {result.file}: {result.connector.name!r} ({result.connector.type}, id {result.connector.id})")
    if result.environment:
        click.echo(f"declared for environment {result.environment} only (`environments: [{result.environment}]`); "
                   "drop that line to create it in the other environments too")
    _variables_to_set(result.variables, "Kibana never returns secrets")
    return ExitCode.OK


@cli.command("test", short_help="Run a connector once through Kibana.")
@common_options
@click.argument("connector_id", metavar="KEY|SPACE/KEY|ID")
@click.option("--params", default="{}", help="The action's params as JSON (default {}).")
def test_connector(s: Session, connector_id: str, params: str) -> int:
    """Run a connector once through Kibana's _execute (this sends a real notification). A key is tested
    in the space whose files declare it (--space when several do); an id in --space (default: default)."""
    from reconciler import connector_test as ct
    from reconciler.model import UUID_PATTERN

    parsed = ct.parse_params(params)
    declared: dict[str, list[tuple[str, str]]] = {}
    if (s.root / "connectors").is_dir() and not re.fullmatch(UUID_PATTERN, connector_id.rsplit("/", 1)[-1]):
        from reconciler.desired import load_repository

        environment = s.environment
        declared = ct.declarations(load_repository(s.root, None, env=s.env, allow_plaintext_secrets=True,
                                                   environment=environment.name if environment else None))
    target = ct.find_target(s.root, connector_id, s.spaces, declared)
    with s.client() as client:
        cid, result = ct.run_target(client, target, connector_id, parsed)
    echo_text(ct.render_text(result, f"{target.space}/{cid}"))
    return ct.exit_code(result)


@cli.command("force-unlock", short_help="Release the lock of a run that died.")
@common_options
@click.argument("lock_id")
def force_unlock(s: Session, lock_id: str) -> int:
    """Release the record's lock left by an apply that died (the lock id is in the "locked by" error),
    as `terraform force-unlock` does. Only that lock is removed; make sure its run is really gone."""
    with s.record() as record:
        record.force_unlock(lock_id)
    click.echo(f"Lock {lock_id} released.")
    return ExitCode.OK


for _command in cli_team.COMMANDS:
    cli.add_command(_command)


def run(args: Sequence[str] | None, obj: Globals) -> int:
    """Run one kcr command (`args`; None: the process's arguments) and return its exit code: the one
    place errors become exit codes, for `main` and for each command the demo runs. Unexpected
    exceptions are bugs: one line, no traceback unless `obj.debug` (KCR_DEBUG), since a traceback
    could quote a local holding a secret."""
    try:
        # Without standalone mode, click returns the command's code (recent click) or raises Exit (older).
        returned = cli.main(args=list(args) if args is not None else None, prog_name="kcr", standalone_mode=False,
                            obj=obj)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return ExitCode.ERROR
    except click.ClickException as exc:
        exc.show()
        return ExitCode.ERROR
    except ReconcilerError as exc:
        click.echo(f"Error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except Exception as exc:  # the last line of defence
        if obj.debug:
            raise
        click.echo(f"Error: internal error ({type(exc).__name__}); re-run with KCR_DEBUG=1 and report it", err=True)
        return ExitCode.ERROR
    return returned if isinstance(returned, int) else ExitCode.OK


def short_lived_gc() -> None:
    """A kcr process is short-lived and keeps nearly everything it allocates (files, connectors, plan) to
    its end, so the cyclic collector's passes over a growing heap find almost nothing to free while
    costing a third of a large plan's CPU (issue #16; a higher threshold still left most of it).
    Reference counting frees everything that is not a cycle, as it always did; the collector is off
    for the process, and what the imports made is frozen out of its sight should anything turn it on."""
    gc.freeze()
    gc.disable()


def without_httpx_cli() -> None:
    """httpx imports its own command line whenever rich is installed (rich is kcr's, for colours and the
    progress bar): rich's console, progress and syntax modules and pygments, an eighth of a small plan's
    CPU, in every process that talks HTTP, and kcr never runs httpx's command line. Marked missing
    before httpx is first imported, the import fails as it does without rich, and httpx defines its
    stand-in `main`; nothing else of httpx depends on it. For the console script's own process only."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: "not importable"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, transport: Any = None) -> int:
    """The console script (argv None: exits the process) and the tests' entry point (returns the code)."""
    if argv is None:
        short_lived_gc()
        without_httpx_cli()
    env = dict(os.environ if env is None else env)
    code = run(argv, Globals(env=env, transport=transport, debug=bool(env.get("KCR_DEBUG"))))
    if argv is None:
        sys.exit(code)
    return code
