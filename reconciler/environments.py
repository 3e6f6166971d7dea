"""Which Kibana a command talks to when kcr.yaml declares environments: the one selected (`--env` or
KCR_ENV), its URL, credentials and record, as the variables the connection and the record already read.

An environment with nothing but a name changes nothing here (KIBANA_URL, KIBANA_API_KEY, ... as
without environments), which is how GitLab's environment-scoped CI variables are meant to be used.
One that names its own variables gets exactly those: the others are dropped, never mixed in, and a
named variable that is not set is an error rather than a fall back to whatever KIBANA_* holds (a
staging job must not reach production because a variable was missing)."""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.errors import ConfigError
from reconciler.model import Environment, Settings

ENV_VAR = "KCR_ENV"
_URL_VARS = ("KIBANA_URL", "KIBANA_ENDPOINT")
_CREDENTIAL_VARS = {"api_key": "API_KEY", "bearer_token": "BEARER_TOKEN", "username": "USERNAME",
                    "password": "PASSWORD"}
_RECORD_VARS = {"path": "KCR_RECORD", "gitlab_state": "KCR_RECORD_GITLAB_STATE",
                "http_address": "KCR_RECORD_HTTP_ADDRESS"}


def asked(flag: str | None, env: Mapping[str, str]) -> str | None:
    """`--env` wins over KCR_ENV; an empty KCR_ENV is unset."""
    return flag or env.get(ENV_VAR) or None


def select(settings: Settings, name: str | None) -> Environment | None:
    """The environment a command that talks to Kibana works on; None when none are declared. With
    environments declared and none selected, nothing can say which Kibana is meant: refuse."""
    declared = sorted(settings.environments)
    if not declared:
        if name is not None:
            raise ConfigError(f"environment {name!r} was selected (--env or {ENV_VAR}) but kcr.yaml declares no "
                              f"environments; drop --env/unset {ENV_VAR}, or declare `environments:` in kcr.yaml")
        return None
    if name is None:
        raise ConfigError(f"kcr.yaml declares environments ({', '.join(declared)}): select one with --env NAME "
                          f"or {ENV_VAR}")
    if name not in settings.environments:
        raise ConfigError(f"environment {name!r} is not declared in kcr.yaml (declared: {', '.join(declared)})")
    return settings.environments[name]


def kibana_env(env: Mapping[str, str], environment: Environment | None) -> dict[str, str]:
    """The variables the connection and the record read, for `environment`."""
    out = dict(env)
    if environment is None:
        return out
    where = f"environment {environment.name!r} (kcr.yaml)"
    url = environment.kibana_url
    if environment.kibana_url_env:
        url = env.get(environment.kibana_url_env) or None
        if url is None:
            raise ConfigError(f"{where} reads its Kibana URL from {environment.kibana_url_env}, which is not set")
    if url is not None:
        for name in _URL_VARS:
            out.pop(name, None)
        out["KIBANA_URL"] = url
    if environment.credentials:
        for prefix in ("KIBANA", "ELASTICSEARCH"):
            for suffix in _CREDENTIAL_VARS.values():
                out.pop(f"{prefix}_{suffix}", None)
        for kind, var in sorted(environment.credentials.items()):
            value = env.get(var)
            if not value:
                raise ConfigError(f"{where} reads its Kibana {kind.replace('_', ' ')} from {var}, which is not set")
            out[f"KIBANA_{_CREDENTIAL_VARS[kind]}"] = value
    for kind, value in environment.record.items():
        for name in _RECORD_VARS.values():
            out.pop(name, None)
        out[_RECORD_VARS[kind]] = value
    return out


def own_url(environment: Environment, env: Mapping[str, str]) -> str | None:
    """The URL kcr.yaml gives the environment (itself or through its variable), or None: KIBANA_URL."""
    if environment.kibana_url_env:
        return env.get(environment.kibana_url_env) or None
    return environment.kibana_url
