"""The connector types kcr knows, read from the JSON Schemas in schemas/types/. One source of truth:
`kcr validate`, the normaliser (defaults), export (credential shapes), Kibana's per-type rules
(`type_rules`) and the sandbox all read a type's facts here, so a new type is its schema file.

Besides the JSON Schemas, a type file carries facts as data (schemas/README lists the keywords):
`x-kcr-family` (types that share Kibana's validators, e.g. the webhooks), `x-kcr-credential-shapes`
(which secrets a config selects, for export), and inside the config schema
`x-kibana-strips-unknown` (Kibana drops unknown keys on save); Kibana's per-field facts (default and
fixed URLs, host-name fields, URL-parse messages, read-as-sent keys) are read with `marked`."""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from reconciler.schema_validator import SchemaValidator

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
LICENSE_ORDER = ("basic", "standard", "gold", "platinum", "enterprise", "trial")
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")
# The families code names (`x-kcr-family`); a type without one is a family of its own id.
WEBHOOKS = "webhook"
SERVICENOW = "servicenow"


@dataclass(frozen=True)
class CredentialShape:
    """`secrets` are the keys a connector needs when every `when` condition equals its config (defaults
    filled): Kibana's secrets schemas of these types depend on the config, which JSON Schema cannot say."""

    when: Mapping[str, Any]
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class ConnectorType:
    id: str
    name: str
    minimum_license: str
    supported_feature_ids: tuple[str, ...]
    is_system_action: bool
    config_schema: Mapping[str, Any]
    secrets_schema: Mapping[str, Any]
    allowed_hosts_checked: tuple[str, ...]
    notes: tuple[str, ...]
    family: str = ""  # `x-kcr-family`, else the type's own id
    credential_shapes: tuple[CredentialShape, ...] = ()  # first match wins

    @property
    def strips_unknown(self) -> bool:
        """Kibana's config schema is not strict (zod without .strict()): unknown keys are dropped on save."""
        return self.config_schema.get("x-kibana-strips-unknown") is True

    def schema(self, part: str) -> Mapping[str, Any]:
        return self.config_schema if part == "config" else self.secrets_schema

    def required(self, part: str) -> tuple[str, ...]:
        return tuple(self.schema(part).get("required", ()))

    def marked(self, part: str, keyword: str) -> dict[str, Any]:
        """The top-level properties of `part` that carry `keyword` (an `x-kibana-*` fact about the
        field, e.g. `x-kibana-default-url`), each with the keyword's value, in schema order."""
        props = self.schema(part).get("properties") or {}
        return {name: prop[keyword] for name, prop in props.items() if isinstance(prop, Mapping) and keyword in prop}

    def fixed_urls(self, part: str) -> tuple[str, ...]:
        """URLs Kibana checks against allowedHosts when validating `part` that no field holds
        (`x-kibana-fixed-urls` on the part's schema, e.g. `.slack_api`'s API endpoint)."""
        return tuple(self.schema(part).get("x-kibana-fixed-urls", ()))

    @property
    def read_as_sent(self) -> Mapping[str, str]:
        """Config keys a connector rule reads on the request as sent, before defaults, each with the
        advice for a file that omits it (`x-kibana-read-as-sent`): export keeps them even when equal
        to the stored default, and validate warns when one is missing."""
        return self.marked("config", "x-kibana-read-as-sent")

    def has_secrets(self) -> bool:
        """A type with no secret properties at all (Kibana still receives `secrets: {}`)."""
        props = self.secrets_schema.get("properties") or {}
        return bool(props) or self.secrets_schema.get("additionalProperties") not in (False, None)

    def plain_secrets(self) -> Mapping[str, Mapping[str, Any]]:
        """The secrets properties marked `x-kcr-plain: true`: a selector Kibana keeps among the secrets
        but that is no secret (a spec connector's `authType`), so a file writes it as a plain value, kcr
        checks it offline and `kcr export` writes it as it is (schemas/README). Found once per type: the
        planner asks for every secret of every connector."""
        found = self.__dict__.get("_plain_secrets")
        if found is None:
            props = self.secrets_schema.get("properties") or {}
            found = MappingProxyType({k: p for k, p in props.items()
                                      if isinstance(p, Mapping) and p.get("x-kcr-plain") is True})
            object.__setattr__(self, "_plain_secrets", found)  # a frozen record's derived fact, set once
        return found

    def is_plain_value(self, key: str, value: Any) -> bool:
        """`value` is a literal the plain secrets key `key` may hold: a string its schema's `enum` (or
        `const`) names. Anything else among the secrets stays a secret (fail closed)."""
        prop = self.plain_secrets().get(key)
        if prop is None or not isinstance(value, str):
            return False
        allowed = prop.get("enum", [prop["const"]] if "const" in prop else [])
        return value in allowed

    def secret_keys(self) -> tuple[str, ...]:
        return tuple(sorted((self.secrets_schema.get("properties") or {}).keys()))


def license_allows(cluster_license: str, minimum: str) -> bool:
    if cluster_license == "trial":
        return True
    try:
        return LICENSE_ORDER.index(cluster_license) >= LICENSE_ORDER.index(minimum)
    except ValueError:
        return False


@cache
def types() -> Mapping[str, ConnectorType]:
    out: dict[str, ConnectorType] = {}
    for path in sorted((SCHEMA_DIR / "types").glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        out[raw["id"]] = ConnectorType(
            id=raw["id"],
            name=raw["name"],
            minimum_license=raw["minimum_license"],
            supported_feature_ids=tuple(raw.get("supported_feature_ids", ())),
            is_system_action=bool(raw.get("is_system_action", False)),
            config_schema=raw["config"],
            secrets_schema=raw["secrets"],
            allowed_hosts_checked=tuple(raw.get("allowed_hosts_checked", ())),
            notes=tuple(raw.get("notes", ())),
            family=raw.get("x-kcr-family", raw["id"]),
            credential_shapes=tuple(CredentialShape(shape["when"], tuple(shape["secrets"]))
                                    for shape in raw.get("x-kcr-credential-shapes", ())),
        )
    return out


def get(type_id: str) -> ConnectorType | None:
    return types().get(type_id)


def family(type_id: str) -> str:
    """The family a type's schema names (`WEBHOOKS`, `SERVICENOW`), else its own id."""
    ct = get(type_id)
    return ct.family if ct is not None else type_id


def suggest(type_id: str) -> str | None:
    """A near-miss suggestion: `slack` -> `.slack`, `.pagerduty2` -> `.pagerduty`."""
    known = list(types())
    if not type_id.startswith(".") and f".{type_id}" in known:
        return f".{type_id}"
    lowered = type_id.lower().replace("_", "-")
    for k in known:
        if k.replace("_", "-") in (lowered, f".{lowered}"):
            return k
    close = difflib.get_close_matches(type_id if type_id.startswith(".") else f".{type_id}", known, n=1)
    return close[0] if close else None


@cache
def validator(type_id: str, part: str) -> SchemaValidator:
    ct = types()[type_id]
    return SchemaValidator(ct.config_schema if part == "config" else ct.secrets_schema)


def _branch(schema: Mapping[str, Any], value: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The oneOf/anyOf branch a value takes (e.g. .gen-ai's apiProvider), for its defaults."""
    import jsonschema  # a type with a union (e.g. .gen-ai): no other check of a valid repository needs it

    for key in ("oneOf", "anyOf"):
        for branch in schema.get(key, ()):
            if "properties" in branch and jsonschema.validators.validator_for(branch)(branch).is_valid(value):
                return branch  # type: ignore[no-any-return]
    return None


def _coerce(prop: Mapping[str, Any], value: Any) -> Any:
    if prop.get("x-kibana-coerce") == "number" and isinstance(value, str) and _NUMBER.match(value):
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


@cache
def _fills(type_id: str, part: str) -> tuple[tuple[str, bool, bool, Any], ...] | None:
    """What `with_defaults` does to a value of a type without unions, worked out once per type: each
    property with a default or a coercion as (name, coerced, has a default, the default). None for
    a union (its branch depends on the value) or an unknown type."""
    ct = types().get(type_id)
    if ct is None:
        return None
    schema = ct.config_schema if part == "config" else ct.secrets_schema
    if "oneOf" in schema or "anyOf" in schema:
        return None
    return tuple((name, prop.get("x-kibana-coerce") == "number", "default" in prop, prop.get("default"))
                 for name, prop in (schema.get("properties") or {}).items()
                 if isinstance(prop, Mapping) and ("default" in prop or prop.get("x-kibana-coerce") == "number"))


def with_defaults(type_id: str, part: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """The object Kibana stores for `value`: the type's schema defaults filled in (top level and the
    branch a union takes) and numeric strings coerced where Kibana coerces them. Unknown types and
    non-object values come back unchanged, since only Kibana's validation can judge them. Called
    twice per connector by every plan, so a type without unions takes its precomputed `_fills`."""
    out = dict(value)
    fills = _fills(type_id, part)
    if fills is not None:
        for name, coerced, has_default, default in fills:
            if name in out:
                if coerced:
                    out[name] = _coerce({"x-kibana-coerce": "number"}, out[name])
            elif has_default:
                out[name] = default if isinstance(default, str | int | float | bool) or default is None \
                    else copy.deepcopy(default)
        return out
    ct = types().get(type_id)
    if ct is None:
        return out
    schema = ct.config_schema if part == "config" else ct.secrets_schema
    props: dict[str, Any] = dict(schema.get("properties") or {})
    branch = _branch(schema, value)
    if branch is not None:
        props.update(branch.get("properties") or {})
    for name, prop in props.items():
        if not isinstance(prop, Mapping):
            continue
        if name in out:
            out[name] = _coerce(prop, out[name])
        elif "default" in prop:
            out[name] = copy.deepcopy(prop["default"])
    return out
