"""Two applies of different saved plans at once, both planned from the same live state and both
changing one shared connector X to different values. Kibana's connector API has no version
precondition, so kcr's guarantee against lost updates is the stale check (a re-read right before
each write) plus the record's lock, which serialises every apply that shares a record:

- sharing a record (the normal case: one file, or one GitLab state per environment): while A holds
  the lock, B fails at once with a clear error naming the holder (pid, host, lock file) and changes
  nothing; re-run after A, B's X is stale and everything else of B's applies. The record keeps both.
- not sharing one (two machines with local records): both run truly at once; B's re-read of X comes
  after A's write, so B reports X stale instead of overwriting it.

The interleaving is forced with events in a wrapping client, never with sleeps."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.pipeline import Pipeline

from reconciler.apply_checks import STALE_LIVE
from reconciler.apply_report import ApplyReport, Status
from reconciler.connection import Connection
from reconciler.errors import StateError
from reconciler.kibana import KibanaClient
from reconciler.model import LiveConnector, derive_connector_id
from reconciler.plan import Action, Plan
from reconciler.sandbox import Sandbox

KEY = b"concurrency-key"
WAIT = 10.0  # bound on every event wait: a bug fails the test instead of hanging it
X = derive_connector_id("default", "shared")
A1 = derive_connector_id("default", "only-a")
B1 = derive_connector_id("default", "only-b")


def _repo(root: Path, who: str, mine: str) -> None:
    (root / "connectors" / "default").mkdir(parents=True)
    (root / "connectors" / "default" / "_space.yaml").write_text("prune: false\n")
    (root / "connectors" / "default" / "c.yaml").write_text(f"""connectors:
  - id: shared
    name: Shared
    type: .index
    config:
      index: from-{who}
  - id: {mine}
    name: Only {who} (updated)
    type: .slack
    secrets:
      webhookUrl: ${{env:URL_{who.upper()}}}
""")


ENV = {"URL_A": "https://hooks.slack.com/services/a-new", "URL_B": "https://hooks.slack.com/services/b-new"}


def _sandbox() -> Sandbox:
    old = {"config": {}, "secrets": {"webhookUrl": "https://old.example/x"}, "connector_type_id": ".slack"}
    return Sandbox.from_seed({"license": "platinum", "connectors": [
        {"id": X, "space": "default", "name": "Shared", "connector_type_id": ".index", "config": {"index": "base"},
         "secrets": {}},
        {"id": A1, "space": "default", "name": "Only a", **old},
        {"id": B1, "space": "default", "name": "Only b", **old},
    ]})


class Gated:
    """The real client, with hooks around the calls the applier makes for one connector."""

    def __init__(self, inner: KibanaClient, *, before_get: Callable[[], None] | None = None,
                 after_update: Callable[[], None] | None = None) -> None:
        self.inner, self.before_get, self.after_update = inner, before_get, after_update

    def list_connectors(self, space: str) -> list[LiveConnector]:
        return self.inner.list_connectors(space)

    def get_connector(self, space: str, id: str) -> LiveConnector | None:
        if id == X and self.before_get is not None:
            self.before_get()
        return self.inner.get_connector(space, id)

    def create_connector(self, space: str, id: str, **kw: Any) -> LiveConnector:
        return self.inner.create_connector(space, id, **kw)

    def update_connector(self, space: str, id: str, **kw: Any) -> LiveConnector:
        live = self.inner.update_connector(space, id, **kw)
        if id == X and self.after_update is not None:
            self.after_update()
        return live

    def delete_connector(self, space: str, id: str) -> None:
        self.inner.delete_connector(space, id)


def _wait(event: threading.Event) -> None:
    assert event.wait(WAIT), "the other apply never got there"


def _status(report: ApplyReport) -> dict[str, Status]:
    return {r.address.split("/", 1)[1]: r.status for r in report.results}


def _sides(tmp_path: Path, shared_record: bool) -> tuple[Sandbox, KibanaClient, Pipeline, Pipeline]:
    sb = _sandbox()
    client = KibanaClient(Connection.from_env({"KIBANA_URL": "http://kibana.test"}), transport=sb.transport(),
                          sleep=lambda s: None)
    _repo(tmp_path / "a", "a", "only-a")
    _repo(tmp_path / "b", "b", "only-b")
    record_b = tmp_path / ("record.json" if shared_record else "record-b.json")
    return (sb, client, Pipeline(tmp_path / "a", client, key=KEY, env=ENV, record=tmp_path / "record.json"),
            Pipeline(tmp_path / "b", client, key=KEY, env=ENV, record=record_b))


def _both_planned(a: Pipeline, b: Pipeline) -> tuple[Plan, Plan]:
    plan_a, plan_b = a.plan(), b.plan()  # from the same live state, before either applies
    for p, mine in ((plan_a, A1), (plan_b, B1)):
        actions = {c.id: c.action for c in p.changes}
        assert actions[X] is Action.UPDATE and actions[mine] is Action.UPDATE
    return plan_a, plan_b


def _run_in_thread(target: Callable[[], ApplyReport]) -> tuple[threading.Thread, list[ApplyReport | BaseException]]:
    out: list[ApplyReport | BaseException] = []

    def run() -> None:
        try:
            out.append(target())
        except BaseException as exc:  # handed to the test thread
            out.append(exc)

    thread = threading.Thread(target=run, name="apply-a")
    thread.start()
    return thread, out


def _report(out: list[ApplyReport | BaseException]) -> ApplyReport:
    assert len(out) == 1
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def test_shared_record_second_apply_fails_clearly_then_reports_stale(tmp_path: Path) -> None:
    sb, client, a, b = _sides(tmp_path, shared_record=True)
    plan_a, plan_b = _both_planned(a, b)

    a_wrote, release = threading.Event(), threading.Event()

    def pause() -> None:  # A has written X and still holds the lock
        a_wrote.set()
        _wait(release)

    thread, out = _run_in_thread(lambda: a.apply(plan_a, client=Gated(client, after_update=pause)))
    try:
        _wait(a_wrote)
        with pytest.raises(StateError) as caught:
            b.apply(plan_b, client=client)
        message = str(caught.value)
        assert "locked by" in message and f"pid {os.getpid()}" in message and "kcr apply" in message
        assert str(b.record.lock_path) in message  # how to remove it if the holder died
        stored = {c["id"]: c for c in sb.connectors_in("default")}
        assert stored[B1]["name"] == "Only b", "B changed something without the lock"
    finally:
        release.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    report_a = _report(out)
    assert set(_status(report_a).values()) == {Status.OK}

    report_b = b.apply(plan_b, client=client)  # after A: its saved plan is stale for X only
    assert _status(report_b) == {X: Status.STALE, B1: Status.OK}
    assert STALE_LIVE in next(r.message for r in report_b.results if r.status is Status.STALE)

    stored = {c["id"]: c for c in sb.connectors_in("default")}
    assert stored[X]["config"]["index"] == "from-a"  # A's write survived
    assert stored[B1]["secrets"] == {"webhookUrl": ENV["URL_B"]}
    assert {A1, B1} <= set(a.record.load())  # both runs' digests in the one record
    assert not a.record.lock_path.exists()


def test_separate_records_concurrent_applies_no_lost_update(tmp_path: Path) -> None:
    sb, client, a, b = _sides(tmp_path, shared_record=False)
    plan_a, plan_b = _both_planned(a, b)

    a_wrote, b_started = threading.Event(), threading.Event()

    def a_waits_for_b() -> None:  # both applies are in flight before A writes X ...
        _wait(b_started)

    def b_reads_after_a_wrote() -> None:  # ... and B re-reads X only after A's write returned
        b_started.set()
        _wait(a_wrote)

    gated_a = Gated(client, before_get=a_waits_for_b, after_update=a_wrote.set)
    gated_b = Gated(client, before_get=b_reads_after_a_wrote)
    thread, out = _run_in_thread(lambda: a.apply(plan_a, client=gated_a))
    try:
        report_b = b.apply(plan_b, client=gated_b)
    finally:
        b_started.set()
        a_wrote.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    report_a = _report(out)

    assert _status(report_a) == {X: Status.OK, A1: Status.OK}
    assert _status(report_b) == {X: Status.STALE, B1: Status.OK}
    stored = {c["id"]: c for c in sb.connectors_in("default")}
    assert stored[X]["config"]["index"] == "from-a"  # exactly one won; B did not overwrite it
    assert stored[A1]["secrets"] == {"webhookUrl": ENV["URL_A"]}
    assert stored[B1]["secrets"] == {"webhookUrl": ENV["URL_B"]}
    assert A1 in a.record.load() and B1 in b.record.load()


