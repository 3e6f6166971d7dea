"""The connector types one repository knows: kcr's bundled schemas (`catalog`) and the repository's own.

Kibana keeps registering types (stack connectors, and the "spec" connectors of kbn-connector-specs), so
kcr accepts a type it does not bundle: validate checks the file format and the secret references and
warns once that Kibana checks the config at apply; plan checks the type against the target Kibana's
GET connector_types. A repository can give a schema for such a type, used by validate like a bundled
one, in either place (the format of kcr's schemas/types/*.json; `id` only in a file):

- kcr.yaml `types: {".abuseipdb": {config: <JSON Schema>, secrets: <JSON Schema>}}`;
- `schemas/types/<name>.json` in the repository.

Precedence and provenance. kcr's bundled schema wins: a repository schema for a type kcr bundles is an
error unless it says `override: true` (then it replaces the bundled config/secrets schemas; Kibana's
per-type rules still apply), so a kcr upgrade that starts bundling a type says so instead of silently
choosing. One type given twice in the repository (kcr.yaml and a file, or two files) is an error.
`kcr types` shows each schema's source: `kcr` (bundled), `kcr.yaml` or the file's path. A repository
schema only checks: it is not read for defaults when planning, which treats every type kcr does not
bundle alike (Kibana's stored config compared as it is). A user schema may only reference itself
(`$ref: "#/..."`): kcr reads no schema from the network or another file.

Misspellings. A type kcr has no schema for is an error, not a warning, when it cannot be a Kibana type
id or is a known id mistyped: no leading '.', a known id in another case or with '-' for '_' (`.Slack`,
`.slack-api`), a known id of 5 or more characters with one character dropped or two adjacent ones
swapped (`.slak`, `.opsgneie`), or any single-character edit of a known id of 9 or more characters
(`.pagerduty2`). Other near misses stay warnings naming the close id, because Kibana has real types one
edit from kcr's (`.gmail`/`.email`, `.jina`/`.jira`, `.slack2`/`.slack`, in kbn-connector-specs);
declaring such a type in kcr.yaml `types:` (an empty entry will do) makes it known."""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import catalog
from reconciler.errors import Problem
from reconciler.file_problems import FileChecker, short
from reconciler.repo_layout import SETTINGS_FILE, Walker
from reconciler.schema_validator import SchemaValidator
from reconciler.yamlload import Document, YamlError, join_path, parse

if TYPE_CHECKING:
    import jsonschema.protocols

    from reconciler.schema_validator import Validator as _Validator

BUNDLED = "kcr"  # the provenance of kcr's own schemas
TYPES_DIR = "schemas/types"
OPEN: Mapping[str, Any] = {"type": "object"}  # the schema of a part a type gives none for: any object
TYPE_ID = re.compile(r"^\.[a-z0-9][a-z0-9_.-]*$")  # settings.schema.json's pattern: Kibana's ids are lowercase


@dataclass(frozen=True)
class Declared:
    """A repository's schema for one type, and where it came from (`kcr.yaml`, or the file's path)."""

    ctype: catalog.ConnectorType
    source: str
    schemed: bool  # gives a config or secrets schema (an empty entry only makes the type known)


class TypeCatalog:
    """The bundled types overlaid with one repository's: what validate checks a connector against."""

    def __init__(self, repository: Mapping[str, Declared] | None = None) -> None:
        self.repository: dict[str, Declared] = dict(repository or {})
        self._validators: dict[tuple[str, str], _Validator] = {}

    def get(self, type_id: str) -> catalog.ConnectorType | None:
        own = self.repository.get(type_id)
        return own.ctype if own is not None else catalog.get(type_id)

    def source(self, type_id: str) -> str | None:
        """Where the type's schema comes from, or None when kcr has none."""
        own = self.repository.get(type_id)
        if own is not None and (own.schemed or catalog.get(type_id) is None):
            return own.source
        return BUNDLED if catalog.get(type_id) is not None else None

    def has_schema(self, type_id: str) -> bool:
        own = self.repository.get(type_id)
        return own.schemed if own is not None else catalog.get(type_id) is not None

    def ids(self) -> list[str]:
        return sorted(set(catalog.types()) | set(self.repository))

    def validator(self, ctype: catalog.ConnectorType, part: str) -> _Validator:
        """The bundled type's validator (built once per process), or the repository schema's (once per load)."""
        if ctype.id not in self.repository:
            return catalog.validator(ctype.id, part)
        key = (ctype.id, part)
        if key not in self._validators:
            schema = ctype.schema(part)
            self._validators[key] = SchemaValidator(schema)
        return self._validators[key]

    def misspelling_of(self, type_id: str) -> str | None:
        """The known id `type_id` mistypes (the module docstring's rule), or None."""
        name = _plain(type_id)
        for known in self.ids():
            plain = _plain(known)
            if name == plain:
                return known
            if len(plain) >= 5 and _dropped_or_swapped(name, plain):
                return known
            if len(plain) >= 9 and _distance(name, plain, 1) <= 1:
                return known
        return None

    def near(self, type_id: str) -> str | None:
        """A known id within two edits, for the warning's hint; None when none is that close."""
        name = _plain(type_id)
        best = min(((_distance(name, _plain(k), 2), k) for k in self.ids() if len(_plain(k)) >= 4), default=None)
        return best[1] if best is not None and best[0] <= 2 else None


BUNDLED_ONLY = TypeCatalog()


def _plain(type_id: str) -> str:
    return type_id.lower().replace("_", "-").removeprefix(".")


def _dropped_or_swapped(name: str, known: str) -> bool:
    if len(name) == len(known) - 1:
        return any(known[:i] + known[i + 1:] == name for i in range(len(known)))
    if len(name) == len(known):
        return any(known[:i] + known[i + 1] + known[i] + known[i + 2:] == name for i in range(len(known) - 1))
    return False


def _distance(a: str, b: str, cap: int) -> int:
    """Edits (insert, delete, substitute, swap adjacent) from a to b, counted up to cap + 1."""
    if abs(len(a) - len(b)) > cap:
        return cap + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return min(prev[-1], cap + 1)


# ---- reading -------------------------------------------------------------------------------------


def load(walker: Walker, *, settings_checked: bool = True) -> TypeCatalog:
    """The repository's types from kcr.yaml `types:` and schemas/types/*.json; problems go to
    `walker.problems`. `settings_checked`: kcr.yaml's schema was checked already (validate, plan), so
    an entry it refused is skipped here rather than reported twice."""
    found: dict[str, Declared] = {}
    _from_settings(walker, found, settings_checked)
    _from_files(walker, found)
    return TypeCatalog(found)


def _from_settings(walker: Walker, found: dict[str, Declared], settings_checked: bool) -> None:
    probe = Walker(walker.root)  # kcr.yaml's own problems (a link out, malformed YAML) are the settings reader's
    hit = probe.settings_file()
    doc = probe.document(*hit) if hit is not None else None
    if doc is None or not isinstance(doc.value, dict) or not isinstance(doc.value.get("types"), dict):
        return
    checker = FileChecker(SETTINGS_FILE, doc, walker.problems)
    for type_id, body in doc.value["types"].items():
        base = join_path("types", type_id)
        if not TYPE_ID.fullmatch(type_id):
            if not settings_checked:
                checker.add(base, f"types: {short(type_id)} is not a connector type id (a '.' then lowercase "
                            "letters, digits, '_', '-' or '.', e.g. .abuseipdb)")
            continue
        if settings_checked and not _entry_validators()[0].is_valid(body):
            continue
        if not settings_checked and checker.schema(_entry_validators()[0], body, base, base):
            continue
        if isinstance(body, dict) and body.get("id", type_id) != type_id:
            checker.add(join_path(base, "id"), f"{base}.id: {short(str(body['id']))} differs from the key "
                        f"{short(type_id)}; remove `id` (the key names the type)")
            continue
        _declare(type_id, body or {}, SETTINGS_FILE, base, checker, found)


def _from_files(walker: Walker, found: dict[str, Declared]) -> None:
    directory = walker.root / TYPES_DIR
    if not os.path.lexists(directory):
        return
    real_dir = walker.fixed(directory, Path.is_dir, f"is not a directory; kcr reads a repository's type schemas "
                            f"from {TYPES_DIR}/<name>.json")
    if real_dir is None or real_dir == (catalog.SCHEMA_DIR / "types").resolve():
        return  # kcr's own checkout (its example repository sits at the root): the bundled schemas themselves
    for entry, real in walker.entries(directory):
        rel = walker.rel(entry)
        if entry.suffix != ".json" or not real.is_file():
            walker.problems.append(Problem(rel, f"kcr reads only *.json files in {TYPES_DIR}/ (one connector type "
                                           "schema each), so this is not read; rename or move it",
                                           severity="warning"))
            continue
        doc = _json_document(walker, rel, real)
        if doc is None:
            continue
        checker = FileChecker(rel, doc, walker.problems)
        if checker.schema(_entry_validators()[1], doc.value, "", ""):
            continue
        _declare(doc.value["id"], doc.value, rel, "", checker, found)


def _json_document(walker: Walker, rel: str, real: Path) -> Document | None:
    """The file's JSON value with positions for its problems (read as YAML, of which JSON is a subset,
    tabs read as spaces); a JSON syntax error names its line, a duplicate key both."""
    try:
        with real.open("rb") as fh:
            data = fh.read(1024 * 1024 + 1)
        value = json.loads(data)
    except OSError as exc:
        walker.problems.append(Problem(rel, f"cannot read file: {exc.strerror or exc}"))
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line, column = (exc.lineno, exc.colno) if isinstance(exc, json.JSONDecodeError) else (None, None)
        walker.problems.append(Problem(rel, f"not valid JSON: {getattr(exc, 'msg', exc)}", line, column))
        return None
    try:
        return parse(data.replace(b"\t", b" "), rel)
    except YamlError as exc:
        duplicates = [p for p in exc.problems if "duplicate key" in p.message]
        walker.problems.extend(duplicates)
        return None if duplicates else Document(value, {})


def _declare(type_id: str, body: Mapping[str, Any], source: str, base: str, checker: FileChecker,
             found: dict[str, Declared]) -> None:
    """Check one repository schema against the precedence rules and JSON Schema itself, then keep it."""
    where = checker.where(base)
    at = f"{source}:{where.line}" if where is not None and where.line else source
    if type_id in found:
        checker.add(base, f"type {type_id} already has a schema in {found[type_id].source}; keep one of the two")
        return
    bundled = catalog.get(type_id)
    if bundled is not None and body.get("override") is not True:
        checker.add(base, f"kcr bundles a schema for {type_id}; a repository schema replaces it only with "
                    "`override: true` (add it to use yours, or remove this one to use kcr's)")
        return
    bad = False
    for part in ("config", "secrets"):
        schema = body.get(part)
        if isinstance(schema, Mapping):
            for path, message in _schema_problems(schema):
                checker.add(_under(join_path(base, part), path), f"{part} schema of {type_id}: {message}")
                bad = True
    if bad:
        return
    given = {part: body[part] for part in ("config", "secrets") if isinstance(body.get(part), Mapping)}
    found[type_id] = Declared(catalog.ConnectorType(
        id=type_id,
        name=str(body.get("name") or (bundled.name if bundled else type_id)),
        minimum_license=str(body.get("minimum_license") or (bundled.minimum_license if bundled else "")),
        supported_feature_ids=tuple(body.get("supported_feature_ids")
                                    or (bundled.supported_feature_ids if bundled else ())),
        is_system_action=bool(body.get("is_system_action", bundled.is_system_action if bundled else False)),
        config_schema=given.get("config") or (bundled.config_schema if bundled else OPEN),
        secrets_schema=given.get("secrets") or (bundled.secrets_schema if bundled else OPEN),
        allowed_hosts_checked=bundled.allowed_hosts_checked if bundled else (),
        notes=tuple(body.get("notes") or ()),
        family=bundled.family if bundled else type_id,
        credential_shapes=bundled.credential_shapes if bundled else (),
    ), at, bool(given))


def _under(base: str, parts: tuple[str | int, ...]) -> str:
    for part in parts:
        base = join_path(base, part)
    return base


def _validator_class(schema: Mapping[str, Any]) -> type[jsonschema.protocols.Validator]:
    import jsonschema  # a repository's own schema is checked as a JSON Schema: only jsonschema can say

    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)


@cache
def _known_dialects() -> frozenset[str]:
    import jsonschema

    drafts = (jsonschema.Draft3Validator, jsonschema.Draft4Validator, jsonschema.Draft6Validator,
              jsonschema.Draft7Validator, jsonschema.Draft201909Validator, jsonschema.Draft202012Validator)
    return frozenset(str(d.META_SCHEMA.get("$id", d.META_SCHEMA.get("id", ""))).rstrip("#") for d in drafts)


def _schema_problems(schema: Mapping[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """What makes `schema` unusable as a JSON Schema, each with its path inside it."""
    unusable = False
    for path, ref in _refs(schema, ()):
        if not ref.startswith("#"):
            yield path, (f"{short(ref)} is not a local reference; kcr reads no schema from the network or another "
                         "file: write `#/$defs/...` and put the definition in this schema")
        elif not _points_into(schema, ref):
            yield path, f"{short(ref)} points at nothing in this schema; write `#/$defs/<name>` of a definition here"
        else:
            continue
        unusable = True
    if unusable:
        return
    if "$schema" in schema and str(schema["$schema"]).rstrip("#") not in _known_dialects():
        yield ("$schema",), (f"unknown $schema {short(str(schema['$schema']))}; use "
                             "https://json-schema.org/draft/2020-12/schema or leave it out")
        return
    from jsonschema import SchemaError

    cls = _validator_class(schema)
    try:
        cls.check_schema(dict(schema))
    except SchemaError as exc:
        yield tuple(exc.path), f"not a valid JSON Schema: {exc.message[:300]}"
        return
    try:
        cls(schema).is_valid({})
    except Exception as exc:  # a reference that resolves nowhere, a bad pattern: said, not raised
        yield (), f"cannot be used as a JSON Schema: {str(exc).splitlines()[0][:300]}"


def _refs(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, Mapping):
        for key, sub in value.items():
            if key in ("$ref", "$dynamicRef", "$recursiveRef") and isinstance(sub, str):
                yield (*path, key), sub
            else:
                yield from _refs(sub, (*path, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _refs(sub, (*path, i))


def _points_into(schema: Mapping[str, Any], ref: str) -> bool:
    """`#` or a JSON Pointer `#/...` that names a part of `schema` (anchors are not followed: a reference
    that could fail while a connector is checked must fail here)."""
    if ref == "#":
        return True
    if not ref.startswith("#/"):
        return False
    node: Any = schema
    for raw in ref[2:].split("/"):
        step = urllib.parse.unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and step in node:
            node = node[step]
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            return False
    return True


@cache
def _entry_validators() -> tuple[_Validator, _Validator]:
    """kcr.yaml's `types:` entry and a schemas/types/ file, both from settings.schema.json's $defs."""
    settings = json.loads((catalog.SCHEMA_DIR / "settings.schema.json").read_text(encoding="utf-8"))

    def one(name: str) -> _Validator:
        return SchemaValidator({"$defs": settings["$defs"], "$ref": f"#/$defs/{name}"})

    return one("connectorType"), one("connectorTypeFile")
