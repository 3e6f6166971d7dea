"""`${vault:MOUNT/PATH#KEY}` and `${vault:MOUNT/PATH#KEY@N}`: a field of a HashiCorp Vault KV secret
(the logical path, no `data/`), optionally pinned to KV v2 version N. Holds the whole of kcr's Vault:
the client, its login methods (token, AppRole, JWT, ~/.vault-token), finding a path's KV mount and
version as `vault kv get` does with kcr.yaml's `vault_mounts` as the fallback, and the batched read
(one login, one read per distinct secret, concurrently)."""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from reconciler.masking import MASK, Masker
from reconciler.model import Settings
from reconciler.secret_backends.base import Context, Read, Unresolved
from reconciler.secret_backends.guard import jwt_var

if TYPE_CHECKING:
    from reconciler.references import Reference

VAULT_WORKERS = 8
_DIGITS = re.compile(r"[0-9]+")
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*")
_SPACES = re.compile(r"\s+")
_EXAMPLE = "${vault:MOUNT/PATH#KEY} or ${vault:MOUNT/PATH#KEY@VERSION}"


@dataclass(frozen=True)
class VaultTarget:
    path: str  # MOUNT/PATH as written
    key: str
    version: int | None = None


def vault_target(target: str) -> VaultTarget:
    """What follows `vault:`, split; raises ValueError with a message that never repeats it whole."""
    path, hash_sign, rest = target.partition("#")
    at_part = rest if hash_sign else path
    if "@" in at_part:
        after = at_part.partition("@")[2]
        if not _DIGITS.fullmatch(after):
            raise ValueError(
                f"in a vault reference, after @ comes a version number (digits only), not {after[:40]!r}; "
                "the mount is the first path segment, as in ${vault:ops/production/db#password} "
                "(GitLab's `path/field@mount` form is not used here)")
    if not hash_sign:
        raise ValueError(f"a vault reference names the key after '#': {_EXAMPLE}")
    key, at, version_text = rest.partition("@")
    segments = path.split("/")
    if len(segments) < 2 or any(s in ("", ".", "..") for s in segments):
        raise ValueError(
            f"vault path {path[:80]!r} must be MOUNT/PATH with non-empty segments and no '.' or '..': {_EXAMPLE}")
    if not key or "#" in key:
        raise ValueError(f"a vault reference names exactly one key after '#': {_EXAMPLE}")
    version: int | None = None
    if at:
        version = int(version_text)
        if version < 1:
            raise ValueError("vault versions start at 1; leave out '@N' for the latest version")
    return VaultTarget(path, key, version)


@dataclass(frozen=True)
class _Mount:
    path: str  # without trailing slash
    version: int  # 1 or 2


_ReadKey = tuple[str, int, str, int | None]  # mount path, KV version, path within the mount, pinned version


class VaultBackend:
    scheme = "vault"
    form = "${vault:MOUNT/PATH#KEY}"
    once_per_run = True  # each distinct Vault secret is read once per run, however often it is resolved

    def problem(self, target: str, column: int) -> str | None:
        try:
            vault_target(target)
        except ValueError as exc:
            return str(exc)
        return None

    def read(self, refs: Sequence[Reference], context: Context) -> Mapping[str, Read | Unresolved]:
        targets = {ref.text: vault_target(ref.target) for ref in refs}
        client = VaultClient(context.env, context.settings, context.transport)
        try:
            client.login()
            paths = sorted({t.path for t in targets.values()})
            mounts: dict[str, _Mount | Unresolved] = {}

            def find(path: str) -> tuple[str, _Mount | Unresolved]:
                try:
                    return path, client.mount_of(path)
                except Unresolved as exc:
                    return path, exc

            with ThreadPoolExecutor(max_workers=_workers(paths), thread_name_prefix="kcr-vault") as pool:
                mounts.update(pool.map(find, paths))
            out: dict[str, Read | Unresolved] = {}
            reads: dict[_ReadKey, list[str]] = {}
            for text, target in targets.items():
                mount = mounts[target.path]
                if isinstance(mount, Unresolved):
                    out[text] = mount
                    continue
                rel = target.path[len(mount.path) + 1:]
                reads.setdefault((mount.path, mount.version, rel, target.version), []).append(text)

            def fetch(key: _ReadKey) -> tuple[_ReadKey, tuple[dict[str, Any], int | None] | Unresolved]:
                mount_path, kv, rel, version = key
                try:
                    return key, client.read(_Mount(mount_path, kv), rel, version)
                except Unresolved as exc:
                    return key, exc

            with ThreadPoolExecutor(max_workers=_workers(reads), thread_name_prefix="kcr-vault") as pool:
                results = dict(pool.map(fetch, list(reads)))
        finally:
            client.close()
        for key, texts in reads.items():
            for text in texts:
                out[text] = _field(key, results[key], targets[text].key)
        return out


def _workers(jobs: Sequence[Any] | Mapping[Any, Any]) -> int:
    return max(1, min(VAULT_WORKERS, len(jobs)))


def _field(key: _ReadKey, result: tuple[dict[str, Any], int | None] | Unresolved, name: str) -> Read | Unresolved:
    """One key of a secret read; its version is kept only from KV v2."""
    if isinstance(result, Unresolved):
        return result
    data, version = result
    where = f"'{key[0]}/{key[2]}'" + (f" (version {version})" if version else "")
    if name not in data:
        names = ", ".join(sorted(data)) or "none"
        return Unresolved(f"key {name!r} is not in Vault secret {where}; its keys: {names}")
    value = data[name]
    if isinstance(value, Mapping | list) or value is None:
        return Unresolved(f"key {name!r} of Vault secret {where} is not a string")
    return Read(value if isinstance(value, str) else json.dumps(value), version if key[1] == 2 else None)


def _duration(text: str | None, name: str, *, default: float) -> float:
    """Seconds from the Vault CLI's forms: `30`, `30s`, `500ms`, `2m`."""
    if not text:
        return default
    match = _DURATION.fullmatch(text)
    if match is None:
        raise Unresolved(f"{name} is not a duration (like 30, 30s, 500ms or 2m)")
    scale = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * scale


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
            raise Unresolved("VAULT_ADDR is not set; point it at the Vault server (e.g. https://vault.example:8200)")
        headers = {"X-Vault-Request": "true"}
        namespace = env.get("VAULT_NAMESPACE")
        if namespace:
            if not namespace.isascii() or not namespace.isprintable():
                raise Unresolved("VAULT_NAMESPACE must be printable ASCII (a namespace path like team-a/)")
            headers["X-Vault-Namespace"] = namespace
        timeout = _duration(env.get("VAULT_CLIENT_TIMEOUT"), "VAULT_CLIENT_TIMEOUT", default=30.0)
        try:
            self.http = httpx.Client(base_url=self.addr, headers=headers, timeout=timeout,
                                     verify=self._verify(), transport=transport)
        except (ValueError, httpx.InvalidURL) as exc:
            raise Unresolved(f"VAULT_ADDR is not a usable URL ({type(exc).__name__})") from None
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
                raise Unresolved(f"cannot load the Vault CA from VAULT_CACERT/VAULT_CAPATH: {exc}") from None
        return True

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise Unresolved(f"cannot reach Vault at {self.addr} ({type(exc).__name__})") from None

    def login(self) -> None:
        env = self.env
        if env.get("VAULT_TOKEN"):
            self._use_token(env["VAULT_TOKEN"])
            return
        jwt = jwt_var(env)
        if env.get("VAULT_ROLE_ID") and env.get("VAULT_SECRET_ID"):
            body: dict[str, str] = {"role_id": env["VAULT_ROLE_ID"], "secret_id": env["VAULT_SECRET_ID"]}
            self._use_token(self._login("AppRole", "/v1/auth/approle/login", body))
            return
        if env.get(jwt):
            body = {"jwt": env[jwt]}
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
        raise Unresolved(f"no Vault credentials: set VAULT_TOKEN, VAULT_ROLE_ID and VAULT_SECRET_ID (AppRole), "
                         f"or {jwt} with VAULT_AUTH_ROLE (JWT, e.g. GitLab id_tokens)")

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
            raise Unresolved(f"Vault {method} login failed (HTTP {response.status_code}"
                              f"{_errors_of(response, self._mask)})")
        try:
            token = response.json()["auth"]["client_token"]
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise Unresolved(f"Vault {method} login answered without auth.client_token")
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
                raise Unresolved(f"'{mount_path}' is a {kind!r} mount, not a KV secrets engine")
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
                raise Unresolved(f"'{mount.path}' is a KV v1 mount, and KV v1 has no versions; drop '@{version}'")
            url = f"/v1/{_quote_path(mount.path)}/{_quote_path(rel)}"
            params: dict[str, str] = {}
        else:
            url = f"/v1/{_quote_path(mount.path)}/data/{_quote_path(rel)}"
            params = {"version": str(version)} if version is not None else {}
        response = self._request("GET", url, params=params, headers=self._headers())
        status = response.status_code
        pinned = f" version {version}" if version is not None else ""
        if status == 403:
            raise Unresolved(f"permission denied reading '{where}' from Vault{_errors_of(response, self._mask)}; "
                             "the token's policy needs 'read' on it")
        if status == 404:
            metadata = self._metadata(response)
            which = f"version {metadata.get('version', version)}" if version is None else f"version {version}"
            if metadata.get("destroyed"):
                raise Unresolved(f"{which} of '{where}' was destroyed in Vault")
            if metadata.get("deletion_time"):
                raise Unresolved(f"{which} of '{where}' was deleted in Vault (undelete it or pin another version)")
            raise Unresolved(f"no secret at '{where}'{pinned} in Vault (check the path and the mount)")
        if status != 200:
            raise Unresolved(f"Vault answered HTTP {status} reading '{where}'{_errors_of(response, self._mask)}")
        try:
            body = response.json()
            data = body.get("data") or {}
            if mount.version == 2:
                values = data.get("data")
                found = (data.get("metadata") or {}).get("version")
                return (dict(values) if isinstance(values, Mapping) else {}), (int(found) if found else version)
            return dict(data), None
        except (ValueError, AttributeError, TypeError):
            raise Unresolved(f"Vault's answer for '{where}' is not the KV JSON expected") from None

    @staticmethod
    def _metadata(response: httpx.Response) -> dict[str, Any]:
        try:
            metadata = ((response.json().get("data") or {}).get("metadata")) or {}
            return dict(metadata) if isinstance(metadata, Mapping) else {}
        except (ValueError, AttributeError):
            return {}
