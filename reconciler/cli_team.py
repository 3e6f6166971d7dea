"""The commands around the core loop: the team's GitLab (`mr-comment`, `ci generate`), starting a
repository (`init`), the offline Kibana (`sandbox`, `demo`), and kibana.yml (`render`). Registered on the `kcr` group by
`cli`; kept apart so that `cli` holds the plan/apply commands and stays readable."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler import __version__
from reconciler.cli_options import Globals, pass_globals
from reconciler.errors import ConfigError, ExitCode

if TYPE_CHECKING:
    from reconciler.model import DesiredState


@click.command("mr-comment", short_help="Post a Markdown plan or apply report as a sticky MR comment.")
@click.argument("markdown_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--title", default=None,
              help="One sticky comment per title and environment (default: the report's heading, e.g. kcr plan).")
@click.option("--env", "environment", default=None, metavar="NAME",
              help="The environment the report is about, named in the title (default: $KCR_ENV).")
@pass_globals
def mr_comment(g: Globals, markdown_file: Path, title: str | None, environment: str | None) -> int:
    """Post (or update) a Markdown plan or apply report as a merge-request comment: on the pipeline's MR,
    or else on the MR the commit came from (needs KCR_GITLAB_TOKEN)."""
    from reconciler.environments import asked
    from reconciler.gitlab import comment_on_mr

    try:
        markdown = markdown_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{markdown_file}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    posted = comment_on_mr(markdown, g.env, title=title, environment=asked(environment, g.env))
    if posted.merge_request is None:
        click.echo(f"No merge request for commit {g.env.get('CI_COMMIT_SHA', '')[:12]}: nothing posted.")
    else:
        click.echo(f"MR !{posted.merge_request} comment {posted.verb}.")
    return ExitCode.OK


@click.group(short_help="Generate CI configuration.")
def ci() -> None:
    """Generate CI configuration from kcr.yaml."""


@ci.command("generate", short_help="Write a GitLab child pipeline: plan and apply jobs per environment.")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The repository (default: the current directory).")
@click.option("--output", default="-", show_default=True, metavar="FILE|-", help="Where to write the pipeline.")
@click.option("--install", default=None, metavar="CMD",
              help=f"How each job installs kcr (default: python -m pip install --quiet kcr=={__version__}).")
@click.option("--image", default=None, metavar="IMG", help="The jobs' image (default: python:3.11-slim).")
@click.option("--manual", multiple=True, metavar="ENV", help="This environment's apply waits for a click (repeatable).")
def ci_generate(root: Path | None, output: str, install: str | None, image: str | None,
                manual: tuple[str, ...]) -> int:
    """Write a GitLab child pipeline (a dynamic child pipeline, `trigger: include: artifact:`) with a plan
    job per kcr.yaml environment and, on the default branch, an apply job per environment that needs only
    its own plan. Prints the parent pipeline's jobs to add on stderr."""
    from reconciler.ci_generate import generate
    from reconciler.outputs import write_file

    generated = generate(root or Path("."), output=output, install=install, image=image, manual=manual)
    if output == "-":
        click.echo(generated.text, nl=False)
    else:
        write_file(Path(output), generated.text)
    click.echo(generated.note, err=True, nl=False)
    return ExitCode.OK


@click.command(short_help="Run the offline Kibana API on loopback.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5601, show_default=True, type=int)
@click.option("--seed", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None)
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Persist the store here (JSON, secrets in clear: a test double, never real credentials).")
def sandbox(host: str, port: int, seed: Path | None, state: Path | None) -> None:
    """Run the offline Kibana connectors API on loopback."""
    from reconciler.cli_options import long_running
    from reconciler.sandbox.server import main_options

    long_running()

    main_options(host, port, seed, state)


@click.command(short_help="Try kcr against an embedded sandbox.")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@pass_globals
def demo(g: Globals, root: Path) -> int:
    """Validate, plan, apply and re-plan the example connectors/ against embedded sandboxes on loopback
    ports, one per environment of kcr.yaml: no Kibana, no credentials (unset secret variables get
    obviously fake values)."""
    from reconciler.cli import run  # the one place errors become exit codes
    from reconciler.cli_options import long_running
    from reconciler.demo import run_demo

    long_running()  # it serves sandboxes while running every step
    return run_demo(root, invoke=lambda args, env: run(args, Globals(env=dict(env), debug=g.debug)))


@click.command(short_help="Start a connectors repository: kcr.yaml, an example, .gitlab-ci.yml.")
@click.argument("directory", required=False, default=Path("."), type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace files that exist (.gitignore is only given .kcr/).")
def init(directory: Path, force: bool) -> int:
    """Write kcr.yaml (environments staging and production), connectors/default/example.yaml,
    .gitignore and a .gitlab-ci.yml that installs this kcr version, then print what to set in GitLab.
    Never overwrites a file without --force."""
    from reconciler.init import report, scaffold

    click.echo(report(scaffold(directory, force=force)), nl=False)
    return ExitCode.OK


@click.group(short_help="Render kibana.yml settings from the repository.")
def render() -> None:
    """kibana.yml from the repository: the preconfigured connectors (`kibana-yml`), their keystore values
    (`keystore-value`) and the hardening settings the declared connectors need (`allowed-hosts`)."""


def _repository(f: Callable[..., int]) -> Callable[..., int]:
    """--dir and --env; the command receives the environment's desired state and the globals."""

    @functools.wraps(f)
    def command(*args: Any, root: Path | None, environment: str | None, **kwargs: Any) -> int:
        from reconciler.desired import load_repository
        from reconciler.environments import asked

        g: Globals = click.get_current_context().ensure_object(Globals)
        where = root or Path(".")
        desired = load_repository(where, None, env=g.env, environment=asked(environment, g.env))
        return f(g, desired, where, *args, **kwargs)

    command = click.option("--env", "environment", default=None, metavar="NAME",
                           help="The kcr.yaml environment (default: $KCR_ENV).")(command)
    return click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="The repository (default: the current directory).")(command)


@render.command("kibana-yml", short_help="The xpack.actions.preconfigured block; secrets for the keystore.")
@click.option("--format", "fmt", type=click.Choice(["keystore", "eck"]), default="keystore", show_default=True,
              help="Secrets as a keystore script (no values) or an ECK secureSettings Secret (values, base64).")
@click.option("--secrets-in-file", is_flag=True, help="Write the secrets into kibana.yml in clear (no keystore).")
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE|-", help="Where the kibana.yml goes.")
@click.option("--secrets-out", default=None, metavar="FILE|-",
              help="Where the keystore script or the ECK Secret goes (default: stdout when -o names a file).")
@click.option("--secret-name", default=None, metavar="NAME", help="The ECK Secret's name.")
@_repository
def render_kibana_yml(g: Globals, desired: DesiredState, root: Path, fmt: str, secrets_in_file: bool, output: str,
                      secrets_out: str | None, secret_name: str | None) -> int:
    """Write the xpack.actions.preconfigured block of the connectors the files place in kibana.yml, keyed
    by Kibana id; each secret becomes a keystore setting, filled by the script (or the ECK Secret)."""
    from reconciler.outputs import write_file
    from reconciler.render_kibana import kibana_yml
    from reconciler.secrets import SecretResolver

    resolver = SecretResolver(g.env, desired.settings, root) if secrets_in_file or fmt == "eck" else None
    rendered = kibana_yml(desired, fmt=fmt, secrets_in_file=secrets_in_file, resolver=resolver, root=root,
                          secret_name=secret_name)
    what = "the ECK Secret" if fmt == "eck" else "the keystore script"
    extra = secrets_out if secrets_out not in (None, "-") else None
    if rendered.secrets is not None and output == "-" and extra is None:
        raise ConfigError(f"the kibana.yml fragment and {what} would both go to stdout; name a file for one "
                          "(-o FILE or --secrets-out FILE)")
    if output == "-":
        click.echo(rendered.kibana_yml, nl=False)
    else:
        write_file(Path(output), rendered.kibana_yml)  # mode 0600, as every file kcr writes
    if secrets_in_file and rendered.settings:
        click.echo(f"warning: {output if output != '-' else 'the kibana.yml on stdout'} holds "
                   f"{len(rendered.settings)} secret value(s) in clear (--secrets-in-file)", err=True)
    if rendered.secrets is None:
        return ExitCode.OK
    if extra is None:
        click.echo(rendered.secrets, nl=False)
    else:
        write_file(Path(extra), rendered.secrets)
    if rendered.holds_values:
        click.echo(f"warning: {what} ({extra or 'stdout'}) carries {len(rendered.settings)} secret value(s) "
                   "(base64 is no protection): apply it, never commit or log it", err=True)
    else:
        click.echo(f"{what} ({extra or 'stdout'}) fills {len(rendered.settings)} keystore setting(s); it holds no "
                   "value: run it where kcr can read the references", err=True)
    return ExitCode.OK


@render.command("keystore-value", short_help="Resolve one keystore setting's secret into kibana-keystore.")
@click.argument("setting_name", metavar="SETTING")
@click.option("--keystore", "keystore_bin", default=None, metavar="BIN",
              help="Run `BIN add --stdin --force SETTING` (Kibana's bin/kibana-keystore) with the value on a pipe.")
@_repository
def render_keystore_value(g: Globals, desired: DesiredState, root: Path, setting_name: str,
                          keystore_bin: str | None) -> int:
    """What the keystore script runs per setting: the value is resolved now and goes only into a pipe."""
    import subprocess

    from reconciler.render_kibana import keystore_value
    from reconciler.secrets import SecretResolver

    if not keystore_bin:  # checked before any secret is read: kcr never prints a secret value, even into a pipe
        raise ConfigError("give --keystore BIN, Kibana's bin/kibana-keystore (the script passes $KIBANA_KEYSTORE): "
                          "the value goes only into its standard input, never to kcr's output")
    value = keystore_value(desired, setting_name, SecretResolver(g.env, desired.settings, root))
    try:
        done = subprocess.run([keystore_bin, "add", "--stdin", "--force", setting_name], input=value.encode(),
                              check=False)
    except OSError as exc:
        raise ConfigError(f"{keystore_bin}: cannot be run ({exc.strerror or exc}); set KIBANA_KEYSTORE to "
                          "Kibana's bin/kibana-keystore") from None
    if done.returncode != 0:
        raise ConfigError(f"{keystore_bin} add {setting_name} exited {done.returncode}")
    return ExitCode.OK


@render.command("allowed-hosts", short_help="xpack.actions.allowedHosts and enabledActionTypes the files need.")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.option("--resolve-secrets", is_flag=True,
              help="Read the secrets to learn the hosts they hold (webhook URLs); only hosts are printed.")
@_repository
def render_allowed_hosts(g: Globals, desired: DesiredState, root: Path, fmt: str, resolve_secrets: bool) -> int:
    """The minimal allowedHosts for every declared connector (URL fields, default and fixed URLs, implied
    hosts) and the API connectors' types for enabledActionTypes; what kcr cannot tell is listed."""
    import json

    from reconciler.render_kibana import hardening
    from reconciler.secrets import SecretResolver

    found = hardening(desired, SecretResolver(g.env, desired.settings, root) if resolve_secrets else None)
    if fmt == "json":
        click.echo(json.dumps(found.to_json(), indent=2))
    else:
        click.echo(found.text(desired.environment), nl=False)
    return ExitCode.OK


COMMANDS: tuple[click.Command, ...] = (mr_comment, ci, sandbox, demo, init, render)
