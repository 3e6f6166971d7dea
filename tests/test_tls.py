"""TLS against a real HTTPS server on loopback (the sandbox's ASGI app under uvicorn, certificates from
a throwaway `trustme` CA): verification is on by default, a private CA is trusted through
KIBANA_CA_CERT (or its KIBANA_CA_CERTS alias), the host name is checked, KIBANA_INSECURE turns it off
with a warning, and the CLI turns a verification failure into one line and exit 1."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvicorn

from reconciler.cli import main
from reconciler.connection import Connection
from reconciler.errors import ExitCode, KibanaError
from reconciler.kibana import KibanaClient
from reconciler.model import derive_connector_id
from reconciler.sandbox import Sandbox
from reconciler.sandbox.server import asgi_app

START_TIMEOUT_S = 10.0
LIVE_ID = "0f8c6a52-5d0e-4b8e-9a51-6b6372000042"
SEED: dict[str, Any] = {
    "connectors": [
        {"id": LIVE_ID, "space": "default", "name": "Log", "connector_type_id": ".server-log",
         "config": {}, "secrets": {}},
    ],
}


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed both server certificates
    other_ca: Path  # an unrelated CA, to prove a list of CA files is a union
    cert: Path  # for 127.0.0.1 and localhost
    key: Path
    wrong_host_cert: Path  # signed by `ca`, for another host name only
    wrong_host_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    good = ca.issue_cert("127.0.0.1", "localhost")
    wrong = ca.issue_cert("kibana.invalid")
    paths = Pki(root / "ca.pem", root / "other-ca.pem", root / "cert.pem", root / "key.pem",
                root / "wrong-cert.pem", root / "wrong-key.pem")
    ca.cert_pem.write_to_path(str(paths.ca))
    other.cert_pem.write_to_path(str(paths.other_ca))
    good.private_key_pem.write_to_path(str(paths.key))
    good.cert_chain_pems[0].write_to_path(str(paths.cert))
    wrong.private_key_pem.write_to_path(str(paths.wrong_host_key))
    wrong.cert_chain_pems[0].write_to_path(str(paths.wrong_host_cert))
    return paths


@contextmanager
def https_sandbox(sb: Sandbox, certfile: Path, keyfile: Path) -> Iterator[int]:
    """The sandbox over HTTPS in a thread; yields the port, stops and joins on exit. Readiness is an
    Event set by uvicorn's startup, not a sleep."""
    ready = threading.Event()

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            ready.set()

    config = uvicorn.Config(asgi_app(sb), lifespan="off", log_level="warning", access_log=False,
                            ssl_certfile=str(certfile), ssl_keyfile=str(keyfile), timeout_graceful_shutdown=2)
    server = Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)

    def run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="kcr-tls-sandbox", daemon=True)
    thread.start()
    try:
        assert ready.wait(START_TIMEOUT_S) and server.started, "the HTTPS sandbox did not start"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)
        sock.close()
        assert not thread.is_alive(), "the HTTPS sandbox did not stop"


@pytest.fixture()
def sandbox() -> Sandbox:
    return Sandbox.from_seed(SEED)


@pytest.fixture()
def port(pki: Pki, sandbox: Sandbox) -> Iterator[int]:
    with https_sandbox(sandbox, pki.cert, pki.key) as p:
        yield p


def _client(env: dict[str, str], sleeps: list[float] | None = None) -> KibanaClient:
    record = sleeps if sleeps is not None else []
    return KibanaClient(Connection.from_env(env), sleep=record.append)


def _verification_failure(port: int, sleeps: list[float] | None = None) -> KibanaError:
    env = {"KIBANA_URL": f"https://127.0.0.1:{port}"}
    with _client(env, sleeps) as client, pytest.raises(KibanaError) as info:
        client.list_connectors("default")
    return info.value


# --- verification on by default ---------------------------------------------------------------------------


def test_verification_is_on_by_default(port: int, sandbox: Sandbox) -> None:
    error = _verification_failure(port)
    assert "certificate" in str(error).lower()
    assert sandbox.counters["total"] == 0, "a request got through an unverified TLS connection"


def test_verification_failure_message_names_the_fix(port: int) -> None:
    message = str(_verification_failure(port))
    assert "certificate verification failed" in message.lower()
    assert "KIBANA_CA_CERT" in message


def test_verification_failure_is_not_retried(port: int) -> None:
    sleeps: list[float] = []
    _verification_failure(port, sleeps)
    assert sleeps == []


# --- trusting a private CA --------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.parametrize("variable", ["KIBANA_CA_CERT", "KIBANA_CA_CERTS"])
def test_private_ca_is_trusted(port: int, pki: Pki, host: str, variable: str) -> None:
    with _client({"KIBANA_URL": f"https://{host}:{port}", variable: str(pki.ca)}) as client:
        assert [c.id for c in client.list_connectors("default")] == [LIVE_ID]


def test_ca_list_adds_to_what_is_trusted(port: int, pki: Pki) -> None:
    env = {"KIBANA_URL": f"https://127.0.0.1:{port}", "KIBANA_CA_CERT": f"{pki.other_ca},{pki.ca}"}
    with _client(env) as client:
        assert [c.id for c in client.list_connectors("default")] == [LIVE_ID]


def test_only_the_named_ca_is_trusted(port: int, pki: Pki, sandbox: Sandbox) -> None:
    env = {"KIBANA_URL": f"https://127.0.0.1:{port}", "KIBANA_CA_CERT": str(pki.other_ca)}
    with _client(env) as client, pytest.raises(KibanaError, match=r"(?i)certificate"):
        client.list_connectors("default")
    assert sandbox.counters["total"] == 0


def test_host_name_is_checked(pki: Pki, sandbox: Sandbox) -> None:
    with https_sandbox(sandbox, pki.wrong_host_cert, pki.wrong_host_key) as p:
        env = {"KIBANA_URL": f"https://127.0.0.1:{p}", "KIBANA_CA_CERT": str(pki.ca)}
        with _client(env) as client, pytest.raises(KibanaError, match=r"(?i)certificate|hostname|ip address"):
            client.list_connectors("default")
    assert sandbox.counters["total"] == 0


# --- turning verification off -----------------------------------------------------------------------------


def test_insecure_works_and_warns(port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kcr.kibana")
    with _client({"KIBANA_URL": f"https://127.0.0.1:{port}", "KIBANA_INSECURE": "true"}) as client:
        assert [c.id for c in client.list_connectors("default")] == [LIVE_ID]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "kcr.kibana"]
    assert any("verification is disabled" in r.getMessage() for r in warnings), caplog.text


def test_insecure_false_keeps_verification(port: int) -> None:
    env = {"KIBANA_URL": f"https://127.0.0.1:{port}", "KIBANA_INSECURE": "false"}
    with _client(env) as client, pytest.raises(KibanaError, match=r"(?i)certificate"):
        client.list_connectors("default")


# --- through the CLI --------------------------------------------------------------------------------------


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "connectors" / "default").mkdir(parents=True)
    (root / "connectors" / "default" / "log.yaml").write_text(
        "connectors:\n  - id: audit-log\n    name: Audit log\n    type: .server-log\n"
    )
    return root


@pytest.fixture()
def no_real_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The CLI builds its own client with the default `sleep`; swap the default so retries cost nothing."""
    sleeps: list[float] = []
    defaults = KibanaClient.__init__.__kwdefaults__
    assert defaults is not None and "sleep" in defaults
    monkeypatch.setitem(defaults, "sleep", sleeps.append)
    return sleeps


def _plan(repo: Path, env: dict[str, str]) -> int:
    return main(["plan", "--dir", str(repo)], env={"NO_COLOR": "1", **env})


@pytest.mark.usefixtures("no_real_sleep")
def test_cli_verification_failure_is_one_line_and_exit_1(
    port: int, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _plan(repo, {"KIBANA_URL": f"https://127.0.0.1:{port}"})
    out, err = capsys.readouterr()
    assert code == ExitCode.ERROR
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ") and "certificate" in lines[0].lower()


@pytest.mark.usefixtures("no_real_sleep")
def test_cli_verification_failure_names_the_fix(port: int, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _plan(repo, {"KIBANA_URL": f"https://127.0.0.1:{port}"})
    assert "KIBANA_CA_CERT" in capsys.readouterr().err


@pytest.mark.usefixtures("no_real_sleep")
def test_cli_plan_with_private_ca(port: int, pki: Pki, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _plan(repo, {"KIBANA_URL": f"https://127.0.0.1:{port}", "KIBANA_CA_CERT": str(pki.ca)})
    out, err = capsys.readouterr()
    assert code == ExitCode.OK, err
    assert "Traceback" not in err
    assert derive_connector_id("default", "audit-log") in out or "audit-log" in out
