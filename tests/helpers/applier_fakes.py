"""Stateful fakes of the applier's Protocols (client, resolver, record), so apply tests assert on the
end state instead of on calls, plus small Change and Plan builders: connector `n` has id `cid(n)`, its
secret reference is `${env:Sn}`, and `env_for(n)` sets that variable."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from reconciler.applier import apply_plan
from reconciler.apply_report import ActionResult, ApplyReport
from reconciler.errors import KibanaConflict, KibanaNotFound, SecretError
from reconciler.model import LiveConnector, SecretDigest
from reconciler.plan import Action, Change, Desired, Guard, Plan, live_fingerprint

KEY = b"fingerprint-key"
_REF = re.compile(r"\$\{env:([A-Z0-9_]+)\}")


# --- fakes ------------------------------------------------------------------------------------


class FakeClient:
    def __init__(self, connectors: Mapping[tuple[str, str], LiveConnector] = ()) -> None:  # type: ignore[assignment]
        self.store: dict[tuple[str, str], LiveConnector] = dict(connectors)
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.counts: dict[str, int] = {}  # id -> referenced_by_count as the list reports it
        self.calls: list[tuple[str, str]] = []  # (verb, id) of mutations, in order
        self.reads: list[tuple[str, str]] = []
        self.fail: dict[tuple[str, str], Exception] = {}  # (verb, id) -> raised
        self.fail_list: Exception | None = None
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.gate: threading.Event | None = None
        self.gate_at = 0
        self.on_mutation: Any = None
        self.threads: set[int] = set()  # the threads that ever sent a mutation

    def _enter(self, verb: str, id: str) -> None:
        with self.lock:
            self.calls.append((verb, id))
            self.threads.add(threading.get_ident())
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            reached = self.active >= self.gate_at
        if self.on_mutation is not None:
            self.on_mutation(verb, id)
        if self.gate is not None:
            if reached:
                self.gate.set()
            assert self.gate.wait(timeout=10), "the other workers never arrived"

    def _leave(self) -> None:
        with self.lock:
            self.active -= 1

    def _raise(self, verb: str, id: str) -> None:
        exc = self.fail.get((verb, id))
        if exc is not None:
            raise exc

    def list_connectors(self, space: str) -> list[LiveConnector]:
        with self.lock:
            self.reads.append(("list", space))
        if self.fail_list is not None:
            raise self.fail_list
        return [dataclasses.replace(c, referenced_by_count=self.counts.get(c.id, 0))
                for (s, _), c in sorted(self.store.items()) if s == space]

    def get_connector(self, space: str, id: str) -> LiveConnector | None:
        with self.lock:
            self.reads.append(("get", id))
        return self.store.get((space, id))

    def create_connector(self, space: str, id: str, *, name: str, type: str, config: Mapping[str, Any],
                         secrets: Mapping[str, Any]) -> LiveConnector:
        self._enter("create", id)
        try:
            self._raise("create", id)
            if any(key == id for _, key in self.store):  # Kibana: ids are global, POST never overwrites
                raise KibanaConflict(f"Saved object [action/{id}] conflict", 409)
            conn = LiveConnector(id=id, name=name, type=type, config=dict(config), is_missing_secrets=False)
            self.store[(space, id)] = conn
            self.secrets[(space, id)] = dict(secrets)
            return conn
        finally:
            self._leave()

    def update_connector(self, space: str, id: str, *, name: str, config: Mapping[str, Any],
                         secrets: Mapping[str, Any]) -> LiveConnector:
        self._enter("update", id)
        try:
            self._raise("update", id)
            old = self.store[(space, id)]
            conn = dataclasses.replace(old, name=name, config=dict(config), is_missing_secrets=False)
            self.store[(space, id)] = conn
            self.secrets[(space, id)] = dict(secrets)
            return conn
        finally:
            self._leave()

    def delete_connector(self, space: str, id: str) -> None:
        self._enter("delete", id)
        try:
            self._raise("delete", id)
            if (space, id) not in self.store:
                raise KibanaNotFound(f"Saved object [action/{id}] not found", 404)
            del self.store[(space, id)]
        finally:
            self._leave()


@dataclasses.dataclass(frozen=True)
class FakeResolved:
    values: Mapping[str, str]
    vault_versions: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return dict(self.values)

    def digest(self, connector_id: str, key: bytes | None) -> SecretDigest:
        hmacs = {k: hashlib.sha256(key + f"{connector_id}/{k}={v}".encode()).hexdigest()
                 for k, v in self.values.items()} if key else {}
        return SecretDigest(hmacs=hmacs, vault_versions=dict(self.vault_versions))


class FakeResolver:
    def __init__(self, env: Mapping[str, str], versions: Mapping[str, int] | None = None) -> None:
        self.env = dict(env)
        self.versions = dict(versions or {})
        self.calls: list[dict[str, Any]] = []

    def resolve(self, templates: Mapping[str, Any]) -> FakeResolved:
        values = {}
        for k, text in templates.items():
            m = _REF.fullmatch(text)
            assert m is not None
            if m.group(1) not in self.env:
                raise SecretError(f"{text}: the environment variable {m.group(1)} is not set")
            values[k] = self.env[m.group(1)]
        versions = {t: self.versions[t] for t in templates.values() if t in self.versions}
        return FakeResolved(values, versions)

    def resolve_many(self, items: Mapping[str, Mapping[str, Any]]) -> dict[str, FakeResolved]:
        self.calls.append({k: dict(v) for k, v in items.items()})
        return {owner: self.resolve(templates) for owner, templates in items.items()}


class FakeRecord:
    def __init__(self, initial: Mapping[str, SecretDigest] | None = None, events: list[str] | None = None) -> None:
        self.data = dict(initial or {})
        self.saves: list[dict[str, SecretDigest]] = []
        self.events = events if events is not None else []
        self.locked = False
        self.lock_info: Any = None
        self.fail_load: Exception | None = None
        self.fail_save: Exception | None = None

    def load(self) -> dict[str, SecretDigest]:
        self.events.append("load")
        if self.fail_load is not None:
            raise self.fail_load
        return dict(self.data)

    def save(self, record: Mapping[str, SecretDigest]) -> None:
        self.events.append("save")
        if self.fail_save is not None:
            raise self.fail_save
        self.saves.append(dict(record))
        self.data = dict(record)

    def lock(self, info: Any = None) -> None:
        self.events.append("lock")
        self.locked = True
        self.lock_info = info

    def unlock(self) -> None:
        self.events.append("unlock")
        self.locked = False


class PlainRecord:
    """A backend without lock/unlock."""

    def __init__(self) -> None:
        self.data: dict[str, SecretDigest] = {}

    def load(self) -> dict[str, SecretDigest]:
        return dict(self.data)

    def save(self, record: Mapping[str, SecretDigest]) -> None:
        self.data = dict(record)


# --- plan helpers -----------------------------------------------------------------------------


def cid(n: int) -> str:
    return str(uuid.UUID(int=n, version=4))


def live(n: int, *, name: str | None = None, type: str = ".slack", config: Mapping[str, Any] | None = None,
         count: int = 0) -> LiveConnector:
    return LiveConnector(id=cid(n), name=name or f"c{n}", type=type, config=dict(config or {}),
                         is_missing_secrets=False, referenced_by_count=count)


def desired(n: int, *, name: str | None = None, type: str = ".slack", protect: bool = False,
            refs: Mapping[str, str] | None = None) -> Desired:
    return Desired(name=name or f"c{n}", type=type, config={}, key=f"k{n}", protect=protect,
                   secret_refs=dict(refs if refs is not None else {"webhookUrl": f"${{env:S{n}}}"}),
                   file=f"connectors/default/c{n}.yaml")


def digest_for(resolver: FakeResolver, n: int, d: Desired, key: bytes | None = KEY) -> SecretDigest:
    return resolver.resolve(d.secret_refs).digest(cid(n), key)


def change(action: Action, n: int, *, before: LiveConnector | None = None, want: Desired | None = None,
           resolver: FakeResolver | None = None, space: str = "default", count: int = 0,
           guard: Guard | None = None, digest: SecretDigest | None = None) -> Change:
    if want is not None and digest is None and resolver is not None:
        digest = digest_for(resolver, n, want)
    return Change(
        space=space, id=cid(n), action=action, reason="test", name=(want or before).name,  # type: ignore[union-attr]
        type=(want or before).type, live_type=None if before is None else before.type,  # type: ignore[union-attr]
        referenced_by_count=count, guard=guard or Guard(),
        live_fingerprint=None if before is None else live_fingerprint(before),
        desired=want, secret_digest=digest,
    )


def plan_of(*changes: Change) -> Plan:
    return Plan(kibana_url="http://kibana.test", spaces=("default",), changes=changes)


def env_for(*ns: int, value: str = "https://hooks.example/{n}") -> dict[str, str]:
    return {f"S{n}": value.format(n=n) for n in ns}


def run(plan: Plan, client: FakeClient, resolver: FakeResolver, record: Any = None, **kw: Any) -> ApplyReport:
    kw.setdefault("fingerprint_key", KEY)
    return apply_plan(plan, client, resolver, record if record is not None else FakeRecord(), **kw)


def by_address(report: ApplyReport) -> dict[str, ActionResult]:
    return {r.address: r for r in report.results}
