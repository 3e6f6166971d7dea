"""apply_plan end to end: repository files -> plan -> apply against the in-process sandbox."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from helpers.cli import write_repo
from helpers.pipeline import Pipeline

from reconciler import planfile as plan_json
from reconciler.apply_report import Status, exit_code
from reconciler.connection import Connection
from reconciler.kibana import KibanaClient
from reconciler.plan import Action, Plan
from reconciler.render import report_json, report_text
from reconciler.sandbox import Sandbox

KEY = b"k" * 32
SLACK_ID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
TEAMS_ID = "2c5f39cb-3ab2-42e3-994a-1127e4ddb538"
OLD_ID = "3d6a4adc-4bc3-43f4-a05b-2238f5eec649"


SLACK = f"""connectors:
  - id: {SLACK_ID}
    name: Alerts
    type: .slack
    secrets:
      webhookUrl: ${{env:SLACK_URL}}
  - id: {TEAMS_ID}
    name: Teams
    type: .teams
    secrets:
      webhookUrl: ${{env:TEAMS_URL}}
  - id: logs
    name: Logs index
    type: .index
    config:
      index: alerts-log
"""


class World(Pipeline):
    """The repository at `root` against its own sandbox (seeded with `seed`)."""

    def __init__(self, root: Path, seed: Mapping[str, Any] | None = None) -> None:
        self.sb = Sandbox.from_seed({"license": "platinum", **(seed or {})})
        super().__init__(root, KibanaClient(Connection.from_env({"KIBANA_URL": "http://kibana.test"}),
                                            transport=self.sb.transport(), sleep=lambda s: None), key=KEY)

    def stored(self, space: str = "default") -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.sb.connectors_in(space)}


def actions(plan: Plan) -> dict[str, Action]:
    return {c.name: c.action for c in plan.changes}


def test_create_then_converged_then_rotate(tmp_path: Path) -> None:
    write_repo(tmp_path, {"connectors/default/main.yaml": SLACK})
    world = World(tmp_path)
    env = {"SLACK_URL": "https://hooks.slack.com/services/one", "TEAMS_URL": "https://teams.example/one"}

    plan = world.plan(env)
    assert actions(plan) == {"Alerts": Action.CREATE, "Teams": Action.CREATE, "Logs index": Action.CREATE}
    report = world.apply(plan, env)
    assert [r.status for r in report.results] == [Status.OK] * 3, report_text(report, False)
    assert report.record_updated and exit_code(report) == 0
    stored = world.stored()
    assert stored[SLACK_ID]["secrets"] == {"webhookUrl": env["SLACK_URL"]}
    assert stored[TEAMS_ID]["connector_type_id"] == ".teams"

    again = world.plan(env)
    assert not again.has_changes, [(c.name, c.action, c.reason) for c in again.changes]

    rotated = {**env, "SLACK_URL": "https://hooks.slack.com/services/two"}
    plan = world.plan(rotated)
    assert actions(plan)["Alerts"] is Action.UPDATE
    report = world.apply(plan, rotated)
    assert [r.status for r in report.results] == [Status.OK]
    assert world.stored()[SLACK_ID]["secrets"] == {"webhookUrl": rotated["SLACK_URL"]}
    assert not world.plan(rotated).has_changes


def test_apply_refuses_a_plan_made_before_a_ui_edit_or_a_rotation(tmp_path: Path) -> None:
    write_repo(tmp_path, {"connectors/default/main.yaml": SLACK})
    world = World(tmp_path)
    env = {"SLACK_URL": "https://hooks.slack.com/services/one", "TEAMS_URL": "https://teams.example/one"}
    world.apply(world.plan(env), env)

    changed = {**env, "SLACK_URL": "https://hooks.slack.com/services/two", "TEAMS_URL": "https://teams.example/2"}
    plan = world.plan(changed)
    assert actions(plan) == {"Alerts": Action.UPDATE, "Teams": Action.UPDATE, "Logs index": Action.NOOP}
    world.client.update_connector("default", SLACK_ID, name="Edited in the UI", config={},
                                  secrets={"webhookUrl": "https://hooks.slack.com/services/ui"})
    rotated_again = {**changed, "TEAMS_URL": "https://teams.example/3"}
    report = world.apply(plan, rotated_again)
    by_name = {r.address.split("/")[1]: r for r in report.results}
    assert by_name[SLACK_ID].status is Status.STALE and "changed in Kibana" in by_name[SLACK_ID].message
    assert by_name[TEAMS_ID].status is Status.STALE and "secrets changed" in by_name[TEAMS_ID].message
    assert world.stored()[SLACK_ID]["name"] == "Edited in the UI"
    assert world.stored()[TEAMS_ID]["secrets"] == {"webhookUrl": env["TEAMS_URL"]}
    assert exit_code(report) == 1


def test_recreate_and_guarded_delete(tmp_path: Path) -> None:
    write_repo(tmp_path, {
        "connectors/default/main.yaml": SLACK,
        "connectors/default/_space.yaml": "prune: true\n",
    })
    seed = {
        "connectors": [
            # the id the repository declares as .teams is a .slack in Kibana: recreate
            {"id": TEAMS_ID, "space": "default", "name": "Teams", "connector_type_id": ".slack", "config": {},
             "secrets": {"webhookUrl": "https://hooks.slack.com/old"}},
            {"id": OLD_ID, "space": "default", "name": "Old", "connector_type_id": ".server-log", "config": {},
             "secrets": {}},
        ],
        "rules": [{"id": str(uuid.uuid4()), "space": "default", "name": "CPU high",
                   "actions": [{"id": OLD_ID, "group": "default", "params": {"message": "x"}}]}],
    }
    world = World(tmp_path, seed)
    env = {"SLACK_URL": "https://hooks.slack.com/services/one", "TEAMS_URL": "https://teams.example/one"}
    plan = world.plan(env)
    assert actions(plan) == {"Alerts": Action.CREATE, "Teams": Action.RECREATE, "Logs index": Action.CREATE,
                             "Old": Action.DELETE}

    report = world.apply(plan, env)
    statuses = {r.action: r.status for r in report.results}
    assert statuses[Action.RECREATE] is Status.OK and statuses[Action.DELETE] is Status.BLOCKED
    blocked = next(r for r in report.results if r.action is Action.DELETE)
    assert "referenced by 1 saved object" in blocked.message
    assert world.stored()[TEAMS_ID]["connector_type_id"] == ".teams"
    assert OLD_ID in world.stored() and exit_code(report) == 3

    plan = world.plan(env)
    assert actions(plan) == {"Alerts": Action.NOOP, "Teams": Action.NOOP, "Logs index": Action.NOOP,
                             "Old": Action.DELETE}
    report = world.apply(plan, env, allow_referenced=frozenset({OLD_ID}))
    assert [r.status for r in report.results] == [Status.OK]
    assert OLD_ID not in world.stored()


def test_recreate_whose_create_fails_converges_on_rerun(tmp_path: Path) -> None:
    write_repo(tmp_path, {"connectors/default/main.yaml": SLACK})
    seed = {"connectors": [{"id": TEAMS_ID, "space": "default", "name": "Teams", "connector_type_id": ".slack",
                            "config": {}, "secrets": {"webhookUrl": "https://hooks.slack.com/old"}}],
            "enabled_action_types": [".slack", ".index"]}  # .teams disabled: its create gets 403
    world = World(tmp_path, seed)
    env = {"SLACK_URL": "https://hooks.slack.com/services/one", "TEAMS_URL": "https://teams.example/one"}
    plan = world.plan(env)
    report = world.apply(plan, env)
    teams = next(r for r in report.results if r.action is Action.RECREATE)
    assert teams.status is Status.FAILED
    assert teams.message.startswith("deleted, but re-create failed:") and "re-run kcr apply" in teams.message
    assert TEAMS_ID not in world.stored()

    # the same Kibana's connectors, now with .teams enabled
    world2 = World(tmp_path, {"connectors": [{"id": c["id"], "space": "default", "name": c["name"],
                                              "connector_type_id": c["connector_type_id"], "config": c["config"],
                                              "secrets": c["secrets"]} for c in world.sb.connectors_in("default")]})
    plan = world2.plan(env)
    assert actions(plan)["Teams"] is Action.CREATE
    assert [r.status for r in world2.apply(plan, env).results] == [Status.OK]
    assert world2.stored()[TEAMS_ID]["connector_type_id"] == ".teams"


def test_canary_secrets_reach_kibana_only(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    canary = f"CANARY-{uuid.uuid4()}"
    write_repo(tmp_path, {"connectors/default/main.yaml": SLACK})
    world = World(tmp_path)
    env = {"SLACK_URL": f"https://hooks.slack.com/{canary}", "TEAMS_URL": f"https://teams.example/{canary}"}
    plan = world.plan(env)
    report = world.apply(plan, env)
    assert exit_code(report) == 0
    assert canary in json.dumps(world.sb.connectors_in("default"))  # it did reach "Kibana"
    out = capsys.readouterr()
    texts = [plan_json.dumps(plan), report_text(report, True), json.dumps(report_json(report)),
             (tmp_path / ".kcr" / "record.json").read_text(), caplog.text, out.out, out.err]
    for text in texts:
        assert canary not in text
