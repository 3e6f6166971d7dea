"""Running kcr as a user does, two ways: in-process through `reconciler.cli.main(argv, env, transport)`
(fast, output read from pytest's capsys, Kibana is the in-process sandbox) and as a real `python -m
reconciler` process (its own stdout, stderr and exit status, Kibana over a loopback socket). Both
refuse a traceback in the output: kcr reports every error as a message."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from reconciler.cli import main
from reconciler.sandbox import Sandbox

PROCESS_TIMEOUT_S = 120  # a hang guard for one kcr process, not a performance bound


def write_repo(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """`files` ({relative path: text, or bytes written as they are}) under `root`, directories made as
    needed; returns `root`."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


# --- in-process ----------------------------------------------------------------------------------------


def run_main(capsys: pytest.CaptureFixture[str], argv: Sequence[str], *, env: Mapping[str, str],
             transport: httpx.BaseTransport | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one in-process run. Output captured before the run is dropped,
    so each run's output is its own."""
    capsys.readouterr()
    code = main(list(argv), env=dict(env), transport=transport)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return code, out, err


@dataclass
class World:
    """A repository, the environment kcr runs with, and the sandbox standing in for Kibana."""

    repo: Path
    env: dict[str, str]
    sb: Sandbox
    capsys: pytest.CaptureFixture[str]

    def kcr(self, *args: str, transport: httpx.BaseTransport | None = None, env: Mapping[str, str] | None = None,
            dir: bool = True) -> tuple[int, str, str]:
        """`kcr ARGS --dir REPO` (without `--dir` when `dir` is false), against the sandbox unless
        another transport is given."""
        argv = [*args, "--dir", str(self.repo)] if dir else list(args)
        return run_main(self.capsys, argv, env=self.env if env is None else env,
                        transport=transport or self.sb.transport())


# --- a real process -------------------------------------------------------------------------------------

_MACHINE_PREFIXES = ("KIBANA_", "ELASTICSEARCH_", "KCR_")


def process_env(**extra: str) -> dict[str, str]:
    """This process's environment without the KIBANA_/ELASTICSEARCH_/KCR_ variables of the machine
    running the tests (a developer's real Kibana must never be reached), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_MACHINE_PREFIXES)}
    env.update(extra)
    return env


def kcr_process(cwd: Path, env: Mapping[str, str], *args: str,
                secrets: Iterable[str] = ()) -> subprocess.CompletedProcess[str]:
    """`python -m reconciler ARGS` in `cwd`; none of `secrets` may appear in what it printed."""
    proc = subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=cwd, env=dict(env), capture_output=True,
                          text=True, timeout=PROCESS_TIMEOUT_S, stdin=subprocess.DEVNULL)
    for secret in secrets:
        assert secret not in proc.stdout + proc.stderr, "a secret reached the output"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def start_kcr_process(cwd: Path, env: Mapping[str, str], *args: str) -> subprocess.Popen[bytes]:
    """The same command, started and not waited for (its output discarded): for a test that kills it."""
    return subprocess.Popen([sys.executable, "-m", "reconciler", *args], cwd=cwd, env=dict(env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
