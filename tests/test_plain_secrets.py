"""`x-kcr-plain`: a selector Kibana keeps among a connector's secrets but that is no secret (the spec
connectors' `authType`, a zod discriminatedUnion key: kbn-connector-specs/src/lib/get_schema_for_auth_type.ts
adds `authType: z.literal(id)`). A file writes it as a plain value; `kcr validate` checks it against the
schema's enum; a plan keeps it as written (only a value the enum names: any other literal stays a
plaintext secret, fail closed); `kcr export` writes it as a literal. Schemas: schemas/types/slack2.json,
jira-cloud.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers.cli import write_repo
from helpers.pipeline import Pipeline

from reconciler import catalog, planfile
from reconciler.apply_report import exit_code
from reconciler.connection import Connection
from reconciler.export import render_space
from reconciler.kibana import KibanaClient
from reconciler.model import ConnectorSpec, LiveConnector
from reconciler.plansecrets import plaintext_problems, plan_secret_refs
from reconciler.sandbox import Sandbox
from reconciler.validate import format_problems_text, validate

REF = "${env:PS_TOKEN}"
CANARY = "CANARY-plain-secrets-token"


def _repo(root: Path, secrets: dict[str, Any], type_id: str = ".slack2") -> Path:
    doc = {"connectors": [{"id": "c1", "name": "C1", "type": type_id, "secrets": secrets}]}
    return write_repo(root, {"connectors/default/c.yaml": yaml.safe_dump(doc, sort_keys=False)})


def test_the_keyword_marks_the_spec_connectors_auth_type() -> None:
    for type_id in (".slack2", ".jira-cloud"):
        ct = catalog.get(type_id)
        assert ct is not None and set(ct.plain_secrets()) == {"authType"}
    slack2 = catalog.get(".slack2")
    assert slack2 is not None and slack2.is_plain_value("authType", "bearer")
    assert not slack2.is_plain_value("authType", "basic") and not slack2.is_plain_value("token", "bearer")


def test_a_literal_plain_value_validates_without_a_plaintext_problem(tmp_path: Path) -> None:
    report = validate(_repo(tmp_path, {"authType": "bearer", "token": REF}), env={})
    text = format_problems_text(report)
    assert report.ok and "plaintext" not in text and "authType" not in text, text


def test_a_literal_outside_the_enum_is_refused_offline(tmp_path: Path) -> None:
    """Kibana's discriminatedUnion refuses it at apply; kcr now says so before, naming the field."""
    report = validate(_repo(tmp_path, {"authType": "oauth", "token": REF}), env={})
    text = format_problems_text(report)
    assert not report.ok and "secrets.authType" in text and "bearer" in text, text


def test_a_plain_value_written_as_a_reference_warns(tmp_path: Path) -> None:
    report = validate(_repo(tmp_path, {"authType": "${env:PS_AUTH}", "token": REF}), env={})
    text = format_problems_text(report)
    assert report.ok, text
    assert "authType is not a secret but a plain setting of this type" in text


def test_jira_cloud_basic(tmp_path: Path) -> None:
    secrets = {"authType": "basic", "username": "${env:PS_USER}", "password": REF}
    doc = {"connectors": [{"id": "j", "name": "J", "type": ".jira-cloud", "config": {"subdomain": "acme"},
                           "secrets": secrets}]}
    write_repo(tmp_path, {"connectors/default/c.yaml": yaml.safe_dump(doc, sort_keys=False)})
    report = validate(tmp_path, env={})
    assert report.ok, format_problems_text(report)


def _spec(secrets: dict[str, Any]) -> ConnectorSpec:
    return ConnectorSpec(space="default", key="c1", id="c1", name="C1", type=".slack2", config={}, secrets=secrets)


def test_a_plan_keeps_the_plain_value_and_hides_any_other_literal() -> None:
    assert plan_secret_refs(_spec({"authType": "bearer", "token": REF})) == {"authType": "bearer", "token": REF}
    assert plaintext_problems(_spec({"authType": "bearer", "token": REF})) == []
    hidden = plan_secret_refs(_spec({"authType": "basic", "token": CANARY}))
    assert hidden == {"authType": {"$plaintext": True}, "token": {"$plaintext": True}}
    assert len(plaintext_problems(_spec({"authType": "basic", "token": REF}))) == 1


def test_plan_apply_replan_through_a_saved_plan(tmp_path: Path) -> None:
    """The saved plan holds `authType: bearer` as written (plancheck accepts it), apply sends it, and
    the re-plan is clean; the token never reaches the plan file."""
    _repo(tmp_path, {"authType": "bearer", "token": REF})
    sb = Sandbox.from_seed({"license": "enterprise", "human_readable_ids": True})
    client = KibanaClient(Connection.from_env({"KIBANA_URL": "http://kibana.test"}), transport=sb.transport(),
                          sleep=lambda s: None)
    world = Pipeline(tmp_path, client, key=b"k" * 32, env={"PS_TOKEN": CANARY})
    plan = world.plan()
    text = planfile.dumps(plan)
    refs = next(c["desired"]["secret_refs"] for c in json.loads(text)["changes"] if c["desired"])
    assert refs == {"authType": "bearer", "token": REF} and CANARY not in text
    report = world.apply(plan)
    assert exit_code(report) == 0, report
    stored = sb.connectors_in("default")
    assert [c["secrets"] for c in stored] == [{"authType": "bearer", "token": CANARY}]
    assert [c.action.value for c in world.plan().changes] == ["no-op"]


def test_export_writes_the_plain_value_literally() -> None:
    live = [LiveConnector(id="0b8e0c5e-1d1a-4e6b-9a51-6f7f2d3e4a5b", name="Bot", type=".slack2", config={}),
            LiveConnector(id="1c9f1d6f-2e2b-4f7c-8b62-7a8a3e4f5b6c", name="Jira", type=".jira-cloud",
                          config={"subdomain": "acme"})]
    text, variables = render_space("default", live)
    entries = {e["name"]: e for e in yaml.safe_load(text)["connectors"]}
    assert entries["Bot"]["secrets"] == {"authType": "bearer", "token": "${env:KCR_DEFAULT_BOT_TOKEN}"}
    assert entries["Jira"]["secrets"]["authType"] == "basic"
    assert "KCR_DEFAULT_BOT_AUTH_TYPE" not in variables and "KCR_DEFAULT_BOT_TOKEN" in variables
