"""kcr benchmarks: request economy, planner share, apply concurrency, validate, start-up, memory.

    .venv/bin/python bench/run.py            # the full run (a few minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    # smaller sizes, for a smoke check

Everything runs against the sandbox on a loopback port, in this one run, and is printed as a table of
figures and ratios; the results are saved to bench/results/<date>.json with the machine's facts.
Nothing here is a test: no figure is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler import planner  # noqa: E402
from reconciler.connection import Connection  # noqa: E402
from reconciler.desired import load_repository  # noqa: E402
from reconciler.kibana import KibanaClient  # noqa: E402
from reconciler.model import derive_connector_id  # noqa: E402
from reconciler.sandbox import Sandbox  # noqa: E402
from reconciler.sandbox.server import running  # noqa: E402

PER_FILE = 20


@dataclass
class Results:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, section: str, what: str, value: str) -> None:
        self.rows.append((section, what, value))
        print(f"  {section:<10} {what:<58} {value}", flush=True)


def _spaces(s: int) -> list[str]:
    return ["default"] + [f"space-{i:03d}" for i in range(1, s)]


def make_repo(root: Path, s: int, c: int) -> None:
    """A repository of c .index connectors spread evenly over s spaces, 20 connectors per file (so 1,000
    connectors make the 50 files of issue #3's target)."""
    per_space = c // s
    for space in _spaces(s):
        d = root / "connectors" / space
        d.mkdir(parents=True)
        items = [{"id": f"idx-{i:05d}", "name": f"Index {space} {i}", "type": ".index",
                  "config": {"index": f"alerts-{space}-{i}"}} for i in range(per_space)]
        for n in range(0, max(len(items), 1), PER_FILE):
            (d / f"c{n // PER_FILE:03d}.yaml").write_text(
                yaml.safe_dump({"connectors": items[n:n + PER_FILE]}, sort_keys=False))


def seed_for(s: int, c: int) -> dict[str, Any]:
    """The sandbox already holds exactly the repository's connectors, so the plan is all no-op."""
    per_space = c // s
    return {
        "license": "platinum",
        "spaces": _spaces(s),
        "connectors": [
            {"id": derive_connector_id(space, f"idx-{i:05d}"), "space": space, "name": f"Index {space} {i}",
             "connector_type_id": ".index", "config": {"index": f"alerts-{space}-{i}"}, "secrets": {}}
            for space in _spaces(s) for i in range(per_space)
        ],
    }


def _stats(url: str) -> dict[str, int]:
    return dict(httpx.get(f"{url}/__kcr_sandbox/stats").json())


def _total(stats: dict[str, int]) -> int:
    return int(stats.get("total", sum(v for k, v in stats.items() if k != "total")))


@contextmanager
def sandbox_server(seed: dict[str, Any]) -> Iterator[str]:
    with running(Sandbox.from_seed(seed)) as url:
        yield url


def bench_plan(res: Results, s: int, c: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, sandbox_server(seed_for(s, c)) as url:
        root = Path(tmp)
        make_repo(root, s, c)
        env = {"KIBANA_URL": url}
        t0 = time.perf_counter()
        desired = load_repository(root)
        t_load = time.perf_counter() - t0
        httpx.post(f"{url}/__kcr_sandbox/reset-stats")
        client = KibanaClient(Connection.from_env(env))
        t1 = time.perf_counter()
        live = client.read_live(sorted(desired.spaces))
        t_read = time.perf_counter() - t1
        t2 = time.perf_counter()
        plan = planner.make_plan(desired, live, digests={}, record={}, spaces=sorted(desired.spaces))
        t_plan = time.perf_counter() - t2
        wall = t_load + t_read + t_plan
        requests = _total(_stats(url))
        assert not plan.has_changes, "the benchmark repository should match the sandbox"
        # Baseline: what the Terraform provider's refresh does, one GET per connector.
        httpx.post(f"{url}/__kcr_sandbox/reset-stats")
        t3 = time.perf_counter()
        for space in desired.spaces.values():
            for spec in space.connectors:
                client.get_connector(space.space, spec.id)
        t_base = time.perf_counter() - t3
        base_requests = _total(_stats(url))
        client.close()
    key = f"plan S={s} C={c}"
    res.add("plan", f"{key}: wall (load+read+plan)", f"{wall:.3f} s ({c / wall:,.0f} connectors/s)")
    res.add("plan", f"{key}: requests (target <= S+3 = {s + 3})", f"{requests}")
    res.add("plan", f"{key}: planner share of wall", f"{100 * t_plan / wall:.1f} % ({t_plan * 1000:.0f} ms)")
    res.add("plan", f"{key}: per-connector GET baseline", f"{base_requests} requests, {t_base:.3f} s")
    res.add("plan", f"{key}: ratio baseline/kcr", f"requests x{base_requests / max(requests, 1):,.0f}, "
                                                  f"read time x{t_base / max(t_read, 1e-9):.1f}")
    res.data[key] = {"wall_s": wall, "load_s": t_load, "read_s": t_read, "planner_s": t_plan, "requests": requests,
                     "baseline_requests": base_requests, "baseline_s": t_base}


def bench_apply(res: Results, n: int, latency_ms: int, parallelism: int, kind: str = "create") -> None:
    """N creates (or updates) against the sandbox with L ms injected on every request. A create is one
    request (Kibana's 409 is its stale check); an update is two (a GET re-read, then the PUT)."""
    from reconciler import applier
    from reconciler.model import Settings
    from reconciler.secrets import SecretResolver
    from reconciler.state import backend_from_env

    seed: dict[str, Any] = {"license": "platinum", "spaces": ["default"],
                            "faults": {"latency_ms": latency_ms, "seed": 1}}
    if kind == "update":
        seed["connectors"] = [
            {"id": derive_connector_id("default", f"c-{i:04d}"), "space": "default", "name": f"Old {i}",
             "connector_type_id": ".index", "config": {"index": f"a-{i}"}, "secrets": {}} for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp, sandbox_server(seed) as url:
        root = Path(tmp)
        d = root / "connectors" / "default"
        d.mkdir(parents=True)
        items = [{"id": f"c-{i:04d}", "name": f"New {i}", "type": ".index", "config": {"index": f"a-{i}"}}
                 for i in range(n)]
        (d / "all.yaml").write_text(yaml.safe_dump({"connectors": items}))
        env = {"KIBANA_URL": url, "KCR_RECORD": str(root / "record.json")}
        client = KibanaClient(Connection.from_env(env))
        desired = load_repository(root)
        live = client.read_live(["default"])
        plan = planner.make_plan(desired, live, digests={}, record={}, spaces=["default"])
        resolver = SecretResolver(env, Settings(), root)
        t0 = time.perf_counter()
        report = applier.apply_plan(plan, client, resolver, backend_from_env(env, root), parallelism=parallelism,
                                    fingerprint_key=None)
        wall = time.perf_counter() - t0
        client.close()
    per_change = 1 if kind == "create" else 2
    ideal = n * per_change * latency_ms / 1000 / parallelism
    ok = sum(1 for r in report.results if r.status == "ok")
    label = "N*L/P" if per_change == 1 else "N*2L/P"
    key = f"apply {kind}s N={n} L={latency_ms}ms P={parallelism}"
    res.add("apply", key, f"{wall:.2f} s vs {label} {ideal:.2f} s = x{wall / ideal:.2f} ({ok}/{n} ok)")
    res.data[key] = {"wall_s": wall, "ideal_s": ideal, "ratio": wall / ideal, "ok": ok,
                     "requests_per_change": per_change}


def bench_validate(res: Results, c: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_repo(root, 1, c)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            desired = load_repository(root)
            times.append(time.perf_counter() - t0)
        count = sum(len(s.connectors) for s in desired.spaces.values())
    files = (c + PER_FILE - 1) // PER_FILE
    res.add("validate", f"validate {count} connectors in {files} files (best of 3)", f"{min(times):.3f} s")
    res.data[f"validate C={c}"] = {"best_s": min(times), "runs_s": times}


def bench_startup(res: Results) -> None:
    kcr = [sys.executable, "-m", "reconciler", "--help"]
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(kcr, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    res.add("start-up", "kcr --help (median of 5, target <= 0.3 s)", f"{statistics.median(times):.3f} s")
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import reconciler.cli"], capture_output=True,
                         text=True, check=True).stderr
    rows = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].strip()))
    total = sum(self_us for self_us, _ in rows)
    top = sorted(rows, reverse=True)[:5]
    res.add("start-up", "python -X importtime -c 'import reconciler.cli': all imports", f"{total / 1000:.1f} ms")
    for cumulative, name in sorted(((int(ln.split("|")[1]), ln.split("|")[2].strip()) for ln in out.splitlines()
                                    if ln.count("|") == 2 and ln.split("|")[1].strip().isdigit()),
                                   reverse=True)[:3]:
        res.add("start-up", f"  cumulative import: {name}", f"{cumulative / 1000:.1f} ms")
    res.data["startup"] = {"help_median_s": statistics.median(times), "help_runs_s": times,
                           "import_self_total_ms": total / 1000, "top_self_us": top}


def bench_memory(res: Results, s: int, c: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, sandbox_server(seed_for(s, c)) as url:
        root = Path(tmp)
        make_repo(root, s, c)
        tracemalloc.start()
        desired = load_repository(root)
        client = KibanaClient(Connection.from_env({"KIBANA_URL": url}))
        live = client.read_live(sorted(desired.spaces))
        planner.make_plan(desired, live, digests={}, record={}, spaces=sorted(desired.spaces))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        client.close()
    res.add("memory", f"peak Python heap of a {c}-connector plan (tracemalloc)", f"{peak / 2**20:.1f} MiB")
    res.data[f"memory C={c}"] = {"peak_mib": peak / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--only", choices=["plan", "apply", "validate", "startup", "memory"], action="append")
    args = ap.parse_args()
    only = set(args.only or ["plan", "apply", "validate", "startup", "memory"])
    res = Results()
    print(f"kcr benchmarks — {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} cores, {platform.machine()}\n")
    steps: list[tuple[str, Callable[[], None]]] = []
    plan_sizes = [(1, 1000), (10, 1000), (100, 1000)] if args.quick else [(1, 1000), (10, 5000), (100, 10000)]
    for s, c in plan_sizes:
        steps.append(("plan", lambda s=s, c=c: bench_plan(res, s, c)))  # type: ignore[misc]
    apply_sizes = [100] if args.quick else [100, 500]
    for n in apply_sizes:
        for p in (1, 4, 8, 16):
            steps.append(("apply", lambda n=n, p=p: bench_apply(res, n, 20, p)))  # type: ignore[misc]
    steps.append(("apply", lambda: bench_apply(res, apply_sizes[-1], 20, 8, "update")))
    for c in ([1000] if args.quick else [1000, 10000]):
        steps.append(("validate", lambda c=c: bench_validate(res, c)))  # type: ignore[misc]
    steps.append(("startup", lambda: bench_startup(res)))
    steps.append(("memory", lambda: bench_memory(res, 100, 1000 if args.quick else 10000)))
    for section, step in steps:
        if section in only:
            step()
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
               "platform": platform.platform(), "quick": args.quick}
    suffix = ("-quick" if args.quick else "") + (f"-only-{'-'.join(sorted(only))}" if args.only else "")
    path = out_dir / f"{stamp}{suffix}.json"
    path.write_text(json.dumps({"date": stamp, "machine": machine, "results": res.data,
                                "table": res.rows}, indent=2) + "\n")
    print(f"\nsaved {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
