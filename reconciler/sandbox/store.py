"""The sandbox's data: the settings a seed fixes for the life of the process (licence, spaces, users,
preconfigured connectors, faults), the mutable store (connectors, rules, executions) that the
`--state` file persists, and the records the store holds. Reading a seed into them is seed.py.
Secrets are kept in clear on purpose: the sandbox is a test double and tests assert through the store
(or the state file) which secrets reached "Kibana"."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler import catalog
from reconciler.errors import ConfigError
from reconciler.files import write_atomic
from reconciler.sandbox.privileges import Grant

SYSTEM_CONNECTOR_ID = "system-connector-.cases"
STATE_VERSION = 1
DEFAULT_KIBANA_VERSION = "9.2.0"


@dataclass(frozen=True)
class Faults:
    latency_ms: float = 0.0
    error_rate: float = 0.0
    rate_limit_per_s: int = 0
    drop_rate: float = 0.0
    seed: int = 1

    @property
    def active(self) -> bool:
        return bool(self.latency_ms or self.error_rate or self.rate_limit_per_s or self.drop_rate)


@dataclass(frozen=True)
class Preconfigured:
    id: str
    name: str
    type: str
    config: Mapping[str, Any]
    secrets: Mapping[str, Any]


@dataclass(frozen=True)
class Settings:
    """What the seed fixes; never changed by requests."""

    license: str = "trial"
    spaces: tuple[tuple[str, str], ...] = (("default", "Default"),)  # (id, name)
    users: Mapping[str, str] = field(default_factory=dict)
    api_keys: frozenset[str] = frozenset()
    auth_enabled: bool = False
    # The privileges of the credentials seeded with some (`apikey:<key>`, `user:<name>`); any other
    # authenticated credential may do everything (privileges.py).
    grants: Mapping[str, Grant] = field(default_factory=dict)
    preconfigured: Mapping[str, Preconfigured] = field(default_factory=dict)
    enabled_action_types: tuple[str, ...] = ("*",)
    allowed_hosts: tuple[str, ...] = ("*",)
    human_readable_ids: bool = False
    faults: Faults = field(default_factory=Faults)
    # The version `kbn-version` is compared with, and which response shape to answer: "current" adds
    # what newer Kibana sends (`is_connector_type_deprecated`, connector_types' `is_deprecated`...,
    # the `elastic-api-version` response header); "legacy" is the 8.x shape without them.
    kibana_version: str = DEFAULT_KIBANA_VERSION
    response_fields: str = "current"
    # Types this Kibana registers beyond kcr's catalogue (seed `extra_types`): listed, and accepted with
    # any config and secrets objects (no schema is known for them).
    extra_types: Mapping[str, catalog.ConnectorType] = field(default_factory=dict)

    @property
    def current_fields(self) -> bool:
        return self.response_fields == "current"

    def space_ids(self) -> tuple[str, ...]:
        return tuple(s for s, _ in self.spaces)

    def type_enabled_in_config(self, type_id: str) -> bool:
        return "*" in self.enabled_action_types or type_id in self.enabled_action_types


@dataclass
class Store:
    """Mutable, guarded by the Sandbox's lock. Connectors keyed by id (ids are global across spaces)."""

    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    executions: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "connectors": list(self.connectors.values()),
            "rules": list(self.rules.values()),
            "executions": self.executions,
        }

    @classmethod
    def from_json(cls, raw: Any, origin: str) -> Store:
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            raise ConfigError(f"{origin}: not a kcr sandbox state file (version {STATE_VERSION}); delete it or pass "
                              "another --state path")
        try:
            return cls(
                connectors={c["id"]: dict(c) for c in raw.get("connectors", [])},
                rules={r["id"]: dict(r) for r in raw.get("rules", [])},
                executions=list(raw.get("executions", [])),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{origin}: malformed sandbox state ({type(exc).__name__}); delete it") from None

    def save(self, path: Path) -> None:
        """Atomic: a reader (or a kill) never sees half a file."""
        write_atomic(path, json.dumps(self.to_json(), indent=1, sort_keys=True), durable=False)

    @classmethod
    def load(cls, path: Path) -> Store:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read sandbox state ({type(exc).__name__}); delete it") from None
        return cls.from_json(raw, str(path))


def connector_record(
    id: str, space: str, name: str, type_id: str, config: Mapping[str, Any], secrets: Mapping[str, Any],
    is_missing_secrets: bool = False,
) -> dict[str, Any]:
    """A connector as stored; copies, so a caller's later changes never reach the store."""
    return {
        "id": id,
        "space": space,
        "name": name,
        "connector_type_id": type_id,
        "config": copy.deepcopy(dict(config)),
        "secrets": copy.deepcopy(dict(secrets)),
        "is_missing_secrets": is_missing_secrets,
    }


def rule_record(id: str, space: str, body: Mapping[str, Any], now: str) -> dict[str, Any]:
    """A rule as stored, from a request body or a seed (both already checked); defaults filled."""
    actions = []
    for a in body.get("actions") or []:
        if isinstance(a, Mapping):
            actions.append({"id": str(a.get("id")), "group": str(a.get("group") or "default"),
                            "params": copy.deepcopy(dict(a.get("params") or {})), "uuid": str(uuid.uuid4())})
    return {
        "id": id,
        "space": space,
        "name": str(body.get("name") or id),
        "rule_type_id": str(body.get("rule_type_id") or ".index-threshold"),
        "consumer": str(body.get("consumer") or "alerts"),
        "schedule": copy.deepcopy(dict(body.get("schedule") or {"interval": "1m"})),
        "params": copy.deepcopy(dict(body.get("params") or {})),
        "tags": list(body.get("tags") or []),
        "enabled": bool(body.get("enabled", True)),
        "throttle": body.get("throttle"),
        "notify_when": body.get("notify_when"),
        "actions": actions,
        "created_at": now,
        "updated_at": now,
    }
