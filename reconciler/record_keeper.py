"""The record of applied secrets during one apply: updated as results arrive, saved every few tenths
of a second and at the end. Separate from the run in `applier` because its concern is the record's
consistency under concurrent workers and a slow backend, not which requests to send.

What a save costs must not grow with the record, or a long apply's saves grow with the square of its
size (issue #16: at 10,000 entries a whole save took ≈115 ms, four times a second). A backend that keeps
a journal (`Journaled`: the local file) is sent only what changed since its last save, and the whole
record once, at the end. One that can only store the whole record (Terraform's HTTP backend, whose
protocol has no partial update) is saved at most every SAVE_INTERVAL_S and, past that, no more often
than its last save's duration allows (FULL_SAVE_SHARE), so saving takes a bounded share of the run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Protocol, runtime_checkable

from reconciler.apply_report import ActionResult, Status
from reconciler.errors import ReconcilerError
from reconciler.masking import Masker
from reconciler.model import SecretDigest
from reconciler.plan import Action, Change

SAVE_INTERVAL_S = 0.25  # how often a long apply saves the record of applied secrets (and once at the end)
FULL_SAVE_SHARE = 0.1  # at most this share of the time goes to rewriting a whole record


class Record(Protocol):
    def load(self) -> dict[str, SecretDigest]: ...

    def save(self, record: dict[str, SecretDigest]) -> None: ...


@runtime_checkable
class Journaled(Protocol):
    """A backend that can store what changed since its last save, each save kept whole or not at all;
    `save` then also folds those changes into the record (and ends the journal)."""

    def save_changes(self, changed: Mapping[str, SecretDigest], removed: Collection[str]) -> None: ...


_REMOVED = None  # a pending change that removes the connector's entry


class RecordKeeper:
    """A run killed half-way loses at most the last few tenths of a second of its record (the
    connectors it changed would otherwise show "secrets unknown" and a later rotation would go
    unnoticed). It only ever claims what succeeded, so an early save is never a lie."""

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
        self._pending: dict[str, SecretDigest | None] = {}  # changed since the last save, in order
        self._journaled = False  # some changes went to the journal: the end writes the whole record
        self._wait = interval  # until the next save is due
        self._lock = threading.Lock()
        self._saving = threading.Lock()
        self._last_save = clock()

    def load(self) -> None:
        self.stored = dict(self.record.load())
        self.current = dict(self.stored)
        self.saved = dict(self.stored)

    def note(self, change: Change, result: ActionResult, deleted: bool) -> None:
        with self._lock:
            if deleted and change.id in self.current:
                del self.current[change.id]
                self._pending[change.id] = _REMOVED
            if result.status is Status.OK and change.action is not Action.DELETE:
                self.current[change.id] = self._pending[change.id] = self.digests[change.address]
            due = bool(self._pending) and self.clock() - self._last_save >= self._wait
            if due:
                self._last_save = self.clock()
        if due:
            self._save()

    def finish(self) -> bool:
        """True when the record now differs from what the run found."""
        self._save(final=True)
        return self.error is None and self.saved != self.stored

    def _save(self, final: bool = False) -> None:
        """One save at a time, outside the lock the workers share: a slow HTTP backend delays only the
        worker that happens to save, and a later save always writes the latest record."""
        with self._saving:
            with self._lock:
                pending, self._pending = self._pending, {}
                snapshot = dict(self.current) if final or not isinstance(self.record, Journaled) else None
            try:
                if snapshot is None:
                    self._append(pending)
                elif self._journaled or snapshot != self.saved:
                    started = self.clock()
                    self.record.save(snapshot)
                    self._wait = max(self.interval, (self.clock() - started) * (1 / FULL_SAVE_SHARE - 1))
                    self.saved, self._journaled = snapshot, False
            except ReconcilerError as exc:
                self.error = self.scrub(str(exc))
                with self._lock:  # saved next time, before anything noted since
                    self._pending = {**pending, **self._pending}
                return
            self.error = None

    def _append(self, pending: Mapping[str, SecretDigest | None]) -> None:
        assert isinstance(self.record, Journaled)
        changed = {cid: digest for cid, digest in pending.items() if digest is not _REMOVED}
        removed = [cid for cid, digest in pending.items() if digest is _REMOVED]
        self.record.save_changes(changed, removed)
        self._journaled = True
        for cid in removed:
            self.saved.pop(cid, None)
        self.saved.update(changed)
