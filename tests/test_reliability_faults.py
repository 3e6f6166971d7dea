"""Apply under faults: 5xx, 429 with Retry-After and dropped connections (before and after Kibana
applied the request), over a mixed change set of 200+ actions in two pruning spaces. After the first
apply and at most one re-run (re-plan + apply, faults still on), Kibana must hold exactly the desired
state: every declared connector once, with its config (defaults included) and resolved secrets; the
referenced connector planned for delete still there; nothing undeclared and unreferenced left.

Time is faked: the client's sleep advances a clock the sandbox's rate limiter reads, so a 429's
Retry-After is honoured (asserted from the recorded sleeps) without the test waiting."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.pipeline import Pipeline

from reconciler import catalog
from reconciler.apply_report import Status
from reconciler.connection import Connection
from reconciler.kibana import KibanaClient
from reconciler.model import derive_connector_id
from reconciler.normalize import canonical
from reconciler.plan import MUTATING, Action
from reconciler.sandbox import Sandbox

KEY = b"reliability-key"
CANARY = f"CANARY-{uuid.uuid4()}"
SPACES = ("default", "ops")
PER_SPACE = {"create": 35, "update": 35, "delete": 30, "recreate": 5}
REFERENCED = str(uuid.UUID(int=77, version=4))
RULE = str(uuid.UUID(int=78, version=4))


class FakeClock:
    """Shared by the client (sleep) and the sandbox (rate-limit window). Every reading moves time on
    a little, as real requests would; every sleep moves it by the time slept."""

    def __init__(self) -> None:
        self._now = 1000.0
        self._lock = threading.Lock()
        self.events: dict[int, list[tuple[str, float]]] = {}  # thread -> ("sleep", s) / ("429", retry-after)

    def now(self) -> float:
        with self._lock:
            self._now += 0.004
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
            self.events.setdefault(threading.get_ident(), []).append(("sleep", seconds))

    def saw_429(self, retry_after: float) -> None:
        with self._lock:
            self.events.setdefault(threading.get_ident(), []).append(("429", retry_after))


@dataclass
class Counting(httpx.BaseTransport):
    """Counts what the faults did to the requests kcr sent."""

    inner: httpx.BaseTransport
    clock: FakeClock
    counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._count("requests")
        try:
            response = self.inner.handle_request(request)
        except httpx.TransportError:
            self._count("drops")
            raise
        if response.status_code >= 500:
            self._count("5xx")
        elif response.status_code == 429:
            self._count("429")
            self.clock.saw_429(float(response.headers["retry-after"]))
        return response


@dataclass(frozen=True)
class Expected:
    space: str
    id: str
    name: str
    type: str
    config: dict[str, Any]
    secrets: dict[str, Any]


def _world(root: Path) -> tuple[dict[str, Any], dict[str, str], list[Expected], set[str]]:
    """Files under root, the seed, the environment, what Kibana must end with, and the ids that must go."""
    seed_connectors: list[dict[str, Any]] = []
    env: dict[str, str] = {}
    expected: list[Expected] = []
    doomed: set[str] = set()
    for space in SPACES:
        lines = ["connectors:"]

        def declare(key: str, name: str, type_: str, config: dict[str, Any], secret: str | None,
                    space: str = space, lines: list[str] = lines) -> None:
            lines += [f"  - id: {key}", f"    name: {name}", f"    type: {type_}"]
            if config:
                lines.append("    config:")
                lines += [f"      {k}: {json.dumps(v)}" for k, v in config.items()]
            secrets: dict[str, Any] = {}
            if secret is not None:
                var = f"REL_{space.upper()}_{key.replace('-', '_').upper()}"
                env[var] = secret
                lines += ["    secrets:", f"      webhookUrl: ${{env:{var}}}"]
                secrets = {"webhookUrl": secret}
            expected.append(Expected(space, derive_connector_id(space, key), name, type_,
                                     catalog.with_defaults(type_, "config", config), secrets))

        for i in range(PER_SPACE["create"]):
            if i % 2:
                declare(f"new-{i}", f"New slack {i}", ".slack", {}, f"https://hooks.slack.com/services/{CANARY}/n{i}")
            else:
                declare(f"new-{i}", f"New index {i}", ".index", {"index": f"new-{i}"}, None)
        for i in range(PER_SPACE["update"]):
            key = f"upd-{i}"
            cid = derive_connector_id(space, key)
            if i % 2:
                seed_connectors.append({"id": cid, "space": space, "name": f"Old slack {i}", "connector_type_id":
                                        ".slack", "config": {}, "secrets": {"webhookUrl": "https://old.example/x"}})
                declare(key, f"Updated slack {i}", ".slack", {}, f"https://hooks.slack.com/services/{CANARY}/u{i}")
            else:
                seed_connectors.append({"id": cid, "space": space, "name": f"Index {i}", "connector_type_id":
                                        ".index", "config": {"index": f"old-{i}"}, "secrets": {}})
                declare(key, f"Index {i}", ".index", {"index": f"updated-{i}", "refresh": True}, None)
        for i in range(PER_SPACE["delete"]):
            cid = str(uuid.UUID(int=1000 + i + 100 * SPACES.index(space), version=4))
            doomed.add(cid)
            seed_connectors.append({"id": cid, "space": space, "name": f"Undeclared {i}",
                                    "connector_type_id": ".server-log", "config": {}, "secrets": {}})
        for i in range(PER_SPACE["recreate"]):
            key = f"re-{i}"
            seed_connectors.append({"id": derive_connector_id(space, key), "space": space, "name": f"Recreated {i}",
                                    "connector_type_id": ".server-log", "config": {}, "secrets": {}})
            declare(key, f"Recreated {i}", ".teams", {}, f"https://teams.example/{CANARY}/r{i}")
        (root / "connectors" / space).mkdir(parents=True)
        (root / "connectors" / space / "_space.yaml").write_text("prune: true\n")
        (root / "connectors" / space / "all.yaml").write_text("\n".join(lines) + "\n")
    seed_connectors.append({"id": REFERENCED, "space": "ops", "name": "Used by a rule",
                            "connector_type_id": ".server-log", "config": {}, "secrets": {}})
    seed = {"license": "platinum", "spaces": list(SPACES), "connectors": seed_connectors,
            "rules": [{"id": RULE, "space": "ops", "name": "CPU high",
                       "actions": [{"id": REFERENCED, "group": "default", "params": {"message": "x"}}]}]}
    return seed, env, expected, doomed


def _stored(sb: Sandbox, space: str) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in sb.connectors_in(space)}


@pytest.mark.parametrize("parallelism", [1, 4])
def test_apply_converges_under_faults(tmp_path: Path, parallelism: int) -> None:
    seed, env, expected, doomed = _world(tmp_path)
    clock = FakeClock()
    sb = Sandbox.from_seed({**seed, "faults": {"error_rate": 0.1, "drop_rate": 0.05, "rate_limit_per_s": 8,
                                               "seed": 20240}}, clock=clock.now)
    counting = Counting(sb.transport(), clock)
    client = KibanaClient(Connection.from_env({"KIBANA_URL": "http://kibana.test"}), transport=counting,
                          sleep=clock.sleep)
    run = Pipeline(tmp_path, client, key=KEY, env=env)

    first_plan = run.plan()
    actions = Counter(c.action for c in first_plan.changes if c.action in MUTATING)
    n = len(SPACES)
    assert actions == {Action.CREATE: n * PER_SPACE["create"], Action.UPDATE: n * PER_SPACE["update"],
                       Action.DELETE: n * PER_SPACE["delete"] + 1, Action.RECREATE: n * PER_SPACE["recreate"]}
    total = sum(actions.values())
    assert total >= 200
    blocked = next(c for c in first_plan.changes if c.id == REFERENCED)
    assert blocked.action is Action.DELETE and blocked.guard.blocked

    first = run.apply(first_plan, parallelism=parallelism)
    assert len(first.results) == total
    assert first.with_status(Status.BLOCKED) == tuple(r for r in first.results if r.address == f"ops/{REFERENCED}")
    reruns = 0
    report = first
    if first.counts[Status.FAILED] or first.counts[Status.STALE]:
        reruns = 1
        report = run.apply(run.plan(), parallelism=parallelism)
    assert report.counts[Status.FAILED] == 0 and report.counts[Status.STALE] == 0, report.results

    # Kibana holds exactly the desired state.
    for space in SPACES:
        stored = _stored(sb, space)
        want = {e.id: e for e in expected if e.space == space}
        extra = set(stored) - set(want)
        assert extra == ({REFERENCED} if space == "ops" else set()), "undeclared connectors left behind"
        for cid, e in want.items():
            got = stored.get(cid)
            assert got is not None, f"{space}/{e.name} lost"
            assert (got["name"], got["connector_type_id"]) == (e.name, e.type)
            assert canonical(got["config"]) == canonical(e.config), e.name
            assert got["secrets"] == e.secrets, e.name
        names = Counter(c["name"] for c in sb.connectors_in(space))
        assert all(v == 1 for v in names.values()), "a retried create made a duplicate"
    assert not doomed & {c["id"] for s in SPACES for c in sb.connectors_in(s)}
    assert REFERENCED in _stored(sb, "ops"), "the referenced connector was deleted"

    # The record holds what was applied, so a fresh plan (faults on) has nothing left but the guard.
    record = run.record.load()
    assert {e.id for e in expected if e.secrets} <= set(record)
    final = run.plan()
    left = [c for c in final.changes if c.action in MUTATING]
    assert [(c.id, c.action) for c in left] == [(REFERENCED, Action.DELETE)]

    # Retry-After was honoured: each 429 that was retried was followed, in its thread, by a sleep of
    # exactly the seconds the sandbox asked for.
    retried_429 = 0
    for events in clock.events.values():
        for (kind, value), (next_kind, slept) in itertools.pairwise(events):
            if kind == "429" and next_kind == "sleep":
                assert slept == value, (value, slept)
                retried_429 += 1
    c = counting.counts
    assert c["5xx"] > 0 and c["429"] > 0 and c["drops"] > 0, c
    assert retried_429 > 0
    sleeps = sum(1 for events in clock.events.values() for kind, _ in events if kind == "sleep")
    print(
        f"\nfaults (parallelism {parallelism}): {total} changes, {c['requests']} requests, {c['5xx']} 5xx, "
        f"{c['429']} 429, {c['drops']} drops, {sleeps} retries; first apply: {first.counts['ok']} ok / "
        f"{first.counts['failed']} failed / {first.counts['stale']} stale / {first.counts['blocked']} blocked; "
        f"converged after {reruns} re-run{'s' if reruns != 1 else ''}"
    )
    for r in first.with_status(Status.FAILED) + first.with_status(Status.STALE):
        print(f"  first apply {r.status.value}: {r.action.value} {r.address}: {r.message}")
