"""The sandbox's data: the settings a seed fixes for the life of the process (licence, spaces, users,
preconfigured connectors, faults) and the mutable store (connectors, rules, executions) that the
`--state` file persists. Secrets are kept in clear on purpose: the sandbox is a test double and tests
assert through the store (or the state file) which secrets reached "Kibana"."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler import catalog
from reconciler.errors import ConfigError
from reconciler.files import write_atomic

LICENSES = ("basic", "standard", "gold", "platinum", "enterprise", "trial")
SYSTEM_CONNECTOR_ID = "system-connector-.cases"
STATE_VERSION = 1
_SEED_KEYS = frozenset(
    {
        "license", "spaces", "auth", "preconfigured", "enabled_action_types", "allowed_hosts", "connectors",
        "rules", "faults", "human_readable_ids", "kibana_version", "response_fields",
    }
)
DEFAULT_KIBANA_VERSION = "9.2.0"
RESPONSE_FIELDS = ("legacy", "current")
_FAULT_KEYS = frozenset({"latency_ms", "error_rate", "rate_limit_per_s", "drop_rate", "seed"})
_CONNECTOR_KEYS = frozenset({"id", "space", "name", "connector_type_id", "config", "secrets", "is_missing_secrets"})
_SPACE_ID = re.compile(r"^[a-z0-9_\-]+$")  # the spaces plugin's getSpaceIdFromPath character set
_VERSION = re.compile(r"^\d+\.\d+\.\d+(-[A-Za-z0-9.]+)?$")


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
    # The version `kbn-version` is compared with, and which response shape to answer: "current" adds
    # what newer Kibana sends (`is_connector_type_deprecated`, connector_types' `is_deprecated`...,
    # the `elastic-api-version` response header); "legacy" is the 8.x shape without them.
    kibana_version: str = DEFAULT_KIBANA_VERSION
    response_fields: str = "current"

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


def _fail(origin: str, key: str, message: str) -> ConfigError:
    """Every seed problem names the file (or "sandbox seed" for an in-memory dict) and the key."""
    return ConfigError(f"{origin}: {key}: {message}")


def _type_name(value: Any) -> str:
    """In YAML's words, for seed errors (Kibana's own words are validation.js_type)."""
    from reconciler.sandbox.validation import js_type

    name = js_type(value)
    return {"Array": "list", "object": "mapping" if isinstance(value, Mapping) else type(value).__name__}.get(
        name, name)


def _mapping(seed: Mapping[str, Any], key: str, origin: str) -> Mapping[str, Any]:
    value = seed.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(origin, key, f"must be a mapping, got {_type_name(value)}")
    return value


def _strings(seed: Mapping[str, Any], key: str, default: tuple[str, ...], origin: str) -> tuple[str, ...]:
    value = seed.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(origin, key, f"must be a list of strings, got {_type_name(value)}")
    return tuple(value)


def _bool(seed: Mapping[str, Any], key: str, origin: str) -> bool:
    value = seed.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(origin, key, f"must be true or false, got {_type_name(value)}")
    return value


def _spaces(seed: Mapping[str, Any], origin: str) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {"default": "Default"}
    raw = seed.get("spaces")
    if raw is None:
        return tuple(out.items())
    if not isinstance(raw, list):
        raise _fail(origin, "spaces", f"must be a list of space ids or {{id, name}}, got {_type_name(raw)}")
    for i, item in enumerate(raw):
        sid = item if isinstance(item, str) else item.get("id") if isinstance(item, Mapping) else None
        if not isinstance(sid, str) or not _SPACE_ID.match(sid):
            raise _fail(origin, f"spaces[{i}]", "must be a space id (lowercase letters, digits, '_' and '-') or "
                                               "{id, name}")
        if isinstance(item, Mapping):
            out[sid] = str(item.get("name") or sid)
        else:
            out.setdefault(sid, sid)
    return tuple(out.items())


def _faults(seed: Mapping[str, Any], origin: str) -> Faults:
    raw = _mapping(seed, "faults", origin)
    unknown = sorted(set(raw) - _FAULT_KEYS)
    if unknown:
        raise _fail(origin, "faults", f"unknown key(s) {', '.join(map(str, unknown))}; known: "
                                      f"{', '.join(sorted(_FAULT_KEYS))}")
    for key, value in raw.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _fail(origin, f"faults.{key}", f"must be a number, got {_type_name(value)}")
    faults = Faults(
        latency_ms=float(raw.get("latency_ms") or 0),
        error_rate=float(raw.get("error_rate") or 0),
        rate_limit_per_s=int(raw.get("rate_limit_per_s") or 0),
        drop_rate=float(raw.get("drop_rate") or 0),
        seed=int(raw.get("seed", 1) or 0),
    )
    for key in ("error_rate", "drop_rate"):
        if not 0 <= getattr(faults, key) <= 1:
            raise _fail(origin, f"faults.{key}", "must be between 0 and 1")
    if faults.latency_ms < 0 or faults.rate_limit_per_s < 0:
        raise _fail(origin, "faults", "latency_ms and rate_limit_per_s must not be negative")
    return faults


def _preconfigured(seed: Mapping[str, Any], origin: str) -> dict[str, Preconfigured]:
    out: dict[str, Preconfigured] = {}
    for pid, raw in _mapping(seed, "preconfigured", origin).items():
        where = f"preconfigured.{pid}"
        if not isinstance(raw, Mapping) or not isinstance(raw.get("actionTypeId"), str):
            raise _fail(origin, where, "needs an 'actionTypeId' (kibana.yml xpack.actions.preconfigured shape)")
        for part in ("config", "secrets"):
            if raw.get(part) is not None and not isinstance(raw[part], Mapping):
                raise _fail(origin, f"{where}.{part}", f"must be a mapping, got {_type_name(raw[part])}")
        out[str(pid)] = Preconfigured(
            id=str(pid),
            name=str(raw.get("name") or pid),
            type=raw["actionTypeId"],
            config=catalog.with_defaults(raw["actionTypeId"], "config", dict(raw.get("config") or {})),
            secrets=dict(raw.get("secrets") or {}),
        )
    return out


def _auth(seed: Mapping[str, Any], origin: str) -> tuple[dict[str, str], frozenset[str]]:
    auth = _mapping(seed, "auth", origin)
    unknown = sorted(set(auth) - {"users", "api_keys"})
    if unknown:
        raise _fail(origin, "auth", f"unknown key(s) {', '.join(map(str, unknown))}; known: api_keys, users")
    users = auth.get("users") or {}
    keys = auth.get("api_keys") or []
    if not isinstance(users, Mapping) or not all(isinstance(p, str | int) for p in users.values()):
        raise _fail(origin, "auth.users", "must map each user name to a password")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _fail(origin, "auth.api_keys", "must be a list of strings")
    return {str(u): str(p) for u, p in users.items()}, frozenset(keys)


def _version(seed: Mapping[str, Any], origin: str) -> tuple[str, str]:
    version = seed.get("kibana_version", DEFAULT_KIBANA_VERSION)
    if not isinstance(version, str) or not _VERSION.match(version):
        raise _fail(origin, "kibana_version", f"must be a version string like {DEFAULT_KIBANA_VERSION!r} (quote it "
                                              "in YAML)")
    fields = seed.get("response_fields", "current")
    if fields not in RESPONSE_FIELDS:
        raise _fail(origin, "response_fields", f"{fields!r} is not one of {', '.join(RESPONSE_FIELDS)}")
    return version, str(fields)


def settings_from_seed(seed: Mapping[str, Any], origin: str = "sandbox seed") -> Settings:
    unknown = sorted(str(k) for k in set(seed) - _SEED_KEYS)
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_SEED_KEYS))}")
    license_ = seed.get("license", "trial")
    if license_ is None:
        license_ = "trial"
    if license_ not in LICENSES:
        raise _fail(origin, "license", f"{license_!r} is not one of {', '.join(LICENSES)}")
    users, api_keys = _auth(seed, origin)
    version, fields = _version(seed, origin)
    return Settings(
        license=license_,
        spaces=_spaces(seed, origin),
        users=users,
        api_keys=api_keys,
        auth_enabled="auth" in seed and seed["auth"] is not None,
        preconfigured=_preconfigured(seed, origin),
        enabled_action_types=_strings(seed, "enabled_action_types", ("*",), origin),
        allowed_hosts=_strings(seed, "allowed_hosts", ("*",), origin),
        human_readable_ids=_bool(seed, "human_readable_ids", origin),
        faults=_faults(seed, origin),
        kibana_version=version,
        response_fields=fields,
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




def _list(seed: Mapping[str, Any], key: str, origin: str) -> list[Any]:
    value = seed.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(origin, key, f"must be a list, got {_type_name(value)}")
    return value


def _space_of(raw: Mapping[str, Any], where: str, settings: Settings | None, origin: str) -> str:
    space = raw.get("space", "default")
    if not isinstance(space, str):
        raise _fail(origin, f"{where}.space", f"must be a space id, got {_type_name(space)}")
    if settings is not None and space not in settings.space_ids():
        raise _fail(origin, f"{where}.space", f"space {space!r} is not declared in 'spaces' "
                                              f"({', '.join(settings.space_ids())}); add it there")
    return space


def store_from_seed(seed: Mapping[str, Any], settings: Settings | None = None, origin: str = "sandbox seed") -> Store:
    """Seed connectors are stored as given (defaults filled, no validation) so a seed can emulate
    states Kibana reaches by other routes: imports with missing secrets, types since unregistered.
    With `settings`, spaces must be declared and ids must not clash with preconfigured connectors."""
    store = Store()
    pre = settings.preconfigured if settings is not None else {}
    for i, raw in enumerate(_list(seed, "connectors", origin)):
        where = f"connectors[{i}]"
        if not isinstance(raw, Mapping) or not isinstance(raw.get("connector_type_id"), str):
            raise _fail(origin, where, "needs at least 'connector_type_id' (a string)")
        unknown = sorted(str(k) for k in set(raw) - _CONNECTOR_KEYS)
        if unknown:
            known = ", ".join(sorted(_CONNECTOR_KEYS))
            raise _fail(origin, where, f"unknown key(s) {', '.join(unknown)}; known: {known}")
        for key in ("id", "name"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise _fail(origin, f"{where}.{key}", f"must be a string, got {_type_name(raw[key])}")
        for part in ("config", "secrets"):
            if raw.get(part) is not None and not isinstance(raw[part], Mapping):
                raise _fail(origin, f"{where}.{part}", f"must be a mapping, got {_type_name(raw[part])}")
        cid = str(raw.get("id") or uuid.uuid4())
        if cid in store.connectors:
            raise _fail(origin, f"{where}.id", f"{cid!r} appears twice (connector ids are global across spaces)")
        if cid in pre:
            raise _fail(origin, f"{where}.id", f"{cid!r} is already a preconfigured connector id")
        type_id = raw["connector_type_id"]
        store.connectors[cid] = connector_record(
            cid, _space_of(raw, where, settings, origin), str(raw.get("name") or cid), type_id,
            catalog.with_defaults(type_id, "config", dict(raw.get("config") or {})),
            dict(raw.get("secrets") or {}), bool(raw.get("is_missing_secrets", False)),
        )
    for i, raw in enumerate(_list(seed, "rules", origin)):
        where = f"rules[{i}]"
        if not isinstance(raw, Mapping):
            raise _fail(origin, where, f"must be a mapping, got {_type_name(raw)}")
        if raw.get("actions") is not None and not (
            isinstance(raw["actions"], list) and all(isinstance(a, Mapping) and isinstance(a.get("id"), str)
                                                     and isinstance(a.get("params") or {}, Mapping)
                                                     for a in raw["actions"])):
            raise _fail(origin, f"{where}.actions", "must be a list of {id: <connector id>, group, params: {...}}")
        if raw.get("tags") is not None and not (isinstance(raw["tags"], list)
                                                and all(isinstance(t, str) for t in raw["tags"])):
            raise _fail(origin, f"{where}.tags", f"must be a list of strings, got {_type_name(raw['tags'])}")
        if raw.get("enabled") is not None and not isinstance(raw["enabled"], bool):
            raise _fail(origin, f"{where}.enabled", f"must be true or false, got {_type_name(raw['enabled'])}")
        rid = str(raw.get("id") or uuid.uuid4())
        if rid in store.rules:
            raise _fail(origin, f"{where}.id", f"{rid!r} appears twice")
        store.rules[rid] = rule_record(rid, _space_of(raw, where, settings, origin), dict(raw),
                                       "1970-01-01T00:00:00.000Z")
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
