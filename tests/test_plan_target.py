"""Issue #13, selective runs: `--target` and `--exclude` on plan, drift and a one-run apply narrow the
plan to the selected connectors (Kibana id, key, SPACE/KEY, SPACE/ID or a glob of them); every other
connector is left out of the plan, so a pruning space never deletes an unselected live connector. A
saved plan records its selection, says it is partial, and `kcr apply plan.json` changes only those."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli
from helpers.cli import write_repo
from helpers.transports import Recorder

from reconciler import planfile
from reconciler.errors import PlanFileError
from reconciler.model import derive_connector_id
from reconciler.sandbox import Sandbox
from reconciler.selection import Selection

KIBANA = "http://kibana.test"
STRAY = "stray-clicked-in-the-ui"
REPO = {
    "connectors/default/_space.yaml": "prune: true\n",
    "connectors/default/alerts.yaml": """\
connectors:
  - id: alerts-a
    name: Alerts A
    type: .index
    config:
      index: alerts-a
  - id: alerts-b
    name: Alerts B
    type: .index
    config:
      index: alerts-b
  - id: log-c
    name: Log C
    type: .server-log
""",
}


def cid(key: str) -> str:
    return derive_connector_id("default", key)


@pytest.fixture()
def world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> cli.World:
    env = {"KIBANA_URL": KIBANA, "KIBANA_API_KEY": "not-a-real-api-key", "NO_COLOR": "1"}
    sb = Sandbox.from_seed({"license": "platinum", "spaces": ["default"], "connectors": [
        {"id": STRAY, "space": "default", "name": "Stray", "connector_type_id": ".server-log", "config": {},
         "secrets": {}}]})
    return cli.World(repo=write_repo(tmp_path / "repo", REPO), env=env, sb=sb, capsys=capsys)


def live_ids(w: cli.World) -> set[str]:
    return {c["id"] for c in w.sb.connectors_in("default")}


def test_plan_without_target_plans_everything_including_the_prune(world: cli.World) -> None:
    code, out, err = world.kcr("plan", "--detailed-exitcode")
    assert code == 2, out + err
    assert "Plan: 3 to create, 0 to update, 0 to recreate, 1 to delete" in out
    assert "partial plan" not in out


@pytest.mark.parametrize("target", ["alerts-a", cid("alerts-a"), "default/alerts-a", f"default/{cid('alerts-a')}",
                                    "alerts-[a]"])
def test_plan_target_shows_only_the_selected_connector(world: cli.World, target: str) -> None:
    code, out, err = world.kcr("plan", "--detailed-exitcode", "--target", target)
    assert code == 2, out + err
    assert cid("alerts-a") in out
    assert cid("alerts-b") not in out and cid("log-c") not in out and STRAY not in out
    assert "Plan: 1 to create, 0 to update, 0 to recreate, 0 to delete" in out
    assert f"partial plan: --target {target}" in out


def test_globs_and_exclude(world: cli.World) -> None:
    code, out, err = world.kcr("plan", "--target", "alerts-*", "--target", "log-*", "--exclude", "default/alerts-b")
    assert code == 0, out + err
    assert cid("alerts-a") in out and cid("log-c") in out
    assert cid("alerts-b") not in out and STRAY not in out
    assert "partial plan: --target alerts-* --target log-* --exclude default/alerts-b" in out
    code, out, err = world.kcr("drift", "--exclude", "*", "--format", "json")
    assert code == 0, out + err
    body = json.loads(out)
    assert body["changes"] == [] and body["selection"] == {"target": [], "exclude": ["*"]}


def test_a_target_matching_nothing_is_an_error(world: cli.World) -> None:
    code, _, err = world.kcr("plan", "--target", "alerts-a", "--target", "alerst-b")
    assert code == 1
    assert "--target alerst-b: matches no connector" in err and "alerts-a:" not in err
    code, _, err = world.kcr("drift", "--target", "default/nope*")
    assert code == 1 and "default/nope*" in err
    assert world.sb.counters.get("total", 0) > 0  # the plan read Kibana; nothing was written
    assert live_ids(world) == {STRAY}


def test_a_pruning_space_never_deletes_an_unselected_connector(world: cli.World) -> None:
    seen = Recorder(world.sb.transport().handle_request)
    code, out, err = world.kcr("apply", "--auto-approve", "--target", "alerts-a", transport=seen.transport())
    assert code == 0, out + err
    assert seen.count("DELETE") == 0
    assert [m for m, _ in seen.writes] == ["POST"]
    assert live_ids(world) == {STRAY, cid("alerts-a")}
    # Only a selection naming the stray connector deletes it.
    code, out, err = world.kcr("apply", "--auto-approve", "--target", STRAY)
    assert code == 0, out + err
    assert live_ids(world) == {cid("alerts-a")}


def test_a_saved_partial_plan_applies_only_its_selection(world: cli.World, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    code, out, err = world.kcr("plan", "--out", str(plan_file), "--target", "alerts-*", "--format", "markdown")
    assert code == 0, out + err
    assert "partial plan: --target alerts-&#42; (every other connector is left alone)." in out
    body = json.loads(plan_file.read_text())
    assert body["selection"] == {"target": ["alerts-*"], "exclude": []}
    assert {c["id"] for c in body["changes"]} == {cid("alerts-a"), cid("alerts-b")}
    assert planfile.loads(plan_file.read_text()).selection == Selection(("alerts-*",), ())
    world.sb.reset_counters()
    seen = Recorder(world.sb.transport().handle_request)
    code, out, err = world.kcr("apply", str(plan_file), transport=seen.transport())
    assert code == 0, out + err
    assert seen.count("DELETE") == 0 and len(seen.writes) == 2
    assert live_ids(world) == {STRAY, cid("alerts-a"), cid("alerts-b")}


def test_apply_refuses_a_target_with_a_saved_plan(world: cli.World, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    code, out, err = world.kcr("plan", "--out", str(plan_file), "--target", "alerts-a")
    assert code == 0, out + err
    world.sb.reset_counters()
    for flag in ("--target", "--exclude"):
        code, out, err = world.kcr("apply", str(plan_file), flag, "alerts-b")
        assert code == 1
        assert "--target/--exclude belong to the plan" in err
    assert world.sb.counters.get("total", 0) == 0
    assert live_ids(world) == {STRAY}


def test_a_change_outside_the_recorded_selection_is_refused(world: cli.World, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    code, out, err = world.kcr("plan", "--out", str(plan_file), "--target", "alerts-a")
    assert code == 0, out + err
    body = json.loads(plan_file.read_text())
    body["selection"]["target"] = ["log-c"]  # an edit: the change is no longer the selection's
    with pytest.raises(PlanFileError, match="outside the plan's selection"):
        planfile.loads(json.dumps(body))
