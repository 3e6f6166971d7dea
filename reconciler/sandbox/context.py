"""What a route handler is given and the small vocabulary every handler module shares.

Separate from routes.py so the handler modules (connectors, rules, spaces) and the routing table that
imports them do not import each other."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.sandbox.http import HttpError, SandboxResponse
from reconciler.sandbox.store import Settings, Store


@dataclass
class Ctx:
    """One request as a handler sees it, after routing, authentication, payload parsing and kbn-xsrf.
    Handlers run under the Sandbox's lock and call `mark_changed` so `--state` is saved."""

    settings: Settings
    store: Store
    space: str
    query: Mapping[str, list[str]]
    body: Any
    changed: bool = False

    def mark_changed(self) -> None:
        self.changed = True


Handler = Callable[[Ctx, dict[str, str]], SandboxResponse]


def now() -> str:
    """Kibana's timestamps: ISO 8601 in UTC, milliseconds, `Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def not_found(id: str, kind: str = "action") -> HttpError:
    """The saved-objects client's 404, which connectors (`action`) and rules (`alert`) both answer."""
    return HttpError(404, f"Saved object [{kind}/{id}] not found")
