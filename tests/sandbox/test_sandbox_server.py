"""The sandbox over a real loopback socket: `running()`, dropped connections, SIGTERM with state saved."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import httpx
import pytest
from processes import read_line  # sibling module (see processes.py)

from reconciler.sandbox import Sandbox
from reconciler.sandbox.server import running

INDEX = {"name": "Index", "connector_type_id": ".index", "config": {"index": "logs"}}
XSRF = {"kbn-xsrf": "1"}


def test_running_serves_and_stops() -> None:
    sb = Sandbox.from_seed({"spaces": ["team"]})
    with running(sb) as url, httpx.Client(base_url=url, headers=XSRF, timeout=5) as client:
        assert url.startswith("http://127.0.0.1:")
        r = client.post("/s/team/api/actions/connector", json=INDEX)
        assert r.status_code == 200
        assert client.get("/s/team/api/actions/connectors").json()[0]["id"] == r.json()["id"]
        assert client.get("/api/actions/connector/a%2Fb").status_code == 404
        assert client.post("/api/actions/connector", content=b" " * (1024 * 1024 + 10)).status_code == 413
        assert client.get("/__kcr_sandbox/stats").json()["POST create_connector"] == 2
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_dropped_connection_over_a_socket() -> None:
    sb = Sandbox.from_seed({"faults": {"drop_rate": 1.0, "seed": 5}})
    with running(sb) as url, httpx.Client(base_url=url, headers=XSRF, timeout=5) as client:
        for _ in range(6):
            with pytest.raises(httpx.RemoteProtocolError):
                client.post("/api/actions/connector", json=INDEX)
        stats = client.get("/__kcr_sandbox/stats")
        assert stats.status_code == 200 and stats.json()["POST create_connector"] == 6
    assert 0 < len(sb.connectors_in("default")) < 6


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_with_state_saved(tmp_path: Path, sig: signal.Signals) -> None:
    state = tmp_path / "state.json"
    code = textwrap.dedent(f"""
        import sys
        from reconciler.sandbox import Sandbox
        from reconciler.sandbox.server import serve
        serve(Sandbox.from_seed(None), "127.0.0.1", 0, {str(state)!r},
              on_ready=lambda url: print(url, flush=True))
        print("serve returned", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = read_line(proc, 15).strip()
        assert url.startswith("http://127.0.0.1:"), (proc.stderr.read() if proc.stderr and proc.poll() is not None
                                                     else url)
        cid = str(uuid.uuid4())
        with httpx.Client(base_url=url, headers=XSRF, timeout=5) as client:
            assert client.post(f"/api/actions/connector/{cid}", json=INDEX).status_code == 200
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert [c["id"] for c in json.loads(state.read_text())["connectors"]] == [cid]
    assert (proc.returncode, "Traceback" in stderr) == (0, False), stderr
    assert stdout.strip() == "serve returned"  # serve returns normally
