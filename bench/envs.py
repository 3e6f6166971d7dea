"""kcr across many Kibanas (issue #13): validate and plan of E environments x S spaces x C connectors.

    .venv/bin/python bench/envs.py                 # 10 x 10 x 100, each command measured twice
    .venv/bin/python bench/envs.py --quick         # 3 x 3 x 20, a smoke check
    .venv/bin/python bench/envs.py --profile       # also cProfile one `kcr plan --all-envs` (top 25)

A repository is generated in a temporary directory: per space S files of connectors whose names and
config read `${var:..}` that differ per environment, two connectors per space limited to two
environments, a few with a secret, and connectors/_all/ fanning three connectors out to every space.
E sandboxes listen on loopback ports (one per environment, in this process), each seeded with exactly
what the repository declares for its environment, so every plan is all no-op.

Each `kcr` command runs as a user runs it: a whole `python -m reconciler` process, its CPU (user+sys,
from os.wait4) and wall measured; the best of --repeat runs is kept. The floor is a process that only
imports httpx and fetches the same lists (one environment's, then every environment's on a pool of 16
threads as --all-envs does). Figures are printed as a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from whole_process import Run, best, byte_compiled, measure  # noqa: E402

from reconciler.desired import load  # noqa: E402
from reconciler.sandbox import Sandbox  # noqa: E402
from reconciler.sandbox.server import running  # noqa: E402

PER_FILE = 20
LIMITED_TO = 2  # the first two environments have two more connectors per space
FANOUT = 3
SECRET = "https://hooks.example.com/bench-not-a-real-secret"

FLOOR = """
import sys, json
from concurrent.futures import ThreadPoolExecutor
import httpx
jobs = json.loads(sys.argv[1])
def lists(job):
    url, spaces = job
    with httpx.Client(base_url=url) as c:
        c.get("/api/spaces/space").raise_for_status()
        c.get("/api/actions/connector_types").raise_for_status()
        return sum(len(c.get(("" if s == "default" else f"/s/{s}") + "/api/actions/connectors").json())
                   for s in spaces)
with ThreadPoolExecutor(max_workers=16) as pool:
    print(sum(pool.map(lists, jobs)))
"""


def env_names(e: int) -> list[str]:
    return [f"env-{i:02d}" for i in range(e)]


def space_names(s: int) -> list[str]:
    return ["default"] + [f"space-{i:02d}" for i in range(1, s)]


def write_settings(root: Path, envs: Sequence[str], urls: Mapping[str, str]) -> None:
    """kcr.yaml: one environment per sandbox, each with its own URL and vars."""
    settings = {
        "vars": {"team": "ops", "retention": 30},
        "environments": {name: {"kibana_url": urls[name],
                                "vars": {"region": f"region-{i}", "tier": "prod" if i % 2 else "stage"}}
                         for i, name in enumerate(envs)},
    }
    (root / "kcr.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))


def write_connectors(root: Path, envs: Sequence[str], spaces: Sequence[str], per_space: int) -> None:
    """`per_space` connectors in each space (for the first LIMITED_TO environments; two fewer elsewhere).
    Half the names and a quarter of the configs read a var that differs per environment; the rest read
    the same everywhere, as most connectors of a real repository do."""
    own = per_space - FANOUT - LIMITED_TO
    for space in spaces:
        items: list[dict[str, Any]] = []
        for i in range(own):
            if i % 25 == 0:
                items.append({"id": f"slack-{i:03d}", "name": f"Slack {i} ${{var:region}}", "type": ".slack",
                              "secrets": {"webhookUrl": "${env:BENCH_SLACK_URL}"}})
            else:
                name = f"Index {i} ${{var:env}}" if i % 2 == 0 else f"Index {i}"
                index = f"alerts-${{var:tier}}-{space}-{i}" if i % 4 == 0 else f"alerts-{space}-{i}"
                items.append({"id": f"idx-{i:03d}", "name": name, "type": ".index",
                              "config": {"index": index, "refresh": i % 3 == 0}})
        items += [{"id": f"only-{j}", "name": f"Limited {j}", "type": ".server-log",
                   "environments": list(envs[:LIMITED_TO])} for j in range(LIMITED_TO)]
        d = root / "connectors" / space
        d.mkdir(parents=True)
        for n in range(0, len(items), PER_FILE):
            (d / f"c{n // PER_FILE:02d}.yaml").write_text(yaml.safe_dump({"connectors": items[n:n + PER_FILE]},
                                                                         sort_keys=False))
    shared = {"spaces": "all", "connectors": [
        {"id": f"fan-{j}", "name": f"Fan-out {j} in ${{var:space}} (${{var:region}})", "type": ".webhook",
         "config": {"url": f"https://hooks.example.com/${{var:space}}/{j}", "hasAuth": False}}
        for j in range(FANOUT)]}
    (root / "connectors" / "_all").mkdir()
    (root / "connectors" / "_all" / "shared.yaml").write_text(yaml.safe_dump(shared, sort_keys=False))


def seeds(root: Path, env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """What each environment's Kibana holds: the repository's connectors as kcr reads them for it."""
    result = load(root, None, env)
    if result.errors:
        raise SystemExit("the generated repository has errors:\n" + "\n".join(map(str, result.errors)))
    out: dict[str, dict[str, Any]] = {}
    for name, state in result.states.items():
        assert name is not None
        out[name] = {"license": "platinum", "spaces": sorted(state.spaces), "connectors": [
            {"id": spec.id, "space": spec.space, "name": spec.name, "connector_type_id": spec.type,
             "config": dict(spec.config), "secrets": {}}
            for space in state.spaces.values() for spec in space.connectors]}
    return out


@contextmanager
def sandboxes(seed_by_env: Mapping[str, dict[str, Any]], in_process: bool = False) -> Iterator[dict[str, str]]:
    """One sandbox per environment. By default each is its own `kcr sandbox` process, as each Kibana is
    its own server: in this process they would share one interpreter lock and answer one at a time,
    which no fleet of Kibanas does (`--in-process` measures that case)."""
    with ExitStack() as stack:
        if in_process:
            yield {name: stack.enter_context(running(Sandbox.from_seed(seed))) for name, seed in seed_by_env.items()}
            return
        yield {name: stack.enter_context(_sandbox_process(seed)) for name, seed in seed_by_env.items()}


@contextmanager
def _sandbox_process(seed: Mapping[str, Any]) -> Iterator[str]:
    """`kcr sandbox --port 0` with the seed in a file; its URL from the line it announces (bounded wait)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(seed, f)
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "sandbox", "--port", "0", "--seed", f.name],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        match = re.search(r"https?://\S+", line)
        if match is None:
            raise SystemExit(f"a sandbox did not start: {line!r}")
        yield match.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        os.unlink(f.name)


def row(what: str, r: Run, note: str = "") -> None:
    print(f"  {what:<46} {r.wall:8.3f} s {r.cpu:8.3f} s  {note}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--in-process", action="store_true",
                        help="run the sandboxes as threads of this process (they then answer one at a time)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="each sandbox answers every request this much later, as a Kibana on another machine "
                             "does (0: the sandboxes share this machine's CPUs with kcr and answer at once)")
    a = parser.parse_args()
    byte_compiled(ROOT)
    e, s, c = (3, 3, 20) if a.quick else (10, 10, 100)
    envs, spaces = env_names(e), space_names(s)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("KIBANA_", "ELASTICSEARCH_", "KCR_"))}
    env = {**base_env, "BENCH_SLACK_URL": SECRET, "KCR_FINGERPRINT_KEY": "bench-fingerprint-key", "NO_COLOR": "1"}
    kcr = [sys.executable, "-m", "reconciler"]
    with tempfile.TemporaryDirectory(prefix="kcr-bench-envs-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        # The seeds are read from the repository and the URLs known once the sandboxes listen: kcr.yaml is
        # written first with placeholder URLs (the connectors do not depend on them), then with the real ones.
        write_connectors(root, envs, spaces, c)
        write_settings(root, envs, {n: f"http://127.0.0.1:1/{n}" for n in envs})
        seed_by_env = seeds(root, env)
        if a.latency_ms:
            for seed in seed_by_env.values():
                seed["faults"] = {"latency_ms": a.latency_ms}
        with sandboxes(seed_by_env, a.in_process) as urls:
            write_settings(root, envs, urls)
            counts = {n: len(seed_by_env[n]["connectors"]) for n in envs}
            files = sum(1 for _ in (root / "connectors").rglob("*.yaml"))
            print(f"kcr environments benchmark: {e} environments x {s} spaces, {files} files, connectors per "
                  f"environment {min(counts.values())}-{max(counts.values())} ({sum(counts.values())} in all), "
                  f"{e} sandboxes on loopback answering after {a.latency_ms:g} ms; best of {a.repeat}; "
                  f"{os.cpu_count()} CPUs")
            print(f"  {'command':<46} {'wall':>10} {'cpu u+s':>10}")
            validate = best([*kcr, "validate", "--dir", str(root)], env, root, a.repeat)
            row("kcr validate (every environment)", validate)
            singles = {n: best([*kcr, "plan", "--env", n, "--dir", str(root), "--detailed-exitcode"], env, root,
                               a.repeat) for n in envs}
            slow_name, slowest = max(singles.items(), key=lambda kv: kv[1].wall)
            fast = min(r.wall for r in singles.values())
            row(f"kcr plan --env E: slowest ({slow_name})", slowest, f"fastest {fast:.3f} s")
            sum_wall = sum(r.wall for r in singles.values())
            print(f"  {'kcr plan --env E: all ' + str(e) + ', one after another':<46} {sum_wall:8.3f} s "
                  f"{sum(r.cpu for r in singles.values()):8.3f} s")
            all_envs = best([*kcr, "plan", "--all-envs", "--dir", str(root), "--detailed-exitcode"], env, root,
                            a.repeat)
            row("kcr plan --all-envs", all_envs)
            one_job = [[urls[slow_name], sorted(seed_by_env[slow_name]["spaces"])]]
            every_job = [[urls[n], sorted(seed_by_env[n]["spaces"])] for n in envs]
            floor_one = best([sys.executable, "-c", FLOOR, json.dumps(one_job)], env, root, a.repeat)
            floor_all = best([sys.executable, "-c", FLOOR, json.dumps(every_job)], env, root, a.repeat)
            row("floor: httpx, one environment's lists", floor_one, f"{floor_one.out.strip()} connectors")
            row(f"floor: httpx, all {e} environments' lists (16 threads)", floor_all,
                f"{floor_all.out.strip()} connectors")
            ratio = all_envs.wall / slowest.wall
            print(f"\n  --all-envs wall / slowest single-environment wall: {ratio:.2f}x (issue #13 asks <= 1.5x)")
            print(f"  --all-envs wall / all single plans one after another: {all_envs.wall / sum_wall:.2f}x")
            print(f"  floor, all lists / one environment's lists: {floor_all.wall / floor_one.wall:.2f}x (what "
                  "fetching alone costs more here: the sandboxes share the CPUs)")
            print(f"  --all-envs CPU / slowest single CPU: {all_envs.cpu / slowest.cpu:.2f}x; "
                  f"above the all-lists floor: {all_envs.wall - floor_all.wall:.3f} s wall")
            if a.profile:
                prof = Path(tmp) / "all-envs.prof"
                measure([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "reconciler", "plan", "--all-envs",
                         "--dir", str(root)], env, root)
                print("\ncProfile of `kcr plan --all-envs` (cumulative, top 25):")
                pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
