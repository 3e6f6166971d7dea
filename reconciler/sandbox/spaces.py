"""The spaces and status routes: what a client asks before it trusts a space or a Kibana to be up.

Only `GET /api/spaces/space/{id}` answers 404 for a space the seed does not list; the connectors routes
answer in any space as Kibana's do (see app.py)."""

from __future__ import annotations

from typing import Any

from reconciler.sandbox.context import Ctx
from reconciler.sandbox.http import HttpError, SandboxResponse, json_response


def _space_json(id: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": id, "name": name, "disabledFeatures": []}
    if id == "default":
        out.update(description="This is your default space!", color="#00bfb3", _reserved=True)
    return out


def list_spaces(ctx: Ctx, _: dict[str, str]) -> SandboxResponse:
    return json_response(200, [_space_json(i, n) for i, n in ctx.settings.spaces])


def get_space(ctx: Ctx, p: dict[str, str]) -> SandboxResponse:
    for i, n in ctx.settings.spaces:
        if i == p["id"]:
            return json_response(200, _space_json(i, n))
    raise HttpError(404, "Not Found")


def status(ctx: Ctx, _: dict[str, str]) -> SandboxResponse:
    """Kibana's `GET /api/status`, the slice readiness probes read: a started Kibana is `available`."""
    return json_response(200, {
        "name": "kcr-sandbox",
        "version": {"number": ctx.settings.kibana_version, "build_flavor": "traditional"},
        "status": {"overall": {"level": "available", "summary": "All services and plugins are available"}},
    })
