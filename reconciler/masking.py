"""Secret values kept out of every text kcr prints: `Secret`, a value that prints as `***`, and
`Masker`, which replaces a value (and each spelling an echoing server could give it) in text from
outside. Separate from resolution because the Kibana client, the applier and the Vault login all
clean text with it, and none of them should depend on how a value was found."""

from __future__ import annotations

import base64
import hmac
import html
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_MASKED_LEN = 4  # shorter values would garble ordinary words; no real credential is that short
_PERCENT = re.compile(r"%[0-9A-F]{2}")


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


def _url_forms(text: str) -> Iterator[str]:
    """A server that repeats a URL or a form field shows the value percent-encoded, in either case
    of hex digit."""
    for encoded in (quote(text, safe=""), quote_plus(text), quote(text)):
        yield encoded
        yield _PERCENT.sub(lambda m: m.group(0).lower(), encoded)


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


class Masker:
    """Replaces every resolved secret value (and its JSON-, HTML-, URL- and base64-encoded forms) in a
    text with `***`. The one place text from outside — Kibana's and Vault's messages, exceptions — is
    cleaned before it is reported, for the client, the applier and the Vault login alike."""

    def __init__(self, *payloads: Any) -> None:
        self.payloads = payloads  # to build a Masker that covers more
        forms = {f for p in payloads for f in _masked_forms(p)}
        self._forms = sorted(forms, key=len, reverse=True)  # longest first: an escaped form holds the raw one

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text
