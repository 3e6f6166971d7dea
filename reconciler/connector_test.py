"""`kcr test KEY|ID`: run one connector once through Kibana's `_execute` and report what Kibana said.

Kibana reports a connector's own failure (bad webhook, rejected token, invalid params) as HTTP 200
with `status: "error"`; that is a failed test here, with Kibana's `message` and `service_message`.
HTTP errors (disabled type 403, ...) are raised by the client as KibanaError; an unknown id (404,
which executes nothing) is told in words by `run_target`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from reconciler.desired import load_settings
from reconciler.errors import ConfigError, ExitCode, KibanaNotFound
from reconciler.model import KEY_PATTERN, UUID_PATTERN, DesiredState, derive_connector_id


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


@dataclass(frozen=True)
class Target:
    """Where `kcr test` sends its request: the space, and the Kibana ids to try in order (a key not
    declared anywhere may be a derived id or an id of its own)."""

    space: str
    ids: tuple[str, ...]
    declared: bool  # found in the repository's files


def find_target(root: Path, given: str, spaces: tuple[str, ...], declared: Mapping[str, Sequence[tuple[str, str]]]
                | None = None) -> Target:
    """`kcr test` takes what users know: a key declared in the repository (tested in the space that
    declares it), `SPACE/KEY`, or a Kibana id. `declared`: key -> (space, id) of each declaration;
    a key declared in several spaces needs --space, since testing sends a real notification."""
    space_given = spaces[0] if spaces else None
    key = given
    if "/" in given and re.fullmatch(KEY_PATTERN, given.split("/", 1)[1]):
        space_given, key = given.split("/", 1)
    if re.fullmatch(UUID_PATTERN, key) or not re.fullmatch(KEY_PATTERN, key):
        return Target(space_given or "default", (key,), declared=False)
    found = [(s, cid) for s, cid in (declared or {}).get(key, ()) if space_given in (None, s)]
    if len(found) == 1:
        return Target(found[0][0], (found[0][1],), declared=True)
    if len(found) > 1:
        names = ", ".join(sorted(s for s, _ in found))
        raise ConfigError(f"{key} is declared in spaces {names}: pass --space SPACE (or SPACE/{key}) to say which "
                          "one to test")
    space = space_given or "default"
    if (root / "kcr.yaml").is_file() and load_settings(root).id_mode == "verbatim":
        return Target(space, (key,), declared=False)
    return Target(space, tuple(dict.fromkeys((derive_connector_id(space, key), key))), declared=False)


def declarations(state: DesiredState) -> dict[str, list[tuple[str, str]]]:
    """key -> (space, Kibana id) of every declared connector."""
    out: dict[str, list[tuple[str, str]]] = {}
    for space in state.spaces.values():
        for spec in space.connectors:
            out.setdefault(spec.key, []).append((spec.space, spec.id))
    return out


def run_target(client: ExecuteClient, target: Target, given: str,
               params: Mapping[str, Any] | None = None) -> tuple[str, TestResult]:
    """The first id Kibana knows (an unknown id is a 404, which executes nothing), and its result;
    none known is said in words, not as Kibana's raw 404."""
    for cid in target.ids:
        try:
            return cid, run_connector_test(client, target.space, cid, params)
        except KibanaNotFound:
            continue
    tried = " or ".join(target.ids)
    if target.declared:
        raise ConfigError(f"{given} is declared in space {target.space} but Kibana has no connector {tried} there: "
                          "run `kcr apply` to create it first")
    raise ConfigError(f"unknown connector {given}: no file under connectors/ declares it, and Kibana has no "
                      f"connector with id {tried} in space {target.space}; pass a declared key (SPACE/KEY for "
                      "another space) or a connector id (`kcr plan` lists them)")


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
