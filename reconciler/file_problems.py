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
from typing import Any

import jsonschema

from reconciler import catalog
from reconciler.errors import Problem
from reconciler.model import Location
from reconciler.yamlload import Document, join_path

_REQUIRED = re.compile(r"^'(.+)' is a required property$")
_SECRET_FIELD = re.compile(r"^connectors\[\d+\]\.secrets($|[.\[])")


@cache
def file_validator(name: str) -> jsonschema.protocols.Validator:
    """A validator for one of kcr's own file formats (schemas/<name>), built once per process."""
    schema = json.loads((catalog.SCHEMA_DIR / name).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


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

    def add(self, path: str, message: str, severity: str = "error") -> None:
        loc = self.where(path)
        self.problems.append(Problem(self.file, message, loc.line if loc else None, loc.column if loc else None,
                                     path or None, severity))

    def schema(self, validator: jsonschema.protocols.Validator, instance: Any, base: str, label: str,
               skip: Callable[[str], bool] | None = None) -> int:
        """Add a problem per schema violation; `label` prefixes field names ("config"). Returns the count.
        An instance once found valid is not validated again (`_known_valid`)."""
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
            message = _human(err, redact=_SECRET_FIELD.match(under(base, parts)) is not None)
            self.add(under(base, parts), f"{field}: {message}" if field else message)
            count += 1
        return count


_VALID: dict[int, tuple[jsonschema.protocols.Validator, set[str]]] = {}
_VALID_LIMIT = 200_000  # texts remembered per process: a bound, far above any repository's connectors


def _known_valid(validator: jsonschema.protocols.Validator, instance: Any) -> tuple[set[str], str] | None:
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
