"""The planner, row by row of SPEC §5, with hand-built states (no mocks)."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest
from helpers.builders import (
    MIXED_RULES,
    URL,
    desired,
    digest,
    live,
    live_of,
    live_state,
    mixed_inputs,
    spec,
    type_infos,
)

from reconciler import planfile
from reconciler.model import ConnectorTypeInfo, Location, RuleRef, SecretDigest, SpaceSettings
from reconciler.plan import PLAINTEXT_MARKER, Action, Change, Plan, SecretsStatus, live_fingerprint
from reconciler.planner import MISSING_SECRETS, SYNC_SECRETS, attach_rules, blocked_ids, make_plan

SLACK = spec("alerts")
PRUNE = {"default": SpaceSettings(prune=True)}


def only(plan: Plan) -> Change:
    assert len(plan.changes) == 1, plan.changes
    return plan.changes[0]


def plan_of(*specs, live_conns=(), settings=None, digests=None, record=None, sync=False, types=None, **kw) -> Plan:
    return make_plan(
        desired(*specs, settings=settings, spaces=["default"]),
        live_state({"default": list(live_conns)}, types=types, **kw),
        digests=digests or {},
        record=record or {},
        sync_secrets=sync,
    )


# --- one declared connector: the table of SPEC §5 --------------------------------------------------

ROWS = [
    # (label, spec, live twin kwargs or None, record?, expected action, reason contains)
    ("absent -> create", SLACK, None, False, Action.CREATE, "not in Kibana"),
    ("type differs -> recreate", spec("chat", ".teams"), {"type": ".slack"}, False, Action.RECREATE,
     "connector_type_id"),
    ("name differs -> update", SLACK, {"name": "Old"}, False, Action.UPDATE, "name changed"),
    ("config differs -> update", spec("ix", ".index", config={"index": "a"}), {"config": {"index": "b"}}, False,
     Action.UPDATE, "config changed"),
    ("missing secrets -> update", SLACK, {"missing_secrets": True}, False, Action.UPDATE, MISSING_SECRETS),
    ("equal -> no-op", SLACK, {}, False, Action.NOOP, "up to date"),
    ("defaults only -> no-op", spec("ix", ".index", config={"index": "a"}),
     {"config": {"index": "a", "refresh": False}}, False, Action.NOOP, "up to date"),
]


@pytest.mark.parametrize(("label", "s", "twin", "recorded", "action", "reason"), ROWS, ids=[r[0] for r in ROWS])
def test_declared_connector_rows(label, s, twin, recorded, action, reason) -> None:
    conns = [] if twin is None else [live_of(s, **twin)]
    c = only(plan_of(s, live_conns=conns))
    assert c.action is action
    assert reason in c.reason
    assert c.space == "default" and c.id == s.id
    if twin is None:
        assert c.live_fingerprint is None
    else:
        assert c.live_fingerprint == live_fingerprint(conns[0])


def test_create_fills_desired_and_digest() -> None:
    s = spec("pd", ".pagerduty", config={"apiUrl": "https://events.pagerduty.com/v2/enqueue"},
             secrets={"routingKey": "${env:PD_KEY}"}, protect=True)
    d = digest({"routingKey": "v"})
    c = only(plan_of(s, digests={s.id: d}))
    assert c.action is Action.CREATE
    assert c.desired is not None
    assert (c.desired.key, c.desired.name, c.desired.type) == ("pd", s.name, ".pagerduty")
    assert c.desired.config == {"apiUrl": "https://events.pagerduty.com/v2/enqueue"}  # as declared
    assert c.desired.secret_refs == {"routingKey": "${env:PD_KEY}"}
    assert c.desired.protect is True and c.desired.file == "connectors/default/main.yaml"
    assert c.secret_digest == d
    assert c.secrets is SecretsStatus.CHANGED and c.secret_keys_changed == ("routingKey",)
    assert [(x.path, x.kind) for x in c.diffs] == [("name", "added"), ("config.apiUrl", "added")]
    assert not c.guard.blocked


def test_recreate_diffs_and_guard() -> None:
    s = spec("chat", ".teams", name="Chat")
    conn = live_of(s, type=".slack", name="Chat old", referenced=2)
    c = only(plan_of(s, live_conns=[conn]))
    assert c.action is Action.RECREATE and c.live_type == ".slack" and c.type == ".teams"
    assert [d.path for d in c.diffs][:2] == ["connector_type_id", "name"]
    assert c.diffs[0].before == ".slack" and c.diffs[0].after == ".teams"
    assert c.guard.blocked and c.guard.reasons == ("referenced by 2 saved objects (rules, cases)",)
    assert c.desired is not None and c.referenced_by_count == 2


def test_recreate_unreferenced_allowed_but_protect_blocks() -> None:
    s = spec("chat", ".teams")
    c = only(plan_of(s, live_conns=[live_of(s, type=".slack")]))
    assert not c.guard.blocked
    p = replace(s, protect=True)
    c = only(plan_of(p, live_conns=[live_of(p, type=".slack")]))
    assert c.guard.blocked and c.guard.reasons == ("protect: true in connectors/default/main.yaml",)


def test_update_field_diffs_and_full_desired() -> None:
    s = spec("hook", ".webhook", config={"url": "https://new", "headers": {"X": "1"}},
             secrets={"user": "${env:U}", "password": "${env:P}"})
    conn = live_of(s, name="Old", config={"url": "https://old", "headers": {"X": "0"}})
    c = only(plan_of(s, live_conns=[conn]))
    assert c.action is Action.UPDATE
    assert [(d.path, d.before, d.after) for d in c.diffs] == [
        ("name", "Old", s.name), ("config.headers.X", "0", "1"), ("config.url", "https://old", "https://new")]
    assert c.reason == "name and config changed"
    assert c.desired is not None and c.desired.secret_refs == dict(s.secrets)  # full name+config+secrets
    assert c.secrets is SecretsStatus.UNKNOWN


# --- secrets ----------------------------------------------------------------------------------------

HOOK = spec("hook", ".webhook", config={"url": "https://h"}, secrets={"user": "${env:U}", "password": "${env:P}"})
VAULT = spec("v", ".jira", config={"apiUrl": "https://j", "projectKey": "P"},
             secrets={"email": "${vault:secret/j#email}", "apiToken": "${vault:secret/j#token}"})
MIXED = spec("m", ".jira", config={"apiUrl": "https://j", "projectKey": "P"},
             secrets={"email": "${env:E}", "apiToken": "${vault:secret/j#token}"})
V1 = {"${vault:secret/j#email}": 1, "${vault:secret/j#token}": 7}
V2 = {"${vault:secret/j#email}": 1, "${vault:secret/j#token}": 8}
MOVED = replace(VAULT, secrets={"email": "${vault:secret/j#email}", "apiToken": "${vault:secret/k#token}"})
V3 = {"${vault:secret/j#email}": 1, "${vault:secret/k#token}": 7}

SECRET_ROWS = [
    # (label, spec, digest, record, sync, action, status, keys, reason)
    ("hmac equal", HOOK, digest({"user": "u", "password": "p"}), digest({"user": "u", "password": "p"}), False,
     Action.NOOP, SecretsStatus.UNCHANGED, (), "up to date"),
    ("hmac differ", HOOK, digest({"user": "u", "password": "p2"}), digest({"user": "u", "password": "p"}), False,
     Action.UPDATE, SecretsStatus.CHANGED, ("password",), "secrets changed"),
    ("hmac key added", HOOK, digest({"user": "u", "password": "p"}), digest({"user": "u"}), False,
     Action.UPDATE, SecretsStatus.CHANGED, ("password",), "secrets changed"),
    ("no record -> unknown, no update", HOOK, digest({"user": "u", "password": "p"}), None, False,
     Action.NOOP, SecretsStatus.UNKNOWN, (), "up to date"),
    ("no record + --sync-secrets", HOOK, digest({"user": "u", "password": "p"}), None, True,
     Action.UPDATE, SecretsStatus.UNKNOWN, (), SYNC_SECRETS),
    ("no key: vault versions equal", VAULT, digest({}, V1, key=None), digest({}, V1, key=None), False,
     Action.NOOP, SecretsStatus.UNCHANGED, (), "up to date"),
    ("no key: vault version moved", VAULT, digest({}, V2, key=None), digest({}, V1, key=None), False,
     Action.UPDATE, SecretsStatus.CHANGED, ("apiToken",), "secrets changed"),
    ("no key: vault reference replaced", MOVED, digest({}, V3, key=None), digest({}, V1, key=None), False,
     Action.UPDATE, SecretsStatus.CHANGED, ("apiToken",), "secrets changed"),
    ("no key: vault version missing -> unknown", VAULT, digest({}, {"${vault:secret/j#email}": 1}, key=None),
     digest({}, V1, key=None), False, Action.NOOP, SecretsStatus.UNKNOWN, (), "up to date"),
    ("no key: a non-vault ref -> unknown", MIXED, digest({}, {"${vault:secret/j#token}": 7}, key=None),
     digest({}, {"${vault:secret/j#token}": 7}, key=None), False, Action.NOOP, SecretsStatus.UNKNOWN, (),
     "up to date"),
    ("no key, no vault -> unknown", HOOK, digest({}, key=None), digest({}, key=None), False,
     Action.NOOP, SecretsStatus.UNKNOWN, (), "up to date"),
    ("hmacs win over versions", VAULT, digest({"email": "e", "apiToken": "t"}, V2),
     digest({"email": "e", "apiToken": "t"}, V1), False, Action.NOOP, SecretsStatus.UNCHANGED, (), "up to date"),
]


@pytest.mark.parametrize(("label", "s", "dig", "rec", "sync", "action", "status", "keys", "reason"), SECRET_ROWS,
                         ids=[r[0] for r in SECRET_ROWS])
def test_secret_rows(label, s, dig, rec, sync, action, status, keys, reason) -> None:
    c = only(plan_of(s, live_conns=[live_of(s)], digests={s.id: dig},
                     record={} if rec is None else {s.id: rec}, sync=sync))
    assert (c.action, c.secrets, c.secret_keys_changed) == (action, status, keys)
    assert reason in c.reason
    if action is Action.UPDATE:
        assert c.secret_digest == dig and c.desired is not None
    else:
        assert c.secret_digest is None and c.desired is None


def test_types_without_secrets_are_none_even_with_sync() -> None:
    s = spec("ix", ".index", config={"index": "a"})
    c = only(plan_of(s, live_conns=[live_of(s)], sync=True))
    assert (c.action, c.secrets) == (Action.NOOP, SecretsStatus.NONE)
    c = only(plan_of(s))
    assert c.secrets is SecretsStatus.NONE and c.secret_keys_changed == ()


def test_missing_secrets_reason_combines_with_others() -> None:
    c = only(plan_of(HOOK, live_conns=[live_of(HOOK, name="Old", missing_secrets=True)]))
    assert c.action is Action.UPDATE
    assert c.reason == f"name changed; {MISSING_SECRETS}"


def test_secrets_removed_from_declaration_against_record() -> None:
    s = replace(HOOK, secrets={})
    c = only(plan_of(s, live_conns=[live_of(s)], record={s.id: digest({"user": "u", "password": "p"})}))
    assert (c.action, c.secrets, c.secret_keys_changed) == (Action.UPDATE, SecretsStatus.CHANGED,
                                                             ("password", "user"))
    c = only(plan_of(s, live_conns=[live_of(s)], record={s.id: SecretDigest()}))
    assert (c.action, c.secrets) == (Action.NOOP, SecretsStatus.UNCHANGED)


# --- undeclared live connectors ------------------------------------------------------------------------

def test_undeclared_prune_deletes_guarded() -> None:
    free = live("0c6e9f0e-0000-4000-8000-000000000001", ".index", config={"index": "a"})
    used = live("0c6e9f0e-0000-4000-8000-000000000002", ".index", config={"index": "a"}, referenced=4)
    plan = plan_of(live_conns=[used, free], settings=PRUNE)
    assert [(c.action, c.id, c.guard.blocked) for c in plan.changes] == [
        (Action.DELETE, free.id, False), (Action.DELETE, used.id, True)]
    assert plan.changes[1].guard.reasons == ("referenced by 4 saved objects (rules, cases)",)
    assert plan.changes[1].live_fingerprint == live_fingerprint(used)
    assert blocked_ids(plan) == [("default", used.id)]


def test_undeclared_without_prune_is_unmanaged() -> None:
    conn = live("0c6e9f0e-0000-4000-8000-000000000001", ".index", config={"index": "a"}, referenced=4)
    c = only(plan_of(live_conns=[conn]))
    assert c.action is Action.UNMANAGED and not c.guard.blocked
    assert not plan_of(live_conns=[conn]).has_changes


def test_preconfigured_and_system_never_managed_nor_deleted() -> None:
    pre = live("my-slack1", preconfigured=True)
    system = live("system-connector-.cases", ".cases", system=True)
    plan = plan_of(live_conns=[pre, system], settings=PRUNE)
    assert plan.changes == () and plan.problems == ()


def test_ignore_globs_skip_and_record() -> None:
    conn = live("legacy-1", ".index", config={"index": "a"})
    plan = plan_of(live_conns=[conn], settings={"default": SpaceSettings(prune=True, ignore=("legacy-*",))})
    assert plan.changes == () and plan.ignored == ("default/legacy-1",)


def test_declared_id_matching_ignore_wins_with_warning() -> None:
    s = spec("legacy-x", id="legacy-x")
    plan = plan_of(s, settings={"default": SpaceSettings(ignore=("legacy-*",))})
    assert only(plan).action is Action.CREATE
    assert [p.severity for p in plan.problems] == ["warning"]


def test_truncated_list_plans_no_delete_and_warns() -> None:
    conns = [live(f"00000000-0000-4000-8000-{i:012d}", ".server-log") for i in range(10_000)]
    plan = plan_of(live_conns=conns, settings=PRUNE)
    assert not any(c.action is Action.DELETE for c in plan.changes)
    assert {c.action for c in plan.changes} == {Action.UNMANAGED}
    (problem,) = plan.problems
    assert problem.severity == "warning" and "truncated" in problem.message


# --- problems -----------------------------------------------------------------------------------

def test_collision_with_preconfigured_is_an_error_and_no_action() -> None:
    s = spec("slack", id="my-slack1")
    plan = plan_of(s, live_conns=[live("my-slack1", preconfigured=True)])
    assert plan.changes == ()
    (p,) = plan.problems
    assert p.severity == "error" and "preconfigured" in p.message and p.id == "my-slack1"
    assert plan.has_errors


def test_collision_with_preconfigured_seen_in_another_space() -> None:
    s = spec("slack", id="my-slack1", space="other")
    plan = make_plan(desired(s), live_state({"other": [], "default": [live("my-slack1", preconfigured=True)]}),
                     digests={}, record={}, spaces=["other"])
    assert plan.changes == () and "preconfigured" in plan.problems[0].message


def test_collision_with_system_action_id() -> None:
    s = spec("c", ".index", id="system-connector-.cases", config={"index": "a"})
    plan = plan_of(s)
    assert plan.changes == () and "system action" in plan.problems[0].message


@pytest.mark.parametrize(("types", "needle"), [
    (type_infos("basic"), "needs a gold licence"),
    (type_infos("platinum", disabled=[".slack"]), "not enabled in xpack.actions.enabledActionTypes"),
    (type_infos("platinum", missing=[".slack"]), "not available in this Kibana"),
])
def test_type_problems_for_creates_and_updates(types, needle) -> None:
    created = plan_of(SLACK, types=types)
    updated = plan_of(SLACK, live_conns=[live_of(SLACK, name="Old")], types=types)
    for plan in (created, updated):
        (p,) = plan.problems
        assert p.severity == "error" and needle in p.message and p.id == SLACK.id
    noop = plan_of(SLACK, live_conns=[live_of(SLACK)], types=types)
    # issue #17: a type in use that kibana.yml does not enable is a warning even when nothing is sent
    disabled = "enabledActionTypes" in needle
    assert [(p.severity, needle in p.message) for p in noop.problems] == ([("warning", True)] if disabled else [])


def test_system_action_type_cannot_be_created() -> None:
    plan = plan_of(spec("c", ".cases", secrets={}))
    assert any("system action type" in p.message for p in plan.problems)


def test_unknown_space_is_an_error() -> None:
    plan = make_plan(desired(spec("a", space="typo")), live_state({"default": []}, known=["default"]),
                     digests={}, record={})
    assert plan.changes == ()
    (p,) = plan.problems
    assert p.space == "typo" and p.severity == "error" and "unknown space" in p.message


def test_id_global_across_spaces() -> None:
    a = spec("a", space="one", id="0c6e9f0e-0000-4000-8000-00000000000a")
    plan = make_plan(desired(a, spaces=["two"]), live_state({"one": [], "two": [live(a.id)]}),
                     digests={}, record={})
    assert any("already exists in space two" in p.message for p in plan.problems)
    b = replace(a, space="two")
    plan = make_plan(desired(a, b), live_state({"one": [], "two": []}), digests={}, record={})
    assert plan.changes == () and len(plan.problems) == 2


# --- shape of the plan ------------------------------------------------------------------------------

def test_sorted_by_space_action_id_and_deterministic() -> None:
    want, have, digests, record = mixed_inputs()
    plan = make_plan(want, have, digests=digests, record=record)
    keys = [(c.space, list(Action).index(c.action), c.id) for c in plan.changes]
    order = {Action.CREATE: 0, Action.UPDATE: 1, Action.RECREATE: 2, Action.DELETE: 3, Action.NOOP: 4,
             Action.UNMANAGED: 5}
    assert [(c.space, order[c.action], c.id) for c in plan.changes] == sorted(
        (c.space, order[c.action], c.id) for c in plan.changes)
    assert keys  # non-empty
    # reversed inputs give the same plan
    rev_live = replace(have, spaces={k: replace(v, connectors=tuple(reversed(v.connectors)))
                                     for k, v in reversed(list(have.spaces.items()))})
    rev_want = replace(want, spaces={k: replace(v, connectors=tuple(reversed(v.connectors)))
                                     for k, v in reversed(list(want.spaces.items()))})
    assert make_plan(rev_want, rev_live, digests=digests, record=record) == plan
    assert plan.kibana_url == URL and plan.spaces == ("default", "security")


def test_spaces_limit_scope() -> None:
    want, have, digests, record = mixed_inputs()
    plan = make_plan(want, have, digests=digests, record=record, spaces=["security"])
    assert plan.spaces == ("security",) and {c.space for c in plan.changes} == {"security"}


def test_attach_rules_only_to_blocked() -> None:
    s = spec("chat", ".teams")
    used = live_of(s, type=".slack", referenced=1)
    plan = plan_of(s, live_conns=[used])
    rule = RuleRef(id="r1", name="CPU", space="default")
    attached = attach_rules(plan, {s.id: (rule,), "other": (rule,)})
    assert only(attached).guard.rules == (rule,)
    unblocked = plan_of(HOOK, live_conns=[live_of(HOOK, name="Old")])
    assert attach_rules(unblocked, {HOOK.id: (rule,)}) == unblocked


def test_rules_attached_to_the_blocked_ids_the_planner_names() -> None:
    """The CLI's order: make_plan, blocked_ids -> rules_referencing, attach_rules."""
    want, have, digests, record = mixed_inputs()
    plan = make_plan(want, have, digests=digests, record=record)
    recreate = next(c for c in plan.changes if c.action is Action.RECREATE)
    assert recreate.guard.rules == ()  # the planner itself never reads rules
    assert ("default", recreate.id) in blocked_ids(plan)
    attached = attach_rules(plan, MIXED_RULES)
    recreate = next(c for c in attached.changes if c.action is Action.RECREATE)
    assert [r.id for r in recreate.guard.rules] == ["rule-cpu", "rule-disk"]


def test_throughput_10k_connectors_100_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    """Not a timing assertion: prints the planner's time for the report (SPEC §10)."""
    specs, lives = [], {}
    for sp in range(100):
        space = f"space-{sp:03d}"
        lives[space] = []
        for i in range(100):
            kind = i % 4
            if kind == 0:
                s = spec(f"c{i}", ".webhook", space=space, config={"url": f"https://h/{i}", "headers": {"a": "b"}},
                         secrets={"user": "${env:U}", "password": "${env:P}"})
            elif kind == 1:
                s = spec(f"c{i}", ".index", space=space, config={"index": f"ix-{i}"})
            elif kind == 2:
                s = spec(f"c{i}", ".email", space=space, config={"from": "a@x", "host": "smtp", "port": 25},
                         secrets={"user": "${env:U}", "password": "${env:P}"})
            else:
                s = spec(f"c{i}", space=space)
            specs.append(s)
            lives[space].append(live_of(s, name=s.name if i % 10 else "changed"))
    want = desired(*specs)
    have = live_state(lives)
    digests = {s.id: digest({"user": "u", "password": "p"}) for s in specs}
    start = time.perf_counter()
    plan = make_plan(want, have, digests=digests, record=digests)
    elapsed = time.perf_counter() - start
    assert len(plan.changes) == 10_000
    assert plan.summary()["update"] == 1_000
    with capsys.disabled():
        print(f"\n[planner throughput] 10,000 connectors / 100 spaces planned in {elapsed:.3f}s "
              f"({10_000 / elapsed:,.0f} connectors/s)")


# --- plaintext secrets (allow_plaintext_secrets) never reach the plan ---------------------------------

def test_plaintext_secrets_replaced_by_marker_with_a_warning() -> None:
    canary = f"CANARY-{uuid.uuid4()}"
    s = spec("hook", ".webhook", config={"url": "https://h"},
             secrets={"user": "${env:U}", "password": canary, "token": f"Bearer ${{env:T}}-{canary[:6]}",
                      "nested": {"a": canary, "b": ["${file:x}", canary, 42], "c": None}})
    s = replace(s, locations={"secrets.password": Location("connectors/default/main.yaml", 7, 19)})
    plan = plan_of(s, digests={s.id: digest({"user": "u", "password": canary})})
    c = only(plan)
    assert c.desired is not None
    assert c.desired.secret_refs == {
        "user": "${env:U}",
        "password": PLAINTEXT_MARKER,
        "token": f"Bearer ${{env:T}}-{canary[:6]}",  # a template keeps its literal text: it is not a secret
        "nested": {"a": {"$plaintext": True}, "b": ["${file:x}", {"$plaintext": True}, {"$plaintext": True}],
                   "c": None},
    }
    (p,) = plan.problems
    assert (p.space, p.id, p.severity) == ("default", s.id, "warning")
    assert p.message == ("plaintext secret in connectors/default/main.yaml:7:19 (allow_plaintext_secrets): it is "
                         "never written to the plan; apply it with `kcr apply` (plan and apply in one run), not "
                         "from a saved plan")
    assert not plan.has_errors
    for out in (planfile.dumps(plan), repr(plan)):
        assert canary not in out
    assert planfile.loads(planfile.dumps(plan)) == plan  # the marker is a valid saved-plan value


@pytest.mark.parametrize("twin", [None, {"name": "Old"}, {"type": ".slack"}], ids=["create", "update", "recreate"])
def test_plaintext_marker_for_every_action_that_sends(twin) -> None:
    s = spec("hook", ".webhook", config={"url": "https://h"}, secrets={"user": "${env:U}", "password": "p4ss"})
    c = only(plan := plan_of(s, live_conns=[] if twin is None else [live_of(s, **twin)]))
    assert c.desired is not None and c.desired.secret_refs["password"] == {"$plaintext": True}
    assert "p4ss" not in planfile.dumps(plan)
    # the secret's own location is unknown here: the connector's is named
    assert [p.message.split(" (")[0] for p in plan.problems] == ["plaintext secret in connectors/default/main.yaml:1:3"]


def test_plaintext_secret_on_a_noop_warns_nothing() -> None:
    s = spec("hook", ".webhook", config={"url": "https://h"}, secrets={"user": "${env:U}", "password": "p4ss"})
    d = digest({"user": "u", "password": "p4ss"})
    plan = plan_of(s, live_conns=[live_of(s)], digests={s.id: d}, record={s.id: d})
    assert only(plan).action is Action.NOOP and plan.problems == ()
    assert "p4ss" not in planfile.dumps(plan)


def test_references_only_left_alone() -> None:
    plan = plan_of(HOOK)
    c = only(plan)
    assert c.desired is not None and c.desired.secret_refs == dict(HOOK.secrets) and plan.problems == ()


# --- what a create shows ------------------------------------------------------------------------------

def test_create_diffs_only_declared_config_keys() -> None:
    ai = spec("ai", ".gen-ai", config={"apiProvider": "OpenAI", "apiUrl": "https://api.openai.com/v1/chat"},
              secrets={"apiKey": "${env:K}"})
    ix = spec("ix", ".index", config={"index": "a"})
    for s, paths in ((ai, ["name", "config.apiProvider", "config.apiUrl"]), (ix, ["name", "config.index"])):
        c = only(plan_of(s))
        assert [d.path for d in c.diffs] == paths
        assert all(d.kind == "added" for d in c.diffs)
        assert c.desired is not None and c.desired.config == dict(s.config)


def test_create_shows_declared_defaults_and_drops_nulls() -> None:
    s = spec("ix", ".index", config={"index": "a", "refresh": False, "executionTimeField": None})
    c = only(plan_of(s))
    assert [(d.path, d.after) for d in c.diffs] == [("name", "Ix"), ("config.index", "a"), ("config.refresh", False)]


def test_update_diffs_still_compare_with_defaults() -> None:
    s = spec("ix", ".index", config={"index": "a", "refresh": True})
    c = only(plan_of(s, live_conns=[live_of(s, config={"index": "a"})]))  # Kibana holds refresh: false
    assert [(d.path, d.before, d.after, d.kind) for d in c.diffs] == [("config.refresh", False, True, "changed")]
    ai = spec("ai", ".gen-ai", config={"apiProvider": "OpenAI", "apiUrl": "https://x"}, secrets={"apiKey": "${env:K}"})
    live_ai = live_of(ai, config={"apiProvider": "OpenAI", "apiUrl": "https://x", "defaultModel": "gpt-9"})
    assert only(plan_of(ai, live_conns=[live_ai])).diffs == ()  # Kibana's per-release default is not a diff
    r = spec("ix2", ".index", config={"index": "b"})
    c = only(plan_of(r, live_conns=[live_of(r, type=".server-log", config={})]))
    assert ("config.refresh", None, False) in [(d.path, d.before, d.after) for d in c.diffs]  # recreate: as update


def test_create_without_declared_secrets_has_no_secret_keys() -> None:
    mail = spec("mail", ".email", config={"from": "a@example.com", "host": "smtp", "port": 25, "hasAuth": False,
                                          "service": "other"})
    hook = spec("hook", ".webhook", config={"url": "https://h", "hasAuth": False}, secrets={"user": None})
    for s in (mail, hook):
        c = only(plan_of(s))
        assert (c.secrets, c.secret_keys_changed) == (SecretsStatus.CHANGED, ())


# --- licence grammar, defensive space checks ------------------------------------------------------------

@pytest.mark.parametrize(("licence", "needle"), [("enterprise", "needs an enterprise licence"),
                                                  ("gold", "needs a gold licence")])
def test_licence_article(licence: str, needle: str) -> None:
    info = ConnectorTypeInfo(id=".slack", name="Slack", enabled=False, enabled_in_license=False,
                             minimum_license_required=licence)
    (p,) = plan_of(SLACK, types={".slack": info}).problems
    assert needle in p.message


def test_space_known_but_not_read_is_an_error_not_an_empty_space() -> None:
    """make_plan is public: a space missing from the live state must not read as empty (all creates)."""
    plan = make_plan(desired(SLACK), live_state({}, known=["default"]), digests={}, record={})
    assert plan.changes == ()
    (p,) = plan.problems
    assert (p.space, p.severity) == ("default", "error") and "was not read from Kibana" in p.message
