"""kcr plan CPU (issue #16): a no-change `kcr plan` of C connectors in S spaces, whole processes.

    .venv/bin/python bench/plan.py                        # 1k / 10k / 50k / 100k in 100 spaces, best of 3
    .venv/bin/python bench/plan.py --sizes 10000 --repeat 5
    .venv/bin/python bench/plan.py --profile 10000        # also cProfile one plan of that size (top 30)

For each size a repository is generated (20 `.index` connectors per file, as bench/run.py's) and a
sandbox on a loopback port is seeded with exactly those connectors, so the plan is all no-op. Then, in
the same run and alternating, two kinds of child process are measured with os.wait4 (CPU user+sys of
that child alone, and wall from start to reaped):
- `python -m reconciler plan --detailed-exitcode`: kcr as a user runs it, cold (no cache);
- the floor: a process that imports httpx and fetches and decodes the same lists (spaces, connector
  types, each space's connectors) one after another, as kcr's plan must at least.
The best of --repeat runs of each is kept (the machine may be shared: best-of is the least disturbed).
Printed: kcr CPU, floor CPU, their ratio, kcr's CPU per connector, and the per-connector cost
relative to the 10k run (issue #16: flat within +/-20 % from 10k to 100k). Saved to
bench/results/<date>-plan.json. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from whole_process import Run, byte_compiled, measure  # noqa: E402

from reconciler.model import derive_connector_id  # noqa: E402
from reconciler.sandbox import Sandbox  # noqa: E402
from reconciler.sandbox.server import running  # noqa: E402

PER_FILE = 20
TARGET_10K_CPU = 1.0  # issue #16: seconds of kcr CPU for 10,000 connectors in 100 spaces
TARGET_RATIO = 3.5

FLOOR = """
import sys, json
import httpx
url, spaces = json.loads(sys.argv[1])
with httpx.Client(base_url=url) as c:
    c.get("/api/spaces/space").json()
    c.get("/api/actions/connector_types").json()
    print(sum(len(c.get(("" if s == "default" else f"/s/{s}") + "/api/actions/connectors").json())
              for s in spaces))
"""


def space_names(s: int) -> list[str]:
    return ["default"] + [f"space-{i:03d}" for i in range(1, s)]


def make_repo(root: Path, s: int, c: int) -> None:
    per_space = c // s
    for space in space_names(s):
        d = root / "connectors" / space
        d.mkdir(parents=True)
        items = [{"id": f"idx-{i:05d}", "name": f"Index {space} {i}", "type": ".index",
                  "config": {"index": f"alerts-{space}-{i}"}} for i in range(per_space)]
        for n in range(0, max(len(items), 1), PER_FILE):
            (d / f"c{n // PER_FILE:04d}.yaml").write_text(
                yaml.safe_dump({"connectors": items[n:n + PER_FILE]}, sort_keys=False))


def seed_for(s: int, c: int) -> dict[str, Any]:
    per_space = c // s
    return {"license": "platinum", "spaces": space_names(s), "connectors": [
        {"id": derive_connector_id(space, f"idx-{i:05d}"), "space": space, "name": f"Index {space} {i}",
         "connector_type_id": ".index", "config": {"index": f"alerts-{space}-{i}"}, "secrets": {}}
        for space in space_names(s) for i in range(per_space)]}


def bench_size(s: int, c: int, repeat: int, env: Mapping[str, str], profile: bool,
               before: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kcr-bench-plan-") as tmp, \
            running(Sandbox.from_seed(seed_for(s, c))) as url:
        root = Path(tmp)
        make_repo(root, s, c)
        run_env = {**env, "KIBANA_URL": url}
        before_env = {**run_env, "PYTHONPATH": before} if before else None
        kcr = [sys.executable, "-m", "reconciler", "plan", "--dir", str(root), "--detailed-exitcode"]
        floor = [sys.executable, "-c", FLOOR, json.dumps([url, space_names(s)])]
        runs: dict[str, list[Run]] = {"kcr": [], "floor": [], "before": []}
        measure(kcr, run_env, root)  # not counted: compiles what kcr imports lazily, reads the files into the cache
        if before_env is not None:
            measure(kcr, before_env, root)
        for _ in range(repeat):  # alternating, so a busy moment of the machine hits each alike
            runs["kcr"].append(measure(kcr, run_env, root))
            runs["floor"].append(measure(floor, run_env, root))
            if before_env is not None:
                runs["before"].append(measure(kcr, before_env, root))
        for r in runs["kcr"] + runs["before"]:
            if r.code != 0:
                raise SystemExit(f"kcr plan exited {r.code} (0 = no change expected):\n{r.out[-3000:]}")
        if profile:
            prof = root.parent / f"kcr-plan-{c}.prof"
            measure([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "reconciler", "plan", "--dir",
                     str(root)], run_env, root)
            print(f"\ncProfile of `kcr plan` at {c} connectors (tottime, top 30):")
            pstats.Stats(str(prof)).sort_stats("tottime").print_stats(30)
    out: dict[str, Any] = {"spaces": s, "connectors": c, "repeat": repeat}
    for kind, found in runs.items():
        if found:
            fastest = min(found, key=lambda r: r.cpu)
            out[kind] = {k: v for k, v in asdict(fastest).items() if k != "out"}
            out[f"{kind}_cpu_runs"] = [r.cpu for r in found]
    out["ratio_cpu"] = out["kcr"]["cpu"] / out["floor"]["cpu"]
    out["kcr_us_per_connector"] = 1e6 * out["kcr"]["cpu"] / c
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000, 100000])
    ap.add_argument("--spaces", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", type=int, nargs="*", default=[], help="sizes to cProfile once as well")
    ap.add_argument("--before", help="a directory holding another `reconciler` package and its `schemas` (e.g. "
                    "`git archive HEAD reconciler schemas | tar -x -C DIR`): its plan is measured alternately in the "
                    "same run, for a before/after")
    a = ap.parse_args()
    byte_compiled(ROOT, *([a.before] if a.before else []))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KIBANA_", "ELASTICSEARCH_", "KCR_"))}
    # Bytecode compiled once, as an installed kcr has it (pip compiles on install): the children write it
    # to a directory of this run instead of the tree, whatever PYTHONDONTWRITEBYTECODE the shell sets.
    pyc = tempfile.mkdtemp(prefix="kcr-bench-pyc-")
    base.pop("PYTHONDONTWRITEBYTECODE", None)
    env = {**base, "NO_COLOR": "1", "PYTHONPYCACHEPREFIX": pyc}
    subprocess.run([sys.executable, "-c", "import httpx, reconciler.cli, reconciler.pipeline"], env=env, check=True)
    print(f"kcr plan CPU — {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{platform.machine()}; no-change plan, {a.spaces} spaces, whole processes, best of {a.repeat} "
          "(CPU = user+sys of the child, os.wait4)")
    print(f"  {'connectors':>10} {'kcr cpu':>9} {'kcr wall':>9} {'kcr rss':>9} {'floor cpu':>10} {'floor wall':>10} "
          f"{'cpu ratio':>9} {'us/conn':>8} {'vs 10k':>7}")
    rows = []
    for c in a.sizes:
        r = bench_size(a.spaces, c, a.repeat, env, c in a.profile, a.before)
        rows.append(r)
        ref = next((x for x in rows if x["connectors"] == 10000), None)
        rel = f"{r['kcr_us_per_connector'] / ref['kcr_us_per_connector']:6.2f}x" if ref else f"{'':>7}"
        print(f"  {c:>10,} {r['kcr']['cpu']:8.3f}s {r['kcr']['wall']:8.3f}s {r['kcr']['rss_mib']:6.0f}MiB "
              f"{r['floor']['cpu']:9.3f}s {r['floor']['wall']:9.3f}s {r['ratio_cpu']:8.2f}x "
              f"{r['kcr_us_per_connector']:8.1f} {rel}", flush=True)
        if "before" in r:
            print(f"  {'before':>10} {r['before']['cpu']:8.3f}s {r['before']['wall']:8.3f}s "
                  f"{r['before']['rss_mib']:6.0f}MiB {'':>9} {'':>10} {r['before']['cpu'] / r['floor']['cpu']:8.2f}x "
                  f"{1e6 * r['before']['cpu'] / c:8.1f}", flush=True)
    ten = next((x for x in rows if x["connectors"] == 10000), None)
    if ten is not None:
        print(f"\n  10k: kcr {ten['kcr']['cpu']:.3f} s CPU (target <= {TARGET_10K_CPU} s), x{ten['ratio_cpu']:.2f} the "
              f"floor's CPU (target <= x{TARGET_RATIO})")
        later = [x for x in rows if x["connectors"] > 10000]
        if later:
            spread = [x["kcr_us_per_connector"] / ten["kcr_us_per_connector"] - 1 for x in later]
            said = ", ".join(f"{x['connectors'] // 1000}k {d:+.0%}" for x, d in zip(later, spread, strict=True))
            print(f"  per-connector CPU from 10k: {said} (target within +/-20 %)")
        # What one more connector costs, start-up (imports, the catalogue, the TLS context) left out.
        steps = [(lo, hi) for lo, hi in itertools.pairwise(rows) if hi["connectors"] > lo["connectors"]]
        for lo, hi in steps:
            marginal = 1e6 * (hi["kcr"]["cpu"] - lo["kcr"]["cpu"]) / (hi["connectors"] - lo["connectors"])
            print(f"  marginal kcr CPU {lo['connectors'] // 1000}k -> {hi['connectors'] // 1000}k: {marginal:.1f} us a "
                  "connector")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    path = out_dir / f"{stamp}-plan.json"
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
               "platform": platform.platform()}
    path.write_text(json.dumps({"date": stamp, "machine": machine, "repeat": a.repeat, "rows": rows}, indent=2)
                    + "\n")
    print(f"\nsaved {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
