"""One connector file, item by item: each connector declared becomes a ConnectorSpec or problems.

What a connector must satisfy offline: the file format, an id that is a key or a UUID, a known type
that is not a system action, its type's config and secrets schemas (a secret reference stands in as a
placeholder), no blank strings (Kibana refuses them), no plaintext secret, well-formed references that
stay clear of kcr's own credentials, and Kibana's per-type rules (`type_rules`). Separate from the
repository walk (`repo_layout`) and from what ties the connectors together (`desired`: ids unique
across files and spaces)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler import catalog, fastschema, type_rules
from reconciler.errors import Problem
from reconciler.file_problems import FileChecker, compiled, file_validator, short, under
from reconciler.model import (
    KEY_PATTERN,
    UUID_PATTERN,
    ConnectorSpec,
    Location,
    Settings,
    derive_connector_id,
)
from reconciler.references import ReferenceSyntaxError, parse_template, reference_forms
from reconciler.secret_backends import BACKENDS
from reconciler.secret_backends.guard import DEFAULT_JWT_VAR, JWT_VAR_SETTING, guard_refusal
from reconciler.user_types import BUNDLED_ONLY, TypeCatalog
from reconciler.variables import Scope, UnsetVar, VarError, mentions_var
from reconciler.yamlload import Document, join_path

if TYPE_CHECKING:
    from reconciler.schema_validator import Validator

PLACEHOLDER = "<reference>"  # what a secret looks like to its type's schema during offline validation

_UUID = re.compile(UUID_PATTERN)
_KEY = re.compile(KEY_PATTERN)
_INDEX = re.compile(r"^connectors\[(\d+)\]")
_OWN_CHECKS = re.compile(r"^connectors\[\d+\](\.id$|\.name$|\.secrets[.\[])")


@dataclass(frozen=True)
class Declared:
    """A connector with a usable id, valid or not: enough to tell duplicates apart across files."""

    space: str
    key: str
    id: str
    location: Location | None
    base: str  # the item's path, `connectors[3]`

    @property
    def path(self) -> str:
        """The path of its id, where a duplicate is reported (spelt only then)."""
        return join_path(self.base, "id")


_Leaves = list[tuple[tuple[str | int, ...], str]]


def _leaves(value: Any, parts: tuple[str | int, ...] = ()) -> _Leaves:
    """Every string inside `value` with its path, depth first (a list, not a generator: the checks of
    every connector read it several times)."""
    found: _Leaves = []
    _collect(value, parts, found)
    return found


def _collect(value: Any, parts: tuple[str | int, ...], found: _Leaves) -> None:
    if isinstance(value, str):
        found.append((parts, value))
        return
    pairs: Iterable[tuple[str | int, Any]]
    if isinstance(value, list):
        pairs = enumerate(value)
    elif isinstance(value, (dict, Mapping)):  # YAML's mappings are dicts, found before the ABC check
        pairs = value.items()
    else:
        return
    for k, v in pairs:
        if isinstance(v, str):  # the common leaf, without a call
            found.append(((*parts, k), v))
        else:
            _collect(v, (*parts, k), found)


def _get(value: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


_REFERENCE_START = re.compile(r"(?<!\$)\$\{([a-z][a-z0-9_-]*):")


def _holds_reference(text: str) -> bool:
    """`${env:..}`, `${file:..}`, `${vault:..}` (any registered scheme) outside `secrets` would reach
    Kibana as literal text: kcr resolves references only where secrets are."""
    return any(m.group(1) in BACKENDS for m in _REFERENCE_START.finditer(text))


def _errors_since(problems: list[Problem], before: int) -> bool:
    return len(problems) > before and any(p.severity == "error" for p in problems[before:])


@dataclass(frozen=True)
class _Kind:
    """What checking a connector reads of its type, worked out at the type's first connector and kept
    for the load (its catalogue does not change meanwhile): a repository has a few types and many
    connectors of each."""

    ctype: catalog.ConnectorType
    plain: Mapping[str, Any]  # `ctype.plain_secrets()`
    needs_secrets: tuple[str, ...]  # `ctype.required("secrets")`
    config: Validator
    secrets: Validator
    config_valid: fastschema.Check  # the config schema compiled (`compiled`)
    no_secrets_valid: bool  # `{}` certainly passes the secrets schema (none written, or none but plain ones)
    rules: type_rules.OfflineRules

    @classmethod
    def of(cls, ctype: catalog.ConnectorType, types: TypeCatalog) -> _Kind:
        config, secrets = types.validator(ctype, "config"), types.validator(ctype, "secrets")
        return cls(ctype, ctype.plain_secrets(), ctype.required("secrets"), config, secrets, compiled(config),
                   fastschema.checked(compiled(secrets), {}), type_rules.offline_rules(ctype.id))


class ConnectorChecks:
    """Checks the connector files of one repository; `declared` and `items` accumulate across files."""

    def __init__(self, settings: Settings, env: Mapping[str, str], *, offline: bool = False,
                 types: TypeCatalog = BUNDLED_ONLY) -> None:
        self.settings = settings
        self.types = types  # kcr's bundled schemas and the repository's own (`user_types`)
        self.offline = offline  # `kcr validate`: a var whose variable is unset here is a warning
        self.jwt_var = env.get(JWT_VAR_SETTING) or DEFAULT_JWT_VAR
        self.declared: list[Declared] = []
        self.items = 0
        self.unschemed: set[str] = set()  # types kcr has no schema for, warned about once
        self.kinds: dict[str, _Kind] = {}  # by type id: the types met so far (`kind`)

    def envelope(self, checker: FileChecker) -> list[Any]:
        """The file's format, checked once whatever the number of environments: its items, or [] when
        there are none to read (the problems say why)."""
        value = checker.doc.value
        if value is None:
            checker.add("", "the file is empty; it should hold `connectors: [...]`")
            return []
        # The id pattern and secret values get kcr's own, clearer messages below.
        checker.schema(file_validator("connector-file.schema.json"), value, "", "",
                       skip=lambda p: _OWN_CHECKS.match(p) is not None)
        if not isinstance(value, dict) or not isinstance(value.get("connectors"), list):
            return []
        return list(value["connectors"])

    def file(self, space: str, checker: FileChecker, scope: Scope | None = None) -> list[ConnectorSpec]:
        """The valid connectors of one parsed file; every problem goes to the checker."""
        items = self.envelope(checker)
        per_item = locations_by_item(checker.doc)
        self.items += len(items)
        out = []
        for i, item in enumerate(items):
            spec = self.connector(space, item, join_path("connectors", i), checker, per_item.get(i, {}), scope)
            if spec is not None:
                out.append(spec)
        return out

    def substituted(self, item: dict[str, Any], base: str, checker: FileChecker, scope: Scope,
                    leaves: Sequence[tuple[tuple[str | int, ...], str]]) -> dict[str, Any] | None:
        """The item with its ${var:} substituted for `scope`, or None (with a problem per field whose
        var cannot be). A secret reference written in name/config is reported on the raw text first.
        `leaves`: the item's strings under name, config and secrets (`_leaves`)."""
        out = dict(item)
        failed = False
        fills = {"name": scope.in_text, "config": scope.substitute, "secrets": scope.in_secret}
        for key, fill in fills.items():
            if key not in item:
                continue
            for where in [where for where, text in leaves
                          if where[0] == key and "${var:" in text and mentions_var(text)]:
                try:
                    fill(_get(item, where))
                except UnsetVar as exc:
                    checker.add(under(base, where), f"{under('', where)}: {exc}"
                                + ("; the connector is not checked further here" if self.offline else ""),
                                "warning" if self.offline else "error")
                    failed = True
                except VarError as exc:
                    checker.add(under(base, where), f"{under('', where)}: {exc}")
                    failed = True
            if not failed:
                out[key] = fill(item[key])
        return None if failed else out

    def connector(self, space: str, item: Any, base: str, checker: FileChecker,
                  locations: Mapping[str, Location], scope: Scope | None = None) -> ConnectorSpec | None:
        if not isinstance(item, dict):
            return None  # the file schema said so already
        before = len(checker.problems)
        # Every string under name, config and secrets, walked once for the checks below that read them.
        leaves = _leaves({"name": item.get("name"), "config": item.get("config", {}), "secrets": item.get("secrets")})
        for where in [w for w, text in leaves if w[0] != "secrets" and "${" in text and _holds_reference(text)]:
            checker.add(under(base, where), f"{under('', where)}: a secret reference is read only inside `secrets`; "
                        "here Kibana would receive its literal text. Move the value under `secrets` if the type "
                        "takes it there; for a value that differs between environments write ${var:NAME} (vars "
                        "in kcr.yaml); or write the value itself")
        # Without a ${var:} (nor its escape $${var:) in any of them, substituting would change nothing.
        if scope is not None and any("${var:" in text for _, text in leaves):
            filled = self.substituted(item, base, checker, scope, leaves)
            if filled is None:
                return None
            item = filled
            leaves = _leaves({"name": item.get("name"), "config": item.get("config", {}),
                              "secrets": item.get("secrets")})
        key = item.get("id")
        kibana_id = self.connector_id(space, key, base, checker)
        location = checker.where(base)
        if kibana_id is not None:
            self.declared.append(Declared(space, str(key), kibana_id, location, base))
        name = item.get("name")
        type_id = item.get("type")
        config = item.get("config", {})
        secrets = item.get("secrets")
        blank_paths = [where for where, text in leaves if not text.strip()]
        for blank in blank_paths:
            checker.add(under(base, blank), f"{under('', blank)}: value '' is not valid (Kibana refuses blank strings)")
        kind = self.kind(type_id, base, checker)
        secrets_path = join_path(base, "secrets")
        plain = kind.plain if kind is not None else {}
        placeholders = self.secret_leaves(secrets, secrets_path, checker, plain) if isinstance(secrets, dict) else None
        # The schema checks take their words (and what they skip) only for a value that is not surely valid.
        if kind is not None and isinstance(config, dict) and not fastschema.checked(kind.config_valid, config):
            blanks = {under(base, b) for b in blank_paths if b[0] == "config"}
            checker.schema(kind.config, config, join_path(base, "config"), "config", skip=blanks.__contains__)
        if kind is not None and (secrets is None or placeholders is not None):
            if secrets is None and "secrets" not in item and kind.needs_secrets:
                checker.add(base, f"secrets: type {kind.ctype.id} needs secrets ({', '.join(kind.needs_secrets)}); "
                            "add a `secrets:` block of references")
            elif placeholders or not kind.no_secrets_valid:
                # A plain value given as a reference is a placeholder here: only Kibana can check it.
                referenced = {join_path(secrets_path, k) for k in plain if (placeholders or {}).get(k) == PLACEHOLDER}
                checker.schema(kind.secrets, placeholders or {}, secrets_path, "secrets",
                               skip=referenced.__contains__)
        if kind is not None and isinstance(config, dict):
            for finding in kind.rules.stored_differently(config):
                checker.add(under(base, finding.path), finding.message, finding.severity)
            if not _errors_since(checker.problems, before):
                # Kibana refuses the connector as a whole, and its words name the field.
                for finding in kind.rules.refusals(config, placeholders or {}):
                    checker.add(base, f"Kibana would refuse this connector: {finding.message}")
        if _errors_since(checker.problems, before) or kibana_id is None:
            return None
        if not isinstance(name, str) or not isinstance(type_id, str) or not isinstance(config, dict):
            return None
        return ConnectorSpec(
            space=space, key=str(key), id=kibana_id, name=name, type=type_id, config=config,
            secrets=secrets if isinstance(secrets, dict) else {}, protect=bool(item.get("protect", False)),
            location=location, locations=dict(locations),
        )

    def connector_id(self, space: str, key: Any, base: str, checker: FileChecker) -> str | None:
        if not isinstance(key, str):
            return None  # missing or not a string: the file schema said so
        if _UUID.fullmatch(key):
            return key
        if _KEY.fullmatch(key):
            return key if self.settings.id_mode == "verbatim" else derive_connector_id(space, key)
        checker.add(join_path(base, "id"), f"id {short(key)} is neither a key (lowercase letters, digits, '-' and "
                    "'_', starting with a letter or digit, at most 128 characters) nor a UUID")
        return None

    def kind(self, type_id: Any, base: str, checker: FileChecker) -> _Kind | None:
        """The type's `_Kind`, worked out at its first connector; None as for `connector_type`."""
        kind = self.kinds.get(type_id) if isinstance(type_id, str) else None
        if kind is None:
            ctype = self.connector_type(type_id, base, checker)
            if ctype is None:
                return None
            kind = self.kinds[type_id] = _Kind.of(ctype, self.types)
        return kind

    def connector_type(self, type_id: Any, base: str, checker: FileChecker) -> catalog.ConnectorType | None:
        """The type's schema, or None: for a misspelt type with an error (the rule is `user_types`'), for
        a type kcr has no schema for without one (`no_schema` warns once per type; plan asks Kibana)."""
        if not isinstance(type_id, str) or not type_id.strip():
            return None
        ctype = self.types.get(type_id)
        if ctype is None:
            hint = self.types.misspelling_of(type_id)
            if hint is not None:
                checker.add(join_path(base, "type"), f"unknown connector type {short(type_id)}; did you mean "
                            f"{hint!r}? (if {short(type_id)} is a type your Kibana has, declare it in kcr.yaml: "
                            f"`types: {{{json.dumps(type_id)}: {{}}}}`)")
            elif not type_id.startswith("."):
                checker.add(join_path(base, "type"), f"unknown connector type {short(type_id)}: Kibana's connector "
                            "type ids start with '.' (e.g. .webhook); `kcr types` lists the types kcr knows")
            return None
        if ctype.is_system_action:
            checker.add(join_path(base, "type"),
                        f"{type_id} is a system action: Kibana provides it and refuses to create one")
            return None
        return ctype

    def no_schema(self, checker: FileChecker, items: Sequence[Any]) -> None:
        """Warn once per type (at its first connector) that kcr has no schema for it, so its config goes
        unchecked until Kibana checks it at apply; a misspelt type is `connector_type`'s error instead."""
        first: dict[str, int] = {}  # each type at its first connector: what follows depends on the type alone
        for i, item in enumerate(items):
            type_id = item.get("type") if isinstance(item, dict) else None
            if isinstance(type_id, str) and type_id not in first:
                first[type_id] = i
        for type_id, i in first.items():
            if not type_id.startswith(".") or self.types.has_schema(type_id) or type_id in self.unschemed \
                    or (self.types.get(type_id) is None and self.types.misspelling_of(type_id) is not None):
                continue
            near = self.types.near(type_id)
            hint = f" (if you meant {near!r}, correct the type)" if near and near != type_id else ""
            self.unschemed.add(type_id)
            checker.add(join_path(join_path("connectors", i), "type"), f"kcr has no schema for `{type_id}`; Kibana "
                        f"checks its config at apply{hint}. To check it here, add its schema under `types:` in "
                        "kcr.yaml or in schemas/types/", "warning")

    def secret_leaves(self, value: Any, path: str, checker: FileChecker,
                      plain: Mapping[str, Any] | None = None) -> Any:
        """Check every secret leaf; return the value with each leaf replaced by a placeholder. A top-level
        key of `plain` (`x-kcr-plain` in the type's schema: a selector, not a secret) keeps its literal
        value, so the schema checks it; written as a reference it is allowed, with a warning."""
        if isinstance(value, dict):
            return {k: self.plain_leaf(v, join_path(path, k), checker) if plain and k in plain and isinstance(v, str)
                    else self.secret_leaves(v, join_path(path, k), checker) for k, v in value.items()}
        if isinstance(value, list):
            return [self.secret_leaves(v, join_path(path, i), checker) for i, v in enumerate(value)]
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
            for ref in refs:
                name = ref.env_name  # `${env:NAME}`, or `${file:${env:NAME}}` (NAME holds a path)
                refusal = guard_refusal(name, self.settings, self.jwt_var) if name is not None else None
                if refusal:
                    checker.add(path, f"{field}: {refusal}")
            if refs:
                return PLACEHOLDER
        self.plaintext(path, field, checker)
        return PLACEHOLDER

    def plain_leaf(self, value: str, path: str, checker: FileChecker) -> str:
        """A plain value among the secrets: its literal text, or a placeholder when it is a reference."""
        field = path.split(".", 1)[1] if "." in path else path
        try:
            refs = parse_template(value).references
        except ReferenceSyntaxError as exc:
            checker.add(path, f"{field}: malformed secret reference: {exc}")
            return PLACEHOLDER
        if not refs:
            return value
        checker.add(path, f"{field} is not a secret but a plain setting of this type; write its value here "
                    "(not a reference) so that kcr can check it before Kibana does", "warning")
        return PLACEHOLDER

    def plaintext(self, path: str, field: str, checker: FileChecker) -> None:
        if self.settings.allow_plaintext_secrets:
            checker.add(path, f"{field}: plaintext secret allowed by allow_plaintext_secrets (local experiments "
                        "only; never commit it)", "warning")
        else:
            checker.add(path, f"{field}: plaintext secret: write a reference instead, e.g. {reference_forms()}")


def locations_by_item(doc: Document) -> dict[int, dict[str, Location]]:
    """Each item's positions keyed by its own field paths (`config.apiUrl`), for the ConnectorSpec. An
    item's paths come one after another (yamlload records them depth first), so a path under the item
    the previous one belonged to (`connectors[3].` and a key) is taken without the regex."""
    out: dict[int, dict[str, Location]] = {}
    dotted, size, own = "", 0, None
    for path, loc in doc.locations.items():
        if own is not None and path.startswith(dotted):  # "connectors[1]." is no prefix of "connectors[12]."
            own[path[size:]] = loc
            continue
        match = _INDEX.match(path)
        if not match:
            continue
        end = match.end()
        own = out.setdefault(int(match.group(1)), {})
        rest = path[end:]
        own[rest[1:] if rest.startswith(".") else rest] = loc
        dotted, size = path[:end] + ".", end + 1
    return out
