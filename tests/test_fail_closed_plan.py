"""Issue #11, part B: a saved plan is trusted only when it is consistent, authentic and aimed where the
operator says. A plan whose fields contradict each other is refused at load; with KCR_FINGERPRINT_KEY a
plan must carry a MAC that verifies; `kcr apply plan.json` never takes its target from the file; and
every plan kcr writes loads again, whatever ids the live connectors have."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import cli
from helpers.builders import mixed_plan
from helpers.cli import write_repo
from helpers.transports import Recorder

from reconciler import planfile as planmod
from reconciler.cli import main
from reconciler.errors import PlanFileError
from reconciler.model import derive_connector_id
from reconciler.sandbox import Sandbox

SOURCE = "plans/plan.json"
RERUN = "re-run `kcr plan --out`"
Body = dict[str, Any]


# --- load-time consistency ---------------------------------------------------------------------------


def body() -> Body:
    return copy.deepcopy(planmod.to_json(mixed_plan()))


def nth(b: Body, action: str, n: int = 0) -> dict[str, Any]:
    return [c for c in b["changes"] if c["action"] == action][n]


def refused(b: Body) -> str:
    with pytest.raises(PlanFileError) as info:
        planmod.loads(json.dumps(b), SOURCE)
    message = str(info.value)
    assert message.startswith(f"{SOURCE}: ") and message.endswith(RERUN), message
    return message


def desired_for(c: dict[str, Any]) -> dict[str, Any]:
    return {"key": "stray", "name": c["name"], "type": c["type"], "config": {}, "secret_refs": {},
            "protect": False, "file": None}


Edit = Callable[[Body], str | None]


def on(action: str, change: Callable[[dict[str, Any]], None], n: int = 0) -> Edit:
    """Edit the nth change of an action; the refusal must name that change's address."""
    def edit(b: Body) -> str:
        c = nth(b, action, n)
        change(c)
        return str(c["address"])
    return edit


def setter(**values: Any) -> Callable[[dict[str, Any]], None]:
    """`desired__name="x"` sets c["desired"]["name"]; `diffs__0__kind` indexes the list."""
    def apply(c: dict[str, Any]) -> None:
        for path, value in values.items():
            target: Any = c
            *parents, last = [int(p) if p.isdigit() else p for p in path.split("__")]
            for p in parents:
                target = target[p]
            target[last] = value
    return apply


def unguarded(count: int | None = None, protect: bool | None = None) -> Callable[[dict[str, Any]], None]:
    def apply(c: dict[str, Any]) -> None:
        c["guard"] = {"blocked": False, "reasons": [], "rules": []}
        if count is not None or c["action"] == "delete":
            c["referenced_by_count"] = count
        if protect is not None:
            c["desired"]["protect"] = protect
    return apply


def plan_level(change: Callable[[Body], None]) -> Edit:
    def edit(b: Body) -> None:
        change(b)
    return edit


def duplicate(b: Body) -> str:
    c = nth(b, "no-op")
    b["changes"].append(copy.deepcopy(c))
    return str(c["address"])


def moved_space(b: Body) -> str:
    c = nth(b, "unmanaged")
    c["space"] = "elsewhere"
    c["address"] = f"elsewhere/{c['id']}"
    return str(c["address"])


def ignored_change(b: Body) -> None:
    b["ignored"].append(nth(b, "no-op")["address"])


CONTRADICTIONS: list[tuple[str, Edit, str]] = [
    # what a change carries against its action
    ("delete carrying desired", on("delete", lambda c: c.update(desired=desired_for(c))),
     'desired: must be null for a change whose action is "delete"'),
    ("no-op carrying desired", on("no-op", lambda c: c.update(desired=desired_for(c))),
     'desired: must be null for a change whose action is "no-op"'),
    ("unmanaged carrying desired", on("unmanaged", lambda c: c.update(desired=desired_for(c))),
     'desired: must be null for a change whose action is "unmanaged"'),
    ("create without desired", on("create", setter(desired=None)), 'for a change whose action is "create"'),
    ("update without desired", on("update", setter(desired=None)), 'for a change whose action is "update"'),
    ("recreate without desired", on("recreate", setter(desired=None)), 'for a change whose action is "recreate"'),
    ("create with a fingerprint", on("create", setter(live_fingerprint="a" * 64)),
     'live_fingerprint: must be null for a change whose action is "create"'),
    ("update without a fingerprint", on("update", setter(live_fingerprint=None)),
     'live_fingerprint: must be of type string for a change whose action is "update"'),
    ("delete without a fingerprint", on("delete", setter(live_fingerprint=None)),
     'for a change whose action is "delete"'),
    ("recreate without a fingerprint", on("recreate", setter(live_fingerprint=None)),
     'for a change whose action is "recreate"'),
    ("create with a live type", on("create", setter(live_type=".slack")), "live_type: must be null"),
    ("delete without a live type", on("delete", setter(live_type=None)), 'live_type: must be of type string'),
    ("delete with a secret digest", on("delete", setter(secret_digest={"hmacs": {}, "vault_versions": {}})),
     'secret_digest: must be null for a change whose action is "delete"'),
    # type and name against desired
    ("desired type differs", on("update", setter(desired__type=".email")), "desired.type .email contradicts type"),
    ("desired name differs", on("update", setter(desired__name="Something else")), "desired.name contradicts name"),
    ("update changing the type", on("update", setter(live_type=".email")), "only a recreate changes"),
    ("unmanaged of another type", on("unmanaged", setter(live_type=".email")), "live_type .email contradicts"),
    ("recreate keeping the type", on("recreate", setter(live_type=".teams")), "that is an update"),
    ("create of something referenced", on("create", setter(referenced_by_count=2)),
     "a create has no live connector, yet referenced_by_count is 2"),
    # guards
    ("referenced delete not blocked", on("delete", unguarded(count=1), n=1),
     "referenced_by_count is 1, yet guard.blocked is false for a delete"),
    ("unknown count delete not blocked", on("delete", unguarded(), n=1),
     "referenced_by_count is unknown (null), yet guard.blocked is false"),
    ("protected recreate not blocked", on("recreate", unguarded(count=0, protect=True)),
     "desired.protect is true, yet guard.blocked is false for a recreate"),
    ("blocked without a reason", on("delete", setter(guard__reasons=[]), n=1), "guard.reasons is empty"),
    ("a reason without a block", on("delete", setter(guard__reasons=["referenced"])),
     "yet guard.blocked is false"),
    ("rules without a block", on("delete", setter(guard__rules=[{"id": "r", "name": "R", "space": "default"}])),
     "guard.rules names rules"),
    ("blocked no-op", on("no-op", setter(guard__blocked=True, guard__reasons=["x"])), "sends nothing to guard"),
    # secrets
    ("keys changed but secrets unchanged", on("update", setter(secret_keys_changed=["routingKey"]), n=1),
     "secret_keys_changed names 1 key(s), yet secrets is 'unchanged'"),
    ("delete sending secrets", on("delete", setter(secrets="changed")), "a delete sends no secrets"),
    ("no-op with changed secrets", on("no-op", setter(secrets="changed")), "changed secrets are an update"),
    ("create with unknown secrets", on("create", setter(secrets="unknown", secret_keys_changed=[])),
     "a create sends every declared secret"),
    ("digest of an undeclared secret", on("create", setter(secret_digest__hmacs={"other": "ab"})),
     "secret_digest.hmacs covers other"),
    # diffs: what the reviewer read
    ("no-op with diffs", on("no-op", setter(diffs=[{"path": "name", "kind": "changed", "before": "a", "after": "b"}])),
     "a no-op changes no field"),
    ("create diff not added", on("create", setter(diffs__0__kind="changed")), "a create only adds fields"),
    ("name diff not what is sent", on("create", setter(diffs__0__after="Another name")),
     "does not end at desired.name"),
    ("type diff on an update", on("update", lambda c: c["diffs"].append(
        {"path": "connector_type_id", "kind": "changed", "before": ".webhook", "after": ".email"})),
     "a connector_type_id diff on a update"),
    ("recreate without a type diff", on("recreate", setter(diffs=[])), "no connector_type_id diff"),
    ("type diff not the type change", on("recreate", setter(diffs__0__after=".email")),
     "does not go from live_type to desired.type"),
    # identity
    ("desired key of another id", on("update", setter(desired__key="some-other-key")),
     "desired.key 'some-other-key' does not give id"),
    ("space not in the plan", moved_space, "is not one of the plan's spaces (default, security)"),
    ("duplicate address", duplicate, "appears twice in changes"),
]

PLAN_LEVEL: list[tuple[str, Callable[[Body], None], str]] = [
    ("summary off", lambda b: b["summary"].update(delete=0), "summary counts delete 0 (the changes hold 2)"),
    ("blocked count off", lambda b: b["summary"].update(blocked=0), "summary counts blocked 0 (the changes hold 2)"),
    ("space twice", lambda b: b["spaces"].append("default"), "spaces: default is listed twice"),
    ("ignored and changed", ignored_change, "is also a change"),
    ("ignored elsewhere", lambda b: b["ignored"].append("ops/legacy-x"), "not one of the plan's spaces"),
    ("target not a URL", lambda b: b.update(kibana_url="kibana.test"), "kibana_url: is not an http(s) URL"),
    ("target empty", lambda b: b.update(kibana_url=""), "kibana_url: is not an http(s) URL"),
]


@pytest.mark.parametrize(("label", "edit", "needle"), CONTRADICTIONS, ids=[c[0] for c in CONTRADICTIONS])
def test_a_change_contradicting_itself_is_refused_at_load(label: str, edit: Edit, needle: str) -> None:
    b = body()
    address = edit(b)
    message = refused(b)
    assert f"change {address}: " in message and needle in message, message


@pytest.mark.parametrize(("label", "edit", "needle"), PLAN_LEVEL, ids=[c[0] for c in PLAN_LEVEL])
def test_a_plan_contradicting_its_changes_is_refused_at_load(label: str, edit: Callable[[Body], None],
                                                               needle: str) -> None:
    b = body()
    edit(b)
    assert needle in refused(b)


def test_target_with_credentials_refused_without_echo() -> None:
    canary = f"CANARY{uuid.uuid4().hex}"
    b = body()
    b["kibana_url"] = f"https://admin:{canary}@kibana.test"
    message = refused(b)
    assert "kibana_url: carries credentials" in message and canary not in message


@pytest.mark.parametrize("cid", ["My.Connector", "ABC_def", "legacy id with spaces", "ünïcode", "a/b?c#d%",
                                 "x" * 1024])
@pytest.mark.parametrize("action", ["unmanaged", "delete"])
def test_live_only_changes_accept_any_id_kibana_can_address(action: str, cid: str) -> None:
    b = body()
    c = nth(b, action)
    c["id"], c["address"] = cid, f"{c['space']}/{cid}"
    loaded = planmod.loads(json.dumps(b), SOURCE)
    assert any(x.id == cid and x.action.value == action for x in loaded.changes)


def test_ids_kcr_chose_keep_the_strict_rule() -> None:
    """Only the ids Kibana holds are taken as they are: one kcr would send in a create or update
    comes from a key, and the key rule still applies to it."""
    b = body()
    c = nth(b, "update")
    c["id"], c["address"] = "My.Connector", f"{c['space']}/My.Connector"
    assert "id is neither a UUID nor a key" in refused(b)
    b = body()
    c = nth(b, "unmanaged")
    c["id"], c["address"] = "My.Connector", f"{c['space']}/My.Connector"
    assert planmod.loads(json.dumps(b), SOURCE).changes


@pytest.mark.parametrize(("cid", "needle"), [("bad\nid", "contains control characters"),
                                             ("x" * 1025, "longer than 1024"),
                                             ("\ud800", "lone surrogate")])
def test_live_only_ids_the_client_cannot_send_are_refused(cid: str, needle: str) -> None:
    b = body()
    c = nth(b, "unmanaged")
    c["id"], c["address"] = cid, f"{c['space']}/{cid}"
    message = refused(b)
    assert needle in message and "\n" not in message


# --- the MAC ------------------------------------------------------------------------------------------


def expected_mac(b: Body, key: bytes) -> str:
    """The documented construction, computed here independently of reconciler.plan."""
    unsigned = {k: v for k, v in b.items() if k != "mac"}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "hmac-sha256:" + hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def test_mac_is_the_documented_hmac_and_a_signed_plan_still_loads() -> None:
    signed = json.loads(planmod.dumps(mixed_plan(), b"k1"))
    assert signed["mac"] == expected_mac(signed, b"k1")
    assert planmod.loads(json.dumps(signed), SOURCE, key=b"k1") == mixed_plan()
    assert planmod.loads(json.dumps(signed), SOURCE) == mixed_plan()  # no key: loads (the CLI warns)
    with pytest.raises(PlanFileError, match="does not verify"):
        planmod.loads(json.dumps(signed), SOURCE, key=b"k2")


@pytest.mark.parametrize("config", [{"a": 1, "b": [{"c": 2}]}, {1: "one", 10: "ten", 2: "two"}, {"x": {3: [{4: 5}]}}],
                         ids=["string keys", "int keys", "nested int keys"])
def test_a_plan_signs_what_its_json_reads_back_as(config: dict[Any, Any]) -> None:
    """The MAC is taken of the body as JSON gives it back (int keys become strings and sort as such):
    signing in memory and verifying the saved file agree whatever the keys."""
    body = {"format_version": "1.1", "changes": [{"desired": {"config": config}}], "problems": []}
    read_back = json.loads(json.dumps(body))
    assert planmod.sign(body, b"k") == planmod.sign(read_back, b"k") == expected_mac(read_back, b"k")


# --- end to end through the CLI --------------------------------------------------------------------------

KIBANA = "http://kibana.test"
KEY = "plan-signing-key"
ODD_IDS = ["My.Connector", "ABC_def", "legacy id with spaces"]
PRUNED = "legacy.Mail"
SLACK_ID = derive_connector_id("default", "slack-main")
HISTORY_ID = derive_connector_id("ops", "history")

REPO = {
    "connectors/default/_space.yaml": "prune: false\n",
    "connectors/default/chat.yaml": """\
connectors:
  - id: slack-main
    name: Slack main
    type: .slack
    secrets:
      webhookUrl: ${env:SLACK_URL}
""",
    "connectors/ops/_space.yaml": "prune: true\n",
    "connectors/ops/index.yaml": """\
connectors:
  - id: history
    name: History
    type: .index
    config:
      index: ops-history
""",
}


def seed() -> dict[str, Any]:
    def live(cid: str, space: str) -> dict[str, Any]:
        return {"id": cid, "space": space, "name": f"Made by hand: {cid}", "connector_type_id": ".server-log",
                "config": {}, "secrets": {}}
    return {"license": "platinum", "spaces": ["default", "ops"],
            "connectors": [*(live(cid, "default") for cid in ODD_IDS), live(PRUNED, "ops")]}


def recorder_for(sb: Sandbox | None = None) -> Recorder:
    """Every request kcr sends, passed on to the sandbox (or answered 500 when there is none)."""
    if sb is not None:
        return Recorder(sb.transport().handle_request)
    return Recorder(lambda _: httpx.Response(500, json={"statusCode": 500, "error": "Internal Server Error",
                                                        "message": "no"}))


class World(cli.World):
    def saved_plan(self, env: dict[str, str] | None = None) -> Path:
        path = self.repo / "plan.json"
        code, out, err = self.kcr("plan", "--out", str(path), env=env)
        assert code == 0, out + err
        self.sb.reset_counters()
        return path

    def without(self, *names: str) -> dict[str, str]:
        return {k: v for k, v in self.env.items() if k not in names}

    def live_ids(self, space: str) -> list[str]:
        return sorted(c["id"] for c in self.sb.connectors_in(space))


@pytest.fixture()
def world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> World:
    env = {"KIBANA_URL": KIBANA, "KIBANA_API_KEY": "not-a-real-api-key", "KCR_FINGERPRINT_KEY": KEY,
           "SLACK_URL": "https://hooks.example.com/T0/B0/x", "NO_COLOR": "1"}
    return World(repo=write_repo(tmp_path / "repo", REPO), env=env, sb=Sandbox.from_seed(seed()), capsys=capsys)


def assert_nothing_applied(w: World) -> None:
    assert w.sb.counters["total"] == 0, w.sb.counters
    assert w.live_ids("default") == sorted(ODD_IDS)
    assert w.live_ids("ops") == [PRUNED]


def test_plan_out_then_apply_with_non_uuid_live_ids(world: World) -> None:
    """Connectors kcr did not make keep their ids (older Kibanas, imports): the plan naming them, as
    unmanaged or as a prune delete, loads and applies; the unmanaged ones are not touched."""
    path = world.saved_plan()
    saved = json.loads(path.read_text())
    actions = {c["id"]: c["action"] for c in saved["changes"]}
    assert actions == {**dict.fromkeys(ODD_IDS, "unmanaged"), PRUNED: "delete", SLACK_ID: "create",
                       HISTORY_ID: "create"}
    recording = recorder_for(world.sb)
    code, out, err = world.kcr("apply", str(path), transport=recording.transport())
    assert code == 0, out + err
    assert world.live_ids("default") == sorted([*ODD_IDS, SLACK_ID])
    assert world.live_ids("ops") == [HISTORY_ID]
    assert ("DELETE", "/s/ops/api/actions/connector/legacy.Mail") in recording.writes
    touched = " ".join(path for _, path in recording.writes)
    assert not any(cid.replace(" ", "%20") in touched for cid in ODD_IDS), recording.writes


def test_signed_plan_applies_and_stdout_json_carries_the_same_mac(world: World) -> None:
    path = world.repo / "plan.json"
    code, out, err = world.kcr("plan", "--out", str(path), "--format", "json")
    assert code == 0, out + err
    saved = json.loads(path.read_text())
    assert re.fullmatch(r"hmac-sha256:[0-9a-f]{64}", saved["mac"])
    assert saved["mac"] == expected_mac(saved, KEY.encode())
    assert json.loads(out) == saved
    code, out, err = world.kcr("apply", str(path))
    assert code == 0, out + err
    assert "cannot be authenticated" not in err
    assert world.live_ids("ops") == [HISTORY_ID]


def tamper(path: Path) -> None:
    """A consistent edit (the loader's checks cannot see it): another index for the new connector."""
    saved = json.loads(path.read_text())
    change = next(c for c in saved["changes"] if c["id"] == HISTORY_ID)
    change["desired"]["config"]["index"] = "attacker-index"
    path.write_text(json.dumps(saved, indent=2))


def drop_mac(path: Path) -> None:
    saved = json.loads(path.read_text())
    del saved["mac"]
    path.write_text(json.dumps(saved, indent=2))


@pytest.mark.parametrize(("label", "edit", "apply_key", "needle"), [
    ("edited after planning", tamper, KEY, "the plan's MAC does not verify: the plan was edited after"),
    ("made with another key", None, "another-key", "or made with another KCR_FINGERPRINT_KEY"),
    ("MAC removed", drop_mac, KEY, "carries no MAC although KCR_FINGERPRINT_KEY is set"),
], ids=["tampered", "other key", "missing"])
def test_apply_with_the_key_refuses_an_unverified_plan(world: World, label: str,
                                                       edit: Callable[[Path], None] | None, apply_key: str,
                                                       needle: str) -> None:
    path = world.saved_plan()
    if edit is not None:
        edit(path)
    recording = recorder_for(world.sb)
    code, out, err = world.kcr("apply", str(path), env={**world.env, "KCR_FINGERPRINT_KEY": apply_key},
                               transport=recording.transport())
    assert code == 1, out + err
    assert needle in err and RERUN in err
    assert recording.requests == []
    assert_nothing_applied(world)


def test_unsigned_plan_refused_when_apply_has_the_key(world: World) -> None:
    path = world.saved_plan(env=world.without("KCR_FINGERPRINT_KEY"))
    assert "mac" not in json.loads(path.read_text())
    code, out, err = world.kcr("apply", str(path))
    assert code == 1 and "carries no MAC" in err, out + err
    assert_nothing_applied(world)


def test_apply_without_the_key_warns_the_plan_is_unauthenticated(world: World) -> None:
    env = world.without("KCR_FINGERPRINT_KEY")
    path = world.saved_plan(env=env)
    code, out, err = world.kcr("apply", str(path), env=env)
    assert code == 0, out + err
    assert "cannot be authenticated" in err
    assert "set KCR_FINGERPRINT_KEY to sign and verify plans" in err
    assert world.live_ids("ops") == [HISTORY_ID]


@pytest.mark.parametrize("extra", [{}, {"KIBANA_ENDPOINT": ""}], ids=["unset", "empty endpoint"])
def test_apply_without_a_kibana_url_sends_nothing(world: World, extra: dict[str, str]) -> None:
    """The URL inside the plan is not a target: the credentials go nowhere until the operator names one."""
    path = world.saved_plan()
    recording = recorder_for(world.sb)
    env = {**world.without("KIBANA_URL"), **extra}
    code, out, err = world.kcr("apply", str(path), env=env, transport=recording.transport())
    assert code == 1, out + err
    assert f"the plan targets {KIBANA}; set KIBANA_URL or pass --kibana-url to confirm the target" in err
    assert recording.requests == []
    assert_nothing_applied(world)


def test_apply_to_another_kibana_refused_before_the_record_or_kibana_hears_anything(world: World) -> None:
    path = world.saved_plan()
    recording = recorder_for()
    env = {**world.env, "KIBANA_URL": "http://other-kibana.test",
           "KCR_RECORD_HTTP_ADDRESS": "http://127.0.0.1:9/record"}
    code, out, err = world.kcr("apply", str(path), env=env, transport=recording.transport())
    assert code == 1, out + err
    assert f"the plan was made against {KIBANA} but KIBANA_URL is http://other-kibana.test" in err
    assert "record" not in err.lower()
    assert recording.requests == []


@pytest.mark.parametrize("url", [KIBANA + "/", "HTTP://Kibana.Test", "http://kibana.test:80//"])
def test_the_same_kibana_spelled_differently_is_accepted(world: World, url: str) -> None:
    path = world.saved_plan()
    code, out, err = world.kcr("apply", str(path), "--kibana-url", url, env=world.without("KIBANA_URL"))
    assert code == 0, out + err
    assert world.live_ids("ops") == [HISTORY_ID]


# --- an unsigned plan edited consistently still meets the repository and Kibana -----------------------------

PAGER_ID = derive_connector_id("default", "pager")
OTHER_ID = derive_connector_id("default", "other")


def _unsigned_world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path, dict[str, str], Any]:
    repo = tmp_path / "repo"
    (repo / "connectors/default").mkdir(parents=True)
    (repo / "connectors/default/a.yaml").write_text(
        "connectors:\n  - id: pager\n    name: Pager v2\n    type: .server-log\n    protect: true\n"
        "  - id: other\n    name: Other v2\n    type: .server-log\n")
    sb = Sandbox.from_seed({"license": "platinum", "spaces": ["default"], "connectors": [
        {"id": PAGER_ID, "space": "default", "name": "Pager", "connector_type_id": ".server-log"},
        {"id": OTHER_ID, "space": "default", "name": "Other", "connector_type_id": ".server-log"}]})
    env = {"KIBANA_URL": KIBANA, "NO_COLOR": "1", "KCR_RECORD": str(tmp_path / "record.json")}
    plan_file = tmp_path / "plan.json"
    assert main(["plan", "--out", str(plan_file), "--dir", str(repo)], env=env, transport=sb.transport()) == 0
    capsys.readouterr()
    return repo, plan_file, env, sb


def _edit(plan_file: Path, cid: str, **values: Any) -> None:
    b = json.loads(plan_file.read_text())
    for c in b["changes"]:
        if c["id"] == cid:
            c.update(values)
    b["summary"] = {a: sum(1 for c in b["changes"] if c["action"] == a)
                    for a in ("create", "update", "recreate", "delete", "no-op", "unmanaged")}
    b["summary"]["blocked"] = sum(1 for c in b["changes"] if c["guard"]["blocked"]
                                  and c["action"] in ("create", "update", "recreate", "delete"))
    plan_file.write_text(json.dumps(b))


def test_an_unsigned_plan_turning_an_update_into_a_delete_of_a_declared_connector_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, plan_file, env, sb = _unsigned_world(tmp_path, capsys)
    _edit(plan_file, PAGER_ID, action="delete", desired=None, diffs=[], secret_digest=None, name="Pager",
          secrets="none", guard={"blocked": False, "reasons": [], "rules": []})
    recording = recorder_for(sb)
    code = main(["apply", str(plan_file), "--dir", str(repo)], env=env, transport=recording.transport())
    err = capsys.readouterr().err
    assert code == 1 and "deletes a connector that" in err and "a.yaml" in err
    assert recording.requests == []
    assert {c["id"] for c in sb.connectors_in("default")} == {PAGER_ID, OTHER_ID}


def test_an_unsigned_plan_lying_about_the_live_type_recreates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, plan_file, env, sb = _unsigned_world(tmp_path, capsys)
    _edit(plan_file, OTHER_ID, action="recreate", live_type=".email",
          diffs=[{"path": "connector_type_id", "kind": "changed", "before": ".email", "after": ".server-log"}])
    recording = recorder_for(sb)
    code = main(["apply", str(plan_file), "--dir", str(repo)], env=env, transport=recording.transport())
    out = capsys.readouterr().out
    assert code == 1 and "Kibana holds a .server-log connector, the plan says .email" in out
    assert [r for r in recording.sent if r[0] == "DELETE"] == []
    assert {c["id"] for c in sb.connectors_in("default")} == {PAGER_ID, OTHER_ID}
