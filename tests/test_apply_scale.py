"""Applies that scale (issue #16): the record of applied secrets saved through a journal whose cost is
what changed, not the record; the Masker scanning a text once for every secret; the plan's read
concurrency as a setting; and an apply at --parallelism 32 and 64 over loopback in which no request
comes near its timeout. Nothing here times kcr: cost is asserted as bytes written and connections
opened (bench/apply.py has the figures)."""

from __future__ import annotations

import base64
import json
import random
import re
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Collection, Mapping
from pathlib import Path

import httpx
import pytest
from helpers.cli import kcr_process, process_env, run_main, write_repo

from reconciler.apply_report import ActionResult, Status
from reconciler.connection import Connection
from reconciler.errors import ConfigError, StateError
from reconciler.kibana import KibanaClient, read_concurrency
from reconciler.masking import _PERCENT_TABLES, MASK, Masker, _masked_forms
from reconciler.model import SecretDigest, derive_connector_id
from reconciler.plan import Action, Change
from reconciler.record_keeper import RecordKeeper
from reconciler.sandbox import Sandbox
from reconciler.sandbox.server import running
from reconciler.state import FileBackend, key_check, normalize_kibana_url
from reconciler.state.journal import journal_path

HANG_GUARD_S = 30.0  # bounds a wait that only a bug makes long
URL = "https://kibana.example:5601"


def digest(n: int) -> SecretDigest:
    return SecretDigest(hmacs={"webhookUrl": f"{n:064x}"})


def backend(tmp_path: Path, key: str | None = "k1", url: str | None = URL) -> FileBackend:
    return FileBackend(tmp_path / "record.json", kibana_url=url, fingerprint_key=key.encode() if key else None)


# --- the journal -------------------------------------------------------------------------------------------


def test_a_save_appends_only_what_changed_and_the_whole_save_ends_the_journal(tmp_path: Path) -> None:
    big = {f"id-{n:05d}": digest(n) for n in range(5000)}
    b = backend(tmp_path)
    b.save(big)
    record_bytes = b.path.read_bytes()
    inode = b.path.stat().st_ino
    for n in range(3):
        before = b.journal_path.stat().st_size if b.journal_path.exists() else 0
        b.save_changes({f"new-{n}": digest(10_000 + n)}, ["id-00000"] if n == 0 else [])
        assert b.journal_path.stat().st_size - before < 300, "a save's cost must not grow with the record"
    assert b.path.read_bytes() == record_bytes and b.path.stat().st_ino == inode, "the record was rewritten"
    want = {**big, **{f"new-{n}": digest(10_000 + n) for n in range(3)}}
    del want["id-00000"]
    assert backend(tmp_path).load() == want  # another reader folds the journal in
    b.save(want)
    assert not b.journal_path.exists()
    assert backend(tmp_path).load() == want
    assert json.loads(b.path.read_text())["key_check"] == key_check(b"k1")


def test_the_whole_save_under_the_lock_does_not_read_the_record_back(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The end of a large apply: the owner was checked at the run's first save and nobody else writes
    under its lock, so folding the journal again is skipped. Without the lock it is read back."""
    b = backend(tmp_path)
    b.lock()
    try:
        b.save({"a": digest(1)})
        b.save_changes({"b": digest(2)}, [])
        reads: list[str] = []
        real_read = FileBackend._read
        monkeypatch.setattr(FileBackend, "_read", lambda self: reads.append("read") or real_read(self))
        b.save({"a": digest(1), "b": digest(2)})
        assert reads == []
    finally:
        b.unlock()
    assert json.loads(b.path.read_text())["kibana_url"] == normalize_kibana_url(URL)
    assert backend(tmp_path).load() == {"a": digest(1), "b": digest(2)}
    unlocked = backend(tmp_path)
    unlocked.save_changes({"c": digest(3)}, [])
    unlocked.save({"c": digest(3)})
    assert reads, "a run without the lock must check the record's owner before overwriting it"


def test_a_journal_left_by_a_killed_run_is_read_back_without_its_torn_line(tmp_path: Path) -> None:
    b = backend(tmp_path)
    b.save({"a": digest(1)})
    b.save_changes({"b": digest(2)}, [])
    b.save_changes({"c": digest(3)}, ["a"])
    whole = b.journal_path.read_bytes()
    torn = whole + b'{"set":{"d":{"hmacs":{"webhookUrl":"ab'  # the kill fell inside a write
    b.journal_path.write_bytes(torn)
    assert backend(tmp_path).load() == {"b": digest(2), "c": digest(3)}
    again = backend(tmp_path)
    again.save_changes({"e": digest(5)}, [])  # the torn tail is cut before the next line
    assert again.journal_path.read_bytes().startswith(whole)
    assert b'"d"' not in again.journal_path.read_bytes()
    assert backend(tmp_path).load() == {"b": digest(2), "c": digest(3), "e": digest(5)}


APPENDER = """
import sys
from pathlib import Path
from reconciler.model import SecretDigest
from reconciler.state import FileBackend
b = FileBackend(Path(sys.argv[1]))
b.save({"base": SecretDigest(hmacs={"k": "0" * 64})})
n = 0
while True:
    b.save_changes({f"c{n:06d}": SecretDigest(hmacs={"k": f"{n:064x}"})}, [f"c{n - 1:06d}"] if n % 7 == 6 else [])
    print(n, flush=True)
    n += 1
"""


def test_a_process_killed_while_journaling_leaves_every_acknowledged_save(tmp_path: Path) -> None:
    """kill -9 at whatever point the writer happens to be (maybe inside a write): the record reads
    back as the record plus a prefix of the saves, every acknowledged one included."""
    path = tmp_path / "record.json"
    proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        acknowledged = -1
        while acknowledged < 40:
            line = proc.stdout.readline()
            assert line, "the writer stopped"
            acknowledged = int(line)
    finally:
        proc.kill()
        proc.wait(HANG_GUARD_S)
    loaded = FileBackend(path).load()
    saved = sorted(cid for cid in loaded if cid != "base")
    last = int(saved[-1][1:])
    assert last >= acknowledged
    want = {f"c{n:06d}" for n in range(last + 1)} - {f"c{n - 1:06d}" for n in range(last + 1) if n % 7 == 6}
    assert set(saved) == want and loaded["base"] == SecretDigest(hmacs={"k": "0" * 64})
    assert all(loaded[f"c{n:06d}"] == SecretDigest(hmacs={"k": f"{n:064x}"}) for n in range(last + 1)
               if f"c{n:06d}" in want)


def test_a_kill_between_the_whole_save_and_the_journal_removal_replays_to_that_record(tmp_path: Path) -> None:
    b = backend(tmp_path)
    b.save({"a": digest(1), "b": digest(2)})
    b.save_changes({"b": digest(20)}, [])
    kept = b.journal_path.read_bytes()
    b.save({"c": digest(3)})  # drops a and b: a journal replayed over it must not bring them back
    assert not b.journal_path.exists()
    b.journal_path.write_bytes(kept + _reset_line_of(b))  # as if killed before the removal
    assert backend(tmp_path).load() == {"c": digest(3)}


def _reset_line_of(b: FileBackend) -> bytes:
    from reconciler.state.journal import reset_line

    return reset_line(json.loads(b.path.read_text()))


def test_the_first_journal_line_writes_the_record_first_and_an_orphan_journal_is_ignored(tmp_path: Path) -> None:
    b = backend(tmp_path)
    b.journal_path.write_bytes(b'{"set":{"ghost":{"hmacs":{},"vault_versions":{}}}}\n')  # its record was deleted
    assert b.load() == {}
    b.save_changes({"a": digest(1)}, [])
    doc = json.loads(b.path.read_text())
    assert doc["kibana_url"] == URL and doc["connectors"] == {}
    assert backend(tmp_path).load() == {"a": digest(1)}


def test_a_corrupt_journal_line_is_refused_with_where_and_what_to_do(tmp_path: Path) -> None:
    b = backend(tmp_path)
    b.save({"a": digest(1)})
    b.journal_path.write_bytes(b'{"set":{}}\nnot json\n{"set":{}}\n')
    with pytest.raises(StateError) as caught:
        backend(tmp_path).load()
    message = str(caught.value)
    assert str(b.journal_path) in message and "line 2" in message and "delete" in message


def test_fingerprints_journaled_under_another_key_load_as_unknown(tmp_path: Path) -> None:
    old = backend(tmp_path, key="k1")
    old.save({"a": digest(1), "v": SecretDigest(hmacs={"x": "1" * 64}, vault_versions={"ref": 3})})
    new = backend(tmp_path, key="k2")
    new.load()
    new.save_changes({"b": digest(2)}, [])  # a run with another key, killed before its whole save
    assert backend(tmp_path, key="k2").load() == {"b": digest(2), "v": SecretDigest(vault_versions={"ref": 3})}
    k1 = backend(tmp_path, key="k1")
    assert k1.load() == {"v": SecretDigest(vault_versions={"ref": 3})} and k1.key_warning


def test_the_journal_refuses_another_kibanas_record(tmp_path: Path) -> None:
    backend(tmp_path, url="https://other.example").save({"a": digest(1)})
    with pytest.raises(StateError, match=r"other\.example"):
        backend(tmp_path).save_changes({"b": digest(2)}, [])
    assert not journal_path(tmp_path / "record.json").exists()


# --- the record keeper -------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Journal:
    def __init__(self, fail: int = 0) -> None:
        self.lines: list[tuple[dict[str, SecretDigest], list[str]]] = []
        self.wholes: list[dict[str, SecretDigest]] = []
        self.fail = fail

    def load(self) -> dict[str, SecretDigest]:
        return {"gone": digest(0)}

    def save(self, record: Mapping[str, SecretDigest]) -> None:
        self.wholes.append(dict(record))

    def save_changes(self, changed: Mapping[str, SecretDigest], removed: Collection[str]) -> None:
        if self.fail:
            self.fail -= 1
            raise StateError("disk full")
        self.lines.append((dict(changed), sorted(removed)))


def _change(n: int | str, action: Action = Action.CREATE) -> Change:
    cid = f"id-{n}" if isinstance(n, int) else n
    return Change(space="default", id=cid, action=action, reason="", name=cid, type=".slack")


def _ok(change: Change) -> ActionResult:
    return ActionResult(change.address, change.action, Status.OK)


def test_the_keeper_journals_each_batch_and_writes_the_whole_record_once(tmp_path: Path) -> None:
    clock, rec = Clock(), Journal(fail=1)
    changes = [_change(n) for n in range(6)]
    keeper = RecordKeeper(rec, {c.address: digest(n) for n, c in enumerate(changes)}, Masker(), clock=clock)
    keeper.load()
    keeper.note(changes[0], _ok(changes[0]), deleted=False)
    clock.now = 1.0
    keeper.note(changes[1], _ok(changes[1]), deleted=False)  # due: fails, kept for the next save
    assert keeper.error == "disk full" and rec.lines == []
    gone = _change("gone", Action.DELETE)
    keeper.note(gone, _ok(gone), deleted=True)
    clock.now = 2.0
    keeper.note(changes[2], _ok(changes[2]), deleted=False)
    assert rec.lines == [({"id-0": digest(0), "id-1": digest(1), "id-2": digest(2)}, ["gone"])]
    assert keeper.error is None
    keeper.note(changes[3], ActionResult(changes[3].address, Action.CREATE, Status.FAILED), deleted=False)
    clock.now = 3.0
    keeper.note(changes[4], _ok(changes[4]), deleted=False)
    assert rec.lines[1:] == [({"id-4": digest(4)}, [])], "only what changed since the last save"
    assert rec.wholes == []
    assert keeper.finish() is True
    assert rec.wholes == [{f"id-{n}": digest(n) for n in (0, 1, 2, 4)}]


def test_a_whole_record_backend_is_saved_no_more_often_than_its_save_time_allows() -> None:
    clock = Clock()

    class Slow:
        def __init__(self) -> None:
            self.saves = 0

        def load(self) -> dict[str, SecretDigest]:
            return {}

        def save(self, record: Mapping[str, SecretDigest]) -> None:
            self.saves += 1
            clock.now += 1.0  # a whole save of a large record over HTTP takes a second

    rec = Slow()
    changes = [_change(n) for n in range(40)]
    keeper = RecordKeeper(rec, {c.address: digest(n) for n, c in enumerate(changes)}, Masker(), clock=clock)
    keeper.load()
    for c in changes:
        clock.now += 0.5
        keeper.note(c, _ok(c), deleted=False)
    # 20 s of results plus its own saves: every 0.25 s would be ~40 saves; at most 10 % of the time is 2-3
    assert 1 <= rec.saves <= 4
    keeper.finish()
    assert keeper.saved == keeper.current and len(keeper.saved) == 40


# --- the Masker --------------------------------------------------------------------------------------------


def _naive(secrets: list[str], text: str) -> str:
    """The Masker before issue #16: each form replaced in turn, longest first."""
    for form in sorted({f for s in secrets for f in _masked_forms(s)}, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text


def test_the_masker_builds_nothing_for_empty_texts_and_scans_once_whatever_the_number_of_secrets() -> None:
    secrets = [f"https://hooks.slack.com/services/T0/B{n:05d}/not-a-real-secret-{n:05d}" for n in range(2000)]
    mask = Masker(*({"webhookUrl": s} for s in secrets))
    assert mask("") == "" and mask("ok") == "ok"
    assert mask._built is None, "an empty text must not cost the forms of every secret"
    n = 1234
    text = (f"400: {secrets[n]} / {base64.b64encode(secrets[n].encode()).decode()} / "
            f"{urllib.parse.quote(secrets[n], safe='')} / https://hooks.slack.com/services/T0/B01234/other")
    assert mask(text) == "400: *** / *** / *** / https://hooks.slack.com/services/T0/B01234/other"
    assert mask(text) == _naive([secrets[n]], text)


def test_overlapping_secrets_are_masked_as_their_union() -> None:
    a, b = "alpha-secret-1234", "1234-beta-secret"
    assert Masker(a, b)("x alpha-secret-1234-beta-secret y") == "x *** y"  # neither leaves a fragment
    assert Masker(a, b)(f"{a}{b}") == "******"  # touching, not overlapping: one mask each, as before


def test_the_masker_agrees_with_the_former_one_on_random_texts() -> None:
    """Parts are whole forms or noise no form can hold, joined by '|' (which no form holds): there,
    where no two occurrences partly overlap, the one scan gives exactly what the former Masker gave."""
    rng = random.Random(16)
    alphabet = "abcXYZ019 /:'\"&<>+=?%é€-_."
    for _ in range(200):
        secrets = ["".join(rng.choice(alphabet) for _ in range(rng.randint(4, 14))) for _ in range(rng.randint(1, 4))]
        forms = sorted({f for s in secrets for f in _masked_forms(s)})
        parts = [rng.choice(forms) if rng.random() < 0.5 else "".join(rng.choice("{}[]!") for _ in range(5))
                 for _ in range(rng.randint(1, 8))]
        text = "|".join(parts)
        got = Masker(*secrets)(text)
        assert not any(f in got for f in forms), (secrets, text, got)
        assert got == _naive(secrets, text), (secrets, text)


def test_the_percent_tables_are_urllib_quote() -> None:
    rng = random.Random(3)
    samples = ["".join(chr(b) for b in range(128)), "é€😀 +%/~", *("".join(
        rng.choice("azAZ09 /:%+~?&=é€😀\x00\x7f") for _ in range(rng.randint(0, 30))) for _ in range(300))]
    quoters = [lambda s: urllib.parse.quote(s, safe=""), urllib.parse.quote_plus, urllib.parse.quote]
    for text in samples:
        raw = text.encode("utf-8")
        for i, quote in enumerate(quoters):
            upper = "".join(_PERCENT_TABLES[2 * i][b] for b in raw)
            lower = "".join(_PERCENT_TABLES[2 * i + 1][b] for b in raw)
            assert upper == quote(text)
            assert lower == re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(text))


# --- the plan's read concurrency ---------------------------------------------------------------------------


def test_read_concurrency_is_a_bounded_setting() -> None:
    assert read_concurrency({}) == 4 and read_concurrency({"KCR_READ_CONCURRENCY": " 16 "}) == 16
    assert read_concurrency({"KCR_READ_CONCURRENCY": "32"}) == 32
    for bad in ("0", "33", "-1", "x", "1.5"):
        with pytest.raises(ConfigError, match=f"KCR_READ_CONCURRENCY={bad!r} is not a whole number from 1 to 32"):
            read_concurrency({"KCR_READ_CONCURRENCY": bad})


class Gate(httpx.BaseTransport):
    """Holds each list request until `parties` are in flight together: proves that many are read at
    once (a barrier, no sleeps), and counts the most ever in flight."""

    def __init__(self, inner: httpx.BaseTransport, parties: int) -> None:
        self.inner = inner
        self.barrier = threading.Barrier(parties, timeout=HANG_GUARD_S)
        self.lock = threading.Lock()
        self.in_flight = self.most = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/api/actions/connectors"):
            return self.inner.handle_request(request)
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            self.barrier.wait()
            return self.inner.handle_request(request)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.mark.parametrize("concurrency", [1, 8])
def test_the_plan_reads_as_many_lists_at_once_as_the_setting_says(concurrency: int) -> None:
    spaces = ["default", *(f"s{n:02d}" for n in range(1, 2 * concurrency))]
    sb = Sandbox.from_seed({"license": "platinum", "spaces": spaces})
    gate = Gate(sb.transport(), concurrency)
    client = KibanaClient(Connection.from_env({"KIBANA_URL": "http://kibana.test"}), transport=gate,
                          read_concurrency=concurrency)
    live = client.read_live(spaces)
    assert sorted(live.spaces) == sorted(spaces) and gate.most == concurrency


def test_kcr_refuses_a_bad_read_concurrency_before_reading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = write_repo(tmp_path, {"connectors/default/a.yaml": "connectors:\n  - {id: a, name: A, type: .server-log}\n"})
    sb = Sandbox.from_seed({"license": "platinum"})
    code, out, err = run_main(capsys, ["plan", "--dir", str(repo)], transport=sb.transport(),
                              env={"KIBANA_URL": "http://kibana.test", "KCR_READ_CONCURRENCY": "100"})
    assert code != 0 and "KCR_READ_CONCURRENCY='100'" in out + err


# --- apply at --parallelism 32 and 64 over loopback ---------------------------------------------------------

_REQUEST = re.compile(r"(GET|POST) (\S+) (?:-> (\d+) in|failed after) (\d+) ms")
TIMEOUT_S = 10  # KCR_TIMEOUT: a stalled request fails in 10 s instead of 60


@pytest.mark.slow
@pytest.mark.parametrize("parallelism", [32, 64])
def test_apply_at_high_parallelism_has_no_request_near_its_timeout(tmp_path: Path, parallelism: int) -> None:
    """Before issue #16 the client kept 20 idle connections, so at --parallelism 64 most requests
    closed theirs and the next opened another; that churn could overflow the sandbox's accept queue
    (128) and a POST waited for a retransmission, up to its whole timeout. Now each worker keeps its
    connection: the server sees at most one connection per worker (plus the plan's readers), and
    every request of the run answers well inside the timeout."""
    n = 4 * parallelism
    lines, env = ["connectors:"], {}
    for i in range(n):
        env[f"HOOK_{i}"] = f"https://hooks.slack.com/services/T0/B{i:04d}/scale-canary-{i:04d}"
        lines += [f"  - id: hook-{i}", f"    name: Hook {i}", "    type: .slack", "    secrets:",
                  f"      webhookUrl: ${{env:HOOK_{i}}}"]
    repo = write_repo(tmp_path / "repo", {"connectors/default/hooks.yaml": "\n".join(lines) + "\n"})
    sb = Sandbox.from_seed({"license": "platinum"})
    clients: set[tuple[str, int]] = set()
    with running(sb, clients=clients) as url:
        proc = kcr_process(repo, process_env(**env, KIBANA_URL=url, KCR_TIMEOUT=str(TIMEOUT_S), NO_COLOR="1",
                                             KCR_RECORD=str(tmp_path / "record.json")),
                           "apply", "--auto-approve", "--parallelism", str(parallelism), "-v",
                           secrets=list(env.values()))
        stored = sb.connectors_in("default")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert {c["id"] for c in stored} == {derive_connector_id("default", f"hook-{i}") for i in range(n)}
    requests = _REQUEST.findall(proc.stderr)
    posts = [r for r in requests if r[0] == "POST"]
    assert len(posts) == n and all(status == "200" for _, _, status, _ in posts), "a POST failed or was repeated"
    slowest = max(int(ms) for *_, ms in requests)
    assert slowest < TIMEOUT_S * 1000 / 2, f"a request took {slowest} ms of its {TIMEOUT_S} s"
    readers = 4
    assert len(clients) <= parallelism + readers, f"{len(clients)} connections for {parallelism} workers"
    record = FileBackend(tmp_path / "record.json").load()
    assert len(record) == n and not journal_path(tmp_path / "record.json").exists()
