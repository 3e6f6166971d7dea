"""Writes the live connectors of some spaces as a kcr repository, so an existing Kibana can be adopted:
export, commit, and the next plan shows no create and no delete.

Layout: one file per space, `<out>/<space>/connectors.yaml` (connectors sorted by name, then id),
plus `<out>/<space>/_space.yaml` with `prune: false`, so that adopting never deletes anything.

- `id` is the Kibana id as it is (a UUID is used verbatim by kcr). An id that is not a UUID (a newer
  Kibana's human-readable ids) is kept too, with a warning: the repository then needs
  `id_mode: verbatim` in kcr.yaml.
- Preconfigured connectors and system actions are skipped: kcr never manages them.
- `config` drops a key whose value equals the type's schema `default` (files stay short), and only
  when the normaliser still sees no difference from the live connector. Keys Kibana decides itself
  (release defaults, computed defaults) are always kept.
- Secrets are never read (Kibana never returns them): each becomes `${env:KCR_<SPACE>_<NAME>_<KEY>}`,
  upper snake case with every other character turned into `_`. When two connectors of a space would
  get the same variable, each of them gets its id's first 8 characters appended (the whole id if that
  is not enough). Which secret keys are written (`secret_keys_for`):
    1. the keys the type's secrets schema requires;
    2. else, for types whose credentials depend on the config (webhooks, ServiceNow, email, xMatters,
       MCP), the shape that config selects (`x-kcr-credential-shapes` in the type's schema file);
    3. else the required keys of the first branch of the schema's anyOf/oneOf;
    4. else none.
  Optional secrets (e.g. a webhook's `secretHeaders`) are not guessed: add them by hand. A key the
  schema marks `x-kcr-plain` (a selector kept among the secrets, no secret) is written as a literal: its
  `const`, else the first value of its `enum`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from reconciler import catalog, normalize
from reconciler.errors import ConfigError
from reconciler.files import write_atomic
from reconciler.model import UUID_PATTERN, ConnectorSpec, LiveConnector

CONNECTORS_FILE = "connectors.yaml"
SPACE_FILE = "_space.yaml"
_UUID = re.compile(UUID_PATTERN)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_WORD = re.compile(r"[^A-Z0-9]+")



class ExportClient(Protocol):
    def list_spaces(self) -> list[str]: ...

    def list_connectors(self, space: str) -> list[LiveConnector]: ...


@dataclass(frozen=True)
class ExportResult:
    files: tuple[Path, ...]
    variables: tuple[str, ...]  # environment variables the exported references need, sorted
    connectors: int
    skipped: tuple[str, ...] = ()  # "space/id (preconfigured)" etc.
    warnings: tuple[str, ...] = ()


# --- pure parts -------------------------------------------------------------------------------


def _branch_required(schema: Mapping[str, Any]) -> tuple[str, ...]:
    keys = list(schema.get("required") or ())
    for sub in schema.get("allOf") or ():
        if isinstance(sub, Mapping):
            keys.extend(k for k in _branch_required(sub) if k not in keys)
    return tuple(keys)


def secret_keys_for(type_id: str, config: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The secret keys an exported connector of this type and config gets references for."""
    ct = catalog.get(type_id)
    if ct is None:
        return ()
    schema = ct.secrets_schema
    if schema.get("required"):
        return tuple(schema["required"])
    filled = catalog.with_defaults(type_id, "config", config or {})
    for shape in ct.credential_shapes:
        if all(filled.get(k) == v for k, v in shape.when.items()):
            return shape.secrets
    for union in ("anyOf", "oneOf"):
        branches = [b for b in schema.get(union) or () if isinstance(b, Mapping)]
        if branches:
            return _branch_required(branches[0])
    return ()


def env_word(text: str) -> str:
    """`Production Slack` -> `PRODUCTION_SLACK`, `webhookUrl` -> `WEBHOOK_URL`, `é!` -> ``."""
    return _NOT_WORD.sub("_", _CAMEL.sub("_", text).upper()).strip("_")


def variable_names(space: str, connectors: Sequence[LiveConnector]) -> dict[str, str]:
    """Connector id -> the variable stem `KCR_<SPACE>_<NAME>`, unique within the space."""
    space_word = env_word(space) or "SPACE"
    stems = {c.id: f"KCR_{space_word}_{env_word(c.name) or 'CONNECTOR'}" for c in connectors}
    groups: dict[str, list[str]] = defaultdict(list)
    for cid, stem in stems.items():
        groups[stem].append(cid)
    out: dict[str, str] = {}
    for stem, ids in groups.items():
        if len(ids) == 1:
            out[ids[0]] = stem
            continue
        short = {cid: f"{stem}_{env_word(cid[:8]) or 'X'}" for cid in ids}
        unique = len(set(short.values())) == len(ids) and not set(short.values()) & set(stems.values())
        for cid in ids:
            out[cid] = short[cid] if unique else f"{stem}_{env_word(cid)}"
    return out


def _spec(space: str, conn: LiveConnector, config: Mapping[str, Any]) -> ConnectorSpec:
    return ConnectorSpec(space=space, key=conn.id, id=conn.id, name=conn.name, type=conn.type,
                         config=config, secrets={})


def export_config(space: str, conn: LiveConnector) -> dict[str, Any]:
    """The live config without keys equal to their schema default, checked against the normaliser."""
    config = dict(conn.config or {})
    ct = catalog.get(conn.type)
    if ct is None:
        return config
    defaults = catalog.with_defaults(conn.type, "config", {})
    # A key a connector rule reads as sent must stay, even when it equals the stored default.
    keep = normalize.kibana_decides(conn.type) | frozenset(ct.read_as_sent)
    for key in sorted(config):
        if key in keep or key not in defaults:
            continue
        if not normalize.same(normalize.canonical(config[key]), normalize.canonical(defaults[key])):
            continue
        trial = {k: v for k, v in config.items() if k != key}
        if normalize.config_equal(_spec(space, conn, trial), conn):
            config = trial
    return config


def _plain_values(type_id: str) -> dict[str, str]:
    """The literal each plain secrets key (`x-kcr-plain`, a selector such as a spec connector's
    `authType`) is exported with: its `const`, else the first of its `enum`, the value that goes with
    the credential keys exported beside it. Kibana never returns it, so this is the schema's choice."""
    ct = catalog.get(type_id)
    out: dict[str, str] = {}
    for key, prop in (ct.plain_secrets() if ct else {}).items():
        values = [prop["const"]] if "const" in prop else list(prop.get("enum") or ())
        if values and isinstance(values[0], str):
            out[key] = values[0]
    return out


def connector_entry(space: str, conn: LiveConnector, stem: str) -> tuple[dict[str, Any], list[str]]:
    entry: dict[str, Any] = {"id": conn.id, "name": conn.name, "type": conn.type}
    config = export_config(space, conn)
    if config:
        entry["config"] = config
    variables: list[str] = []
    keys = secret_keys_for(conn.type, conn.config)
    if keys:
        secrets: dict[str, str] = {}
        plain = _plain_values(conn.type)
        for key in keys:
            if key in plain:
                secrets[key] = plain[key]
                continue
            name = f"{stem}_{env_word(key) or 'SECRET'}"
            secrets[key] = f"${{env:{name}}}"
            variables.append(name)
        entry["secrets"] = secrets
    return entry, variables


class _Dumper(yaml.SafeDumper):
    """Safe, and never writes anchors/aliases: a shared value is written out each time."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _sorted_keys(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_sorted_keys(v) for v in value]
    return value


def render_space(space: str, connectors: Sequence[LiveConnector]) -> tuple[str, list[str]]:
    """The connectors.yaml text of one space and the variables it references."""
    ordered = sorted(connectors, key=lambda c: (c.name, c.id))
    stems = variable_names(space, ordered)
    entries: list[dict[str, Any]] = []
    variables: list[str] = []
    for conn in ordered:
        entry, names = connector_entry(space, conn, stems[conn.id])
        for part in ("config", "secrets"):
            if part in entry:
                entry[part] = _sorted_keys(entry[part])
        entries.append(entry)
        variables.extend(names)
    header = (
        f"# Exported by `kcr export` from space {space}. Secrets are references: set each variable\n"
        "# (or replace the reference with ${vault:...} / ${file:...}) before `kcr plan`.\n"
    )
    return header + dump_yaml({"connectors": entries}), variables


# --- I/O --------------------------------------------------------------------------------------


def export_spaces(
    client: ExportClient, spaces: Sequence[str], out_dir: Path, *, overwrite: bool = False
) -> ExportResult:
    """Read each space (one list request each) and write its files. Refuses to overwrite existing
    files unless `overwrite`, and checks every space exists first, since Kibana answers an unknown
    space with an empty list."""
    wanted = list(dict.fromkeys(spaces))
    if not wanted:
        raise ConfigError("kcr export needs at least one --space")
    known = set(client.list_spaces())
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise ConfigError(
            f"space{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} not found in Kibana; "
            f"known spaces: {', '.join(sorted(known)) or '(none)'}"
        )
    if not overwrite:
        existing = [
            str(out_dir / s / name) for s in wanted for name in (CONNECTORS_FILE, SPACE_FILE)
            if _exists(out_dir / s / name)
        ]
        if existing:
            raise ConfigError(
                f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                "export into an empty directory or pass --overwrite"
            )
    files: list[Path] = []
    variables: list[str] = []
    skipped: list[str] = []
    warnings: list[str] = []
    count = 0
    for space in wanted:
        managed: list[LiveConnector] = []
        for conn in client.list_connectors(space):
            if conn.is_preconfigured or conn.is_system_action:
                kind = "preconfigured" if conn.is_preconfigured else "system action"
                skipped.append(f"{space}/{conn.id} ({kind})")
                continue
            if not _UUID.fullmatch(conn.id):
                warnings.append(
                    f"{space}/{conn.id}: not a UUID; set `id_mode: verbatim` in kcr.yaml so kcr uses it as it is"
                )
            managed.append(conn)
        text, names = render_space(space, managed)
        target = out_dir / space / CONNECTORS_FILE
        _write(target, text)
        space_file = out_dir / space / SPACE_FILE
        _write(space_file, "# Adopted connectors: nothing undeclared is deleted until this says true.\n"
               + dump_yaml({"prune": False}))
        files.extend((target, space_file))
        variables.extend(names)
        count += len(managed)
    return ExportResult(
        files=tuple(files),
        variables=tuple(sorted(set(variables))),
        connectors=count,
        skipped=tuple(skipped),
        warnings=tuple(warnings),
    )


def _write(path: Path, text: str) -> None:
    """An unwritable --out-dir (a file in the way, no permission, a full disk) is the user's to fix:
    say which path and why, not `internal error (NotADirectoryError)`."""
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be written ({exc.strerror or type(exc).__name__}); "
                          "choose another --out-dir or fix its permissions") from None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError as exc:  # e.g. a directory on the way that may not be searched
        raise ConfigError(f"{path}: cannot be checked ({exc.strerror or type(exc).__name__}); "
                          "choose another --out-dir or fix its permissions") from None
