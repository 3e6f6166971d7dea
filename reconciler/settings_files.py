"""kcr.yaml and each space's _space.yaml -> Settings and SpaceSettings, their problems to the walker.

Apart from `desired` because they are read whole and once, before any connector, and `kcr apply
plan.json` needs kcr.yaml alone (`desired.load_settings`). A file with problems reads as the defaults:
its problems stop the run, so nothing is checked against a half-read setting."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from reconciler.file_problems import FileChecker, file_validator
from reconciler.model import Environment, Settings, SpaceSettings
from reconciler.repo_layout import Walker
from reconciler.secret_backends.file import RootError, expand_root
from reconciler.yamlload import join_path


def read_settings(walker: Walker, allow_plaintext: bool, env: Mapping[str, str] | None = None,
                  offline: bool = False) -> Settings:
    """kcr.yaml, or the defaults when there is none or it has problems (which `walker` then holds).
    `env`: the run's variables, which `file_roots` entries may read (None: unknown, as for
    `load_settings`, where an entry reading one is left out, never kept as written)."""
    fallback = Settings(allow_plaintext_secrets=allow_plaintext)
    found = walker.settings_file()
    if found is None:
        return fallback
    path, real = found
    doc = walker.document(path, real)
    if doc is None:
        return fallback
    value = {} if doc.value is None else doc.value
    if FileChecker(walker.rel(path), doc, walker.problems).schema(file_validator("settings.schema.json"), value,
                                                                   "", ""):
        return fallback
    checker = FileChecker(walker.rel(path), doc, walker.problems)
    for name, body in (value.get("environments") or {}).items():
        if isinstance(body, dict) and "kibana_url" in body and "kibana_url_env" in body:
            checker.add(join_path("environments", name), f"environment {name!r} has both kibana_url and "
                        "kibana_url_env; keep one (the URL itself, or the name of the variable holding it)")
    vault = value.get("vault") or {}
    settings = Settings(
        id_mode=value.get("id_mode", "uuid5"),
        vault_mounts=tuple(vault.get("mounts") or ()),
        allow_env=tuple(value.get("allow_env") or ()),
        file_roots=tuple(value.get("file_roots") or ()),
        allow_plaintext_secrets=bool(value.get("allow_plaintext_secrets", False)) or allow_plaintext,
        vars=dict(value.get("vars") or {}),
        environments={name: _environment(name, body or {}) for name, body in (value.get("environments") or {}).items()},
    )
    return replace(settings, file_roots=_file_roots(settings, env, offline, checker))


def _file_roots(settings: Settings, env: Mapping[str, str] | None, offline: bool,
                checker: FileChecker) -> tuple[str, ...]:
    """The entries with their `${env:..}` expanded; one that cannot be is an error at its line (an unset
    variable: a warning offline, as for env-fed vars), and is left out, never kept as written."""
    roots: list[str] = []
    for i, entry in enumerate(settings.file_roots):
        try:
            roots.append(expand_root(entry, env or {}, settings))
        except RootError as exc:
            if not (exc.unset and env is None):
                checker.add(join_path("file_roots", i), str(exc), "warning" if exc.unset and offline else "error")
    return tuple(roots)


def _environment(name: str, body: Mapping[str, Any]) -> Environment:
    spaces = body.get("spaces")
    return Environment(
        name=name, kibana_url=body.get("kibana_url"), kibana_url_env=body.get("kibana_url_env"),
        credentials=dict(body.get("credentials") or {}), spaces=None if spaces is None else tuple(spaces),
        record=dict(body.get("record") or {}), vars=dict(body.get("vars") or {}),
        preconfigured=tuple(pre) if isinstance(pre := body.get("preconfigured", False), list) else bool(pre),
    )


def read_space_settings(walker: Walker, found: tuple[Path, Path] | None) -> SpaceSettings:
    """A space's _space.yaml, or the defaults when it has none or it has problems (`walker` holds them)."""
    if found is None:
        return SpaceSettings()
    path, real = found
    doc = walker.document(path, real)
    if doc is None:
        return SpaceSettings()
    value = {} if doc.value is None else doc.value
    if FileChecker(walker.rel(path), doc, walker.problems).schema(file_validator("space-settings.schema.json"),
                                                                   value, "", ""):
        return SpaceSettings()
    return SpaceSettings(prune=bool(value.get("prune", False)), ignore=tuple(value.get("ignore") or ()))
