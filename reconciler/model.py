"""The records that flow between stages. Desired and live connectors become these types before
anything compares them; everything here is immutable. JSON-like payloads (config, secrets) are
plain dicts/lists by convention never mutated after construction."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = Any

# Published so anyone can recompute a derived id: uuid5(KCR_ID_NAMESPACE, f"{space}/{key}").
KCR_ID_NAMESPACE = uuid.UUID("6f1c3a52-5d0e-5b8e-9a51-6b6372000001")
_NAMESPACE_BYTES = KCR_ID_NAMESPACE.bytes

SPACE_ID_PATTERN = r"^[a-z0-9_-]+$"
KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,127}$"
# Kibana's SavedObjectsUtils.isRandomId: a UUID v1-v5, or the nil UUID.
UUID_PATTERN = (
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-5][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
    r"|00000000-0000-0000-0000-000000000000)$"
)
MAX_ID_LENGTH = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def derive_connector_id(space: str, key: str) -> str:
    """Kibana accepts only UUIDs as chosen ids and ids are global across spaces, so a
    human key becomes a UUID v5 over space and key: stable across runs and machines. Spelled out with
    hashlib (as uuid.uuid5 does it: SHA-1 of namespace and name, version 5, RFC 4122 variant) because a
    plan derives one per connector, and the UUID object costs more than the hash."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{space}/{key}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def id_segment_problem(value: object, what: str) -> str | None:
    """Why a connector id cannot travel as one URL path segment, or None when it can. Live ids are not
    kcr's choice (older Kibanas and imports allow ids other than UUIDs), so this, not the key pattern,
    is what decides whether kcr can address a live connector: the client and saved plans share it."""
    if not isinstance(value, str) or not value:
        return f"{what} must be a non-empty string"
    if len(value) > MAX_ID_LENGTH:
        return f"{what} is longer than {MAX_ID_LENGTH} characters"
    if _CONTROL.search(value):
        return f"{what} {value!r} contains control characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} {value!r} is not valid Unicode (a lone surrogate)"
    return None


def owner_label(space: str, key: str, file: str | None) -> str:
    """How secret errors name a connector, `space/key (file)` as `kcr validate` says it; one spelling,
    since the resolver's results are looked up by it wherever secrets are resolved."""
    where = f" ({file})" if file else ""
    return f"{space}/{key}{where}"


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Environment:
    """One Kibana the repository is applied to (kcr.yaml `environments:`). Everything is optional: an
    environment with nothing but a name reads KIBANA_URL and the KIBANA_* credentials as a repository
    without environments does, which is how GitLab's environment-scoped variables are meant to work."""

    name: str
    kibana_url: str | None = None
    kibana_url_env: str | None = None  # the variable holding the URL
    credentials: Mapping[str, str] = field(default_factory=dict)  # api_key/bearer_token/username/password -> var
    spaces: tuple[str, ...] | None = None  # None: every space of the repository
    record: Mapping[str, str] = field(default_factory=dict)  # path | gitlab_state | http_address
    vars: Mapping[str, JSON] = field(default_factory=dict)
    # kcr.yaml `preconfigured:`: True (every connector of the environment) or globs of `key`/`space/key`
    # naming the connectors kibana.yml holds there; a connector's own `preconfigured:` wins (render_kibana)
    preconfigured: bool | tuple[str, ...] = False


@dataclass(frozen=True)
class Settings:
    """Repository settings (kcr.yaml at the repository root; every key optional)."""

    id_mode: str = "uuid5"  # "uuid5": keys become UUID v5 ids; "verbatim": keys are sent as they are
    vault_mounts: tuple[str, ...] = ()  # fallback list of KV mounts, longest prefix wins
    allow_env: tuple[str, ...] = ()  # globs of variables the exfiltration guard lets through
    file_roots: tuple[str, ...] = ()  # extra roots ${file:..} may read (the repository is always one)
    allow_plaintext_secrets: bool = False
    vars: Mapping[str, JSON] = field(default_factory=dict)  # defaults of ${var:NAME}
    environments: Mapping[str, Environment] = field(default_factory=dict)


@dataclass(frozen=True)
class SpaceSettings:
    prune: bool = False
    ignore: tuple[str, ...] = ()  # globs of live ids never touched nor reported


@dataclass(frozen=True)
class ConnectorSpec:
    """One declared connector. `secrets` holds reference templates such as "${env:X}", never values."""

    space: str
    key: str  # as declared under `id:`
    id: str  # the Kibana connector id (the key itself when it is a UUID or id_mode is verbatim)
    name: str
    type: str
    config: Mapping[str, JSON]
    secrets: Mapping[str, JSON]
    protect: bool = False
    location: Location | None = None
    # where each field was written, keyed like "name", "config.apiUrl", "secrets.routingKey"
    locations: Mapping[str, Location] = field(default_factory=dict)
    # kibana.yml `xpack.actions.preconfigured` holds it in this environment: never sent to the API, only
    # checked against what Kibana lists (`kcr render kibana-yml` writes it)
    preconfigured: bool = False


@dataclass(frozen=True)
class DesiredSpace:
    space: str
    settings: SpaceSettings
    connectors: tuple[ConnectorSpec, ...]
    directory: str = ""


@dataclass(frozen=True)
class DesiredState:
    spaces: Mapping[str, DesiredSpace]
    settings: Settings = Settings()
    root: str = "."
    environment: str | None = None  # the kcr.yaml environment this state is for (None: none declared)


@dataclass(frozen=True)
class LiveConnector:
    """A connector as Kibana answers it. `referenced_by_count` is None when the answer does not carry
    it (only GET .../api/actions/connectors does; a single GET, a create or an update do not): unknown,
    which the delete guard must never read as 0."""

    id: str
    name: str
    type: str
    config: Mapping[str, JSON] | None
    is_preconfigured: bool = False
    is_system_action: bool = False
    is_deprecated: bool = False
    is_missing_secrets: bool | None = None
    referenced_by_count: int | None = None

    @classmethod
    def from_api(cls, body: Mapping[str, JSON]) -> LiveConnector:
        """From an answer already checked field by field (answers.live_connector): nothing is defaulted
        here except the flags Kibana may leave out, so a missing name or type raises KeyError."""
        return cls(
            id=body["id"],
            name=body["name"],
            type=body["connector_type_id"],
            config=body.get("config"),
            is_preconfigured=body.get("is_preconfigured", False),
            is_system_action=body.get("is_system_action", False),
            is_deprecated=body.get("is_deprecated", False),
            is_missing_secrets=body.get("is_missing_secrets"),
            referenced_by_count=body.get("referenced_by_count"),
        )


@dataclass(frozen=True)
class ConnectorTypeInfo:
    """What Kibana's connector_types says of a type (licence and enablement)."""

    id: str
    name: str
    enabled: bool = True
    enabled_in_config: bool = True
    enabled_in_license: bool = True
    minimum_license_required: str = "basic"
    is_system_action_type: bool = False


@dataclass(frozen=True)
class LiveSpace:
    space: str
    connectors: tuple[LiveConnector, ...]

    @property
    def possibly_truncated(self) -> bool:
        # Kibana's list stops at 10,000 without saying so.
        return len(self.connectors) >= 10_000


@dataclass(frozen=True)
class RuleRef:
    id: str
    name: str
    space: str | None = None


@dataclass(frozen=True)
class LiveState:
    kibana_url: str
    spaces: Mapping[str, LiveSpace]
    known_spaces: frozenset[str]
    connector_types: Mapping[str, ConnectorTypeInfo]


@dataclass(frozen=True)
class SetChange:
    """What a list Kibana reads as a set (`x-kcr-set` on the field in the type's schema) gains and
    loses: of such a list a reviewer asks which members come and go, not where each one sits."""

    added: tuple[JSON, ...] = ()
    removed: tuple[JSON, ...] = ()


@dataclass(frozen=True)
class FieldDiff:
    """One field's difference, from the live value (before) to the declared one (after). It is made by
    `normalize`, which runs before the planner, and carried by the plan, so it lives with the records."""

    path: str  # "name", "config.apiUrl", "connector_type_id"
    before: JSON
    after: JSON
    kind: str = "changed"  # "added" | "removed" | "changed"
    members: SetChange | None = None  # a set-like list's members in and out; before/after stay whole

    def to_json(self) -> dict[str, JSON]:
        body: dict[str, JSON] = {"path": self.path, "kind": self.kind, "before": self.before, "after": self.after}
        if self.members is not None:  # only set-like lists carry it: every other diff reads as it always did
            body["members"] = {"added": list(self.members.added), "removed": list(self.members.removed)}
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, JSON]) -> FieldDiff:
        members = body.get("members")
        return cls(
            path=body["path"],
            before=body.get("before"),
            after=body.get("after"),
            kind=body.get("kind", "changed"),
            members=None if members is None
            else SetChange(added=tuple(members["added"]), removed=tuple(members["removed"])),
        )


@dataclass(frozen=True)
class SecretDigest:
    """What the record of applied secrets keeps per connector: HMAC-SHA256 per secret key (keyed by
    KCR_FINGERPRINT_KEY, so nothing can be learnt from it) and the KV version of each Vault reference.
    `hmacs` is empty when no key is configured."""

    hmacs: Mapping[str, str] = field(default_factory=dict)
    vault_versions: Mapping[str, int] = field(default_factory=dict)  # reference text -> version

    def to_json(self) -> dict[str, JSON]:
        return {"hmacs": dict(sorted(self.hmacs.items())),
                "vault_versions": dict(sorted(self.vault_versions.items()))}

    @classmethod
    def from_json(cls, body: Mapping[str, JSON]) -> SecretDigest:
        return cls(hmacs=dict(body.get("hmacs") or {}),
                   vault_versions={k: int(v) for k, v in (body.get("vault_versions") or {}).items()})
