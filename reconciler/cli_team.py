"""The commands around the core loop: the team's GitLab (`mr-comment`, `ci generate`), starting a
repository (`init`), and the offline Kibana (`sandbox`, `demo`). Registered on the `kcr` group by
`cli`; kept apart so that `cli` holds the plan/apply commands and stays readable."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler import __version__
from reconciler.cli_options import Globals, pass_globals
from reconciler.errors import ConfigError, ExitCode


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
    from reconciler.sandbox.server import main_options

    main_options(host, port, seed, state)


@click.command(short_help="Try kcr against an embedded sandbox.")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@pass_globals
def demo(g: Globals, root: Path) -> int:
    """Validate, plan, apply and re-plan the example connectors/ against embedded sandboxes on loopback
    ports, one per environment of kcr.yaml: no Kibana, no credentials (unset secret variables get
    obviously fake values)."""
    from reconciler.cli import run  # the one place errors become exit codes
    from reconciler.demo import run_demo

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


COMMANDS: tuple[click.Command, ...] = (mr_comment, ci, sandbox, demo, init)
