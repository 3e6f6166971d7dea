"""URLs, hosts and blank strings as Kibana's JavaScript reads them, not as Python's would.

Kibana decides with `new URL()`, `String.prototype.trim` and its allowed-hosts list; Python's urlsplit
and str.strip accept and strip other things. Kept apart from the per-type rules (`type_rules`) that
use them, and from the sandbox, which uses the same trim for the blank strings of a request body."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import SplitResult, urlsplit

# ECMAScript WhiteSpace + LineTerminator: what `String.prototype.trim` strips (Python's str.strip also
# strips U+001C-U+001F and U+0085, and keeps U+FEFF).
JS_WHITESPACE = ("\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                 "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")
_C0_AND_SPACE = "".join(map(chr, range(0x21)))  # what the WHATWG URL parser trims
_FORBIDDEN_HOST = re.compile(r"[\s<>^|%\\\"{}]")
_BARE_HOST = re.compile(r"^[A-Za-z0-9._-]+$|^\[?[0-9A-Fa-f:.]+\]?$")


def js_trim(value: str) -> str:
    return value.strip(JS_WHITESPACE)


def js_url(value: str) -> SplitResult:
    """What WHATWG `new URL(value)` accepts, roughly: a scheme; for http(s) a host without forbidden
    code points and a port in range. Raises ValueError with Node's `err.toString()`."""
    invalid = ValueError(f"TypeError: Invalid URL: {value}")
    try:
        parts = urlsplit(value.strip(_C0_AND_SPACE))
        _ = parts.port
    except ValueError:
        raise invalid from None
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*$", parts.scheme or ""):
        raise invalid
    if parts.scheme.lower() in ("http", "https") and (not parts.hostname or _FORBIDDEN_HOST.search(parts.hostname)):
        raise invalid
    return parts


def host_of(value: str) -> str | None:
    """The host of a URL, or of a bare host name; None when there is none. Never the raw value of
    something that is not a host name: for a secret that would echo the secret into a message."""
    if "://" not in value:
        bare = js_trim(value).lower()
        return bare if _BARE_HOST.match(bare) else None
    try:
        return (js_url(value).hostname or "").lower() or None
    except ValueError:
        return None


def host_allowed(value: str, allowed_hosts: Sequence[str]) -> bool:
    if "*" in allowed_hosts:
        return True
    host = host_of(value)
    return host is not None and host in {h.lower() for h in allowed_hosts}
