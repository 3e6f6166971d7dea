"""The exfiltration guard: variables of the kcr run's own credentials that no `${env:...}` may read,
since a connector pointing at a URL its author controls would send them away (decK's lesson,
Kong/deck#286). Pure, so offline validation refuses such a reference before anything is read, and the
env backend refuses it again at read."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping

from reconciler.model import Settings

DEFAULT_JWT_VAR = "VAULT_ID_TOKEN"
JWT_VAR_SETTING = "KCR_VAULT_JWT_VAR"  # names the variable holding the JWT, when not VAULT_ID_TOKEN

# Settings.allow_env lets a name through on purpose.
RUN_CREDENTIALS = (
    "CI_JOB_TOKEN", "CI_JOB_JWT", "CI_JOB_JWT_*", "CI_REGISTRY_PASSWORD", "CI_DEPLOY_PASSWORD",
    "CI_DEPENDENCY_PROXY_PASSWORD", "VAULT_TOKEN", "VAULT_SECRET_ID", "VAULT_ID_TOKEN",
    "KIBANA_*", "ELASTICSEARCH_*",
    # kcr's own credentials (KCR_<SPACE>_... names that `kcr export` writes are connector secrets)
    "KCR_FINGERPRINT_KEY", "KCR_GITLAB_TOKEN", "KCR_RECORD_HTTP_*",
)


# One match for every fixed name instead of a glob each: the guard sees every ${env:..} twice a run.
_RUN_CREDENTIAL = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in RUN_CREDENTIALS))


def jwt_var(env: Mapping[str, str]) -> str:
    """The variable holding the Vault login JWT: a credential of the run like the fixed names."""
    return env.get(JWT_VAR_SETTING) or DEFAULT_JWT_VAR


def guard_refusal(name: str, settings: Settings, jwt_var: str = DEFAULT_JWT_VAR) -> str | None:
    """Why `${env:name}` is refused by the exfiltration guard, or None when it may be read."""
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in settings.allow_env):
        return None
    fixed = RUN_CREDENTIALS if _RUN_CREDENTIAL.match(name) else ()
    for pattern in (*fixed, jwt_var):
        if fnmatch.fnmatchcase(name, pattern):
            return (f"${{env:{name}}} is refused: {name} is a credential of the kcr run itself (matches "
                    f"{pattern!r}) and a connector could send it elsewhere; if this is really intended, add "
                    f"{name!r} to allow_env in kcr.yaml")
    for environment in settings.environments.values():
        if name in environment.credentials.values():
            return (f"${{env:{name}}} is refused: {name} holds the Kibana credentials of environment "
                    f"{environment.name!r} (kcr.yaml) and a connector could send it elsewhere")
    return None
