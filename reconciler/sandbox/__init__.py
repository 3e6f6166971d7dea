"""The offline Kibana connectors API (SPEC §8): `Sandbox` in process, `server` over loopback."""

from reconciler.sandbox.app import Sandbox
from reconciler.sandbox.http import SandboxResponse

__all__ = ["Sandbox", "SandboxResponse"]
