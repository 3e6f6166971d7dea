"""The sandbox's data: the settings a seed fixes for the life of the process (licence, spaces, users,
preconfigured connectors, faults) and the mutable store (connectors, rules, executions) that the
`--state` file persists. Secrets are kept in clear on purpose: the sandbox is a test double and tests
assert through the store (or the state file) which secrets reached "Kibana"."""

from __future__ import annotations

import copy
import json
import os
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler import catalog
from reconciler.errors import ConfigError

LICENSES = ("basic", "standard", "gold", "platinum", "enterprise", "trial")
SYSTEM_CONNECTOR_ID = "system-connector-.cases"
STATE_VERSION = 1
_SEED_KEYS = frozenset(
    {
        "license", "spaces", "auth", "preconfigured", "enabled_action_types", "allowed_hosts", "connectors",
        "rules", "faults", "human_readable_ids",
    }
)


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
    preconfigured: Mapping[str, Preconfigured] = field(default_factory=dict)
    enabled_action_types: tuple[str, ...] = ("*",)
    allowed_hosts: tuple[str, ...] = ("*",)
    human_readable_ids: bool = False
    faults: Faults = field(default_factory=Faults)

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
        data = json.dumps(self.to_json(), indent=1, sort_keys=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> Store:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read sandbox state ({type(exc).__name__}); delete it") from None
        return cls.from_json(raw, str(path))


def _fail(message: str) -> ConfigError:
    return ConfigError(f"sandbox seed: {message}")


def _mapping(seed: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = seed.get(key) or {}
    if not isinstance(value, Mapping):
        raise _fail(f"'{key}' must be a mapping")
    return value


def _strings(seed: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = seed.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(f"'{key}' must be a list of strings")
    return tuple(value)


def _spaces(seed: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {"default": "Default"}
    for item in seed.get("spaces") or []:
        if isinstance(item, str):
            out.setdefault(item, item)
        elif isinstance(item, Mapping) and isinstance(item.get("id"), str):
            out[item["id"]] = str(item.get("name") or item["id"])
        else:
            raise _fail("'spaces' entries must be space ids or {id, name}")
    return tuple(out.items())


def _faults(seed: Mapping[str, Any]) -> Faults:
    raw = _mapping(seed, "faults")
    try:
        faults = Faults(
            latency_ms=float(raw.get("latency_ms", 0) or 0),
            error_rate=float(raw.get("error_rate", 0) or 0),
            rate_limit_per_s=int(raw.get("rate_limit_per_s", 0) or 0),
            drop_rate=float(raw.get("drop_rate", 0) or 0),
            seed=int(raw.get("seed", 1) or 0),
        )
    except (TypeError, ValueError):
        raise _fail("'faults' values must be numbers") from None
    if not (0 <= faults.error_rate <= 1 and 0 <= faults.drop_rate <= 1):
        raise _fail("'faults.error_rate' and 'faults.drop_rate' must be between 0 and 1")
    return faults


def _preconfigured(seed: Mapping[str, Any]) -> dict[str, Preconfigured]:
    out: dict[str, Preconfigured] = {}
    for pid, raw in _mapping(seed, "preconfigured").items():
        if not isinstance(raw, Mapping) or not isinstance(raw.get("actionTypeId"), str):
            raise _fail(f"preconfigured connector {pid!r} needs an 'actionTypeId' (kibana.yml shape)")
        out[str(pid)] = Preconfigured(
            id=str(pid),
            name=str(raw.get("name") or pid),
            type=raw["actionTypeId"],
            config=catalog.with_defaults(raw["actionTypeId"], "config", dict(raw.get("config") or {})),
            secrets=dict(raw.get("secrets") or {}),
        )
    return out


def settings_from_seed(seed: Mapping[str, Any]) -> Settings:
    unknown = sorted(set(seed) - _SEED_KEYS)
    if unknown:
        raise _fail(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_SEED_KEYS))}")
    license_ = str(seed.get("license") or "trial")
    if license_ not in LICENSES:
        raise _fail(f"license {license_!r} is not one of {', '.join(LICENSES)}")
    auth = _mapping(seed, "auth")
    users = auth.get("users") or {}
    keys = auth.get("api_keys") or []
    if not isinstance(users, Mapping) or not isinstance(keys, list):
        raise _fail("'auth.users' must map user to password and 'auth.api_keys' be a list")
    return Settings(
        license=license_,
        spaces=_spaces(seed),
        users={str(u): str(p) for u, p in users.items()},
        api_keys=frozenset(str(k) for k in keys),
        auth_enabled="auth" in seed and seed["auth"] is not None,
        preconfigured=_preconfigured(seed),
        enabled_action_types=_strings(seed, "enabled_action_types", ("*",)),
        allowed_hosts=_strings(seed, "allowed_hosts", ("*",)),
        human_readable_ids=bool(seed.get("human_readable_ids", False)),
        faults=_faults(seed),
    )


def connector_record(
    id: str, space: str, name: str, type_id: str, config: Mapping[str, Any], secrets: Mapping[str, Any],
    is_missing_secrets: bool = False,
) -> dict[str, Any]:
    return {
        "id": id,
        "space": space,
        "name": name,
        "connector_type_id": type_id,
        "config": copy.deepcopy(dict(config)),
        "secrets": copy.deepcopy(dict(secrets)),
        "is_missing_secrets": is_missing_secrets,
    }


def store_from_seed(seed: Mapping[str, Any]) -> Store:
    """Seed connectors are stored as given (defaults filled, no validation) so a seed can emulate
    states Kibana reaches by other routes: imports with missing secrets, types since unregistered."""
    store = Store()
    for i, raw in enumerate(seed.get("connectors") or []):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("connector_type_id"), str):
            raise _fail(f"connectors[{i}] needs at least 'connector_type_id'")
        cid = str(raw.get("id") or uuid.uuid4())
        if cid in store.connectors:
            raise _fail(f"connectors[{i}]: id {cid!r} appears twice (ids are global across spaces)")
        type_id = raw["connector_type_id"]
        store.connectors[cid] = connector_record(
            cid, str(raw.get("space") or "default"), str(raw.get("name") or cid), type_id,
            catalog.with_defaults(type_id, "config", dict(raw.get("config") or {})),
            dict(raw.get("secrets") or {}), bool(raw.get("is_missing_secrets", False)),
        )
    for i, raw in enumerate(seed.get("rules") or []):
        if not isinstance(raw, Mapping):
            raise _fail(f"rules[{i}] must be a mapping")
        rid = str(raw.get("id") or uuid.uuid4())
        store.rules[rid] = rule_record(rid, str(raw.get("space") or "default"), dict(raw), "1970-01-01T00:00:00.000Z")
    return store


def rule_record(id: str, space: str, body: Mapping[str, Any], now: str) -> dict[str, Any]:
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
