"""The record of applied secrets during one apply: updated as results arrive, saved every few tenths
of a second and at the end. Separate from the run in `applier` because its concern is the record's
consistency under concurrent workers and a slow backend, not which requests to send."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from reconciler.apply_report import ActionResult, Status
from reconciler.errors import ReconcilerError
from reconciler.masking import Masker
from reconciler.model import SecretDigest
from reconciler.plan import Action, Change

SAVE_INTERVAL_S = 0.25  # how often a long apply saves the record of applied secrets (and once at the end)


class Record(Protocol):
    def load(self) -> dict[str, SecretDigest]: ...

    def save(self, record: dict[str, SecretDigest]) -> None: ...


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
