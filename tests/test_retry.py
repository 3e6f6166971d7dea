"""The one retry policy (reconciler/retry.py) on its own, then as the HTTP state backend uses it: the
Kibana client's use is pinned by tests/test_kibana_client.py. Waits are recorded, never spent."""

from __future__ import annotations

import email.utils
from collections.abc import Callable

import httpx
import pytest

from reconciler.errors import StateError
from reconciler.retry import MAX_BACKOFF, MAX_RETRY_AFTER, RetryPolicy, parse_retry_after
from reconciler.state import HttpBackend

NOW = 1_700_000_000.0
REQUEST = httpx.Request("GET", "http://kibana.test/")


def answer(status: int, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(status, headers=headers, request=REQUEST)


def policy(waits: list[float], *, retries: int = 4, throttled: int = 10, backoff: float = 0.5) -> RetryPolicy:
    return RetryPolicy(retries, throttled, backoff, sleep=waits.append, random=lambda: 0.5, clock=lambda: NOW)


def replies(*items: httpx.Response | type[httpx.TransportError]) -> tuple[Callable[[], httpx.Response], list[int]]:
    """A send that plays `items` in order (an exception class is raised), and the count of sends."""
    sent: list[int] = []

    def send() -> httpx.Response:
        item = items[min(len(sent), len(items) - 1)]
        sent.append(1)
        if isinstance(item, httpx.Response):
            return item
        raise item("failed", request=REQUEST)

    return send, sent


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("86400", MAX_RETRY_AFTER),
        (email.utils.formatdate(NOW + 12, usegmt=True), 12.0),
        (email.utils.formatdate(NOW - 12, usegmt=True), 0.0),
        ("nan", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_and_clamped(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_delay_is_full_jitter_capped_unless_the_server_says_when() -> None:
    waits: list[float] = []
    p = policy(waits, backoff=0.5)
    assert [p.delay(n, None) for n in range(4)] == [0.25, 0.5, 1.0, 2.0]
    assert p.delay(20, None) == 0.5 * MAX_BACKOFF
    assert p.delay(20, answer(503, "3")) == 3.0
    assert p.delay(0, answer(503, "garbage")) == 0.25
    assert RetryPolicy(retries=-1, throttled=-5).retries == 0  # a negative budget is no budget


def test_a_429_has_its_own_budget_and_then_counts_as_a_failure() -> None:
    waits: list[float] = []
    send, sent = replies(*[answer(429, "1")] * 50)
    response, ambiguous = policy(waits, retries=2, throttled=3).call(send)
    assert response.status_code == 429 and len(sent) == 1 + 3 + 2
    assert waits == [1.0] * 5
    assert ambiguous  # the last two were retried as failures


def test_a_request_that_must_not_repeat_is_still_repeated_on_429_only() -> None:
    waits: list[float] = []
    send, sent = replies(answer(429, "2"), answer(503))
    response, ambiguous = policy(waits, retries=4).call(send, repeat=False)
    assert response.status_code == 503 and len(sent) == 2 and waits == [2.0] and not ambiguous

    send, sent = replies(httpx.ConnectError)
    with pytest.raises(httpx.ConnectError):
        policy(waits, retries=4).call(send, repeat=False)
    assert len(sent) == 1


def test_failures_back_off_then_the_last_error_is_raised_for_the_caller_to_word() -> None:
    waits: list[float] = []
    send, sent = replies(httpx.ConnectError, answer(502), httpx.ReadTimeout)
    with pytest.raises(httpx.ReadTimeout):
        policy(waits, retries=2).call(send)
    assert len(sent) == 3 and waits == [0.25, 0.5]


def test_a_fatal_failure_is_not_repeated() -> None:
    class Fatal(Exception):
        pass

    def fatal(exc: httpx.HTTPError) -> None:
        raise Fatal(str(exc))

    waits: list[float] = []
    send, sent = replies(httpx.ConnectError)
    with pytest.raises(Fatal):
        policy(waits).call(send, fatal=fatal)
    assert len(sent) == 1 and waits == []


def test_attempts_wait_only_when_they_say_again() -> None:
    waits: list[float] = []
    tries = policy(waits, retries=1, throttled=1).start()
    assert not tries.throttle(answer(503))
    assert tries.throttle(answer(429, "4")) and not tries.throttle(answer(429, "4"))
    assert tries.again(None) and not tries.again(None)
    assert waits == [4.0, 0.5]  # the second wait's exponent counts the throttled one too


# ------------------------------------------------------------------------------------------
# the HTTP state backend uses the same policy


def test_state_backend_honours_retry_after_and_its_429_budget() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "3"})] * 5 + [httpx.Response(503)] * 2
                   + [httpx.Response(204)])
    waits: list[float] = []
    backend = HttpBackend(address="http://127.0.0.1:1/s", transport=httpx.MockTransport(lambda r: next(answers)),
                          sleep=waits.append, random=lambda: 1.0)
    assert backend.load() == {}
    assert waits[:5] == [3.0] * 5  # throttled: as the server says, without using up the 3 retries
    assert len(waits) == 7


def test_state_backend_lock_whose_outcome_is_unknown_backs_off_with_jitter() -> None:
    locks: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        locks.append(request.method)
        return httpx.Response(502)

    waits: list[float] = []
    backend = HttpBackend(address="http://127.0.0.1:1/s", lock_address="http://127.0.0.1:1/s/lock",
                          transport=httpx.MockTransport(handler), sleep=waits.append, random=lambda: 0.5)
    with pytest.raises(StateError, match="cannot tell whether it took the lock"):
        backend.lock()
    assert locks == ["LOCK"] * 4 and waits == [0.25, 0.5, 1.0]
