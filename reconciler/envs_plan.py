"""`kcr plan --all-envs` and `kcr drift --all-envs`: every environment of kcr.yaml planned at once into
one report with a section per environment and one exit code.

The repository's files are read and checked once for all environments (`desired.load` with no
environment returns each one's state); each environment is then planned as `--env NAME` would plan it
(its own URL, credentials, record and secrets, `pipeline.make_plan`), several at a time on a bounded
pool, since each mostly waits on its own Kibana. One environment's error is its section's content and
never hides the others'. An environment that reads KIBANA_URL cannot be told apart from the others
here (they would all reach the same Kibana), so one without a URL of its own in kcr.yaml is refused
before any request."""

from __future__ import annotations

import contextvars
import gc
import json
import logging
import multiprocessing
import os
import signal
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reconciler import pipeline, render
from reconciler.desired import load, load_settings
from reconciler.errors import ConfigError, ExitCode, ReconcilerError, ValidationError
from reconciler.model import DesiredState, Settings
from reconciler.outputs import write_file
from reconciler.plan import Plan
from reconciler.planfile import to_json

log = logging.getLogger("kcr")

# Environments are other Kibanas: planning one is mostly waiting on it, so a team's usual handful all
# wait at once (each plan's answers are kept for the report whatever this is; only threads are added).
DEFAULT_PARALLELISM = 16
_ENVIRONMENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("kcr_environment", default=None)


@dataclass(frozen=True)
class Options:
    """What `kcr plan`/`drift` pass to each environment's plan."""

    sync_secrets: bool = False
    allow_plaintext_secrets: bool = False
    check_secrets: bool = True
    parallelism: int = DEFAULT_PARALLELISM


@dataclass(frozen=True)
class Outcome:
    """One environment's section: its plan, or the error that stopped it (never both)."""

    name: str
    plan: Plan | None = None
    error: ReconcilerError | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or (self.plan is not None and self.plan.has_errors)

    @property
    def has_changes(self) -> bool:
        return self.plan is not None and self.plan.has_changes


@dataclass(frozen=True)
class AllEnvs:
    outcomes: tuple[Outcome, ...]

    def exit_code(self, detailed: bool) -> int:
        """1 when any environment errored, else 2 (with `detailed`) when any has changes or drift, else 0."""
        if any(o.failed for o in self.outcomes):
            return ExitCode.ERROR
        if detailed and any(o.plan is not None and o.plan.has_drift for o in self.outcomes):
            return ExitCode.CHANGES
        return ExitCode.OK


# --- refusals, before anything is read from Kibana ------------------------------------------------------


def refuse_conflicts(*, env_flag: str | None, kcr_env: str | None, kibana_url: str | None,
                     out: Path | None) -> None:
    """--all-envs names every environment and its own Kibana; a flag naming one of either contradicts it,
    and a saved plan is for one Kibana (apply takes one)."""
    per_env = "run `kcr plan --env NAME` per environment, or `kcr ci generate` for a job per environment"
    if env_flag is not None:
        raise ConfigError(f"--all-envs plans every environment and --env {env_flag} names one: drop one of them")
    if kcr_env:
        raise ConfigError(f"--all-envs plans every environment and KCR_ENV={kcr_env} names one: unset KCR_ENV "
                          "for this command, or drop --all-envs")
    if kibana_url is not None:
        raise ConfigError("--all-envs reaches each environment's own Kibana (kcr.yaml) and --kibana-url names one: "
                          f"drop --kibana-url, or {per_env}")
    if out is not None:
        raise ConfigError(f"--out saves a plan for one Kibana, and --all-envs plans several: {per_env} "
                          "(each saves its own plan)")


_SHARED_CREDENTIALS = frozenset(f"{prefix}_{suffix}" for prefix in ("KIBANA", "ELASTICSEARCH")
                                for suffix in ("API_KEY", "BEARER_TOKEN", "USERNAME", "PASSWORD"))


def environments_to_plan(settings: Settings, env: Mapping[str, str] | None = None) -> list[str]:
    """Every declared environment, each with a URL of its own: one that reads KIBANA_URL would reach
    whichever Kibana that names, the same for all of them."""
    declared = sorted(settings.environments)
    if not declared:
        raise ConfigError("--all-envs plans the environments kcr.yaml declares, and it declares none: run the "
                          "command without --all-envs")
    shared = [n for n in declared if not settings.environments[n].kibana_url
              and not settings.environments[n].kibana_url_env]
    if shared:
        which = ", ".join(shared)
        raise ConfigError(f"environment{'s' if len(shared) > 1 else ''} {which} {'have' if len(shared) > 1 else 'has'}"
                          " no Kibana URL of its own in kcr.yaml (it would read KIBANA_URL, the same for every "
                          "environment): give each environment `kibana_url:` or `kibana_url_env:`, or plan them one "
                          "at a time with --env NAME")
    shared_key = [n for n in declared if not settings.environments[n].credentials]
    held = sorted(k for k in (env or {}) if k in _SHARED_CREDENTIALS and (env or {})[k])
    if len(shared_key) > 1 and held:
        raise ConfigError(f"environments {', '.join(shared_key)} declare no `credentials:`, so each would be sent "
                          f"{held[0]}: one credential is not meant for several Kibanas. Give each environment "
                          "`credentials:` (the variables holding its own key), or plan them one at a time with --env")
    return declared


# --- planning -----------------------------------------------------------------------------------------


def plan_all(session: pipeline.Session, options: Options) -> AllEnvs:
    """Each environment planned from the states read once; results in the declared (sorted) order.
    `options.parallelism` environments are planned at a time: on threads of one process, or of each of
    a few forked processes (`_processes`), each planning its share of the environments."""
    global _FORKED
    names = environments_to_plan(load_settings(session.root), session.env)
    states = _states(session, names, options.allow_plaintext_secrets)
    workers = max(1, min(options.parallelism, len(names)))
    processes = _processes(session, workers)
    with _labelled_logs():
        if processes > 1:
            _FORKED = (session, states, options, -(-workers // processes))  # what each forked worker finds
            gc.freeze()  # the collector would otherwise touch, and so copy, every page the workers share
            try:
                with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("fork"),
                                         initializer=_forked_worker) as pool:
                    shares = pool.map(_plan_forked, [names[i::processes] for i in range(processes)])
                    planned = {o.name: o for share in shares for o in share}
            finally:
                _FORKED = None
            outcomes = [planned[name] for name in names]
        else:
            outcomes = _plan_on_threads(session, names, states, options, workers)
    return AllEnvs(tuple(outcomes))


_FORKED: tuple[pipeline.Session, Mapping[str, DesiredState | ReconcilerError], Options, int] | None = None


def _plan_on_threads(session: pipeline.Session, names: Sequence[str],
                     states: Mapping[str, DesiredState | ReconcilerError], options: Options,
                     threads: int) -> list[Outcome]:
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kcr-env") as pool:
        return list(pool.map(lambda name: _plan_one(session, name, states[name], options), names))


def _processes(session: pipeline.Session, workers: int) -> int:
    """How many forked processes plan the environments (0: threads of this process alone): one per CPU
    at most. A process more than the CPUs adds no CPU, and costs its start (the fork, and a copy of
    every page it writes, the shared states' included: measured near one environment's plan), while
    threads overlap the waits on the Kibanas as well: `workers` environments are still planned at a time."""
    return min(workers, os.cpu_count() or 1) if _forks(session, workers) else 0


def _forks(session: pipeline.Session, workers: int) -> bool:
    """Whether the environments are planned in forked processes rather than threads. Planning is CPU
    (normalising and comparing every connector) and Python runs one thread at a time, so with several
    environments threads only overlap the waits on Kibana; forked workers also use the other cores,
    each starting from this process's memory (the states read once: nothing is re-read or sent
    between processes but an environment's name and its plan). Threads where fork is missing
    (Windows), on one core, and with an in-process transport (tests, the demo), which a copy of the
    process could not share."""
    return (workers > 1 and session.transport is None and (os.cpu_count() or 1) > 1
            and "fork" in multiprocessing.get_all_start_methods())


def _forked_worker() -> None:
    """A forked worker leaves the parent's interrupt to the parent, which stops the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _plan_forked(names: Sequence[str]) -> list[Outcome]:
    """A forked process's share of the environments, on its share of the threads."""
    assert _FORKED is not None, "a forked worker starts from the parent's memory"
    session, states, options, threads = _FORKED
    return _plan_on_threads(session, names, states, options, threads)


def _states(session: pipeline.Session, names: Sequence[str],
            allow_plaintext: bool) -> dict[str, DesiredState | ReconcilerError]:
    """Every environment's state from one reading of the files. When any environment has an error the
    whole reading has no states; only then is each environment read alone, to tell which are fine and
    give each failing one its own problems."""
    result = load(session.root, None, session.env, allow_plaintext_secrets=allow_plaintext)
    if not result.errors:
        return {name: result.states[name] for name in names}
    out: dict[str, DesiredState | ReconcilerError] = {}
    for name in names:
        one = load(session.root, None, session.env, allow_plaintext_secrets=allow_plaintext, environment=name)
        out[name] = ValidationError(one.errors) if one.errors or one.state is None else one.state
    return out


def _plan_one(session: pipeline.Session, name: str, state: DesiredState | ReconcilerError,
              options: Options) -> Outcome:
    token = _ENVIRONMENT.set(name)
    try:
        if isinstance(state, ReconcilerError):
            raise state
        log.info("planning")
        planned = pipeline.make_plan(replace(session, environment_name=name), sync_secrets=options.sync_secrets,
                                     allow_plaintext_secrets=options.allow_plaintext_secrets,
                                     check_secrets=options.check_secrets, desired=state)
        log.info("planned: %s", _status(Outcome(name, planned.plan)))
        return Outcome(name, plan=planned.plan)
    except ReconcilerError as exc:
        log.info("failed: %s", type(exc).__name__)
        return Outcome(name, error=exc)
    finally:
        _ENVIRONMENT.reset(token)


class _EnvironmentLabel(logging.Filter):
    """Prefixes a log line with the environment being planned, whichever thread of its plan logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = _ENVIRONMENT.get()
        if name is not None and not getattr(record, "kcr_environment", None):
            record.kcr_environment = name
            record.msg = f"environment {name}: {record.msg}"
        return True


@contextmanager
def _labelled_logs() -> Iterator[None]:
    label = _EnvironmentLabel()
    handlers = list(logging.getLogger("kcr").handlers)
    for handler in handlers:
        handler.addFilter(label)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(label)


# --- the combined report ------------------------------------------------------------------------------


def _status(o: Outcome) -> str:
    if o.error is not None or o.plan is None:
        return "error"
    if o.plan.has_errors:
        return "plan has errors"
    if not o.plan.has_changes:
        return "no changes"
    s = o.plan.summary()
    parts = [f"{s[k]} to {k}" for k in ("create", "update", "recreate", "delete") if s[k]]
    return ", ".join(parts) + (f" ({s['blocked']} blocked)" if s["blocked"] else "")


def summary_line(result: AllEnvs) -> str:
    n = len(result.outcomes)
    failed = sum(1 for o in result.outcomes if o.failed)
    changed = sum(1 for o in result.outcomes if o.has_changes)
    parts = [f"{n} environment{'s' if n != 1 else ''} planned"]
    parts.append(f"{failed} with errors" if failed else "none with errors")
    parts.append(f"{changed} with changes" if changed else "none with changes")
    return ", ".join(parts) + "."


def text(result: AllEnvs, color: bool) -> str:
    lines: list[str] = []
    for o in result.outcomes:
        lines.append(render.paint("bold", f"=== environment {o.name} ===", color))
        if o.plan is not None:
            lines.append(render.text(o.plan, color=color))
        else:
            lines += [render.paint("red", f"Error: {o.error}", color), ""]
    lines.append("Environments:")
    lines += [f"  {o.name}: {_status(o)}" for o in result.outcomes]
    lines.append(summary_line(result))
    return "\n".join(lines) + "\n"


def markdown(result: AllEnvs) -> str:
    """One note: a table of the environments, then each one's plan (its headings one level down)."""
    out = [render.MARKER, "### kcr plan", "", f"**{render.markdown_text(summary_line(result))}**", "",
           "| environment | create | update | recreate | delete | blocked | status |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for o in result.outcomes:
        s = o.plan.summary() if o.plan is not None else None
        counts = " | ".join(str(s[k]) if s else "—" for k in ("create", "update", "recreate", "delete", "blocked"))
        out.append(f"| `{o.name}` | {counts} | {render.markdown_text(_status(o))} |")
    out.append("")
    for o in result.outcomes:
        out += [f"#### Environment `{o.name}`", ""]
        if o.plan is not None:
            out += _section(render.markdown(o.plan))
        else:
            out += ["```", str(o.error).replace("```", "'''"), "```", ""]
    return "\n".join(out) + "\n"


def _section(plan_markdown: str) -> list[str]:
    """A plan's Markdown without its marker and title, its own headings one level down."""
    lines = plan_markdown.splitlines()
    if lines[:2] == [render.MARKER, "### kcr plan"]:
        lines = lines[2:]
    while lines and not lines[0]:
        lines = lines[1:]
    return [f"#{line}" if line.startswith("#### ") else line for line in lines]


def to_json_report(result: AllEnvs) -> dict[str, Any]:
    """`{"environments": {name: plan JSON | {"error": ..., "problems": [...]}}}`. The plans are unsigned:
    this report is for review, and what apply takes is one environment's `kcr plan --out`."""
    environments: dict[str, Any] = {}
    for o in result.outcomes:
        if o.plan is not None:
            environments[o.name] = to_json(o.plan)
        else:
            problems = o.error.problems if isinstance(o.error, ValidationError) else ()
            environments[o.name] = {"error": str(o.error), "problems": [p.to_json() for p in problems]}
    return {"environments": environments}


def gitlab_report(result: AllEnvs) -> dict[str, int]:
    """GitLab's MR widget shows one set of counts: the sum over the environments planned."""
    total = {"create": 0, "update": 0, "delete": 0}
    for o in result.outcomes:
        if o.plan is not None:
            for k, v in render.gitlab_report(o.plan).items():
                total[k] += v
    return total


def view(result: AllEnvs, fmt: str, color: bool) -> str:
    if fmt == "json":
        return json.dumps(to_json_report(result), indent=2, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return markdown(result)
    return text(result, color)


def write_reports(result: AllEnvs, gitlab: Path | None, markdown_out: Path | None) -> None:
    if gitlab is not None:
        write_file(gitlab, json.dumps(gitlab_report(result)) + "\n")
    if markdown_out is not None:
        write_file(markdown_out, markdown(result))
