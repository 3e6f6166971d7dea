"""Shared seed and helpers for the Kibana conformance tests (ports of Kibana's own API tests).

The seed mirrors Kibana's alerting API test server
(`x-pack/platform/test/alerting_api_integration/common/config.ts`): licence `trial`, the same
`xpack.actions.allowedHosts`, the real connector types of its `enabledActionTypes` list, and its
`xpack.actions.preconfigured` connectors. Two substitutions, because the sandbox only knows real
connector types, never Kibana's test-plugin types:

- `custom-system-abc-connector` (type `system-abc-action-type`) keeps its id and name but is a
  `.server-log` connector; `preconfigured.test.index-record` (type `test.index-record`) keeps its id
  and name but is an `.index` connector. Names drive get_all's ordering, so the order is unchanged.
- In the CRUD tests the fixture type `test.index-record` (config `unencrypted`, required secret
  `encrypted`) is played by `.jira` (config without defaults, two required secrets);
  `test.not-enabled` by `.teams` (really absent from Kibana's enabledActionTypes list);
  `test.system-action` by the real system action type `.cases` (in-memory id `system-connector-.cases`).
  The `custom.ssl.*` webhook connectors (dynamic ports; get_all.ts filters them out) are left out.

Each test builds its own sandbox: the transport is in-process, so this costs microseconds and no
test can see another's connectors.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from reconciler.sandbox import Sandbox

BASE_URL = "http://kibana.test"
XSRF = {"kbn-xsrf": "kcr-conformance"}
SPACE = "space1"
OTHER = "other"

ALLOWED_HOSTS = ["localhost", "some.non.existent.com", "smtp-mail.outlook.com", "slack.com"]

# Kibana's enabledActionTypes list from common/config.ts, minus test-plugin types; `.teams`,
# `.xsoar`, `.jira-service-management` and `.inference` are absent there too. `.cases` is added
# so that its in-memory system connector exists regardless of how the sandbox treats the list.
ENABLED_ACTION_TYPES = [
    ".bedrock",
    ".cases-webhook",
    ".email",
    ".gemini",
    ".index",
    ".opsgenie",
    ".pagerduty",
    ".swimlane",
    ".server-log",
    ".servicenow",
    ".servicenow-sir",
    ".servicenow-itom",
    ".jira",
    ".resilient",
    ".gen-ai",
    ".d3security",
    ".sentinelone",
    ".crowdstrike",
    ".microsoft_defender_endpoint",
    ".slack",
    ".slack_api",
    ".thehive",
    ".tines",
    ".webhook",
    ".xmatters",
    ".torq",
    ".cases",
]

PRECONFIGURED: dict[str, dict[str, Any]] = {
    "my-test-email": {
        "actionTypeId": ".email",
        "name": "TestEmail#xyz",
        "config": {"from": "me@test.com", "service": "__json"},
        "secrets": {"user": "user", "password": "password"},
    },
    "notification-email": {
        "actionTypeId": ".email",
        "name": "Notification Email Connector",
        "config": {"from": "me@test.com", "service": "__json"},
        "secrets": {"user": "user", "password": "password"},
    },
    "my-slack1": {
        "actionTypeId": ".slack",
        "name": "Slack#xyz",
        "secrets": {"webhookUrl": "https://hooks.slack.com/services/abcd/efgh/ijklmnopqrstuvwxyz"},
    },
    "my-deprecated-servicenow": {
        "actionTypeId": ".servicenow",
        "name": "ServiceNow#xyz",
        "config": {"apiUrl": "https://ven04334.service-now.com", "usesTableApi": True},
        "secrets": {"username": "elastic_integration", "password": "somepassword"},
    },
    "my-deprecated-servicenow-default": {
        "actionTypeId": ".servicenow",
        "name": "ServiceNow#xyz",
        "config": {"apiUrl": "https://ven04334.service-now.com"},
        "secrets": {"username": "elastic_integration", "password": "somepassword"},
    },
    "custom-system-abc-connector": {
        "actionTypeId": ".server-log",
        "name": "SystemABC",
        "config": {},
        "secrets": {},
    },
    "preconfigured-es-index-action": {
        "actionTypeId": ".index",
        "name": "preconfigured_es_index_action",
        "config": {
            "index": "functional-test-actions-index-preconfigured",
            "refresh": True,
            "executionTimeField": "timestamp",
        },
    },
    "preconfigured.test.index-record": {
        "actionTypeId": ".index",
        "name": "Test:_Preconfigured_Index_Record",
        "config": {"index": "ignored-but-required"},
    },
}

SYSTEM_CONNECTOR_ID = "system-connector-.cases"
SYSTEM_TYPE = ".cases"
NOT_ENABLED_TYPE = ".teams"

# `test.index-record` stand-in: `.jira` (config echoed as sent, required secrets).
INDEX_RECORD_TYPE = ".jira"
INDEX_RECORD_CONFIG: dict[str, Any] = {"apiUrl": "http://localhost:5620/jira", "projectKey": "CK"}

# Response fields that newer Kibana versions add (api-behaviour.md §3/§4, VERSION-DEPENDENT), with
# the only value each may take in these tests.
VERSIONED_FIELDS: dict[str, Any] = {
    "is_connector_type_deprecated": False,
    "auth_mode": "shared",
}

# `error validating action type config: ...` (config-schema releases) or
# `error validating connector type config: ...` (zod releases), api-behaviour.md §9.
VALIDATION = {
    part: re.compile(rf"^error validating (action|connector) type {part}: ")
    for part in ("config", "secrets", "connector")
}
ALLOWED_HOSTS_PHRASE = "is not added to the Kibana config xpack.actions.allowedHosts"

PREDEFINED_ID_MESSAGE = (
    "Predefined IDs are not allowed for saved objects with encrypted attributes unless the ID is a UUID."
)


def canary() -> str:
    """A secret value that can be searched for in every response body."""
    return f"CANARY-{uuid.uuid4()}"


def index_record_secrets() -> dict[str, str]:
    return {"email": "elastic@example.com", "apiToken": canary()}


def fixture_seed(**overrides: Any) -> dict[str, Any]:
    """The Kibana test-server seed in SPEC §8 form; keyword arguments replace top-level keys."""
    seed: dict[str, Any] = {
        "license": "trial",
        "spaces": ["default", SPACE, OTHER],
        "preconfigured": copy.deepcopy(PRECONFIGURED),
        "enabled_action_types": list(ENABLED_ACTION_TYPES),
        "allowed_hosts": list(ALLOWED_HOSTS),
    }
    seed.update(overrides)
    return seed


def space_path(space: str, path: str) -> str:
    return path if space == "default" else f"/s/{space}{path}"


@dataclass
class Kibana:
    """A sandbox plus an httpx client bound to it through the in-process transport."""

    sb: Any
    http: httpx.Client

    def request(
        self,
        method: str,
        path: str,
        *,
        space: str = SPACE,
        body: Any = None,
        xsrf: bool = True,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        headers = dict(XSRF) if xsrf else {}
        content = None if body is None else json.dumps(body).encode()
        if content is not None:
            headers["content-type"] = "application/json"
        return self.http.request(method, space_path(space, path), headers=headers, content=content, params=params)

    def create(self, body: Mapping[str, Any], *, space: str = SPACE, connector_id: str | None = None) -> dict[str, Any]:
        """Create a connector that the test needs as a precondition; fails loudly if refused."""
        path = "/api/actions/connector" + (f"/{connector_id}" if connector_id else "")
        resp = self.request("POST", path, space=space, body=dict(body))
        assert resp.status_code == 200, resp.text
        result: dict[str, Any] = resp.json()
        return result

    def create_index_record(self, *, space: str = SPACE, name: str = "My Connector") -> dict[str, Any]:
        return self.create(
            {
                "name": name,
                "connector_type_id": INDEX_RECORD_TYPE,
                "config": dict(INDEX_RECORD_CONFIG),
                "secrets": index_record_secrets(),
            },
            space=space,
        )

    def stored(self, space: str, connector_id: str) -> dict[str, Any]:
        """The sandbox's stored record of a connector (secrets included), for assertions."""
        for item in self.sb.connectors_in(space):
            if item.get("id") == connector_id:
                found: dict[str, Any] = item
                return found
        raise AssertionError(f"connector {connector_id} not stored in space {space}")


def make_kibana(seed: Mapping[str, Any] | None = None) -> Kibana:
    sb = Sandbox.from_seed(dict(seed) if seed is not None else fixture_seed())
    client = httpx.Client(transport=sb.transport(), base_url=BASE_URL)
    return Kibana(sb=sb, http=client)


def error_body(status: int, message: str) -> dict[str, Any]:
    reason = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
    }[status]
    return {"statusCode": status, "error": reason, "message": message}


def assert_error(resp: httpx.Response, status: int, message: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json() == error_body(status, message)


def assert_validation_error(resp: httpx.Response, part: str, *, contains: str | None = None) -> None:
    """A 400 from the type's config/secrets validation; wording is VERSION-DEPENDENT (§9)."""
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["statusCode"] == 400
    assert body["error"] == "Bad Request"
    assert VALIDATION[part].match(body["message"]), body["message"]
    if contains is not None:
        assert contains in body["message"], body["message"]


def without_versioned(body: Mapping[str, Any]) -> dict[str, Any]:
    """Drop VERSION-DEPENDENT fields after checking that, when present, they hold the expected value."""
    out = dict(body)
    for key, expected in VERSIONED_FIELDS.items():
        if key in out:
            assert out.pop(key) == expected, (key, body)
    return out


def create(kb: Kibana, type_id: str, config: Any = None, secrets: Any = None) -> httpx.Response:
    """POST a connector named "c" of `type_id` in the default space (secrets sent only when given)."""
    body: dict[str, Any] = {"name": "c", "connector_type_id": type_id, "config": config or {}}
    if secrets is not None:
        body["secrets"] = secrets
    return kb.request("POST", "/api/actions/connector", space="default", body=body)


def refused(resp: httpx.Response) -> str:
    """The message of a 400 (the test fails on any other status)."""
    assert resp.status_code == 400, resp.text
    message: str = resp.json()["message"]
    return message


def connector_body(
    connector_id: str,
    name: str,
    type_id: str,
    config: Mapping[str, Any],
    *,
    is_deprecated: bool = False,
) -> dict[str, Any]:
    """The create/get/update response body of a saved-object connector (api-behaviour.md §3, §4)."""
    return {
        "id": connector_id,
        "name": name,
        "connector_type_id": type_id,
        "config": dict(config),
        "is_preconfigured": False,
        "is_system_action": False,
        "is_deprecated": is_deprecated,
        "is_missing_secrets": False,
    }


def preconfigured_body(connector_id: str) -> dict[str, Any]:
    pre = PRECONFIGURED[connector_id]
    return {
        "id": connector_id,
        "name": pre["name"],
        "connector_type_id": pre["actionTypeId"],
        "is_preconfigured": True,
        "is_system_action": False,
        "is_deprecated": connector_id.startswith("my-deprecated-servicenow"),
    }


def rule_body(actions: list[dict[str, Any]]) -> dict[str, Any]:
    """Kibana's `getTestRuleData()` (common/lib/get_test_rule_data.ts) with the given actions."""
    return {
        "enabled": True,
        "name": "abc",
        "tags": ["foo"],
        "rule_type_id": "test.noop",
        "consumer": "alertsFixture",
        "schedule": {"interval": "1m"},
        "throttle": "1m",
        "notify_when": "onThrottleInterval",
        "actions": actions,
        "params": {},
    }
