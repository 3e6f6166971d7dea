"""Fixtures for the sandbox's own tests: an in-process client over a seeded Sandbox."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import pytest

from reconciler.sandbox import Sandbox

XSRF = {"kbn-xsrf": "kcr-tests"}
ClientFactory = Callable[..., tuple[Sandbox, httpx.Client]]


@pytest.fixture
def sandbox_client() -> Iterator[ClientFactory]:
    """`sandbox_client(seed, **sandbox_kwargs)` -> (sandbox, client with kbn-xsrf); clients closed after."""
    clients: list[httpx.Client] = []

    def make(
        seed: Mapping[str, Any] | None = None, *, xsrf: bool = True, **kwargs: Any
    ) -> tuple[Sandbox, httpx.Client]:
        sb = Sandbox.from_seed(seed, **kwargs)
        client = httpx.Client(transport=sb.transport(), base_url="http://kibana.test", headers=XSRF if xsrf else {})
        clients.append(client)
        return sb, client

    yield make
    for c in clients:
        c.close()
