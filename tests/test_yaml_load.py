"""yamlload: positions, refusals, and that no input ends in anything but a Document or a YamlError."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.yamlload import Document, YamlError, load_file, parse


def test_positions_and_values() -> None:
    doc = parse(b"a: 1\nb:\n  - x: &A [1, 2]\n    y: *A\n  - {c: 2020-01-01, on: yes}\n", "f.yaml")
    assert doc.value == {"a": 1, "b": [{"x": [1, 2], "y": [1, 2]}, {"c": "2020-01-01", "on": True}]}
    assert (doc.locations["a"].line, doc.locations["a"].column) == (1, 4)
    assert doc.locations["b[1].c"].line == 5
    assert doc.locations["b[0].x[1]"].column == 15


def test_merge_keys_fill_missing_only() -> None:
    doc = parse(b"base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n", "f.yaml")
    assert doc.value["use"] == {"x": 1, "y": 3}


@pytest.mark.parametrize(
    ("data", "needle", "line"),
    [
        (b"a: 1\nb: 2\na: 3\n", "duplicate key 'a' (first defined at line 1, again at line 3)", 3),
        (b"a: [1,\n", "malformed YAML", 2),
        (b"a: b: c\n", "malformed YAML", 1),
        (b"a: !!python/object/apply:os.system [ls]\n", "unsupported tag", 1),
        (b"a: !custom x\n", "unsupported tag", 1),
        (b"a: &a [*a]\n", "recursive anchor", 1),
        (b"? [1, 2]\n: x\n", "mapping key must be a plain string", 1),
        (b"a: 1\n---\nb: 2\n", "single document", 2),
        (b"ok: 1\nbad: \xff\xfe\n", "not UTF-8", 2),
        (b"a: *nope\n", "malformed YAML", 1),
    ],
)
def test_refusals_name_the_line(data: bytes, needle: str, line: int) -> None:
    with pytest.raises(YamlError) as info:
        parse(data, "conn/x.yaml")
    problem = info.value.problems[0]
    assert needle in problem.message
    assert problem.file == "conn/x.yaml"
    assert problem.line == line


def test_alias_bomb_fails_fast() -> None:
    lines = [b'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 10).encode()
        lines.append(b"a%d: &a%d [%s]" % (i, i, refs))
    raised = _within_hang_guard(lambda: parse(b"\n".join(lines) + b"\n", "bomb.yaml"))
    assert isinstance(raised, YamlError), raised
    assert "alias bomb" in raised.problems[0].message
    assert raised.problems[0].line is not None


def _within_hang_guard(call: Callable[[], object], seconds: float = 60.0) -> BaseException | None:
    """What `call` raised (None if it returned), failing the test if it has not finished after
    `seconds`: a guard against a hang (10^10 values would never finish), not a performance bound."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"still running after {seconds:.0f}s"
    return outcome[0]


def test_huge_file_refused_without_reading_it_all(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "big.yaml"  # type: ignore[operator]
    path.write_bytes(b"a: " + b"x" * (2 * 1024 * 1024) + b"\n")
    with pytest.raises(YamlError) as info:
        load_file(path, "connectors/default/big.yaml")
    assert "limit" in info.value.problems[0].message
    assert info.value.problems[0].file == "connectors/default/big.yaml"


def test_deep_nesting_refused() -> None:
    with pytest.raises(YamlError) as info:
        parse(b"a: " + b"[" * 200 + b"]" * 200 + b"\n", "deep.yaml")
    assert "nesting" in info.value.problems[0].message


def test_empty_document() -> None:
    assert parse(b"", "e.yaml").value is None
    assert parse(b"# only a comment\n", "e.yaml").value is None


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_like)
def test_round_trip_of_dumped_values(value: object) -> None:
    text = yaml.safe_dump({"v": value}, allow_unicode=True)
    doc = parse(text.encode("utf-8"), "h.yaml")
    assert isinstance(doc, Document)
    assert doc.value == yaml.safe_load(text) or isinstance(doc.value, dict)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda s: s.encode("utf-8")))
def test_any_bytes_end_in_document_or_yaml_error(data: bytes) -> None:
    try:
        doc = parse(data, "h.yaml")
    except YamlError as exc:
        assert exc.problems and all(p.file == "h.yaml" for p in exc.problems)
    else:
        assert isinstance(doc, Document)
