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
_SCALARS = frozenset({str, int, float, bool, type(None)})  # never a list or a dict, whatever they hold


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
    safe on any input. It goes one level at a time, keeping the lists and dicts of the next: a
    Kibana answer is thousands of small objects, so what it costs is the look at each scalar, which
    the exact scalar types of json.loads settle with one set lookup (anything else gets isinstance)."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 1
    while level:
        if depth > max_depth:
            raise TooDeep(max_depth)
        below: list[Any] = []
        for item in level:
            for child in item.values() if isinstance(item, dict) else item:
                if type(child) not in _SCALARS and isinstance(child, dict | list):
                    below.append(child)
        level, depth = below, depth + 1


__all__ = ["MAX_DEPTH", "TooDeep", "check_depth", "loads"]
