"""The journal beside a local record of applied secrets (`<record>.journal`): what an apply changed
since the record was last written whole, one JSON line per save, appended and fsynced. Rewriting the
whole record on each save made a long apply's cost grow with the square of its size (10,000 creates:
≈115 ms a save, four saves a second); a line holds only the connectors that changed since the last
one, and the record is written whole once, at the end, which removes the journal.

Reading a record folds its journal in, line after line, so a run killed at any point leaves what it
had saved: the record as last written whole, plus every complete line. A line cut short by the kill
(no newline at its end) was never acknowledged and is ignored, and cut off before the next append.
Lines:

    {"set": {"<id>": {"hmacs": .., "vault_versions": ..}}, "del": ["<id>"], "key_check": ".."}
    {"reset": <the whole record document>}

A `reset` line is written before the record is replaced whole while a journal exists, so the journal
never contradicts the record it sits beside: if the kill falls between the new record and the removal
of the journal, replaying the journal over the new record gives that same record. A journal is only
created beside a record (an empty one is written first), so a journal without its record belongs to a
record someone deleted, and is ignored.

`key_check` is that of the key the line's fingerprints were made with (see `reconciler.state.record`).
The record folded in takes the last line's check; fingerprints written under another key are dropped
(left unknown), as a record written with another key is loaded."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from reconciler import jsondepth
from reconciler.errors import StateError
from reconciler.files import sync_directory
from reconciler.model import SecretDigest
from reconciler.state.record import Stored, parse_record, unkeyed

SUFFIX = ".journal"


def journal_path(record: Path) -> Path:
    return record.with_name(record.name + SUFFIX)


def changes_line(changed: Mapping[str, SecretDigest], removed: Collection[str], check: str | None) -> bytes:
    line: dict[str, Any] = {"set": {cid: digest.to_json() for cid, digest in changed.items()}}
    if removed:
        line["del"] = sorted(removed)
    if check:
        line["key_check"] = check
    return _encode(line)


def reset_line(doc: Mapping[str, Any]) -> bytes:
    return _encode({"reset": doc})


def _encode(line: Mapping[str, Any]) -> bytes:
    return (json.dumps(line, separators=(",", ":"), sort_keys=True) + "\n").encode()


def append(path: Path, line: bytes) -> None:
    """Appends one whole line and waits until it is on disk. A tail left without its newline by a
    killed writer is cut off first, so it cannot run into this line. Raises OSError."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and _torn_tail(path, size):
            with open(path, "rb") as handle:
                kept = handle.read().rfind(b"\n") + 1
            os.ftruncate(fd, kept)
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:  # the new file's name survives a power cut only once its directory is synced
        sync_directory(path.parent)


def _torn_tail(path: Path, size: int) -> bool:
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        return handle.read(1) != b"\n"


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def read_lines(path: Path, advice: str) -> list[Any]:
    """The journal's complete lines, decoded; [] when there is none. A line cut short (the last one,
    without its newline) is left out. Raises StateError for a complete line that is not JSON."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"{path}: cannot read the journal of the record of applied secrets ({exc.strerror})") from None
    complete = raw[: raw.rfind(b"\n") + 1]
    lines: list[Any] = []
    for number, text in enumerate(complete.splitlines(), start=1):
        try:
            lines.append(jsondepth.loads(text))
        except ValueError as exc:
            raise StateError(f"{path}, line {number}: the journal of the record of applied secrets is corrupt "
                             f"({exc}); {advice}") from None
    return lines


def fold(stored: Stored, lines: list[Any], where: str, advice: str) -> Stored:
    """The record with its journal's lines applied in order (see the module's docstring)."""
    entries: dict[str, tuple[SecretDigest, str | None]] = {
        cid: (d, stored.key_check) for cid, d in stored.record.items()}
    owner, check = stored.owner, stored.key_check
    for number, line in enumerate(lines, start=1):
        at = f"{where}, line {number}"
        if not isinstance(line, Mapping):
            raise StateError(f"{at}: a journal line is not a JSON object; {advice}")
        if "reset" in line:
            record, owner, check = parse_record(line["reset"], at, advice)
            entries = {cid: (d, check) for cid, d in record.items()}
            continue
        line_check = line.get("key_check")
        if line_check is not None and not isinstance(line_check, str):
            raise StateError(f"{at}: `key_check` is not a key check value; {advice}")
        removed = line.get("del", [])
        if not isinstance(removed, list) or not all(isinstance(cid, str) for cid in removed):
            raise StateError(f"{at}: `del` is not a list of connector ids; {advice}")
        changed = parse_record({"format": 1, "connectors": line.get("set", {})}, at, advice).record
        for cid in removed:
            entries.pop(cid, None)
        entries.update((cid, (d, line_check)) for cid, d in changed.items())
        check = line_check or check
    record = {cid: d for cid, (d, written) in entries.items() if written is None or check is None or written == check}
    record.update(unkeyed({cid: d for cid, (d, written) in entries.items() if cid not in record}))
    return Stored(record, owner, check)
