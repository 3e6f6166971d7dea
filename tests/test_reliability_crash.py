"""kill -9 of `kcr apply` at seeded random points, against the sandbox over loopback (with latency, so
an apply spans many requests). Whatever the kill point, the files kcr writes are whole or absent, a
lock left by the dead run does not wedge the next one (it is broken with a warning: the holder's pid
is dead on this host), and a fresh `kcr apply --auto-approve` converges to exactly the desired state.

The random delay is the kill point, not a synchronisation: no assertion depends on where it lands."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from reconciler import catalog
from reconciler.errors import StateError
from reconciler.model import derive_connector_id
from reconciler.normalize import canonical
from reconciler.planfile import loads as plan_loads
from reconciler.sandbox import Sandbox
from reconciler.sandbox.server import running
from reconciler.state import FileBackend

TRIALS = 20
SEED = 4242
CANARY = f"CANARY-{uuid.uuid4()}"
N = 8  # of each kind: creates, updates (with secrets), deletes, recreates


def _world(repo: Path) -> tuple[dict[str, Any], dict[str, str], dict[str, tuple[str, str, dict[str, Any],
                                                                                  dict[str, Any]]]]:
    seed: list[dict[str, Any]] = []
    env: dict[str, str] = {}
    want: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {}  # id -> name, type, config, secrets
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
    (repo / "connectors" / "default").mkdir(parents=True)
    (repo / "connectors" / "default" / "_space.yaml").write_text("prune: true\n")
    (repo / "connectors" / "default" / "all.yaml").write_text("\n".join(lines) + "\n")
    return {"license": "platinum", "connectors": seed, "faults": {"latency_ms": 12}}, env, want


def _kcr(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert CANARY not in proc.stdout + proc.stderr, "a secret reached the output"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _assert_converged(sb: Sandbox, want: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]]) -> None:
    stored = {c["id"]: c for c in sb.connectors_in("default")}
    assert set(stored) == set(want), "lost or left-over connectors"
    for cid, (name, type_, config, secrets) in want.items():
        got = stored[cid]
        assert (got["name"], got["connector_type_id"], got["secrets"]) == (name, type_, secrets)
        assert canonical(got["config"]) == canonical(config)


def _whole_or_absent(repo: Path) -> None:
    record = FileBackend(repo / ".kcr" / "record.json")
    record.load()  # raises StateError on a truncated or corrupt record
    plan = repo / "plan.json"
    if plan.exists():
        plan_loads(plan.read_text(encoding="utf-8"), str(plan))
    if record.lock_path.exists():
        holder = json.loads(record.lock_path.read_text(encoding="utf-8"))
        assert holder["Operation"] == "kcr apply" and holder["pid"]


@pytest.mark.slow
def test_kill_9_at_random_points_is_always_recoverable(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    seed, secrets_env, want = _world(repo)
    sb = Sandbox.from_seed(seed)
    initial = tmp_path / "initial.json"
    sb.save_state(initial)
    rng = random.Random(SEED)
    outcomes: Counter[str] = Counter()
    with running(sb) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIBANA_", "ELASTICSEARCH_", "KCR_"))}
        env.update(secrets_env, KIBANA_URL=url, KCR_FINGERPRINT_KEY="crash-key", NO_COLOR="1",
                   KCR_RECORD=str(repo / ".kcr" / "record.json"))

        # Calibrate: how long one whole apply takes here, so kill points spread over all of it.
        assert _kcr(repo, env, "plan", "--out", "plan.json").returncode == 0
        started = time.monotonic()
        assert _kcr(repo, env, "apply", "plan.json").returncode == 0
        span = time.monotonic() - started
        _assert_converged(sb, want)

        for trial in range(TRIALS):
            sb.load_state(initial)
            for leftover in (repo / ".kcr" / "record.json", repo / "plan.json"):
                leftover.unlink(missing_ok=True)
            saved_plan = trial % 2 == 0
            if saved_plan:
                assert _kcr(repo, env, "plan", "--out", "plan.json", "--detailed-exitcode").returncode == 2
                args = ["apply", "plan.json"]
            else:
                args = ["apply", "--auto-approve"]
            sb.reset_counters()
            delay = rng.uniform(0.0, span * (1.6 if not saved_plan else 1.1))
            proc = subprocess.Popen([sys.executable, "-m", "reconciler", *args], cwd=repo, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            try:
                proc.wait(timeout=delay)
                outcomes["finished before the kill"] += 1
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                outcomes["killed"] += 1
                writes = sum(v for k, v in sb.counters.items() if k.split(" ")[0] in ("POST", "PUT", "DELETE"))
                outcomes["killed after a write"] += writes > 0
            _whole_or_absent(repo)
            lock = repo / ".kcr" / "record.json.lock"
            stale_lock = lock.exists()
            outcomes["stale lock left"] += stale_lock

            rerun = _kcr(repo, env, "apply", "--auto-approve")
            assert rerun.returncode == 0, (trial, delay, rerun.stdout, rerun.stderr)
            if stale_lock and "No changes." not in rerun.stdout:
                # (a run killed after its last write and save leaves nothing to apply: the next apply
                # that has work takes the dead run's lock over the same way)
                assert "removed the lock of a run that died" in rerun.stderr
                assert f"pid {proc.pid}" in rerun.stderr
            if "No changes." not in rerun.stdout:
                assert not lock.exists()
            _assert_converged(sb, want)
            final = _kcr(repo, env, "plan", "--detailed-exitcode")
            assert final.returncode == 0, (trial, final.stdout)
            recorded = FileBackend(repo / ".kcr" / "record.json").load()
            with_secrets = {cid for cid, w in want.items() if w[3]}
            # Known limit: a connector created (or updated) by the killed run before it saved the record
            # has no digest, so its secrets show as "unknown" until `kcr apply --sync-secrets`.
            outcomes["secrets left unknown"] += len(with_secrets - set(recorded))
    print(f"\ncrash: {TRIALS} trials, {outcomes['killed']} killed mid-run "
          f"({outcomes['killed after a write']} after a write to Kibana), "
          f"{outcomes['finished before the kill']} finished first, {outcomes['stale lock left']} stale locks broken; "
          f"all recovered; {outcomes['secrets left unknown']} connector secrets left unknown "
          f"(apply span {span:.2f}s)")
    assert outcomes["killed"] >= TRIALS // 2
    assert outcomes["stale lock left"] >= 1 and outcomes["killed after a write"] >= 1


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
