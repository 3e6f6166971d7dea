"""Issue #11, fail closed on live answers: a connector answer missing a field a safety decision reads,
or with it of the wrong type, is refused rather than defaulted; a 7.x-shaped answer is named as
unsupported; the same connector id in two spaces' lists (a proxy dropping /s/<space>) or twice in one
list stops the run before anything is sent; no delete is planned of an id declared in another space;
and apply blocks a delete or recreate whose referenced_by_count it cannot re-read."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.applier_fakes import FakeClient, FakeResolver, by_address, change, cid, live, plan_of, run
from helpers.builders import LISTED_ID, desired, listed_body, live_state, spec
from helpers.cli import run_main, write_repo

from reconciler import planfile as plan_json
from reconciler import render
from reconciler.apply_report import Status, exit_code
from reconciler.connection import Connection
from reconciler.errors import KibanaError
from reconciler.kibana import KibanaClient
from reconciler.model import LiveConnector, SpaceSettings, derive_connector_id
from reconciler.plan import Action
from reconciler.planner import make_plan
from reconciler.sandbox import Sandbox

KIBANA = "http://kibana.test"
CID = LISTED_ID
STRAY = "7c1b2f6e-9a7d-4b1e-8c3f-2d4e5f6a7b8c"
LOGS_ID = derive_connector_id("default", "logs")
MUTATING = ("POST", "PUT", "DELETE")


# --- answers checked field by field -------------------------------------------------------------------------


def answering(body: Any) -> KibanaClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    return KibanaClient(Connection.from_env({"KIBANA_URL": KIBANA}), transport=httpx.MockTransport(handler),
                        sleep=lambda s: None)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ...), ("connector_type_id", ...), ("referenced_by_count", ...), ("id", ""),
        ("name", 5), ("connector_type_id", ["x"]), ("connector_type_id", ""),
        ("referenced_by_count", True), ("referenced_by_count", "3"), ("referenced_by_count", 2.5),
        ("referenced_by_count", None), ("is_preconfigured", "false"), ("is_preconfigured", None),
        ("is_system_action", 1), ("is_deprecated", "no"),
    ],
)
def test_a_list_entry_missing_or_mistyping_a_field_is_refused(field: str, value: Any) -> None:
    client = answering([listed_body(**{field: value})])
    with pytest.raises(KibanaError) as info:
        client.list_connectors("ops")
    text = str(info.value)
    assert "GET /s/ops/api/actions/connectors" in text and "not what kcr expects" in text
    assert field in text



@pytest.mark.parametrize("bad_id", ["tab\there", "x" * 1025], ids=["control character", "too long"])
def test_a_live_id_kcr_could_not_address_is_refused_before_it_reaches_a_plan(bad_id: str) -> None:
    client = answering([listed_body(id=bad_id)])
    with pytest.raises(KibanaError, match="connector id"):
        client.list_connectors("ops")

@pytest.mark.parametrize(
    ("field", "value"),
    [("name", ...), ("connector_type_id", ...), ("name", ["n"]), ("connector_type_id", 7),
     ("referenced_by_count", 1.5), ("referenced_by_count", False), ("is_preconfigured", "true")],
)
def test_a_single_get_missing_or_mistyping_a_field_is_refused(field: str, value: Any) -> None:
    body = listed_body(**{"referenced_by_count": ..., field: value})
    client = answering(body)
    with pytest.raises(KibanaError, match=re.escape(f"GET /api/actions/connector/{CID}")) as info:
        client.get_connector("default", CID)
    assert field in str(info.value)


def test_a_single_get_without_a_count_reads_as_unknown_not_zero() -> None:
    """GET .../connector/{id} never carries referenced_by_count: unknown, not 0."""
    got = answering(listed_body(referenced_by_count=...)).get_connector("default", CID)
    assert got is not None and got.referenced_by_count is None


@pytest.mark.parametrize("single", [False, True])
def test_a_7x_camel_case_answer_is_named_as_unsupported(single: bool) -> None:
    old = {"id": CID, "name": "Slack", "actionTypeId": ".slack", "config": {}, "isPreconfigured": False,
           "isMissingSecrets": False, "referencedByCount": 0}
    client = answering(old if single else [old])
    with pytest.raises(KibanaError) as info:
        client.get_connector("default", CID) if single else client.list_connectors("default")
    text = str(info.value)
    assert "7.x shape (actionTypeId)" in text
    assert "kcr supports Kibana 8.x and later's /api/actions/connectors" in text


# --- the same id twice: answers that cannot be right ---------------------------------------------------------


class Proxy(httpx.BaseTransport):
    """A reverse proxy in front of the in-process sandbox: may drop `/s/<space>` from every path, rewrite the
    connector lists it passes back, or answer them itself; records every request that reaches it."""

    def __init__(self, sb: Sandbox, *, drop_space: bool = False,
                 lists: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
                 list_status: int | None = None) -> None:
        self.inner = sb.transport()
        self.drop_space = drop_space
        self.lists = lists
        self.list_status = list_status
        self.sent: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path))
        is_list = request.method == "GET" and request.url.path.endswith("/api/actions/connectors")
        if is_list and self.list_status is not None:
            return httpx.Response(self.list_status, json={"statusCode": self.list_status, "error": "Internal Server "
                                  "Error", "message": "An internal server error occurred."})
        if self.drop_space:
            path = re.sub(r"^/s/[^/]+", "", request.url.raw_path.decode())
            request = httpx.Request(request.method, f"{KIBANA}{path}", headers=request.headers,
                                    content=request.read())
        response = self.inner.handle_request(request)
        if is_list and self.lists is not None and response.status_code == 200:
            response.read()
            return httpx.Response(200, json=self.lists(json.loads(response.content)))
        return response

    def mutations(self) -> list[tuple[str, str]]:
        return [s for s in self.sent if s[0] in MUTATING]


def sandbox_mutations(sb: Sandbox) -> dict[str, int]:
    return {k: v for k, v in sb.counters.items() if k.split(" ")[0] in MUTATING}


def kcr(capsys: pytest.CaptureFixture[str], env: dict[str, str], transport: httpx.BaseTransport,
        *args: str) -> tuple[int, str]:
    code, out, err = run_main(capsys, args, env=env, transport=transport)
    return code, out + err


def env_for(tmp_path: Path) -> dict[str, str]:
    return {"KIBANA_URL": KIBANA, "KCR_RECORD": str(tmp_path / "record.json"), "KCR_FINGERPRINT_KEY": "k",
            "NO_COLOR": "1"}


def test_plan_refuses_lists_from_a_proxy_that_drops_the_space_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the proxy, `ops` gets default's list: a pruning `ops` would delete default's connector, and
    the DELETE, its /s/ops dropped too, would land in default."""
    sb = Sandbox.from_seed({
        "license": "platinum", "spaces": ["default", "ops"],
        "preconfigured": {"yml-log": {"name": "From kibana.yml", "actionTypeId": ".server-log"}},
        "connectors": [{"id": STRAY, "space": "default", "name": "Default's", "connector_type_id": ".server-log"}],
    })
    repo = write_repo(tmp_path / "repo", {
        "connectors/ops/_space.yaml": "prune: true\n",
        "connectors/ops/main.yaml": "connectors:\n  - id: history\n    name: History\n    type: .server-log\n",
        "connectors/default/main.yaml": "connectors:\n  - id: logs\n    name: Logs\n    type: .server-log\n",
    })
    env = env_for(tmp_path)
    code, text = kcr(capsys, env, sb.transport(), "plan", "--detailed-exitcode", "--dir", str(repo))
    assert code == 2, text  # direct: a preconfigured connector in every space's list is no clash

    proxy = Proxy(sb, drop_space=True)
    code, text = kcr(capsys, env, proxy, "plan", "--dir", str(repo))
    assert code == 1, text
    assert STRAY in text and "default, ops" in text and "/s/<space>" in text and "proxy" in text
    assert "yml-log" not in text.split("Error:", 1)[1]  # preconfigured connectors are listed everywhere

    code, text = kcr(capsys, env, proxy, "apply", "--auto-approve", "--dir", str(repo))
    assert code == 1, text
    assert proxy.mutations() == [] and sandbox_mutations(sb) == {}
    assert [c["id"] for c in sb.connectors_in("default")] == [STRAY]



def test_a_proxy_dropping_the_space_prefix_shows_even_when_only_another_space_is_planned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With only `ops` in the repository, the default space's list is read as a witness: through the
    proxy it names the same connector as `ops`'s, so nothing of default's is deleted."""
    sb = Sandbox.from_seed({
        "license": "platinum", "spaces": ["default", "ops"],
        "connectors": [{"id": STRAY, "space": "default", "name": "Prod pager", "connector_type_id": ".server-log"}],
    })
    repo = write_repo(tmp_path / "repo", {
        "connectors/ops/_space.yaml": "prune: true\n",
        "connectors/ops/main.yaml": "connectors:\n  - id: history\n    name: History\n    type: .server-log\n",
    })
    env = env_for(tmp_path)
    proxy = Proxy(sb, drop_space=True)
    code, text = kcr(capsys, env, proxy, "apply", "--auto-approve", "--dir", str(repo))
    assert code == 1, text
    assert STRAY in text and "default, ops" in text
    assert proxy.mutations() == [] and sandbox_mutations(sb) == {}
    assert [c["id"] for c in sb.connectors_in("default")] == [STRAY]
    code, text = kcr(capsys, env, sb.transport(), "plan", "--detailed-exitcode", "--dir", str(repo))
    assert code == 2, text  # direct: ops plans its create, default's connector is no business of its

def test_plan_refuses_a_list_naming_one_id_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sb = Sandbox.from_seed({
        "license": "platinum", "spaces": ["default"],
        "connectors": [{"id": STRAY, "space": "default", "name": "Stray", "connector_type_id": ".server-log"}],
    })
    repo = write_repo(tmp_path / "repo", {
        "connectors/default/_space.yaml": "prune: true\n",
        "connectors/default/main.yaml": "connectors:\n  - id: logs\n    name: Logs\n    type: .server-log\n",
    })
    proxy = Proxy(sb, lists=lambda items: items + items)
    env = env_for(tmp_path)
    for args in (("plan",), ("apply", "--auto-approve")):
        code, text = kcr(capsys, env, proxy, *args, "--dir", str(repo))
        assert code == 1, text
        assert STRAY in text and "more than once" in text
    assert proxy.mutations() == [] and sandbox_mutations(sb) == {}
    assert [c["id"] for c in sb.connectors_in("default")] == [STRAY]


# --- no delete of an id declared in another space -----------------------------------------------------------


def test_no_delete_is_planned_for_an_id_declared_in_another_space() -> None:
    """Kibana holds the connector in `default` (which prunes) while the repository declares its id in
    `ops`: deleting it from `default` is never what the declaration asks for."""
    declared = spec("moved", ".server-log", space="ops")
    conn = LiveConnector(id=declared.id, name="Moved", type=".server-log", config={}, is_missing_secrets=False,
                         referenced_by_count=0)
    plan = make_plan(
        desired(declared, settings={"default": SpaceSettings(prune=True)}),
        live_state({"default": [conn], "ops": []}),
        digests={}, record={},
    )
    [in_default] = [c for c in plan.changes if c.space == "default"]
    assert in_default.action is Action.UNMANAGED
    assert "declared in space ops" in in_default.reason
    assert not any(c.action is Action.DELETE for c in plan.changes)
    assert any(p.severity == "error" and "already exists in space default" in p.message for p in plan.problems)


# --- an unknown count is never 0 -----------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["delete", "recreate"])
def test_the_planner_blocks_a_delete_or_recreate_whose_count_is_unknown(action: str) -> None:
    if action == "delete":
        want = desired(settings={"default": SpaceSettings(prune=True)}, spaces=["default"])
        conn = LiveConnector(id=STRAY, name="Stray", type=".server-log", config={}, is_missing_secrets=False)
    else:
        s = spec("logs", ".server-log")
        want = desired(s)
        conn = LiveConnector(id=s.id, name="Logs", type=".index", config={"index": "x", "refresh": False},
                             is_missing_secrets=False)
    plan = make_plan(want, live_state({"default": [conn]}), digests={}, record={})
    [planned] = plan.changes
    assert planned.action is Action(action)
    assert planned.guard.blocked and planned.referenced_by_count is None
    assert any("referenced_by_count unknown" in r for r in planned.guard.reasons)
    again = plan_json.loads(plan_json.dumps(plan))  # a saved plan keeps it unknown (null), not 0
    assert again.changes[0].referenced_by_count is None
    assert "referenced_by_count: unknown" in render.text(again, color=False)


def seed_for(action: str) -> dict[str, Any]:
    conn = ({"id": STRAY, "space": "default", "name": "Stray", "connector_type_id": ".server-log"}
            if action == "delete" else
            {"id": LOGS_ID, "space": "default", "name": "Logs", "connector_type_id": ".index",
             "config": {"index": "logs"}})
    return {"license": "platinum", "spaces": ["default"], "connectors": [conn]}


REPO_FOR = {
    "delete": {"connectors/default/_space.yaml": "prune: true\n"},
    "recreate": {"connectors/default/main.yaml": "connectors:\n  - id: logs\n    name: Logs\n    type: .server-log\n"},
}
BREAKS: dict[str, dict[str, Any]] = {
    "missing from the list": {"lists": lambda items: []},  # e.g. cut at 10,000
    "list answers 500": {"list_status": 500},
    "count absent": {"lists": lambda items: [{k: v for k, v in c.items() if k != "referenced_by_count"}
                                             for c in items]},
}


@pytest.mark.parametrize("broken", sorted(BREAKS))
@pytest.mark.parametrize("action", ["delete", "recreate"])
def test_apply_blocks_a_delete_or_recreate_whose_count_cannot_be_re_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str, broken: str
) -> None:
    sb = Sandbox.from_seed(seed_for(action))
    repo = write_repo(tmp_path / "repo", REPO_FOR[action])
    env = env_for(tmp_path)
    saved = tmp_path / "plan.json"
    code, text = kcr(capsys, env, sb.transport(), "plan", "--out", str(saved), "--detailed-exitcode",
                     "--dir", str(repo))
    assert code == 2, text
    assert json.loads(saved.read_text())["summary"][action] == 1
    before = sb.connectors_in("default")
    sb.reset_counters()

    proxy = Proxy(sb, **BREAKS[broken])
    code, text = kcr(capsys, env, proxy, "apply", str(saved), "--allow-referenced", "all", "--dir", str(repo))
    assert code == 3, text  # blocked even with --allow-referenced all: the count is unknown, not "referenced"
    assert "referenced_by_count could not be re-read" in text and "re-run kcr apply" in text
    assert proxy.mutations() == [] and sandbox_mutations(sb) == {}
    assert sb.connectors_in("default") == before


def test_apply_blocks_a_listed_connector_without_a_count_whatever_allow_referenced_says() -> None:
    """A client that hands back a listed connector whose count is None (not carried) never gets a delete."""

    class NoCounts(FakeClient):
        def list_connectors(self, space: str) -> list[LiveConnector]:
            return [dataclasses.replace(c, referenced_by_count=None) for c in super().list_connectors(space)]

    client = NoCounts({("default", cid(1)): live(1)})
    report = run(plan_of(change(Action.DELETE, 1, before=live(1))), client, FakeResolver({}), allow_referenced="all")
    result = by_address(report)[f"default/{cid(1)}"]
    assert result.status is Status.BLOCKED and exit_code(report) == 3
    assert "referenced_by_count could not be re-read" in result.message
    assert client.calls == []  # no delete sent
    assert ("default", cid(1)) in client.store


# --- the run's own credential, connector types, text kcr could not write ------------------------------------

TOKEN = "CANARY-kibana-token-5b1e"


@pytest.mark.parametrize(
    ("env", "forms"),
    [
        ({"KIBANA_BEARER_TOKEN": TOKEN}, [TOKEN]),
        ({"KIBANA_API_KEY": f"id:{TOKEN}"}, [TOKEN, "aWQ6Q0FOQVJZLWtpYmFuYS10b2tlbi01YjFl"]),
        ({"KIBANA_USERNAME": "elastic", "KIBANA_PASSWORD": TOKEN},
         [TOKEN, "ZWxhc3RpYzpDQU5BUlkta2liYW5hLXRva2VuLTViMWU="]),
    ],
    ids=["bearer", "api key", "basic"],
)
def test_a_kibana_echoing_the_runs_own_credential_never_shows_it(env: dict[str, str], forms: list[str]) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"message": f"bad credential {request.headers['Authorization']} "
                                                    f"for {TOKEN}"})

    client = KibanaClient(Connection.from_env({"KIBANA_URL": KIBANA, **env}), transport=httpx.MockTransport(echo),
                          sleep=lambda s: None)
    for call in (lambda: client.list_spaces(), lambda: client.delete_connector("default", CID),
                 lambda: client.update_connector("default", CID, name="x", config={}, secrets={})):
        with pytest.raises(KibanaError) as info:
            call()
        assert "bad credential" in str(info.value)
        assert not [form for form in forms if form in str(info.value)]


@pytest.mark.parametrize("variable", ["KIBANA_API_KEY", "KIBANA_BEARER_TOKEN", "KIBANA_PASSWORD"])
def test_a_credential_with_a_trailing_newline_is_refused_by_name_not_value(variable: str) -> None:
    env = {"KIBANA_URL": KIBANA, "KIBANA_USERNAME": "elastic", variable: f"{TOKEN}\n"}
    with pytest.raises(Exception, match=variable) as info:
        Connection.from_env(env)
    assert TOKEN not in str(info.value)


TYPE = {"id": ".slack", "name": "Slack", "enabled": True, "enabled_in_config": True, "enabled_in_license": True,
        "minimum_license_required": "gold", "supported_feature_ids": ["alerting"], "is_system_action_type": False}


@pytest.mark.parametrize(
    "answer",
    [[], [{**TYPE, "enabled_in_license": "false"}], [{k: v for k, v in TYPE.items() if k != "enabled_in_config"}],
     [{**TYPE, "enabled": None}], [{**TYPE, "minimum_license_required": 5}]],
    ids=["empty list", "string false", "flag missing", "flag null", "licence not a string"],
)
def test_connector_types_that_cannot_be_trusted_are_refused_never_read_as_enabled(answer: list[Any]) -> None:
    with pytest.raises(KibanaError, match="connector_types"):
        answering(answer).connector_types()


def test_connector_types_as_kibana_answers_them_are_read() -> None:
    types = answering([TYPE, {**TYPE, "id": ".index", "enabled_in_license": False}]).connector_types()
    assert types[".slack"].enabled_in_license and not types[".index"].enabled_in_license


def test_a_name_holding_a_lone_surrogate_is_refused_before_it_reaches_a_plan() -> None:
    raw = json.dumps([listed_body(name="x")]).replace('"name": "x"', '"name": "Slack \\ud800"').encode()
    client = KibanaClient(Connection.from_env({"KIBANA_URL": KIBANA}),
                          transport=httpx.MockTransport(lambda r: httpx.Response(200, content=raw)),
                          sleep=lambda s: None)
    with pytest.raises(KibanaError, match="not valid Unicode"):
        client.list_connectors("ops")


def test_space_flag_never_deletes_a_connector_another_space_declares(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--space ops` limits what is planned, not what is known: the declaration in connectors/default
    still keeps a pruning `ops` from deleting the connector with that id."""
    sb = Sandbox.from_seed({
        "license": "platinum", "spaces": ["default", "ops"],
        "connectors": [{"id": CID, "space": "ops", "name": "Logs", "connector_type_id": ".server-log"}],
    })
    repo = write_repo(tmp_path / "repo", {
        "connectors/default/a.yaml": f"connectors:\n  - id: {CID}\n    name: Logs\n    type: .server-log\n",
        "connectors/ops/_space.yaml": "prune: true\n",
        "connectors/ops/b.yaml": "connectors:\n  - id: keep\n    name: K\n    type: .server-log\n",
    })
    proxy = Proxy(sb)
    code, text = kcr(capsys, env_for(tmp_path), proxy, "apply", "--space", "ops", "--auto-approve", "--dir", str(repo))
    assert code == 0, text
    assert f"ops/{CID}" in text and "declared in space default" in text
    assert [m for m in proxy.mutations() if m[0] == "DELETE"] == []
    assert CID in [c["id"] for c in sb.connectors_in("ops")]
    code, text = kcr(capsys, env_for(tmp_path), proxy, "plan", "--space", "nope", "--dir", str(repo))
    assert code == 1 and "connectors/nope" in text


def test_allow_referenced_with_a_key_declared_in_two_spaces_is_refused_as_ambiguous() -> None:
    from helpers.applier_fakes import desired as desired_connector

    from reconciler.errors import ConfigError
    from reconciler.pipeline import refuse_ambiguous_keys

    want = dataclasses.replace(desired_connector(1), key="logs")
    recreate_default = change(Action.RECREATE, 1, before=live(1, type=".email"), want=want)
    recreate_ops = dataclasses.replace(change(Action.RECREATE, 2, before=live(2, type=".email"), want=want),
                                       space="ops")
    plan = plan_of(recreate_default, recreate_ops)
    with pytest.raises(ConfigError, match="declared in spaces default, ops"):
        refuse_ambiguous_keys(plan, ["logs"])
    refuse_ambiguous_keys(plan, ["default/logs", cid(2)])  # a space/key or an id names one
