"""--state: JSON written atomically after every change, loaded at start (state wins over the seed)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from reconciler.errors import ConfigError
from reconciler.sandbox import Sandbox

XSRF = {"kbn-xsrf": "1"}
INDEX = {"name": "Index", "connector_type_id": ".index", "config": {"index": "logs"}}


def test_every_change_is_saved_and_reloaded(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    sb = Sandbox.from_seed({"spaces": ["team"]})
    sb.persist_to(state)
    secret = f"CANARY-{uuid.uuid4()}"
    body = json.dumps({"name": "w", "connector_type_id": ".webhook", "config": {"url": "https://a.example"},
                       "secrets": {"user": "u", "password": secret}}).encode()
    r = sb.handle("POST", "/s/team/api/actions/connector", "", XSRF, body)
    assert r.status == 200
    saved = json.loads(state.read_text())
    assert saved["connectors"][0]["secrets"]["password"] == secret  # in clear: a test double
    assert not list(tmp_path.glob(".state.json.*"))  # temp file replaced, not left behind
    sb.handle("POST", f"/s/team/api/actions/connector/{r.json()['id']}/_execute", "", XSRF, b'{"params":{}}')
    assert len(json.loads(state.read_text())["executions"]) == 1

    seeded_id = str(uuid.uuid4())
    again = Sandbox.from_seed({"connectors": [{"id": seeded_id, "connector_type_id": ".index", "name": "seed",
                                               "config": {"index": "i"}}]})
    again.persist_to(state)
    assert [c["id"] for c in again.connectors_in("team")] == [r.json()["id"]]
    assert again.connectors_in("default") == []  # the state file wins over seed connectors


def test_only_changes_write_state(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    sb = Sandbox.from_seed(None)
    sb.persist_to(state)
    state.unlink()
    sb.handle("GET", "/api/actions/connectors", "", {}, b"")
    sb.handle("POST", "/api/actions/connector", "", XSRF, b"{}")  # a 400 changes nothing
    assert not state.exists()
    sb.handle("POST", "/api/actions/connector", "", XSRF, json.dumps(INDEX).encode())
    assert state.exists()


def test_save_and_load_state_explicitly(tmp_path: Path) -> None:
    sb = Sandbox.from_seed(None)
    sb.handle("POST", "/api/actions/connector", "", XSRF, json.dumps(INDEX).encode())
    sb.save_state(tmp_path / "x.json")
    other = Sandbox.from_seed(None)
    other.load_state(tmp_path / "x.json")
    assert other.connectors_in("default") == sb.connectors_in("default")


def test_bad_state_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json"):
        Sandbox.from_seed(None).persist_to(bad)
    bad.write_text('{"version": 99}')
    with pytest.raises(ConfigError, match="not a kcr sandbox state"):
        Sandbox.from_seed(None).load_state(bad)


def test_seed_file(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text("license: gold\nspaces: [a]\n")
    sb = Sandbox.from_seed_file(seed)
    assert sb.settings.license == "gold" and sb.settings.space_ids() == ("default", "a")
    seed.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        Sandbox.from_seed_file(seed)
