"""The HTTP vocabulary shared by the sandbox's layers: the response value, Kibana's error envelope and
the exception handlers raise to produce one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

JSON_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True)
class SandboxResponse:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    # A fault: the connection is cut after the headers. `handle` callers turn it into a broken
    # response (the in-process transport raises, the server sends a short body and closes).
    drop: bool = False

    def json(self) -> Any:
        return json.loads(self.body)


class HttpError(Exception):
    """Raised by any layer to answer with Kibana's error envelope."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None, *,
                 attributes: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.attributes = dict(attributes) if attributes is not None else None


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> SandboxResponse:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return SandboxResponse(status, {"content-type": JSON_TYPE, **(headers or {})}, body)


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None,
                   attributes: Mapping[str, Any] | None = None) -> SandboxResponse:
    """Kibana's envelope; `attributes` only when the handler gives some (core's response_adapter)."""
    body: dict[str, Any] = {"statusCode": status, "error": reason(status), "message": message}
    if attributes is not None:
        body["attributes"] = dict(attributes)
    return json_response(status, body, headers)


def empty_response(status: int = 204) -> SandboxResponse:
    return SandboxResponse(status, {}, b"")
