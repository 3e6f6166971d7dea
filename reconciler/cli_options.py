"""What every command shares: the process's globals, the flags of the commands that read the
repository or Kibana (turned into one Session), the plan flags, logging to stderr, and printing.
Separate from `cli` so that the commands can live in more than one module (`cli`, `cli_team`) without
either importing the other's commands."""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from reconciler.errors import ExitCode

if TYPE_CHECKING:
    from reconciler.pipeline import Session
    from reconciler.plan import Plan

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Globals:
    """What a process gives every command: the environment and Kibana's transport (passed in, so tests
    can call main()), and whether an internal error shows its traceback (KCR_DEBUG)."""

    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    transport: Any = None  # an httpx transport for Kibana (tests, the demo); None: the network
    debug: bool = False


pass_globals = click.make_pass_decorator(Globals, ensure=True)


def common_options(f: Callable[..., int]) -> Callable[..., int]:
    """--dir, --space, --kibana-url and -v on every command that reads the repository or Kibana; the
    command receives them, with the process's environment, as one Session."""

    @functools.wraps(f)
    def command(*args: Any, root: Path | None, spaces: tuple[str, ...], kibana_url: str | None, verbose: int,
                environment: str | None, **kwargs: Any) -> int:
        from reconciler.environments import asked
        from reconciler.pipeline import Session

        g: Globals = click.get_current_context().ensure_object(Globals)
        configure_logging(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
        session = Session(root=root or Path("."), env=g.env, spaces=tuple(spaces), kibana_url=kibana_url,
                          transport=g.transport, environment_name=asked(environment, g.env))
        return f(session, *args, **kwargs)

    options = [
        click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="The repository (default: the current directory)."),
        click.option("--space", "spaces", multiple=True, help="Limit the work to this space (repeatable)."),
        click.option("--env", "environment", default=None, metavar="NAME",
                     help="The kcr.yaml environment to work on (default: $KCR_ENV)."),
        click.option("--kibana-url", default=None, help="Kibana's URL (default: $KIBANA_URL or $KIBANA_ENDPOINT)."),
        click.option("-v", "--verbose", count=True,
                     help="Log every request and apply result to stderr (-vv: debug). Never secrets."),
    ]
    return functools.reduce(lambda g, option: option(g), options, command)


def selective(f: Callable[..., int]) -> Callable[..., int]:
    """--target and --exclude (under @common_options): the Session carries them as one Selection."""

    @functools.wraps(f)
    def command(s: Session, *args: Any, target: tuple[str, ...], exclude: tuple[str, ...], **kwargs: Any) -> int:
        from reconciler.selection import Selection

        return f(replace(s, selection=Selection.of(target, exclude)), *args, **kwargs)

    glob = " (repeatable; KEY, ID, SPACE/KEY, SPACE/ID or a glob of them)"
    command = click.option("--exclude", multiple=True, metavar="KEY|ID|GLOB",
                           help="Leave this connector alone" + glob + ".")(command)
    return click.option("--target", multiple=True, metavar="KEY|ID|GLOB",
                        help="Plan only this connector" + glob + ".")(command)


class KcrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """kcr's own stderr handler (one, whatever the number of commands a process runs)."""


def configure_logging(level: int) -> None:
    """Warnings (a stale lock taken over, TLS verification off) always reach stderr; -v adds requests."""
    logger = logging.getLogger("kcr")
    for old in [h for h in logger.handlers if isinstance(h, KcrHandler)]:
        logger.removeHandler(old)
    handler = KcrHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(min(level, logger.level or logging.WARNING))


def echo_text(text: str) -> None:
    click.echo(text, nl=not text.endswith("\n"))


def use_color(session: Session, no_color: bool) -> bool:
    return not no_color and sys.stdout.isatty() and "NO_COLOR" not in session.env


def plan_exit(plan: Plan, detailed: bool) -> int:
    if plan.has_errors:
        return ExitCode.ERROR
    if detailed and plan.has_drift:  # changes, or a connector removed from the files still in Kibana
        return ExitCode.CHANGES
    return ExitCode.OK



def plan_options(f: F) -> F:
    f = click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
                     help="What to print on stdout.")(f)
    f = click.option("--gitlab-report", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Write GitLab's MR-widget report (artifacts:reports:terraform).")(f)
    f = click.option("--markdown-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Also write the Markdown rendering (for an MR comment).")(f)
    f = click.option("--no-color", is_flag=True, help="Plain text even on a terminal.")(f)
    f = click.option("--sync-secrets", is_flag=True, help="Plan an update of every connector's secrets.")(f)
    f = click.option("--no-secrets", is_flag=True,
                     help="Compare types, names and config only; resolve no secret (for MR pipelines). "
                          "Such a plan cannot be applied.")(f)
    f = click.option("--allow-plaintext-secrets", is_flag=True,
                     help="Local experiments only: literal secrets warn (and never reach a saved plan).")(f)
    return f


def all_envs_options(f: F) -> F:
    f = click.option("--env-parallelism", type=click.IntRange(1, 64), default=None, metavar="N",
                     help="With --all-envs: plan at most N environments at a time (default 16).")(f)
    return click.option("--all-envs", is_flag=True,
                        help="Plan every kcr.yaml environment (each with its own Kibana URL) into one report, "
                             "a section per environment; exit 1 if any errored.")(f)


def long_running() -> None:
    """A command that runs for long (a server, an apply of thousands of changes) turns the cyclic
    collector back on, which the short-lived CLI process turns off (`cli.short_lived_gc`): cycles made
    while it runs (tracebacks, connections) must not pile up. What the start-up froze stays frozen."""
    gc.enable()
