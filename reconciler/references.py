"""Secret references: their syntax, with no I/O.

Inside any string of a connector's `secrets`:

    ${env:NAME}                    an environment variable
    ${file:PATH}                   a file's content, one trailing newline stripped; PATH is relative to
                                   the repository unless absolute; confined to the repository and the
                                   `file_roots` of kcr.yaml (after resolving symlinks)
    ${file:${env:NAME}}            the same, for the path variable NAME holds (a GitLab file variable);
                                   the one nesting there is
    ${vault:MOUNT/PATH#KEY}        a field of a HashiCorp Vault KV secret (the logical path, no `data/`)
    ${vault:MOUNT/PATH#KEY@N}      ... pinned to KV v2 version N (digits only)
    $${                            a literal "${" (the escape; a lone "$" needs none)

A reference may be the whole value or part of it (`https://hooks.example/${env:TOKEN}`). The schemes
are those of the backend registry (`reconciler.secret_backends`), and each backend checks its own
target's syntax, so validation offline, the planner and the resolver all read references one way.
Messages never repeat the string parsed: it may be a misplaced secret.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.secret_backends import BACKENDS
from reconciler.secret_backends.file import ENV_IN_FILE, env_target

_FILE_OF_ENV = "${file:" + ENV_IN_FILE  # `${file:${env:NAME}}`: the one reference inside another


class ReferenceSyntaxError(ValueError):
    """A string that is not a well-formed template. The message never repeats the string."""


@dataclass(frozen=True)
class Reference:
    scheme: str  # a key of the backend registry: "env", "file", "vault", ...
    target: str  # what follows "scheme:" (NAME, PATH, MOUNT/PATH#KEY[@N]); its backend reads it

    @property
    def text(self) -> str:
        return f"${{{self.scheme}:{self.target}}}"

    @property
    def env_name(self) -> str | None:
        """The environment variable this reference reads, for the exfiltration guard: NAME of
        `${env:NAME}` and of `${file:${env:NAME}}` (whose variable holds a path), else None."""
        if self.scheme == "env":
            return self.target
        return env_target(self.target) if self.scheme == "file" else None

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Template:
    """A string split into literal text and references."""

    parts: tuple[str | Reference, ...]
    references: tuple[Reference, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "references", tuple(p for p in self.parts if isinstance(p, Reference)))

    @property
    def is_whole(self) -> bool:
        return len(self.parts) == 1 and isinstance(self.parts[0], Reference)

    def render(self, values: Mapping[str, str]) -> str:
        """`values` maps each reference's text to its value."""
        return "".join(p if isinstance(p, str) else values[p.text] for p in self.parts)


def _one_of(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def reference_forms() -> str:
    """How references are written, from the registered backends: `${env:NAME}, ... or ${vault:...}`."""
    return _one_of([b.form for b in BACKENDS.values()])


def _reference(inner: str, column: int) -> Reference:
    scheme, colon, target = inner.partition(":")
    backend = BACKENDS.get(scheme) if colon else None
    if backend is None:
        forms = reference_forms()
        raise ReferenceSyntaxError(
            f"'${{' at column {column} does not start a reference: write {forms}; a literal '${{' is written '$${{'")
    problem = backend.problem(target, column)
    if problem:
        raise ReferenceSyntaxError(problem)
    return Reference(scheme, target)


@functools.cache
def parse_template(text: str) -> Template:
    """Split `text` into literals and references; `$${` is a literal `${`. Raises ReferenceSyntaxError.
    Memoised for the run (a Template is immutable): loading, checking, planning, resolving and applying
    each read every secret string, five parses per connector at 10k connectors' scale."""
    parts: list[str | Reference] = []
    buf: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        j = text.find("$", i)
        if j < 0:
            buf.append(text[i:])
            break
        buf.append(text[i:j])
        if text.startswith("$${", j):
            buf.append("${")
            i = j + 3
        elif text.startswith(_FILE_OF_ENV, j):
            # GitLab writes a file-type variable to a temporary file and puts its path in the variable
            end = text.find("}", j + len(_FILE_OF_ENV))
            if end < 0 or not text.startswith("}", end + 1):
                raise ReferenceSyntaxError(f"'${{file:${{env:' at column {j + 1} must be closed by '}}}}': "
                                           "write ${file:${env:NAME}}")
            literal = "".join(buf)
            if literal:
                parts.append(literal)
            buf = []
            parts.append(_reference(text[j + 2:end + 1], j + 1))
            i = end + 2
        elif text.startswith("${", j):
            end = text.find("}", j + 2)
            if end < 0:
                raise ReferenceSyntaxError(
                    f"'${{' at column {j + 1} is never closed by '}}'; a literal '${{' is written '$${{'")
            inner = text[j + 2:end]
            if "${" in inner or "{" in inner:
                raise ReferenceSyntaxError(f"references cannot be nested (column {j + 1}), except "
                                           "${file:${env:NAME}} (a file whose path a variable holds)")
            literal = "".join(buf)
            if literal:
                parts.append(literal)
            buf = []
            parts.append(_reference(inner, j + 1))
            i = end + 1
        else:
            buf.append("$")
            i = j + 1
    literal = "".join(buf)
    if literal or not parts:
        parts.append(literal)
    return Template(tuple(parts))


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside a JSON-like value, in order: where references may stand."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from strings_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings_in(v)


def references_in(value: Any) -> list[Reference]:
    """Every reference inside a JSON-like value, in order. Raises ReferenceSyntaxError."""
    return [ref for s in strings_in(value) for ref in parse_template(s).references]


def is_plaintext(value: Any) -> bool:
    """True for a value that would reach Kibana as written: a string with no reference, or a number or
    boolean. null is not a secret (optional secrets are sent as null); a malformed string is a syntax
    error, reported as such, not plaintext."""
    if value is None or isinstance(value, Mapping | list | tuple):
        return False
    if not isinstance(value, str):
        return True
    try:
        return not parse_template(value).references
    except ReferenceSyntaxError:
        return False
