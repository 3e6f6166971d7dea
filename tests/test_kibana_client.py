"""KibanaClient against httpx.MockTransport handlers: paths, headers, error mapping, retries,
confirmed creates, read_live's request count, malformed answers, and no secret in any message."""

from __future__ import annotations

import email.utils
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx
from helpers.transports import Handler, Recorder, WireMocker

from reconciler.connection import Connection
from reconciler.errors import (
    ConfigError,
    KibanaAuthError,
    KibanaConflict,
    KibanaError,
    KibanaNotFound,
    KibanaUnavailable,
)
from reconciler.kibana import KibanaClient
from reconciler.model import LiveConnector, LiveState

BASE = "http://kibana.test"
CID = "0f8c6a52-5d0e-4b8e-9a51-6b6372000001"

class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_client(
    handler: Handler, *, env: dict[str, str] | None = None, retries: int = 4, clock: float = 1_000_000.0
) -> tuple[KibanaClient, Recorder, Sleeps]:
    recorder = Recorder(handler)
    sleeps = Sleeps()
    conn = Connection.from_env({"KIBANA_URL": BASE, **(env or {})})
    client = KibanaClient(
        conn,
        transport=httpx.MockTransport(recorder),
        retries=retries,
        backoff=0.5,
        sleep=sleeps,
        random=lambda: 0.5,
        clock=lambda: clock,
    )
    return client, recorder, sleeps


def connector_body(cid: str = CID, name: str = "Slack", type_: str = ".slack", **extra: Any) -> dict[str, Any]:
    return {
        "id": cid, "name": name, "connector_type_id": type_, "config": {}, "is_preconfigured": False,
        "is_deprecated": False, "is_missing_secrets": False, "is_system_action": False, **extra,
    }


def error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"statusCode": status, "error": "x", "message": message})


# ------------------------------------------------------------------------------------------
# paths and headers


def test_traversal_id_stays_in_one_segment() -> None:
    client, rec, _ = make_client(lambda r: error(404, "Saved object [action/x] not found"))
    assert client.get_connector("default", "../../api/security") is None
    assert rec.raw_paths == ["/api/actions/connector/..%2F..%2Fapi%2Fsecurity"]


@pytest.mark.parametrize(("cid", "segment"), [("..", "%2E%2E"), (".", "%2E"), ("a?b#c%d", "a%3Fb%23c%25d"),
                                              ("x/../../y", "x%2F..%2F..%2Fy")])
def test_ids_are_encoded(cid: str, segment: str) -> None:
    client, rec, _ = make_client(lambda r: httpx.Response(204))
    client.delete_connector("team-a", cid)
    assert rec.raw_paths == [f"/s/team-a/api/actions/connector/{segment}"]


@pytest.mark.parametrize("space", ["Team", "a/b", "../x", "", "x y", "é"])
def test_bad_space_is_refused_before_any_request(space: str) -> None:
    client, rec, _ = make_client(lambda r: httpx.Response(200, json=[]))
    with pytest.raises(ConfigError, match="space id"):
        client.list_connectors(space)
    with pytest.raises(ConfigError):
        client.read_live(["default", space])
    assert rec.requests == []


@pytest.mark.parametrize("cid", ["", "x\ny", "a" * 2000])
def test_bad_ids_are_refused_before_any_request(cid: str) -> None:
    client, rec, _ = make_client(lambda r: httpx.Response(204))
    with pytest.raises(ConfigError):
        client.delete_connector("default", cid)
    assert rec.requests == []


def test_kibana_url_with_base_path() -> None:
    rec = Recorder(lambda r: httpx.Response(200, json=[]))
    client = KibanaClient(Connection.from_env({"KIBANA_URL": "http://kibana.test/kbn/"}),
                          transport=httpx.MockTransport(rec))
    client.list_connectors("ops")
    assert rec.raw_paths == ["/kbn/s/ops/api/actions/connectors"]


def test_xsrf_only_on_mutations_and_user_agent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/connectors"):
            return httpx.Response(200, json=[])
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path.endswith("_execute"):
            return httpx.Response(200, json={"connector_id": CID, "status": "ok"})
        return httpx.Response(200, json=connector_body())

    client, rec, _ = make_client(handler, env={"KIBANA_API_KEY": "abc"})
    client.list_connectors("default")
    client.create_connector("default", CID, name="Slack", type=".slack", config={}, secrets={"webhookUrl": "u"})
    client.update_connector("default", CID, name="Slack", config={}, secrets={"webhookUrl": "u"})
    client.execute_connector("default", CID, {"message": "hi"})
    client.delete_connector("default", CID)
    for request in rec.requests:
        assert request.headers["user-agent"].startswith("kcr/")
        assert request.headers["authorization"] == "ApiKey abc"
        if request.method == "GET":
            assert "kbn-xsrf" not in request.headers
        else:
            assert request.headers["kbn-xsrf"] == "true"
        if request.method in ("POST", "PUT"):
            assert request.headers["content-type"] == "application/json"
    assert [r.method for r in rec.requests] == ["GET", "POST", "PUT", "POST", "DELETE"]
    post = json.loads(rec.requests[1].content)
    assert post == {"name": "Slack", "connector_type_id": ".slack", "config": {}, "secrets": {"webhookUrl": "u"}}
    put = json.loads(rec.requests[2].content)
    assert put == {"name": "Slack", "config": {}, "secrets": {"webhookUrl": "u"}}
    assert json.loads(rec.requests[3].content) == {"params": {"message": "hi"}}


# ------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, KibanaError), (401, KibanaAuthError), (403, KibanaAuthError), (404, KibanaNotFound),
     (409, KibanaConflict), (422, KibanaError), (500, KibanaUnavailable), (501, KibanaUnavailable)],
)
def test_error_mapping_by_status(status: int, cls: type[KibanaError]) -> None:
    client, _, _ = make_client(lambda r: error(status, "Kibana says no"))
    with pytest.raises(KibanaError) as info:
        client.update_connector("ops", CID, name="n", config={}, secrets={})
    assert type(info.value) is cls
    assert info.value.status == status
    text = str(info.value)
    assert f"PUT /s/ops/api/actions/connector/{CID}" in text
    assert str(status) in text
    assert "Kibana says no" in text


PRIVILEGE = "the credentials lack a privilege"
TYPE_DISABLED = "the type needs a higher licence or is not in xpack.actions.enabledActionTypes"


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ('Unauthorized to create a ".slack" action', PRIVILEGE),
        ("Unauthorized to update actions", PRIVILEGE),
        ("Action type .gen-ai is disabled because your platinum license does not support it. "
         "Please upgrade your license.", TYPE_DISABLED),
        ('action type ".slack" is not enabled in the Kibana config xpack.actions.enabledActionTypes', TYPE_DISABLED),
        ("Forbidden by the proxy", None),
        ("", None),
    ],
)
def test_403_hint_follows_the_message(message: str, hint: str | None) -> None:
    client, _, _ = make_client(lambda r: error(403, message))
    with pytest.raises(KibanaError) as info:
        client.update_connector("ops", CID, name="n", config={}, secrets={})
    assert type(info.value) is KibanaAuthError  # the type follows the status, whatever the wording
    text = str(info.value)
    assert message in text
    for other in (PRIVILEGE, TYPE_DISABLED):
        assert (other in text) == (other == hint)


def test_error_mapping_ignores_message_wording() -> None:
    # A 400 that reads like a not-found is still a plain KibanaError.
    client, _, _ = make_client(lambda r: error(400, "Saved object [action/x] not found"))
    with pytest.raises(KibanaError) as info:
        client.delete_connector("default", CID)
    assert type(info.value) is KibanaError


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(400, text="<html>bad gateway proxy</html>"),
        httpx.Response(400, json=["not", "an", "object"]),
        httpx.Response(400, json={"statusCode": 400}),
        httpx.Response(400, json={"message": {"nested": True}}),
        httpx.Response(400),
    ],
)
def test_error_bodies_parsed_defensively(response: httpx.Response) -> None:
    client, _, _ = make_client(lambda r: response)
    with pytest.raises(KibanaError) as info:
        client.update_connector("default", CID, name="n", config={}, secrets={})
    assert "400" in str(info.value)


def test_errors_never_carry_the_request_body() -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    url_secret = f"https://hooks.slack.test/{canary}"

    def handler(request: httpx.Request) -> httpx.Response:
        # A Kibana that quotes what it was sent, in every way it could.
        return httpx.Response(400, json={"message": f"error validating secrets: {request.content.decode()}"})

    client, _, _ = make_client(handler)
    calls: list[Callable[[], object]] = [
        lambda: client.create_connector("default", CID, name="n", type=".slack", config={},
                                        secrets={"webhookUrl": url_secret}),
        lambda: client.update_connector("default", CID, name="n", config={},
                                        secrets={"nested": {"list": [url_secret]}}),
        lambda: client.execute_connector("default", CID, {"token": canary}),
    ]
    for call in calls:
        with pytest.raises(KibanaError) as info:
            call()
        assert canary not in str(info.value)
        assert canary not in repr(info.value)
        assert "***" in str(info.value)


def test_logs_carry_no_headers_or_bodies(caplog: pytest.LogCaptureFixture) -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    client, _, _ = make_client(lambda r: httpx.Response(200, json=connector_body()),
                               env={"KIBANA_API_KEY": canary})
    with caplog.at_level(logging.DEBUG, logger="kcr.kibana"):
        client.update_connector("default", CID, name="n", config={}, secrets={"k": canary})
    assert f"PUT /api/actions/connector/{CID} -> 200" in caplog.text
    assert canary not in caplog.text


# ------------------------------------------------------------------------------------------
# retries


def sequence(*responses: httpx.Response | type[Exception]) -> Handler:
    items = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, type):
            raise item("boom", request=request)  # type: ignore[call-arg]
        return item

    return handler


def test_get_retries_with_jittered_backoff() -> None:
    client, rec, sleeps = make_client(
        sequence(httpx.Response(503), httpx.Response(502), httpx.Response(504), httpx.Response(200, json=[]))
    )
    assert client.list_connectors("default") == []
    assert len(rec.requests) == 4
    # full jitter with random() = 0.5: 0.5 * 0.5 * 2**attempt
    assert sleeps.delays == [0.25, 0.5, 1.0]


def test_retry_after_seconds_and_date_are_honoured_and_capped() -> None:
    now = 1_000_000.0
    date = email.utils.formatdate(now + 12, usegmt=True)
    client, _, sleeps = make_client(
        sequence(
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(503, headers={"Retry-After": date}),
            httpx.Response(429, headers={"Retry-After": "86400"}),
            httpx.Response(429, headers={"Retry-After": "garbage"}),
            httpx.Response(200, json=[]),
        ),
        clock=now,
    )
    client.list_connectors("default")
    assert sleeps.delays == [7.0, 12.0, 60.0, 0.5 * 0.5 * 8]


def test_retries_are_bounded() -> None:
    client, rec, sleeps = make_client(lambda r: error(503, "Kibana server is not ready yet"), retries=2)
    with pytest.raises(KibanaUnavailable, match="503"):
        client.list_connectors("default")
    assert len(rec.requests) == 3
    assert len(sleeps.delays) == 2


def test_no_retry_on_other_statuses() -> None:
    client, rec, sleeps = make_client(lambda r: error(500, "internal"))
    with pytest.raises(KibanaUnavailable):
        client.list_connectors("default")
    assert len(rec.requests) == 1
    assert sleeps.delays == []


def test_transport_errors_on_get_are_retried() -> None:
    client, rec, _ = make_client(sequence(httpx.ConnectError, httpx.ReadTimeout, httpx.Response(200, json=[])))
    assert client.list_connectors("default") == []
    assert len(rec.requests) == 3


def test_transport_error_after_retries_is_unavailable() -> None:
    client, rec, _ = make_client(sequence(httpx.ConnectError), retries=1)
    with pytest.raises(KibanaUnavailable, match="could not be reached"):
        client.list_connectors("default")
    assert len(rec.requests) == 2


def test_execute_is_not_retried_blindly() -> None:
    client, rec, _ = make_client(sequence(httpx.Response(503), httpx.Response(200, json={"status": "ok"})))
    with pytest.raises(KibanaUnavailable):
        client.execute_connector("default", CID, {})
    assert len(rec.requests) == 1
    client2, rec2, _ = make_client(sequence(httpx.ReadError, httpx.Response(200, json={"status": "ok"})))
    with pytest.raises(KibanaUnavailable):
        client2.execute_connector("default", CID, {})
    assert len(rec2.requests) == 1


def test_execute_is_retried_on_429() -> None:
    client, rec, _ = make_client(sequence(httpx.Response(429), httpx.Response(200, json={"status": "ok"})))
    assert client.execute_connector("default", CID, {})["status"] == "ok"
    assert len(rec.requests) == 2


class FakeStore:
    """A tiny connector store whose faults fire after the server-side change, like a dropped reply."""

    def __init__(self) -> None:
        self.connectors: dict[str, dict[str, Any]] = {}
        self.faults: list[str] = []  # per POST/DELETE: "drop-after" | "drop-before" | "503-after" | "ok"
        self.on_get: Callable[[], None] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        cid = request.url.path.rsplit("/", 1)[-1]
        if request.method == "GET":
            if self.on_get:
                self.on_get()
            if cid in self.connectors:
                return httpx.Response(200, json=self.connectors[cid])
            return error(404, f"Saved object [action/{cid}] not found")
        fault = self.faults.pop(0) if self.faults else "ok"
        if fault == "drop-before":
            raise httpx.ConnectError("connection refused", request=request)
        if request.method == "POST":
            if cid in self.connectors:
                return error(409, f"Saved object [action/{cid}] conflict")
            body = json.loads(request.content)
            self.connectors[cid] = connector_body(cid, body["name"], body["connector_type_id"])
            result = httpx.Response(200, json=self.connectors[cid])
        else:  # DELETE
            if cid not in self.connectors:
                return error(404, f"Saved object [action/{cid}] not found")
            del self.connectors[cid]
            result = httpx.Response(204)
        if fault == "drop-after":
            raise httpx.ReadError("connection reset", request=request)
        if fault == "503-after":
            return httpx.Response(503)
        return result


def create(client: KibanaClient, name: str = "Slack") -> LiveConnector:
    return client.create_connector("default", CID, name=name, type=".slack", config={}, secrets={"webhookUrl": "s"})


def test_ambiguous_create_is_confirmed_by_reading() -> None:
    store = FakeStore()
    store.faults = ["drop-after"]
    client, rec, _ = make_client(store)
    live = create(client)
    assert live.id == CID and live.name == "Slack"
    assert rec.count("POST") == 1
    assert rec.count("GET") == 1


def test_create_after_5xx_that_happened_is_confirmed() -> None:
    store = FakeStore()
    store.faults = ["503-after"]
    client, rec, _ = make_client(store)
    assert create(client).id == CID
    assert rec.count("POST") == 1


def test_create_that_did_not_happen_is_retried() -> None:
    store = FakeStore()
    store.faults = ["drop-before", "drop-before"]
    client, rec, sleeps = make_client(store)
    assert create(client).id == CID
    assert rec.count("POST") == 3
    assert rec.count("GET") == 2
    assert len(sleeps.delays) == 2
    assert list(store.connectors) == [CID]


def test_retried_create_meeting_409_is_confirmed() -> None:
    store = FakeStore()
    store.faults = ["drop-before"]

    def handler(request: httpx.Request) -> httpx.Response:
        response = store(request)
        if request.method == "GET" and response.status_code == 404:
            # the first create lands only after kcr has looked: the retry meets a 409
            store.connectors[CID] = connector_body(CID, "Slack", ".slack")
        return response

    client, rec, _ = make_client(handler)
    assert create(client).name == "Slack"
    assert [r.method for r in rec.requests] == ["POST", "GET", "POST", "GET"]


def test_ambiguous_create_of_a_different_connector_is_a_conflict() -> None:
    store = FakeStore()
    store.connectors[CID] = connector_body(CID, "Someone else's", ".webhook")
    store.faults = ["drop-before"]
    client, _, _ = make_client(store)
    with pytest.raises(KibanaConflict, match="another name or type"):
        create(client)


def test_plain_409_on_first_create_is_a_conflict() -> None:
    store = FakeStore()
    store.connectors[CID] = connector_body(CID, "Slack", ".slack")
    client, rec, _ = make_client(store)
    with pytest.raises(KibanaConflict, match="409"):
        create(client)
    assert rec.count("GET") == 0


def test_create_is_retried_on_429_without_reading() -> None:
    client, rec, _ = make_client(sequence(httpx.Response(429, headers={"Retry-After": "1"}),
                                          httpx.Response(200, json=connector_body())))
    assert create(client).id == CID
    assert [r.method for r in rec.requests] == ["POST", "POST"]


def test_create_throttled_past_its_budget_is_reported_without_reading() -> None:
    """The 429 budget is the same policy's as for reads; a 429 never leaves a create in doubt."""
    client, rec, sleeps = make_client(sequence(*[httpx.Response(429, headers={"Retry-After": "2"})] * 20))
    with pytest.raises(KibanaError, match="429"):
        create(client)
    assert [r.method for r in rec.requests] == ["POST"] * 11
    assert sleeps.delays == [2.0] * 10


def test_create_giving_up_after_ambiguous_failures() -> None:
    store = FakeStore()
    store.faults = ["drop-before"] * 5
    client, rec, _ = make_client(store, retries=1)
    with pytest.raises(KibanaUnavailable, match="does not exist"):
        create(client)
    assert rec.count("POST") == 2


def test_delete_retried_after_ambiguous_failure_then_404_is_success() -> None:
    store = FakeStore()
    store.connectors[CID] = connector_body()
    store.faults = ["drop-after"]
    client, rec, _ = make_client(store)
    client.delete_connector("default", CID)
    assert rec.count("DELETE") == 2
    assert store.connectors == {}


def test_delete_of_absent_connector_is_not_found() -> None:
    client, _, _ = make_client(FakeStore())
    with pytest.raises(KibanaNotFound, match="not found"):
        client.delete_connector("default", CID)


# ------------------------------------------------------------------------------------------
# reading


def kibana_with(spaces: list[str] | None, connectors: dict[str, list[dict[str, Any]]]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/spaces/space":
            if spaces is None:
                return error(404, "Not Found")
            return httpx.Response(200, json=[{"id": s, "name": s.title()} for s in spaces])
        if path.endswith("/api/actions/connector_types"):
            return httpx.Response(200, json=[
                {"id": ".slack", "name": "Slack", "enabled": True, "enabled_in_config": True,
                 "enabled_in_license": True, "minimum_license_required": "gold", "supported_feature_ids": [],
                 "is_system_action_type": False},
                {"id": ".email", "name": "Email", "enabled": True, "enabled_in_config": True,
                 "enabled_in_license": True, "minimum_license_required": "basic", "supported_feature_ids": []},
            ])
        if path.endswith("/api/actions/connectors"):
            space = path.split("/")[2] if path.startswith("/s/") else "default"
            # the list, unlike a single GET, carries referenced_by_count
            return httpx.Response(200, json=[{"referenced_by_count": 0, **c} for c in connectors.get(space, [])])
        return error(404, "Not Found")

    return handler


@pytest.mark.parametrize("count", [1, 3, 7])
def test_read_live_makes_s_plus_2_requests(count: int) -> None:
    spaces = ["default"] + [f"team-{i}" for i in range(count - 1)]
    connectors = {s: [connector_body(str(uuid.uuid4()), f"c-{s}")] for s in spaces}
    client, rec, _ = make_client(kibana_with([*spaces, "unused"], connectors))
    live = client.read_live(spaces)
    assert isinstance(live, LiveState)
    assert len(rec.requests) == count + 2
    assert list(live.spaces) == spaces
    assert live.known_spaces == frozenset([*spaces, "unused"])
    assert live.spaces["default"].connectors[0].name == "c-default"
    assert live.connector_types[".slack"].minimum_license_required == "gold"
    assert live.connector_types[".email"].enabled is True
    assert live.kibana_url == BASE


def test_read_live_unknown_space_lists_known_ones() -> None:
    client, rec, _ = make_client(kibana_with(["default", "ops"], {}))
    with pytest.raises(ConfigError) as info:
        client.read_live(["default", "opps", "sec"])
    text = str(info.value)
    assert "spaces opps (did you mean 'ops'?), sec not found" in text
    assert "known spaces: default, ops" in text
    assert len(rec.requests) == 1


def test_read_live_unknown_space_suggests_each_close_match() -> None:
    client, _, _ = make_client(kibana_with(["default", "ops", "security"], {}))
    with pytest.raises(ConfigError) as info:
        client.read_live(["defualt", "securty", "zzz"])
    text = str(info.value)
    assert "defualt (did you mean 'default'?)" in text
    assert "securty (did you mean 'security'?)" in text
    assert "zzz not found" in text and "zzz (did you mean" not in text


def test_spaces_api_404_is_a_wrong_url_not_only_default() -> None:
    """Kibana 8+ always has spaces: a 404 there means the basePath is missing or extra."""
    client, rec, _ = make_client(kibana_with(None, {"default": [connector_body()]}),
                                 env={"KIBANA_URL": "https://kibana.test/wrong-base"})
    with pytest.raises(ConfigError) as info:
        client.read_live(["default"])
    text = str(info.value)
    assert "https://kibana.test/wrong-base" in text
    assert "answered 404 for /api/spaces/space" in text
    assert "server.basePath included" in text
    assert len(rec.requests) == 1  # nothing listed, nothing planned
    with pytest.raises(ConfigError, match="404"):
        client.list_spaces()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"a": 1}',
        b'[1, 2]',
        b'[{"name": "no id"}]',
        b'[{"id": 5}]',
        b'[{"id": "x", "config": "a string"}]',
        b'[{"id": "x", "referenced_by_count": "many"}]',
    ],
)
def test_malformed_lists_are_kibana_errors(body: bytes) -> None:
    client, _, _ = make_client(lambda r: httpx.Response(200, content=body))
    with pytest.raises(KibanaError) as info:
        client.list_connectors("ops")
    assert "GET /s/ops/api/actions/connectors" in str(info.value)


@pytest.mark.parametrize("body", [b"[]", b"null", b'{"id": 1}', b"<html>"])
def test_malformed_single_answers_are_kibana_errors(body: bytes) -> None:
    client, _, _ = make_client(lambda r: httpx.Response(200, content=body))
    with pytest.raises(KibanaError):
        client.get_connector("default", CID)
    with pytest.raises(KibanaError):
        client.update_connector("default", CID, name="n", config={}, secrets={})


@pytest.mark.parametrize("body", [b'{"x": []}', b'[{"name": "t"}]', b'"str"', b'[{"id": ".x", "enabled": {}}]'])
def test_malformed_types_and_spaces(body: bytes) -> None:
    client, _, _ = make_client(lambda r: httpx.Response(200, content=body))
    with pytest.raises(KibanaError):  # a flag that is not a boolean is never read as one (fail closed)
        client.connector_types()
    if body != b'[{"id": ".x", "enabled": {}}]':
        with pytest.raises(KibanaError):
            client.list_spaces()


def test_rules_referencing_query_and_paging() -> None:
    rules = [{"id": f"rule-{i}", "name": f"Rule {i}"} for i in range(150)]

    def handler(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        assert request.url.path == "/s/ops/api/alerting/rules/_find"
        assert json.loads(params["has_reference"]) == {"type": "action", "id": CID}
        assert params["per_page"] == "100"
        page = int(params["page"])
        chunk = rules[(page - 1) * 100: page * 100]
        return httpx.Response(200, json={"page": page, "per_page": 100, "total": len(rules), "data": chunk})

    client, rec, _ = make_client(handler)
    found = client.rules_referencing("ops", CID)
    assert len(rec.requests) == 2
    assert [r.id for r in found] == [r["id"] for r in rules]
    assert found[0].name == "Rule 0" and found[0].space == "ops"


def test_rules_referencing_malformed() -> None:
    client, _, _ = make_client(lambda r: httpx.Response(200, json={"data": [{"name": "no id"}], "total": 1}))
    with pytest.raises(KibanaError, match="_find"):
        client.rules_referencing("default", CID)


def test_with_respx() -> None:
    """respx's default mocker patches httpcore, which kcr's own transport does not use: its mocker does."""
    with respx.mock(base_url=BASE, assert_all_called=True, using=WireMocker.name) as mock:
        route = mock.get("/s/ops/api/actions/connectors").respond(200, json=[connector_body(referenced_by_count=3)])
        with KibanaClient(Connection.from_env({"KIBANA_URL": BASE, "KIBANA_BEARER_TOKEN": "t"})) as client:
            [live] = client.list_connectors("ops")
        assert live.referenced_by_count == 3
        assert route.calls.last.request.headers["authorization"] == "Bearer t"


def test_being_throttled_does_not_use_up_the_retries_for_failures() -> None:
    """Six 429s, then two 503s, then success: the 429s have their own budget (10 by default)."""
    throttled = [httpx.Response(429, headers={"Retry-After": "1"})] * 6
    client, rec, sleeps = make_client(
        sequence(*throttled, httpx.Response(503), httpx.Response(503), httpx.Response(200, json=[])), retries=2
    )
    assert client.list_connectors("default") == []
    assert len(rec.requests) == 9
    assert sleeps.delays[:6] == [1.0] * 6


def test_throttling_without_end_still_stops() -> None:
    client, rec, _ = make_client(sequence(*[httpx.Response(429, headers={"Retry-After": "1"})] * 30), retries=2)
    with pytest.raises(KibanaError):
        client.list_connectors("default")
    assert len(rec.requests) == 1 + 10 + 2  # its own 10 retries, then the 2 for failures, then reported
