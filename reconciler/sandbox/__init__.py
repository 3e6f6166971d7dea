"""The offline Kibana connectors API (SPEC §8): `Sandbox` in process, `server` over loopback.

    app.py          Sandbox: Kibana's request lifecycle (auth, payload, kbn-xsrf, versions), faults
    routes.py       the routing table, and how a path finds its route and space
    connectors.py   connector routes and shapes     collation.py  the order Kibana lists them in
    rules.py        a slice of the alerting rules   spaces.py     spaces and status
    context.py      what a handler is given (Ctx)   http.py       responses and Kibana's error envelope
    validation.py   body schemas, and the product's type rules (`reconciler.type_rules`) as 400s
    params.py       _execute's params checks        seed.py       the seed: read, checked, built
    store.py        settings, the store and its --state file
    server.py       the ASGI adapter under uvicorn  transport.py  httpx without a socket

No web framework. The project declared `starlette` but never used it, and it was dropped rather than
adopted: the server is one catch-all ASGI function handing every request to `Sandbox.handle`, which
does its own routing because the same code serves the in-process transport. Starlette's Request and
Response would not shorten that function: the body cap still needs its own loop, the raw
(percent-encoded) path still comes from the scope, and a dropped-connection fault must send a
Content-Length it never honours, which only raw ASGI messages can do. It would add an import to the
start-up of `kcr sandbox` and a dependency to every install of kcr for nothing a reader gains.
"""

from reconciler.sandbox.app import Sandbox
from reconciler.sandbox.http import SandboxResponse

__all__ = ["Sandbox", "SandboxResponse"]
