"""kcr apply at scale (issue #16): whole `kcr apply` processes next to a floor measured in the same run.

    .venv/bin/python bench/apply.py                     # N = 1,000 and 10,000 creates, P = 4, 8, 16
    .venv/bin/python bench/apply.py --quick             # N = 1,000, P = 4, 16
    .venv/bin/python bench/apply.py --stall 32 64       # also P = 32, 64 (with -v): the slowest request
    .venv/bin/python bench/apply.py --only-stall --stall 64 --stall-runs 20    # issue #16's 20 runs at P = 64
    .venv/bin/python bench/apply.py --sizes 10000 --parallelism 16   # one cell

Each cell: a repository of N `.slack` connectors, each with its own secret (`${env:..}`), none of them
in Kibana yet, so `kcr apply --auto-approve --parallelism P` plans (the whole run: load, read, plan)
and sends N creates. The sandbox listens on a loopback port in this process and answers every request
L ms late (faults.latency_ms, as a Kibana on another machine would), a fresh one per process measured.

The kcr process is measured as a user runs it: wall from start to reaped, its own CPU (user + sys,
os.wait4) and peak RSS (through a small launcher process, see LAUNCHER). Two floors send the same POSTs
(same paths and bodies) with P threads: one through an httpx.Client, what the wire costs through httpx;
one through the standard library's http.client, one keep-alive connection per thread, the stack kcr's
own transport is built on (reconciler/wire.py), so the nearest floor kcr can reach. Printed per cell:
all three, kcr's ratios to each floor, and the issue's bound `apply wall <= 1.2 x N*L/P`.
Results go to bench/results/apply-<date>.json.
Nothing is asserted: the machine's other load moves every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from whole_process import byte_compiled, measure  # noqa: E402

from reconciler.model import derive_connector_id  # noqa: E402
from reconciler.sandbox import Sandbox  # noqa: E402
from reconciler.sandbox.server import running  # noqa: E402

PER_FILE = 50
BOUND = 1.2  # the issue's: apply wall <= 1.2 x N*L/P
_REQUEST_MS = re.compile(r"(?:POST|GET|PUT|DELETE) \S+ (?:-> \d+ in|failed after) (\d+) ms")

FLOOR = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
import httpx
url, parallelism, jobs = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
limits = httpx.Limits(max_connections=parallelism, max_keepalive_connections=parallelism)
with httpx.Client(base_url=url, limits=limits, timeout=60,
                  headers={"kbn-xsrf": "true", "Content-Type": "application/json"}) as client:
    def send(job):
        path, body = job
        return client.post(path, content=json.dumps(body).encode()).status_code
    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        codes = list(pool.map(send, jobs))
print(sum(1 for c in codes if c == 200))
"""

# The same POSTs with the standard library's http.client (one keep-alive connection per thread): not a
# floor kcr could reach while it speaks httpx, but it shows how much of the httpx floor is httpx itself.
STDLIB_FLOOR = """
import json, sys, threading, http.client
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit
url, parallelism, jobs = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
u, local = urlsplit(url), threading.local()
def send(job):
    c = getattr(local, "c", None) or http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    local.c = c
    path, body = job
    c.request("POST", path, json.dumps(body).encode(), {"kbn-xsrf": "true", "Content-Type": "application/json"})
    r = c.getresponse()
    json.loads(r.read())
    return r.status
with ThreadPoolExecutor(max_workers=parallelism) as pool:
    codes = list(pool.map(send, jobs))
print(sum(1 for c in codes if c == 200))
"""


def secret_of(i: int) -> str:
    return f"https://hooks.slack.com/services/T0BENCH/B{i:06d}/bench-not-a-real-secret-{i:06d}"


def write_repo(root: Path, n: int) -> dict[str, str]:
    """N `.slack` connectors in the default space, PER_FILE a file; returns the secrets' variables."""
    env: dict[str, str] = {}
    d = root / "connectors" / "default"
    d.mkdir(parents=True)
    items = []
    for i in range(n):
        var = f"BENCH_HOOK_{i:06d}"
        env[var] = secret_of(i)
        items.append({"id": f"hook-{i:06d}", "name": f"Hook {i}", "type": ".slack",
                      "secrets": {"webhookUrl": f"${{env:{var}}}"}})
    for start in range(0, n, PER_FILE):
        (d / f"c{start // PER_FILE:04d}.yaml").write_text(
            yaml.safe_dump({"connectors": items[start:start + PER_FILE]}, sort_keys=False))
    return env


def floor_jobs(path: Path, n: int) -> None:
    """The POSTs kcr sends for the repository above: path and body of each create."""
    jobs = [[f"/api/actions/connector/{derive_connector_id('default', f'hook-{i:06d}')}",
             {"name": f"Hook {i}", "connector_type_id": ".slack", "config": {},
              "secrets": {"webhookUrl": secret_of(i)}}] for i in range(n)]
    path.write_text(json.dumps(jobs))


@contextmanager
def sandbox(latency_ms: float) -> Iterator[tuple[str, Sandbox]]:
    sb = Sandbox.from_seed({"license": "platinum", "spaces": ["default"], "faults": {"latency_ms": latency_ms}})
    with running(sb) as url:
        yield url, sb


def _created(sb: Sandbox) -> int:
    return len(sb.connectors_in("default"))


def cell(n: int, p: int, latency_ms: float, base_env: Mapping[str, str], *, verbose: bool = False) -> dict[str, Any]:
    """One kcr apply and its floor, each against a fresh sandbox."""
    kcr = [sys.executable, "-m", "reconciler"]
    with tempfile.TemporaryDirectory(prefix="kcr-bench-apply-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        env = {**base_env, **write_repo(root, n), "KCR_RECORD": str(Path(tmp) / "record.json")}
        jobs = Path(tmp) / "jobs.json"
        floor_jobs(jobs, n)
        with sandbox(latency_ms) as (url, sb):
            args = [*kcr, "apply", "--auto-approve", "--parallelism", str(p), "--dir", str(root)]
            run = measure([*args, "-v"] if verbose else args, {**env, "KIBANA_URL": url}, root)
            created = _created(sb)
        if run.code != 0 or created != n:
            raise SystemExit(f"kcr apply N={n} P={p} exited {run.code}, {created}/{n} created:\n{run.out[-3000:]}")
        floors = []
        for script in (FLOOR, STDLIB_FLOOR):
            with sandbox(latency_ms) as (url, sb):
                floors.append(measure([sys.executable, "-c", script, url, str(p), str(jobs)], env, root))
                floor_created = _created(sb)
            if floors[-1].code != 0 or floor_created != n:
                raise SystemExit(f"a floor N={n} P={p} exited {floors[-1].code}, {floor_created}/{n}:\n"
                                 f"{floors[-1].out[-3000:]}")
        floor, stdlib = floors
    ideal = n * latency_ms / 1000 / p
    slowest = max((int(m) for m in _REQUEST_MS.findall(run.out)), default=None) if verbose else None
    return {"n": n, "parallelism": p, "latency_ms": latency_ms, "ideal_s": ideal,
            "kcr": {k: v for k, v in asdict(run).items() if k != "out"},
            "floor": {k: v for k, v in asdict(floor).items() if k != "out"},
            "stdlib_floor": {k: v for k, v in asdict(stdlib).items() if k != "out"},
            "cpu_ratio": run.cpu / max(floor.cpu, 1e-9), "wall_ratio": run.wall / max(floor.wall, 1e-9),
            "cpu_ratio_stdlib": run.cpu / max(stdlib.cpu, 1e-9), "wall_ratio_stdlib": run.wall / max(stdlib.wall, 1e-9),
            "wall_over_ideal": run.wall / ideal if ideal else None, "slowest_request_ms": slowest}


def show(r: dict[str, Any]) -> None:
    k, f = r["kcr"], r["floor"]
    bound = BOUND * r["ideal_s"]
    verdict = "within" if k["wall"] <= bound else "OVER"
    slowest = f"  slowest request {r['slowest_request_ms']} ms" if r["slowest_request_ms"] is not None else ""
    print(f"  N={r['n']:>6} P={r['parallelism']:>2}  kcr {k['wall']:7.2f} s wall {k['cpu']:6.2f} s cpu "
          f"{k['rss_mib']:6.0f} MiB | floor {f['wall']:7.2f} s {f['cpu']:6.2f} s {f['rss_mib']:4.0f} MiB "
          f"(http.client {r['stdlib_floor']['wall']:.2f} s {r['stdlib_floor']['cpu']:.2f} s) | "
          f"cpu x{r['cpu_ratio']:.1f} wall x{r['wall_ratio']:.2f} (http.client: cpu x{r['cpu_ratio_stdlib']:.1f} "
          f"wall x{r['wall_ratio_stdlib']:.2f}) | N*L/P {r['ideal_s']:.2f} s: "
          f"x{r['wall_over_ideal']:.2f} ({verdict} {BOUND} x = {bound:.2f} s){slowest}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--parallelism", type=int, nargs="+")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--stall", type=int, nargs="*", default=[],
                        help="also run N=1,000 at these parallelisms with -v and report the slowest request")
    parser.add_argument("--stall-runs", type=int, default=1, help="how many times each --stall cell runs")
    parser.add_argument("--only-stall", action="store_true", help="skip the N x P cells")
    parser.add_argument("--label", default="", help="added to the results file name (e.g. before)")
    a = parser.parse_args()
    byte_compiled(ROOT)
    sizes = a.sizes or ([1000] if a.quick else [1000, 10000])
    parallelisms = a.parallelism or ([4, 16] if a.quick else [4, 8, 16])
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("KIBANA_", "ELASTICSEARCH_", "KCR_"))}
    base_env.update({"KCR_FINGERPRINT_KEY": "bench-fingerprint-key", "NO_COLOR": "1"})
    print(f"kcr apply benchmark: N creates with secrets, sandbox latency {a.latency_ms:g} ms, "
          f"{os.cpu_count()} CPUs, CPython {platform.python_version()} (one run; the sandbox shares the CPUs)")
    results = []
    for n in [] if a.only_stall else sizes:
        for p in parallelisms:
            results.append(cell(n, p, a.latency_ms, base_env))
            show(results[-1])
    for p in a.stall:
        slowest = []
        for _ in range(a.stall_runs):
            results.append(cell(1000, p, a.latency_ms, base_env, verbose=True))
            show(results[-1])
            slowest.append(results[-1]["slowest_request_ms"])
        if a.stall_runs > 1:
            print(f"  P={p}: slowest request in each of {a.stall_runs} runs {min(slowest)}-{max(slowest)} ms "
                  f"(KCR_TIMEOUT 60 s)", flush=True)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
               "platform": platform.platform()}
    path = out_dir / f"apply-{stamp}{'-' + a.label if a.label else ''}.json"
    path.write_text(json.dumps({"date": stamp, "machine": machine, "bound": BOUND, "cells": results}, indent=2) + "\n")
    print(f"saved {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
