"""Per-connector-type create validation, ported from Kibana's connector_types/*.ts API tests.

Source directory: `elastic/kibana:x-pack/platform/test/alerting_api_integration/security_and_spaces/
group2/tests/actions/connector_types/`. Kibana runs these as superuser in the default space; the success
cases run here in `default` and in `space1`. Simulator URLs become `http://localhost:<port>/...`
(`localhost` is in the test server's allowedHosts, as Kibana's simulators are). The 400 messages are
VERSION-DEPENDENT (api-behaviour.md §9), so a 400 is checked for its status, its `Bad Request` reason,
the part that failed (`error validating action|connector type config|secrets: `, which also proves the
config-before-secrets order) and, for allowedHosts failures, Kibana's allowedHosts phrase.

Not ported: every executor case (`describe('Executor')`, `_execute` against simulators — real network
targets, proxies and the event log), webhook's getWebhookSecretHeadersKeyRoute (internal route), and the
files not read for this port (openai, bedrock, cases_webhook, swimlane, resilient, thehive, slack_api,
xsoar, jira_service_management, servicenow_sir/itom, inference, oauth_*, http, es_index_preconfigured).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import kibana_cases as kc  # sibling module; pytest puts this directory on sys.path (no __init__.py)
import pytest

SIM = "http://localhost:5620"


@dataclass(frozen=True)
class Ok:
    """A create that Kibana answers with 200 and `config` (with the type's defaults filled in)."""

    source: str
    title: str
    type_id: str
    config: dict[str, Any] | None
    secrets: dict[str, Any] | None
    expected_config: dict[str, Any]
    # Config keys whose default is release data (e.g. AI default models): present, non-empty string.
    release_defaults: tuple[str, ...] = ()
    # VERSION-DEPENDENT config keys: may be absent; when present they hold this value.
    versioned: dict[str, Any] = field(default_factory=dict)
    is_deprecated: bool = False


@dataclass(frozen=True)
class Bad:
    """A create that Kibana refuses with 400 from the config or secrets validation."""

    source: str
    title: str
    type_id: str
    config: dict[str, Any] | None
    secrets: dict[str, Any] | None
    part: str
    contains: str | None = None


SN_BASIC_SECRETS = {"password": "elastic", "username": "changeme"}
SN_OAUTH_CONFIG = {
    "apiUrl": f"{SIM}/servicenow",
    "usesTableApi": False,
    "isOAuth": True,
    "clientId": "abc",
    "userIdentifierValue": "elastic",
    "jwtKeyId": "def",
}
SN_OAUTH_SECRETS = {
    "clientSecret": "xyz",
    "privateKey": "-----BEGIN RSA PRIVATE KEY-----\nddddddd\n-----END RSA PRIVATE KEY-----",
}
JIRA_SECRETS = {"apiToken": "elastic", "email": "elastic@elastic.co"}
TINES_SECRETS = {"email": "some@email.com", "token": "tinesToken"}
GEMINI_CONFIG = {"gcpRegion": "us-central-1", "gcpProjectID": "test-project"}
GEMINI_SECRETS = {
    "credentialsJson": json.dumps(
        {
            "type": "service_account",
            "project_id": "",
            "private_key_id": "",
            "private_key": "-----BEGIN PRIVATE KEY----------END PRIVATE KEY-----\n",
            "client_email": "",
            "client_id": "",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "",
        }
    )
}
EMAIL_NULLS = {"host": None, "port": None, "secure": None, "clientId": None, "oauthTokenUrl": None, "tenantId": None}
WEBHOOK_DEFAULTS = {"headers": None, "method": "post", "hasAuth": True}
WEBHOOK_VERSIONED = {"authType": "webhook-authentication-basic"}

OK_CASES = [
    Ok(
        "slack_webhook.ts",
        "should return 200 when creating a slack action successfully",
        ".slack",
        None,
        {"webhookUrl": f"{SIM}/slack"},
        {},
    ),
    Ok(
        "pagerduty.ts",
        "should return successfully when passed valid create parameters",
        ".pagerduty",
        {"apiUrl": f"{SIM}/pagerduty"},
        {"routingKey": "pager-duty-routing-key"},
        {"apiUrl": f"{SIM}/pagerduty"},
    ),
    Ok(
        "es_index.ts",
        "should be created successfully (no optional config)",
        ".index",
        {"index": "functional-test-actions-index"},
        {},
        {"index": "functional-test-actions-index", "refresh": False, "executionTimeField": None},
    ),
    Ok(
        "es_index.ts",
        "should be created successfully (all config props)",
        ".index",
        {"index": "functional-test-actions-index", "refresh": True, "executionTimeField": "test"},
        None,
        {"index": "functional-test-actions-index", "refresh": True, "executionTimeField": "test"},
    ),
    Ok(
        "jira.ts",
        "should return 200 when creating a jira action successfully",
        ".jira",
        {"apiUrl": f"{SIM}/jira", "projectKey": "CK"},
        JIRA_SECRETS,
        {"apiUrl": f"{SIM}/jira", "projectKey": "CK"},
    ),
    Ok(
        "servicenow_itsm.ts",
        "should return 200 when creating a servicenow Basic Auth connector successfully",
        ".servicenow",
        {"apiUrl": f"{SIM}/servicenow", "usesTableApi": False},
        SN_BASIC_SECRETS,
        {
            "apiUrl": f"{SIM}/servicenow",
            "usesTableApi": False,
            "isOAuth": False,
            "clientId": None,
            "jwtKeyId": None,
            "userIdentifierValue": None,
        },
    ),
    Ok(
        "servicenow_itsm.ts",
        "should return 200 when creating a servicenow OAuth connector successfully",
        ".servicenow",
        SN_OAUTH_CONFIG,
        SN_OAUTH_SECRETS,
        dict(SN_OAUTH_CONFIG),
    ),
    Ok(
        "servicenow_itsm.ts",
        "should set the usesTableApi to true when not provided",
        ".servicenow",
        {"apiUrl": f"{SIM}/servicenow"},
        SN_BASIC_SECRETS,
        {
            "apiUrl": f"{SIM}/servicenow",
            "usesTableApi": True,
            "isOAuth": False,
            "clientId": None,
            "jwtKeyId": None,
            "userIdentifierValue": None,
        },
        is_deprecated=True,
    ),  # api-behaviour.md §10: Table API ServiceNow connectors are deprecated
    Ok(
        "webhook.ts",
        "should return 200 when creating a webhook connector successfully with default method",
        ".webhook",
        {"url": f"{SIM}/webhook"},
        {"user": "username", "password": "mypassphrase"},
        {**WEBHOOK_DEFAULTS, "url": f"{SIM}/webhook"},
        versioned=WEBHOOK_VERSIONED,
    ),
    *[
        Ok(
            "webhook.ts",
            f"should return 200 when creating a webhook connector successfully with {method} method",
            ".webhook",
            {"url": f"{SIM}/webhook", "method": method},
            {"user": "username", "password": "mypassphrase"},
            {**WEBHOOK_DEFAULTS, "url": f"{SIM}/webhook", "method": method},
            versioned=WEBHOOK_VERSIONED,
        )
        for method in ("post", "put", "patch", "get", "delete")
    ],
    Ok(
        "email.ts",
        "should return 200 when creating an email action successfully",
        ".email",
        {"service": "__json", "from": "bob@example.com", "hasAuth": True},
        {"user": "bob", "password": "supersecret"},
        {"service": "__json", "hasAuth": True, "from": "bob@example.com", **EMAIL_NULLS},
    ),
    Ok(
        "email.ts",
        "should handle creating an email action with a server added to allowedHosts",
        ".email",
        {"host": "some.non.existent.com", "port": 666, "from": "bob@example.com"},
        {"user": "bob", "password": "changeme"},
        {
            **EMAIL_NULLS,
            "service": "other",
            "hasAuth": True,
            "host": "some.non.existent.com",
            "port": 666,
            "from": "bob@example.com",
        },
    ),
    Ok(
        "email.ts",
        "should handle an email action with no auth",
        ".email",
        {"service": "__json", "from": "jim@example.com", "hasAuth": False},
        None,
        {"service": "__json", "hasAuth": False, "from": "jim@example.com", **EMAIL_NULLS},
    ),
    Ok(
        "email.ts",
        "should return 200 when creating an email action without defining service",
        ".email",
        {"from": "bob@example.com", "host": "some.non.existent.com", "port": 25, "hasAuth": True},
        {"user": "bob", "password": "supersecret"},
        {
            **EMAIL_NULLS,
            "service": "other",
            "hasAuth": True,
            "host": "some.non.existent.com",
            "port": 25,
            "from": "bob@example.com",
        },
    ),
    Ok("server_log.ts", "should return 200 when creating a builtin server-log action", ".server-log", None, None, {}),
    Ok(
        "opsgenie.ts",
        "should return 200 when creating the connector",
        ".opsgenie",
        {"apiUrl": f"{SIM}/opsgenie"},
        {"apiKey": "123"},
        {"apiUrl": f"{SIM}/opsgenie"},
    ),
    Ok(
        "xmatters.ts",
        "xmatters connector can be executed without username and password, with secretsUrl",
        ".xmatters",
        {"configUrl": None, "usesBasic": False},
        {"secretsUrl": f"{SIM}/xmatters?apiKey=k"},
        {"configUrl": None, "usesBasic": False},
    ),
    Ok(
        "xmatters.ts",
        "xmatters connector can be executed with valid username and password",
        ".xmatters",
        {"configUrl": f"{SIM}/xmatters", "usesBasic": True},
        {"password": "mypassphrase", "user": "username"},
        {"configUrl": f"{SIM}/xmatters", "usesBasic": True},
    ),
    Ok(
        "torq.ts",
        "Torq connector can be executed with token",
        ".torq",
        {"webhookIntegrationUrl": f"{SIM}/torq"},
        {"token": "someRandomToken"},
        {"webhookIntegrationUrl": f"{SIM}/torq"},
    ),
    Ok(
        "tines.ts",
        "should return 200 when creating the connector",
        ".tines",
        {"url": f"{SIM}/tines"},
        TINES_SECRETS,
        {"url": f"{SIM}/tines"},
    ),
    Ok(
        "d3security.ts",
        "should return 200 when creating the connector",
        ".d3security",
        {"url": f"{SIM}/d3"},
        {"token": "token12345"},
        {"url": f"{SIM}/d3"},
    ),
    Ok(
        "gemini.ts",
        "should return 200 when creating the connector",
        ".gemini",
        {**GEMINI_CONFIG, "apiUrl": f"{SIM}/gemini"},
        GEMINI_SECRETS,
        {**GEMINI_CONFIG, "apiUrl": f"{SIM}/gemini"},
        release_defaults=("defaultModel",),
    ),
]

BAD_CASES = [
    Bad(
        "slack_webhook.ts",
        "should respond with a 400 Bad Request when creating a slack action with no webhookUrl",
        ".slack",
        None,
        {},
        "secrets",
    ),
    Bad(
        "slack_webhook.ts",
        "... with not present in allowedHosts webhookUrl",
        ".slack",
        None,
        {"webhookUrl": "http://slack.mynonexistent.com/other/stuff/in/the/path"},
        "secrets",
        kc.ALLOWED_HOSTS_PHRASE,
    ),
    Bad(
        "slack_webhook.ts",
        "... with a webhookUrl with no hostname",
        ".slack",
        None,
        {"webhookUrl": "fee-fi-fo-fum"},
        "secrets",
    ),
    Bad(
        "pagerduty.ts",
        "should return unsuccessfully when passed invalid create parameters",
        ".pagerduty",
        {"apiUrl": f"{SIM}/pagerduty"},
        {},
        "secrets",
    ),
    Bad(
        "pagerduty.ts",
        "should return unsuccessfully when default pagerduty url is not present in allowedHosts",
        ".pagerduty",
        None,
        {},
        "config",
        kc.ALLOWED_HOSTS_PHRASE,
    ),
    Bad(
        "es_index.ts", "should respond with error when creation unsuccessful", ".index", {"index": 666}, None, "config"
    ),
    Bad(
        "jira.ts",
        "should respond with a 400 Bad Request when creating a jira action with no apiUrl",
        ".jira",
        {"projectKey": "CK"},
        None,
        "config",
    ),
    Bad("jira.ts", "... with no projectKey", ".jira", {"apiUrl": f"{SIM}/jira"}, None, "config"),
    Bad(
        "jira.ts",
        "... with a not present in allowedHosts apiUrl",
        ".jira",
        {"apiUrl": "http://jira.mynonexistent.com", "projectKey": "CK"},
        JIRA_SECRETS,
        "config",
        kc.ALLOWED_HOSTS_PHRASE,
    ),
    Bad("jira.ts", "... without secrets", ".jira", {"apiUrl": f"{SIM}/jira", "projectKey": "CK"}, None, "secrets"),
    Bad("servicenow_itsm.ts", "... servicenow Basic Auth connector with no apiUrl", ".servicenow", {}, None, "config"),
    Bad(
        "servicenow_itsm.ts",
        "... servicenow OAuth connector with no apiUrl",
        ".servicenow",
        {"isOAuth": True},
        SN_OAUTH_SECRETS,
        "config",
    ),
    Bad(
        "servicenow_itsm.ts",
        "... servicenow connector with a not present in allowedHosts apiUrl",
        ".servicenow",
        {"apiUrl": "http://servicenow.mynonexistent.com"},
        SN_BASIC_SECRETS,
        "config",
        kc.ALLOWED_HOSTS_PHRASE,
    ),
    Bad(
        "servicenow_itsm.ts",
        "... servicenow Basic Auth connector without secrets",
        ".servicenow",
        {"apiUrl": f"{SIM}/servicenow"},
        None,
        "secrets",
    ),
    Bad(
        "servicenow_itsm.ts",
        "... servicenow OAuth connector without secrets",
        ".servicenow",
        SN_OAUTH_CONFIG,
        None,
        "secrets",
    ),
    *[
        Bad(
            "servicenow_itsm.ts",
            f"... servicenow OAuth connector with missing fields ({key} null)",
            ".servicenow",
            {**SN_OAUTH_CONFIG, key: None},
            SN_OAUTH_SECRETS,
            "config",
        )
        for key in ("clientId", "userIdentifierValue", "jwtKeyId")
    ],
    *[
        Bad(
            "servicenow_itsm.ts",
            f"... servicenow OAuth connector with missing fields (secret {key} null)",
            ".servicenow",
            SN_OAUTH_CONFIG,
            {**SN_OAUTH_SECRETS, key: None},
            "secrets",
        )
        for key in ("clientSecret", "privateKey")
    ],
    Bad(
        "webhook.ts",
        "should handle target webhooks that are not added to allowedHosts",
        ".webhook",
        {"url": "http://a.none.allowedHosts.webhook/endpoint"},
        {"user": "username", "password": "mypassphrase"},
        "config",
        "is not added to the Kibana config",
    ),
    Bad(
        "email.ts",
        "should respond with a 400 Bad Request when creating an email action with an invalid config",
        ".email",
        {},
        None,
        "config",
    ),
    Bad(
        "email.ts",
        "... with a server not added to allowedHosts (service gmail)",
        ".email",
        {"service": "gmail", "from": "bob@example.com"},
        {"user": "bob", "password": "changeme"},
        "config",
    ),
    Bad(
        "email.ts",
        "... with a server not added to allowedHosts (host stmp.gmail.com)",
        ".email",
        {"host": "stmp.gmail.com", "port": 666, "from": "bob@example.com"},
        {"user": "bob", "password": "changeme"},
        "config",
    ),
    Bad(
        "opsgenie.ts",
        "should return 400 Bad Request when creating the connector without the apiUrl",
        ".opsgenie",
        {},
        {"apiKey": "123"},
        "config",
    ),
    Bad(
        "opsgenie.ts",
        "... with a apiUrl that is not allowed",
        ".opsgenie",
        {"apiUrl": "http://opsgenie.mynonexistent.com"},
        {"apiKey": "123"},
        "config",
        kc.ALLOWED_HOSTS_PHRASE,
    ),
    Bad("opsgenie.ts", "... without secrets", ".opsgenie", {"apiUrl": f"{SIM}/opsgenie"}, None, "secrets"),
    Bad(
        "xmatters.ts",
        "should return unsuccessfully when default xmatters configUrl is not present in allowedHosts",
        ".xmatters",
        {"configUrl": "https://events.xmatters.com/v2/enqueue"},
        None,
        "config",
        kc.ALLOWED_HOSTS_PHRASE,
    ),
    Bad(
        "torq.ts",
        "should return unsuccessfully when default Torq webhookIntegrationUrl is not present in allowedHosts",
        ".torq",
        {"webhookIntegrationUrl": "https://test.torq.io/v1/something"},
        None,
        "config",
        kc.ALLOWED_HOSTS_PHRASE,
    ),
    Bad(
        "tines.ts",
        "should return 400 Bad Request when creating the connector without the url",
        ".tines",
        {},
        TINES_SECRETS,
        "config",
    ),
    Bad(
        "tines.ts",
        "... with a url that is not allowed",
        ".tines",
        {"url": "http://tines.mynonexistent.com"},
        TINES_SECRETS,
        "config",
        kc.ALLOWED_HOSTS_PHRASE,
    ),
    Bad("tines.ts", "... without secrets", ".tines", {"url": f"{SIM}/tines"}, None, "secrets"),
    Bad(
        "d3security.ts",
        "should return 400 Bad Request when creating the connector without the url",
        ".d3security",
        {},
        {"token": "token12345"},
        "config",
    ),
    Bad(
        "d3security.ts",
        "... with a url that is not allowed",
        ".d3security",
        {"url": "http://d3security.mynonexistent.com"},
        {"token": "token12345"},
        "config",
        kc.ALLOWED_HOSTS_PHRASE,
    ),
    Bad("d3security.ts", "... without secrets", ".d3security", {"url": f"{SIM}/d3"}, None, "secrets"),
    Bad(
        "gemini.ts",
        "should return 400 Bad Request when creating the connector without the url, project id and region",
        ".gemini",
        {},
        GEMINI_SECRETS,
        "config",
    ),
    Bad(
        "gemini.ts",
        "... without the project id",
        ".gemini",
        {"gcpRegion": "us-central-1", "apiUrl": "https://url.co"},
        GEMINI_SECRETS,
        "config",
    ),
    Bad(
        "gemini.ts",
        "... without the region",
        ".gemini",
        {"gcpProjectID": "test-project", "apiUrl": "https://url.co"},
        GEMINI_SECRETS,
        "config",
    ),
    Bad(
        "gemini.ts",
        "... with a url that is not allowed",
        ".gemini",
        {**GEMINI_CONFIG, "apiUrl": "http://gemini.mynonexistent.com"},
        GEMINI_SECRETS,
        "config",
        kc.ALLOWED_HOSTS_PHRASE,
    ),
    Bad("gemini.ts", "... without secrets", ".gemini", {**GEMINI_CONFIG, "apiUrl": f"{SIM}/gemini"}, None, "secrets"),
    Bad(
        "gemini.ts",
        "should return 400 Bad Request when creating the connector with external_account credentials",
        ".gemini",
        {**GEMINI_CONFIG, "apiUrl": f"{SIM}/gemini"},
        {"credentialsJson": json.dumps({"type": "external_account", "credential_source": {"file": "/etc/passwd"}})},
        "secrets",
    ),
]


def _create_body(type_id: str, config: dict[str, Any] | None, secrets: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"A {type_id} connector", "connector_type_id": type_id}
    if config is not None:
        body["config"] = config
    if secrets is not None:
        body["secrets"] = secrets
    return body


def _check_config(case: Ok, config: dict[str, Any]) -> None:
    config = dict(config)
    for key in case.release_defaults:
        value = config.pop(key, None)
        assert isinstance(value, str) and value, (key, value)
    for key, expected in case.versioned.items():
        if key in config:
            assert config.pop(key) == expected, key
    assert config == case.expected_config


@pytest.mark.parametrize("space", ["default", kc.SPACE])
@pytest.mark.parametrize("case", OK_CASES, ids=lambda c: f"{c.type_id}:{c.title}")
def test_create_ok(case: Ok, space: str) -> None:
    """connector_types/<case.source>: it(<case.title>) — create, then GET returns the same body."""
    kb = kc.make_kibana()
    resp = kb.request(
        "POST", "/api/actions/connector", space=space, body=_create_body(case.type_id, case.config, case.secrets)
    )
    assert resp.status_code == 200, resp.text
    created = kc.without_versioned(resp.json())
    name = f"A {case.type_id} connector"
    _check_config(case, created.pop("config"))
    expected = kc.connector_body(created["id"], name, case.type_id, {}, is_deprecated=case.is_deprecated)
    del expected["config"]
    assert created == expected
    fetched = kb.request("GET", f"/api/actions/connector/{created['id']}", space=space)
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == resp.json()


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda c: f"{c.type_id}:{c.title}")
def test_create_bad(case: Bad) -> None:
    """connector_types/<case.source>: it(<case.title>) — 400 from the named validation part, nothing stored."""
    kb = kc.make_kibana()
    resp = kb.request(
        "POST", "/api/actions/connector", space="default", body=_create_body(case.type_id, case.config, case.secrets)
    )
    kc.assert_validation_error(resp, case.part, contains=case.contains)
    assert kb.sb.connectors_in("default") == []


def test_webhook_update_removes_headers() -> None:
    """connector_types/webhook.ts: it('should remove headers when a webhook is updated') — PUT replaces config."""
    kb = kc.make_kibana()
    secrets = {"user": "username", "password": "mypassphrase"}
    created = kb.create(
        {
            "name": "A generic Webhook action",
            "connector_type_id": ".webhook",
            "secrets": secrets,
            "config": {"url": f"{SIM}/webhook", "headers": {"someHeader": "123"}},
        },
        space="default",
    )
    assert created["config"]["headers"] == {"someHeader": "123"}
    resp = kb.request(
        "PUT",
        f"/api/actions/connector/{created['id']}",
        space="default",
        body={
            "name": "A generic Webhook action",
            "secrets": secrets,
            "config": {"url": f"{SIM}/webhook", "headers": {"someOtherHeader": "456"}},
        },
    )
    assert resp.status_code == 200, resp.text
    fetched = kb.request("GET", f"/api/actions/connector/{created['id']}", space="default").json()
    case = Ok(
        "webhook.ts",
        "",
        ".webhook",
        None,
        None,
        {**WEBHOOK_DEFAULTS, "url": f"{SIM}/webhook", "headers": {"someOtherHeader": "456"}},
        versioned=WEBHOOK_VERSIONED,
    )
    _check_config(case, fetched["config"])


def test_gemini_valid_service_account() -> None:
    """connector_types/gemini.ts: it('should return 200 when creating the connector with valid service_account
    credentials')."""
    kb = kc.make_kibana()
    secrets = {
        "credentialsJson": json.dumps(
            {
                "type": "service_account",
                "project_id": "test-project",
                "private_key_id": "some_id",
                "private_key": "-----BEGIN PRIVATE KEY----------END PRIVATE KEY-----\n",
                "client_email": "test@example.com",
                "client_id": "12345",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": "https://oauth2.googleapis.com/token",
                "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/test%40example.com",
            }
        )
    }
    kb.create(
        {
            "name": "A Gemini action",
            "connector_type_id": ".gemini",
            "config": {**GEMINI_CONFIG, "apiUrl": f"{SIM}/gemini"},
            "secrets": secrets,
        },
        space="default",
    )


# Cross-field rules that no Kibana API test asserts but connector-types.json records from the validators
# (stack_connectors email/servicenow `validateConnector`): ported as catalogue conformance, not test ports.
CATALOGUE_BAD = [
    Bad(
        "connector-types.json .email notes",
        "unknown service name is refused ('[service] value ... is not valid')",
        ".email",
        {"service": "nosuchservice", "from": "bob@example.com"},
        {"user": "bob", "password": "p"},
        "config",
    ),
    Bad(
        "connector-types.json .email summary",
        "hasAuth sent as true requires user and password",
        ".email",
        {"from": "bob@example.com", "hasAuth": True, "host": "some.non.existent.com", "port": 25},
        None,
        "connector",
    ),
    Bad(
        "connector-types.json .servicenow notes",
        "isOAuth false refuses OAuth secrets next to basic auth",
        ".servicenow",
        {"apiUrl": f"{SIM}/servicenow", "usesTableApi": False},
        {**SN_BASIC_SECRETS, **SN_OAUTH_SECRETS},
        "connector",
    ),
]


@pytest.mark.parametrize("case", CATALOGUE_BAD, ids=lambda c: f"{c.type_id}:{c.title}")
def test_catalogue_cross_field_rules(case: Bad) -> None:
    """connector-types.json notes for the type (see case.source): a 400, nothing stored."""
    kb = kc.make_kibana()
    resp = kb.request(
        "POST", "/api/actions/connector", space="default", body=_create_body(case.type_id, case.config, case.secrets)
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "Bad Request"
    assert resp.json()["message"].startswith("error validating"), resp.text
    assert kb.sb.connectors_in("default") == []
