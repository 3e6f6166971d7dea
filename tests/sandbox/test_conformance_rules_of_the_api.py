"""Cross-cutting Kibana API rules the sandbox must follow (api-behaviour.md §0, §4-§6, §8, §10-§13).

Each case cites the Kibana test it generalises (T: = security_and_spaces/group2/tests/actions/,
N: = spaces_only/tests/actions/type_not_enabled.ts) or, where no Kibana API test asserts it, the
api-behaviour.md section that documents it.

Not ported: the `kbn-version` mismatch 400 (clients must not send the header), 401 handling (the
seed here has no `auth`), and `is_missing_secrets: true` (Kibana only sets it on saved-objects
import, which the sandbox does not offer).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import kibana_cases as kc  # sibling module; pytest puts this directory on sys.path (no __init__.py)
import pytest

SPACE = kc.SPACE
XSRF_MESSAGE = "Request must contain a kbn-xsrf header."


@pytest.fixture
def kb() -> kc.Kibana:
    return kc.make_kibana()


def _index_record_body(**extra: Any) -> dict[str, Any]:
    return {
        "name": "My Connector",
        "connector_type_id": kc.INDEX_RECORD_TYPE,
        "config": dict(kc.INDEX_RECORD_CONFIG),
        "secrets": kc.index_record_secrets(),
        **extra,
    }


# --------------------------------------------------------------------------------------------- kbn-xsrf


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/actions/connector", {"name": "x", "connector_type_id": ".server-log"}),
        ("POST", "/api/actions/connector", {}),
        ("PUT", "/api/actions/connector/1", {"name": "x"}),
        ("DELETE", "/api/actions/connector/1", None),
        ("POST", "/api/actions/connector/1/_execute", {"params": {}}),
        ("DELETE", "/api/actions/connector/my-slack1", None),
    ],
)
def test_xsrf_required_on_unsafe_methods(kb: kc.Kibana, method: str, path: str, body: Any) -> None:
    """api-behaviour.md §0 XSRF: checked before the body schema and the route's own checks."""
    resp = kb.request(method, path, body=body, xsrf=False)
    kc.assert_error(resp, 400, XSRF_MESSAGE)
    assert kb.sb.connectors_in(SPACE) == []


@pytest.mark.parametrize(
    "path", ["/api/actions/connectors", "/api/actions/connector_types", "/api/actions/connector/my-slack1"]
)
def test_xsrf_not_required_on_get(kb: kc.Kibana, path: str) -> None:
    """api-behaviour.md §0 XSRF: GET is a safe method."""
    assert kb.request("GET", path, xsrf=False).status_code == 200


# ------------------------------------------------------------------------------------ body schema (400)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"connector_type_id": ".server-log"},
            "[request body.name]: expected value of type [string] but got [undefined]",
        ),
        ({"name": "x"}, "[request body.connector_type_id]: expected value of type [string] but got [undefined]"),
        (
            {"name": 5, "connector_type_id": ".server-log"},
            "[request body.name]: expected value of type [string] but got [number]",
        ),
        (
            {"name": "x", "connector_type_id": ".server-log", "config": None},
            "[request body.config]: expected value of type [object] but got [null]",
        ),
        (
            {"name": "x", "connector_type_id": ".server-log", "secrets": "s"},
            "[request body.secrets]: expected value of type [object] but got [string]",
        ),
        (
            {"name": "x", "connector_type_id": ".server-log", "foo": 1},
            "[request body.foo]: definition for this key is missing",
        ),
        (
            {"name": "x", "connector_type_id": ".server-log", "id": str(uuid.uuid4())},
            "[request body.id]: definition for this key is missing",
        ),
        ({"name": " ", "connector_type_id": ".server-log"}, "[request body.name]: value '' is not valid"),
        ({"name": "x", "connector_type_id": "  "}, "[request body.connector_type_id]: value '' is not valid"),
        (
            {
                "name": "x",
                "connector_type_id": kc.INDEX_RECORD_TYPE,
                "config": kc.INDEX_RECORD_CONFIG,
                "secrets": {"email": "a@example.com", "apiToken": " "},
            },
            "[request body.secrets.apiToken]: value '' is not valid",
        ),
    ],
)
def test_create_body_schema(kb: kc.Kibana, body: dict[str, Any], message: str) -> None:
    """T:create.ts payload cases generalised (api-behaviour.md §0 Request validation, §4 Body)."""
    kc.assert_error(kb.request("POST", "/api/actions/connector", body=body), 400, message)
    assert kb.sb.connectors_in(SPACE) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"name": "x", "connector_type_id": ".server-log"},
            "[request body.connector_type_id]: definition for this key is missing",
        ),
        ({"name": " "}, "[request body.name]: value '' is not valid"),
        ({"name": "x", "config": None}, "[request body.config]: expected value of type [object] but got [null]"),
        ({"name": "x", "bogus": True}, "[request body.bogus]: definition for this key is missing"),
    ],
)
def test_update_body_schema(kb: kc.Kibana, body: dict[str, Any], message: str) -> None:
    """T:update.ts payload cases generalised; `connector_type_id` is not accepted on PUT (§5). The schema
    runs before the lookup, so an existing connector and a missing one answer alike."""
    created = kb.create({"name": "log", "connector_type_id": ".server-log"})
    for target in (created["id"], "1"):
        kc.assert_error(kb.request("PUT", f"/api/actions/connector/{target}", body=body), 400, message)
    assert kb.request("GET", f"/api/actions/connector/{created['id']}").json()["name"] == "log"


def test_blank_string_nested_in_config(kb: kc.Kibana) -> None:
    """api-behaviour.md §0: blank strings are rejected anywhere in config, arrays and objects included."""
    resp = kb.request(
        "POST",
        "/api/actions/connector",
        body={
            "name": "w",
            "connector_type_id": ".webhook",
            "config": {"url": "http://localhost/x", "headers": {"a": " "}},
        },
    )
    assert resp.status_code == 400, resp.text
    message = resp.json()["message"]
    assert message.startswith("[request body.config.headers")
    assert message.endswith("value '' is not valid")


def test_null_is_not_blank(kb: kc.Kibana) -> None:
    """api-behaviour.md §0: `null` values pass the blank-string check."""
    created = kb.create(
        {"name": "idx", "connector_type_id": ".index", "config": {"index": "i", "executionTimeField": None}}
    )
    assert created["config"] == {"index": "i", "refresh": False, "executionTimeField": None}


# ------------------------------------------------------------------------------------------------ ids


@pytest.mark.parametrize(
    "connector_id",
    [
        "my-connector",
        "1",
        "UPPER-CASE",
        "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",  # UUID v7: version nibble outside [1-5]
        "6f9619ff-8b86-4011-c000-00c04fd430c8",  # variant nibble outside [89ab]
        uuid.uuid4().hex,  # no hyphens
    ],
)
def test_chosen_id_must_be_uuid(kb: kc.Kibana, connector_id: str) -> None:
    """T:create.ts ('with a predefined id' uses uuidv4); api-behaviour.md §12 `getValidId`."""
    resp = kb.request("POST", f"/api/actions/connector/{connector_id}", body=_index_record_body())
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["error"] == "Bad Request"
    assert body["message"] in (kc.PREDEFINED_ID_MESSAGE, kc.PREDEFINED_ID_MESSAGE + ": Bad Request")
    assert kb.sb.connectors_in(SPACE) == []


@pytest.mark.parametrize(
    "connector_id",
    [
        str(uuid.uuid4()).upper(),
        "00000000-0000-0000-0000-000000000000",
        str(uuid.uuid1()),
        "c0a8f6a6-3b1d-5e9f-9a7c-1b2d3e4f5a6b",
    ],
)
def test_chosen_uuid_accepted(kb: kc.Kibana, connector_id: str) -> None:
    """api-behaviour.md §12: the isRandomId regex is case-insensitive, takes versions 1-5 and the nil UUID."""
    created = kb.create(_index_record_body(), connector_id=connector_id)
    assert created["id"] == connector_id


@pytest.mark.parametrize("second_space", [SPACE, kc.OTHER, "default"])
def test_ids_are_global_across_spaces(kb: kc.Kibana, second_space: str) -> None:
    """api-behaviour.md §12: the same id in any space is a 409 conflict; POST never overwrites."""
    connector_id = str(uuid.uuid4())
    kb.create(_index_record_body(), connector_id=connector_id)
    resp = kb.request(
        "POST",
        f"/api/actions/connector/{connector_id}",
        space=second_space,
        body={"name": "other", "connector_type_id": ".server-log"},
    )
    kc.assert_error(resp, 409, f"Saved object [action/{connector_id}] conflict")
    assert kb.request("GET", f"/api/actions/connector/{connector_id}").json()["name"] == "My Connector"
    if second_space != SPACE:
        assert kb.sb.connectors_in(second_space) == []


# ----------------------------------------------------------------------------------- spaces and routing


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "EXECUTE"])
def test_other_space_is_404(kb: kc.Kibana, method: str) -> None:
    """T:get.ts, T:update.ts, T:delete.ts, T:execute.ts 'from another space' (superuser branch), §13."""
    created = kb.create(_index_record_body())
    path = f"/api/actions/connector/{created['id']}"
    if method == "EXECUTE":
        resp = kb.request("POST", path + "/_execute", space="default", body={"params": {}})
    else:
        body = {"name": "x", "config": kc.INDEX_RECORD_CONFIG, "secrets": kc.index_record_secrets()}
        resp = kb.request(method, path, space="default", body=body if method == "PUT" else None)
    kc.assert_error(resp, 404, f"Saved object [action/{created['id']}] not found")


def test_unprefixed_path_is_default_space(kb: kc.Kibana) -> None:
    """api-behaviour.md §0 Paths and spaces: no `/s/` prefix means `default`."""
    created = kb.create(_index_record_body(), space="default")
    assert [c["id"] for c in kb.sb.connectors_in("default")] == [created["id"]]
    assert kb.http.get("/s/default/api/actions/connector/" + created["id"]).status_code == 200


@pytest.mark.parametrize("prefix", ["/s/Space1", "/s/space.1"])
def test_malformed_space_prefix_is_404(kb: kc.Kibana, prefix: str) -> None:
    """api-behaviour.md §0: a `/s/` segment with other characters is not rewritten, so nothing matches."""
    assert kb.http.get(prefix + "/api/actions/connectors").status_code == 404


def test_unknown_space_lists_preconfigured_only(kb: kc.Kibana) -> None:
    """api-behaviour.md §13: API routes give no 404 for an unknown space; a superuser sees an empty space."""
    kb.create(_index_record_body())
    resp = kb.http.get("/s/nowhere/api/actions/connectors")
    assert resp.status_code == 200, resp.text
    assert {c["id"] for c in resp.json()} == set(kc.PRECONFIGURED)


def test_preconfigured_in_every_space(kb: kc.Kibana) -> None:
    """T:get_all.ts 'from another space': preconfigured connectors are listed in every space."""
    for space in ("default", SPACE, kc.OTHER):
        listing = kb.request("GET", "/api/actions/connectors", space=space).json()
        assert {c["id"] for c in listing if c["is_preconfigured"]} == set(kc.PRECONFIGURED)
        assert all("config" not in c and "is_missing_secrets" not in c for c in listing if c["is_preconfigured"])


# ------------------------------------------------------------------------------- licence and enablement


GOLD_ABOVE = [
    (
        ".servicenow",
        "platinum",
        {"apiUrl": "http://localhost/sn", "usesTableApi": False},
        {"username": "u", "password": "p"},
    ),
    (".opsgenie", "platinum", {"apiUrl": "http://localhost/og"}, {"apiKey": "k"}),
    (
        ".resilient",
        "platinum",
        {"apiUrl": "http://localhost/r", "orgId": "201"},
        {"apiKeyId": "i", "apiKeySecret": "s"},
    ),
    (".thehive", "platinum", {"url": "http://localhost/h"}, {"apiKey": "k"}),
    (".bedrock", "enterprise", {"apiUrl": "http://localhost/b"}, {"accessKey": "a", "secret": "s"}),
    (".gen-ai", "enterprise", {"apiProvider": "OpenAI", "apiUrl": "http://localhost/oai"}, {"apiKey": "k"}),
]


def _licence_message(type_id: str, licence: str) -> str:
    return (
        f"Action type {type_id} is disabled because your {licence} license does not support it. "
        "Please upgrade your license."
    )


@pytest.mark.parametrize(("type_id", "minimum", "config", "secrets"), GOLD_ABOVE)
def test_licence_403_after_valid_body(
    type_id: str, minimum: str, config: dict[str, Any], secrets: dict[str, Any]
) -> None:
    """api-behaviour.md §4 step 7 and §8: a valid body for a type above the licence is 403."""
    kb = kc.make_kibana(kc.fixture_seed(license="gold"))
    resp = kb.request(
        "POST",
        "/api/actions/connector",
        body={"name": "n", "connector_type_id": type_id, "config": config, "secrets": secrets},
    )
    kc.assert_error(resp, 403, _licence_message(type_id, "gold"))
    assert kb.sb.connectors_in(SPACE) == []


@pytest.mark.parametrize(("type_id", "minimum", "config", "secrets"), GOLD_ABOVE)
def test_licence_validation_runs_first(
    type_id: str, minimum: str, config: dict[str, Any], secrets: dict[str, Any]
) -> None:
    """api-behaviour.md §4 'Order matters': an invalid body for a type above the licence is 400, not 403."""
    kb = kc.make_kibana(kc.fixture_seed(license="gold"))
    resp = kb.request("POST", "/api/actions/connector", body={"name": "n", "connector_type_id": type_id, "config": {}})
    kc.assert_validation_error(resp, "config")


@pytest.mark.parametrize(
    ("licence", "type_id", "config", "secrets"),
    [
        ("basic", ".slack", {}, {"webhookUrl": "http://localhost/slack"}),
        ("basic", ".webhook", {"url": "http://localhost/w"}, {"user": "u", "password": "p"}),
        ("platinum", ".bedrock", {"apiUrl": "http://localhost/b"}, {"accessKey": "a", "secret": "s"}),
    ],
)
def test_licence_403_other_levels(licence: str, type_id: str, config: dict[str, Any], secrets: dict[str, Any]) -> None:
    """api-behaviour.md §8 licence message, naming the cluster's licence."""
    kb = kc.make_kibana(kc.fixture_seed(license=licence))
    resp = kb.request(
        "POST",
        "/api/actions/connector",
        body={"name": "n", "connector_type_id": type_id, "config": config, "secrets": secrets},
    )
    kc.assert_error(resp, 403, _licence_message(type_id, licence))


@pytest.mark.parametrize("licence", ["basic", "gold"])
def test_basic_types_allowed_at_any_licence(licence: str) -> None:
    """api-behaviour.md §8: `.index` and `.server-log` need only basic."""
    kb = kc.make_kibana(kc.fixture_seed(license=licence))
    kb.create({"name": "log", "connector_type_id": ".server-log"})
    kb.create({"name": "idx", "connector_type_id": ".index", "config": {"index": "i"}})


def test_update_above_licence_is_403() -> None:
    """api-behaviour.md §5 step 7: the type check also guards updates of stored connectors."""
    connector_id = str(uuid.uuid4())
    seed = kc.fixture_seed(
        license="gold",
        connectors=[
            {
                "id": connector_id,
                "space": SPACE,
                "name": "sn",
                "connector_type_id": ".opsgenie",
                "config": {"apiUrl": "http://localhost/og"},
                "secrets": {"apiKey": "k"},
            }
        ],
    )
    kb = kc.make_kibana(seed)
    resp = kb.request(
        "PUT",
        f"/api/actions/connector/{connector_id}",
        body={"name": "sn2", "config": {"apiUrl": "http://localhost/og"}, "secrets": {"apiKey": "k"}},
    )
    kc.assert_error(resp, 403, _licence_message(".opsgenie", "gold"))


NOT_ENABLED_MESSAGE = (
    f'action type "{kc.NOT_ENABLED_TYPE}" is not enabled in the Kibana config xpack.actions.enabledActionTypes'
)


def test_not_enabled_validation_runs_first(kb: kc.Kibana) -> None:
    """api-behaviour.md §4 'Order matters': a disabled type with an invalid body gets 400, not 403."""
    resp = kb.request("POST", "/api/actions/connector", body={"name": "t", "connector_type_id": kc.NOT_ENABLED_TYPE})
    kc.assert_validation_error(resp, "secrets")


def _seed_disabled_connector() -> tuple[kc.Kibana, str]:
    connector_id = str(uuid.uuid4())
    seed = kc.fixture_seed(
        connectors=[
            {
                "id": connector_id,
                "space": SPACE,
                "name": "teams",
                "connector_type_id": kc.NOT_ENABLED_TYPE,
                "config": {},
                "secrets": {"webhookUrl": "http://localhost/teams"},
            }
        ]
    )
    return kc.make_kibana(seed), connector_id


def test_disabled_type_get_is_200() -> None:
    """N:type_not_enabled.ts: a connector whose type is disabled in config is still returned."""
    kb, connector_id = _seed_disabled_connector()
    resp = kb.request("GET", f"/api/actions/connector/{connector_id}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["connector_type_id"] == kc.NOT_ENABLED_TYPE


def test_disabled_type_update_is_403() -> None:
    """N:type_not_enabled.ts: updating a connector of a now-disabled type is rejected."""
    kb, connector_id = _seed_disabled_connector()
    resp = kb.request(
        "PUT",
        f"/api/actions/connector/{connector_id}",
        body={"name": "t2", "config": {}, "secrets": {"webhookUrl": "http://localhost/teams"}},
    )
    kc.assert_error(resp, 403, NOT_ENABLED_MESSAGE)


def test_disabled_type_execute_is_403() -> None:
    """N:type_not_enabled.ts (execute); api-behaviour.md §7."""
    kb, connector_id = _seed_disabled_connector()
    resp = kb.request("POST", f"/api/actions/connector/{connector_id}/_execute", body={"params": {"message": "x"}})
    kc.assert_error(resp, 403, NOT_ENABLED_MESSAGE)


def test_disabled_type_delete_is_204() -> None:
    """T:delete.ts / api-behaviour.md §6: disabled types can be deleted."""
    kb, connector_id = _seed_disabled_connector()
    resp = kb.request("DELETE", f"/api/actions/connector/{connector_id}")
    assert resp.status_code == 204, resp.text
    assert kb.sb.connectors_in(SPACE) == []


# ------------------------------------------------------------------------------------------- secrets


def test_secrets_never_returned(kb: kc.Kibana) -> None:
    """api-behaviour.md §10: no route returns secrets (T:create.ts/get.ts/get_all.ts bodies have none)."""
    secret = kc.canary()
    created = kb.create(
        {
            "name": "j",
            "connector_type_id": ".jira",
            "config": kc.INDEX_RECORD_CONFIG,
            "secrets": {"email": "a@example.com", "apiToken": secret},
        }
    )
    path = f"/api/actions/connector/{created['id']}"
    newer = kc.canary()
    responses = [
        kb.request("GET", path),
        kb.request("GET", "/api/actions/connectors"),
        kb.request(
            "PUT",
            path,
            body={
                "name": "j2",
                "config": kc.INDEX_RECORD_CONFIG,
                "secrets": {"email": "a@example.com", "apiToken": newer},
            },
        ),
        kb.request("GET", path),
    ]
    for resp in responses:
        assert resp.status_code == 200, resp.text
        assert secret not in resp.text and newer not in resp.text
        items = resp.json() if isinstance(resp.json(), list) else [resp.json()]
        assert all("secrets" not in item for item in items)
    assert secret not in json.dumps(created)
    assert newer in json.dumps(kb.stored(SPACE, created["id"]))


def test_put_replaces_secrets(kb: kc.Kibana) -> None:
    """api-behaviour.md §10: PUT writes the new secrets over the old ones."""
    old, new = kc.canary(), kc.canary()
    created = kb.create(
        {
            "name": "j",
            "connector_type_id": ".jira",
            "config": kc.INDEX_RECORD_CONFIG,
            "secrets": {"email": "a@example.com", "apiToken": old},
        }
    )
    assert old in json.dumps(kb.stored(SPACE, created["id"]))
    resp = kb.request(
        "PUT",
        f"/api/actions/connector/{created['id']}",
        body={"name": "j", "config": kc.INDEX_RECORD_CONFIG, "secrets": {"email": "a@example.com", "apiToken": new}},
    )
    assert resp.status_code == 200, resp.text
    stored = json.dumps(kb.stored(SPACE, created["id"]))
    assert new in stored and old not in stored


def test_put_without_optional_secrets_wipes_them(kb: kc.Kibana) -> None:
    """api-behaviour.md §10: with all-optional secrets (webhook), a PUT without secrets wipes them."""
    password = kc.canary()
    created = kb.create(
        {
            "name": "w",
            "connector_type_id": ".webhook",
            "config": {"url": "http://localhost/w"},
            "secrets": {"user": "u", "password": password},
        }
    )
    resp = kb.request(
        "PUT", f"/api/actions/connector/{created['id']}", body={"name": "w", "config": {"url": "http://localhost/w"}}
    )
    assert resp.status_code == 200, resp.text
    assert password not in json.dumps(kb.stored(SPACE, created["id"]))


def test_put_without_required_secrets_is_400_and_keeps_them(kb: kc.Kibana) -> None:
    """api-behaviour.md §10: a type that requires secrets refuses a PUT without them."""
    token = kc.canary()
    created = kb.create(
        {
            "name": "j",
            "connector_type_id": ".jira",
            "config": kc.INDEX_RECORD_CONFIG,
            "secrets": {"email": "a@example.com", "apiToken": token},
        }
    )
    resp = kb.request(
        "PUT", f"/api/actions/connector/{created['id']}", body={"name": "j", "config": kc.INDEX_RECORD_CONFIG}
    )
    kc.assert_validation_error(resp, "secrets")
    assert token in json.dumps(kb.stored(SPACE, created["id"]))


def test_put_replaces_config(kb: kc.Kibana) -> None:
    """api-behaviour.md §10: PUT does not merge config; an omitted required key fails validation."""
    created = kb.create({"name": "idx", "connector_type_id": ".index", "config": {"index": "i", "refresh": True}})
    path = f"/api/actions/connector/{created['id']}"
    kc.assert_validation_error(kb.request("PUT", path, body={"name": "idx"}), "config")
    resp = kb.request("PUT", path, body={"name": "idx", "config": {"index": "j"}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["config"] == {"index": "j", "refresh": False, "executionTimeField": None}


def test_is_missing_secrets_false_everywhere(kb: kc.Kibana) -> None:
    """api-behaviour.md §10: `is_missing_secrets` is false on create, update, get and get_all."""
    created = kb.create({"name": "log", "connector_type_id": ".server-log"})
    path = f"/api/actions/connector/{created['id']}"
    updated = kb.request("PUT", path, body={"name": "log2"}).json()
    fetched = kb.request("GET", path).json()
    listed = next(c for c in kb.request("GET", "/api/actions/connectors").json() if c["id"] == created["id"])
    assert [
        created["is_missing_secrets"],
        updated["is_missing_secrets"],
        fetched["is_missing_secrets"],
        listed["is_missing_secrets"],
    ] == [False, False, False, False]


# ------------------------------------------------------------------------------- referenced_by_count


def _count(kb: kc.Kibana, connector_id: str, space: str = SPACE) -> int:
    listing = kb.request("GET", "/api/actions/connectors", space=space).json()
    count: int = next(c for c in listing if c["id"] == connector_id)["referenced_by_count"]
    return count


def test_referenced_by_count_from_seeded_rules() -> None:
    """T:get_all.ts referenced_by_count; api-behaviour.md §11: references from every space count."""
    connector_id = str(uuid.uuid4())
    seed = kc.fixture_seed(
        connectors=[
            {
                "id": connector_id,
                "space": SPACE,
                "name": "log",
                "connector_type_id": ".server-log",
                "config": {},
                "secrets": {},
            }
        ],
        rules=[
            {
                "id": str(uuid.uuid4()),
                "space": SPACE,
                "name": "r1",
                "actions": [{"id": connector_id, "group": "default", "params": {}}],
            },
            {
                "id": str(uuid.uuid4()),
                "space": SPACE,
                "name": "r2",
                "actions": [
                    {"id": connector_id, "group": "default", "params": {}},
                    {"id": "my-slack1", "group": "default", "params": {"message": "m"}},
                ],
            },
        ],
    )
    kb = kc.make_kibana(seed)
    assert _count(kb, connector_id) == 2
    assert _count(kb, "my-slack1") == 0


def test_referenced_by_count_follows_rule_lifecycle(kb: kc.Kibana) -> None:
    """T:get_all.ts rule creation, then the rule's deletion takes the count back to 0."""
    created = kb.create({"name": "log", "connector_type_id": ".server-log"})
    rule = kb.request(
        "POST",
        "/api/alerting/rule",
        body=kc.rule_body([{"group": "default", "id": created["id"], "params": {"message": "m"}}]),
    )
    assert rule.status_code == 200, rule.text
    assert _count(kb, created["id"]) == 1
    deleted = kb.request("DELETE", f"/api/alerting/rule/{rule.json()['id']}")
    assert deleted.status_code == 204, deleted.text
    assert _count(kb, created["id"]) == 0


def test_delete_referenced_connector_is_allowed(kb: kc.Kibana) -> None:
    """api-behaviour.md §6: no reference check on delete."""
    created = kb.create({"name": "log", "connector_type_id": ".server-log"})
    rule = kb.request(
        "POST",
        "/api/alerting/rule",
        body=kc.rule_body([{"group": "default", "id": created["id"], "params": {"message": "m"}}]),
    )
    assert rule.status_code == 200, rule.text
    assert kb.request("DELETE", f"/api/actions/connector/{created['id']}").status_code == 204
