"""YAML read safely, with a position for every node.

PyYAML only *composes* here (text -> node graph, with aliases as shared nodes); the walk that turns
nodes into Python values is ours, so that:
- only JSON-like values come out (null, bool, int, float, str, list, dict with string keys);
  timestamps stay the text the user wrote, any other tag is refused;
- duplicate keys are refused, naming both lines;
- every alias expansion counts against a node budget, so an alias bomb ("billion laughs") stops
  after `max_nodes` visited nodes instead of eating memory, and a recursive alias is refused;
- each value's position is kept under its field path ("connectors[2].config.apiUrl"), and each key's
  own position too, so an unknown key is reported on its line, not on its mapping's;
- a quoted string left open is reported where it opens, not where the parser gave up.
Every failure is a `YamlError` carrying `errors.Problem`s, never another exception.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.errors import Problem, ReconcilerError
from reconciler.model import Location

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64

_Parser: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # same nodes, faster
_RESOLVER = yaml.resolver.Resolver()  # the one SafeLoader mixes in


@functools.lru_cache(maxsize=4096)
def _implicit_tag(kind: type[yaml.Node], value: str | None, implicit: bool | tuple[bool, bool]) -> str:
    """SafeLoader's tag for an untagged node. It depends on these arguments alone (kcr adds no path
    resolvers), and a file repeats its keys and many values, so each is resolved by the regular
    expressions once; PyYAML would call back into them for every scalar of every file. The cache holds
    at most 4096 strings, which the parsed documents hold anyway."""
    tag: str = _RESOLVER.resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
    return tag


class _Loader(_Parser):  # type: ignore[misc,valid-type]
    resolve = staticmethod(_implicit_tag)  # called by the parser with the node's kind, text and implicit flags

    # The parser reports each step down and up for path resolvers, which kcr has none of.
    def descend_resolver(self, current_node: yaml.Node | None, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_SCALARS = {_NULL, _BOOL, _INT, _FLOAT}
_Scalar = yaml.ScalarNode


class YamlError(ReconcilerError):
    """A file that cannot be read as kcr's YAML; `problems` say where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in problems))


_PLAIN_KEY = re.compile(r"[-_\w]+")  # each character alphanumeric (str.isalnum), '-' or '_'


@dataclass(frozen=True)
class Document:
    value: Any
    locations: Mapping[str, Location]  # field path ("" is the document) -> where its value starts
    keys: Mapping[str, Location] = field(default_factory=dict)  # field path -> where its key is written


class _KeyPositions(Mapping[str, Location]):
    """Where each key is written, made a Location only when asked: only a problem about a key (an
    unknown one) asks, and the parser's marks exist anyway, so the keys of a clean file cost nothing."""

    def __init__(self, file: str, marks: dict[str, yaml.Mark]) -> None:
        self._file = file
        self._marks = marks

    def __getitem__(self, path: str) -> Location:
        mark = self._marks[path]
        return Location(self._file, mark.line + 1, mark.column + 1)

    def __iter__(self) -> Iterator[str]:
        return iter(self._marks)

    def __len__(self) -> int:
        return len(self._marks)


def join_path(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    step = _key_step(key)
    return base + step if base else step.removeprefix(".")


@functools.lru_cache(maxsize=4096)
def _key_step(key: str) -> str:
    """How `key` extends a path: `.key`, or `["key"]` when it is not a plain name. Files repeat the
    same few keys thousands of times, so each is looked at once."""
    if key.isidentifier() or (key and _PLAIN_KEY.fullmatch(key) is not None):
        return f".{key}"
    quoted = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'["{quoted}"]'


class _Builder:
    def __init__(self, file: str, max_nodes: int, max_depth: int) -> None:
        self.file = file
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.visited = 0
        self.locations: dict[str, Location] = {}
        self.keys: dict[str, yaml.Mark] = {}
        self.active: set[int] = set()  # nodes being built: an alias to one of them is a cycle
        self._scalars = yaml.constructor.SafeConstructor()

    def loc(self, node: yaml.Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def fail(self, node: yaml.Node, message: str, path: str) -> YamlError:
        where = self.loc(node)
        return YamlError([Problem(self.file, message, where.line, where.column, path or None)])

    def build(self, node: yaml.Node, path: str, depth: int) -> Any:
        self.visited += 1
        if self.visited > self.max_nodes:
            raise self.fail(node, f"the document expands to more than {self.max_nodes} values (an alias bomb?); "
                            "anchors and aliases may not expand beyond that bound", path)
        if depth > self.max_depth:
            raise self.fail(node, f"nesting deeper than {self.max_depth} levels", path)
        if path not in self.locations:
            self.locations[path] = self.loc(node)
        if isinstance(node, _Scalar):  # never in `active`, which holds only collections
            return self.scalar(node, path)
        if id(node) in self.active:
            raise self.fail(node, "an alias refers to a value that contains it (recursive anchor)", path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ:
                    raise self.fail(node, f"unsupported tag {node.tag!r}", path)
                return [self.build(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                if node.tag != _MAP:
                    raise self.fail(node, f"unsupported tag {node.tag!r}", path)
                return self.mapping(node, path, depth)
        finally:
            self.active.discard(id(node))
        raise self.fail(node, "unsupported YAML node", path)  # pragma: no cover - composer makes only these

    def scalar(self, node: yaml.ScalarNode, path: str) -> Any:
        if node.tag == _STR or node.tag == _TIMESTAMP:
            return str(node.value)  # a date stays the text written: JSON has no date type
        if node.tag in _SCALARS:
            return self._scalars.construct_object(node, deep=True)
        raise self.fail(node, f"unsupported tag {node.tag!r}: only plain YAML values are read", path)

    def mapping(self, node: yaml.MappingNode, path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges: list[yaml.Node] = []
        keys, locations, file = self.keys, self.locations, self.file
        for key_node, value_node in node.value:
            if not isinstance(key_node, _Scalar):
                raise self.fail(key_node, "a mapping key must be a plain string", path)
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            key = str(key_node.value)  # as written: `on:` stays "on", `1:` stays "1"
            sub = join_path(path, key)
            if key in out:  # merged keys are added below, so `out` holds the keys written so far
                first = next(k for k, _ in node.value if k.tag != _MERGE and str(k.value) == key)
                raise self.fail(key_node, f"duplicate key {key!r} (first defined at line {first.start_mark.line + 1}, "
                                f"again at line {key_node.start_mark.line + 1})", sub)
            keys.setdefault(sub, key_node.start_mark)
            if value_node.tag == _STR and isinstance(value_node, _Scalar) and self.visited < self.max_nodes \
                    and depth < self.max_depth:  # the common leaf, as build() would take it, without the call
                self.visited += 1
                if sub not in locations:
                    mark = value_node.start_mark
                    locations[sub] = Location(file, mark.line + 1, mark.column + 1)
                out[key] = str(value_node.value)
            else:
                out[key] = self.build(value_node, sub, depth + 1)
        for value_node in merges:  # `<<: *base` fills in keys not written out, as YAML 1.1 says
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                merged = self.build(source, path, depth + 1)
                if not isinstance(merged, dict):
                    raise self.fail(source, "a merge key (<<) takes a mapping or a list of mappings", path)
                for key, value in merged.items():
                    out.setdefault(key, value)
        return out


_QUOTED = "while scanning a quoted scalar"


def _open_quote(text: str, exc: yaml.MarkedYAMLError) -> Problem | None:
    """Where a quote left open starts. At the end of the file PyYAML says where it opened; when a later
    quote closed it, the error comes lines below, so the last quoted string spanning lines before the
    error is the likely culprit and is named with the parser's own complaint."""
    def opened(mark: yaml.Mark) -> str:
        quote = text[mark.index] if mark.index < len(text) and text[mark.index] in "'\"" else "quote"
        return f"the quoted string opened here ({quote})"

    if exc.context == _QUOTED and exc.context_mark is not None:
        mark = exc.context_mark
        return Problem("", f"malformed YAML: {opened(mark)} is never closed: the file ends before its closing "
                       "quote", mark.line + 1, mark.column + 1)
    if exc.problem_mark is None:
        return None
    suspect: yaml.Mark | None = None
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if token.start_mark.index >= exc.problem_mark.index:
                break
            if isinstance(token, yaml.ScalarToken) and token.style in ("'", '"') \
                    and token.end_mark.line > token.start_mark.line:
                suspect = token.start_mark
    except yaml.YAMLError:
        pass
    if suspect is None:
        return None
    said = " ".join(part for part in (exc.context, exc.problem) if part)
    return Problem("", f"malformed YAML: {opened(suspect)} runs on to line {exc.problem_mark.line + 1}, where the "
                   f"parser stops ({said}): is its closing quote missing?", suspect.line + 1, suspect.column + 1)


def _mark_problem(file: str, exc: yaml.YAMLError, text: str = "") -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        quoted = _open_quote(text, exc)
        if quoted is not None:
            return Problem(file, quoted.message, quoted.line, quoted.column)
        mark = exc.problem_mark or exc.context_mark
        text = " ".join(part for part in (exc.context, exc.problem) if part) or "malformed YAML"
        if mark is not None:
            return Problem(file, f"malformed YAML: {text}", mark.line + 1, mark.column + 1)
        return Problem(file, f"malformed YAML: {text}")
    return Problem(file, f"malformed YAML: {exc}")


def parse(data: bytes, file: str, *, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES,
          max_depth: int = MAX_DEPTH) -> Document:
    """Bytes of one YAML document -> its value and positions. Raises YamlError."""
    if len(data) > max_bytes:
        raise YamlError([Problem(file, f"file is {len(data)} bytes, over the {max_bytes}-byte limit; "
                                 "split it into several files")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise YamlError([Problem(file, f"not UTF-8 text (invalid byte at offset {exc.start}); save it as UTF-8",
                                 line, column)]) from None
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise YamlError([_mark_problem(file, exc, text)]) from None
    except RecursionError:
        raise YamlError([Problem(file, f"nesting deeper than {max_depth} levels")]) from None
    if node is None:
        return Document(None, {"": Location(file, 1, 1)})
    builder = _Builder(file, max_nodes, max_depth)
    value = builder.build(node, "", 0)
    return Document(value, builder.locations, _KeyPositions(file, builder.keys))


def load_file(path: Path, file: str, *, max_bytes: int = MAX_BYTES) -> Document:
    """Read and parse `path`; `file` is how problems name it (relative to the repository)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)  # never more: a huge file is refused without reading it all
    except OSError as exc:
        raise YamlError([Problem(file, f"cannot read file: {exc.strerror or exc}")]) from None
    if len(data) > max_bytes:
        raise YamlError([Problem(file, f"file is over the {max_bytes}-byte limit; split it into several files")])
    return parse(data, file, max_bytes=max_bytes)
