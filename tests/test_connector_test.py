"""kcr test ID: Kibana's _execute answer, an HTTP 200 with status "error" included, becomes a TestResult."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.connection import Connection
from reconciler.connector_test import TestResult, exit_code, parse_params, render_text, run_connector_test
from reconciler.errors import ConfigError, KibanaNotFound
from reconciler.kibana import KibanaClient
from reconciler.sandbox import Sandbox

LOG_ID = "00000000-0000-4000-8000-000000000001"


class FakeClient:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def execute_connector(self, space: str, id: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((space, id, params))
        return self.body


def test_ok_with_data_and_default_params() -> None:
    client = FakeClient({"connector_id": "x", "status": "ok", "data": {"took": 3}})
    result = run_connector_test(client, "ops", "x", None)
    assert client.calls == [("ops", "x", {})]
    assert result == TestResult(status="ok", message="", service_message=None, data={"took": 3})
    assert result.ok and exit_code(result) == 0
    assert render_text(result, "ops/x") == "ops/x: ok\n"


def test_http_200_with_status_error_is_a_failure_with_kibanas_messages() -> None:
    client = FakeClient({"connector_id": "x", "status": "error",
                         "message": "an error occurred while running the action",
                         "service_message": "Request failed with status code 404", "retry": False,
                         "errorSource": "user"})
    result = run_connector_test(client, "default", "x", {"message": "hi"})
    assert client.calls == [("default", "x", {"message": "hi"})]
    assert not result.ok and exit_code(result) == 1
    assert result.message == "an error occurred while running the action"
    assert result.service_message == "Request failed with status code 404"
    assert result.error_source == "user"
    text = render_text(result, "default/x")
    assert "error: an error occurred while running the action" in text and "status code 404" in text
    assert "  error source: user (the params or the connector's settings: fix them and run again)" in text
    assert result.to_json()["status"] == "error"


def test_error_without_message_still_says_something() -> None:
    result = run_connector_test(FakeClient({"status": "error"}), "default", "x", {})
    assert not result.ok and result.message == "Kibana reported an error without a message"


@pytest.mark.parametrize(("text", "value"),
                         [(None, {}), ("", {}), ("  ", {}), ('{"message": "hi"}', {"message": "hi"})])
def test_parse_params(text: str | None, value: dict[str, Any]) -> None:
    assert parse_params(text) == value


@pytest.mark.parametrize(("text", "match"), [("{message: hi}", "not valid JSON at line 1"),
                                              ("[1, 2]", "expected a JSON object, got list"),
                                              ('"x"', "got str")])
def test_parse_params_errors_are_config_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_params(text)


def test_against_the_sandbox() -> None:
    sb = Sandbox.from_seed({"connectors": [{"id": LOG_ID, "space": "default", "name": "Log",
                                            "connector_type_id": ".server-log", "config": {}, "secrets": {}}]})
    client = KibanaClient(Connection.from_env({"KIBANA_URL": "http://kibana.test"}), transport=sb.transport())
    result = run_connector_test(client, "default", LOG_ID, {"message": "kcr test"})
    assert result.ok
    assert sb.counters["POST execute_connector"] == 1
    with pytest.raises(KibanaNotFound, match="not found"):
        run_connector_test(client, "default", "00000000-0000-4000-8000-000000000009", {})
