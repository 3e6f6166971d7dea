"""Problems of one of the user's files, each placed at file:line:column, in words a reader can act on.

Separate from the loader because every file kcr reads (kcr.yaml, _space.yaml, connector files) needs
the same two things: a field path turned into the nearest position yamlload recorded, and jsonschema's
messages rewritten (unknown keys with a near-miss suggestion, unions by their description, values
under `secrets` never quoted, since a plaintext secret must not reach a CI log)."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from functools import cache, reduce
from typing import TYPE_CHECKING, Any

from reconciler import catalog, fastschema
from reconciler.errors import Problem
from reconciler.model import Location
from reconciler.schema_validator import SchemaValidator
from reconciler.yamlload import Document, join_path

if TYPE_CHECKING:
    import jsonschema

    from reconciler.schema_validator import Validator

_REQUIRED = re.compile(r"^'(.+)' is a required property$")
_SECRET_FIELD = re.compile(r"^connectors\[\d+\]\.secrets($|[.\[])")


@cache
def file_validator(name: str) -> SchemaValidator:
    """A validator for one of kcr's own file formats (schemas/<name>), built once per process."""
    return SchemaValidator(json.loads((catalog.SCHEMA_DIR / name).read_text(encoding="utf-8")))


def under(base: str, parts: Iterable[str | int]) -> str:
    """`base` followed by each key or index, spelled as yamlload spells the paths it records."""
    return reduce(join_path, parts, base)


def short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


class FileChecker:
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

    def add(self, path: str, message: str, severity: str = "error", *, at_key: bool = False) -> None:
        """`at_key`: place it where the field's key is written (an unknown key), not where its value starts."""
        loc = (self.doc.keys.get(path) if at_key else None) or self.where(path)
        self.problems.append(Problem(self.file, message, loc.line if loc else None, loc.column if loc else None,
                                     path or None, severity))

    def schema(self, validator: Validator, instance: Any, base: str, label: str,
               skip: Callable[[str], bool] | None = None) -> int:
        """Add a problem per schema violation; `label` prefixes field names ("config"). Returns the count.
        An instance the schema's compiled predicate finds valid (`fastschema`: nearly every one) costs no
        jsonschema run; one once found valid is not validated again (`_known_valid`)."""
        if fastschema.checked(compiled(validator), instance):
            return 0
        seen = _known_valid(validator, instance)
        if seen is not None and seen[1] in seen[0]:
            return 0
        count = 0
        errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
        if not errors and seen is not None:
            seen[0].add(seen[1])
        for err in errors:
            parts = list(err.absolute_path)
            missing = _REQUIRED.match(err.message) if err.validator == "required" else None
            field_parts = [*parts, missing.group(1)] if missing else parts
            if skip is not None and err.validator not in ("required", "type") and skip(under(base, field_parts)):
                continue
            field = under(label, field_parts)
            if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
                for key, message in _unknown_keys(err):  # each on its own line
                    self.add(under(base, [*parts, key]), f"{field}: {message}" if field else message, at_key=True)
                    count += 1
                continue
            message = _human(err, redact=_SECRET_FIELD.match(under(base, parts)) is not None)
            self.add(under(base, parts), f"{field}: {message}" if field else message)
            count += 1
        return count


_FAST: dict[int, tuple[Validator, fastschema.Check]] = {}


def compiled(validator: Validator) -> fastschema.Check:
    """The validator's schema compiled once (`fastschema`); a schema outside its subset gets a predicate
    that is never sure, so jsonschema judges every instance. The validator is held, so its id is never reused."""
    entry = _FAST.get(id(validator))
    if entry is None:
        entry = (validator, fastschema.compile_for(validator) or _never)
        if len(_FAST) < 1_000:  # a bound for long-lived processes (tests) that build many validators
            _FAST[id(validator)] = entry
    return entry[1]


def _never(instance: Any) -> bool:
    return False


_VALID: dict[int, tuple[Validator, set[str]]] = {}
_VALID_LIMIT = 200_000  # texts remembered per process: a bound, far above any repository's connectors


def _known_valid(validator: Validator, instance: Any) -> tuple[set[str], str] | None:
    """The set of instances (canonical JSON) `validator` found valid, and this instance's text. The same
    config checked again (every environment of `kcr validate` and `--all-envs` where only a connector's
    name differs) is then not validated again: validity depends on the instance alone, and JSON keeps
    true, 1 and 1.0 apart as the schema does. The validator is held, so its id is never reused."""
    if len(_VALID) > 1_000:
        return None
    entry = _VALID.setdefault(id(validator), (validator, set()))
    if len(entry[1]) >= _VALID_LIMIT:
        return None
    try:
        return entry[1], json.dumps(instance, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return None


def _redacted(value: Any) -> str:
    kind = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list", type(None): "null",
            dict: "a mapping"}.get(type(value))
    return kind or "the value"


def _human(err: jsonschema.ValidationError, redact: bool = False) -> str:
    """jsonschema's message in words a person acts on (`must be a number, not "abc"`), never its raw regex
    or Python repr; under `secrets` the value is never quoted (a plaintext secret), only its kind."""
    phrased = _phrase(err, redact)
    if phrased is not None:
        return phrased
    if redact:
        message = err.message.replace(repr(err.instance), _redacted(err.instance))
        if isinstance(err.instance, str) and err.instance in message:
            message = f"{err.validator} check failed for {_redacted(err.instance)}"
        return message if len(message) <= 300 else message[:300] + "..."
    if err.validator in ("anyOf", "oneOf"):
        description = err.schema.get("description") if isinstance(err.schema, Mapping) else None
        if description:
            return f"matches none of the allowed shapes: {description}"
        from jsonschema.exceptions import best_match  # here: jsonschema is imported only to word errors

        best = best_match(err.context or ())
        detail = f" (closest: {_human(best)[:200]})" if best is not None else ""
        return f"matches none of the allowed shapes{detail}"
    return err.message if len(err.message) <= 300 else err.message[:300] + "..."


_NUMERIC = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"  # where Kibana coerces a numeric string
# The patterns kcr's own and bundled schemas use, in words; another (a user's type schema) is quoted.
_PATTERNS = {
    _NUMERIC: "must be a number",
    r"^https?://": "must start with http:// or https://",
    r"\S": "must not be blank",
    r"^[a-z0-9_-]+$": "may hold only lowercase letters, digits, '-' and '_'",
    r"^[a-z0-9][a-z0-9_-]{0,62}$": "must be a name of lowercase letters, digits, '-' and '_' (63 at most, not "
                                   "starting with '-' or '_')",
    r"^[a-z0-9][a-z0-9_-]{0,127}$": "must be a key of lowercase letters, digits, '-' and '_' (128 at most, not "
                                    "starting with '-' or '_')",
    r"^[A-Za-z_][A-Za-z0-9_]{0,127}$": "must be a variable name: a letter or '_', then letters, digits or '_'",
    r"^\.[a-z0-9][a-z0-9_.-]*$": "must be a connector type id: '.' then lowercase letters, digits, '.', '-' or '_' "
                                 "(e.g. .webhook)",
    r"^[^:]+(:(v?[12]))?$": "must be a KV mount path, optionally with :v1 or :v2 (e.g. kv/team-a or legacy:v1)",
    r"\$\{[a-z][a-z0-9_-]*:[^}]+\}": "must be a secret reference such as ${env:NAME}",
}
_TYPES = {"number": "a number", "integer": "a whole number", "string": "a string", "boolean": "true or false",
          "array": "a list", "object": "a mapping", "null": "null"}


def _shown(value: Any, redact: bool) -> str:
    """The value as the file would write it (JSON, not Python's repr), or only its kind."""
    if redact or isinstance(value, dict | list):
        return _redacted(value)
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _phrase(err: jsonschema.ValidationError, redact: bool) -> str | None:
    rule, expected, value = err.validator, err.validator_value, err.instance
    schema: Mapping[str, Any] = err.schema if isinstance(err.schema, Mapping) else {}
    got = _shown(value, redact)
    if rule == "type" and isinstance(expected, str | list):
        names = [expected] if isinstance(expected, str) else [str(n) for n in expected]
        if schema.get("pattern") == _NUMERIC or schema.get("x-kibana-coerce") == "number":
            names = ["number"]  # a numeric string is accepted too, but a number is what is meant
        kinds = [_TYPES.get(n, n) for n in names if n != "null" or len(names) == 1]
        return f"must be {' or '.join(kinds)}, not {got}"
    if rule == "pattern" and isinstance(expected, str):
        words = _PATTERNS.get(expected)
        if words is None and schema.get("description"):
            words = f"does not have the expected form ({schema['description']})"
        return f"{words or f'must match {expected} (a pattern of its schema)'}, not {got}"
    if rule == "enum" and isinstance(expected, list):
        allowed = ", ".join(json.dumps(x, ensure_ascii=False) for x in expected[:12]) + (", ..." if len(expected) > 12
                                                                                          else "")
        close = [] if redact or not isinstance(value, str) else difflib.get_close_matches(
            value, [x for x in expected if isinstance(x, str)], n=1, cutoff=0.75)
        return f"must be one of {allowed}, not {got}" + (f" (did you mean {json.dumps(close[0])}?)" if close else "")
    if rule == "const":
        return f"must be {json.dumps(expected, ensure_ascii=False)}, not {got}"
    bounds = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than",
              "exclusiveMaximum": "less than"}
    if rule in bounds:
        return f"must be {bounds[rule]} {expected}, not {got}"
    sizes = {"minLength": ("at least", "character"), "maxLength": ("at most", "character"),
             "minItems": ("at least", "item"), "maxItems": ("at most", "item")}
    if rule in sizes and isinstance(expected, int):
        if rule in ("minLength", "minItems") and expected == 1:
            return "must not be empty"
        bound, unit = sizes[rule]
        return f"must have {bound} {expected} {unit}{'s' if expected != 1 else ''}"
    if rule == "uniqueItems":
        return "lists the same item more than once"
    if rule == "minProperties" and expected == 1:
        return "must not be empty"
    return None


def _unknown_keys(err: jsonschema.ValidationError) -> list[tuple[str, str]]:
    """Each unknown key and what to say of it: `refreshh` → did you mean `refresh`? The schema's own
    property names are the candidates."""
    schema = err.schema if isinstance(err.schema, Mapping) else {}
    known = sorted(schema.get("properties") or {})
    instance = err.instance if isinstance(err.instance, Mapping) else {}
    allowed = f"; known keys: {', '.join(known)}" if known and len(known) <= 12 else ""
    out = []
    for key in (k for k in instance if k not in known):
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.7)
        out.append((str(key), f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else "") + allowed))
    return out
