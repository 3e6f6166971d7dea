"""KibanaClient against the in-process sandbox: the two must agree on routes, statuses and bodies."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from reconciler import sandbox
from reconciler.connection import Connection
from reconciler.errors import ConfigError, KibanaAuthError, KibanaConflict, KibanaError, KibanaNotFound
from reconciler.kibana import KibanaClient

CID = "0f8c6a52-5d0e-4b8e-9a51-6b6372000001"
BASE = "http://kibana.test"


def client_for(sb: Any, env: dict[str, str] | None = None, retries: int = 4) -> KibanaClient:
    conn = Connection.from_env({"KIBANA_URL": BASE, **(env or {})})
    return KibanaClient(conn, transport=sb.transport(), retries=retries, sleep=lambda s: None)


def test_crud_round_trip_in_a_space() -> None:
    sb = sandbox.Sandbox.from_seed({"spaces": ["default", "ops"]})
    canary = f"CANARY-{uuid.uuid4()}"
    with client_for(sb) as client:
        created = client.create_connector("ops", CID, name="Hook", type=".webhook",
                                          config={"url": "https://example.test/hook"},
                                          secrets={"user": "u", "password": canary})
        assert created.id == CID and created.type == ".webhook"
        assert client.get_connector("ops", CID) is not None
        assert client.get_connector("default", CID) is None  # space-isolated
        updated = client.update_connector("ops", CID, name="Hook 2", config={"url": "https://example.test/hook"},
                                          secrets={"user": "u", "password": canary})
        assert updated.name == "Hook 2"
        [stored] = sb.connectors_in("ops")
        assert stored["secrets"]["password"] == canary  # the secrets reached "Kibana"
        with pytest.raises(KibanaConflict):
            client.create_connector("default", CID, name="x", type=".webhook",
                                    config={"url": "https://example.test/hook"}, secrets={})
        client.delete_connector("ops", CID)
        with pytest.raises(KibanaNotFound):
            client.delete_connector("ops", CID)


def test_read_live_against_the_sandbox() -> None:
    sb = sandbox.Sandbox.from_seed({
        "spaces": ["default", "ops", "sec"],
        "connectors": [{"id": CID, "space": "ops", "name": "Log", "connector_type_id": ".server-log",
                        "config": {}, "secrets": {}}],
        "rules": [{"id": "r1", "space": "ops", "name": "CPU high",
                   "actions": [{"id": CID, "group": "default", "params": {}}]}],
    })
    with client_for(sb) as client:
        before = sb.counters.get("total", 0)
        live = client.read_live(["default", "ops", "sec"])
        assert sb.counters.get("total", 0) - before == 3 + 2
        ops = {c.id: c for c in live.spaces["ops"].connectors}
        assert ops[CID].referenced_by_count == 1
        assert ".server-log" in live.connector_types
        with pytest.raises(ConfigError, match="nope not found"):
            client.read_live(["nope"])
        rules = client.rules_referencing("ops", CID)
        assert [(r.id, r.name, r.space) for r in rules] == [("r1", "CPU high", "ops")]


def test_sandbox_validation_and_auth_errors_are_typed() -> None:
    sb = sandbox.Sandbox.from_seed({"auth": {"users": {"elastic": "changeme"}}})
    with client_for(sb, {"KIBANA_USERNAME": "elastic", "KIBANA_PASSWORD": "wrong"}) as client, \
            pytest.raises(KibanaAuthError):
        client.list_connectors("default")
    with client_for(sb, {"KIBANA_USERNAME": "elastic", "KIBANA_PASSWORD": "changeme"}) as client:
        assert client.list_connectors("default") == []
        with pytest.raises(KibanaError) as info:
            client.create_connector("default", CID, name="x", type=".nope", config={}, secrets={})
        assert info.value.status == 400


def test_confirmed_create_through_dropped_connections() -> None:
    sb = sandbox.Sandbox.from_seed({"faults": {"drop_rate": 0.5, "seed": 3}})
    with client_for(sb, retries=10) as client:
        ids = [str(uuid.uuid4()) for _ in range(8)]
        created = set()
        for cid in ids:
            try:
                live = client.create_connector("default", cid, name=f"c-{cid[:8]}", type=".server-log",
                                               config={}, secrets={})
            except KibanaError as exc:  # bounded retries may run out: the outcome must still be clear
                assert not isinstance(exc, KibanaConflict)
            else:
                assert live.id == cid
                created.add(cid)
        stored = [c["id"] for c in sb.connectors_in("default")]
        assert len(stored) == len(set(stored))  # nothing created twice
        assert created <= set(stored) <= set(ids)
        assert len(created) == len(ids)
        assert sb.counters.get("POST create_connector", 0) > len(ids)  # the faults did fire


def test_transport_is_an_httpx_transport() -> None:
    sb = sandbox.Sandbox.from_seed(None)
    assert isinstance(sb.transport(), httpx.BaseTransport)
