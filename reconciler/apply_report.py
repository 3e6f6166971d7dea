"""What an apply produced, as values: one ActionResult per mutating change and the ApplyReport that
holds them, with the exit code they make. Separate from the applier so that the views in `render`
read a report without depending on the stage that makes it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.errors import ExitCode
from reconciler.plan import Action


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
