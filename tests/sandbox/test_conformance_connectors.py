"""Conformance of the sandbox's connector routes with Kibana's own API integration tests.

Ported from `elastic/kibana:x-pack/platform/test/alerting_api_integration/security_and_spaces/group2/
tests/actions/` — create.ts, update.ts, delete.ts, get.ts, get_all.ts, execute.ts, connector_types.ts —
in the authorized view ("superuser at space1" / "space_1_all at space1"), through `/s/space1` paths.
Fixture types are replaced by real ones as `kibana_cases` explains. Where Kibana's expected body
carries a field that only newer versions send (`is_connector_type_deprecated`, `auth_mode`), the field
may be absent but must hold Kibana's value when present (api-behaviour.md marks them VERSION-DEPENDENT).

Cases not ported, and why:
- Every 403 `Unauthorized to ...` branch (no_kibana_privileges, global_read, space_1_all_alerts_none_actions,
  space_1_all at space2, and space_1_all on `other`): they need Kibana users and feature privileges,
  which the sandbox does not model.
- create.ts / update.ts / delete.ts "should handle save hooks appropriately" / "delete hooks": the hooks
  are test-plugin types writing into an Elasticsearch index (ES-only behaviour).
- checkAAD calls in create.ts / update.ts: they read the encrypted saved object from Elasticsearch.
- execute.ts: the indexed-record assertions, event-log checks ("validateEventLog"), "have proper callCluster
  and savedObjectsClient authorization", "should authorize system actions correctly" (test-only
  `/api/alerts_fixture` route) and "should log api key information" (security API keys, event log);
  the HTTP statuses of the first two are still ported.
- delete.ts "should delete a connector with an unsupported type": it imports a saved-objects export
  file with an unregistered type; the sandbox seed only holds registered types.
- connector_types.ts asserts the test-plugin type `test.index-record` is listed; ported with real types.
"""

from __future__ import annotations

import uuid
from typing import Any

import kibana_cases as kc  # sibling module; pytest puts this directory on sys.path (no __init__.py)
import pytest

SPACE = kc.SPACE


@pytest.fixture
def kb() -> kc.Kibana:
    return kc.make_kibana()


# ---------------------------------------------------------------------------------------------- create.ts


def test_create_connector(kb: kc.Kibana) -> None:
    """create.ts: it('should handle create connector request appropriately')."""
    resp = kb.request(
        "POST",
        "/api/actions/connector",
        body={
            "name": "My Connector",
            "connector_type_id": kc.INDEX_RECORD_TYPE,
            "config": kc.INDEX_RECORD_CONFIG,
            "secrets": kc.index_record_secrets(),
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body["id"], str)
    uuid.UUID(body["id"])  # a generated id is a UUID v4 (api-behaviour.md §12)
    assert kc.without_versioned(body) == kc.connector_body(
        body["id"], "My Connector", kc.INDEX_RECORD_TYPE, kc.INDEX_RECORD_CONFIG
    )


def test_create_unregistered_type(kb: kc.Kibana) -> None:
    """create.ts: it(`should handle create connector request appropriately when connector type isn't registered`)."""
    resp = kb.request(
        "POST",
        "/api/actions/connector",
        body={"name": "My Connector", "connector_type_id": "test.unregistered-action-type", "config": {}},
    )
    kc.assert_error(resp, 400, 'Action type "test.unregistered-action-type" is not registered.')


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_empty_payload(kb: kc.Kibana, method: str) -> None:
    """create.ts / update.ts: it('should handle create|update connector request appropriately when payload is
    empty and invalid') — PUT targets the nonexistent id `1`: the body schema runs before the lookup."""
    path = "/api/actions/connector" if method == "POST" else "/api/actions/connector/1"
    resp = kb.request(method, path, body={})
    kc.assert_error(resp, 400, "[request body.name]: expected value of type [string] but got [undefined]")


def test_create_missing_required_secret(kb: kc.Kibana) -> None:
    """create.ts: it(`should handle create connector request appropriately when config isn't valid`) — the
    required secret is missing, so the secrets validation answers."""
    resp = kb.request(
        "POST",
        "/api/actions/connector",
        body={"name": "my name", "connector_type_id": kc.INDEX_RECORD_TYPE, "config": kc.INDEX_RECORD_CONFIG},
    )
    kc.assert_validation_error(resp, "secrets")


def test_create_type_not_enabled(kb: kc.Kibana) -> None:
    """create.ts: it(`should handle create connector requests for connector types that are not enabled`)."""
    resp = kb.request(
        "POST",
        "/api/actions/connector",
        body={
            "name": "my name",
            "connector_type_id": kc.NOT_ENABLED_TYPE,
            "secrets": {"webhookUrl": "http://localhost:5620/teams"},
        },
    )
    kc.assert_error(
        resp,
        403,
        f'action type "{kc.NOT_ENABLED_TYPE}" is not enabled in the Kibana config xpack.actions.enabledActionTypes',
    )


@pytest.mark.parametrize("blank", [" ", "", "\t\n"])
def test_create_blank_config_string(kb: kc.Kibana, blank: str) -> None:
    """create.ts: it(`should handle create connector request appropriately when empty strings are submitted`)
    — the message prints '' whatever blank was sent."""
    resp = kb.request(
        "POST",
        "/api/actions/connector",
        body={"name": "my name", "connector_type_id": kc.INDEX_RECORD_TYPE, "config": {"encrypted": blank}},
    )
    kc.assert_error(resp, 400, "[request body.config.encrypted]: value '' is not valid")


def test_create_with_predefined_uuid(kb: kc.Kibana) -> None:
    """create.ts: it('should handle create connector request appropriately with a predefined id')."""
    predefined = str(uuid.uuid4())
    resp = kb.request(
        "POST",
        f"/api/actions/connector/{predefined}",
        body={
            "name": "My Connector",
            "connector_type_id": kc.INDEX_RECORD_TYPE,
            "config": kc.INDEX_RECORD_CONFIG,
            "secrets": kc.index_record_secrets(),
        },
    )
    assert resp.status_code == 200, resp.text
    assert kc.without_versioned(resp.json()) == kc.connector_body(
        predefined, "My Connector", kc.INDEX_RECORD_TYPE, kc.INDEX_RECORD_CONFIG
    )
    assert kb.request("GET", f"/api/actions/connector/{predefined}").status_code == 200


@pytest.mark.parametrize("connector_id", sorted(kc.PRECONFIGURED))
def test_create_with_preconfigured_id(kb: kc.Kibana, connector_id: str) -> None:
    """create.ts: it(`shouldn't create a preconfigured connector with the same id as an existing one`) — the
    preconfigured check runs before the type lookup, so Kibana's unregistered fixture type is kept."""
    resp = kb.request(
        "POST",
        f"/api/actions/connector/{connector_id}",
        body={"name": "My Connector", "connector_type_id": "system-abc-action-type", "config": {}, "secrets": {}},
    )
    kc.assert_error(resp, 400, f"This {connector_id} already exists in a preconfigured action.")


def test_create_system_action(kb: kc.Kibana) -> None:
    """create.ts: it(`shouldn't create a system action`)."""
    resp = kb.request(
        "POST",
        "/api/actions/connector",
        body={"name": "My system action", "connector_type_id": kc.SYSTEM_TYPE, "config": {}, "secrets": {}},
    )
    kc.assert_error(resp, 400, f"System action creation is forbidden. Action type: {kc.SYSTEM_TYPE}.")


# ---------------------------------------------------------------------------------------------- update.ts


def test_update_connector(kb: kc.Kibana) -> None:
    """update.ts: it('should handle update connector request appropriately')."""
    created = kb.create_index_record()
    resp = kb.request(
        "PUT",
        f"/api/actions/connector/{created['id']}",
        body={
            "name": "My Connector updated",
            "config": kc.INDEX_RECORD_CONFIG,
            "secrets": kc.index_record_secrets(),
        },
    )
    assert resp.status_code == 200, resp.text
    assert kc.without_versioned(resp.json()) == kc.connector_body(
        created["id"], "My Connector updated", kc.INDEX_RECORD_TYPE, kc.INDEX_RECORD_CONFIG
    )


def test_update_from_another_space(kb: kc.Kibana) -> None:
    """update.ts: it(`shouldn't update connector from another space`) — superuser at space1 branch."""
    created = kb.create_index_record()
    resp = kb.request(
        "PUT",
        f"/api/actions/connector/{created['id']}",
        space=kc.OTHER,
        body={"name": "My Connector updated", "config": kc.INDEX_RECORD_CONFIG, "secrets": kc.index_record_secrets()},
    )
    kc.assert_error(resp, 404, f"Saved object [action/{created['id']}] not found")
    assert kb.request("GET", f"/api/actions/connector/{created['id']}").json()["name"] == "My Connector"


def test_update_null_config(kb: kc.Kibana) -> None:
    """update.ts: it('should handle update connector request appropriately when passing a null config')."""
    resp = kb.request("PUT", "/api/actions/connector/1", body={"name": "My Connector updated", "config": None})
    kc.assert_error(resp, 400, "[request body.config]: expected value of type [object] but got [null]")


def test_update_nonexistent(kb: kc.Kibana) -> None:
    """update.ts: it(`should handle update connector request appropriately when connector doesn't exist`)."""
    resp = kb.request(
        "PUT",
        "/api/actions/connector/1",
        body={"name": "My Connector updated", "config": kc.INDEX_RECORD_CONFIG, "secrets": kc.index_record_secrets()},
    )
    kc.assert_error(resp, 404, "Saved object [action/1] not found")


def test_update_invalid_secrets(kb: kc.Kibana) -> None:
    """update.ts: it('should handle update connector request appropriately when secrets are not valid')."""
    created = kb.create_index_record()
    resp = kb.request(
        "PUT",
        f"/api/actions/connector/{created['id']}",
        body={
            "name": "My Connector updated",
            "config": kc.INDEX_RECORD_CONFIG,
            "secrets": {"email": "elastic@example.com", "apiToken": 42},
        },
    )
    kc.assert_validation_error(resp, "secrets")


@pytest.mark.parametrize("connector_id", sorted(kc.PRECONFIGURED))
def test_update_preconfigured(kb: kc.Kibana, connector_id: str) -> None:
    """update.ts: it(`shouldn't update a preconfigured connector`)."""
    resp = kb.request(
        "PUT",
        f"/api/actions/connector/{connector_id}",
        body={"name": "My Connector updated", "config": {"unencrypted": "x"}, "secrets": {"encrypted": "y"}},
    )
    kc.assert_error(resp, 400, f"Preconfigured action {connector_id} can not be updated.")


def test_update_blank_config_string(kb: kc.Kibana) -> None:
    """update.ts: it(`should handle update connector request appropriately when empty strings are submitted`)."""
    resp = kb.request(
        "PUT",
        "/api/actions/connector/1",
        body={"name": "My Connector updated", "config": {"unencrypted": " "}, "secrets": {"encrypted": "x"}},
    )
    kc.assert_error(resp, 400, "[request body.config.unencrypted]: value '' is not valid")


def test_update_system_action(kb: kc.Kibana) -> None:
    """update.ts: it(`shouldn't update a system action`)."""
    resp = kb.request(
        "PUT",
        f"/api/actions/connector/{kc.SYSTEM_CONNECTOR_ID}",
        body={"name": "My action updated", "config": {}, "secrets": {}},
    )
    kc.assert_error(resp, 400, f"System action {kc.SYSTEM_CONNECTOR_ID} can not be updated.")


# ---------------------------------------------------------------------------------------------- delete.ts


def test_delete_connector(kb: kc.Kibana) -> None:
    """delete.ts: it('should handle delete connector request appropriately')."""
    created = kb.create_index_record()
    resp = kb.request("DELETE", f"/api/actions/connector/{created['id']}")
    assert resp.status_code == 204, resp.text
    assert resp.content == b""
    assert kb.request("GET", f"/api/actions/connector/{created['id']}").status_code == 404


def test_delete_from_another_space(kb: kc.Kibana) -> None:
    """delete.ts: it(`shouldn't delete connector from another space`) — superuser at space1 branch."""
    created = kb.create_index_record()
    resp = kb.request("DELETE", f"/api/actions/connector/{created['id']}", space=kc.OTHER)
    kc.assert_error(resp, 404, f"Saved object [action/{created['id']}] not found")
    assert kb.request("GET", f"/api/actions/connector/{created['id']}").status_code == 200


def test_delete_nonexistent(kb: kc.Kibana) -> None:
    """delete.ts: it(`should handle delete request appropriately when connector doesn't exist`)."""
    resp = kb.request("DELETE", "/api/actions/connector/2")
    kc.assert_error(resp, 404, "Saved object [action/2] not found")


@pytest.mark.parametrize("connector_id", sorted(kc.PRECONFIGURED))
def test_delete_preconfigured(kb: kc.Kibana, connector_id: str) -> None:
    """delete.ts: it(`shouldn't delete preconfigured connector`) (my-slack1 there; every fixture here)."""
    resp = kb.request("DELETE", f"/api/actions/connector/{connector_id}")
    kc.assert_error(resp, 400, f"Preconfigured action {connector_id} is not allowed to delete.")


def test_delete_system_action(kb: kc.Kibana) -> None:
    """delete.ts: it(`shouldn't delete system action`)."""
    resp = kb.request("DELETE", f"/api/actions/connector/{kc.SYSTEM_CONNECTOR_ID}")
    kc.assert_error(resp, 400, f"System action {kc.SYSTEM_CONNECTOR_ID} is not allowed to delete.")


# ------------------------------------------------------------------------------------------------- get.ts


def test_get_connector(kb: kc.Kibana) -> None:
    """get.ts: it('should handle get connector request appropriately') — no referenced_by_count on GET."""
    created = kb.create_index_record()
    resp = kb.request("GET", f"/api/actions/connector/{created['id']}")
    assert resp.status_code == 200, resp.text
    assert kc.without_versioned(resp.json()) == kc.connector_body(
        created["id"], "My Connector", kc.INDEX_RECORD_TYPE, kc.INDEX_RECORD_CONFIG
    )


def test_get_from_another_space(kb: kc.Kibana) -> None:
    """get.ts: it(`connector shouldn't be acessible from another space`) — superuser at space1 branch."""
    created = kb.create_index_record()
    resp = kb.request("GET", f"/api/actions/connector/{created['id']}", space=kc.OTHER)
    kc.assert_error(resp, 404, f"Saved object [action/{created['id']}] not found")


@pytest.mark.parametrize("space", ["default", SPACE, kc.OTHER])
@pytest.mark.parametrize("connector_id", sorted(kc.PRECONFIGURED))
def test_get_preconfigured(kb: kc.Kibana, connector_id: str, space: str) -> None:
    """get.ts: it('should handle get preconfigured connector request appropriately'); spaces_only get.ts:
    it('should handle get a deprecated connector') — preconfigured connectors show in every space,
    without config or is_missing_secrets."""
    resp = kb.request("GET", f"/api/actions/connector/{connector_id}", space=space)
    assert resp.status_code == 200, resp.text
    assert kc.without_versioned(resp.json()) == kc.preconfigured_body(connector_id)


def test_get_system_action(kb: kc.Kibana) -> None:
    """get.ts: it('should throw when requesting a system action')."""
    resp = kb.request("GET", f"/api/actions/connector/{kc.SYSTEM_CONNECTOR_ID}")
    kc.assert_error(resp, 404, f"Connector {kc.SYSTEM_CONNECTOR_ID} not found")


def test_get_nonexistent(kb: kc.Kibana) -> None:
    """api-behaviour.md §3 (unknown id), as get.ts asserts for an id from another space."""
    missing = str(uuid.uuid4())
    kc.assert_error(
        kb.request("GET", f"/api/actions/connector/{missing}"), 404, f"Saved object [action/{missing}] not found"
    )


# --------------------------------------------------------------------------------------------- get_all.ts


def _preconfigured_listing() -> list[dict[str, Any]]:
    """get_all.ts's expected preconfigured part, in its order (localeCompare on name, ties stable)."""
    order = [
        "notification-email",
        "preconfigured-es-index-action",
        "my-deprecated-servicenow",
        "my-deprecated-servicenow-default",
        "my-slack1",
        "custom-system-abc-connector",
        "preconfigured.test.index-record",
        "my-test-email",
    ]
    return [{**kc.preconfigured_body(cid), "referenced_by_count": 0} for cid in order]


def _listing(kb: kc.Kibana, space: str = SPACE) -> list[dict[str, Any]]:
    resp = kb.request("GET", "/api/actions/connectors", space=space)
    assert resp.status_code == 200, resp.text
    return [kc.without_versioned(item) for item in resp.json()]


def _saved_listing_entry(created: dict[str, Any], count: int) -> dict[str, Any]:
    return {
        **kc.connector_body(created["id"], "My Connector", kc.INDEX_RECORD_TYPE, kc.INDEX_RECORD_CONFIG),
        "referenced_by_count": count,
    }


def test_get_all(kb: kc.Kibana) -> None:
    """get_all.ts: it('should handle get all connector request appropriately') — exact list and order."""
    created = kb.create_index_record()
    assert _listing(kb) == [_saved_listing_entry(created, 0), *_preconfigured_listing()]


def test_get_all_referenced_by_count(kb: kc.Kibana) -> None:
    """get_all.ts: it('should handle get all request appropriately with proper referenced_by_count') — a rule
    referencing the connector and the preconfigured my-slack1; only the saved object counts."""
    created = kb.create_index_record()
    rule = kb.request(
        "POST",
        "/api/alerting/rule",
        body=kc.rule_body(
            [
                {"group": "default", "id": created["id"], "params": {}},
                {"group": "default", "id": "my-slack1", "params": {"message": "test"}},
            ]
        ),
    )
    assert rule.status_code == 200, rule.text
    assert _listing(kb) == [_saved_listing_entry(created, 1), *_preconfigured_listing()]


def test_get_all_from_another_space(kb: kc.Kibana) -> None:
    """get_all.ts: it(`shouldn't get connectors from another space`) — superuser at space1 branch."""
    kb.create_index_record()
    assert _listing(kb, kc.OTHER) == _preconfigured_listing()


def test_get_all_excludes_system_actions(kb: kc.Kibana) -> None:
    """get_all.ts (system connectors absent from every expected list); api-behaviour.md §2."""
    listing = _listing(kb)
    assert all(not item["is_system_action"] for item in listing)
    assert kc.SYSTEM_CONNECTOR_ID not in {item["id"] for item in listing}


def test_get_all_sorts_by_locale_name(kb: kc.Kibana) -> None:
    """get_all.ts ordering rule (api-behaviour.md §2): names sorted with localeCompare, so case and
    punctuation do not follow ASCII order."""
    for name in ["zebra", "Apple", "banana", "Zulu", "_underscore"]:
        kb.create_index_record(name=name)
    saved = [item["name"] for item in _listing(kb, SPACE) if not item["is_preconfigured"]]
    assert saved == ["_underscore", "Apple", "banana", "zebra", "Zulu"]


# --------------------------------------------------------------------------------------------- execute.ts


def _execute(kb: kc.Kibana, connector_id: str, params: dict[str, Any], space: str = SPACE) -> Any:
    return kb.request("POST", f"/api/actions/connector/{connector_id}/_execute", space=space, body={"params": params})


def test_execute(kb: kc.Kibana) -> None:
    """execute.ts: it('should handle execute request appropriately') — HTTP part (the record lives in ES)."""
    created = kb.create_index_record()
    resp = _execute(kb, created["id"], {"reference": "actions-execute-1:superuser", "message": "Testing 123"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["connector_id"] == created["id"]
    assert body["status"] in ("ok", "error")


def test_execute_from_another_space(kb: kc.Kibana) -> None:
    """execute.ts: it(`shouldn't execute an connector from another space`) — superuser at space1 branch."""
    created = kb.create_index_record()
    resp = _execute(kb, created["id"], {"message": "Testing 123"}, space=kc.OTHER)
    kc.assert_error(resp, 404, f"Saved object [action/{created['id']}] not found")


def test_execute_after_update(kb: kc.Kibana) -> None:
    """execute.ts: it('should handle execute request appropriately after connector is updated')."""
    created = kb.create_index_record()
    put = kb.request(
        "PUT",
        f"/api/actions/connector/{created['id']}",
        body={"name": "My Connector updated", "config": kc.INDEX_RECORD_CONFIG, "secrets": kc.index_record_secrets()},
    )
    assert put.status_code == 200, put.text
    resp = _execute(kb, created["id"], {"message": "Testing 123"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["connector_id"] == created["id"]


def test_execute_nonexistent(kb: kc.Kibana) -> None:
    """execute.ts: it(`should handle execute request appropriately when connector doesn't exist`)."""
    kc.assert_error(_execute(kb, "1", {"foo": True}), 404, "Saved object [action/1] not found")


def test_execute_empty_payload(kb: kc.Kibana) -> None:
    """execute.ts: it('should handle execute request appropriately when payload is empty and invalid')."""
    resp = kb.request("POST", "/api/actions/connector/1/_execute", body={})
    kc.assert_error(resp, 400, "[request body.params]: expected value of type [object] but got [undefined]")


def test_execute_after_changing_config(kb: kc.Kibana) -> None:
    """execute.ts: it('should handle execute request appropriately after changing config properties')."""
    created = kb.create(
        {
            "name": "test email connector",
            "connector_type_id": ".email",
            "config": {"from": "email-from-1@example.com", "host": "some.non.existent.com", "port": 666},
            "secrets": {"user": "email-user", "password": "email-password"},
        }
    )
    put = kb.request(
        "PUT",
        f"/api/actions/connector/{created['id']}",
        body={
            "name": "a test email connector 2",
            "config": {"from": "email-from-2@example.com", "service": "__json"},
            "secrets": {"user": "email-user", "password": "email-password"},
        },
    )
    assert put.status_code == 200, put.text
    resp = _execute(kb, created["id"], {"to": ["X"], "subject": "email-subject", "message": "email-message"})
    assert resp.status_code == 200, resp.text


def test_execute_system_action(kb: kc.Kibana) -> None:
    """api-behaviour.md §7 (execute.ts notes the public route refuses system actions)."""
    kc.assert_error(_execute(kb, kc.SYSTEM_CONNECTOR_ID, {}), 400, "Execution of system action is not allowed")


def test_execute_preconfigured(kb: kc.Kibana) -> None:
    """api-behaviour.md §7: preconfigured connectors can be executed (execute.ts fixtures use them in rules)."""
    resp = _execute(kb, "preconfigured-es-index-action", {"documents": [{"testing": [1, 2, 3]}]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["connector_id"] == "preconfigured-es-index-action"


# ------------------------------------------------------------------------------------- connector_types.ts


def _types(kb: kc.Kibana, space: str = SPACE, **params: str) -> list[dict[str, Any]]:
    resp = kb.request("GET", "/api/actions/connector_types", space=space, params=params or None)
    assert resp.status_code == 200, resp.text
    result: list[dict[str, Any]] = resp.json()
    return result


@pytest.mark.parametrize(
    ("type_id", "name"),
    [(".index", "Index"), (".slack", "Slack"), (".server-log", "Server log"), (".webhook", "Webhook")],
)
def test_connector_types_lists_defaults(kb: kc.Kibana, type_id: str, name: str) -> None:
    """connector_types.ts: it('should return 200 with list of action types containing defaults')."""
    assert any(t["id"] == type_id and t["name"] == name for t in _types(kb))


def test_connector_types_shape(kb: kc.Kibana) -> None:
    """connector_types.ts, response fields per api-behaviour.md §1."""
    required = {
        "id",
        "name",
        "enabled",
        "enabled_in_config",
        "enabled_in_license",
        "minimum_license_required",
        "supported_feature_ids",
        "is_system_action_type",
    }
    listing = _types(kb)
    assert listing
    for item in listing:
        assert required <= set(item), item
        assert item["minimum_license_required"] in {"basic", "standard", "gold", "platinum", "enterprise", "trial"}
        assert item["enabled"] == (item["enabled_in_config"] and item["enabled_in_license"])


def test_connector_types_exclude_system_types(kb: kc.Kibana) -> None:
    """api-behaviour.md §1: system action types are removed from the list."""
    listing = _types(kb)
    assert kc.SYSTEM_TYPE not in {t["id"] for t in listing}
    assert not any(t["is_system_action_type"] for t in listing)


def test_connector_types_not_enabled_in_config(kb: kc.Kibana) -> None:
    """connector_types with the test server's enabledActionTypes: `.teams` is listed but disabled."""
    teams = next(t for t in _types(kb) if t["id"] == kc.NOT_ENABLED_TYPE)
    assert teams["enabled_in_config"] is False
    assert teams["enabled"] is False


def test_connector_types_feature_filter(kb: kc.Kibana) -> None:
    """api-behaviour.md §1: `feature_id` filters by supported_feature_ids; an unknown one gives []."""
    alerting = _types(kb, feature_id="alerting")
    assert alerting
    assert all("alerting" in t["supported_feature_ids"] for t in alerting)
    assert _types(kb, feature_id="no-such-feature") == []


def test_connector_types_license_fields() -> None:
    """api-behaviour.md §1 with a gold licence: platinum types are listed but not enabled."""
    kb = kc.make_kibana(kc.fixture_seed(license="gold"))
    by_id = {t["id"]: t for t in _types(kb)}
    assert by_id[".servicenow"]["minimum_license_required"] == "platinum"
    assert by_id[".servicenow"]["enabled_in_license"] is False
    assert by_id[".servicenow"]["enabled"] is False
    assert by_id[".slack"]["enabled_in_license"] is True
    assert by_id[".slack"]["enabled"] is True


def test_server_log_create_and_execute_exact_current_shape() -> None:
    """connector_types/server_log.ts (elastic/kibana x-pack/platform/test/alerting_api_integration/
    security_and_spaces/group2/tests/actions/): the created and fetched bodies `eql` Kibana's, with
    `is_connector_type_deprecated: false` (the sandbox's default, current, response fields), and
    firing the action with `{level, message}` answers `status: 'ok'`."""
    kb = kc.make_kibana()
    resp = kb.request("POST", "/api/actions/connector", space="default",
                      body={"name": "A server.log action", "connector_type_id": ".server-log"})
    assert resp.status_code == 200, resp.text
    created = resp.json()
    expected = {
        "id": created["id"], "is_preconfigured": False, "is_system_action": False, "is_deprecated": False,
        "is_missing_secrets": False, "name": "A server.log action", "connector_type_id": ".server-log",
        "config": {}, "is_connector_type_deprecated": False,
    }
    assert created == expected
    assert kb.request("GET", f"/api/actions/connector/{created['id']}", space="default").json() == expected
    fired = kb.request("POST", f"/api/actions/connector/{created['id']}/_execute", space="default",
                       body={"params": {"level": "info",
                                        "message": "message posted by firing an action during a test"}})
    assert fired.status_code == 200 and fired.json()["status"] == "ok"
