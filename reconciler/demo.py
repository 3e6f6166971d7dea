"""`kcr demo`: a newcomer's first run. Starts one sandbox per environment of kcr.yaml (one sandbox when
none are declared) on loopback ports, seeds each with the environment's spaces (the first one also with
a stray connector, so its plan shows a delete), then runs what a user runs: `kcr validate` (every
environment), and per environment plan into a file, apply of that plan, and a second plan that must
show no changes. Unset secret variables get obviously fake demo values; nothing leaves this machine.

The demo points each environment at its sandbox the way CI does (KIBANA_URL, or the variable
`kibana_url_env` names, set per job) and keeps each environment's record in a temporary directory; an
environment whose Kibana or record kcr.yaml fixes cannot be redirected, so the demo refuses it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import click

from reconciler.errors import ExitCode, ReconcilerError
from reconciler.model import DesiredState, Environment, Settings

Invoke = Callable[[Sequence[str], Mapping[str, str]], int]

STRAY_ID = "0d3c5a3e-1f4b-4c55-9e0f-5b1d2c3a4e5f"
_FAKE_CREDENTIAL = "demo-kibana-credential-not-a-real-secret"
_Step = tuple[str, list[str], tuple[int, ...]]


def _desired(root: Path, env: Mapping[str, str]) -> tuple[Settings, dict[str | None, DesiredState]]:
    """The settings and each environment's desired state; no states when the repository has errors
    (`kcr validate`, the demo's first step, then reports them)."""
    from reconciler.desired import load, load_settings

    try:
        settings = load_settings(root)
    except ReconcilerError:
        return Settings(), {}
    return settings, dict(load(root, env=env, offline=True).states)


def _referenced_env(states: Mapping[str | None, DesiredState]) -> list[str]:
    from reconciler.references import references_in

    names: set[str] = set()
    for state in states.values():
        for space in state.spaces.values():
            for spec in space.connectors:
                names.update(ref.target for ref in references_in(dict(spec.secrets)) if ref.scheme == "env")
    return sorted(names)


def _seed(spaces: Sequence[str], stray: bool) -> dict[str, object]:
    connectors = [{
        "id": STRAY_ID, "space": "default", "name": "Old test webhook (clicked together in the UI)",
        "connector_type_id": ".webhook", "config": {"url": "https://old.example.com/hook", "hasAuth": False},
        "secrets": {},
    }] if stray and "default" in spaces else []
    return {
        "license": "platinum",
        "spaces": list(spaces),
        "connectors": connectors,
        "preconfigured": {"ops-server-log": {"name": "Preconfigured server log (kibana.yml)",
                                             "actionTypeId": ".server-log", "config": {}, "secrets": {}}},
    }


def _spaces(root: Path, state: DesiredState | None) -> list[str]:
    if state is not None:
        return sorted(state.spaces)
    from reconciler.desired import FANOUT_DIR

    return sorted(p.name for p in (root / "connectors").iterdir() if p.is_dir() and p.name != FANOUT_DIR)


def _refusal(environment: Environment) -> str | None:
    """Why the demo cannot point `environment` at a sandbox, if it cannot: its Kibana or record is fixed."""
    if not (environment.kibana_url or environment.record):
        return None
    fixed = "its Kibana URL (kibana_url)" if environment.kibana_url else "where its record lives (record)"
    return (f"environment {environment.name!r} fixes {fixed} in kcr.yaml, so the demo cannot point it at a "
            "sandbox; run the demo on a copy of the repository without that key")


def _pointed(environment: Environment | None, url: str, record: Path) -> dict[str, str]:
    """The variables that send one environment's commands to its sandbox, as its CI job would set them;
    the URL's variable first."""
    url_var = environment.kibana_url_env if environment is not None and environment.kibana_url_env else "KIBANA_URL"
    out = {url_var: url, "KCR_RECORD": str(record)}
    for var in (environment.credentials.values() if environment is not None else ()):
        out[var] = _FAKE_CREDENTIAL  # never a real credential, not even to the loopback sandbox
    return out


def _fake_secrets(env: dict[str, str], states: Mapping[str | None, DesiredState]) -> list[str]:
    """Sets every unset ${env:..} secret variable to an obvious fake; returns their names."""
    fake = [var for var in _referenced_env(states) if var not in env]
    for var in fake:  # URLs where Kibana parses one (webhooks), an obvious fake everywhere
        slug = var.lower().replace("_", "-")
        env[var] = f"https://hooks.example.com/{slug}-not-a-real-secret" if "URL" in var \
            else f"demo-{slug}-not-a-real-secret"
    return fake


def _announce(names: Sequence[str | None], urls: Sequence[str], fake: Sequence[str]) -> None:
    if names == [None]:
        click.secho(f"kcr demo: an offline Kibana sandbox is listening on {urls[0]}", bold=True)
    else:
        click.secho("kcr demo: one offline Kibana sandbox per environment of kcr.yaml:", bold=True)
        width = max(len(str(name)) for name in names)
        for name, url in zip(names, urls, strict=True):
            click.echo(f"  {str(name).ljust(width)}  {url}")
    if fake:
        click.echo(f"(demo values stand in for {len(fake)} unset secret variables: {', '.join(fake)})")


def _shown(pointed: Mapping[str, str], args: Sequence[str]) -> str:
    url_var = next(iter(pointed))  # _pointed puts the URL's variable first
    return f"{url_var}={pointed[url_var]} kcr {' '.join(args)}"


def _summary(names: Sequence[str | None], states: Mapping[str | None, DesiredState]) -> str:
    """One line saying what the same files gave each environment."""
    if len(states) < 2:
        return "Done: the example connectors were planned and applied against the sandbox."
    seen = {name: {f"{spec.space}/{spec.key}": (spec.name, spec.type, spec.config)
                   for space in states[name].spaces.values() for spec in space.connectors}
            for name in names if name in states}
    everywhere = set.intersection(*(set(found) for found in seen.values()))
    differ = sum(1 for key in everywhere if len({repr(found[key]) for found in seen.values()}) > 1)
    counts = " and ".join(f"{name} {len(found)}" for name, found in seen.items())
    only: dict[str, list[str]] = {}
    for key in sorted(set.union(*(set(found) for found in seen.values())) - everywhere):
        only.setdefault(", ".join(str(n) for n, found in seen.items() if key in found), []).append(key)
    partial = "".join(f"; only in {where}: {', '.join(keys)}" for where, keys in only.items())
    return (f"Done: the same files gave different connectors per environment ({counts} connectors): {differ} "
            f"differ in name or config{partial}.")


def run_demo(root: Path, invoke: Invoke) -> int:
    from reconciler.sandbox import Sandbox
    from reconciler.sandbox.server import running

    root = root.resolve()
    if not (root / "connectors").is_dir():
        click.echo(f"No connectors/ directory in {root}: run `kcr demo` in the kcr repository or pass --dir.", err=True)
        return ExitCode.ERROR
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIBANA_", "ELASTICSEARCH_", "KCR_"))}
    settings, states = _desired(root, env)
    environments = list(settings.environments.values())
    for refusal in filter(None, map(_refusal, environments)):
        click.echo(f"kcr demo: {refusal}", err=True)
        return ExitCode.ERROR
    names: list[str | None] = [e.name for e in environments] or [None]
    fake = _fake_secrets(env, states)
    env["KCR_FINGERPRINT_KEY"] = "kcr-demo-fingerprint-key"
    with tempfile.TemporaryDirectory(prefix="kcr-demo-") as tmp, contextlib.ExitStack() as stack:
        urls = [stack.enter_context(running(Sandbox.from_seed(_seed(_spaces(root, states.get(name)), i == 0))))
                for i, name in enumerate(names)]
        pointed = {name: _pointed(settings.environments.get(name) if name else None, url,
                                  Path(tmp) / f"record-{name or 'kibana'}.json")
                   for name, url in zip(names, urls, strict=True)}
        _announce(names, urls, fake)
        code = _run_steps(root, names, pointed, env, Path(tmp), invoke)
        if code != ExitCode.OK:
            return code
    click.secho(f"\n{_summary(names, states)}", fg="green")
    return ExitCode.OK


def _run_steps(root: Path, names: Sequence[str | None], pointed: Mapping[str | None, Mapping[str, str]],
               env: Mapping[str, str], tmp: Path, invoke: Invoke) -> int:
    """validate once (offline, every environment), then plan, apply and re-plan each environment."""
    everywhere = "every environment" if names != [None] else "the repository"
    runs: list[tuple[str | None, _Step]] = [(None, (f"Validate {everywhere} offline", ["validate"], (0,)))]
    for name in names:
        plan_file = str(tmp / f"plan-{name or 'kibana'}.json")
        env_args = ["--env", name] if name else []
        label = f"{name}: " if name else ""
        runs += [
            (name, (f"{label}plan against its sandbox and save the plan", ["plan", *env_args, "--out", plan_file],
                    (0,))),
            (name, (f"{label}apply exactly the saved plan", ["apply", *env_args, plan_file], (0, 3))),
            (name, (f"{label}plan again: Kibana now matches the repository", ["plan", *env_args,
                                                                             "--detailed-exitcode"], (0,))),
        ]
    for name, (title, args, ok) in runs:
        shown = f"kcr {' '.join(args)}" if args[0] == "validate" else _shown(pointed[name], args)
        click.secho(f"\n$ {shown}    # {title}", fg="cyan", bold=True)
        extra = pointed[name] if args[0] != "validate" else {}
        code = invoke([*args, "--dir", str(root)], {**env, **extra})
        if code not in ok:
            click.echo(f"\nkcr demo: `kcr {args[0]}{' --env ' + name if name else ''}` exited {code}", err=True)
            return code
    return ExitCode.OK
