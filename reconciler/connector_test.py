"""`kcr test ID`: run one connector once through Kibana's `_execute` and report what Kibana said.

Kibana reports a connector's own failure (bad webhook, rejected token, invalid params) as HTTP 200
with `status: "error"`; that is a failed test here, with Kibana's `message` and `service_message`.
HTTP errors (unknown id 404, disabled type 403, ...) are raised by the client as KibanaError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from reconciler.desired import load_settings
from reconciler.errors import ConfigError, ExitCode
from reconciler.model import KEY_PATTERN, UUID_PATTERN, derive_connector_id


class ExecuteClient(Protocol):
    def execute_connector(self, space: str, id: str, params: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class, whatever its name says

    status: str  # Kibana's "ok" | "error"
    message: str
    service_message: str | None = None
    data: Any = None
    retry: Any = None  # bool, an ISO date, or None
    error_source: str | None = None  # Kibana's camelCase errorSource: "user" | "framework"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "service_message": self.service_message,
            "data": self.data,
            "retry": self.retry,
            "error_source": self.error_source,
        }


def parse_params(text: str | None, source: str = "--params") -> dict[str, Any]:
    """The `--params` JSON object; absent means `{}` (Kibana requires `params` to be an object)."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; "
            """pass an object such as '{"message": "kcr test"}'"""
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(value).__name__}")
    return value


def kibana_id(root: Path, space: str, given: str) -> str:
    """`kcr test` takes what users know, a repository key, as well as a Kibana id."""
    if re.fullmatch(UUID_PATTERN, given) or not re.fullmatch(KEY_PATTERN, given):
        return given
    if (root / "kcr.yaml").is_file() and load_settings(root).id_mode == "verbatim":
        return given
    return derive_connector_id(space, given)


def run_connector_test(
    client: ExecuteClient, space: str, id: str, params: Mapping[str, Any] | None = None
) -> TestResult:
    body = client.execute_connector(space, id, dict(params or {}))
    status = str(body.get("status") or "ok")
    message = body.get("message")
    service = body.get("service_message")
    if status != "ok" and not message:
        message = "Kibana reported an error without a message"
    return TestResult(
        status=status,
        message=str(message) if message else "",
        service_message=str(service) if service is not None else None,
        data=body.get("data"),
        retry=body.get("retry"),
        error_source=body.get("errorSource") or body.get("error_source"),
    )


def exit_code(result: TestResult) -> int:
    return ExitCode.OK if result.ok else ExitCode.ERROR


def render_text(result: TestResult, address: str) -> str:
    if result.ok:
        lines = [f"{address}: ok"]
        if result.message:
            lines.append(f"  message: {result.message}")
    else:
        lines = [f"{address}: error: {result.message}"]
        if result.service_message:
            lines.append(f"  service message: {result.service_message}")
        if result.retry not in (None, False):
            lines.append(f"  retry: {'true' if result.retry is True else result.retry}")
        hint = _SOURCE_HINTS.get(result.error_source or "")
        if hint:
            lines.append(f"  error source: {result.error_source} ({hint})")
    return "\n".join(lines) + "\n"


# Kibana's errorSource says whose side the failure is on, which is what a person needs to act on.
_SOURCE_HINTS = {
    "user": "the params or the connector's settings: fix them and run again",
    "framework": "Kibana itself or the service it called: check the connector type and Kibana's logs",
}
