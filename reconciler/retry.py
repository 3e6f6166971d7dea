"""The one retry policy for every HTTP call kcr repeats: Kibana's reads and writes, its confirmed
creates, and the record's HTTP state backend. Separate from both clients because what to repeat is
theirs to decide (a create is confirmed by reading, a LOCK is never sent blindly again), while how
long to wait and how often is the same everywhere and is tested once, here.

    wait = the answer's Retry-After, clamped to MAX_RETRY_AFTER, when it has one
           else random() * min(max_backoff, backoff * 2**n)       (exponential backoff, full jitter)

n counts every wait of the call so far, so waits keep growing. A 429 means the server did nothing and
says when to come back: it draws on its own budget (`throttled`), so being throttled never uses up the
retries meant for failures (`retries`); past that budget a 429 counts as a failure like a 503.
"""

from __future__ import annotations

import email.utils
import random as _random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, Protocol, TypeVar

import httpx

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 60.0  # a Retry-After longer than this is clamped: a run must not hang for hours
MAX_BACKOFF = 30.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), clamped; None when the
    header is absent or unreadable, so the backoff applies instead."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class Answered(Protocol):
    """What the policy reads of an answer (an httpx.Response, or kcr's own transport's Answer)."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


R = TypeVar("R", bound=Answered)


class Sent(NamedTuple, Generic[R]):
    """The last answer, and whether an earlier attempt may have reached the server (a transport
    failure or a 5xx was repeated): a later 404 on DELETE then means that attempt did the work."""

    response: R
    ambiguous: bool


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait. `sleep`, `random` and `clock` are injected so tests record the
    waits instead of spending them."""

    retries: int = 4
    throttled: int = 10
    backoff: float = 0.5
    max_backoff: float = MAX_BACKOFF
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    random: Callable[[], float] = field(default=_random.random, repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "retries", max(0, self.retries))
        object.__setattr__(self, "throttled", max(0, self.throttled))

    def delay(self, attempt: int, response: Answered | None) -> float:
        """The wait before attempt `attempt + 1`: the server's Retry-After if it gave one, else jitter."""
        if response is not None:
            after = parse_retry_after(response.headers.get("Retry-After"), self.clock())
            if after is not None:
                return after
        return self.random() * min(self.max_backoff, self.backoff * (2.0**attempt))

    def start(self) -> Attempts:
        """The budgets of one call, for a caller that decides each repeat itself (a confirmed create)."""
        return Attempts(self)

    def call(
        self,
        send: Callable[[], R],
        *,
        repeat: bool = True,
        fatal: Callable[[httpx.HTTPError], None] | None = None,
    ) -> Sent[R]:
        """Sends until an answer worth returning. A 429 is repeated within its budget whatever the
        request (the server did nothing); a transport failure or a 502-504 only when `repeat` says
        the request is safe to send twice. `fatal` may raise for a failure that would fail the same
        way again (a certificate that does not verify). Once the budget is spent, the last transport
        error is raised for the caller to word."""
        tries = self.start()
        ambiguous = False
        while True:
            try:
                response = send()
            except httpx.HTTPError as exc:
                if fatal is not None:
                    fatal(exc)
                if repeat and tries.again(None):
                    ambiguous = True
                    continue
                raise
            if tries.throttle(response):
                continue
            if repeat and response.status_code in RETRY_STATUSES and tries.again(response):
                ambiguous = True
                continue
            return Sent(response, ambiguous)


class Attempts:
    """One call's budgets, spent as it goes: `throttle` for a 429, `again` for a failure. Each says
    whether to send again, having waited when it says yes."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0
        self.throttled = 0

    def throttle(self, response: Answered) -> bool:
        if response.status_code != 429 or self.throttled >= self.policy.throttled:
            return False
        self._wait(response)
        self.throttled += 1
        return True

    def again(self, response: Answered | None) -> bool:
        if self.failures >= self.policy.retries:
            return False
        self._wait(response)
        self.failures += 1
        return True

    def _wait(self, response: Answered | None) -> None:
        self.policy.sleep(self.policy.delay(self.failures + self.throttled, response))


__all__ = ["MAX_BACKOFF", "MAX_RETRY_AFTER", "RETRY_STATUSES", "Answered", "Attempts", "RetryPolicy", "Sent",
           "parse_retry_after"]
