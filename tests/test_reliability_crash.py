"""kill -9 of `kcr apply` at chosen points, against the sandbox over loopback. A kill point is a count
of connector writes: the sandbox lets exactly N writes of the doomed run through and holds that run at
the Nth (or at the first write past it, when N is 0) until the test has killed it; any later write of
that run (one still queued in the server when it died) is refused unapplied. The doomed run has its own
API key, so the writes of the runs after it pass untouched. So each trial knows what Kibana holds when
kcr dies, and asserts exactly that:

- Kibana holds the first N writes of the apply order (creates and updates, then recreates — a DELETE
  then a POST — and deletes, each phase in plan order); with `--parallelism 4` which writes those are
  is not fixed, but their number is, and the second phase never starts before the first ends.
- The files kcr writes are whole: the saved plan loads, the record of applied secrets parses and names
  only connectors whose change was applied, and the dead run's lock names its pid.
- The next `kcr apply --auto-approve` breaks that lock with a warning naming the pid (when it has work
  left; after the last write it has none, and the lock stays until an apply that has), records the
  secrets of everything it applies, and converges: Kibana then holds exactly the desired state and a
  fresh plan has nothing to do.

The world: 8 creates, 8 updates (with secrets), 8 recreates (type change) and 8 deletes = 40 writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from helpers.cli import kcr_process, process_env, start_kcr_process, write_repo

from reconciler import catalog
from reconciler.errors import StateError
from reconciler.model import derive_connector_id
from reconciler.normalize import canonical
from reconciler.planfile import loads as plan_loads
from reconciler.sandbox import Sandbox
from reconciler.sandbox.http import SandboxResponse, error_response
from reconciler.sandbox.server import running
from reconciler.state import FileBackend

CANARY = f"CANARY-{uuid.uuid4()}"
N = 8  # of each kind: creates, updates (with secrets), recreates, deletes
TOTAL_WRITES = 5 * N  # a recreate is two writes
HANG_GUARD_S = 120.0  # bounds every wait on kcr, so a bug fails the test instead of hanging it
API_KEY = "crash-api-key"  # every run but the doomed one
DOOMED_KEY = "doomed-api-key"  # the run that is killed: its writes go through the kill point
_WRITES = ("POST", "PUT", "DELETE")


# --- the kill point ------------------------------------------------------------------------------------


class KillPoint:
    """Counts the doomed run's connector writes as the sandbox receives them. The first `after` are
    applied; the run is then held (inside the sandbox, before it answers) until `release`, so kcr
    cannot go on; any write past the point is answered 503 without being applied, also after release."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.reached = threading.Event()  # exactly `after` writes applied and the run held
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._admitted = 0
        self._applied = 0

    def write(self, apply: Callable[[], SandboxResponse]) -> SandboxResponse:
        with self._lock:
            admitted = self._admitted < self.after
            self._admitted += 1
        if admitted:
            response = apply()
            with self._lock:
                self._applied += 1
                reached = self._applied == self.after
            if not reached:
                return response
        else:
            with self._lock:  # with parallel writes, the Nth may still be in flight: it sets `reached`
                reached = self._applied == self.after
            response = error_response(503, "past the kill point (test)")
        if reached:
            self.reached.set()
        self._released.wait(HANG_GUARD_S)  # held: kcr waits for this answer until the test has killed it
        return response

    def release(self) -> None:
        self._released.set()


class KillableSandbox(Sandbox):
    """The sandbox with a kill point on the connector writes sent with DOOMED_KEY."""

    kill_point: KillPoint | None = None

    def handle(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes, *,
               with_latency: bool = True) -> SandboxResponse:
        through = partial(super().handle, method, path, query, headers, body, with_latency=with_latency)
        point = self.kill_point
        doomed = {k.lower(): v for k, v in headers.items()}.get("authorization") == f"ApiKey {DOOMED_KEY}"
        if point is None or not doomed or method.upper() not in _WRITES or "/api/actions/connector/" not in path \
                or path.endswith("/_execute"):
            return through()
        return point.write(through)


# --- the world -----------------------------------------------------------------------------------------

Want = dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]]  # id -> name, type, config, secrets


@dataclass
class Crash:
    repo: Path
    sb: KillableSandbox
    env: dict[str, str]
    want: Want
    seeded: dict[str, dict[str, Any]]  # id -> the connector as seeded

    def kcr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return kcr_process(self.repo, self.env, *args, secrets=[CANARY])

    @property
    def record(self) -> FileBackend:
        return FileBackend(self.repo / ".kcr" / "record.json")

    def stored(self) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.sb.connectors_in("default")}


def _files(repo: Path) -> tuple[dict[str, Any], dict[str, str], Want]:
    seed: list[dict[str, Any]] = []
    env: dict[str, str] = {}
    want: Want = {}
    lines = ["connectors:"]
    for i in range(N):
        var = f"CRASH_NEW_{i}"
        env[var] = f"https://hooks.slack.com/services/{CANARY}/n{i}"
        lines += [f"  - id: new-{i}", f"    name: New {i}", "    type: .slack", "    secrets:",
                  f"      webhookUrl: ${{env:{var}}}"]
        want[derive_connector_id("default", f"new-{i}")] = (f"New {i}", ".slack", {}, {"webhookUrl": env[var]})

        var = f"CRASH_UPD_{i}"
        env[var] = f"https://hooks.slack.com/services/{CANARY}/u{i}"
        cid = derive_connector_id("default", f"upd-{i}")
        seed.append({"id": cid, "space": "default", "name": f"Old {i}", "connector_type_id": ".slack",
                     "config": {}, "secrets": {"webhookUrl": "https://old.example/x"}})
        lines += [f"  - id: upd-{i}", f"    name: Updated {i}", "    type: .slack", "    secrets:",
                  f"      webhookUrl: ${{env:{var}}}"]
        want[cid] = (f"Updated {i}", ".slack", {}, {"webhookUrl": env[var]})

        seed.append({"id": str(uuid.UUID(int=500 + i, version=4)), "space": "default", "name": f"Gone {i}",
                     "connector_type_id": ".server-log", "config": {}, "secrets": {}})

        cid = derive_connector_id("default", f"re-{i}")
        seed.append({"id": cid, "space": "default", "name": f"Re {i}", "connector_type_id": ".server-log",
                     "config": {}, "secrets": {}})
        lines += [f"  - id: re-{i}", f"    name: Re {i}", "    type: .index", "    config:", f"      index: re-{i}"]
        want[cid] = (f"Re {i}", ".index", catalog.with_defaults(".index", "config", {"index": f"re-{i}"}), {})
    write_repo(repo, {"connectors/default/_space.yaml": "prune: true\n",
                      "connectors/default/all.yaml": "\n".join(lines) + "\n"})
    return {"license": "platinum", "auth": {"api_keys": [API_KEY, DOOMED_KEY]}, "connectors": seed}, env, want


@pytest.fixture()
def crash(tmp_path: Path) -> Iterator[Crash]:
    repo = tmp_path / "repo"
    seed, secrets_env, want = _files(repo)
    sb = KillableSandbox.from_seed(seed)
    assert isinstance(sb, KillableSandbox)
    seeded = {c["id"]: c for c in sb.connectors_in("default")}
    with running(sb) as url:
        env = process_env(**secrets_env, KIBANA_URL=url, KIBANA_API_KEY=API_KEY, KCR_FINGERPRINT_KEY="crash-key",
                          NO_COLOR="1", KCR_RECORD=str(repo / ".kcr" / "record.json"))
        yield Crash(repo, sb, env, want, seeded)


# --- what a kill point implies -------------------------------------------------------------------------


def _apply_order(plan: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(action, id) of each write in the applier's order: creates and updates, then recreates and
    deletes, each phase in plan order; a recreate is a DELETE then a POST."""
    changes = [(c["action"], c["id"]) for c in plan["changes"]]
    first = [c for c in changes if c[0] in ("create", "update")]
    second = [c for c in changes if c[0] in ("recreate", "delete")]
    return [w for action, cid in first + second
            for w in ([("recreate", cid)] * 2 if action == "recreate" else [(action, cid)])]


def _writes_seen(c: Crash, action: str, cid: str) -> int:
    """How many of this change's writes Kibana shows; fails on a state no prefix of them leads to."""
    got = c.stored().get(cid)
    name, type_, config, secrets = c.want[cid] if action != "delete" else ("", "", {}, {})
    done = got is not None and (got["name"], got["connector_type_id"], got["secrets"]) == (name, type_, secrets) \
        and canonical(got["config"]) == canonical(config)
    seeded = got is not None and got == c.seeded.get(cid)
    state = {"create": {0: got is None, 1: done},
             "update": {0: seeded, 1: done},
             "delete": {0: seeded, 1: got is None},
             "recreate": {0: seeded, 1: got is None, 2: done}}[action]
    seen = [n for n, holds in state.items() if holds]
    assert len(seen) == 1, f"{action} {cid}: Kibana holds {got}, which no prefix of its writes leads to"
    return seen[0]


def _assert_kibana_holds_the_first_writes(c: Crash, order: list[tuple[str, str]], after: int,
                                          parallelism: int) -> dict[str, int]:
    seen = {cid: _writes_seen(c, action, cid) for action, cid in dict.fromkeys(order)}
    assert sum(seen.values()) == after, seen
    if parallelism == 1:
        prefix = Counter(cid for _, cid in order[:after])
        assert seen == {cid: prefix[cid] for cid in seen}, seen
    else:
        first_phase = {cid for action, cid in order if action in ("create", "update")}
        if any(n for cid, n in seen.items() if cid not in first_phase):
            assert all(seen[cid] == 1 for cid in first_phase), "the second phase started before the first ended"
    return seen


def _assert_files_whole(c: Crash, pid: int, seen: Mapping[str, int], order: list[tuple[str, str]]) -> None:
    plan = c.repo / "plan.json"
    plan_loads(plan.read_text(encoding="utf-8"), str(plan))
    recorded = c.record.load()  # raises StateError on a truncated or corrupt record
    needs = Counter(cid for _, cid in order)
    applied = {cid for cid, n in seen.items() if n == needs[cid]}
    assert set(recorded) <= applied, f"the record claims connectors not applied: {set(recorded) - applied}"
    holder = json.loads(c.record.lock_path.read_text(encoding="utf-8"))
    assert (holder["Operation"], holder["pid"]) == ("kcr apply", str(pid))


def _assert_converged(c: Crash) -> None:
    stored = c.stored()
    assert set(stored) == set(c.want), "lost or left-over connectors"
    for cid, (name, type_, config, secrets) in c.want.items():
        got = stored[cid]
        assert (got["name"], got["connector_type_id"], got["secrets"]) == (name, type_, secrets)
        assert canonical(got["config"]) == canonical(config)


# --- the trials ----------------------------------------------------------------------------------------

TRIALS = [
    # (writes before the kill, a saved plan or --auto-approve, --parallelism)
    pytest.param(0, True, 1, id="before-the-first-write"),
    pytest.param(1, False, 4, id="after-the-first-write-parallel"),
    pytest.param(5, True, 1, id="among-creates"),
    pytest.param(16, False, 1, id="after-creates-and-updates"),
    pytest.param(17, True, 1, id="inside-a-recreate"),
    pytest.param(22, False, 4, id="among-recreates-parallel"),
    pytest.param(33, True, 1, id="after-the-first-delete"),
    pytest.param(39, False, 1, id="before-the-last-delete"),
    pytest.param(TOTAL_WRITES, True, 4, id="after-the-last-write"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("after", "saved_plan", "parallelism"), TRIALS)
def test_kill_9_after_n_writes_is_recoverable(crash: Crash, after: int, saved_plan: bool, parallelism: int) -> None:
    planned = crash.kcr("plan", "--out", "plan.json", "--detailed-exitcode")
    assert planned.returncode == 2, planned.stdout + planned.stderr
    order = _apply_order(json.loads((crash.repo / "plan.json").read_text(encoding="utf-8")))
    assert len(order) == TOTAL_WRITES
    target = ["plan.json"] if saved_plan else ["--auto-approve"]  # --auto-approve plans the same again

    point = crash.sb.kill_point = KillPoint(after)
    proc = start_kcr_process(crash.repo, {**crash.env, "KIBANA_API_KEY": DOOMED_KEY}, "apply", *target,
                             "--parallelism", str(parallelism))
    try:
        threading.Thread(target=lambda: (proc.wait(), point.reached.set()), daemon=True).start()
        assert point.reached.wait(HANG_GUARD_S), "kcr neither reached its kill point nor exited"
        assert proc.poll() is None, f"kcr exited ({proc.returncode}) before its write {after}"
        proc.kill()
        proc.wait(HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        point.release()

    seen = _assert_kibana_holds_the_first_writes(crash, order, after, parallelism)
    _assert_files_whole(crash, proc.pid, seen, order)

    rerun = crash.kcr("apply", "--auto-approve")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    lock = crash.record.lock_path
    if after < TOTAL_WRITES:
        assert "removed the lock of a run that died" in rerun.stderr and f"pid {proc.pid}" in rerun.stderr
        assert not lock.exists()
    else:  # nothing left to apply: no lock is taken, so the dead run's stays until an apply with work
        assert "No changes." in rerun.stdout, rerun.stdout
        assert lock.exists()
    _assert_converged(crash)
    final = crash.kcr("plan", "--detailed-exitcode")
    assert final.returncode == 0, final.stdout
    # The rerun records the secrets of all it applied. (Known limit: what the killed run applied after
    # its last save of the record shows "secrets unknown" until `kcr apply --sync-secrets`.)
    recorded = crash.record.load()
    needs = Counter(cid for _, cid in order)
    rerun_applied = {cid for action, cid in dict.fromkeys(order) if action != "delete" and seen[cid] < needs[cid]}
    assert rerun_applied <= set(recorded) <= set(crash.want)


# --- the lock a dead run leaves behind (fast, no server) ------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def _plant_lock(backend: FileBackend, pid: int, host: str) -> None:
    backend.lock_path.parent.mkdir(parents=True, exist_ok=True)
    backend.lock_path.write_text(json.dumps({"ID": "old-lock", "Operation": "kcr apply", "Who": "ci@runner",
                                             "pid": str(pid), "host": host, "Created": "2024-01-01T00:00:00"}))


def test_lock_of_a_dead_process_on_this_host_is_broken_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    backend = FileBackend(tmp_path / "record.json")
    pid = _dead_pid()
    _plant_lock(backend, pid, socket.gethostname())
    backend.lock("apply")
    holder = json.loads(backend.lock_path.read_text())
    assert holder["pid"] == str(os.getpid()) and holder["ID"] != "old-lock"
    assert f"pid {pid}" in caplog.text and "died without releasing" in caplog.text
    contender = FileBackend(tmp_path / "record.json")
    with pytest.raises(StateError, match=f"pid {os.getpid()}"):  # the new lock is live: not broken again
        contender.lock()
    backend.unlock()
    assert not backend.lock_path.exists()
    assert [p.name for p in tmp_path.iterdir()] == [], "temporary or aside files left behind"


@pytest.mark.parametrize("where", ["live pid", "other host", "no pid"])
def test_lock_that_may_be_alive_is_never_broken(tmp_path: Path, where: str) -> None:
    backend = FileBackend(tmp_path / "record.json")
    if where == "live pid":
        _plant_lock(backend, os.getppid(), socket.gethostname())
    elif where == "other host":
        _plant_lock(backend, _dead_pid(), "another-runner")
    else:
        backend.lock_path.write_text(json.dumps({"ID": "x", "Who": "someone", "host": socket.gethostname()}))
    before = backend.lock_path.read_text()
    with pytest.raises(StateError) as caught:
        backend.lock()
    assert "locked by" in str(caught.value) and str(backend.lock_path) in str(caught.value)
    assert backend.lock_path.read_text() == before
