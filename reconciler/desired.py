"""The repository's files -> DesiredState, with every problem found at once.

Reading is offline and never raises for bad input: `repo_layout` decides which entries are read (and
makes every other one a problem), `settings_files` reads kcr.yaml and _space.yaml, `connector_checks`
checks each connector file item by item, and this module ties the connectors together (ids unique
within a space and across spaces, since Kibana's ids are global) and returns the state only when no
error was found. Resolving the secret references (environment, files, Vault) is
`validate.check_secrets`, opt-in."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from reconciler.connector_checks import ConnectorChecks, Declared, locations_by_item
from reconciler.errors import ConfigError, Problem, ValidationError
from reconciler.file_problems import FileChecker, short
from reconciler.model import (
    ConnectorSpec,
    DesiredSpace,
    DesiredState,
    Environment,
    Location,
    Settings,
    SpaceSettings,
)
from reconciler.model import owner_label as connector_label
from reconciler.repo_layout import SETTINGS_FILE, Walker
from reconciler.settings_files import read_settings, read_space_settings
from reconciler.user_types import BUNDLED_ONLY, TypeCatalog
from reconciler.user_types import load as load_types
from reconciler.variables import Scope, VarError
from reconciler.yamlload import join_path

FANOUT_DIR = "_all"  # connectors/_all/: connectors copied into several spaces


@dataclass(frozen=True)
class LoadResult:
    """What loading found: the state of each environment checked (none when any error was found; the key
    None for a repository without environments), every problem, and counts."""

    states: Mapping[str | None, DesiredState]
    problems: tuple[Problem, ...]
    files: int = 0
    connectors: int = 0
    spaces: int = 0
    environments: tuple[str, ...] = ()  # the environments checked (empty: none declared)

    @property
    def state(self) -> DesiredState | None:
        """The one state, when exactly one environment (or none declared) was checked."""
        return next(iter(self.states.values())) if len(self.states) == 1 else None

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")


@dataclass(frozen=True)
class _File:
    """One parsed connector file: `space` None for connectors/_all/ (copied into several spaces)."""

    space: str | None
    checker: FileChecker
    items: tuple[Any, ...]
    locations: Mapping[int, Mapping[str, Location]]
    defaults: Mapping[str, Any]  # the file-level `environments:` and `spaces:`
    uses_vars: tuple[bool, ...]  # per item: does it read any ${var:}? (one that does not reads the same everywhere)


def _duplicates(declared: Sequence[Declared], problems: list[Problem]) -> None:
    """Ids unique within a space across its files, and globally since Kibana's ids are global."""
    in_space: dict[tuple[str, str], Declared] = {}
    everywhere: dict[str, Declared] = {}
    for item in declared:
        loc = item.location
        first = in_space.get((item.space, item.id))
        if first is not None:
            if first.key == item.key:
                msg = f"duplicate id {item.key!r} in space {item.space!r} (first declared at {first.location})"
            else:
                msg = (f"ids {first.key!r} (at {first.location}) and {item.key!r} both become Kibana id "
                       f"{item.id} in space {item.space!r}")
        else:
            in_space[(item.space, item.id)] = item
            other = everywhere.setdefault(item.id, item)
            if other.space == item.space:
                continue
            msg = (f"Kibana id {item.id} of {item.space}/{item.key} is also used by {other.space}/{other.key} "
                   f"(at {other.location}); Kibana ids are global across spaces")
        problems.append(Problem(loc.file if loc else item.space, msg, loc.line if loc else None,
                                loc.column if loc else None, item.path))


def load(root: Path, spaces: Sequence[str] | None = None, env: Mapping[str, str] | None = None, *,
         allow_plaintext_secrets: bool = False, environment: str | None = None, offline: bool = False) -> LoadResult:
    """Read and check the whole repository (or the given spaces) for `environment`, or for every
    environment kcr.yaml declares when it is None; never raises for bad input. Files are parsed once;
    connectors are checked once per environment, after their ${var:} are substituted."""
    walker = Walker(root)
    problems = walker.problems
    settings = read_settings(walker, allow_plaintext_secrets, env, offline)
    found = walker.space_directories()
    if found is None:
        return LoadResult({}, tuple(problems))
    shared_dir = found.pop(FANOUT_DIR, None)
    types = load_types(walker)  # kcr.yaml `types:` and schemas/types/*.json: the repository's own schemas
    checks = ConnectorChecks(settings, env or {}, types=types)
    space_settings: dict[str, SpaceSettings] = {}
    files: list[_File] = []
    file_count = 0
    for space, directory in [*found.items(), *([(None, shared_dir)] if shared_dir is not None else [])]:
        settings_file, paths = walker.space_entries(directory)
        if space is None:
            if settings_file is not None:
                walker.refuse(settings_file[0], f"connectors/{FANOUT_DIR}/ holds connectors copied into several "
                              "spaces and has no space settings; put prune/ignore in each space's _space.yaml")
        else:
            space_settings[space] = read_space_settings(walker, settings_file)
        for path, real in paths:
            file_count += 1
            doc = walker.document(path, real)
            if doc is not None:
                checker = FileChecker(walker.rel(path), doc, problems)
                items = checks.envelope(checker)
                checks.no_schema(checker, items)
                defaults = doc.value if isinstance(doc.value, dict) else {}
                uses = tuple("${var:" in json.dumps(item, default=repr) for item in items) \
                    if "${var:" in json.dumps(items, default=repr) else (False,) * len(items)  # most files: none
                files.append(_File(space, checker, tuple(items), locations_by_item(doc), defaults, uses))
    repo_spaces = sorted(set(space_settings) | _named_spaces(files))
    _check_presence_keys(files, settings, problems)
    in_scope = _environments(settings, environment, repo_spaces, problems)
    named = tuple(n for n in in_scope if n)
    if spaces:
        for space in spaces:
            if space not in repo_spaces:
                problems.append(Problem(f"connectors/{space}", f"space {short(space)} has no directory "
                                        f"connectors/{space}/"))
            elif environment in settings.environments and space not in _environment_spaces(
                    settings, environment, repo_spaces, None):
                problems.append(Problem(SETTINGS_FILE, f"space {short(space)} is not one of environment "
                                        f"{environment!r}'s spaces (environments.{environment}.spaces)"))
    item_count = sum(len(f.items) for f in files)
    read = _Read(settings, env or {}, space_settings, found, files, walker, offline, types, {} if len(in_scope) > 1
                 else None)
    states: dict[str | None, DesiredState] = {}
    found_per_env: list[tuple[str | None, list[Problem]]] = []
    for name in in_scope:
        env_problems: list[Problem] = []
        wanted = _environment_spaces(settings, name, repo_spaces, spaces)
        state = _one_environment(read, name, wanted, env_problems)
        found_per_env.append((name, env_problems))
        if state is not None:
            states[name] = state
    problems.extend(_merged(found_per_env))
    problems.sort(key=lambda p: (p.file, p.line or 0, p.column or 0))
    if any(p.severity == "error" for p in problems):
        states = {}
    return LoadResult(states, tuple(problems), file_count, item_count, len(repo_spaces), named)


def _named_spaces(files: Sequence[_File]) -> set[str]:
    """The spaces connectors/_all/ names explicitly: they are the repository's even without a directory."""
    named: set[str] = set()
    for f in files:
        if f.space is not None:
            continue
        for value in (f.defaults.get("spaces"), *(i.get("spaces") for i in f.items if isinstance(i, dict))):
            if isinstance(value, list):
                named.update(s for s in value if isinstance(s, str))
    return named


def _check_presence_keys(files: Sequence[_File], settings: Settings, problems: list[Problem]) -> None:
    """`spaces:` only in connectors/_all/, `environments:` only naming declared environments: a typo
    there would silently leave a connector out of an environment, and in a pruning space delete it."""
    declared = sorted(settings.environments)
    for f in files:
        places = [("", f.defaults), *((join_path("connectors", i), item) for i, item in enumerate(f.items)
                                      if isinstance(item, dict) and ("spaces" in item or "environments" in item))]
        for base, body in places:
            if f.space is not None and "spaces" in body:
                f.checker.add(join_path(base, "spaces"), f"`spaces:` is read only in connectors/{FANOUT_DIR}/, where a "
                              f"connector is copied into several spaces; move it to connectors/{FANOUT_DIR}/ or "
                              "remove `spaces:`")
            names = body.get("environments")
            if not isinstance(names, list):
                continue
            if not declared:
                f.checker.add(join_path(base, "environments"), "`environments:` names environments, and kcr.yaml "
                              "declares none; declare them under `environments:` in kcr.yaml or remove this key")
                continue
            for name in names:
                if isinstance(name, str) and name not in settings.environments:
                    hint = difflib.get_close_matches(name, declared, n=1)
                    tail = f"; did you mean {hint[0]!r}?" if hint else ""
                    f.checker.add(join_path(base, "environments"), f"environment {short(name)} is not declared in "
                                  f"kcr.yaml (declared: {', '.join(declared)}){tail}")


def _environments(settings: Settings, asked: str | None, repo_spaces: Sequence[str],
                  problems: list[Problem]) -> list[str | None]:
    """The environments to check: the one asked for, else every one declared, else [None]."""
    declared = sorted(settings.environments)
    for name in declared:
        for space in settings.environments[name].spaces or ():
            if space not in repo_spaces:
                problems.append(Problem(SETTINGS_FILE, f"environment {name!r} lists space {space!r}, which the "
                                        f"repository does not declare (no connectors/{space}/ and no "
                                        f"connectors/{FANOUT_DIR}/ connector names it)",
                                        path=f"environments.{name}.spaces"))
    if asked is None:
        return list(declared) or [None]
    if not declared:
        problems.append(Problem(SETTINGS_FILE, f"environment {asked!r} was selected (--env or KCR_ENV) but kcr.yaml "
                                "declares no environments; unset KCR_ENV or declare `environments:`"))
        return []
    if asked not in settings.environments:
        problems.append(Problem(SETTINGS_FILE, f"environment {asked!r} is not declared in kcr.yaml (declared: "
                                f"{', '.join(declared)})"))
        return []
    return [asked]


def _environment_spaces(settings: Settings, name: str | None, repo_spaces: Sequence[str],
                        asked: Sequence[str] | None) -> list[str]:
    own = settings.environments[name].spaces if name is not None else None
    wanted = [s for s in repo_spaces if own is None or s in own]
    return [s for s in wanted if not asked or s in asked]


def _present(f: _File, item: Mapping[str, Any], name: str | None) -> bool:
    names = item.get("environments", f.defaults.get("environments"))
    return name is None or not isinstance(names, list) or name in names


def _copies(f: _File, item: Mapping[str, Any], wanted: Sequence[str]) -> list[str]:
    """The spaces a connector of connectors/_all/ is copied into: its `spaces:` (the file's default;
    'all' or absent: every space of the environment) that the environment has."""
    named = item.get("spaces", f.defaults.get("spaces", "all"))
    return list(wanted) if named == "all" or not isinstance(named, list) else [s for s in wanted if s in named]


@dataclass(frozen=True)
class _Read:
    """The repository as read once, for checking each environment in turn."""

    settings: Settings
    env: Mapping[str, str]
    space_settings: Mapping[str, SpaceSettings]
    directories: Mapping[str, Path]
    files: Sequence[_File]
    walker: Walker
    offline: bool  # `kcr validate`: an env-fed var unset here is a warning
    types: TypeCatalog = BUNDLED_ONLY  # the types the repository's connectors are checked against
    # (file, item, space, substituted content) -> what checking it found; shared by the environments (None: one)
    memo: dict[tuple[str, int, str, str], tuple[ConnectorSpec | None, tuple[Problem, ...], tuple[Declared, ...]]] \
        | None = field(default_factory=dict)


def _one_environment(read: _Read, name: str | None, wanted: Sequence[str],
                     problems: list[Problem]) -> DesiredState | None:
    settings, env, space_settings, directories, files, walker = (
        read.settings, read.env, read.space_settings, read.directories, read.files, read.walker)
    checks = ConnectorChecks(settings, env, offline=read.offline, types=read.types)
    scope = Scope(settings, name, env, checks.jwt_var)
    scopes = {space: scope.for_space(space) for space in wanted}
    environment = settings.environments.get(name) if name else None
    specs: dict[str, list[ConnectorSpec]] = {space: [] for space in wanted}
    for f in files:
        checker = FileChecker(f.checker.file, f.checker.doc, problems)
        own = None if f.space is None else [f.space] if f.space in scopes else []  # else `_copies`
        for i, item in enumerate(f.items):
            if not isinstance(item, dict) or not _present(f, item, name):
                continue
            for space in own if own is not None else _copies(f, item, wanted):
                spec = _checked(read, checks, checker, f, i, item, scopes[space])
                if spec is not None:
                    specs[space].append(_placed(spec, item, environment))
    _duplicates(checks.declared, problems)
    if any(p.severity == "error" for p in problems):
        return None
    desired = {space: DesiredSpace(space, space_settings.get(space, SpaceSettings()), tuple(specs[space]),
                                   directory=walker.rel(directories[space]) if space in directories else "")
               for space in wanted}
    return DesiredState(desired, settings, str(walker.root), environment=name)


def _placed(spec: ConnectorSpec, item: Mapping[str, Any], environment: Environment | None) -> ConnectorSpec:
    """Whether kibana.yml holds the connector here: its own `preconfigured: true|false`, else its
    environment's `preconfigured:` (true, or a glob of its key or space/key). Decided after the checks,
    which environments share, since the same connector may be API-managed in one and preconfigured in
    another."""
    own = item.get("preconfigured")
    wanted = environment.preconfigured if environment is not None else False
    if isinstance(own, bool):
        placed = own
    elif isinstance(wanted, tuple):
        placed = any(fnmatchcase(spec.key, g) or fnmatchcase(f"{spec.space}/{spec.key}", g) for g in wanted)
    else:
        placed = wanted
    return replace(spec, preconfigured=True) if placed else spec


def _checked(read: _Read, checks: ConnectorChecks, checker: FileChecker, f: _File, index: int,
             item: Mapping[str, Any], scope: Scope) -> ConnectorSpec | None:
    """One connector checked for one environment and space. The checks are a function of the space and
    the substituted config and secrets alone (the name only has to be a non-blank string), so a
    connector that reads the same in several environments, or differs only in its name (most do), is
    checked once and its result (spec, problems, declared id) replayed with its own name: validate and
    --all-envs cost a check per distinct connector, not per environment."""
    name: Any = item.get("name")
    try:
        if read.memo is None:
            key: tuple[str, int, str, str] | None = None  # one environment checked: nothing to share
        elif not f.uses_vars[index]:
            key = (f.checker.file, index, scope.space, "")
        else:
            name = scope.in_text(name)
            key = (f.checker.file, index, scope.space, json.dumps(
                [scope.substitute(item.get("config")), scope.in_secret(item.get("secrets"))], sort_keys=True,
                default=repr))
    except VarError:
        key = None  # said by the check itself, naming the environment: never shared
    if not isinstance(name, str) or not name.strip():
        key = None  # the name's own problem is this environment's
    hit = read.memo.get(key) if key is not None and read.memo is not None else None
    if hit is not None:
        spec, found, declared = hit
        checker.problems.extend(found)
        checks.declared.extend(declared)
        return spec if spec is None or spec.name == name else replace(spec, name=name)
    problems_before, declared_before = len(checker.problems), len(checks.declared)
    spec = checks.connector(scope.space, item, join_path("connectors", index), checker, f.locations.get(index, {}),
                            scope)
    if key is not None and read.memo is not None:
        read.memo[key] = (spec, tuple(checker.problems[problems_before:]),
                          tuple(checks.declared[declared_before:]))
    return spec


def _merged(found: Sequence[tuple[str | None, list[Problem]]]) -> list[Problem]:
    """Each environment's problems, once: a problem every environment has (most are: a bad type, a
    blank name) is said once; one that only some have names them."""
    if len(found) <= 1:
        return [p for _, problems in found for p in dict.fromkeys(problems)]
    where: dict[Problem, list[str]] = {}
    for name, problems in found:
        for problem in dict.fromkeys(problems):
            where.setdefault(problem, []).append(str(name))
    out = []
    for problem, names in where.items():
        if len(names) == len(found) or all(f"environment {n!r}" in problem.message for n in names):
            out.append(problem)  # every environment has it, or it names its own
        else:
            label = "environment" if len(names) == 1 else "environments"
            out.append(replace(problem, message=f"in {label} {', '.join(names)}: {problem.message}"))
    return out


def load_repository(root: Path, spaces: Sequence[str] | None = None, env: Mapping[str, str] | None = None, *,
                    allow_plaintext_secrets: bool = False, environment: str | None = None) -> DesiredState:
    """The desired state of one environment; raises ValidationError carrying every error (warnings are
    dropped), and ConfigError when kcr.yaml declares environments and none was selected."""
    result = load(root, spaces, env, allow_plaintext_secrets=allow_plaintext_secrets, environment=environment)
    if result.errors:
        raise ValidationError(result.errors)
    if result.state is None or (environment is None and result.environments):  # one declared is still a choice
        raise ConfigError(no_environment(result.environments))
    return result.state


def no_environment(declared: Sequence[str]) -> str:
    return (f"kcr.yaml declares environments ({', '.join(declared)}): select one with --env NAME or KCR_ENV")


def owner_label(spec: ConnectorSpec) -> str:
    return connector_label(spec.space, spec.key, spec.location.file if spec.location else None)


def load_settings(root: Path) -> Settings:
    """The repository settings alone: `kcr apply plan.json` needs them (Vault mounts, the env guard)
    without re-reading the connector files, which may have moved on since the plan was made."""
    walker = Walker(root)
    settings = read_settings(walker, False)
    if walker.problems:
        raise ValidationError(walker.problems)
    return settings
