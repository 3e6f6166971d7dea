"""`kcr import ID --space S [--into FILE]`: adopt one live connector. It is appended to a connector
file of connectors/S/ (created when missing), in `kcr export`'s form (reconciler/export.py: its UUID
kept as `id`, config without schema defaults, each secret a `${env:..}` placeholder), so the next
plan shows neither a create nor a delete for it.

The file is edited as text, never re-dumped: its comments and layout stay as they were, and the item
is inserted after the last one of its `connectors:` list. Nothing is written unless the whole
repository, with the new file in place of the old, validates (checked on a scratch copy of kcr.yaml,
schemas/ and connectors/), and the edited file reads as the old list plus exactly the new item.

Refused, before anything is written: an id the repository already declares (in any environment), a
preconfigured connector or system action (kcr never manages them), a non-UUID id without
`id_mode: verbatim` (kcr would derive another id from it), a target outside connectors/S/ or that is
not a kcr connector file. When kcr.yaml declares environments, the item gets `environments: [ENV]`,
the environment whose Kibana it was read from: the others never had it, and their plans should not
start creating it."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import yaml

from reconciler.desired import FANOUT_DIR, load
from reconciler.errors import ConfigError, Problem, ValidationError
from reconciler.export import connector_entry, dump_yaml, env_word, variable_names
from reconciler.files import write_atomic
from reconciler.model import SPACE_ID_PATTERN, UUID_PATTERN, DesiredState, LiveConnector
from reconciler.references import ReferenceSyntaxError, references_in
from reconciler.repo_layout import CONNECTOR_SUFFIXES, SETTINGS_FILE, SPACE_FILES
from reconciler.yamlload import YamlError, parse

DEFAULT_FILE = "imported.yaml"
COPIED = (SETTINGS_FILE, "schemas", "connectors")  # what loading a repository reads
_UUID = re.compile(UUID_PATTERN)
_SPACE = re.compile(SPACE_ID_PATTERN)


class ImportClient(Protocol):
    def list_spaces(self) -> list[str]: ...

    def list_connectors(self, space: str) -> list[LiveConnector]: ...


@dataclass(frozen=True)
class ImportResult:
    file: str  # relative to the repository
    created: bool
    connector: LiveConnector
    variables: tuple[str, ...]  # what the new item's secrets read: to be set before `kcr plan`
    environment: str | None  # the `environments:` the item was given, if any


def target_file(space: str, into: Path | None) -> PurePosixPath:
    """connectors/S/FILE, relative to the repository: `--into` must name a connector file directly in
    the space's directory (the only place kcr reads the space's connectors from)."""
    if not _SPACE.fullmatch(space) or space == FANOUT_DIR:
        hint = f" (connectors/{FANOUT_DIR}/ holds connectors copied into several spaces)" if space == FANOUT_DIR else ""
        raise ConfigError(f"--space {space!r} is not a space id (lowercase letters, digits, '_' and '-'){hint}")
    expected = PurePosixPath("connectors", space)
    if into is None:
        return expected / DEFAULT_FILE
    if into.is_absolute() or ".." in into.parts:
        raise ConfigError(f"--into {into}: give a path relative to the repository, e.g. {expected / DEFAULT_FILE}")
    rel = PurePosixPath(*into.parts)
    if rel.parent != expected:
        raise ConfigError(f"--into {into} is outside {expected}/: kcr reads space {space!r}'s connectors only "
                          f"from files directly in {expected}/")
    if rel.suffix not in CONNECTOR_SUFFIXES or rel.name.startswith("."):
        raise ConfigError(f"--into {into}: kcr reads only *.yaml and *.yml files (not hidden ones); name it "
                          f"e.g. {expected / DEFAULT_FILE}")
    if rel.name in SPACE_FILES:
        raise ConfigError(f"--into {into} is the space's settings file, not a connector file; name another file")
    return rel


def _existing(path: Path, rel: str) -> str | None:
    """The file's text, or None when it does not exist; refused when it is not a kcr connector file."""
    if path.is_symlink():
        raise ConfigError(f"{rel} is a symbolic link: import into the file it points at, inside the repository")
    if not path.exists():
        return None
    if not path.is_file():
        raise ConfigError(f"{rel} is not a regular file")
    data = path.read_bytes()
    try:
        doc = parse(data, rel)
    except YamlError as exc:
        raise ConfigError(f"{rel} is not a kcr connector file (it does not parse: {exc.problems[0].message}); "
                          "choose another --into") from None
    if not isinstance(doc.value, dict) or not isinstance(doc.value.get("connectors"), list):
        raise ConfigError(f"{rel} is not a kcr connector file (no `connectors:` list at its top); choose "
                          "another --into")
    return data.decode("utf-8-sig")


def _declared(states: Mapping[str | None, DesiredState]) -> tuple[dict[str, str], set[str]]:
    """Kibana id -> where it is declared, in any environment; and every variable the secrets read."""
    ids: dict[str, str] = {}
    variables: set[str] = set()
    for state in states.values():
        for space in state.spaces.values():
            for spec in space.connectors:
                where = spec.location.file if spec.location else f"connectors/{spec.space}"
                ids.setdefault(spec.id, f"{where} (space {spec.space}, id {spec.key})")
                with contextlib.suppress(ReferenceSyntaxError):  # validation said so already
                    variables.update(n for r in references_in(dict(spec.secrets)) if (n := r.env_name))
    return ids, variables


def _stem(space: str, conn: LiveConnector, keys: Sequence[str], taken: set[str]) -> str:
    """export's variable stem, made longer while a name it gives is one the repository already reads
    (two imports of connectors named alike must never share a secret)."""
    stem = variable_names(space, [conn])[conn.id]
    for candidate in (stem, f"{stem}_{env_word(conn.id[:8]) or 'X'}", f"{stem}_{env_word(conn.id)}"):
        if not any(f"{candidate}_{env_word(k) or 'SECRET'}" in taken for k in keys) and candidate not in taken:
            return candidate
    raise ConfigError(f"every variable name for connector {conn.id} is already read by the repository; "
                      "import it with --into a new file and rename its variables by hand")


def item_text(entry: Mapping[str, Any], indent: int, comment: str) -> str:
    """One list item as YAML text at `indent`, under a comment line."""
    body = dump_yaml([dict(entry)])
    pad = " " * indent
    return f"{pad}# {comment}\n" + "".join(f"{pad}{line}\n" if line else "\n" for line in body.splitlines())


def _content_end(node: yaml.Node) -> int:
    """Where a node's own text ends: a block collection's end mark lies past the comments after it."""
    while isinstance(node, yaml.SequenceNode | yaml.MappingNode) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(last, tuple) else last
    return int(node.end_mark.index)


def appended(text: str, entry: Mapping[str, Any], comment: str, rel: str) -> str:
    """`text` (a connector file) with `entry` added as the last item of its `connectors:` list."""
    newline = "\r\n" if "\r\n" in text else "\n"
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    value = next((v for k, v in root.value if k.value == "connectors"), None) if root is not None else None
    if not isinstance(value, yaml.SequenceNode):
        raise ConfigError(f"{rel} has no `connectors:` list to append to")
    if value.flow_style and value.value:
        raise ConfigError(f"{rel} writes `connectors:` as a [...] list on one line: rewrite it as a block list "
                          "(one `- id: ...` per item) and import again")
    if value.flow_style:  # `connectors: []`: the brackets go, the item follows on the next lines
        text = text[:value.start_mark.index] + text[value.end_mark.index:]
        at, indent = value.start_mark.index, 2
    else:
        at, indent = _content_end(value), value.start_mark.column
    line_end = text.find("\n", at)
    if at > 0 and text[at - 1] == "\n":
        line_end = at - 1  # the node ended with its line (a block scalar)
    head = text if line_end < 0 else text[:line_end + 1]
    tail = "" if line_end < 0 else text[line_end + 1:]
    if head and not head.endswith("\n"):
        head += newline
    item = item_text(entry, indent, comment).replace("\n", newline)
    return head + item + tail


def _same_plus_one(old: str, new: str, entry: Mapping[str, Any]) -> bool:
    before, after = yaml.safe_load(old) or {}, yaml.safe_load(new) or {}
    expected = {**before, "connectors": [*(before.get("connectors") or []), dict(entry)]}
    return bool(after == expected)


def _validate_result(root: Path, rel: str, text: str, env: Mapping[str, str]) -> None:
    """Load a scratch copy of what loading reads, the new file in place: its errors refuse the import."""
    with tempfile.TemporaryDirectory(prefix="kcr-import-") as scratch:
        copy = Path(scratch)
        for name in COPIED:
            source = root / name
            if source.is_dir():
                shutil.copytree(source, copy / name)
            elif source.is_file():
                shutil.copyfile(source, copy / name)
        target = copy / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        result = load(copy, env=env, offline=True)
    if result.errors:
        raise ValidationError([Problem(p.file, f"after the import: {p.message}", p.line, p.column, p.path)
                               for p in result.errors])


def find_live(client: ImportClient, space: str, connector_id: str) -> LiveConnector:
    known = client.list_spaces()
    if space not in known:
        raise ConfigError(f"space {space!r} not found in Kibana; known spaces: {', '.join(sorted(known)) or '(none)'}")
    conn = next((c for c in client.list_connectors(space) if c.id == connector_id), None)
    if conn is None:
        raise ConfigError(f"Kibana has no connector {connector_id!r} in space {space!r}; `kcr plan --space {space}` "
                          "lists the connectors the repository does not declare as unmanaged")
    if conn.is_preconfigured or conn.is_system_action:
        kind = "a preconfigured connector (kibana.yml)" if conn.is_preconfigured else "a system action"
        raise ConfigError(f"connector {connector_id!r} is {kind}: Kibana does not let it be managed through "
                          "the API, and kcr never manages it")
    return conn


def import_connector(client: ImportClient, root: Path, space: str, connector_id: str, *, into: Path | None,
                     env: Mapping[str, str], environment: str | None) -> ImportResult:
    """Read the connector, check everything, then append it; raises ConfigError/ValidationError with
    nothing written."""
    rel_path = target_file(space, into)
    rel = rel_path.as_posix()
    path = root / rel
    old = _existing(path, rel)
    before = load(root, env=env, offline=True)
    if before.errors:
        raise ValidationError([*before.errors, Problem(rel, "kcr import adds to a repository that validates: fix "
                                                       "the problems above first (`kcr validate`)")])
    ids, taken = _declared(before.states)
    if connector_id in ids:
        raise ConfigError(f"connector {connector_id} is already declared in {ids[connector_id]}")
    conn = find_live(client, space, connector_id)
    settings = next(iter(before.states.values())).settings if before.states else None
    chosen = settings.environments.get(environment or "") if settings is not None else None
    if chosen is not None and chosen.spaces is not None and space not in chosen.spaces:
        raise ConfigError(f"space {space!r} is not one of environment {environment!r}'s spaces "
                          f"(environments.{environment}.spaces in kcr.yaml): its plans would never see the import")
    if not _UUID.fullmatch(conn.id) and (settings is None or settings.id_mode != "verbatim"):
        raise ConfigError(f"connector id {conn.id!r} is not a UUID: kcr would derive another Kibana id from it as a "
                          "key; set `id_mode: verbatim` in kcr.yaml to use ids as they are, then import again")
    probe, _ = connector_entry(space, conn, "X")
    keys = list((probe.get("secrets") or {}).keys())
    entry, variables = connector_entry(space, conn, _stem(space, conn, keys, taken))
    tagged = environment if settings is not None and settings.environments else None
    if tagged is not None:
        entry["environments"] = [tagged]
    where = f"space {space}" + (f" of environment {tagged}" if tagged else "")
    comment = (f"Imported by `kcr import` from {where}" +
               (f"; set {', '.join(variables)} before `kcr plan`" if variables else ""))
    if old is None:
        header = ("# Connectors adopted from Kibana by `kcr import`. Secrets are references: set each variable\n"
                  "# (or replace the reference with ${vault:...} / ${file:...}) before `kcr plan`.\n")
        new = header + "connectors:\n" + item_text(entry, 2, comment)
    else:
        new = appended(old, entry, comment, rel)
        if not _same_plus_one(old, new, entry):
            raise ConfigError(f"{rel} could not be appended to without rewriting it; add this item by hand:\n"
                              + item_text(entry, 2, comment))
    _validate_result(root, rel, new, env)
    mode = path.stat().st_mode & 0o777 if old is not None else 0o644  # write_atomic's temporary file is 0600
    try:
        write_atomic(path, new)
        os.chmod(path, mode)
    except OSError as exc:
        raise ConfigError(f"{rel}: cannot be written ({exc.strerror or type(exc).__name__})") from None
    return ImportResult(rel, old is None, conn, tuple(variables), tagged)
