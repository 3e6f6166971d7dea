"""The command line: parse flags into values, call the stage modules, and map ReconcilerError to exit
codes in exactly one place (`main`). Heavy modules are imported inside the commands so that
`kcr --help` stays fast."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from reconciler import __version__
from reconciler.errors import ConfigError, ExitCode, ReconcilerError

if TYPE_CHECKING:
    from reconciler.kibana import Connection, KibanaClient
    from reconciler.model import DesiredState, SecretDigest
    from reconciler.plan import Plan
    from reconciler.secrets import SecretResolver
    from reconciler.state import RecordBackend

log = logging.getLogger("kcr")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Globals:
    """Options every command shares, and the environment (passed in, so tests can call main())."""

    root: Path = Path(".")
    spaces: tuple[str, ...] = ()
    kibana_url: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    transport: Any = None  # an httpx transport for Kibana (tests, the demo); None: the network
    connection: Any = None  # ((kibana_url, env id), Connection), see _connection


def _common(f: F) -> F:
    """--dir, --space, --kibana-url and -v on every command that reads the repository or Kibana."""
    f = click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="The repository (default: the current directory).")(f)
    f = click.option("--space", "spaces", multiple=True, help="Limit the work to this space (repeatable).")(f)
    f = click.option("--kibana-url", default=None, help="Kibana's URL (default: $KIBANA_URL or $KIBANA_ENDPOINT).")(f)
    f = click.option("-v", "--verbose", count=True,
                     help="Log every request and apply result to stderr (-vv: debug). Never secrets.")(f)
    return f


def _globals(ctx: click.Context, root: Path | None, spaces: Sequence[str], kibana_url: str | None,
             verbose: int) -> Globals:
    g: Globals = ctx.ensure_object(Globals)
    if root is not None:
        g.root = root
    g.spaces = tuple(spaces) or g.spaces
    g.kibana_url = kibana_url or g.kibana_url
    _logging(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    return g


class _KcrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """kcr's own stderr handler (one, whatever the number of commands a process runs)."""


def _logging(level: int) -> None:
    """Warnings (a stale lock taken over, TLS verification off) always reach stderr; -v adds requests."""
    logger = logging.getLogger("kcr")
    for old in [h for h in logger.handlers if isinstance(h, _KcrHandler)]:
        logger.removeHandler(old)
    handler = _KcrHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(min(level, logger.level or logging.WARNING))


def _out(text: str, path: Path | None = None) -> None:
    if path is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        _write_atomic(path, text)


def _write_atomic(path: Path, text: str) -> None:
    from reconciler.files import write_atomic

    try:
        write_atomic(path, text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be written ({exc.strerror or exc})") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None


def _color(g: Globals, no_color: bool) -> bool:
    return not no_color and sys.stdout.isatty() and "NO_COLOR" not in g.env


def _fingerprint_key(env: Mapping[str, str]) -> bytes | None:
    from reconciler.state import fingerprint_key  # one reading of KCR_FINGERPRINT_KEY, the record's

    return fingerprint_key(env)


def _connection(g: Globals) -> Connection:
    """Built once per command, so its warnings (several credentials, TLS off) are said once."""
    from reconciler.kibana import Connection

    key = (g.kibana_url, id(g.env))
    if g.connection is None or g.connection[0] != key:
        g.connection = (key, Connection.from_env(g.env, url=g.kibana_url))
    conn: Connection = g.connection[1]
    return conn


@contextmanager
def _client(g: Globals) -> Iterator[KibanaClient]:
    from reconciler.kibana import KibanaClient

    client = KibanaClient(_connection(g), transport=g.transport)
    try:
        yield client
    finally:
        client.close()


# --- the plan pipeline: files -> secrets -> Kibana -> Plan -----------------------------------------------


@dataclass(frozen=True)
class Planned:
    plan: Plan
    desired: DesiredState
    resolver: SecretResolver  # kept for a one-run apply: each Vault secret is read once per run


def _digests(g: Globals, desired: DesiredState, resolver: SecretResolver,
             spaces: Sequence[str]) -> dict[str, SecretDigest]:
    """Resolve every secret reference of the planned spaces before any request to Kibana: an unset
    variable stops the run here, naming the reference and the connector."""
    from reconciler.desired import owner_label

    owners: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for space in (desired.spaces[s] for s in spaces):
        for spec in space.connectors:
            if spec.secrets:
                owners[owner_label(spec)] = (spec.id, spec.secrets)
    resolved = resolver.resolve_many({owner: refs for owner, (_, refs) in owners.items()})
    key = _fingerprint_key(g.env)
    if key is None and any(not r.vault_versions for r in resolved.values()):
        log.warning("KCR_FINGERPRINT_KEY is not set: a changed ${env:..} or ${file:..} secret cannot be "
                    "detected (the plan says 'unknown'); set it, e.g. as a masked CI variable")
    return {owners[o][0]: r.digest(owners[o][0], key) for o, r in resolved.items()}


def _planned_spaces(g: Globals, desired: DesiredState) -> list[str]:
    from reconciler.errors import Problem, ValidationError

    missing = [s for s in dict.fromkeys(g.spaces) if s not in desired.spaces]
    if missing:
        raise ValidationError(Problem(f"connectors/{s}", f"space {s!r} has no directory connectors/{s}/")
                              for s in missing)
    return sorted(set(g.spaces)) if g.spaces else sorted(desired.spaces)


def _make_plan(g: Globals, *, sync_secrets: bool = False, allow_plaintext_secrets: bool = False) -> Planned:
    from reconciler import planner
    from reconciler.desired import load_repository
    from reconciler.secrets import SecretResolver

    # The whole repository, even with --space: a connector another space declares must never be
    # planned as a delete here, and only the whole repository can say which those are.
    desired = load_repository(g.root, None, env=g.env, allow_plaintext_secrets=allow_plaintext_secrets)
    spaces = _planned_spaces(g, desired)
    resolver = SecretResolver(g.env, desired.settings, g.root)
    digests = _digests(g, desired, resolver, spaces)
    with _record(g) as backend:
        record = backend.load()
    if backend.key_warning:  # said here, once per run: an apply in the same run loads the record again
        log.warning("%s", backend.key_warning)
    with _client(g) as client:
        live = client.read_live(spaces)
        plan = planner.make_plan(desired, live, digests=digests, record=record, sync_secrets=sync_secrets,
                                 spaces=spaces)
        wanted = planner.blocked_ids(plan)
        if wanted:
            rules = {cid: tuple(client.rules_referencing(space, cid)) for space, cid in wanted}
            plan = planner.attach_rules(plan, rules)
    plan = replace(plan, created_at=datetime.now(UTC).replace(microsecond=0).isoformat())
    return Planned(plan=plan, desired=desired, resolver=resolver)


@contextmanager
def _record(g: Globals) -> Iterator[RecordBackend]:
    """The record of applied secrets for this Kibana; an HTTP backend's connection is closed after."""
    from reconciler.state import backend_from_env

    backend = backend_from_env(g.env, g.root, kibana_url=_connection(g).url)
    try:
        yield backend
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()


def _render(plan: Plan, fmt: str, color: bool, key: bytes | None = None) -> str:
    from reconciler import render
    from reconciler.planfile import dumps

    if fmt == "json":
        return dumps(plan, key)
    if fmt == "markdown":
        return render.markdown(plan)
    return render.text(plan, color=color)


def _write_reports(plan: Plan, out: Path | None, gitlab_report: Path | None, markdown_out: Path | None,
                   key: bytes | None = None) -> None:
    """`key` (KCR_FINGERPRINT_KEY) signs the saved plan, so apply can tell it from an edited one."""
    from reconciler import render
    from reconciler.planfile import dumps

    if out is not None:
        _write_atomic(out, dumps(plan, key))
    if gitlab_report is not None:
        _write_atomic(gitlab_report, json.dumps(render.gitlab_report(plan)) + "\n")
    if markdown_out is not None:
        _write_atomic(markdown_out, render.markdown(plan))


def _plan_exit(plan: Plan, detailed: bool) -> int:
    if plan.has_errors:
        return ExitCode.ERROR
    if detailed and plan.has_changes:
        return ExitCode.CHANGES
    return ExitCode.OK


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
@_common
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--resolve-secrets", is_flag=True, help="Also resolve every secret reference (reads env, files, Vault).")
@click.option("--allow-plaintext-secrets", is_flag=True, help="Local experiments only: literal secrets warn.")
@click.pass_context
def validate(ctx: click.Context, root: Path | None, spaces: tuple[str, ...], kibana_url: str | None, verbose: int,
             fmt: str, resolve_secrets: bool, allow_plaintext_secrets: bool) -> None:
    """Check the repository offline: file format, connector types, ids, secret references."""
    from reconciler import validate as v

    g = _globals(ctx, root, spaces, kibana_url, verbose)
    report = v.validate(g.root, spaces=g.spaces or None, resolve_secrets=resolve_secrets, env=g.env,
                        allow_plaintext_secrets=allow_plaintext_secrets)
    if fmt == "json":
        click.echo(v.format_problems_json(report))
    else:
        click.echo(v.format_problems_text(report), nl=False)
    if report.errors:
        ctx.exit(ExitCode.ERROR)


@cli.command(short_help="List connector types, licences, required keys.")
@_common
@click.option("--live", is_flag=True, help="Also ask Kibana (GET connector_types): enabled, licence.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def types(ctx: click.Context, root: Path | None, spaces: tuple[str, ...], kibana_url: str | None, verbose: int,
          live: bool, fmt: str) -> None:
    """The connector types kcr knows, with licences and required keys."""
    from reconciler import validate as v

    g = _globals(ctx, root, spaces, kibana_url, verbose)
    info = None
    if live:
        with _client(g) as client:
            info = client.connector_types(g.spaces[0] if g.spaces else "default")
    rows = v.types_table(info)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(v.format_types_text(rows), nl=False)


def _plan_options(f: F) -> F:
    f = click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
                     help="What to print on stdout.")(f)
    f = click.option("--gitlab-report", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Write GitLab's MR-widget report (artifacts:reports:terraform).")(f)
    f = click.option("--markdown-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Also write the Markdown rendering (for an MR comment).")(f)
    f = click.option("--no-color", is_flag=True, help="Plain text even on a terminal.")(f)
    f = click.option("--sync-secrets", is_flag=True, help="Plan an update of every connector's secrets.")(f)
    f = click.option("--allow-plaintext-secrets", is_flag=True,
                     help="Local experiments only: literal secrets warn (and never reach a saved plan).")(f)
    return f


@cli.command(short_help="Show what apply would change in Kibana.")
@_common
@_plan_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save the plan as JSON for `kcr apply PLAN`.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes (0 none, 1 error).")
@click.pass_context
def plan(ctx: click.Context, root: Path | None, spaces: tuple[str, ...], kibana_url: str | None, verbose: int,
         fmt: str, gitlab_report: Path | None, markdown_out: Path | None, no_color: bool, sync_secrets: bool,
         allow_plaintext_secrets: bool, out: Path | None, detailed_exitcode: bool) -> None:
    """Read Kibana, compare with the repository, and show what apply would do."""
    g = _globals(ctx, root, spaces, kibana_url, verbose)
    planned = _make_plan(g, sync_secrets=sync_secrets, allow_plaintext_secrets=allow_plaintext_secrets)
    key = _fingerprint_key(g.env)
    _write_reports(planned.plan, out, gitlab_report, markdown_out, key=key)
    _out(_render(planned.plan, fmt, _color(g, no_color), key=key))
    ctx.exit(_plan_exit(planned.plan, detailed_exitcode))


@cli.command(short_help="Plan for cron: exit 2 when Kibana drifted.")
@_common
@_plan_options
@click.pass_context
def drift(ctx: click.Context, root: Path | None, spaces: tuple[str, ...], kibana_url: str | None, verbose: int,
          fmt: str, gitlab_report: Path | None, markdown_out: Path | None, no_color: bool,
          sync_secrets: bool, allow_plaintext_secrets: bool) -> None:
    """For cron jobs: 0 in sync, 2 drift, 1 error."""
    g = _globals(ctx, root, spaces, kibana_url, verbose)
    planned = _make_plan(g, sync_secrets=sync_secrets, allow_plaintext_secrets=allow_plaintext_secrets)
    _write_reports(planned.plan, None, gitlab_report, markdown_out)
    _out(_render(planned.plan, fmt, _color(g, no_color)))
    ctx.exit(_plan_exit(planned.plan, detailed=True))


@cli.command(short_help="Apply a saved plan, or plan and apply.")
@_common
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation (CI).")
@click.option("--parallelism", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--allow-referenced", multiple=True, metavar="ID|all",
              help="Let a delete/recreate proceed although rules use the connector (repeatable).")
@click.option("--sync-secrets", is_flag=True, help="When planning here: push every connector's secrets.")
@click.option("--allow-plaintext-secrets", is_flag=True, help="Local experiments only: literal secrets warn.")
@click.option("--no-color", is_flag=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def apply(ctx: click.Context, root: Path | None, spaces: tuple[str, ...], kibana_url: str | None, verbose: int,
          plan_file: Path | None, auto_approve: bool, parallelism: int, allow_referenced: tuple[str, ...],
          sync_secrets: bool, no_color: bool, fmt: str, allow_plaintext_secrets: bool) -> None:
    """Apply a saved plan exactly (`kcr apply plan.json`), or plan, show, ask, and apply."""
    from reconciler import applier
    from reconciler.secrets import SecretResolver

    g = _globals(ctx, root, spaces, kibana_url, verbose)
    color = _color(g, no_color)
    one_run_refs: dict[str, Any] | None = None
    if plan_file is not None:
        if spaces:
            raise ConfigError("a saved plan is applied whole: --space limits planning (`kcr plan --space ... --out`)")
        the_plan = _load_saved_plan(g, plan_file)
        if the_plan.has_errors:
            raise ConfigError(f"{plan_file} holds a plan with errors (see `kcr plan`); fix them and plan again")
        from reconciler.desired import load_repository
        from reconciler.plancheck import check_against_repository

        _confirm_target(g, the_plan)
        # The repository checked out here must agree with the plan's deletes and protections.
        desired = load_repository(g.root, None, env=g.env, allow_plaintext_secrets=True)
        check_against_repository(the_plan, desired, str(plan_file))
        settings = desired.settings
    else:
        planned = _make_plan(g, sync_secrets=sync_secrets, allow_plaintext_secrets=allow_plaintext_secrets)
        the_plan, settings = planned.plan, planned.desired.settings
        _out(_render(the_plan, "text", color))
        if the_plan.has_errors:
            raise ConfigError("the plan has errors (above); fix them before applying")
        if not the_plan.has_changes:
            ctx.exit(ExitCode.OK)
        if not auto_approve:
            if not sys.stdin.isatty():
                raise ConfigError("no terminal to ask for confirmation: review the plan and pass --auto-approve, "
                                  "or save it with `kcr plan --out plan.json` and run `kcr apply plan.json`")
            if not click.confirm("Apply these changes?", default=False):
                click.echo("Apply cancelled.")
                ctx.exit(ExitCode.OK)
        # Planned and applied in one run: the repository's own secret values (a plaintext one included,
        # which a saved plan never holds) go straight to the applier.
        one_run_refs = {f"{spec.space}/{spec.id}": dict(spec.secrets)
                        for space in planned.desired.spaces.values() for spec in space.connectors}
    allow: frozenset[str] | Literal["all"] = "all" if "all" in allow_referenced else frozenset(allow_referenced)
    _refuse_ambiguous_keys(the_plan, allow_referenced)
    resolver = planned.resolver if plan_file is None else SecretResolver(g.env, settings, g.root)
    with _record(g) as record, _client(g) as client, _progress(the_plan, color) as progress:
        report = applier.apply_plan(the_plan, client, resolver, record, parallelism=parallelism,
                                    allow_referenced=allow, fingerprint_key=_fingerprint_key(g.env),
                                    on_progress=progress, secret_refs=one_run_refs)
    if plan_file is not None and record.key_warning:  # a one-run apply said it while planning
        log.warning("%s", record.key_warning)
    if fmt == "json":
        click.echo(json.dumps(applier.report_to_json(report), indent=2))
    else:
        _out(applier.render_report_text(report, color))
    ctx.exit(applier.exit_code(report))


def _refuse_ambiguous_keys(plan: Plan, names: Sequence[str]) -> None:
    """A bare key may be declared in several spaces: lifting the guard of all of them because one was
    meant is the kind of surprise a guard exists to prevent."""
    from reconciler.plan import Action

    for name in names:
        spaces = sorted({c.space for c in plan.changes if c.desired is not None and c.desired.key == name
                         and c.action in (Action.DELETE, Action.RECREATE)})
        if len(spaces) > 1:
            raise ConfigError(f"--allow-referenced {name}: the key {name} is declared in spaces {', '.join(spaces)}; "
                              f"write SPACE/{name} or the connector id")


def _load_saved_plan(g: Globals, plan_file: Path) -> Plan:
    """With KCR_FINGERPRINT_KEY the plan must carry a MAC that verifies; without it nothing can tell
    the reviewed plan from an edited one, which is said every time."""
    from reconciler.planfile import loads

    key = _fingerprint_key(g.env)
    if key is None:
        log.warning("%s cannot be authenticated: KCR_FINGERPRINT_KEY is not set, so an edit after "
                    "`kcr plan --out` would go unnoticed (set KCR_FINGERPRINT_KEY to sign and verify plans)", plan_file)
    return loads(_read_text(plan_file), str(plan_file), key=key)


def _confirm_target(g: Globals, plan: Plan) -> None:
    """The URL inside a plan file is data, not a target: sending the credentials wherever a file says
    would hand them to whoever wrote it. The operator names Kibana; the plan must agree with it."""
    from reconciler.kibana import redact_url

    if not (g.kibana_url or g.env.get("KIBANA_URL") or g.env.get("KIBANA_ENDPOINT")):
        raise ConfigError(f"the plan targets {redact_url(plan.kibana_url)}; set KIBANA_URL or pass --kibana-url "
                          "to confirm the target")
    _check_same_kibana(_connection(g).url, plan)  # before the record backend or Kibana hears anything


def _check_same_kibana(url: str, plan: Plan) -> None:
    """A saved plan carries the fingerprints of one Kibana; applying it to another would refuse every
    action as stale at best, so say what is wrong up front (before any request, the record's included)."""
    from reconciler.kibana import redact_url
    from reconciler.state import normalize_kibana_url  # the record's spelling: one per Kibana

    if normalize_kibana_url(url) != normalize_kibana_url(plan.kibana_url):
        raise ConfigError(f"the plan was made against {redact_url(plan.kibana_url)} but KIBANA_URL is "
                          f"{redact_url(url)}; re-run `kcr plan --out` against this Kibana")


@contextmanager
def _progress(plan: Plan, color: bool) -> Iterator[Callable[[Any], None] | None]:
    """A progress bar on stderr when it is a terminal (CI logs get the report alone)."""
    from reconciler.plan import MUTATING

    total = sum(1 for c in plan.changes if c.action in MUTATING)
    if not sys.stderr.isatty() or total == 0:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("applying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=Console(stderr=True, no_color=not color),
                  transient=True) as bar:
        task = bar.add_task("", total=total)

        def advance(result: Any) -> None:
            bar.update(task, advance=1, description=f"{result.status} {result.address}")

        yield advance


@cli.command(short_help="Write live connectors as kcr files.")
@_common
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write (default: <dir>/connectors).")
@click.option("--overwrite", is_flag=True, help="Replace files a previous export wrote.")
@click.pass_context
def export(ctx: click.Context, root: Path | None, spaces: tuple[str, ...], kibana_url: str | None, verbose: int,
           out_dir: Path | None, overwrite: bool) -> None:
    """Write live connectors as kcr files (secrets become ${env:..} references) to adopt a Kibana."""
    from reconciler.export import export_spaces

    g = _globals(ctx, root, spaces, kibana_url, verbose)
    target = out_dir or (g.root / "connectors")
    with _client(g) as client:
        wanted = list(g.spaces) or client.list_spaces()
        result = export_spaces(client, wanted, target, overwrite=overwrite)
    for path in result.files:
        click.echo(f"wrote {path}")
    for line in (*result.warnings, *(f"skipped {s}" for s in result.skipped)):
        click.echo(f"warning: {line}", err=True)
    if result.variables:
        click.echo("\nSet these variables (secrets are never exported) before `kcr plan`:")
        for name in result.variables:
            click.echo(f"  {name}")


@cli.command("test", short_help="Run a connector once through Kibana.")
@_common
@click.argument("connector_id")
@click.option("--params", default="{}", help="The action's params as JSON (default {}).")
@click.pass_context
def test_connector(ctx: click.Context, root: Path | None, spaces: tuple[str, ...], kibana_url: str | None,
                   verbose: int, connector_id: str, params: str) -> None:
    """Run a connector once through Kibana's _execute (this sends a real notification)."""
    from reconciler.connector_test import exit_code, parse_params, render_text, run_connector_test

    g = _globals(ctx, root, spaces, kibana_url, verbose)
    space = g.spaces[0] if g.spaces else "default"
    connector_id = _kibana_id(g.root, space, connector_id)
    with _client(g) as client:
        result = run_connector_test(client, space, connector_id, parse_params(params))
    _out(render_text(result, f"{space}/{connector_id}"))
    ctx.exit(exit_code(result))


@cli.command("force-unlock", short_help="Release the lock of a run that died.")
@_common
@click.argument("lock_id")
@click.pass_context
def force_unlock(ctx: click.Context, root: Path | None, spaces: tuple[str, ...], kibana_url: str | None,
                 verbose: int, lock_id: str) -> None:
    """Release the record's lock left by an apply that died (the lock id is in the "locked by" error),
    as `terraform force-unlock` does. Only that lock is removed; make sure its run is really gone."""
    g = _globals(ctx, root, spaces, kibana_url, verbose)
    with _record(g) as record:
        record.force_unlock(lock_id)
    click.echo(f"Lock {lock_id} released.")


def _kibana_id(root: Path, space: str, given: str) -> str:
    """`kcr test` takes what users know, a repository key, as well as a Kibana id."""
    import re

    from reconciler.desired import load_settings
    from reconciler.model import KEY_PATTERN, UUID_PATTERN, derive_connector_id

    if re.fullmatch(UUID_PATTERN, given) or not re.fullmatch(KEY_PATTERN, given):
        return given
    if (root / "kcr.yaml").is_file() and load_settings(root).id_mode == "verbatim":
        return given
    return derive_connector_id(space, given)


@cli.command("mr-comment", short_help="Post the Markdown plan as an MR comment.")
@click.argument("markdown_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--title", default="kcr plan", show_default=True, help="One sticky comment per title.")
@click.pass_context
def mr_comment(ctx: click.Context, markdown_file: Path, title: str) -> None:
    """Post (or update) a Markdown plan as a merge-request comment (needs KCR_GITLAB_TOKEN)."""
    from reconciler.gitlab import post_mr_comment

    g: Globals = ctx.ensure_object(Globals)
    verb = post_mr_comment(markdown_file.read_text(encoding="utf-8"), title, g.env)
    click.echo(f"MR comment {verb}.")


@cli.command(short_help="Run the offline Kibana API on loopback.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5601, show_default=True, type=int)
@click.option("--seed", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None)
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Persist the store here (JSON, secrets in clear: a test double, never real credentials).")
def sandbox(host: str, port: int, seed: Path | None, state: Path | None) -> None:
    """Run the offline Kibana connectors API on loopback."""
    from reconciler.sandbox.server import main_options

    main_options(host, port, seed, state)


@cli.command(short_help="Try kcr against an embedded sandbox.")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@click.pass_context
def demo(ctx: click.Context, root: Path) -> None:
    """Validate, plan, apply and re-plan the example connectors/ against an embedded sandbox on a loopback
    port: no Kibana, no credentials (unset secret variables get obviously fake values)."""
    from reconciler.demo import run_demo

    ctx.exit(run_demo(root, invoke=_invoke))


def _invoke(args: Sequence[str], env: Mapping[str, str]) -> int:
    """Run one kcr command in this process with its own environment (used by the demo)."""
    try:
        returned = cli.main(args=list(args), prog_name="kcr", standalone_mode=False, obj=Globals(env=dict(env)))
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except ReconcilerError as exc:
        click.echo(f"Error: {exc}", err=True)
        return exc.exit_code
    return returned if isinstance(returned, int) else ExitCode.OK


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, transport: Any = None) -> int:
    """The one place errors become exit codes. Unexpected exceptions are bugs: one line, no traceback
    unless KCR_DEBUG is set, since a traceback could quote a local holding a secret."""
    obj = Globals(env=dict(os.environ if env is None else env), transport=transport)
    try:
        # Without standalone mode, click returns ctx.exit()'s code (recent click) or raises Exit (older).
        returned = cli.main(args=list(argv) if argv is not None else None, prog_name="kcr", standalone_mode=False,
                            obj=obj)
    except click.exceptions.Exit as exc:
        code = int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        code = ExitCode.ERROR
    except click.ClickException as exc:
        exc.show()
        code = ExitCode.ERROR
    except ReconcilerError as exc:
        click.echo(f"Error: {exc}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        code = 130
    except Exception as exc:  # the last line of defence
        if obj.env.get("KCR_DEBUG"):
            raise
        click.echo(f"Error: internal error ({type(exc).__name__}); re-run with KCR_DEBUG=1 and report it", err=True)
        code = ExitCode.ERROR
    else:
        code = returned if isinstance(returned, int) else ExitCode.OK
    if argv is None:
        sys.exit(code)
    return code
