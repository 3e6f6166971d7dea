"""Executes a Plan. It never decides what to do: every action comes from `plan.changes`; apply only
refuses an action when Kibana moved since the plan (stale), a guard says no (blocked), or Kibana
answers with an error (failed). Every result is reported; one failure never hides another.

Order: creates and updates run first (concurrently, at most `parallelism` at a time), then deletes
and recreates (a recreate deletes, then creates the same id at once). Before each mutation the live
connector is read again and compared with the fingerprint the plan was made from; deletes and
recreates re-read `referenced_by_count` (one list per space at the start of that phase, since a
single GET does not carry it). Secrets are resolved once, before anything is sent, and must be the
ones the plan saw (their digest); the record of applied secrets is updated for what succeeded,
under the backend's lock for the whole run.

This module holds the run: the order, the reads and the requests. Why an action is refused is in
`apply_checks`, the record's bookkeeping in `record_keeper`, the report it returns in `apply_report`
(rendered by `render`).

No secret value leaves this module except inside a request body: messages are built without them
and, as a second line of defence, scrubbed of every resolved value before they are reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol, runtime_checkable

from reconciler import apply_checks as checks
from reconciler.apply_checks import AllowReferenced, Lists, Outcome, describe
from reconciler.apply_report import ActionResult, ApplyReport, Status
from reconciler.errors import ConfigError, KibanaConflict, KibanaNotFound, StateError
from reconciler.masking import Masker
from reconciler.model import LiveConnector, RuleRef, SecretDigest, owner_label
from reconciler.plan import MUTATING, Action, Change, Plan, has_plaintext_marker
from reconciler.record_keeper import Record, RecordKeeper

log = logging.getLogger("kcr.applier")

StaleCheck = Literal["get", "list"]


# --- what apply needs of its collaborators (the real classes satisfy these structurally) --------


class ConnectorClient(Protocol):
    def list_connectors(self, space: str) -> list[LiveConnector]: ...

    def get_connector(self, space: str, id: str) -> LiveConnector | None: ...

    def create_connector(
        self, space: str, id: str, *, name: str, type: str, config: dict[str, Any], secrets: dict[str, Any]
    ) -> LiveConnector: ...

    def update_connector(
        self, space: str, id: str, *, name: str, config: dict[str, Any], secrets: dict[str, Any]
    ) -> LiveConnector: ...

    def delete_connector(self, space: str, id: str) -> None: ...


class Resolved(Protocol):
    @property
    def vault_versions(self) -> Mapping[str, int]: ...

    def payload(self) -> dict[str, Any]: ...

    def digest(self, connector_id: str, key: bytes | None) -> SecretDigest: ...


class Resolver(Protocol):
    def resolve_many(self, items: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Resolved]: ...


@runtime_checkable
class LockingRecord(Protocol):
    def lock(self, info: Any) -> None: ...

    def unlock(self) -> None: ...


# --- the run ------------------------------------------------------------------------------------


def _owner(change: Change) -> str:
    """The label SecretError messages name: `space/key (file)`, as `kcr validate` says it."""
    if change.desired is None:
        return change.address
    return owner_label(change.space, change.desired.key, change.desired.file)


class _Run:
    def __init__(
        self,
        client: ConnectorClient,
        secrets: Mapping[str, Resolved],
        digests: Mapping[str, SecretDigest],
        allow_referenced: AllowReferenced,
        scrub: Masker,
        on_progress: Callable[[ActionResult], None] | None,
        keeper: RecordKeeper,
    ) -> None:
        self.client = client
        self.keeper = keeper
        self.secrets = secrets  # by address
        self.digests = digests  # by address, computed now
        self.allow_referenced = allow_referenced
        self.scrub = scrub
        self.on_progress = on_progress
        self.stale_check: StaleCheck = "get"
        self.lists: Lists = {}  # read at the start of each phase
        self.deleted: set[str] = set()  # addresses whose delete went through (recreates included)
        self.unsendable: set[str] = set()  # addresses whose saved plan holds a plaintext-secret marker
        self._progress_lock = threading.Lock()
        self._deleted_lock = threading.Lock()

    def report(self, result: ActionResult) -> None:
        log.info("apply %s %s: %s", result.action.value, result.address, result.status.value)
        if self.on_progress is None:
            return
        with self._progress_lock:
            try:
                self.on_progress(result)
            except Exception as exc:  # a broken progress display must not stop an apply half-way
                log.warning("progress display failed: %s", self.scrub(describe(exc)))

    def check_live(self, change: Change) -> None:
        if change.action is Action.CREATE and self.stale_check == "get":
            # Kibana's POST never overwrites (409 on any id that exists, in any space), so the create
            # itself is the exact stale check: one request instead of two (see _create).
            return
        if self.stale_check == "list":
            live = checks.listed(change, self.lists, "the live connectors").get(change.id)
        else:
            live = self.client.get_connector(change.space, change.id)
        checks.check_live(change, live)

    def rules_using(self, change: Change) -> tuple[RuleRef, ...]:
        """The rules that use a connector apply blocks, read now as the plan read them (a client
        without the lookup, or a failed one, leaves the plan's names: the block stands either way)."""
        lookup = getattr(self.client, "rules_referencing", None)
        if not callable(lookup):
            return ()
        try:
            found = lookup(change.space, change.id)
        except Exception as exc:  # only names are lost
            log.info("rules using %s not read: %s", change.address, self.scrub(describe(exc)))
            return ()
        return tuple(sorted(found, key=lambda r: (r.space or "", r.name, r.id)))

    # -- actions

    def _create(self, change: Change) -> None:
        assert change.desired is not None  # checked in run_one
        try:
            self.client.create_connector(change.space, change.id, type=change.desired.type, **self._body(change))
        except KibanaConflict:
            if change.action is not Action.CREATE:
                raise
            if self.client.get_connector(change.space, change.id) is None:
                # Ids are global across spaces: the id is taken in a space this plan did not read.
                raise Outcome(Status.FAILED, "this id is used by a connector in another space (Kibana ids are "
                                             "global across spaces); change the id, or delete that one") from None
            raise Outcome(Status.STALE, f"now exists in Kibana (409 conflict): {checks.STALE_LIVE}") from None

    def _body(self, change: Change) -> dict[str, Any]:
        """What a create and an update both send: the name, the config and the resolved secrets."""
        assert change.desired is not None
        return {"name": change.desired.name, "config": dict(change.desired.config),
                "secrets": self.secrets[change.address].payload()}

    def _delete(self, change: Change) -> bool:
        """False when the connector vanished between the read and the delete: gone all the same."""
        try:
            self.client.delete_connector(change.space, change.id)
            found = True
        except KibanaNotFound:
            found = False
        with self._deleted_lock:
            self.deleted.add(change.address)
        return found

    def perform(self, change: Change) -> str:
        if change.address in self.unsendable:
            raise Outcome(Status.FAILED, checks.PLAINTEXT_IN_SAVED_PLAN)
        checks.check_protect(change)
        checks.check_secrets(change, self.digests)
        self.check_live(change)
        if change.action in (Action.DELETE, Action.RECREATE):
            connectors = checks.listed(change, self.lists, "referenced_by_count")
            checks.check_references(change, connectors, self.allow_referenced, lambda: self.rules_using(change))
        if change.action is Action.CREATE:
            self._create(change)
        elif change.action is Action.UPDATE:
            self.client.update_connector(change.space, change.id, **self._body(change))
        elif change.action is Action.DELETE:
            if not self._delete(change):
                return "already gone when the delete was sent"
        else:  # RECREATE
            self._delete(change)
            try:
                self._create(change)
            except Exception as exc:
                raise Outcome(
                    Status.FAILED,
                    f"deleted, but re-create failed: {describe(exc)}; re-run kcr apply to create it",
                ) from None
        return ""

    def run_one(self, change: Change) -> ActionResult:
        start = time.perf_counter()
        try:
            if change.desired is None and change.action is not Action.DELETE:
                raise Outcome(Status.FAILED, "the plan holds no desired state for this action; re-run kcr plan")
            status, message = Status.OK, self.perform(change)
        except Outcome as out:
            status, message = out.status, out.message
        except Exception as exc:  # every failure becomes a result; the others go on
            status, message = Status.FAILED, describe(exc)
        result = ActionResult(
            address=change.address,
            action=change.action,
            status=status,
            message=self.scrub(message),
            duration=time.perf_counter() - start,
        )
        with self._deleted_lock:
            deleted = change.address in self.deleted
        self.keeper.note(change, result, deleted)
        self.report(result)
        return result


def _run_phase(pool: ThreadPoolExecutor, run: _Run, changes: Sequence[Change], workers: int) -> list[ActionResult]:
    """Each of `workers` threads takes the next change until none is left, results in the changes'
    order: a future per worker, not one per change (10,000 futures with their locks and conditions
    were a twentieth of a large apply's CPU)."""
    results: list[ActionResult | None] = [None] * len(changes)
    pending = iter(enumerate(changes))
    taking = threading.Lock()

    def work() -> None:
        while True:
            with taking:
                item = next(pending, None)
            if item is None:
                return
            index, change = item
            results[index] = run.run_one(change)

    for future in [pool.submit(work) for _ in range(min(workers, len(changes)))]:
        future.result()
    return [r for r in results if r is not None]


def _read_lists(pool: ThreadPoolExecutor, run: _Run, spaces: Iterable[str]) -> None:
    """One list per space at the start of a phase: a single GET has no referenced_by_count, and in
    "list" mode the list also stands in for the per-connector GET."""

    def read(space: str) -> tuple[str, Mapping[str, LiveConnector] | Exception]:
        try:
            return space, {c.id: c for c in run.client.list_connectors(space)}
        except Exception as exc:
            return space, exc

    run.lists = dict(pool.map(read, sorted(set(spaces))))


def _lock_note(plan: Plan) -> dict[str, str]:
    """The plan's part of what the lock says; `reconciler.state.lock_info` writes the lock from it."""
    return {"Operation": "kcr apply", "Info": f"{plan.kibana_url} spaces={','.join(plan.spaces)}"}


def apply_plan(
    plan: Plan,
    client: ConnectorClient,
    resolver: Resolver,
    record: Record,
    *,
    parallelism: int = 4,
    allow_referenced: AllowReferenced = frozenset(),
    fingerprint_key: bytes | None,
    on_progress: Callable[[ActionResult], None] | None = None,
    lock: Any = None,
    stale_check: StaleCheck = "get",
    secret_refs: Mapping[str, Mapping[str, Any]] | None = None,
) -> ApplyReport:
    """Apply every mutating change of `plan`. Raises SecretError (nothing sent) when a secret cannot
    be resolved and StateError when the record cannot be locked or loaded; everything after the
    first mutation is reported in the ApplyReport instead. `lock` is the Operation and Info the lock
    states (default: the plan's Kibana and spaces).

    `stale_check`: "get" re-reads each connector right before its update or delete (2 requests per
    action); a create needs no read, since Kibana's POST refuses any id that exists (409 → stale);
    "list" compares with one list per space read at the start of each phase (1 request per action
    plus one per space), a wider window for a concurrent edit but half the requests, for large
    applies over slow links.

    `secret_refs` (by address) replaces the plan's references when plan and apply run in one process:
    the only way a plaintext secret, which a saved plan never holds, reaches Kibana."""
    if parallelism < 1:
        raise ConfigError(f"--parallelism must be at least 1 (got {parallelism})")
    changes = [c for c in plan.changes if c.action in MUTATING]
    if not changes:
        return ApplyReport(results=(), record_updated=False)

    refs = {c.address: (secret_refs or {}).get(c.address, c.desired.secret_refs)
            for c in changes if c.action is not Action.DELETE and c.desired is not None}
    # A plaintext secret (allow_plaintext_secrets) is never written to a saved plan: only a one-run
    # apply, which passes the repository's own values as `secret_refs`, can send it.
    unsendable = {address for address, r in refs.items() if has_plaintext_marker(r)}
    sending = [c for c in changes if c.address in refs and c.address not in unsendable]
    owners = {_owner(c): c for c in sending}
    resolved_by_owner = resolver.resolve_many({owner: dict(refs[c.address]) for owner, c in owners.items()})
    secrets = {c.address: resolved_by_owner[owner] for owner, c in owners.items()}
    digests = {c.address: secrets[c.address].digest(c.id, fingerprint_key) for c in sending}
    scrub = Masker(*(s.payload() for s in secrets.values()))
    keeper = RecordKeeper(record, digests, scrub)
    run = _Run(client, secrets, digests, allow_referenced, scrub, on_progress, keeper)
    run.stale_check = stale_check
    run.unsendable = unsendable

    locker = record if isinstance(record, LockingRecord) else None
    if locker is not None:
        locker.lock(lock if lock is not None else _lock_note(plan))
    try:
        keeper.load()
        first = [c for c in changes if c.action in (Action.CREATE, Action.UPDATE)]
        second = [c for c in changes if c.action in (Action.DELETE, Action.RECREATE)]
        by_address: dict[str, ActionResult] = {}
        with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="kcr-apply") as pool:
            if first and stale_check == "list":
                _read_lists(pool, run, (c.space for c in first))
            for r in _run_phase(pool, run, first, parallelism):
                by_address[r.address] = r
            if second:
                _read_lists(pool, run, (c.space for c in second))
                for r in _run_phase(pool, run, second, parallelism):
                    by_address[r.address] = r
        results = tuple(by_address[c.address] for c in changes)
        changed = keeper.finish()
        return ApplyReport(results=results, record_updated=changed, record_error=keeper.error)
    finally:
        if locker is not None:
            try:
                locker.unlock()
            except StateError as exc:
                log.warning("could not release the record lock: %s", exc)
