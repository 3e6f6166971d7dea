"""Where a command's results go: the plan in the format asked for, the report files (the saved plan,
GitLab's MR-widget report, the Markdown), each written whole or not at all with a typed error naming
the path, and the progress bar of an apply on a terminal. Separate from the views in `render`, which
make strings from values and touch no file or terminal, and from the CLI, which only says where."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler import render
from reconciler.apply_report import ActionResult
from reconciler.errors import ConfigError
from reconciler.files import write_atomic
from reconciler.plan import MUTATING, Plan
from reconciler.planfile import dumps


def plan_view(plan: Plan, fmt: str, color: bool, key: bytes | None = None) -> str:
    """`fmt`: "json" (signed with `key`, as a saved plan), "markdown" or "text"."""
    if fmt == "json":
        return dumps(plan, key)
    if fmt == "markdown":
        return render.markdown(plan)
    return render.text(plan, color=color)


def write_reports(plan: Plan, out: Path | None, gitlab_report: Path | None, markdown_out: Path | None,
                  key: bytes | None = None) -> None:
    """`key` (KCR_FINGERPRINT_KEY) signs the saved plan, so apply can tell it from an edited one."""
    if out is not None:
        write_file(out, dumps(plan, key))
    if gitlab_report is not None:
        write_file(gitlab_report, json.dumps(render.gitlab_report(plan)) + "\n")
    if markdown_out is not None:
        write_file(markdown_out, render.markdown(plan))


def write_file(path: Path, text: str) -> None:
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be written ({exc.strerror or exc})") from None


@contextmanager
def progress_bar(plan: Plan, color: bool) -> Iterator[Callable[[ActionResult], None] | None]:
    """A progress bar on stderr when it is a terminal (CI logs get the report alone)."""
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

        def advance(result: ActionResult) -> None:
            bar.update(task, advance=1, description=f"{result.status} {result.address}")

        yield advance
