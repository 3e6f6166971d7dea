"""Fault injection: deterministic per seed, never on the stats path."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from reconciler.sandbox import Sandbox

ClientFactory = Callable[..., tuple[Sandbox, httpx.Client]]  # the `sandbox_client` fixture (conftest.py)


INDEX = {"name": "Index", "connector_type_id": ".index", "config": {"index": "logs"}}
XSRF = {"kbn-xsrf": "1"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def statuses(sb: Sandbox, n: int) -> list[int]:
    return [sb.handle("GET", "/api/actions/connectors", "", {}, b"").status for _ in range(n)]


def test_latency_uses_injected_sleep_and_skips_stats() -> None:
    clock = FakeClock()
    sb = Sandbox.from_seed({"faults": {"latency_ms": 250}}, clock=clock, sleep=clock.sleep)
    sb.handle("GET", "/api/actions/connectors", "", {}, b"")
    sb.handle("GET", "/__kcr_sandbox/stats", "", {}, b"")
    sb.handle("GET", "/api/actions/connectors", "", {}, b"", with_latency=False)
    assert clock.slept == [0.25]


def test_error_rate_is_deterministic_per_seed() -> None:
    seed = {"faults": {"error_rate": 0.5, "seed": 7}}
    first = statuses(Sandbox.from_seed(seed), 40)
    assert first == statuses(Sandbox.from_seed(seed), 40)
    assert set(first) == {200, 503}
    assert first != statuses(Sandbox.from_seed({"faults": {"error_rate": 0.5, "seed": 8}}), 40)
    r = Sandbox.from_seed({"faults": {"error_rate": 1.0}}).handle("GET", "/api/actions/connectors", "", {}, b"")
    assert r.json()["statusCode"] == 503 and r.json()["error"] == "Service Unavailable"


def test_rate_limit_answers_429_with_retry_after() -> None:
    clock = FakeClock()
    clock.now = 100.25
    sb = Sandbox.from_seed({"faults": {"rate_limit_per_s": 3}}, clock=clock, sleep=clock.sleep)
    assert statuses(sb, 4) == [200, 200, 200, 429]
    r = sb.handle("GET", "/api/actions/connectors", "", {}, b"")
    assert r.status == 429 and r.headers["retry-after"] == "1"
    assert sb.handle("GET", "/__kcr_sandbox/stats", "", {}, b"").status == 200  # never faulted
    clock.now = 101.0
    assert statuses(sb, 1) == [200]


def test_drop_in_process_raises_and_may_apply_the_mutation(sandbox_client: ClientFactory) -> None:
    """drop_rate 1: every create is cut; some were applied first (ambiguous creates), some not."""
    sb, c = sandbox_client({"faults": {"drop_rate": 1.0, "seed": 3}})
    for _ in range(20):
        with pytest.raises(httpx.RemoteProtocolError):
            c.post("/api/actions/connector", json=INDEX)
    applied = len(sb.connectors_in("default"))
    assert 0 < applied < 20
    sb2, c2 = sandbox_client({"faults": {"drop_rate": 1.0, "seed": 3}})
    for _ in range(20):
        with pytest.raises(httpx.RemoteProtocolError):
            c2.post("/api/actions/connector", json=INDEX)
    assert len(sb2.connectors_in("default")) == applied  # same seed, same story
    assert c.get("/__kcr_sandbox/stats").json()["POST create_connector"] == 20


def test_no_faults_by_default(sandbox_client: ClientFactory) -> None:
    sb, _ = sandbox_client()
    assert set(statuses(sb, 50)) == {200}


def test_bad_fault_values_are_config_errors() -> None:
    from reconciler.errors import ConfigError

    with pytest.raises(ConfigError, match=r"faults\.error_rate: must be at most 1, not 2"):
        Sandbox.from_seed({"faults": {"error_rate": 2}})
    with pytest.raises(ConfigError, match="unknown key"):
        Sandbox.from_seed({"fault": {}})
