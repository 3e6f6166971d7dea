"""Which record backend a run uses, read from the --record flag and the KCR_RECORD* variables (and,
for GitLab-managed state, GitLab CI's own variables). The only module that knows every backend, so a
new backend is one module plus its branch here.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from pathlib import Path

import httpx

from reconciler.connection import parse_go_bool, redact_url
from reconciler.errors import ConfigError
from reconciler.state.backend import RecordBackend
from reconciler.state.file import FileBackend
from reconciler.state.http import HttpBackend
from reconciler.state.record import DEFAULT_RECORD, default_record_path, fingerprint_key, normalize_kibana_url


def backend_from_env(
    env: Mapping[str, str],
    root: Path,
    path: str | None = None,
    transport: httpx.BaseTransport | None = None,
    kibana_url: str | None = None,
) -> RecordBackend:
    """`path` (a --record flag) wins, then KCR_RECORD_HTTP_ADDRESS, then KCR_RECORD_GITLAB_STATE, then
    KCR_RECORD, then the default file (per Kibana when `kibana_url` is given, see `reconciler.state.record`).
    Relative paths are taken from the repository root. `kibana_url` ties the record to that Kibana."""
    if kibana_url is not None:
        kibana_url = normalize_kibana_url(kibana_url)
    if path:
        return FileBackend(_under(root, path), env, kibana_url, fingerprint_key=fingerprint_key(env))
    address = env.get("KCR_RECORD_HTTP_ADDRESS", "")
    gitlab_state = env.get("KCR_RECORD_GITLAB_STATE", "")
    if address or gitlab_state:
        lock_address = env.get("KCR_RECORD_HTTP_LOCK_ADDRESS") or None
        unlock_address = env.get("KCR_RECORD_HTTP_UNLOCK_ADDRESS") or None
        lock_method = env.get("KCR_RECORD_HTTP_LOCK_METHOD") or "LOCK"
        unlock_method = env.get("KCR_RECORD_HTTP_UNLOCK_METHOD") or "UNLOCK"
        username = env.get("KCR_RECORD_HTTP_USERNAME") or None
        password = env.get("KCR_RECORD_HTTP_PASSWORD") or None
        if not address:
            address = _gitlab_address(env, gitlab_state)
            lock_address = lock_address or f"{address}/lock"
            unlock_address = unlock_address or f"{address}/lock"
            lock_method = env.get("KCR_RECORD_HTTP_LOCK_METHOD") or "POST"
            unlock_method = env.get("KCR_RECORD_HTTP_UNLOCK_METHOD") or "DELETE"
            if not username:
                username, password = "gitlab-ci-token", env.get("CI_JOB_TOKEN") or None
                if not password:
                    raise ConfigError(
                        "KCR_RECORD_GITLAB_STATE is set but CI_JOB_TOKEN is not; run in GitLab CI or set "
                        "KCR_RECORD_HTTP_USERNAME/KCR_RECORD_HTTP_PASSWORD (a token with the api scope)"
                    )
        for name, url in (("KCR_RECORD_HTTP_ADDRESS", address), ("KCR_RECORD_HTTP_LOCK_ADDRESS", lock_address),
                          ("KCR_RECORD_HTTP_UNLOCK_ADDRESS", unlock_address)):
            if url and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise ConfigError(f"{name}={redact_url(url)!r} is not an http(s) URL")
        return HttpBackend(
            address=address,
            lock_address=lock_address,
            unlock_address=unlock_address,
            lock_method=lock_method.upper(),
            unlock_method=unlock_method.upper(),
            update_method=(env.get("KCR_RECORD_HTTP_UPDATE_METHOD") or "POST").upper(),
            username=username,
            password=password,
            env=env,
            transport=transport,
            verify=not _skip_verification(env),
            kibana_url=kibana_url,
            fingerprint_key=fingerprint_key(env),
        )
    record = env.get("KCR_RECORD", "")
    if record:
        return FileBackend(_under(root, record), env, kibana_url, fingerprint_key=fingerprint_key(env))
    return FileBackend(root / default_record_path(kibana_url), env, kibana_url, legacy=root / DEFAULT_RECORD,
                       fingerprint_key=fingerprint_key(env))


def _skip_verification(env: Mapping[str, str]) -> bool:
    name = "KCR_RECORD_HTTP_SKIP_CERT_VERIFICATION"
    raw = env.get(name, "")
    return parse_go_bool(name, raw) if raw else False


def _under(root: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else root / candidate


def _gitlab_address(env: Mapping[str, str], name: str) -> str:
    missing = [v for v in ("CI_API_V4_URL", "CI_PROJECT_ID") if not env.get(v)]
    if missing:
        raise ConfigError(
            f"KCR_RECORD_GITLAB_STATE is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not; "
            "it works inside GitLab CI, elsewhere set KCR_RECORD_HTTP_ADDRESS"
        )
    if "/" in name or name in (".", ".."):
        raise ConfigError(f"KCR_RECORD_GITLAB_STATE={name!r}: a state name cannot contain '/'")
    api = env["CI_API_V4_URL"].rstrip("/")
    project = urllib.parse.quote(env["CI_PROJECT_ID"], safe="")
    return f"{api}/projects/{project}/terraform/state/{urllib.parse.quote(name, safe='')}"

