"""apply_plan against stateful fakes of the client, the resolver and the record (the applier's Protocols,
faked in helpers.applier_fakes)."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from helpers.applier_fakes import (
    FakeClient,
    FakeRecord,
    FakeResolver,
    PlainRecord,
    by_address,
    change,
    cid,
    desired,
    digest_for,
    env_for,
    live,
    plan_of,
    run,
)

from reconciler.apply_checks import STALE_LIVE, STALE_SECRETS
from reconciler.apply_report import ActionResult, ApplyReport, Status, exit_code
from reconciler.errors import KibanaError, SecretError, StateError
from reconciler.model import SecretDigest
from reconciler.plan import Action, Guard
from reconciler.render import report_json, report_text

CANARY = f"CANARY-{uuid.uuid4()}"


# --- tests ------------------------------------------------------------------------------------


def test_creates_and_updates_run_before_deletes_and_recreates() -> None:
    old = {("default", cid(n)): live(n) for n in (2, 3, 4)}
    old[("default", cid(4))] = live(4, type=".teams")
    client = FakeClient(old)
    resolver = FakeResolver(env_for(1, 2, 4))
    plan = plan_of(
        change(Action.DELETE, 3, before=live(3)),
        change(Action.RECREATE, 4, before=old[("default", cid(4))], want=desired(4), resolver=resolver),
        change(Action.CREATE, 1, want=desired(1), resolver=resolver),
        change(Action.UPDATE, 2, before=live(2), want=desired(2, name="renamed"), resolver=resolver),
    )
    report = run(plan, client, resolver, parallelism=3)
    assert [r.status for r in report.results] == [Status.OK] * 4
    assert [r.address for r in report.results] == [c.address for c in plan.changes]  # plan order
    verbs = [v for v, _ in client.calls]
    first_delete = verbs.index("delete")
    assert set(verbs[:first_delete]) == {"create", "update"} and len(verbs[:first_delete]) == 2
    recreate_calls = [c for c in client.calls if c[1] == cid(4)]
    assert recreate_calls == [("delete", cid(4)), ("create", cid(4))]
    assert client.store[("default", cid(4))].type == ".slack"
    assert ("default", cid(3)) not in client.store
    assert client.store[("default", cid(2))].name == "renamed"
    assert client.secrets[("default", cid(1))] == {"webhookUrl": "https://hooks.example/1"}
    assert exit_code(report) == 0


def test_noop_and_unmanaged_are_not_touched_and_empty_plan_touches_nothing() -> None:
    client = FakeClient({("default", cid(1)): live(1)})
    record = FakeRecord()
    resolver = FakeResolver({})
    plan = plan_of(change(Action.NOOP, 1, before=live(1)), change(Action.UNMANAGED, 1, before=live(1)))
    report = run(plan, client, resolver, record)
    assert report.results == () and not report.record_updated
    assert client.calls == [] and client.reads == [] and record.events == [] and resolver.calls == []


def test_recreate_whose_create_fails_says_deleted_and_a_rerun_converges() -> None:
    before = live(5, type=".teams")
    client = FakeClient({("default", cid(5)): before})
    client.fail[("create", cid(5))] = KibanaError("Kibana answered 500", 500)
    resolver = FakeResolver(env_for(5))
    record = FakeRecord({cid(5): SecretDigest(hmacs={"webhookUrl": "old"})})
    report = run(plan_of(change(Action.RECREATE, 5, before=before, want=desired(5), resolver=resolver)),
                 client, resolver, record)
    (result,) = report.results
    assert result.status is Status.FAILED
    assert result.message.startswith("deleted, but re-create failed: Kibana answered 500")
    assert result.message.endswith("re-run kcr apply to create it")
    assert ("default", cid(5)) not in client.store
    assert cid(5) not in record.data and report.record_updated  # the deleted id left the record
    assert exit_code(report) == 1

    # the plan a re-run makes: a create, which now works
    del client.fail[("create", cid(5))]
    again = run(plan_of(change(Action.CREATE, 5, want=desired(5), resolver=resolver)), client, resolver, record)
    assert [r.status for r in again.results] == [Status.OK]
    assert client.store[("default", cid(5))].type == ".slack"
    assert record.data[cid(5)] == digest_for(resolver, 5, desired(5))


def test_stale_when_the_live_connector_changed_since_the_plan() -> None:
    client = FakeClient({("default", cid(1)): live(1)})
    resolver = FakeResolver(env_for(1))
    plan = plan_of(change(Action.UPDATE, 1, before=live(1), want=desired(1, name="new"), resolver=resolver))
    client.store[("default", cid(1))] = live(1, name="edited in the UI")
    report = run(plan, client, resolver)
    (result,) = report.results
    assert result.status is Status.STALE and STALE_LIVE in result.message
    assert client.calls == []
    assert exit_code(report) == 1


def test_stale_create_when_the_connector_appeared_and_delete_when_it_vanished() -> None:
    client = FakeClient({("default", cid(1)): live(1)})
    resolver = FakeResolver(env_for(1))
    plan = plan_of(change(Action.CREATE, 1, want=desired(1), resolver=resolver),
                   change(Action.DELETE, 2, before=live(2)))
    report = run(plan, client, resolver)
    results = by_address(report)
    assert results[f"default/{cid(1)}"].status is Status.STALE
    assert results[f"default/{cid(1)}"].message.startswith("now exists in Kibana")
    assert results[f"default/{cid(2)}"].status is Status.STALE
    assert results[f"default/{cid(2)}"].message.startswith("no longer exists in Kibana")
    # The create's stale check is Kibana's own 409: the POST was refused and nothing was overwritten.
    assert client.calls == [("create", cid(1))]
    assert client.store[("default", cid(1))] == live(1)


def test_fingerprint_ignores_referenced_by_count() -> None:
    before = live(1, count=0)
    client = FakeClient({("default", cid(1)): dataclasses.replace(before, referenced_by_count=7)})
    resolver = FakeResolver(env_for(1))
    report = run(plan_of(change(Action.UPDATE, 1, before=before, want=desired(1, name="x"), resolver=resolver)),
                 client, resolver)
    assert [r.status for r in report.results] == [Status.OK]


def test_stale_when_secrets_changed_since_the_plan() -> None:
    client = FakeClient({("default", cid(1)): live(1)})
    planned = FakeResolver(env_for(1, value="https://hooks.example/old"))
    now = FakeResolver(env_for(1, value="https://hooks.example/rotated"))
    report = run(plan_of(change(Action.UPDATE, 1, before=live(1), want=desired(1), resolver=planned)),
                 client, now)
    (result,) = report.results
    assert result.status is Status.STALE and result.message == STALE_SECRETS
    assert client.calls == [] and client.reads == []  # decided before asking Kibana


def test_stale_when_a_vault_version_moved_even_without_key() -> None:
    client = FakeClient({("default", cid(1)): live(1)})
    ref = "${env:S1}"
    planned = FakeResolver(env_for(1), versions={ref: 3})
    now = FakeResolver(env_for(1), versions={ref: 4})
    want = desired(1)
    digest = planned.resolve(want.secret_refs).digest(cid(1), None)
    report = run(plan_of(change(Action.UPDATE, 1, before=live(1), want=want, digest=digest)),
                 client, now, fingerprint_key=None)
    assert [r.status for r in report.results] == [Status.STALE]
    # same version, no key on either side: nothing to contradict the plan
    same = run(plan_of(change(Action.UPDATE, 1, before=live(1), want=want, digest=digest)),
               client, planned, fingerprint_key=None)
    assert [r.status for r in same.results] == [Status.OK]


def test_plan_without_hmacs_is_not_stale_when_the_run_has_a_key() -> None:
    client = FakeClient({("default", cid(1)): live(1)})
    resolver = FakeResolver(env_for(1))
    want = desired(1)
    report = run(plan_of(change(Action.UPDATE, 1, before=live(1), want=want, digest=SecretDigest())),
                 client, resolver)
    assert [r.status for r in report.results] == [Status.OK]


def test_protect_blocks_recreate_whatever_allow_referenced_says() -> None:
    before = live(1, type=".teams")
    client = FakeClient({("default", cid(1)): before})
    resolver = FakeResolver(env_for(1))
    want = desired(1, protect=True)
    plan = plan_of(change(Action.RECREATE, 1, before=before, want=want, resolver=resolver,
                          guard=Guard(blocked=True, reasons=("protect: true in connectors/default/c1.yaml",))))
    report = run(plan, client, resolver, allow_referenced="all")
    (result,) = report.results
    assert result.status is Status.BLOCKED and "protect: true" in result.message
    assert client.calls == []
    assert exit_code(report) == 3


def test_delete_blocked_by_the_re_read_reference_count() -> None:
    client = FakeClient({("default", cid(1)): live(1)})
    client.counts[cid(1)] = 2  # a rule started using it after the plan
    resolver = FakeResolver({})
    report = run(plan_of(change(Action.DELETE, 1, before=live(1))), client, resolver)
    (result,) = report.results
    assert result.status is Status.BLOCKED
    assert "referenced by 2 saved objects" in result.message and f"--allow-referenced {cid(1)}" in result.message
    assert client.calls == [] and ("default", cid(1)) in client.store
    assert client.reads.count(("list", "default")) == 1
    assert exit_code(report) == 3


def test_reference_block_of_the_plan_lifts_when_the_count_dropped() -> None:
    client = FakeClient({("default", cid(1)): live(1)})
    plan = plan_of(change(Action.DELETE, 1, before=live(1), count=3,
                          guard=Guard(blocked=True, reasons=("referenced by 3 saved objects (rules, cases)",))))
    report = run(plan, client, FakeResolver({}))
    assert [r.status for r in report.results] == [Status.OK]
    assert client.calls == [("delete", cid(1))]


@pytest.mark.parametrize("allow", [frozenset({cid(1)}), "all"])
def test_allow_referenced_by_id_or_all(allow: Any) -> None:
    client = FakeClient({("default", cid(n)): live(n) for n in (1, 2)})
    client.counts.update({cid(1): 1, cid(2): 1})
    report = run(plan_of(change(Action.DELETE, 1, before=live(1)), change(Action.DELETE, 2, before=live(2))),
                 client, FakeResolver({}), allow_referenced=allow)
    results = by_address(report)
    assert results[f"default/{cid(1)}"].status is Status.OK
    expected = Status.OK if allow == "all" else Status.BLOCKED
    assert results[f"default/{cid(2)}"].status is expected


def test_one_list_per_space_for_the_delete_phase() -> None:
    store = {("default", cid(n)): live(n) for n in (1, 2, 3)}
    store[("ops", cid(4))] = live(4)
    client = FakeClient(store)
    changes = [change(Action.DELETE, n, before=live(n)) for n in (1, 2, 3)]
    changes.append(change(Action.DELETE, 4, before=live(4), space="ops"))
    report = run(plan_of(*changes), client, FakeResolver({}))
    assert report.counts["ok"] == 4
    assert sorted(r for r in client.reads if r[0] == "list") == [("list", "default"), ("list", "ops")]


def test_list_failure_blocks_the_deletes_of_that_space_only() -> None:
    client = FakeClient({("default", cid(1)): live(1)})
    client.fail_list = KibanaError("GET /api/actions/connectors: Kibana answered 503", 503)
    resolver = FakeResolver(env_for(2))
    report = run(plan_of(change(Action.DELETE, 1, before=live(1)),
                         change(Action.CREATE, 2, want=desired(2), resolver=resolver)), client, resolver)
    results = by_address(report)
    assert results[f"default/{cid(1)}"].status is Status.BLOCKED  # unknown count: fail closed, nothing sent
    assert "referenced_by_count could not be re-read" in results[f"default/{cid(1)}"].message
    assert results[f"default/{cid(2)}"].status is Status.OK
    assert ("delete", cid(1)) not in client.calls


def test_delete_of_a_connector_gone_between_read_and_delete_is_ok() -> None:
    client = FakeClient({("default", cid(1)): live(1)})
    client.on_mutation = lambda verb, id: client.store.pop(("default", id), None) if verb == "delete" else None
    record = FakeRecord({cid(1): SecretDigest(hmacs={"webhookUrl": "x"})})
    report = run(plan_of(change(Action.DELETE, 1, before=live(1))), client, FakeResolver({}), record)
    (result,) = report.results
    assert result.status is Status.OK and "already gone" in result.message
    assert cid(1) not in record.data


@pytest.mark.parametrize("parallelism", [1, 2, 3])
def test_parallelism_bound_is_respected_and_used(parallelism: int) -> None:
    client = FakeClient()
    client.gate = threading.Event()
    client.gate_at = parallelism  # every worker waits until `parallelism` of them are in Kibana at once
    ns = range(1, 9)
    resolver = FakeResolver(env_for(*ns))
    report = run(plan_of(*(change(Action.CREATE, n, want=desired(n), resolver=resolver) for n in ns)),
                 client, resolver, parallelism=parallelism)
    assert report.counts["ok"] == 8
    assert client.max_active == parallelism
    assert len(client.threads) <= parallelism


def test_parallelism_must_be_positive() -> None:
    from reconciler.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 1"):
        run(plan_of(change(Action.DELETE, 1, before=live(1))), FakeClient(), FakeResolver({}), parallelism=0)


def test_one_failure_hides_no_other_result() -> None:
    ns = (1, 2, 3)
    client = FakeClient({("default", cid(n)): live(n) for n in ns})
    client.fail[("update", cid(2))] = KibanaError("PUT .../connector/x: 400 error validating", 400)
    client.fail[("update", cid(3))] = RuntimeError("boom")
    resolver = FakeResolver(env_for(*ns))
    progress: list[ActionResult] = []
    report = run(plan_of(*(change(Action.UPDATE, n, before=live(n), want=desired(n, name="z"), resolver=resolver)
                           for n in ns)), client, resolver, on_progress=progress.append)
    assert [r.status for r in report.results] == [Status.OK, Status.FAILED, Status.FAILED]
    assert report.results[2].message == "RuntimeError: boom"
    assert sorted(r.address for r in progress) == sorted(r.address for r in report.results)
    assert all(r.duration >= 0 for r in report.results)


def test_record_updated_only_for_successes_and_saved_once() -> None:
    ns = (1, 2, 3)
    client = FakeClient({("default", cid(n)): live(n) for n in (2, 3)})
    client.fail[("update", cid(3))] = KibanaError("nope", 500)
    resolver = FakeResolver(env_for(*ns))
    keep = SecretDigest(hmacs={"webhookUrl": "older"})
    record = FakeRecord({cid(3): keep, cid(9): keep})
    report = run(plan_of(change(Action.CREATE, 1, want=desired(1), resolver=resolver),
                         change(Action.UPDATE, 2, before=live(2), want=desired(2, name="y"), resolver=resolver),
                         change(Action.UPDATE, 3, before=live(3), want=desired(3, name="y"), resolver=resolver)),
                 client, resolver, record)
    assert report.record_updated
    assert len(record.saves) == 1
    saved = record.saves[0]
    assert saved[cid(1)] == digest_for(resolver, 1, desired(1))
    assert saved[cid(2)] == digest_for(resolver, 2, desired(2))
    assert saved[cid(3)] == keep and saved[cid(9)] == keep  # failed and untouched ones stay as they were


def test_record_not_saved_when_nothing_succeeded() -> None:
    client = FakeClient({("default", cid(1)): live(1, name="moved")})
    resolver = FakeResolver(env_for(1))
    record = FakeRecord()
    report = run(plan_of(change(Action.UPDATE, 1, before=live(1), want=desired(1), resolver=resolver)),
                 client, resolver, record)
    assert not report.record_updated and record.saves == []
    assert record.events == ["lock", "load", "unlock"]


def test_lock_held_for_the_whole_run() -> None:
    events: list[str] = []
    record = FakeRecord(events=events)
    client = FakeClient({("default", cid(2)): live(2)})
    client.on_mutation = lambda verb, id: events.append(f"{verb} locked={record.locked}")
    resolver = FakeResolver(env_for(1))
    run(plan_of(change(Action.CREATE, 1, want=desired(1), resolver=resolver), change(Action.DELETE, 2, before=live(2))),
        client, resolver, record)
    assert events == ["lock", "load", "create locked=True", "delete locked=True", "save", "unlock"]
    assert record.lock_info["Operation"] == "kcr apply"


def test_lock_released_when_the_record_cannot_be_loaded_or_saved() -> None:
    client = FakeClient()
    resolver = FakeResolver(env_for(1))
    plan = plan_of(change(Action.CREATE, 1, want=desired(1), resolver=resolver))
    record = FakeRecord()
    record.fail_load = StateError("record unreadable")
    with pytest.raises(StateError):
        run(plan, client, resolver, record)
    assert record.events == ["lock", "load", "unlock"] and client.calls == []

    record = FakeRecord()
    record.fail_save = StateError("backend answered 500")
    report = run(plan, client, resolver, record)
    assert report.results[0].status is Status.OK
    assert report.record_error == "backend answered 500" and not report.record_updated
    assert record.events[-1] == "unlock" and not record.locked
    assert exit_code(report) == 1


def test_lock_released_when_a_progress_display_breaks() -> None:
    def broken(result: ActionResult) -> None:
        raise BrokenPipeError("stdout closed")

    record = FakeRecord()
    client = FakeClient()
    resolver = FakeResolver(env_for(1))
    report = run(plan_of(change(Action.CREATE, 1, want=desired(1), resolver=resolver)), client, resolver, record,
                 on_progress=broken)
    assert report.results[0].status is Status.OK and not record.locked


def test_backend_without_lock_works() -> None:
    client = FakeClient()
    resolver = FakeResolver(env_for(1))
    record = PlainRecord()
    report = run(plan_of(change(Action.CREATE, 1, want=desired(1), resolver=resolver)), client, resolver, record)
    assert report.record_updated and cid(1) in record.data


def test_unresolvable_secret_aborts_before_kibana_or_the_lock() -> None:
    client = FakeClient()
    resolver = FakeResolver(env_for(1))
    record = FakeRecord()
    plan = plan_of(change(Action.CREATE, 1, want=desired(1), resolver=resolver),
                   change(Action.CREATE, 2, want=desired(2), digest=SecretDigest()))
    with pytest.raises(SecretError, match="S2"):
        run(plan, client, resolver, record)
    assert client.calls == [] and client.reads == [] and record.events == []


def test_resolver_gets_owner_labels_with_the_file() -> None:
    client = FakeClient()
    resolver = FakeResolver(env_for(1))
    run(plan_of(change(Action.CREATE, 1, want=desired(1), resolver=resolver)), client, resolver)
    assert resolver.calls == [{"default/k1 (connectors/default/c1.yaml)": {"webhookUrl": "${env:S1}"}}]


def test_canary_secret_never_reaches_results_output_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = FakeClient({("default", cid(2)): live(2, type=".teams")})
    client.fail[("create", cid(1))] = KibanaError(f"Kibana echoed the body: {{'webhookUrl': '{CANARY}'}}", 400)
    client.fail[("create", cid(2))] = RuntimeError(f"transport failed after sending {CANARY}")
    resolver = FakeResolver({"S1": CANARY, "S2": CANARY})
    progress: list[ActionResult] = []
    report = run(plan_of(change(Action.CREATE, 1, want=desired(1), resolver=resolver),
                         change(Action.RECREATE, 2, before=live(2, type=".teams"), want=desired(2),
                                resolver=resolver)),
                 client, resolver, on_progress=progress.append)
    assert [r.status for r in report.results] == [Status.FAILED, Status.FAILED]
    assert "***" in report.results[0].message
    assert ("create", cid(1)) in client.calls  # the canary was really sent, then masked in the error
    outputs = [report_text(report, color=True), report_text(report, color=False),
               json.dumps(report_json(report)), repr(report), caplog.text, repr(progress)]
    for text in outputs:
        assert CANARY not in text


def test_exit_codes() -> None:
    def rep(*statuses: Status) -> ApplyReport:
        return ApplyReport(results=tuple(ActionResult(f"s/{i}", Action.UPDATE, s) for i, s in enumerate(statuses)),
                           record_updated=False)

    assert exit_code(rep()) == 0
    assert exit_code(rep(Status.OK, Status.OK)) == 0
    assert exit_code(rep(Status.OK, Status.BLOCKED)) == 3
    assert exit_code(rep(Status.BLOCKED, Status.FAILED)) == 1
    assert exit_code(rep(Status.BLOCKED, Status.STALE)) == 1
    assert exit_code(ApplyReport(results=(), record_updated=False, record_error="x")) == 1


def test_render_text_and_json() -> None:
    results = (
        ActionResult("default/a", Action.CREATE, Status.OK, "", 0.5),
        ActionResult("default/b", Action.UPDATE, Status.OK, "", 0.1),
        ActionResult("default/c", Action.UPDATE, Status.OK, "", 0.1),
        ActionResult("default/d", Action.DELETE, Status.FAILED, "Kibana answered 500", 0.2),
        ActionResult("default/e", Action.UPDATE, Status.STALE, STALE_LIVE, 0.0),
        ActionResult("default/f", Action.DELETE, Status.BLOCKED, "referenced by 1 saved object", 0.0),
    )
    report = ApplyReport(results=results, record_updated=True)
    plain = report_text(report, color=False)
    assert plain.rstrip().endswith("Apply: 3 succeeded, 1 failed, 1 stale, 1 blocked.")
    assert "\033[" not in plain
    assert "delete default/d: failed" in plain and "Kibana answered 500" in plain
    assert "\033[31m" in report_text(report, color=True)
    body = report_json(report)
    assert body["summary"] == {"ok": 3, "failed": 1, "stale": 1, "blocked": 1}
    assert body["exit_code"] == 1 and body["record_updated"] is True
    assert body["results"][3] == {"address": "default/d", "action": "delete", "status": "failed",
                                  "message": "Kibana answered 500", "duration": 0.2}


def test_list_mode_reads_one_list_per_space_and_phase_instead_of_a_get_per_action() -> None:
    ns = (1, 2, 3)
    client = FakeClient({("default", cid(n)): live(n) for n in ns})
    resolver = FakeResolver(env_for(1, 2))
    plan = plan_of(change(Action.UPDATE, 1, before=live(1), want=desired(1, name="x"), resolver=resolver),
                   change(Action.UPDATE, 2, before=live(2), want=desired(2, name="x"), resolver=resolver),
                   change(Action.DELETE, 3, before=live(3)))
    client.store[("default", cid(2))] = live(2, name="edited")
    report = run(plan, client, resolver, stale_check="list")
    assert [r.status for r in report.results] == [Status.OK, Status.STALE, Status.OK]
    assert client.reads == [("list", "default"), ("list", "default")]
    assert client.calls == [("update", cid(1)), ("delete", cid(3))]


def test_record_keeper_saves_as_results_arrive() -> None:
    """A run killed half-way keeps the record of what it already changed: with the interval elapsed,
    each success is saved at once, and only successes are ever claimed."""
    from reconciler.masking import Masker
    from reconciler.record_keeper import RecordKeeper

    saves: list[dict[str, SecretDigest]] = []

    class Rec:
        def load(self) -> dict[str, SecretDigest]:
            return {}

        def save(self, record: Mapping[str, SecretDigest]) -> None:
            saves.append(dict(record))

    ok = change(Action.CREATE, 1, want=desired(1), resolver=FakeResolver(env_for(1)))
    failed = change(Action.CREATE, 2, want=desired(2), resolver=FakeResolver(env_for(2)))
    digest = SecretDigest(hmacs={"routingKey": "h1"})
    keeper = RecordKeeper(Rec(), {ok.address: digest, failed.address: digest}, Masker(), interval=0.0)
    keeper.load()
    keeper.note(ok, ActionResult(ok.address, ok.action, Status.OK), deleted=False)
    keeper.note(failed, ActionResult(failed.address, failed.action, Status.FAILED), deleted=False)
    assert saves == [{ok.id: digest}]  # saved once the success arrived; the failure changed nothing
    assert keeper.finish() is True and len(saves) == 1


def test_allow_referenced_takes_the_key_or_the_address() -> None:
    for name in ("k1", f"default/{cid(1)}"):
        client = FakeClient({("default", cid(1)): live(1, count=2)})
        resolver = FakeResolver(env_for(1))
        plan = plan_of(change(Action.RECREATE, 1, before=live(1, count=2), want=desired(1), resolver=resolver))
        report = run(plan, client, resolver, allow_referenced=frozenset({name}))
        assert report.results[0].status is Status.OK, (name, report.results[0].message)


def test_a_saved_plan_with_a_plaintext_marker_is_refused_for_that_action() -> None:
    client = FakeClient({})
    resolver = FakeResolver(env_for(1))
    marked = change(Action.CREATE, 1, want=desired(1), resolver=resolver)
    assert marked.desired is not None
    marked = dataclasses.replace(marked, desired=dataclasses.replace(
        marked.desired, secret_refs={"routingKey": {"$plaintext": True}}))
    report = run(plan_of(marked), client, resolver)
    assert report.results[0].status is Status.FAILED
    assert "plaintext" in report.results[0].message and client.calls == []


def test_a_create_whose_id_lives_in_another_space_fails_clearly_rather_than_stale() -> None:
    client = FakeClient({("other-space", cid(1)): live(1)})
    resolver = FakeResolver(env_for(1))
    report = run(plan_of(change(Action.CREATE, 1, want=desired(1), resolver=resolver)), client, resolver)
    assert report.results[0].status is Status.FAILED
    assert "another space" in report.results[0].message
