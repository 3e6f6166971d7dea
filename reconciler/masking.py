"""Secret values kept out of every text kcr prints: `Secret`, a value that prints as `***`, and
`Masker`, which replaces a value (and each spelling an echoing server could give it) in text from
outside. Separate from resolution because the Kibana client, the applier and the Vault login all
clean text with it, and none of them should depend on how a value was found."""

from __future__ import annotations

import base64
import bisect
import hmac
import html
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

MASK = "***"
MIN_MASKED_LEN = 4  # shorter values would garble ordinary words; no real credential is that short


class Secret:
    """A secret value. It prints as *** everywhere (repr, str, format, logging); `reveal()` is the only
    way to the text, and only the HTTP body to Kibana should need it."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Secret is immutable")

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


def _html_forms(text: str) -> Iterator[str]:
    """An HTML error page (a proxy's, a framework's) quotes what it received escaped, in one of the
    spellings of the apostrophe."""
    escaped = html.escape(text, quote=True)
    yield escaped
    yield escaped.replace("&#x27;", "&#39;")
    yield html.escape(text, quote=False)
    if "/" in text:  # some escapers (OWASP's) also write the slash as an entity
        yield escaped.replace("/", "&#x2F;")
        yield escaped.replace("/", "&#47;")


def _percent_table(safe: bytes, plus: bool, digits: str) -> tuple[str, ...]:
    """What each byte becomes in urllib's `quote` (`quote_plus` when `plus`), with hex digits in either
    case: a table, since building every form of every secret of a large apply with `quote` itself
    costs more than the whole apply (tests/test_apply_scale.py compares the two on every byte)."""
    kept = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~" + safe)
    return tuple(chr(b) if b in kept else "+" if plus and b == 0x20 else "%" + digits[b >> 4] + digits[b & 15]
                 for b in range(256))


# quote(safe=""), quote_plus, quote (safe="/"), each with upper- then lower-case hex digits
_PERCENT_TABLES = tuple(_percent_table(safe, plus, digits) for safe, plus in ((b"", False), (b"", True), (b"/", False))
                        for digits in ("0123456789ABCDEF", "0123456789abcdef"))


def _url_forms(text: str) -> Iterator[str]:
    """A server that repeats a URL or a form field shows the value percent-encoded, in either case
    of hex digit."""
    raw = text.encode("utf-8")
    for table in _PERCENT_TABLES:
        yield "".join([table[b] for b in raw])


def _base64_forms(text: str) -> Iterator[str]:
    """Base64 of the value, standard and URL-safe, padded and not, and the characters of the value's
    base64 wherever it starts within a longer encoded text (Basic auth's `user:secret`, a token in a
    JWT): at each of the three byte offsets, only the characters that no neighbouring byte touches."""
    raw = text.encode("utf-8")
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode("ascii")
        yield whole
        yield whole.rstrip("=")
        for shift, skip in ((0, 0), (1, 2), (2, 3)):
            encoded = encode(b"\0" * shift + raw).decode("ascii")
            yield encoded[skip:(len(raw) + shift) * 4 // 3]


def _text_forms(text: str) -> Iterator[str]:
    # A server that quotes the JSON it received shows the escaped forms, and an error page or a proxy
    # may encode that quote again: each encoding applies to the raw and to the JSON-escaped spellings.
    escaped = json.dumps(text)[1:-1]
    spellings = (text, escaped, json.dumps(text, ensure_ascii=False)[1:-1], escaped.replace("/", "\\/"))
    for plain in dict.fromkeys(spellings):  # the last: PHP's and Java's JSON encoders escape "/" as "\/"
        yield plain
        yield from _html_forms(plain)
        yield from _url_forms(plain)
        yield from _base64_forms(plain)


def _masked_forms(value: Any) -> Iterator[str]:
    """Every spelling of a secret that an echoing server could print. The minimum length holds for
    each form too: a short fragment (a few base64 characters) would garble ordinary output."""
    if isinstance(value, Mapping | list | tuple):
        for item in value.values() if isinstance(value, Mapping) else value:
            yield from _masked_forms(item)
        return
    text = value.reveal() if isinstance(value, Secret) else value
    if isinstance(text, str):
        if len(text) >= MIN_MASKED_LEN:
            yield from (form for form in _text_forms(text) if len(form) >= MIN_MASKED_LEN)
    elif isinstance(text, int | float) and not isinstance(text, bool) and len(str(text)) >= MIN_MASKED_LEN:
        yield str(text)


@dataclass(frozen=True)
class _Forms:
    """Every form, sorted, with the set of their first MIN_MASKED_LEN characters: where a text holds
    none of those, no form starts."""

    sorted: tuple[str, ...]
    heads: frozenset[str]
    longest: int

    @classmethod
    def of(cls, payloads: tuple[Any, ...]) -> _Forms:
        forms = sorted({f for p in payloads for f in _masked_forms(p)})
        return cls(tuple(forms), frozenset(f[:MIN_MASKED_LEN] for f in forms), max(map(len, forms), default=0))

    def longest_at(self, text: str, i: int) -> int:
        """The length of the longest form that `text` holds at `i`, 0 when none does. By bisection:
        the greatest form not above the text's next characters is either a prefix of them, or shares
        with them a prefix that bounds every form that is (all forms between a prefix and the text
        start with that prefix), so each step shortens what is searched."""
        hi = min(len(text) - i, self.longest)
        while hi >= MIN_MASKED_LEN:
            wanted = text[i:i + hi]
            j = bisect.bisect_right(self.sorted, wanted)
            if j == 0:
                return 0
            form = self.sorted[j - 1]
            if wanted.startswith(form):
                return len(form)
            common = 0
            for a, b in zip(form, wanted, strict=False):
                if a != b:
                    break
                common += 1
            hi = common
        return 0


class Masker:
    """Replaces every resolved secret value (and its JSON-, HTML-, URL- and base64-encoded forms) in a
    text with `***`. The one place text from outside — Kibana's and Vault's messages, exceptions — is
    cleaned before it is reported, for the client, the applier and the Vault login alike.

    Built for an apply of many thousand secrets, where most texts are empty: the forms are computed
    on the first non-empty text, not when the Masker is made (a create builds one for its request),
    and a text is scanned once for all of them, whatever their number and however many characters
    they share (URLs of one host): at each position, the longest form there is found by bisection in
    the sorted forms. Every occurrence of every form is masked; where occurrences overlap (an escaped
    form holds the raw one; two secrets share characters) their union becomes one `***`, so no
    character of any occurrence survives."""

    def __init__(self, *payloads: Any) -> None:
        self.payloads = payloads  # to build a Masker that covers more
        self._built: _Forms | None = None
        self._building = threading.Lock()

    def _forms(self) -> _Forms:
        built = self._built
        if built is None:
            with self._building:
                built = self._built
                if built is None:
                    built = self._built = _Forms.of(self.payloads)
        return built

    def __call__(self, text: str) -> str:
        if len(text) < MIN_MASKED_LEN:  # empty (most results) or too short to hold any form
            return text
        forms = self._forms()
        if not forms.heads:
            return text
        heads = forms.heads
        spans: list[list[int]] = []  # the union of every occurrence, as [start, end), in order
        for i in range(len(text) - MIN_MASKED_LEN + 1):
            if text[i:i + MIN_MASKED_LEN] not in heads:
                continue
            length = forms.longest_at(text, i)
            if not length:
                continue
            if spans and i < spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], i + length)
            else:
                spans.append([i, i + length])
        if not spans:
            return text
        out: list[str] = []
        at = 0
        for start, end in spans:
            out += (text[at:start], MASK)
            at = end
        out.append(text[at:])
        return "".join(out)
