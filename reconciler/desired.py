"""The repository's files -> DesiredState, with every problem found at once.

Layout: `connectors/<space>/*.yaml|*.yml` (each `{connectors: [...]}`), optional
`connectors/<space>/_space.yaml` (SpaceSettings) and `kcr.yaml` at the root (Settings). Any other entry
of connectors/ or of a space directory (bar .gitkeep/.keep) is an error, never skipped: a file kcr did
not read is a connector silently left out, and in a pruning space a delete. Symbolic links are followed
only while they stay inside the repository (and out of .git/.kcr); others are refused unread. Everything is
checked offline: the file formats (schemas/*.schema.json), ids, duplicates, connector types with a
near-miss suggestion, each type's config and secrets schemas (a secret reference stands in as a
placeholder), blank strings as Kibana refuses them, plaintext secrets, reference syntax and the
exfiltration guard. Only `check_secrets` (opt-in) touches the environment, files and Vault.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from reconciler import catalog
from reconciler.errors import Problem, ValidationError
from reconciler.model import (
    KEY_PATTERN,
    SPACE_ID_PATTERN,
    UUID_PATTERN,
    ConnectorSpec,
    DesiredSpace,
    DesiredState,
    Location,
    Settings,
    SpaceSettings,
    derive_connector_id,
)
from reconciler.secrets import _PRIVATE_DIRS as PRIVATE_DIRS
from reconciler.secrets import (
    DEFAULT_JWT_VAR,
    JWT_VAR_SETTING,
    ReferenceSyntaxError,
    SecretResolver,
    guard_refusal,
    parse_template,
)
from reconciler.yamlload import Document, YamlError, join_path, load_file

SETTINGS_FILE = "kcr.yaml"
SPACE_FILES = ("_space.yaml", "_space.yml")
CONNECTOR_SUFFIXES = (".yaml", ".yml")
PLACEHOLDERS = frozenset({".gitkeep", ".keep"})  # empty files git users add to keep a directory: never read
OTHER_SETTINGS_FILES = ("kcr.yml",)  # a name kcr would not read, so its settings would silently not apply
READS_ONLY = "kcr reads only *.yaml and *.yml files directly in the space directory"
PLACEHOLDER = "<reference>"  # what a secret looks like to its type's schema during offline validation

_UUID = re.compile(UUID_PATTERN)
_KEY = re.compile(KEY_PATTERN)
_SPACE = re.compile(SPACE_ID_PATTERN)
_INDEX = re.compile(r"^connectors\[(\d+)\]")
_REQUIRED = re.compile(r"^'(.+)' is a required property$")
_OWN_CHECKS = re.compile(r"^connectors\[\d+\](\.id$|\.name$|\.secrets[.\[])")
_SECRET_FIELD = re.compile(r"^connectors\[\d+\]\.secrets($|[.\[])")


@dataclass(frozen=True)
class LoadResult:
    """What loading found: the state (None when any error was found), every problem, and counts."""

    state: DesiredState | None
    problems: tuple[Problem, ...]
    files: int = 0
    connectors: int = 0
    spaces: int = 0

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")


@cache
def file_validator(name: str) -> jsonschema.protocols.Validator:
    """A validator for one of kcr's own file formats (schemas/<name>), built once per process."""
    schema = json.loads((catalog.SCHEMA_DIR / name).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def _short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


class _FileChecker:
    """Problems of one file, each placed at the nearest known position of its field path."""

    def __init__(self, file: str, doc: Document, problems: list[Problem]) -> None:
        self.file = file
        self.doc = doc
        self.problems = problems

    def where(self, path: str) -> Location | None:
        probe = path
        while True:
            loc = self.doc.locations.get(probe)
            if loc is not None or not probe:
                return loc
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""

    def add(self, path: str, message: str, severity: str = "error") -> None:
        loc = self.where(path)
        self.problems.append(Problem(self.file, message, loc.line if loc else None, loc.column if loc else None,
                                     path or None, severity))

    def schema(self, validator: jsonschema.protocols.Validator, instance: Any, base: str, label: str,
               skip: Callable[[str], bool] | None = None) -> int:
        """Add a problem per schema violation; `label` prefixes field names ("config"). Returns the count."""
        count = 0
        for err in sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
            rel = ""
            for part in err.absolute_path:
                rel = join_path(rel, part)
            missing = _REQUIRED.match(err.message) if err.validator == "required" else None
            field_rel = join_path(rel, missing.group(1)) if missing else rel
            if skip is not None and err.validator not in ("required", "type") and skip(_concat(base, field_rel)):
                continue
            field = _concat(label, field_rel)
            message = _human(err, redact=_SECRET_FIELD.match(_concat(base, rel)) is not None)
            self.add(_concat(base, rel), f"{field}: {message}" if field else message)
            count += 1
        return count


def _concat(base: str, rel: str) -> str:
    if not base or not rel:
        return base or rel
    return base + rel if rel.startswith("[") else f"{base}.{rel}"


def _redacted(value: Any) -> str:
    kind = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list", type(None): "null",
            dict: "a mapping"}.get(type(value))
    return kind or "the value"


def _human(err: jsonschema.ValidationError, redact: bool = False) -> str:
    """jsonschema's message; under `secrets` it quotes the value (a plaintext secret), so it is replaced
    by what kind of value it is."""
    if redact:
        message = err.message.replace(repr(err.instance), _redacted(err.instance))
        if isinstance(err.instance, str) and err.instance in message:
            message = f"{err.validator} check failed for {_redacted(err.instance)}"
        return message if len(message) <= 300 else message[:300] + "..."
    if err.validator in ("anyOf", "oneOf"):
        description = err.schema.get("description") if isinstance(err.schema, Mapping) else None
        if description:
            return f"matches none of the allowed shapes: {description}"
        best = jsonschema.exceptions.best_match(err.context or ())
        detail = f" (closest: {best.message[:200]})" if best is not None else ""
        return f"matches none of the allowed shapes{detail}"
    if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
        return _unknown_keys(err)
    return err.message if len(err.message) <= 300 else err.message[:300] + "..."


def _unknown_keys(err: jsonschema.ValidationError) -> str:
    """`refreshh` → did you mean `refresh`? The schema's own property names are the candidates."""
    import difflib

    schema = err.schema if isinstance(err.schema, Mapping) else {}
    known = sorted(schema.get("properties") or {})
    instance = err.instance if isinstance(err.instance, Mapping) else {}
    unknown = [k for k in instance if k not in known]
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.7)
        parts.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    allowed = f"; known keys: {', '.join(known)}" if known and len(known) <= 12 else ""
    return f"unknown key{'s' if len(parts) != 1 else ''} {', '.join(parts)}{allowed}"


def _blank_strings(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, str):
        if not value.strip():
            yield path
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _blank_strings(v, join_path(path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _blank_strings(v, join_path(path, i))


@dataclass(frozen=True)
class _Declared:
    space: str
    key: str
    id: str
    location: Location | None
    path: str


class _Loader:
    def __init__(self, root: Path, env: Mapping[str, str], allow_plaintext: bool) -> None:
        self.root = root
        self.real_root = root.resolve()
        self.env = env
        self.allow_plaintext = allow_plaintext
        self.problems: list[Problem] = []
        self.files = 0
        self.items = 0
        self.settings = Settings()
        self.declared: list[_Declared] = []  # every connector with a usable id, valid or not

    def rel(self, path: Path) -> str:
        try:
            text = path.relative_to(self.root).as_posix()
        except ValueError:
            text = path.as_posix()
        # A name that is not UTF-8 (undecodable bytes) is shown escaped rather than breaking the output.
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

    def refuse(self, path: Path, message: str) -> None:
        self.problems.append(Problem(self.rel(path), message))

    def real(self, path: Path) -> Path | None:
        """Where `path` really is, or None (with a problem) when kcr must not read it. Links are followed
        only while they stay inside the repository and out of .git/.kcr: a link out of it would carry
        /etc/passwd or a secret file into an error message, and .git/config can hold the clone's token.
        A refused target is never opened; the caller reads the returned path, not the link."""
        link = path.is_symlink()
        try:
            real = path.resolve(strict=True)
        except FileNotFoundError:
            if link:
                self.refuse(path, f"is a symbolic link to {_link_target(path)}, which does not exist (a dangling "
                            "link); fix the link or remove it")
            else:
                self.refuse(path, "disappeared while kcr was reading the repository; run again")
            return None
        except (OSError, RuntimeError) as exc:  # a link loop: RuntimeError before Python 3.13, OSError after
            self.refuse(path, f"cannot be followed ({_reason(exc)}); fix the symbolic link or remove it")
            return None
        if real != self.real_root and not real.is_relative_to(self.real_root):
            self.refuse(path, f"is a symbolic link whose target is outside the repository ({_link_target(path)}); "
                        "kcr refuses to read it: copy the file into the repository or remove the link")
            return None
        try:
            lexical = self.real_root / path.relative_to(self.root)
        except ValueError:
            lexical = real
        if real != lexical and set(real.relative_to(self.real_root).parts) & PRIVATE_DIRS:
            self.refuse(path, f"is a symbolic link into {'/'.join(sorted(PRIVATE_DIRS))} "
                        f"({_link_target(path)}), which kcr never reads (the clone's credentials live there); "
                        "remove the link")
            return None
        return real

    @staticmethod
    def placeholder(path: Path) -> bool:
        """A .gitkeep/.keep regular file: git users add one to keep an empty directory, kcr never reads it."""
        return path.name in PLACEHOLDERS and not path.is_symlink() and path.is_file()

    def document(self, path: Path, real: Path) -> Document | None:
        """`real` is read (what `real()` approved), `path` names it in problems."""
        try:
            return load_file(real, self.rel(path))
        except YamlError as exc:
            self.problems.extend(exc.problems)
            return None

    def settings_file(self) -> tuple[Path, Path] | None:
        """kcr.yaml as (path, real path) when there is one to read; a settings file kcr would not read, or
        one it may not, is a problem, since its settings (id_mode, allow_env) would silently not apply."""
        for name in OTHER_SETTINGS_FILES:
            if os.path.lexists(self.root / name):
                self.refuse(self.root / name, f"kcr reads its settings only from {SETTINGS_FILE}; rename it to "
                            f"{SETTINGS_FILE} (or remove it)")
        path = self.root / SETTINGS_FILE
        if not os.path.lexists(path):
            return None
        real = self.real(path)
        if real is None:
            return None
        if not real.is_file():
            self.refuse(path, "is not a regular file; kcr reads its settings from this name: make it a file")
            return None
        return path, real

    def load_settings(self) -> Settings:
        found = self.settings_file()
        if found is None:
            return Settings(allow_plaintext_secrets=self.allow_plaintext)
        path, real = found
        doc = self.document(path, real)
        if doc is None:
            return Settings(allow_plaintext_secrets=self.allow_plaintext)
        value = {} if doc.value is None else doc.value
        checker = _FileChecker(self.rel(path), doc, self.problems)
        if checker.schema(file_validator("settings.schema.json"), value, "", ""):
            return Settings(allow_plaintext_secrets=self.allow_plaintext)
        vault = value.get("vault") or {}
        return Settings(
            id_mode=value.get("id_mode", "uuid5"),
            vault_mounts=tuple(vault.get("mounts") or ()),
            allow_env=tuple(value.get("allow_env") or ()),
            file_roots=tuple(value.get("file_roots") or ()),
            allow_plaintext_secrets=bool(value.get("allow_plaintext_secrets", False)) or self.allow_plaintext,
        )

    def space_directories(self) -> dict[str, Path] | None:
        """connectors/<space>/ by space id, or None when there is no connectors/ to read. Any other entry
        of connectors/ is a problem: kcr would not read it, and silently leaving files out is how a plan
        comes to delete what they declare."""
        connectors_dir = self.root / "connectors"
        if not os.path.lexists(connectors_dir):
            self.refuse(connectors_dir, f"no connectors/ directory in {self.root}; put each space's files in "
                        "connectors/<space>/")
            return None
        real = self.real(connectors_dir)
        if real is None:
            return None
        if not real.is_dir():
            self.refuse(connectors_dir, "is not a directory; put each space's files in connectors/<space>/")
            return None
        space_dirs: dict[str, Path] = {}
        for entry in sorted(connectors_dir.iterdir()):
            if self.placeholder(entry):
                continue
            real = self.real(entry)
            if real is None:
                continue
            if real.is_dir() and _SPACE.fullmatch(entry.name):
                space_dirs[entry.name] = entry
            elif real.is_dir():
                self.refuse(entry, f"space directory {_short(entry.name)} is not a Kibana space id (lowercase "
                            "letters, digits, '-' and '_'); rename it to the space id or move it out of connectors/")
            elif real.is_file() and entry.suffix in CONNECTOR_SUFFIXES:
                self.refuse(entry, "connector files belong in a space directory: connectors/<space>/<file>.yaml; "
                            "move it there")
            else:
                self.refuse(entry, "kcr reads only space directories (connectors/<space>/, named by the Kibana "
                            "space id) directly in connectors/, so this would not be read; move it out of "
                            "connectors/")
        return space_dirs

    def space_entries(self, directory: Path) -> tuple[tuple[Path, Path] | None, list[tuple[Path, Path]]]:
        """The space's settings file and connector files, each as (path, real path). Every other entry
        is a problem: a skipped file is a connector silently left out of the plan, and with `prune: true`
        a delete of it."""
        settings: tuple[Path, Path] | None = None
        files: list[tuple[Path, Path]] = []
        for entry in sorted(directory.iterdir()):
            if self.placeholder(entry):
                continue
            real = self.real(entry)
            if real is None:
                continue
            unread = _unread_reason(entry, real)
            if unread is not None:
                self.refuse(entry, unread)
            elif entry.name not in SPACE_FILES:
                files.append((entry, real))
            elif settings is not None:
                self.refuse(entry, f"a second space settings file beside {settings[0].name}; kcr reads one: "
                            "merge them into _space.yaml and remove the other")
            else:
                settings = (entry, real)
        return settings, files

    def load_space_settings(self, found: tuple[Path, Path] | None) -> SpaceSettings:
        if found is None:
            return SpaceSettings()
        path, real = found
        doc = self.document(path, real)
        if doc is None:
            return SpaceSettings()
        value = {} if doc.value is None else doc.value
        checker = _FileChecker(self.rel(path), doc, self.problems)
        if checker.schema(file_validator("space-settings.schema.json"), value, "", ""):
            return SpaceSettings()
        return SpaceSettings(prune=bool(value.get("prune", False)), ignore=tuple(value.get("ignore") or ()))

    def load_file(self, space: str, path: Path, real: Path) -> list[ConnectorSpec]:
        self.files += 1
        doc = self.document(path, real)
        if doc is None:
            return []
        file = self.rel(path)
        checker = _FileChecker(file, doc, self.problems)
        value = doc.value
        if value is None:
            checker.add("", "the file is empty; it should hold `connectors: [...]`")
            return []
        # The id pattern and secret values get kcr's own, clearer messages below.
        checker.schema(file_validator("connector-file.schema.json"), value, "", "",
                       skip=lambda p: _OWN_CHECKS.match(p) is not None)
        if not isinstance(value, dict) or not isinstance(value.get("connectors"), list):
            return []
        per_item = self._locations_by_item(doc)
        self.items += len(value["connectors"])
        out = []
        for i, item in enumerate(value["connectors"]):
            spec = self.connector(space, item, f"connectors[{i}]", checker, per_item.get(i, {}))
            if spec is not None:
                out.append(spec)
        return out

    @staticmethod
    def _locations_by_item(doc: Document) -> dict[int, dict[str, Location]]:
        out: dict[int, dict[str, Location]] = {}
        for path, loc in doc.locations.items():
            match = _INDEX.match(path)
            if not match:
                continue
            rest = path[match.end():]
            out.setdefault(int(match.group(1)), {})[rest[1:] if rest.startswith(".") else rest] = loc
        return out

    def connector(self, space: str, item: Any, base: str, checker: _FileChecker,
                  locations: Mapping[str, Location]) -> ConnectorSpec | None:
        if not isinstance(item, dict):
            return None  # the file schema said so already
        before = len(self.problems)
        key = item.get("id")
        kibana_id = self.connector_id(space, key, base, checker)
        if kibana_id is not None:
            self.declared.append(_Declared(space, str(key), kibana_id, checker.where(base), f"{base}.id"))
        name = item.get("name")
        type_id = item.get("type")
        config = item.get("config", {})
        secrets = item.get("secrets")
        for blank in _blank_strings({"name": name, "config": config, "secrets": secrets}, ""):
            checker.add(_concat(base, blank), f"{blank}: value '' is not valid (Kibana refuses blank strings)")
        blanks = {_concat(base, b) for b in _blank_strings({"config": config}, "")}
        ctype = self.connector_type(type_id, base, checker)
        placeholders = self.check_secrets(secrets, f"{base}.secrets", checker) if isinstance(secrets, dict) else None
        if ctype is not None and isinstance(config, dict):
            checker.schema(catalog.validator(ctype.id, "config"), config, f"{base}.config", "config",
                           skip=blanks.__contains__)
        if ctype is not None and (secrets is None or placeholders is not None):
            if secrets is None and "secrets" not in item and ctype.required("secrets"):
                checker.add(base, f"secrets: type {ctype.id} needs secrets ({', '.join(ctype.required('secrets'))}); "
                            "add a `secrets:` block of references")
            else:
                checker.schema(catalog.validator(ctype.id, "secrets"), placeholders or {}, f"{base}.secrets",
                               "secrets")
        if ctype is not None and isinstance(config, dict):
            self.stored_differently(ctype.id, config, base, checker)
        if ctype is not None and isinstance(config, dict) and not any(
                p.severity == "error" for p in self.problems[before:]):
            self.kibana_rules(ctype.id, config, placeholders or {}, base, checker)
        if any(p.severity == "error" for p in self.problems[before:]) or kibana_id is None:
            return None
        if not isinstance(name, str) or not isinstance(type_id, str) or not isinstance(config, dict):
            return None
        return ConnectorSpec(
            space=space, key=str(key), id=kibana_id, name=name, type=type_id, config=config,
            secrets=secrets if isinstance(secrets, dict) else {}, protect=bool(item.get("protect", False)),
            location=checker.where(base), locations=dict(locations),
        )

    def stored_differently(self, type_id: str, config: Mapping[str, Any], base: str, checker: _FileChecker) -> None:
        """Config that Kibana would store otherwise than written, which no plan could ever converge."""
        from reconciler.normalize import STRIPS_UNKNOWN

        ctype = catalog.get(type_id)
        if ctype is None:
            return
        if type_id in STRIPS_UNKNOWN:
            known = set(ctype.config_schema.get("properties") or {})
            for key in sorted(set(config) - known):
                checker.add(f"{base}.config.{key}", f"config.{key}: Kibana's {type_id} schema does not know this "
                            "key and drops it on save; remove it", severity="warning")
        if type_id == ".xmatters" and "usesBasic" not in config:
            checker.add(f"{base}.config", "config.usesBasic: set it explicitly (true with configUrl and user/"
                        "password, false with secretsUrl): Kibana checks an omitted usesBasic as false but "
                        "stores true")

    def kibana_rules(self, type_id: str, config: Mapping[str, Any], secrets: Mapping[str, Any], base: str,
                     checker: _FileChecker) -> None:
        """The rules Kibana checks beyond the JSON Schemas (URLs that must parse, closed value sets,
        config-and-secrets rules such as email's hasAuth ⇒ user and password), from the same code the
        sandbox answers with: one source of truth, caught in the merge request instead of at apply.
        Secrets are placeholders here, so only their presence counts; allowed hosts are Kibana's
        setting and cannot be known offline."""
        from reconciler.sandbox.http import HttpError
        from reconciler.sandbox.validation import check_config_values, validate_connector, validate_part

        try:
            check_config_values(type_id, config)
            filled = validate_part(type_id, "config", config, ["*"], schema=False)
            validate_connector(type_id, config, filled, secrets, secrets)
        except HttpError as exc:
            checker.add(base, f"Kibana would refuse this connector: {exc.message}")

    def connector_id(self, space: str, key: Any, base: str, checker: _FileChecker) -> str | None:
        if not isinstance(key, str):
            return None  # missing or not a string: the file schema said so
        if _UUID.fullmatch(key):
            return key
        if _KEY.fullmatch(key):
            return key if self.settings.id_mode == "verbatim" else derive_connector_id(space, key)
        checker.add(f"{base}.id", f"id {_short(key)} is neither a key (lowercase letters, digits, '-' and '_', "
                    "starting with a letter or digit, at most 128 characters) nor a UUID")
        return None

    def connector_type(self, type_id: Any, base: str, checker: _FileChecker) -> catalog.ConnectorType | None:
        if not isinstance(type_id, str) or not type_id.strip():
            return None
        ctype = catalog.get(type_id)
        if ctype is None:
            hint = catalog.suggest(type_id)
            tail = f"; did you mean {hint!r}?" if hint else "; `kcr types` lists the known types"
            checker.add(f"{base}.type", f"unknown connector type {_short(type_id)}{tail}")
            return None
        if ctype.is_system_action:
            checker.add(f"{base}.type", f"{type_id} is a system action: Kibana provides it and refuses to create one")
            return None
        return ctype

    def check_secrets(self, value: Any, path: str, checker: _FileChecker) -> Any:
        """Check every secret leaf; return the value with each leaf replaced by a placeholder."""
        if isinstance(value, dict):
            return {k: self.check_secrets(v, join_path(path, k), checker) for k, v in value.items()}
        if isinstance(value, list):
            return [self.check_secrets(v, join_path(path, i), checker) for i, v in enumerate(value)]
        if value is None:
            return None
        field = path.split(".", 1)[1] if "." in path else path
        if isinstance(value, str):
            if not value.strip():
                return PLACEHOLDER  # reported as a blank string
            try:
                refs = parse_template(value).references
            except ReferenceSyntaxError as exc:
                checker.add(path, f"{field}: malformed secret reference: {exc}")
                return PLACEHOLDER
            jwt_var = self.env.get(JWT_VAR_SETTING) or DEFAULT_JWT_VAR
            for ref in refs:
                refusal = guard_refusal(ref.target, self.settings, jwt_var) if ref.scheme == "env" else None
                if refusal:
                    checker.add(path, f"{field}: {refusal}")
            if refs:
                return PLACEHOLDER
        self.plaintext(path, field, checker)
        return PLACEHOLDER

    def plaintext(self, path: str, field: str, checker: _FileChecker) -> None:
        if self.settings.allow_plaintext_secrets:
            checker.add(path, f"{field}: plaintext secret allowed by allow_plaintext_secrets (local experiments "
                        "only; never commit it)", "warning")
        else:
            checker.add(path, f"{field}: plaintext secret: write a reference instead, e.g. ${{env:NAME}}, "
                        "${file:PATH} or ${vault:MOUNT/PATH#KEY}")


def _link_target(path: Path) -> str:
    """What a link says it points to (a path, never the content behind it), for messages."""
    try:
        return repr(os.readlink(path)) if path.is_symlink() else "a linked directory above it"
    except OSError:
        return "an unreadable target"


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or "a symbolic link loop"


def _unread_reason(entry: Path, real: Path) -> str | None:
    """Why kcr would not read this entry of a space directory (None: it reads it). The link's own name
    counts, as that is what the user sees in the space directory."""
    name = entry.name
    if real.is_dir():
        return (f"is a directory: {READS_ONLY} and never looks into subdirectories; move its files up into the "
                "space directory or move it out of connectors/")
    if not real.is_file():
        return f"is not a regular file (a pipe, socket or device): {READS_ONLY}; remove it"
    if name in SPACE_FILES:
        return None
    if name.startswith("."):
        return (f"is a hidden file (an editor's temporary file?): {READS_ONLY}, never hidden ones; remove it or "
                "move it out of connectors/")
    if name.startswith("_"):
        return (f"starts with '_', which only _space.yaml may: {READS_ONLY}, so this would not be read; rename it "
                "or move it out of connectors/")
    if entry.suffix in CONNECTOR_SUFFIXES:
        return None
    lower = entry.suffix.lower()
    hint = f"rename it to {entry.stem + lower}" if lower in CONNECTOR_SUFFIXES else "rename it to end in .yaml"
    return f"{READS_ONLY} (lowercase extension), so this would not be read; {hint} or move it out of connectors/"


def _duplicates(declared: Sequence[_Declared], problems: list[Problem]) -> None:
    """Ids unique within a space across its files, and globally since Kibana's ids are global."""
    in_space: dict[tuple[str, str], _Declared] = {}
    everywhere: dict[str, _Declared] = {}
    for item in declared:
        loc = item.location
        first = in_space.get((item.space, item.id))
        if first is not None:
            if first.key == item.key:
                msg = f"duplicate id {item.key!r} in space {item.space!r} (first declared at {first.location})"
            else:
                msg = (f"ids {first.key!r} (at {first.location}) and {item.key!r} both become Kibana id "
                       f"{item.id} in space {item.space!r}")
        else:
            in_space[(item.space, item.id)] = item
            other = everywhere.setdefault(item.id, item)
            if other.space == item.space:
                continue
            msg = (f"Kibana id {item.id} of {item.space}/{item.key} is also used by {other.space}/{other.key} "
                   f"(at {other.location}); Kibana ids are global across spaces")
        problems.append(Problem(loc.file if loc else item.space, msg, loc.line if loc else None,
                                loc.column if loc else None, item.path))


def load(root: Path, spaces: Sequence[str] | None = None, env: Mapping[str, str] | None = None, *,
         allow_plaintext_secrets: bool = False) -> LoadResult:
    """Read and check the whole repository (or the given spaces); never raises for bad input."""
    loader = _Loader(root, env or {}, allow_plaintext_secrets)
    problems = loader.problems
    loader.settings = loader.load_settings()
    found = loader.space_directories()
    if found is None:
        return LoadResult(None, tuple(problems))
    space_dirs = found
    if spaces:
        for space in spaces:
            if space not in space_dirs:
                problems.append(Problem(f"connectors/{space}", f"space {_short(space)} has no directory "
                                        f"connectors/{space}/"))
        space_dirs = {s: d for s, d in space_dirs.items() if s in set(spaces)}
    desired: dict[str, DesiredSpace] = {}
    for space, directory in space_dirs.items():
        settings_file, files = loader.space_entries(directory)
        settings = loader.load_space_settings(settings_file)
        specs: list[ConnectorSpec] = []
        for path, real in files:
            specs.extend(loader.load_file(space, path, real))
        desired[space] = DesiredSpace(space, settings, tuple(specs), directory=loader.rel(directory))
    _duplicates(loader.declared, problems)
    problems.sort(key=lambda p: (p.file, p.line or 0, p.column or 0))
    has_errors = any(p.severity == "error" for p in problems)
    state = None if has_errors else DesiredState(desired, loader.settings, str(root))
    return LoadResult(state, tuple(problems), loader.files, loader.items, len(desired))


def load_repository(root: Path, spaces: Sequence[str] | None = None, env: Mapping[str, str] | None = None, *,
                    allow_plaintext_secrets: bool = False) -> DesiredState:
    """The desired state; raises ValidationError carrying every error (warnings are dropped)."""
    result = load(root, spaces, env, allow_plaintext_secrets=allow_plaintext_secrets)
    if result.state is None:
        raise ValidationError(result.errors)
    return result.state


def owner_label(spec: ConnectorSpec) -> str:
    where = f" ({spec.location.file})" if spec.location else ""
    return f"{spec.space}/{spec.key}{where}"


def check_secrets(state: DesiredState, root: Path, env: Mapping[str, str],
                  vault_transport: httpx.BaseTransport | None = None) -> list[Problem]:
    """Resolve every reference (env, files, Vault) and report each failure at its connector's secrets."""
    specs = {owner_label(spec): spec for space in state.spaces.values() for spec in space.connectors if spec.secrets}
    resolver = SecretResolver(env, state.settings, root, vault_transport)
    _, errors = resolver.resolve_collect({owner: spec.secrets for owner, spec in specs.items()})
    problems = []
    for owner, messages in sorted(errors.items()):
        spec = specs[owner]
        loc = spec.locations.get("secrets") or spec.location
        for message in messages:
            problems.append(Problem(loc.file if loc else owner, message, loc.line if loc else None,
                                    loc.column if loc else None, "secrets"))
    return problems


def validate_repository(root: Path, *, resolve_secrets: bool = False, env: Mapping[str, str] | None = None,
                        spaces: Sequence[str] | None = None, vault_transport: httpx.BaseTransport | None = None,
                        allow_plaintext_secrets: bool = False) -> list[Problem]:
    """Every problem (errors and warnings) of the repository; offline unless resolve_secrets."""
    result = load(root, spaces, env, allow_plaintext_secrets=allow_plaintext_secrets)
    problems = list(result.problems)
    if resolve_secrets and result.state is not None:
        problems.extend(check_secrets(result.state, root, env or {}, vault_transport))
    return problems


def load_settings(root: Path) -> Settings:
    """The repository settings alone: `kcr apply plan.json` needs them (Vault mounts, the env guard)
    without re-reading the connector files, which may have moved on since the plan was made."""
    loader = _Loader(root, {}, False)
    settings = loader.load_settings()
    if loader.problems:
        raise ValidationError(loader.problems)
    return settings
