"""Plan then apply in-process, the stages chained as `kcr plan --out` then `kcr apply plan.json` chain
them, but with the test holding every part: the client (a wrapper that gates or counts requests, a
fake clock's sleep), the record file, the fingerprint key and the environment. For tests of apply
against the sandbox that must reach inside a run, which `main(argv)` does not allow."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler import planfile
from reconciler.applier import apply_plan
from reconciler.apply_report import ApplyReport
from reconciler.desired import load_repository, owner_label
from reconciler.kibana import KibanaClient
from reconciler.plan import Plan
from reconciler.planner import make_plan
from reconciler.secrets import SecretResolver
from reconciler.state import FileBackend


class Pipeline:
    """The repository at `root`, read and applied through `client` with the record at `record`
    (default: the repository's `.kcr/record.json`)."""

    def __init__(self, root: Path, client: KibanaClient, *, key: bytes, env: Mapping[str, str] | None = None,
                 record: Path | None = None) -> None:
        self.root = root
        self.client = client
        self.key = key
        self.env: Mapping[str, str] = dict(env or {})
        self.record = FileBackend(record if record is not None else root / ".kcr" / "record.json")

    def plan(self, env: Mapping[str, str] | None = None) -> Plan:
        """The plan of every declared space, through its JSON form: apply reads a saved plan."""
        env = self.env if env is None else env
        desired = load_repository(self.root, env=env)
        live = self.client.read_live(sorted(desired.spaces))
        specs = {owner_label(s): s for space in desired.spaces.values() for s in space.connectors}
        resolved = SecretResolver(env, desired.settings, self.root).resolve_many(
            {o: s.secrets for o, s in specs.items()})
        digests = {s.id: resolved[o].digest(s.id, self.key) for o, s in specs.items()}
        plan = make_plan(desired, live, digests=digests, record=self.record.load())
        return planfile.loads(planfile.dumps(plan))

    def apply(self, plan: Plan, env: Mapping[str, str] | None = None, *, client: Any = None,
              **options: Any) -> ApplyReport:
        """`plan` applied through `client` (default: the pipeline's); `options` go to apply_plan."""
        env = self.env if env is None else env
        resolver = SecretResolver(env, load_repository(self.root, env=env).settings, self.root)
        return apply_plan(plan, client if client is not None else self.client, resolver, self.record,
                          fingerprint_key=self.key, **options)
