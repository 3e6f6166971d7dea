"""The sandbox seed: read, checked, and turned into the Settings and the Store.

A seed file (`kcr sandbox --seed`, YAML or JSON) is read like every other file kcr reads: by yamlload
(duplicate keys, alias bombs and size limits refused, a position kept for every value), checked against
schemas/sandbox-seed.schema.json, then against what a schema cannot say (spaces declared, ids unique).
Every problem is reported at once as `file:line:col: key: message`; an in-memory seed
(`Sandbox.from_seed`) is checked the same way and named "sandbox seed". Building from a checked seed
cannot fail, so it does no checking of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from reconciler import catalog
from reconciler.errors import ConfigError, Problem
from reconciler.file_problems import FileChecker, file_validator
from reconciler.sandbox import kibana9
from reconciler.sandbox.privileges import Grant, grant_from_seed
from reconciler.sandbox.store import (
    DEFAULT_KIBANA_VERSION,
    Faults,
    Preconfigured,
    Settings,
    Store,
    connector_record,
    rule_record,
)
from reconciler.yamlload import Document, YamlError, join_path, load_file

SCHEMA = "sandbox-seed.schema.json"
IN_MEMORY = "sandbox seed"
_SEED_RULES_CREATED_AT = "1970-01-01T00:00:00.000Z"


def read_seed(path: Path | str) -> Document:
    """The seed file's value and positions; ConfigError (`file:line:col: ...`) when it cannot be read."""
    try:
        return load_file(Path(path), str(path))
    except YamlError as exc:
        raise _refused(exc.problems) from None


def settings_and_store(seed: Any, origin: str = IN_MEMORY, doc: Document | None = None) -> tuple[Settings, Store]:
    """A checked seed (None is the empty one) as the Settings it fixes and the Store it starts with.
    `doc` gives positions (a file's); `origin` names the seed in every problem."""
    seed = {} if seed is None else seed
    check(seed, origin, doc)
    return _settings(seed), _store(seed)


def check(seed: Any, origin: str, doc: Document | None = None) -> None:
    """Raise ConfigError listing every problem of the seed (schema first; the cross-checks assume its shapes)."""
    problems: list[Problem] = []
    checker = FileChecker(origin, doc if doc is not None else Document(seed, {}), problems)
    if not isinstance(seed, Mapping):
        checker.add("", "the sandbox seed must be a mapping of keys (license, spaces, ...)")
    elif not checker.schema(file_validator(SCHEMA), seed, "", ""):
        _cross_check(seed, checker)
    if problems:
        raise _refused(problems)


def _refused(problems: Iterable[Problem]) -> ConfigError:
    return ConfigError("\n".join(str(p) for p in problems))


def _cross_check(seed: Mapping[str, Any], checker: FileChecker) -> None:
    """Spaces must be declared; connector ids are global across spaces and must not be a preconfigured
    connector's; rule ids are unique."""
    space_ids = tuple(_spaces(_given(seed, "spaces", [])))
    for type_id in _given(seed, "extra_types", {}):
        if catalog.get(type_id) is not None:
            checker.add(f"extra_types.{type_id}", f"extra_types: {type_id!r} is a type of kcr's catalogue already")
    preconfigured = set(_given(seed, "preconfigured", {}))
    for kind in ("connectors", "rules"):
        seen: set[str] = set()
        for i, raw in enumerate(_given(seed, kind, [])):
            where = join_path(kind, i)
            space = raw.get("space", "default")
            if space not in space_ids:
                checker.add(f"{where}.space", f"{where}.space: space {space!r} is not declared in 'spaces' "
                                              f"({', '.join(space_ids)}); add it there")
            id = raw.get("id")
            if not id:
                continue  # a random UUID
            if id in seen:
                why = " (connector ids are global across spaces)" if kind == "connectors" else ""
                checker.add(f"{where}.id", f"{where}.id: {id!r} appears twice{why}")
            elif kind == "connectors" and id in preconfigured:
                checker.add(f"{where}.id", f"{where}.id: {id!r} is already a preconfigured connector id")
            seen.add(id)


def _given(mapping: Mapping[str, Any], key: str, default: Any) -> Any:
    """The value, or `default` when the key is absent or null (the schema's "null means its default")."""
    value = mapping.get(key)
    return default if value is None else value


def _spaces(raw: Iterable[Any]) -> dict[str, str]:
    out = {"default": "Default"}
    for item in raw:
        if isinstance(item, str):
            out.setdefault(item, item)
        else:
            out[item["id"]] = item.get("name") or item["id"]
    return out


def _auth(auth: Mapping[str, Any]) -> tuple[dict[str, str], frozenset[str], dict[str, Grant]]:
    """(passwords by user, accepted keys, grants by principal). A password alone or a list of keys is a
    superuser, as before privileges existed; an entry with `privileges` gets exactly those."""
    users: dict[str, str] = {}
    grants: dict[str, Grant] = {}
    for user, raw in _given(auth, "users", {}).items():
        if isinstance(raw, Mapping):
            users[str(user)] = str(raw["password"])
            grants[f"user:{user}"] = grant_from_seed(raw)
        else:
            users[str(user)] = str(raw)
    keys = _given(auth, "api_keys", [])
    if isinstance(keys, Mapping):
        grants.update({f"apikey:{key}": grant_from_seed(raw) for key, raw in keys.items()})
    return users, frozenset(str(k) for k in keys), grants


def _settings(seed: Mapping[str, Any]) -> Settings:
    auth = seed.get("auth")
    faults = _given(seed, "faults", {})
    users, api_keys, grants = _auth(auth or {})
    return Settings(
        license=_given(seed, "license", "trial"),
        spaces=tuple(_spaces(_given(seed, "spaces", [])).items()),
        users=users,
        api_keys=api_keys,
        auth_enabled=auth is not None,
        grants=grants,
        preconfigured={
            str(pid): Preconfigured(
                id=str(pid),
                name=raw.get("name") or str(pid),
                type=raw["actionTypeId"],
                config=catalog.with_defaults(raw["actionTypeId"], "config", dict(_given(raw, "config", {}))),
                secrets=dict(_given(raw, "secrets", {})),
            )
            for pid, raw in _given(seed, "preconfigured", {}).items()
        },
        enabled_action_types=tuple(_given(seed, "enabled_action_types", ["*"])),
        allowed_hosts=tuple(_given(seed, "allowed_hosts", ["*"])),
        human_readable_ids=bool(_given(seed, "human_readable_ids", False)),
        faults=Faults(
            latency_ms=float(_given(faults, "latency_ms", 0)),
            error_rate=float(_given(faults, "error_rate", 0)),
            rate_limit_per_s=int(_given(faults, "rate_limit_per_s", 0)),
            drop_rate=float(_given(faults, "drop_rate", 0)),
            seed=int(_given(faults, "seed", 1)),
        ),
        kibana_version=kibana9.resolve_version(_given(seed, "kibana_version", DEFAULT_KIBANA_VERSION)),
        response_fields=_given(seed, "response_fields", "current"),
        extra_types={str(t): _extra_type(str(t), raw or {}) for t, raw in _given(seed, "extra_types", {}).items()},
    )


def _extra_type(type_id: str, raw: Mapping[str, Any]) -> catalog.ConnectorType:
    """A type registered beyond kcr's catalogue, with open schemas (the sandbox validates nothing of it)."""
    return catalog.ConnectorType(
        id=type_id, name=_given(raw, "name", type_id), minimum_license=_given(raw, "minimum_license", "basic"),
        supported_feature_ids=tuple(_given(raw, "supported_feature_ids", ["alerting"])), is_system_action=False,
        config_schema={"type": "object"}, secrets_schema={"type": "object"}, allowed_hosts_checked=(), notes=())


def _store(seed: Mapping[str, Any]) -> Store:
    """Seed connectors are stored as given (defaults filled, no validation) so a seed can emulate
    states Kibana reaches by other routes: imports with missing secrets, types since unregistered."""
    store = Store()
    for raw in _given(seed, "connectors", []):
        cid = raw.get("id") or str(uuid.uuid4())
        type_id = raw["connector_type_id"]
        store.connectors[cid] = connector_record(
            cid, raw.get("space", "default"), raw.get("name") or cid, type_id,
            catalog.with_defaults(type_id, "config", dict(_given(raw, "config", {}))),
            dict(_given(raw, "secrets", {})), bool(raw.get("is_missing_secrets")),
        )
    for raw in _given(seed, "rules", []):
        rid = raw.get("id") or str(uuid.uuid4())
        store.rules[rid] = rule_record(rid, raw.get("space", "default"), dict(raw), _SEED_RULES_CREATED_AT)
    return store
