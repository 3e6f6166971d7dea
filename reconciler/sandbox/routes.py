"""The routing table: every route the sandbox answers, in one place, and how a request path finds one.

The handlers live by subject (connectors, rules, spaces); this table is the only list of them, so a
new route is one handler plus one row here. Paths are matched on the raw (still percent-encoded) path,
after Kibana's `/s/<space>` rewrite; a parameter that decodes to nothing, to a `/` or to bad UTF-8
matches no route (a 404)."""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote

from reconciler.sandbox import connectors, rules, spaces
from reconciler.sandbox.context import Handler

_SPACE_PREFIX = re.compile(r"^/s/([a-z0-9_\-]+)(/.*)?$")  # the spaces plugin's getSpaceIdFromPath
_ID = r"(?P<id>[^/]+)"


class Route(NamedTuple):
    method: str
    pattern: re.Pattern[str]  # over the raw path
    name: str  # the request counter's name (`/__kcr_sandbox/stats`)
    handler: Handler
    parses_body: bool  # the payload is parsed (and refused with 413/415/400) before kbn-xsrf


ROUTES: tuple[Route, ...] = tuple(
    Route(m, re.compile(f"^{rx}$"), name, h, body)
    for m, rx, name, h, body in (
        ("GET", "/api/actions/connector_types", "connector_types", connectors.list_types, False),
        ("GET", "/api/actions/connectors", "connectors", connectors.list_connectors, False),
        ("POST", "/api/actions/connector", "create_connector", connectors.create_connector, True),
        ("POST", f"/api/actions/connector/{_ID}/_execute", "execute_connector", connectors.execute_connector, True),
        ("POST", f"/api/actions/connector/{_ID}", "create_connector", connectors.create_connector, True),
        ("GET", f"/api/actions/connector/{_ID}", "get_connector", connectors.get_connector, False),
        ("PUT", f"/api/actions/connector/{_ID}", "update_connector", connectors.update_connector, True),
        ("DELETE", f"/api/actions/connector/{_ID}", "delete_connector", connectors.delete_connector, False),
        ("GET", "/api/status", "status", spaces.status, False),
        ("GET", "/api/spaces/space", "spaces", spaces.list_spaces, False),
        ("GET", f"/api/spaces/space/{_ID}", "space", spaces.get_space, False),
        ("POST", "/api/alerting/rule", "create_rule", rules.create_rule, True),
        ("POST", f"/api/alerting/rule/{_ID}", "create_rule", rules.create_rule, True),
        ("GET", f"/api/alerting/rule/{_ID}", "get_rule", rules.get_rule, False),
        ("PUT", f"/api/alerting/rule/{_ID}", "update_rule", rules.update_rule, True),
        ("DELETE", f"/api/alerting/rule/{_ID}", "delete_rule", rules.delete_rule, False),
        ("GET", "/api/alerting/rules/_find", "find_rules", rules.find_rules, False),
    )
)


def match(method: str, path: str) -> tuple[str, Route | None, dict[str, str]]:
    """(space, the route or None for a 404, decoded path parameters). `ROUTES` is read at each call so
    a test may swap the table."""
    space = "default"
    m = _SPACE_PREFIX.match(path)
    if m:
        space, path = m.group(1), m.group(2) or "/"
    for route in map(Route._make, ROUTES):
        if route.method != method:
            continue
        hit = route.pattern.match(path)
        if hit:
            try:
                params = {k: unquote(val, errors="strict") for k, val in hit.groupdict().items()}
            except UnicodeDecodeError:
                return space, None, {}
            if any("/" in val or not val for val in params.values()):
                return space, None, {}
            return space, route, params
    return space, None, {}
