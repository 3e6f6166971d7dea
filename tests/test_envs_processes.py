"""`--all-envs` forks at most one process per CPU, each planning its share of the environments on threads,
so `--env-parallelism` environments are still planned at a time; every environment's section comes back
whole and in the declared order, whichever process planned it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.cli import write_repo

from reconciler import envs_plan, pipeline
from reconciler.model import derive_connector_id
from reconciler.plan import Action
from reconciler.sandbox import Sandbox
from reconciler.sandbox.server import running

NAMES = ["a-env", "b-env", "c-env"]
CONNECTORS = {
    "connectors/default/alerts.yaml": """\
connectors:
  - id: history
    name: History (${var:env})
    type: .index
    config:
      index: alerts-${var:env}
""",
}


def test_processes_one_per_cpu_at_most(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    session = pipeline.Session(root=tmp_path, env={})
    monkeypatch.setattr(envs_plan.os, "cpu_count", lambda: 2)
    assert envs_plan._processes(session, 8) == 2
    assert envs_plan._processes(session, 2) == 2
    assert envs_plan._processes(session, 1) == 0  # one at a time: no process to fork
    monkeypatch.setattr(envs_plan.os, "cpu_count", lambda: 16)
    assert envs_plan._processes(session, 3) == 3
    assert envs_plan._processes(pipeline.Session(root=tmp_path, env={}, transport=object()), 3) == 0
    monkeypatch.setattr(envs_plan.os, "cpu_count", lambda: 1)
    assert envs_plan._processes(session, 8) == 0


def test_a_process_plans_several_environments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Three environments on two processes: one process plans two of them on its threads. Only b-env's
    Kibana holds the connector as declared; the others have nothing."""
    state = {"license": "platinum", "spaces": ["default"], "connectors": []}
    held = {**state, "connectors": [{"id": derive_connector_id("default", "history"), "space": "default",
                                     "name": "History (b-env)", "connector_type_id": ".index",
                                     "config": {"index": "alerts-b-env"}, "secrets": {}}]}
    monkeypatch.setattr(envs_plan.os, "cpu_count", lambda: 2)
    with running(Sandbox.from_seed(state)) as a, running(Sandbox.from_seed(held)) as b, \
            running(Sandbox.from_seed(state)) as c:
        settings = "environments:\n" + "".join(f"  {name}:\n    kibana_url: {url}\n"
                                                for name, url in zip(NAMES, (a, b, c), strict=True))
        repo = write_repo(tmp_path / "repo", {"kcr.yaml": settings, **CONNECTORS})
        result = envs_plan.plan_all(pipeline.Session(root=repo, env={}), envs_plan.Options(parallelism=8))
    assert [o.name for o in result.outcomes] == NAMES
    assert all(o.error is None and o.plan is not None for o in result.outcomes)
    actions = {o.name: [(c.id, c.action, c.name) for c in o.plan.changes] for o in result.outcomes if o.plan}
    assert actions["a-env"][0][1:] == (Action.CREATE, "History (a-env)")
    assert actions["b-env"][0][1:] == (Action.NOOP, "History (b-env)")
    assert actions["c-env"][0][1:] == (Action.CREATE, "History (c-env)")
    assert {o.plan.environment for o in result.outcomes if o.plan} == set(NAMES)
