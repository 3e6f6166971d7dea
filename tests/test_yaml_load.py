"""yamlload: positions, refusals, and that no input ends in anything but a Document or a YamlError."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import yamlload
from reconciler.model import Location
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


@pytest.mark.parametrize(
    ("data", "limits", "problem"),
    [
        (b"a: x\nb: [y]\n", {"max_nodes": 4}, None),
        (b"a: x\nb: [y]\n", {"max_nodes": 3}, ("the document expands to more than 3 values", 2, 5, "b[0]")),
        (b"a: x\nb: {c: y}\n", {"max_nodes": 3}, ("the document expands to more than 3 values", 2, 8, "b.c")),
        (b"a: x\nb: {c: y}\n", {"max_depth": 2}, None),
        (b"a: x\nb: {c: y}\n", {"max_depth": 1}, ("nesting deeper than 1 levels", 2, 8, "b.c")),
        (b"a: x\nb: {c: !!int 1}\n", {"max_depth": 1}, ("nesting deeper than 1 levels", 2, 8, "b.c")),
    ],
)
def test_bounds_hold_for_every_kind_of_leaf(data: bytes, limits: dict[str, int],
                                            problem: tuple[str, int, int, str] | None) -> None:
    """A string under a key is built without a call of its own: the node budget and the depth bound
    still count it, and name it, as they do any other value."""
    if problem is None:
        parse(data, "f.yaml", **limits)
        return
    with pytest.raises(YamlError) as info:
        parse(data, "f.yaml", **limits)
    p = info.value.problems[0]
    assert p.message.startswith(problem[0]) and (p.line, p.column, p.path) == problem[1:]


def test_duplicates_beside_merge_keys() -> None:
    doc = parse(b"base: &b {x: 1}\nuse:\n  <<: *b\n  x: 2\n", "f.yaml")  # a merged key is no duplicate
    assert doc.value["use"] == {"x": 2}
    with pytest.raises(YamlError) as info:
        parse(b"base: &b {x: 1}\nuse:\n  <<: *b\n  y: 3\n  x: 2\n  y: 4\n", "f.yaml")
    p = info.value.problems[0]
    assert (p.message, p.line, p.column, p.path) == \
        ("duplicate key 'y' (first defined at line 4, again at line 6)", 6, 3, "use.y")


def test_key_positions_are_a_mapping() -> None:
    doc = parse(b"a: 1\nb:\n  c: [1]\n  'd e': 2\n", "f.yaml")
    assert dict(doc.keys) == {"a": Location("f.yaml", 1, 1), "b": Location("f.yaml", 2, 1),
                              "b.c": Location("f.yaml", 3, 3), 'b["d e"]': Location("f.yaml", 4, 3)}
    assert doc.keys.get("b.c") == Location("f.yaml", 3, 3)
    assert doc.keys.get("b.c[0]") is None and "a" in doc.keys and len(doc.keys) == 4


def _tags(node: yaml.Node) -> list[str]:
    if isinstance(node, yaml.ScalarNode):
        return [node.tag]
    children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
    return [node.tag] + [tag for child in children for tag in _tags(child)]


scalar_text = st.sampled_from(["1", "-1", "+1", "0x1f", "0o17", "1_000", "1.5", ".5", "1e3", ".inf", "-.Inf",
                               ".nan", "yes", "No", "on", "OFF", "true", "~", "null", "", "2020-01-01",
                               "2001-12-14 21:59:43.10 -5", "<<", "=", "x", "1:2", "190:20:30"]) | st.text(
    alphabet="0123456789.-+_:eExXoOabnNuyYlLtT~ ", max_size=8)


@settings(max_examples=150, deadline=None)
@given(st.lists(scalar_text, min_size=1, max_size=6))
def test_tags_are_pyyaml_safe_loaders(scalars: list[str]) -> None:
    """The parser's tag resolution (remembered per value) tags every node as SafeLoader does, however
    often a value comes back."""
    text = "".join(f"- {s}\n- [{s}]\n- {{k{i}: {s}}}\n" for i, s in enumerate(scalars * 2))
    try:
        safe = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return
    ours = yaml.compose(text, Loader=yamlload._Loader)
    assert safe is not None and ours is not None and _tags(ours) == _tags(safe)
