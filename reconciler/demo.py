"""`kcr demo`: a newcomer's first run. Starts the sandbox on a loopback port, seeds it with the
repository's spaces and one stray connector (so the plan shows a delete), then runs validate, plan,
apply of the saved plan, and a second plan that must show no changes — the same commands a user runs.
Unset secret variables get obviously fake demo values; nothing leaves this machine."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import click

from reconciler.errors import ExitCode

Invoke = Callable[[Sequence[str], Mapping[str, str]], int]

STRAY_ID = "0d3c5a3e-1f4b-4c55-9e0f-5b1d2c3a4e5f"


def _referenced_env(root: Path) -> list[str]:
    from reconciler.desired import load_repository
    from reconciler.references import references_in

    desired = load_repository(root)
    names = set()
    for space in desired.spaces.values():
        for spec in space.connectors:
            for ref in references_in(dict(spec.secrets)):
                if ref.scheme == "env":
                    names.add(ref.target)
    return sorted(names)


def _seed(root: Path) -> dict[str, object]:
    spaces = sorted(p.name for p in (root / "connectors").iterdir() if p.is_dir())
    return {
        "license": "platinum",
        "spaces": spaces,
        "connectors": [{
            "id": STRAY_ID, "space": "default", "name": "Old test webhook (clicked together in the UI)",
            "connector_type_id": ".webhook", "config": {"url": "https://old.example.com/hook", "hasAuth": False},
            "secrets": {},
        }],
        "preconfigured": {"ops-server-log": {"name": "Preconfigured server log (kibana.yml)",
                                             "actionTypeId": ".server-log", "config": {}, "secrets": {}}},
    }


def run_demo(root: Path, invoke: Invoke) -> int:
    from reconciler.sandbox import Sandbox
    from reconciler.sandbox.server import running

    root = root.resolve()
    if not (root / "connectors").is_dir():
        click.echo(f"No connectors/ directory in {root}: run `kcr demo` in the kcr repository or pass --dir.", err=True)
        return ExitCode.ERROR
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIBANA_", "ELASTICSEARCH_", "KCR_"))}
    fake = [name for name in _referenced_env(root) if name not in env]
    for name in fake:  # URLs where Kibana parses one (webhooks), an obvious fake everywhere
        slug = name.lower().replace("_", "-")
        env[name] = f"https://hooks.example.com/{slug}-not-a-real-secret" if "URL" in name \
            else f"demo-{slug}-not-a-real-secret"
    with tempfile.TemporaryDirectory(prefix="kcr-demo-") as tmp, running(Sandbox.from_seed(_seed(root))) as url:
        env.update({"KIBANA_URL": url, "KCR_RECORD": str(Path(tmp) / "record.json"),
                    "KCR_FINGERPRINT_KEY": "kcr-demo-fingerprint-key"})
        plan_file = str(Path(tmp) / "plan.json")
        click.secho(f"kcr demo: an offline Kibana sandbox is listening on {url}", bold=True)
        if fake:
            click.echo(f"(demo values stand in for {len(fake)} unset secret variables: {', '.join(fake)})")
        steps: list[tuple[str, list[str], tuple[int, ...]]] = [
            ("Validate the repository offline", ["validate"], (0,)),
            ("Plan against the sandbox and save the plan", ["plan", "--out", plan_file], (0,)),
            ("Apply exactly the saved plan", ["apply", plan_file], (0, 3)),
            ("Plan again: Kibana now matches the repository", ["plan", "--detailed-exitcode"], (0,)),
        ]
        for title, args, ok in steps:
            click.secho(f"\n$ kcr {' '.join(args)}    # {title}", fg="cyan", bold=True)
            code = invoke([*args, "--dir", str(root)], env)
            if code not in ok:
                click.echo(f"\nkcr demo: `kcr {args[0]}` exited {code}", err=True)
                return code
    click.secho("\nDone: the example connectors were planned and applied against the sandbox.", fg="green")
    return ExitCode.OK
