"""Day-2 polish a new user found (issue #15), each through the CLI against the in-process sandbox or
through the stage it lives in: `kcr test KEY` finds the key's space, `apply --format json` keeps stdout
JSON, the apply-time guard names the rules, file errors point at the right line in words, a recreate
shows what it loses, a connector removed from the files is drift, the Markdown plan puts what needs
action first, `-o`, and a "no" at apply's prompt exits 1."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.cli import World, write_repo

from reconciler import render
from reconciler.model import ConnectorSpec, LiveConnector, derive_connector_id
from reconciler.planfile import dumps, loads
from reconciler.sandbox import Sandbox
from reconciler.validate import validate

KIBANA = "http://kibana.test"
CANARY = "hunter2-day2-canary"

LOG = "connectors:\n  - id: {key}\n    name: {name}\n    type: .server-log\n"
INDEX = "connectors:\n  - id: {key}\n    name: {name}\n    type: .index\n    config:\n      index: {index}\n"


def world_of(tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str],
             seed: dict[str, Any] | None = None) -> World:
    base: dict[str, Any] = {"license": "platinum", "spaces": ["default", "platform", "ops"]}
    base.update(seed or {})
    env = {"KIBANA_URL": KIBANA, "KCR_FINGERPRINT_KEY": "k", "NO_COLOR": "1"}
    return World(write_repo(tmp_path / "repo", files), env, Sandbox.from_seed(base), capsys)


# --- 1. kcr test KEY ------------------------------------------------------------------------------------


def test_kcr_test_finds_the_space_that_declares_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = world_of(tmp_path, capsys, {"connectors/platform/log.yaml": LOG.format(key="audit-log", name="Audit")})
    assert w.kcr("apply", "--auto-approve")[0] == 0
    code, out, err = w.kcr("test", "audit-log", "--params", '{"message": "hi"}')
    assert code == 0, out + err
    cid = derive_connector_id("platform", "audit-log")
    assert f"platform/{cid}: ok" in out
    assert [e["connector_id"] for e in w.sb.executions] == [cid]


def test_kcr_test_asks_which_space_when_several_declare_the_key(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    w = world_of(tmp_path, capsys, {"connectors/platform/log.yaml": LOG.format(key="log", name="P"),
                                    "connectors/ops/log.yaml": LOG.format(key="log", name="O")})
    assert w.kcr("apply", "--auto-approve")[0] == 0
    code, _, err = w.kcr("test", "log")
    assert code == 1 and "declared in spaces ops, platform" in err and "--space" in err
    assert w.sb.executions == []  # a real notification is never sent to a guess
    params = ("--params", '{"message": "hi"}')
    assert w.kcr("test", "log", "--space", "ops", *params)[0] == 0
    assert w.kcr("test", "platform/log", *params)[0] == 0
    assert [e["connector_id"] for e in w.sb.executions] == [derive_connector_id("ops", "log"),
                                                            derive_connector_id("platform", "log")]


def test_kcr_test_says_an_unknown_key_is_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = world_of(tmp_path, capsys, {"connectors/platform/log.yaml": LOG.format(key="audit-log", name="Audit")})
    code, _, err = w.kcr("test", "audit-lgo")
    assert code == 1
    assert "unknown connector audit-lgo" in err and "no file under connectors/ declares it" in err
    assert "404" not in err and "Not Found" not in err
    # Declared but never applied: said as such, not as Kibana's 404 either.
    code, _, err = w.kcr("test", "audit-log")
    assert code == 1 and "declared in space platform" in err and "kcr apply" in err and "404" not in err


# --- 2. apply --format json -----------------------------------------------------------------------------


def test_apply_json_keeps_stdout_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = world_of(tmp_path, capsys, {"connectors/ops/log.yaml": LOG.format(key="log", name="O")})
    code, out, err = w.kcr("apply", "--auto-approve", "--format", "json")
    assert code == 0, err
    report = json.loads(out)  # the whole of stdout
    assert report["summary"]["ok"] == 1 and report["exit_code"] == 0
    assert "Plan: 1 to create" in err  # the text plan went to stderr
    code, out, err = w.kcr("apply", "--auto-approve", "--format", "json")  # nothing to do: still JSON
    assert code == 0 and json.loads(out)["results"] == [] and "No changes" in err


# --- 3. the guard at apply time names the rules ----------------------------------------------------------


def test_apply_guard_names_the_rules_added_since_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = world_of(tmp_path, capsys, {"connectors/ops/_space.yaml": "prune: true\n",
                                    "connectors/ops/log.yaml": LOG.format(key="log", name="O")})
    assert w.kcr("apply", "--auto-approve")[0] == 0
    (w.repo / "connectors/ops/log.yaml").write_text("connectors: []\n")
    plan_file = tmp_path / "plan.json"
    assert w.kcr("plan", "--out", str(plan_file))[0] == 0  # unused at plan time: an allowed delete
    cid = derive_connector_id("ops", "log")
    with httpx.Client(transport=w.sb.transport(), base_url=KIBANA, headers={"kbn-xsrf": "t"}) as http:
        answer = http.post("/s/ops/api/alerting/rule/rule-cpu", json={
            "name": "CPU high", "rule_type_id": ".index-threshold", "consumer": "alerts",
            "schedule": {"interval": "1m"}, "params": {}, "actions": [{"id": cid, "group": "default", "params": {}}]})
        assert answer.status_code == 200, answer.text
    code, out, err = w.kcr("apply", str(plan_file))
    assert code == 3, out + err
    assert 'used by rules: "CPU high" (rule-cpu)' in out, out
    assert cid in {c["id"] for c in w.sb.connectors_in("ops")}


# --- 4. file errors: where and in words ------------------------------------------------------------------


def _errors(root: Path) -> list[tuple[int | None, str]]:
    return [(p.line, p.message) for p in validate(root).errors]


def test_unknown_config_key_points_at_its_own_line(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"connectors/default/a.yaml": (
        "connectors:\n  - id: hist\n    name: H\n    type: .index\n    config:\n      index: h\n"
        "      refreshh: true\n      bogus:\n        nested: 1\n")})
    errors = _errors(root)
    assert (7, "config: unknown key 'refreshh' (did you mean 'refresh'?); known keys: executionTimeField, index, "
               "refresh") in errors, errors
    assert any(line == 8 and "unknown key 'bogus'" in m for line, m in errors), errors  # the key, not its value


def test_unclosed_quote_points_where_it_opens(tmp_path: Path) -> None:
    at_end = 'connectors:\n  - id: q\n    name: "unclosed\n    type: .index\n    config:\n      index: x\n'
    closed_later = at_end.replace("index: x", 'index: "x"')
    for text in (at_end, closed_later):
        [(line, message)] = _errors(write_repo(tmp_path / str(len(text)), {"connectors/default/a.yaml": text}))
        assert line == 3 and "quoted string opened here (\")" in message, message


def test_schema_errors_are_phrased_for_people(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"connectors/default/a.yaml": (
        "connectors:\n  - id: mail\n    name: Mail\n    type: .email\n    config:\n      from: a@example.com\n"
        "      host: smtp.example.com\n      port: abc\n    secrets: {user: '${env:U}', password: '${env:P}'}\n"
        "  - id: hook\n    name: Hook\n    type: .webhook\n    config: {url: 'https://x.example.com', method: fetch,"
        " hasAuth: 'no'}\n")})
    messages = [m for _, m in _errors(root)]
    assert 'config.port: must be a number, not "abc"' in messages, messages
    assert 'config.method: must be one of "post", "put", "patch", "get", "delete", not "fetch"' in messages
    assert 'config.hasAuth: must be true or false, not "no"' in messages
    assert not any("^\\s" in m or "is not of type" in m or "['" in m for m in messages), messages


def test_secret_values_stay_out_of_schema_errors(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"connectors/default/a.yaml": (
        "connectors:\n  - id: hook\n    name: Hook\n    type: .webhook\n    config: {url: 'https://x.example.com'}\n"
        f"    secrets: {{user: [{CANARY}], password: {{nested: {CANARY}}}}}\n")})
    report = validate(root)
    assert report.errors
    assert all(CANARY not in p.message for p in report.problems), [p.message for p in report.problems]


# --- 5. a recreate shows what it loses -------------------------------------------------------------------


def test_recreate_shows_the_old_types_config_it_loses() -> None:
    from reconciler import planner
    from reconciler.model import ConnectorTypeInfo, DesiredSpace, DesiredState, LiveSpace, LiveState, SpaceSettings

    spec = ConnectorSpec(space="default", id="c1", key="c1", name="Ops", type=".index", config={"index": "ops"},
                         secrets={})
    live = LiveConnector(id="c1", name="Ops", type=".webhook", config={"url": "https://hook.example.com/x",
                                                                       "method": "post", "hasAuth": False},
                         referenced_by_count=0)
    desired = DesiredState(spaces={"default": DesiredSpace("default", SpaceSettings(), (spec,))})
    types = {t: ConnectorTypeInfo(id=t, name=t) for t in (".index", ".webhook")}
    state = LiveState(kibana_url=KIBANA, spaces={"default": LiveSpace("default", (live,))},
                      known_spaces=frozenset({"default"}), connector_types=types)
    [change] = planner.make_plan(desired, state, digests={}, record={}).changes
    diffs = {d.path: (d.kind, d.before, d.after) for d in change.diffs}
    assert diffs["config.url"] == ("removed", "https://hook.example.com/x", None)
    assert diffs["config.method"] == ("removed", "post", None)
    assert diffs["config.index"][0] == "added"  # and what the new type gains, as before
    text = render.text(loads(dumps(planner.make_plan(desired, state, digests={}, record={}))), color=False)
    assert 'config.url: - "https://hook.example.com/x"' in text


# --- 6. removed from the files, still in Kibana ----------------------------------------------------------


def test_a_connector_removed_from_the_files_is_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hand_made = "0b5bd5a4-3b0f-4c59-8a8e-0d7f4b6b1f0e"
    w = world_of(tmp_path, capsys, {"connectors/ops/log.yaml": LOG.format(key="log", name="Ops log"),
                                    "connectors/ops/keep.yaml": INDEX.format(key="keep", name="Keep", index="k")},
                 seed={"connectors": [{"id": hand_made, "space": "ops", "name": "By hand",
                                       "connector_type_id": ".server-log"}]})
    assert w.kcr("apply", "--auto-approve")[0] == 0
    assert w.kcr("plan", "--detailed-exitcode")[0] == 0  # a hand-made connector is not drift
    (w.repo / "connectors/ops/log.yaml").unlink()
    code, out, err = w.kcr("plan", "--detailed-exitcode")
    assert code == 2, out + err
    cid = derive_connector_id("ops", "log")
    assert "Removed from the files, still in Kibana" in out and f"ops/{cid}" in out
    assert "removed from the files; still in Kibana" in out
    assert "No changes to apply, but 1 connector removed from the files still in Kibana (drift)." in out
    assert f"ops/{hand_made}" in out.split("Unmanaged (not declared")[1]  # the hand-made one stays unmanaged
    assert w.kcr("drift")[0] == 2
    code, out, _ = w.kcr("plan", "--format", "json")
    flagged = {c["id"] for c in json.loads(out)["changes"] if c.get("removed_from_files")}
    assert flagged == {cid}
    assert loads(out).has_drift and not loads(out).has_changes  # the saved form keeps it
    code, out, _ = w.kcr("plan", "--format", "markdown")
    assert "#### Removed from the files, still in Kibana" in out
    code, out, err = w.kcr("apply", "--auto-approve")  # apply leaves it alone: the space does not prune
    assert code == 0 and cid in {c["id"] for c in w.sb.connectors_in("ops")}


# --- 7. the Markdown plan: what needs action first ------------------------------------------------------


def test_markdown_puts_problems_and_blocked_above_the_summary() -> None:
    from helpers.builders import mixed_plan

    md = render.markdown(mixed_plan())
    summary = md.index("**Plan:")
    assert md.index("#### Problems") < summary and md.index("#### Blocked") < summary
    assert md.index("#### Changes") > summary


# --- 8. -o, and "no" at the prompt ----------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_short_out_and_a_no_at_the_prompt_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    w = world_of(tmp_path, capsys, {"connectors/ops/log.yaml": LOG.format(key="log", name="O")})
    assert w.kcr("plan", "-o", str(tmp_path / "p.json"))[0] == 0
    assert json.loads((tmp_path / "p.json").read_text())["summary"]["create"] == 1
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
    code, out, err = w.kcr("apply", "--markdown-out", str(tmp_path / "apply.md"))
    assert code == 1, out + err
    assert "Apply cancelled." in out and w.sb.connectors_in("ops") == []
    assert "nothing was applied" in (tmp_path / "apply.md").read_text()
