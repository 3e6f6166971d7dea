"""The order Kibana lists connectors in: JS `localeCompare` on names, which is ICU root collation.

Its own module because it is a self-contained approximation with its own tests, unrelated to what the
routes check."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# ICU root collation's order for ASCII punctuation and symbols (the "variable" characters, then
# symbols, then currency), all before digits and letters.
_ICU_PUNCTUATION = "_-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$"
_PUNCT_WEIGHT = {ch: i for i, ch in enumerate(_ICU_PUNCTUATION)}
_OTHER_SYMBOL = len(_ICU_PUNCTUATION) - 1  # unlisted symbols: after `~`, before `$`


@lru_cache(maxsize=65536)
def collation_key(name: str) -> tuple[tuple[tuple[int, int | str], ...], tuple[str, ...], tuple[int, ...]]:
    """An approximation of JS `localeCompare` (ICU root collation) as a three-level key, compared level
    by level like ICU: primary = base characters (whitespace < punctuation < symbols < digits < letters,
    letters without case or accents), secondary = accents (resume < résumé), tertiary = case
    (lowercase first: resume < Resume). Approximations: accents rank by code point (ICU puts acute
    before grave), non-ASCII symbols after `~`, and scripts other than Latin by code point."""
    primary: list[tuple[int, int | str]] = []
    secondary: list[str] = []
    tertiary: list[int] = []
    for ch in unicodedata.normalize("NFD", name):
        if unicodedata.combining(ch):
            if secondary:
                secondary[-1] += ch  # the accent belongs to the base character before it
            continue
        weight: tuple[int, int | str]
        if ch.isspace():
            weight = (0, ord(ch))
        elif ch.isdigit():
            weight = (3, unicodedata.digit(ch, 0))
        elif ch.isalpha():
            weight = (4, ch.casefold())
        else:
            weight = (1, _PUNCT_WEIGHT.get(ch, _OTHER_SYMBOL) * 0x110000 + ord(ch))
            if ch == "$":
                weight = (2, ord(ch))
        primary.append(weight)
        secondary.append("")
        tertiary.append(1 if ch.isupper() else 0)
    return tuple(primary), tuple(secondary), tuple(tertiary)
