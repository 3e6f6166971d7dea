"""Renderers and the saved-plan format: golden files for a mixed plan, the JSON Schema, secret
canaries. Regenerate the golden files with KCR_UPDATE_GOLDEN=1 after an intended change, and read
the diff."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers.builders import (
    desired,
    digest,
    live,
    live_of,
    live_state,
    mixed_inputs,
    mixed_plan,
    spec,
    type_infos,
)

from reconciler import planfile as planmod
from reconciler import render
from reconciler.plan import Plan
from reconciler.planner import make_plan

GOLDEN = Path(__file__).parent / "data" / "golden"
SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "plan.schema.json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("KCR_UPDATE_GOLDEN") == "1":
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with KCR_UPDATE_GOLDEN=1"
    assert actual == path.read_text(encoding="utf-8")


def validator() -> Any:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


# --- golden ------------------------------------------------------------------------------------------

def test_golden_json() -> None:
    golden("mixed_plan.json", planmod.dumps(mixed_plan()))


def test_golden_text() -> None:
    golden("mixed_plan.txt", render.text(mixed_plan(), color=False))


def test_golden_markdown() -> None:
    golden("mixed_plan.md", render.markdown(mixed_plan()))


def test_golden_json_round_trips() -> None:
    text = (GOLDEN / "mixed_plan.json").read_text(encoding="utf-8")
    assert planmod.loads(text) == mixed_plan()


# --- the JSON Schema ---------------------------------------------------------------------------------

def test_golden_plans_validate_against_schema() -> None:
    v = validator()
    for body in (json.loads((GOLDEN / "mixed_plan.json").read_text(encoding="utf-8")),
                 planmod.to_json(mixed_plan()),
                 planmod.to_json(Plan(kibana_url="http://k", spaces=(), changes=()))):
        errors = sorted(v.iter_errors(body), key=str)
        assert errors == [], errors[:3]


def test_schema_rejects_broken_plans() -> None:
    v = validator()
    body = planmod.to_json(mixed_plan())
    body["changes"][0]["action"] = "explode"
    assert not v.is_valid(body)
    body = planmod.to_json(mixed_plan())
    del body["changes"][0]["desired"]
    assert not v.is_valid(body)
    body = planmod.to_json(mixed_plan())
    body["changes"][0]["secret_value"] = "x"  # no room for extra fields
    assert not v.is_valid(body)
    body = planmod.to_json(mixed_plan())
    create = next(c for c in body["changes"] if c["action"] == "create")
    create["desired"] = None
    assert not v.is_valid(body)


# --- text --------------------------------------------------------------------------------------------

def test_summary_line_exact() -> None:
    assert render.text(mixed_plan(), False).splitlines()[-1] == (
        "Plan: 2 to create, 2 to update, 1 to recreate, 2 to delete, 2 blocked.")


def test_no_changes_line() -> None:
    s = spec("a")
    d = digest({"webhookUrl": "u"})
    plan = make_plan(desired(s), live_state({"default": [live_of(s)]}), digests={s.id: d}, record={s.id: d})
    out = render.text(plan, False)
    assert out.splitlines()[-1] == render.NO_CHANGES == "No changes. Kibana matches the repository."
    assert "1 unchanged." in out
    assert s.id not in out  # NOOPs only as a count
    md = render.markdown(plan)
    assert render.NO_CHANGES in md and "<details><summary><code>" not in md


def test_symbols() -> None:
    out = render.text(mixed_plan(), False)
    heads = [line.split()[0] for line in out.splitlines() if re.match(r"^ {0,2}[-+~!?/]+ \S+/", line)]
    assert heads == ["+", "~", "~", "!", "-", "!", "+", "?"]


def test_recreate_symbol_when_allowed() -> None:
    s = spec("chat", ".teams")
    plan = make_plan(desired(s), live_state({"default": [live_of(s, type=".slack")]}), digests={}, record={})
    assert "-/+ default/" in render.text(plan, False)
    assert "<code>-/+ recreate</code>" in render.markdown(plan)


def test_colour_only_when_asked() -> None:
    plain = render.text(mixed_plan(), color=False)
    coloured = render.text(mixed_plan(), color=True)
    assert "\x1b[" not in plain
    assert "\x1b[32m" in coloured and "\x1b[1;31m" in coloured
    assert ANSI.sub("", coloured) == plain


def test_control_characters_from_kibana_are_neutralised() -> None:
    s = spec("a", name="ok")
    evil = live_of(s, name="evil\x1b[2J\rname")
    plan = make_plan(desired(s), live_state({"default": [evil]}), digests={}, record={})
    out = render.text(plan, color=False)
    assert "\x1b" not in out and "\r" not in out


def test_long_values_truncated() -> None:
    s = spec("w", ".webhook", config={"url": "https://h/" + "x" * 500}, secrets={})
    plan = make_plan(desired(s), live_state({"default": [live_of(s, config={"url": "https://h"})]}),
                     digests={}, record={})
    line = next(x for x in render.text(plan, False).splitlines() if "config.url" in x)
    assert line.endswith("…") and len(line) < 200


def test_blocked_names_rules() -> None:
    out = render.text(mixed_plan(), False)
    assert 'used by rules: "CPU high" (rule-cpu), "Disk | full" (rule-disk)' in out
    assert "guard: BLOCKED (referenced by 1 saved object (rules, cases))" in out


# --- Markdown ----------------------------------------------------------------------------------------

def test_markdown_shape() -> None:
    md = render.markdown(mixed_plan())
    assert md.startswith(render.MARKER + "\n")
    assert "| create | 2 |" in md and "| blocked | 2 |" in md
    assert md.count("<details>") == md.count("</details>") == 8
    assert "#### Blocked" in md and "#### Problems" in md
    assert "Disk &#124; full (<code>rule-disk</code>)" in md  # a pipe cannot break the table


def test_markdown_escapes_html_from_names() -> None:
    s = spec("a", name="<img src=x onerror=alert(1)>")
    plan = make_plan(desired(s), live_state({"default": []}), digests={}, record={})
    md = render.markdown(plan)
    assert "<img" not in md and "&lt;img" in md


# --- GitLab --------------------------------------------------------------------------------------------

def test_gitlab_report_counts_recreate_as_delete_plus_create() -> None:
    report = render.gitlab_report(mixed_plan())
    assert report == {"create": 3, "update": 2, "delete": 3}
    assert list(report) == ["create", "update", "delete"]


# --- secrets never leak ----------------------------------------------------------------------------

def test_canary_never_rendered() -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    want, have, digests, record = mixed_inputs(secret_value=canary)
    plan = make_plan(want, have, digests=digests, record=record, sync_secrets=True)
    outputs = {
        "json": planmod.dumps(plan),
        "text": render.text(plan, False),
        "text-colour": render.text(plan, True),
        "markdown": render.markdown(plan),
        "gitlab": json.dumps(render.gitlab_report(plan)),
        "repr": repr(plan),
    }
    for name, out in outputs.items():
        assert canary not in out, name
        assert canary.lower() not in out.lower(), name


def test_secret_references_kept_out_of_text_and_markdown() -> None:
    s = spec("pd", ".pagerduty", secrets={"routingKey": "${env:CANARY_REF_PAGERDUTY}"})
    plan = make_plan(desired(s), live_state({"default": []}), digests={s.id: digest({"routingKey": "v"})},
                     record={})
    assert "CANARY_REF_PAGERDUTY" in planmod.dumps(plan)  # apply resolves it again from the saved plan
    assert "CANARY_REF_PAGERDUTY" not in render.text(plan, False)
    assert "CANARY_REF_PAGERDUTY" not in render.markdown(plan)
    assert "routingKey" in render.text(plan, False)  # the key name is shown, never its value


@pytest.mark.parametrize("color", [False, True])
def test_text_is_deterministic(color: bool) -> None:
    assert render.text(mixed_plan(), color) == render.text(mixed_plan(), color)


# --- what the text cannot claim ----------------------------------------------------------------------

def adopted(n: int) -> Plan:
    """Right after `kcr export`: Kibana matches, but kcr has no record of the secrets it applied."""
    specs = [spec(f"s{i}") for i in range(n)]
    return make_plan(desired(*specs), live_state({"default": [live_of(s) for s in specs]}),
                     digests={s.id: digest({"webhookUrl": "u"}) for s in specs}, record={})


def test_unknown_secrets_are_said_and_no_match_is_claimed() -> None:
    plan = adopted(4)
    lines = render.text(plan, False).splitlines()
    assert lines[-2:] == [
        "4 unchanged (" + render.UNKNOWN_SECRETS.format(n=4) + ").",
        "No changes.",
    ]
    md = render.markdown(plan)
    assert render.NO_CHANGES not in md and "**No changes.**" in md
    assert "4 connectors unchanged (secrets unknown for 4: no record of what kcr applied" in md
    assert "<code>kcr apply --sync-secrets</code> once to push them)." in md


def test_unknown_secrets_counted_among_unchanged_only() -> None:
    known = spec("known")
    d = digest({"webhookUrl": "u"})
    unknown = spec("unknown")
    plan = make_plan(desired(known, unknown), live_state({"default": [live_of(known), live_of(unknown)]}),
                     digests={known.id: d, unknown.id: d}, record={known.id: d})
    assert render.text(plan, False).splitlines()[-2] == (
        "2 unchanged (" + render.UNKNOWN_SECRETS.format(n=1) + ").")


def test_errors_without_changes_claim_no_match() -> None:
    s = spec("slack", id="my-slack1")
    plan = make_plan(desired(s), live_state({"default": [live("my-slack1", preconfigured=True)]}),
                     digests={}, record={})
    assert plan.has_errors and not plan.has_changes
    assert render.text(plan, False).splitlines()[-1] == render.PLAN_ERRORS
    assert render.NO_CHANGES not in render.markdown(plan)


def test_creates_show_declared_config_only() -> None:
    ai = spec("ai", ".gen-ai", config={"apiProvider": "OpenAI", "apiUrl": "https://api.openai.com/v1/chat"},
              secrets={"apiKey": "${env:K}"})
    ix = spec("ix", ".index", config={"index": "a"})
    plan = make_plan(desired(ai, ix), live_state({"default": []}), digests={}, record={})
    out = render.text(plan, False)
    assert "config.apiUrl: + " in out and "config.index: + " in out
    assert "defaultModel" not in out and "refresh" not in out
    md = render.markdown(plan)
    assert "defaultModel" not in md and "refresh" not in md


def test_creates_without_declared_secrets_say_so() -> None:
    mail = spec("mail", ".email", config={"from": "a@example.com", "host": "smtp", "port": 25, "hasAuth": False,
                                          "service": "other"})
    hook = spec("hook", ".webhook", config={"url": "https://h", "hasAuth": False})
    plan = make_plan(desired(mail, hook), live_state({"default": []}), digests={}, record={})
    out = render.text(plan, False)
    assert out.count("secrets: none declared") == 2 and "secrets: set" not in out
    assert render.markdown(plan).count("Secrets: none declared") == 2
    recreate = make_plan(desired(hook), live_state({"default": [live_of(hook, type=".slack", config={})]}),
                         digests={}, record={})
    assert "secrets: none declared" in render.text(recreate, False)


def test_licence_article_in_text() -> None:
    ai = spec("ai", ".gen-ai", config={"apiProvider": "OpenAI", "apiUrl": "https://x"}, secrets={"apiKey": "${env:K}"})
    plan = make_plan(desired(ai), live_state({"default": []}, types=type_infos("gold")), digests={}, record={})
    out = render.text(plan, False)
    assert "needs an enterprise licence" in out and "needs a enterprise" not in out


def test_plaintext_secret_never_rendered() -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    s = spec("hook", ".webhook", config={"url": "https://h"}, secrets={"user": "${env:U}", "password": canary})
    plan = make_plan(desired(s), live_state({"default": []}), digests={}, record={})
    for out in (planmod.dumps(plan), render.text(plan, False), render.markdown(plan)):
        assert canary not in out
    assert "plaintext secret in connectors/default/main.yaml:1:3" in render.text(plan, False)


# --- set-like lists (x-kcr-set): members added and removed ----------------------------------------------

def _channels_plan() -> Plan:
    c = [{"id": f"C{i}", "name": f"chan-{i}"} for i in range(4)]
    slack = spec("chat", ".slack_api", config={"allowedChannels": [c[3], c[1], c[0]]}, secrets={"token": "${env:T}"})
    moved = spec("moved", ".slack_api", config={"allowedChannels": [c[1], c[0]]}, secrets={"token": "${env:T}"})
    have = live_state({"default": [live_of(slack, config={"allowedChannels": c[:3]}),
                                   live_of(moved, config={"allowedChannels": [c[0], c[1]]})]})
    return make_plan(desired(slack, moved), have, digests={}, record={})


def test_set_change_shows_members_in_text() -> None:
    plan = _channels_plan()
    assert [c.action.value for c in plan.changes] == ["update", "no-op"]  # a reorder is no change
    out = render.text(plan, False)
    assert ("      config.allowedChannels: 1 added, 1 removed (a set: order ignored)\n"
            '        + {"id": "C3", "name": "chan-3"}\n'
            '        - {"id": "C2", "name": "chan-2"}\n') in out
    assert "→" not in out  # not the whole lists before and after


def test_set_change_shows_members_in_markdown() -> None:
    row = next(x for x in render.markdown(_channels_plan()).splitlines() if "config.allowedChannels" in x)
    member = "<code>&#123;&quot;id&quot;: &quot;C{0}&quot;, &quot;name&quot;: &quot;chan-{0}&quot;&#125;</code>"
    assert row == (f"| <code>config.allowedChannels</code> (a set: order ignored) | removed: {member.format(2)} "
                   f"| added: {member.format(3)} |")  # kept members (C0, C1) are not repeated
    c = [{"id": f"C{i}", "name": f"chan-{i}"} for i in range(3)]
    grown = spec("grown", ".slack_api", config={"allowedChannels": c}, secrets={"token": "${env:T}"})
    plan = make_plan(desired(grown), live_state({"default": [live_of(grown, config={"allowedChannels": c[:1]})]}),
                     digests={}, record={})
    row = next(x for x in render.markdown(plan).splitlines() if "config.allowedChannels" in x)
    assert row.endswith(f"| — | added: {member.format(1)}<br>{member.format(2)} |")


def test_set_change_in_plan_json_validates_and_round_trips() -> None:
    plan = _channels_plan()
    body = planmod.to_json(plan)
    (d,) = body["changes"][0]["diffs"]
    assert d["members"] == {"added": [{"id": "C3", "name": "chan-3"}], "removed": [{"id": "C2", "name": "chan-2"}]}
    assert d["kind"] == "changed" and len(d["before"]) == len(d["after"]) == 3
    assert sorted(validator().iter_errors(body), key=str) == []
    assert planmod.loads(planmod.dumps(plan)) == plan
    d["kind"] = "added"  # members belong to a changed list only
    assert list(validator().iter_errors(body))
    plain = planmod.to_json(mixed_plan())  # every other diff is written as it always was
    assert all("members" not in x for c in plain["changes"] for x in c["diffs"])
