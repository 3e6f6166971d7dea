"""What a secret backend is: the interface every scheme (`env`, `file`, `vault`, ...) implements, and
the few types that cross it. Kept apart from the registry so that a backend module imports only this,
never its siblings or the resolver."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx

from reconciler.model import Settings

if TYPE_CHECKING:
    from reconciler.references import Reference


class Unresolved(Exception):
    """Why a reference (or every reference a backend was asked for) could not be read; never holds a
    value. Raised from `read` it fails the whole batch, as a failed login does."""


@dataclass(frozen=True)
class Read:
    """One reference's value. `version` is recorded in the plan's secret digest, so a plan knows the
    secret moved even without the fingerprint key (Vault KV v2); None where the source has none."""

    value: str = field(repr=False)
    version: int | None = None


@dataclass(frozen=True)
class Context:
    """What a run gives every backend: the environment (credentials, settings by variable), kcr.yaml's
    settings, the repository root, and the HTTP transport for backends that speak HTTP (tests pass a
    fake one; None is the network)."""

    env: Mapping[str, str]
    settings: Settings
    root: Path
    transport: httpx.BaseTransport | None = None


class Backend(Protocol):
    """One scheme. `problem` is pure (offline validation and every parse call it); `read` does the I/O,
    for all of a run's distinct references of the scheme at once, so a remote backend can log in once
    and read concurrently."""

    @property
    def scheme(self) -> str:
        """The word before ':' in `${scheme:...}`."""

    @property
    def form(self) -> str:
        """How a reference is written, for messages: `${env:NAME}`."""

    @property
    def once_per_run(self) -> bool:
        """Whether a value read is kept for the rest of the run: a remote read costs a round trip, and
        the plan and the apply of one run should send the same value."""

    def problem(self, target: str, column: int) -> str | None:
        """Why `target` (what follows `scheme:`) is not well-formed, or None. Never repeats the target
        whole: a misplaced value must not reach a log."""

    def read(self, refs: Sequence[Reference], context: Context) -> Mapping[str, Read | Unresolved]:
        """Each reference's value or failure, by reference text."""
