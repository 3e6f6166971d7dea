"""Executes a Plan. It never decides what to do: every action comes from `plan.changes`; apply only
refuses an action when Kibana moved since the plan (stale), a guard says no (blocked), or Kibana
answers with an error (failed). Every result is reported; one failure never hides another.

Order: creates and updates run first (concurrently, at most `parallelism` at a time), then deletes
and recreates (a recreate deletes, then creates the same id at once). Before each mutation the live
connector is read again and compared with the fingerprint the plan was made from; deletes and
recreates re-read `referenced_by_count` (one list per space at the start of that phase, since a
single GET does not carry it). Secrets are resolved once, before anything is sent, and must be the
ones the plan saw (their digest); the record of applied secrets is updated for what succeeded and
saved once, under the backend's lock for the whole run.

No secret value leaves this module except inside a request body: messages are built without them
and, as a second line of defence, scrubbed of every resolved value before they are reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from reconciler.errors import ConfigError, ExitCode, KibanaConflict, KibanaNotFound, ReconcilerError, StateError
from reconciler.masking import Masker
from reconciler.model import LiveConnector, SecretDigest, owner_label
from reconciler.plan import MUTATING, Action, Change, Plan, has_plaintext_marker, live_fingerprint

log = logging.getLogger("kcr.applier")

AllowReferenced = frozenset[str] | Literal["all"]
StaleCheck = Literal["get", "list"]

STALE_LIVE = "changed in Kibana since the plan was made; re-run kcr plan"
STALE_SECRETS = "secrets changed since the plan was made; re-run kcr plan"
UNKNOWN_COUNT = "referenced_by_count could not be re-read, so nothing was sent"
UNKNOWN_COUNT_FIX = ("re-run kcr apply; if it stays blocked, check that GET .../api/actions/connectors of that "
                     "space lists the connector with its referenced_by_count (--allow-referenced does not lift this)")


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


class Record(Protocol):
    def load(self) -> dict[str, SecretDigest]: ...

    def save(self, record: dict[str, SecretDigest]) -> None: ...


@runtime_checkable
class LockingRecord(Protocol):
    def lock(self, info: Any) -> None: ...

    def unlock(self) -> None: ...


# --- results ------------------------------------------------------------------------------------


PLAINTEXT_IN_SAVED_PLAN = ("a plaintext secret (allow_plaintext_secrets) is never written to a saved plan; "
                           "apply it with `kcr apply` (plan and apply in one run)")
SAVE_INTERVAL_S = 0.25  # how often a long apply saves the record of applied secrets (and once at the end)


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    STALE = "stale"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class ActionResult:
    address: str
    action: Action
    status: Status
    message: str = ""
    duration: float = 0.0  # seconds, Kibana requests included

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "action": self.action.value,
            "status": self.status.value,
            "message": self.message,
            "duration": round(self.duration, 3),
        }


@dataclass(frozen=True)
class ApplyReport:
    results: tuple[ActionResult, ...]
    record_updated: bool
    record_error: str | None = None  # the record could not be saved (the actions themselves happened)
    counts: Mapping[str, int] = field(init=False)

    def __post_init__(self) -> None:
        counts = {s.value: 0 for s in Status}
        for r in self.results:
            counts[r.status.value] += 1
        object.__setattr__(self, "counts", counts)

    def with_status(self, status: Status) -> tuple[ActionResult, ...]:
        return tuple(r for r in self.results if r.status is status)


def exit_code(report: ApplyReport) -> int:
    """0 when everything succeeded; 1 when anything failed or was stale (or the record could not be
    saved); 3 when guards blocked something and nothing else went wrong."""
    c = report.counts
    if c[Status.FAILED] or c[Status.STALE] or report.record_error:
        return ExitCode.ERROR
    if c[Status.BLOCKED]:
        return ExitCode.BLOCKED
    return ExitCode.OK


# --- the run ------------------------------------------------------------------------------------


def _owner(change: Change) -> str:
    """The label SecretError messages name: `space/key (file)`, as `kcr validate` says it."""
    if change.desired is None:
        return change.address
    return owner_label(change.space, change.desired.key, change.desired.file)


def _digest_matches(planned: SecretDigest | None, now: SecretDigest) -> bool:
    """HMACs are compared when both sides have them (a run without the key has none), Vault versions
    for every reference the plan recorded. A plan without a digest promised nothing to compare."""
    if planned is None:
        return True
    if planned.hmacs and now.hmacs and dict(planned.hmacs) != dict(now.hmacs):
        return False
    return all(now.vault_versions.get(ref) == version for ref, version in planned.vault_versions.items())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ReconcilerError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class _Outcome(Exception):
    """Ends one action early with a status other than ok (internal control flow only)."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _RecordKeeper:
    """The record of applied secrets, updated as results arrive and saved every few seconds and at the
    end, so a run killed half-way loses at most the last few seconds of its record (the connectors it
    changed would otherwise show "secrets unknown" and a later rotation would go unnoticed). It only
    ever claims what succeeded, so an early save is never a lie."""

    def __init__(self, record: Record, digests: Mapping[str, SecretDigest], scrub: Masker,
                 interval: float = SAVE_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.record = record
        self.digests = digests
        self.scrub = scrub
        self.interval = interval
        self.clock = clock
        self.stored: dict[str, SecretDigest] = {}
        self.current: dict[str, SecretDigest] = {}
        self.saved: dict[str, SecretDigest] = {}
        self.error: str | None = None
        self._lock = threading.Lock()
        self._saving = threading.Lock()
        self._last_save = clock()

    def load(self) -> None:
        self.stored = dict(self.record.load())
        self.current = dict(self.stored)
        self.saved = dict(self.stored)

    def note(self, change: Change, result: ActionResult, deleted: bool) -> None:
        with self._lock:
            if deleted:
                self.current.pop(change.id, None)
            if result.status is Status.OK and change.action is not Action.DELETE:
                self.current[change.id] = self.digests[change.address]
            due = self.clock() - self._last_save >= self.interval
            if due:
                self._last_save = self.clock()
        if due:
            self._save()

    def finish(self) -> bool:
        """True when the record now differs from what the run found."""
        self._save()
        return self.error is None and self.saved != self.stored

    def _save(self) -> None:
        """One save at a time, outside the lock the workers share: a slow HTTP backend delays only the
        worker that happens to save, and a later save always writes the latest record."""
        with self._saving:
            with self._lock:
                snapshot = dict(self.current)
            if snapshot == self.saved:
                return
            try:
                self.record.save(snapshot)
            except ReconcilerError as exc:
                self.error = self.scrub(str(exc))
                return
            self.saved = snapshot
            self.error = None


class _Run:
    def __init__(
        self,
        client: ConnectorClient,
        secrets: Mapping[str, Resolved],
        digests: Mapping[str, SecretDigest],
        allow_referenced: AllowReferenced,
        scrub: Masker,
        on_progress: Callable[[ActionResult], None] | None,
        keeper: _RecordKeeper,
    ) -> None:
        self.client = client
        self.keeper = keeper
        self.secrets = secrets  # by address
        self.digests = digests  # by address, computed now
        self.allow_referenced = allow_referenced
        self.scrub = scrub
        self.on_progress = on_progress
        self.stale_check: StaleCheck = "get"
        self.lists: dict[str, Mapping[str, LiveConnector] | Exception] = {}  # space -> id -> live, per phase
        self.deleted: set[str] = set()  # addresses whose delete went through (recreates included)
        self.unsendable: set[str] = set()  # addresses whose saved plan holds a plaintext-secret marker
        self._progress_lock = threading.Lock()
        self._deleted_lock = threading.Lock()

    # -- reporting

    def report(self, result: ActionResult) -> None:
        log.info("apply %s %s: %s", result.action.value, result.address, result.status.value)
        if self.on_progress is None:
            return
        with self._progress_lock:
            try:
                self.on_progress(result)
            except Exception as exc:  # a broken progress display must not stop an apply half-way
                log.warning("progress display failed: %s", self.scrub(_describe(exc)))

    # -- checks

    def check_secrets(self, change: Change) -> None:
        if change.action is Action.DELETE:
            return
        if not _digest_matches(change.secret_digest, self.digests[change.address]):
            raise _Outcome(Status.STALE, STALE_SECRETS)

    def check_protect(self, change: Change) -> None:
        if change.action not in (Action.DELETE, Action.RECREATE):
            if change.guard.blocked:  # the planner blocked something no re-read can lift
                raise _Outcome(Status.BLOCKED, "; ".join(change.guard.reasons) or "blocked by the plan")
            return
        if change.desired is not None and change.desired.protect:
            verb = "deleted" if change.action is Action.DELETE else "recreated"
            raise _Outcome(Status.BLOCKED, f"protect: true — this connector is never {verb}")
        if change.guard.blocked and change.referenced_by_count == 0:
            raise _Outcome(Status.BLOCKED, "; ".join(change.guard.reasons) or "blocked by the plan")

    def _listed(self, change: Change, what: str) -> Mapping[str, LiveConnector]:
        """The space's list read at the start of the phase. A delete or recreate that cannot have it
        is blocked, not failed: nothing was sent, and nothing proves the connector unused."""
        listed = self.lists.get(change.space)
        guarded = change.action in (Action.DELETE, Action.RECREATE)
        if isinstance(listed, Exception):
            if guarded:
                raise _Outcome(Status.BLOCKED, f"{UNKNOWN_COUNT}: the list of connectors of space "
                                               f"{change.space} could not be read ({_describe(listed)}); "
                                               f"{UNKNOWN_COUNT_FIX}")
            raise _Outcome(Status.FAILED, f"could not re-read {what}: {_describe(listed)}")
        if listed is None and guarded:
            raise _Outcome(Status.BLOCKED, f"{UNKNOWN_COUNT}: the connectors of space {change.space} were not "
                                           f"listed; {UNKNOWN_COUNT_FIX}")
        return listed or {}

    def check_live(self, change: Change) -> None:
        if change.action is Action.CREATE and self.stale_check == "get":
            # Kibana's POST never overwrites (409 on any id that exists, in any space), so the create
            # itself is the exact stale check: one request instead of two (see _create).
            return
        if self.stale_check == "list":
            live = self._listed(change, "the live connectors").get(change.id)
        else:
            live = self.client.get_connector(change.space, change.id)
        now = None if live is None else live_fingerprint(live)
        if now == change.live_fingerprint:
            if live is not None and live.type != change.live_type:
                # The fingerprint covers the type, so this is a plan whose live_type was edited: a
                # "recreate" of a connector whose type does not change would delete it for nothing.
                raise _Outcome(Status.STALE, f"Kibana holds a {live.type} connector, the plan says "
                                             f"{change.live_type}: {STALE_LIVE}")
            return
        if change.live_fingerprint is None:
            raise _Outcome(Status.STALE, f"now exists in Kibana: {STALE_LIVE}")
        if live is None:
            raise _Outcome(Status.STALE, f"no longer exists in Kibana: {STALE_LIVE}")
        raise _Outcome(Status.STALE, STALE_LIVE)

    def check_references(self, change: Change) -> None:
        """Fails closed: a connector missing from the list (cut at 10,000, or a partial answer) or
        listed without a count blocks whatever --allow-referenced says, since that flag lifts a known
        count, not an unknown one."""
        connectors = self._listed(change, "referenced_by_count")
        listed = connectors.get(change.id)
        if listed is None:
            raise _Outcome(Status.BLOCKED, f"{UNKNOWN_COUNT}: Kibana's list of space {change.space} "
                                           f"({len(connectors)} connectors) does not include it (a list cut at "
                                           f"10,000, or a partial answer); {UNKNOWN_COUNT_FIX}")
        count = listed.referenced_by_count
        if count is None:
            raise _Outcome(Status.BLOCKED, f"{UNKNOWN_COUNT}: Kibana's list of space {change.space} carries no "
                                           f"count for it; {UNKNOWN_COUNT_FIX}")
        keys = {change.desired.key, f"{change.space}/{change.desired.key}"} if change.desired else set()
        names_for = {change.id, change.address} | keys
        allowed = self.allow_referenced == "all" or bool(names_for & set(self.allow_referenced))
        if count > 0 and not allowed:
            names = ", ".join(f"{r.name} ({r.id})" for r in change.guard.rules)
            used_by = f" (rules: {names})" if names else ""
            raise _Outcome(
                Status.BLOCKED,
                f"referenced by {count} saved object{'s' if count != 1 else ''}{used_by}; "
                f"pass --allow-referenced {change.id} (or all) to {change.action.value} it anyway",
            )

    # -- actions

    def _create(self, change: Change) -> None:
        assert change.desired is not None  # checked in run_one
        try:
            self._post(change)
        except KibanaConflict:
            if change.action is not Action.CREATE:
                raise
            if self.client.get_connector(change.space, change.id) is None:
                # Ids are global across spaces: the id is taken in a space this plan did not read.
                raise _Outcome(Status.FAILED, "this id is used by a connector in another space (Kibana ids are "
                                              "global across spaces); change the id, or delete that one") from None
            raise _Outcome(Status.STALE, f"now exists in Kibana (409 conflict): {STALE_LIVE}") from None

    def _post(self, change: Change) -> None:
        assert change.desired is not None
        self.client.create_connector(
            change.space,
            change.id,
            name=change.desired.name,
            type=change.desired.type,
            config=dict(change.desired.config),
            secrets=self.secrets[change.address].payload(),
        )

    def _update(self, change: Change) -> None:
        assert change.desired is not None
        self.client.update_connector(
            change.space,
            change.id,
            name=change.desired.name,
            config=dict(change.desired.config),
            secrets=self.secrets[change.address].payload(),
        )

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
            raise _Outcome(Status.FAILED, PLAINTEXT_IN_SAVED_PLAN)
        self.check_protect(change)
        self.check_secrets(change)
        self.check_live(change)
        if change.action in (Action.DELETE, Action.RECREATE):
            self.check_references(change)
        if change.action is Action.CREATE:
            self._create(change)
        elif change.action is Action.UPDATE:
            self._update(change)
        elif change.action is Action.DELETE:
            if not self._delete(change):
                return "already gone when the delete was sent"
        else:  # RECREATE
            self._delete(change)
            try:
                self._create(change)
            except Exception as exc:
                raise _Outcome(
                    Status.FAILED,
                    f"deleted, but re-create failed: {_describe(exc)}; re-run kcr apply to create it",
                ) from None
        return ""

    def run_one(self, change: Change) -> ActionResult:
        start = time.perf_counter()
        try:
            if change.desired is None and change.action is not Action.DELETE:
                raise _Outcome(Status.FAILED, "the plan holds no desired state for this action; re-run kcr plan")
            status, message = Status.OK, self.perform(change)
        except _Outcome as out:
            status, message = out.status, out.message
        except Exception as exc:  # every failure becomes a result; the others go on
            status, message = Status.FAILED, _describe(exc)
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


def _run_phase(pool: ThreadPoolExecutor, run: _Run, changes: Sequence[Change]) -> list[ActionResult]:
    return list(pool.map(run.run_one, changes))


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
    keeper = _RecordKeeper(record, digests, scrub)
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
            for r in _run_phase(pool, run, first):
                by_address[r.address] = r
            if second:
                _read_lists(pool, run, (c.space for c in second))
                for r in _run_phase(pool, run, second):
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


# --- output -------------------------------------------------------------------------------------

_MARK = {
    Status.OK: ("✓", "\033[32m"),
    Status.FAILED: ("✗", "\033[31m"),
    Status.STALE: ("!", "\033[33m"),
    Status.BLOCKED: ("⊘", "\033[35m"),
}
_RESET = "\033[0m"


def summary_line(report: ApplyReport) -> str:
    c = report.counts
    line = (
        f"Apply: {c[Status.OK]} succeeded, {c[Status.FAILED]} failed, {c[Status.STALE]} stale, "
        f"{c[Status.BLOCKED]} blocked"
    )
    return line + "."


def render_result(result: ActionResult, color: bool) -> str:
    mark, ansi = _MARK[result.status]
    head = f"{mark} {result.action.value} {result.address}: {result.status.value} ({result.duration:.2f}s)"
    if color:
        head = f"{ansi}{head}{_RESET}"
    return f"{head}\n    {result.message}" if result.message else head


def render_report_text(report: ApplyReport, color: bool) -> str:
    lines = [render_result(r, color) for r in report.results]
    if report.record_error:
        lines.append(f"warning: the record of applied secrets was not saved: {report.record_error}")
    if lines:
        lines.append("")
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"


def report_to_json(report: ApplyReport) -> dict[str, Any]:
    return {
        "summary": dict(report.counts),
        "exit_code": exit_code(report),
        "record_updated": report.record_updated,
        "record_error": report.record_error,
        "results": [r.to_json() for r in report.results],
    }
