"""One whole child process measured as a user runs it: wall from start to reaped, its own CPU (user + sys)
and peak RSS from os.wait4, taken in a small launcher process. Shared by bench/plan.py, bench/envs.py and
bench/apply.py, so every figure they print is measured one way."""

from __future__ import annotations

import compileall
import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Runs the measured command and reports its wall, CPU and peak RSS. A small process of its own: Linux
# keeps a process's peak RSS across exec, and a child forked from this one (the sandboxes, 10,000
# connectors) would start its peak at this process's size.
LAUNCHER = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as out:
    json.dump({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024,
               "code": os.waitstatus_to_exitcode(status)}, out)
"""


def byte_compiled(*trees: Path | str) -> None:
    """Each tree's `reconciler` package compiled to bytecode before anything is measured, as installing a
    package does: with PYTHONDONTWRITEBYTECODE set (as on many CI images, and this one) a module edited
    since its .pyc was written would be compiled again by every measured process, and counted in it."""
    for tree in trees:
        compileall.compile_dir(str(Path(tree) / "reconciler"), quiet=1)


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    rss_mib: float
    code: int
    out: str


def measure(args: Sequence[str], env: Mapping[str, str], cwd: Path) -> Run:
    """One child process: wall from start to reaped, and its own CPU (user + sys) and peak RSS from os.wait4
    (in LAUNCHER)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryDirectory() as tmp:
        figures = Path(tmp) / "figures.json"
        subprocess.run([sys.executable, "-c", LAUNCHER, str(figures), *args], cwd=cwd, env=dict(env), stdout=out,
                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
        got = json.loads(figures.read_text())
    return Run(got["wall"], got["cpu"], got["rss_mib"], got["code"], text)


def best(args: Sequence[str], env: Mapping[str, str], cwd: Path, repeat: int, ok: Sequence[int] = (0,)) -> Run:
    """The fastest (by wall) of `repeat` runs; a run exiting with a code outside `ok` stops the bench."""
    runs = [measure(args, env, cwd) for _ in range(repeat)]
    for r in runs:
        if r.code not in ok:
            raise SystemExit(f"`{' '.join(args[2:])}` exited {r.code}:\n{r.out[-3000:]}")
    return min(runs, key=lambda r: r.wall)
