"""Secret references and their resolution.

Syntax (inside any string of a connector's `secrets`):

    ${env:NAME}                    an environment variable
    ${file:PATH}                   a file's content, one trailing newline stripped; PATH is relative to
                                   the repository unless absolute; confined to the repository and the
                                   `file_roots` of kcr.yaml (after resolving symlinks)
    ${vault:MOUNT/PATH#KEY}        a field of a HashiCorp Vault KV secret (the logical path, no `data/`)
    ${vault:MOUNT/PATH#KEY@N}      ... pinned to KV v2 version N (digits only)
    $${                            a literal "${" (the escape; a lone "$" needs none)

A reference may be the whole value or part of it (`https://hooks.example/${env:TOKEN}`).

Values live in `Secret` (masked in repr/str/format, hence in logs) and `ResolvedSecrets`; the plain
text leaves only through `Secret.reveal()` / `ResolvedSecrets.payload()`, for the HTTP body to Kibana.
Every error names the reference and the connector that uses it, never a value.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import html
import json
import re
import ssl
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx

from reconciler.errors import SecretError
from reconciler.model import SecretDigest, Settings

SCHEMES = ("env", "file", "vault")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # used with fullmatch: "$" would let "A\n" through
_DIGITS = re.compile(r"[0-9]+")
MAX_FILE_BYTES = 1024 * 1024
_PRIVATE_DIRS = frozenset({".git", ".kcr"})
VAULT_WORKERS = 8
DEFAULT_JWT_VAR = "VAULT_ID_TOKEN"
JWT_VAR_SETTING = "KCR_VAULT_JWT_VAR"  # names the variable holding the JWT, when not VAULT_ID_TOKEN

# Credentials of the run itself: a connector pointing at a URL the author controls could send them
# away (decK's lesson, Kong/deck#286). Settings.allow_env lets a name through on purpose.
RUN_CREDENTIALS = (
    "CI_JOB_TOKEN", "CI_JOB_JWT", "CI_JOB_JWT_*", "CI_REGISTRY_PASSWORD", "CI_DEPLOY_PASSWORD",
    "CI_DEPENDENCY_PROXY_PASSWORD", "VAULT_TOKEN", "VAULT_SECRET_ID", "VAULT_ID_TOKEN",
    "KIBANA_*", "ELASTICSEARCH_*",
    # kcr's own credentials (KCR_<SPACE>_... names that `kcr export` writes are connector secrets)
    "KCR_FINGERPRINT_KEY", "KCR_GITLAB_TOKEN", "KCR_RECORD_HTTP_*",
)


_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*")


def _duration(text: str | None, name: str, *, default: float) -> float:
    """Seconds from the Vault CLI's forms: `30`, `30s`, `500ms`, `2m`."""
    if not text:
        return default
    match = _DURATION.fullmatch(text)
    if match is None:
        raise _Unresolved(f"{name} is not a duration (like 30, 30s, 500ms or 2m)")
    scale = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * scale


class ReferenceSyntaxError(ValueError):
    """A string that is not a well-formed template. The message never repeats the string."""


@dataclass(frozen=True)
class Reference:
    scheme: str  # "env" | "file" | "vault"
    target: str  # what follows "scheme:" (NAME, PATH, MOUNT/PATH#KEY[@N])
    vault_path: str = ""  # MOUNT/PATH as written
    vault_key: str = ""
    vault_version: int | None = None

    @property
    def text(self) -> str:
        return f"${{{self.scheme}:{self.target}}}"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Template:
    """A string split into literal text and references."""

    parts: tuple[str | Reference, ...]

    @property
    def references(self) -> tuple[Reference, ...]:
        return tuple(p for p in self.parts if isinstance(p, Reference))

    @property
    def is_whole(self) -> bool:
        return len(self.parts) == 1 and isinstance(self.parts[0], Reference)

    def render(self, values: Mapping[str, str]) -> str:
        """`values` maps each reference's text to its value."""
        return "".join(p if isinstance(p, str) else values[p.text] for p in self.parts)


def _vault_reference(target: str) -> Reference:
    example = "${vault:MOUNT/PATH#KEY} or ${vault:MOUNT/PATH#KEY@VERSION}"
    path, hash_sign, rest = target.partition("#")
    at_part = rest if hash_sign else path
    if "@" in at_part:
        after = at_part.partition("@")[2]
        if not _DIGITS.fullmatch(after):
            raise ReferenceSyntaxError(
                f"in a vault reference, after @ comes a version number (digits only), not {after[:40]!r}; "
                "the mount is the first path segment, as in ${vault:ops/production/db#password} "
                "(GitLab's `path/field@mount` form is not used here)")
    if not hash_sign:
        raise ReferenceSyntaxError(f"a vault reference names the key after '#': {example}")
    key, at, version_text = rest.partition("@")
    segments = path.split("/")
    if len(segments) < 2 or any(s in ("", ".", "..") for s in segments):
        raise ReferenceSyntaxError(
            f"vault path {path[:80]!r} must be MOUNT/PATH with non-empty segments and no '.' or '..': {example}")
    if not key or "#" in key:
        raise ReferenceSyntaxError(f"a vault reference names exactly one key after '#': {example}")
    version: int | None = None
    if at:
        version = int(version_text)
        if version < 1:
            raise ReferenceSyntaxError("vault versions start at 1; leave out '@N' for the latest version")
    return Reference("vault", target, vault_path=path, vault_key=key, vault_version=version)


def _reference(inner: str, column: int) -> Reference:
    scheme, colon, target = inner.partition(":")
    if not colon or scheme not in SCHEMES:
        raise ReferenceSyntaxError(
            f"'${{' at column {column} does not start a reference: write ${{env:NAME}}, ${{file:PATH}} or "
            "${vault:MOUNT/PATH#KEY}; a literal '${' is written '$${'")
    if scheme == "env":
        if not _ENV_NAME.fullmatch(target):
            raise ReferenceSyntaxError(
                f"${{env:...}} at column {column} needs a variable name of letters, digits and '_' "
                "(not starting with a digit)")
        return Reference("env", target)
    if scheme == "file":
        if not target.strip() or "\x00" in target:
            raise ReferenceSyntaxError(f"${{file:...}} at column {column} needs a path")
        return Reference("file", target)
    return _vault_reference(target)


def parse_template(text: str) -> Template:
    """Split `text` into literals and references; `$${` is a literal `${`. Raises ReferenceSyntaxError."""
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
        elif text.startswith("${", j):
            end = text.find("}", j + 2)
            if end < 0:
                raise ReferenceSyntaxError(
                    f"'${{' at column {j + 1} is never closed by '}}'; a literal '${{' is written '$${{'")
            inner = text[j + 2:end]
            if "${" in inner or "{" in inner:
                raise ReferenceSyntaxError(f"references cannot be nested (column {j + 1})")
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


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


MASK = "***"
MIN_MASKED_LEN = 4  # shorter values would garble ordinary words; no real credential is that short
_PERCENT = re.compile(r"%[0-9A-F]{2}")
_SPACES = re.compile(r"\s+")


def _html_forms(text: str) -> Iterator[str]:
    """An HTML error page (a proxy's, a framework's) quotes what it received escaped, in one of the
    spellings of the apostrophe."""
    escaped = html.escape(text, quote=True)
    yield escaped
    yield escaped.replace("&#x27;", "&#39;")
    yield html.escape(text, quote=False)


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
    for plain in dict.fromkeys((text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1])):
        yield plain
        yield from _html_forms(plain)
        yield from _url_forms(plain)
        yield from _base64_forms(plain)


def _masked_forms(value: Any) -> Iterator[str]:
    """Every spelling of a secret that an echoing server could print. The minimum length holds for
    each form too: a short fragment (a few base64 characters) would garble ordinary output."""
    if isinstance(value, Secret):
        value = value.reveal()
    if isinstance(value, str):
        if len(value) >= MIN_MASKED_LEN:
            yield from (form for form in _text_forms(value) if len(form) >= MIN_MASKED_LEN)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if len(str(value)) >= MIN_MASKED_LEN:
            yield str(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _masked_forms(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _masked_forms(item)


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


def references_in(value: Any) -> list[Reference]:
    """Every reference inside a JSON-like value, in order. Raises ReferenceSyntaxError."""
    return [ref for s in _strings(value) for ref in parse_template(s).references]


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


def guard_refusal(name: str, settings: Settings, jwt_var: str = DEFAULT_JWT_VAR) -> str | None:
    """Why `${env:name}` is refused by the exfiltration guard, or None when it may be read."""
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in settings.allow_env):
        return None
    for pattern in (*RUN_CREDENTIALS, jwt_var):
        if fnmatch.fnmatchcase(name, pattern):
            return (f"${{env:{name}}} is refused: {name} is a credential of the kcr run itself (matches "
                    f"{pattern!r}) and a connector could send it elsewhere; if this is really intended, add "
                    f"{name!r} to allow_env in kcr.yaml")
    return None


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


def _reveal(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, Mapping):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reveal(v) for v in value]
    return value


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, repr=False)
class ResolvedSecrets:
    """One connector's secrets with every reference replaced by its value (leaves are `Secret`)."""

    values: Mapping[str, Any]
    vault_versions: Mapping[str, int] = field(default_factory=dict)  # reference text -> KV v2 version

    def payload(self) -> dict[str, Any]:
        """The plain values, for the HTTP body to Kibana and nothing else."""
        return {k: _reveal(v) for k, v in self.values.items()}

    def digest(self, connector_id: str, key: bytes | None) -> SecretDigest:
        """HMAC-SHA256 per top-level secret key over canonical JSON [connector_id, key, value]; without
        a key only the Vault versions are kept."""
        hmacs: dict[str, str] = {}
        if key:
            for name, value in self.payload().items():
                message = _canonical([connector_id, name, value])
                hmacs[name] = hmac.new(key, message, hashlib.sha256).hexdigest()
        return SecretDigest(hmacs=hmacs, vault_versions=dict(self.vault_versions))

    def __repr__(self) -> str:
        return f"ResolvedSecrets(keys={sorted(self.values)!r}, vault_versions={dict(self.vault_versions)!r})"

    __str__ = __repr__


# --- Vault ---------------------------------------------------------------------------------------


class _Unresolved(Exception):
    """Why a reference (or all Vault references of a run) could not be resolved; never holds a value."""


@dataclass(frozen=True)
class _Mount:
    path: str  # without trailing slash
    version: int  # 1 or 2


def _truthy(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "t", "true", "yes", "on")


def _errors_of(response: httpx.Response, mask: Masker) -> str:
    """Vault's `errors`, masked before anything else touches them: collapsing spaces or cutting at
    300 characters first would leave a part of an echoed credential that no longer matches."""
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    if not isinstance(errors, list):
        errors = [errors]

    def clean(error: Any) -> str:
        pieces = mask(str(error)).split(MASK)
        return MASK.join(_SPACES.sub(" ", piece.replace("*", " ")) for piece in pieces).strip()

    text = "; ".join(clean(e) for e in errors)[:300]
    return f": {text}" if text else ""


def _quote_path(path: str) -> str:
    return "/".join(quote(segment, safe="") for segment in path.split("/"))


class VaultClient:
    """Just what kcr needs of Vault: log in once, find a path's KV mount, read a secret."""

    def __init__(self, env: Mapping[str, str], settings: Settings,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.env = env
        self.settings = settings
        self.addr = (env.get("VAULT_ADDR") or "").rstrip("/")
        if not self.addr:
            raise _Unresolved("VAULT_ADDR is not set; point it at the Vault server (e.g. https://vault.example:8200)")
        headers = {"X-Vault-Request": "true"}
        namespace = env.get("VAULT_NAMESPACE")
        if namespace:
            if not namespace.isascii() or not namespace.isprintable():
                raise _Unresolved("VAULT_NAMESPACE must be printable ASCII (a namespace path like team-a/)")
            headers["X-Vault-Namespace"] = namespace
        timeout = _duration(env.get("VAULT_CLIENT_TIMEOUT"), "VAULT_CLIENT_TIMEOUT", default=30.0)
        try:
            self.http = httpx.Client(base_url=self.addr, headers=headers, timeout=timeout,
                                     verify=self._verify(), transport=transport)
        except (ValueError, httpx.InvalidURL) as exc:
            raise _Unresolved(f"VAULT_ADDR is not a usable URL ({type(exc).__name__})") from None
        self._token: str | None = None
        self._mask = Masker()  # the run's Vault credentials, for every error text Vault sends back
        self._mounts: dict[str, _Mount] = {}
        self._preflight_refused = False  # the token may not call sys/internal/ui/mounts
        self._lock = threading.Lock()

    def _verify(self) -> ssl.SSLContext | bool:
        if _truthy(self.env.get("VAULT_SKIP_VERIFY")):
            return False
        cafile = self.env.get("VAULT_CACERT") or None
        capath = None if cafile else (self.env.get("VAULT_CAPATH") or None)
        if cafile or capath:
            try:
                return ssl.create_default_context(cafile=cafile, capath=capath)
            except (OSError, ssl.SSLError) as exc:
                raise _Unresolved(f"cannot load the Vault CA from VAULT_CACERT/VAULT_CAPATH: {exc}") from None
        return True

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise _Unresolved(f"cannot reach Vault at {self.addr} ({type(exc).__name__})") from None

    def login(self) -> None:
        env = self.env
        if env.get("VAULT_TOKEN"):
            self._use_token(env["VAULT_TOKEN"])
            return
        jwt_var = env.get(JWT_VAR_SETTING) or DEFAULT_JWT_VAR
        if env.get("VAULT_ROLE_ID") and env.get("VAULT_SECRET_ID"):
            body: dict[str, str] = {"role_id": env["VAULT_ROLE_ID"], "secret_id": env["VAULT_SECRET_ID"]}
            self._use_token(self._login("AppRole", "/v1/auth/approle/login", body))
            return
        if env.get(jwt_var):
            body = {"jwt": env[jwt_var]}
            if env.get("VAULT_AUTH_ROLE"):
                body["role"] = env["VAULT_AUTH_ROLE"]
            auth_path = (env.get("VAULT_AUTH_PATH") or "jwt").strip("/")
            self._use_token(self._login(f"JWT ({auth_path})", f"/v1/auth/{_quote_path(auth_path)}/login",
                                        body, secret=("jwt",)))
            return
        if env.get("HOME"):
            token_file = Path(env["HOME"]) / ".vault-token"
            try:
                token = token_file.read_text(encoding="utf-8").strip()
            except OSError:
                token = ""
            if token:
                self._use_token(token)
                return
        raise _Unresolved(f"no Vault credentials: set VAULT_TOKEN, VAULT_ROLE_ID and VAULT_SECRET_ID (AppRole), "
                            f"or {jwt_var} with VAULT_AUTH_ROLE (JWT, e.g. GitLab id_tokens)")

    def _use_token(self, token: str) -> None:
        self._token = token
        self._mask = Masker(token, *self._mask.payloads)

    def _login(self, method: str, url: str, body: Mapping[str, str],
               secret: tuple[str, ...] = ("role_id", "secret_id")) -> str:
        """The token of a login. The credentials sent (`secret`, the body's fields that are not names)
        are masked in Vault's answer: a Vault or a proxy that echoes the request must not print them."""
        self._mask = Masker(*(body[name] for name in secret if name in body), *self._mask.payloads)
        response = self._request("POST", url, json=dict(body))
        if response.status_code != 200:
            raise _Unresolved(f"Vault {method} login failed (HTTP {response.status_code}"
                              f"{_errors_of(response, self._mask)})")
        try:
            token = response.json()["auth"]["client_token"]
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise _Unresolved(f"Vault {method} login answered without auth.client_token")
        return token

    def _headers(self) -> dict[str, str]:
        return {"X-Vault-Token": self._token} if self._token else {}

    def _fallback_mount(self, path: str) -> _Mount:
        best: _Mount | None = None
        for entry in self.settings.vault_mounts:
            name, _, version_text = entry.partition(":")
            name = name.strip("/")
            version = 1 if version_text.strip().lower() in ("1", "v1") else 2
            if (path == name or path.startswith(name + "/")) and (best is None or len(name) > len(best.path)):
                best = _Mount(name, version)
        return best or _Mount(path.split("/", 1)[0], 2)

    def mount_of(self, path: str) -> _Mount:
        """The KV mount holding `path`, found as `vault kv get` does; falls back to Settings.vault_mounts
        (longest prefix) and then to the first segment as KV v2."""
        with self._lock:
            # Only mounts Vault itself named are cached (Vault refuses overlapping mounts, so one that
            # holds the path is the one); the fallback list is cheap to consult again, longest first.
            known = [m for m in self._mounts.values() if path.startswith(m.path + "/")]
            if known:
                return max(known, key=lambda m: len(m.path))
            refused = self._preflight_refused
        if refused:
            return self._fallback_mount(path)
        response = self._request("GET", f"/v1/sys/internal/ui/mounts/{_quote_path(path)}", headers=self._headers())
        mount: _Mount | None = None
        if response.status_code == 200:
            try:
                data = response.json().get("data") or {}
                mount_path = str(data.get("path") or "").strip("/")
                options = data.get("options") or {}
                kind = str(data.get("type") or "kv")
                version = 2 if str(options.get("version") or "1") == "2" else 1
            except (ValueError, AttributeError):
                mount_path, kind, version = "", "kv", 2
            if kind not in ("kv", "generic"):
                raise _Unresolved(f"'{mount_path}' is a {kind!r} mount, not a KV secrets engine")
            if mount_path and path.startswith(mount_path + "/"):
                mount = _Mount(mount_path, version)
        if mount is None:
            if response.status_code in (403, 404):  # a policy without the preflight: don't ask again
                with self._lock:
                    self._preflight_refused = True
            return self._fallback_mount(path)
        with self._lock:
            self._mounts[mount.path] = mount
        return mount

    def read(self, mount: _Mount, rel: str, version: int | None) -> tuple[dict[str, Any], int | None]:
        """The key/values of one secret and its KV v2 version (None on v1)."""
        where = f"{mount.path}/{rel}"
        if mount.version == 1:
            if version is not None:
                raise _Unresolved(f"'{mount.path}' is a KV v1 mount, and KV v1 has no versions; drop '@{version}'")
            url = f"/v1/{_quote_path(mount.path)}/{_quote_path(rel)}"
            params: dict[str, str] = {}
        else:
            url = f"/v1/{_quote_path(mount.path)}/data/{_quote_path(rel)}"
            params = {"version": str(version)} if version is not None else {}
        response = self._request("GET", url, params=params, headers=self._headers())
        status = response.status_code
        pinned = f" version {version}" if version is not None else ""
        if status == 403:
            raise _Unresolved(f"permission denied reading '{where}' from Vault{_errors_of(response, self._mask)}; "
                                "the token's policy needs 'read' on it")
        if status == 404:
            metadata = self._metadata(response)
            which = f"version {metadata.get('version', version)}" if version is None else f"version {version}"
            if metadata.get("destroyed"):
                raise _Unresolved(f"{which} of '{where}' was destroyed in Vault")
            if metadata.get("deletion_time"):
                raise _Unresolved(f"{which} of '{where}' was deleted in Vault (undelete it or pin another version)")
            raise _Unresolved(f"no secret at '{where}'{pinned} in Vault (check the path and the mount)")
        if status != 200:
            raise _Unresolved(f"Vault answered HTTP {status} reading '{where}'{_errors_of(response, self._mask)}")
        try:
            body = response.json()
            data = body.get("data") or {}
            if mount.version == 2:
                values = data.get("data")
                found = (data.get("metadata") or {}).get("version")
                return (dict(values) if isinstance(values, Mapping) else {}), (int(found) if found else version)
            return dict(data), None
        except (ValueError, AttributeError, TypeError):
            raise _Unresolved(f"Vault's answer for '{where}' is not the KV JSON expected") from None

    @staticmethod
    def _metadata(response: httpx.Response) -> dict[str, Any]:
        try:
            metadata = ((response.json().get("data") or {}).get("metadata")) or {}
            return dict(metadata) if isinstance(metadata, Mapping) else {}
        except (ValueError, AttributeError):
            return {}


# --- Resolution ----------------------------------------------------------------------------------


class SecretResolver:
    """Turns the secret templates of many connectors into values: env and files directly, Vault with one
    login and one read per distinct (mount, path, version), concurrently."""

    def __init__(self, env: Mapping[str, str], settings: Settings, root: Path,
                 vault_transport: httpx.BaseTransport | None = None) -> None:
        self.env = env
        self.settings = settings
        self.root = root
        self.vault_transport = vault_transport
        # Each distinct Vault secret is read once per run, however many times the run resolves it.
        self._vault_memo: dict[str, tuple[str, int | None]] = {}

    def resolve_many(self, items: Mapping[str, Mapping[str, Any]]) -> dict[str, ResolvedSecrets]:
        """`items`: owner label -> secret templates. Raises SecretError listing every failure."""
        resolved, errors = self.resolve_collect(items)
        if errors:
            lines = [message for owner in sorted(errors) for message in errors[owner]]
            raise SecretError("cannot resolve secrets:\n" + "\n".join(f"  {line}" for line in lines))
        return resolved

    def resolve_collect(self, items: Mapping[str, Mapping[str, Any]]
                        ) -> tuple[dict[str, ResolvedSecrets], dict[str, list[str]]]:
        """Like resolve_many, but returns the failures per owner (owners with failures get no result)."""
        errors: dict[str, list[str]] = {}
        refs_by_owner: dict[str, list[Reference]] = {}
        for owner, templates in items.items():
            refs: list[Reference] = []
            for text in _strings(templates):
                try:
                    refs.extend(parse_template(text).references)
                except ReferenceSyntaxError as exc:
                    errors.setdefault(owner, []).append(f"{owner}: {exc}")
            refs_by_owner[owner] = refs
        values: dict[str, str] = {}
        failures: dict[str, str] = {}  # reference text -> why it failed
        versions: dict[str, int] = {}
        all_refs = {ref.text: ref for refs in refs_by_owner.values() for ref in refs}
        for ref in all_refs.values():
            try:
                if ref.scheme == "env":
                    values[ref.text] = self._env(ref)
                elif ref.scheme == "file":
                    values[ref.text] = self._file(ref)
            except _Unresolved as exc:
                failures[ref.text] = str(exc)
        vault_refs = []
        for ref in all_refs.values():
            if ref.scheme != "vault":
                continue
            if ref.text in self._vault_memo:  # read earlier in this run (plan, then apply)
                values[ref.text], version = self._vault_memo[ref.text]
                if version is not None:
                    versions[ref.text] = version
            else:
                vault_refs.append(ref)
        if vault_refs:
            self._vault(vault_refs, values, failures, versions)
            for ref in vault_refs:
                if ref.text in values:
                    self._vault_memo[ref.text] = (values[ref.text], versions.get(ref.text))
        out: dict[str, ResolvedSecrets] = {}
        for owner, templates in items.items():
            owner_errors = errors.setdefault(owner, [])
            for ref in dict.fromkeys(refs_by_owner[owner]):
                if ref.text in failures:
                    owner_errors.append(f"{ref.text} for {owner}: {failures[ref.text]}")
            if owner_errors:
                continue
            rendered = {k: self._render(v, values, owner, k, owner_errors) for k, v in templates.items()}
            if owner_errors:
                continue
            owner_versions = {r.text: versions[r.text] for r in refs_by_owner[owner] if r.text in versions}
            out[owner] = ResolvedSecrets(rendered, owner_versions)
        return out, {owner: msgs for owner, msgs in errors.items() if msgs}

    def _render(self, value: Any, values: Mapping[str, str], owner: str, path: str, errors: list[str]) -> Any:
        if isinstance(value, str):
            text = parse_template(value).render(values)
            if not text.strip():
                errors.append(f"secrets.{path} for {owner} resolves to a blank value, which Kibana refuses "
                              "('value '' is not valid'); check the variable, file or Vault key")
            return Secret(text)
        if isinstance(value, Mapping):
            return {k: self._render(v, values, owner, f"{path}.{k}", errors) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._render(v, values, owner, f"{path}[{i}]", errors) for i, v in enumerate(value)]
        return value

    def _env(self, ref: Reference) -> str:
        jwt_var = self.env.get(JWT_VAR_SETTING) or DEFAULT_JWT_VAR
        refusal = guard_refusal(ref.target, self.settings, jwt_var)
        if refusal:
            raise _Unresolved(refusal)
        if ref.target not in self.env:
            raise _Unresolved(f"environment variable {ref.target} is not set")
        return self.env[ref.target]

    def _file(self, ref: Reference) -> str:
        root = self.root.resolve()
        candidate = Path(ref.target)
        if not candidate.is_absolute():
            candidate = root / candidate
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            raise _Unresolved(f"file {ref.target!r} does not exist") from None
        roots = [root, *((root / r).resolve() for r in self.settings.file_roots)]
        if not any(real == r or real.is_relative_to(r) for r in roots):
            raise _Unresolved(f"file {ref.target!r} is outside the repository and the file_roots of kcr.yaml "
                                "(symlinks resolved); add its directory to file_roots to allow it")
        if real.is_relative_to(root) and set(real.relative_to(root).parts) & _PRIVATE_DIRS:
            # .git/config can hold a clone URL with the job's token; .kcr holds kcr's own record
            raise _Unresolved(f"file {ref.target!r} is inside {'/'.join(sorted(_PRIVATE_DIRS))}, which kcr never "
                              "reads secrets from (the clone's credentials live there)")
        if not real.is_file():
            raise _Unresolved(f"{ref.target!r} is not a regular file")
        try:
            with real.open("rb") as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise _Unresolved(f"cannot read file {ref.target!r}: {exc.strerror or type(exc).__name__}") from None
        if len(data) > MAX_FILE_BYTES:
            raise _Unresolved(f"file {ref.target!r} is over {MAX_FILE_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Unresolved(f"file {ref.target!r} is not UTF-8 text") from None
        if text.endswith("\r\n"):
            return text[:-2]
        return text[:-1] if text.endswith("\n") else text

    def _vault(self, refs: list[Reference], values: dict[str, str], failures: dict[str, str],
               versions: dict[str, int]) -> None:
        try:
            client = VaultClient(self.env, self.settings, self.vault_transport)
        except _Unresolved as exc:
            for ref in refs:
                failures[ref.text] = str(exc)
            return
        try:
            try:
                client.login()
            except _Unresolved as exc:
                for ref in refs:
                    failures[ref.text] = str(exc)
                return
            paths = sorted({ref.vault_path for ref in refs})
            workers = max(1, min(VAULT_WORKERS, len(paths)))
            mounts: dict[str, _Mount | _Unresolved] = {}

            def find(path: str) -> tuple[str, _Mount | _Unresolved]:
                try:
                    return path, client.mount_of(path)
                except _Unresolved as exc:
                    return path, exc

            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kcr-vault") as pool:
                mounts.update(pool.map(find, paths))
            reads: dict[tuple[str, int, str, int | None], list[Reference]] = {}
            for ref in refs:
                mount = mounts[ref.vault_path]
                if isinstance(mount, _Unresolved):
                    failures[ref.text] = str(mount)
                    continue
                rel = ref.vault_path[len(mount.path) + 1:]
                reads.setdefault((mount.path, mount.version, rel, ref.vault_version), []).append(ref)

            def fetch(key: tuple[str, int, str, int | None]) -> tuple[tuple[str, int, str, int | None], Any]:
                mount_path, kv, rel, version = key
                try:
                    return key, client.read(_Mount(mount_path, kv), rel, version)
                except _Unresolved as exc:
                    return key, exc

            with ThreadPoolExecutor(max_workers=max(1, min(VAULT_WORKERS, len(reads))),
                                    thread_name_prefix="kcr-vault") as pool:
                results = dict(pool.map(fetch, list(reads)))
        finally:
            client.close()
        for key, refs_here in reads.items():
            result = results[key]
            for ref in refs_here:
                if isinstance(result, _Unresolved):
                    failures[ref.text] = str(result)
                    continue
                data, version = result
                where = f"'{key[0]}/{key[2]}'" + (f" (version {version})" if version else "")
                if ref.vault_key not in data:
                    names = ", ".join(sorted(data)) or "none"
                    failures[ref.text] = f"key {ref.vault_key!r} is not in Vault secret {where}; its keys: {names}"
                    continue
                value = data[ref.vault_key]
                if isinstance(value, Mapping | list) or value is None:
                    failures[ref.text] = f"key {ref.vault_key!r} of Vault secret {where} is not a string"
                    continue
                values[ref.text] = value if isinstance(value, str) else json.dumps(value)
                if version is not None and key[1] == 2:
                    versions[ref.text] = version
