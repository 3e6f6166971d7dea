"""The secret backends, one module per scheme, and the registry that maps a scheme to its backend.

The registry is the one list of schemes: the reference parser accepts exactly these (and names them
when it meets another), and the resolver dispatches each reference to its backend. A new backend
(AWS Secrets Manager, say) is one module implementing `Backend` (see `base`) plus one entry below.

This package sits below `references` (which parses with it) and so below `desired` too: a backend's
`problem` is the pure syntax check that offline validation runs; only `read` does I/O, and only the
resolver (`reconciler.secrets`) calls it.
"""

from __future__ import annotations

from reconciler.secret_backends.base import Backend, Context, Read, Unresolved
from reconciler.secret_backends.env import EnvBackend
from reconciler.secret_backends.file import FileBackend
from reconciler.secret_backends.vault import VaultBackend

# Order is the order messages list the schemes in.
BACKENDS: dict[str, Backend] = {b.scheme: b for b in (EnvBackend(), FileBackend(), VaultBackend())}

__all__ = ["BACKENDS", "Backend", "Context", "Read", "Unresolved"]
