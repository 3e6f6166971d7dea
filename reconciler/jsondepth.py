"""JSON from outside kcr (a saved plan, the record of applied secrets, the state backend, Kibana's
answers) decoded with a bound on nesting. Python's decoder gives up on very deep input with a
RecursionError, and moderately deep input that it accepts can still exhaust the stack later, in the
recursive code that normalises, fingerprints or validates it. The depth is therefore checked here,
without recursion, before any of that code sees the value; callers turn TooDeep into their own
typed error.

MAX_DEPTH leaves room for what kcr itself writes: YAML is bounded at 64 levels (yamlload), and a
plan or an answer wraps a connector's config in a few levels of its own.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 100
# A \uD800-\uDFFF escape: usually half of a valid pair, rarely a lone surrogate; only then is the
# whole value checked, so ordinary answers pay one scan of their bytes.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class NotUnicode(ValueError):
    """The document decodes to a string holding a lone surrogate, which no UTF-8 file can hold: kcr
    could neither write it to a plan nor print it."""

    def __init__(self) -> None:
        super().__init__("holding a string that is not valid Unicode (a lone surrogate escape)")


class TooDeep(ValueError):
    """The document nests arrays/objects deeper than the bound."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"nested deeper than {limit} levels")
        self.limit = limit


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads, raising TooDeep for a document nested deeper than `max_depth` (a top-level `[]`
    or `{}` is one level), NotUnicode for one holding a lone surrogate, and ValueError
    (json.JSONDecodeError) for one that is not JSON."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise TooDeep(max_depth) from None
    check_depth(value, max_depth)
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise NotUnicode() from None
    return value


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raises TooDeep when `value` nests lists/dicts deeper than `max_depth`; iterative, so it is
    safe on any input."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise TooDeep(max_depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


__all__ = ["MAX_DEPTH", "TooDeep", "check_depth", "loads"]
