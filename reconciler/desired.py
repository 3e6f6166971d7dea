"""The repository's files -> DesiredState, with every problem found at once.

Reading is offline and never raises for bad input: `repo_layout` decides which entries are read (and
makes every other one a problem), `connector_checks` checks each connector file item by item, and this
module reads the settings files, ties the connectors together (ids unique within a space and across
spaces, since Kibana's ids are global) and returns the state only when no error was found. Resolving
the secret references (environment, files, Vault) is `validate.check_secrets`, opt-in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.connector_checks import ConnectorChecks, Declared
from reconciler.errors import Problem, ValidationError
from reconciler.file_problems import FileChecker, file_validator, short
from reconciler.model import ConnectorSpec, DesiredSpace, DesiredState, Settings, SpaceSettings
from reconciler.model import owner_label as connector_label
from reconciler.repo_layout import Walker


@dataclass(frozen=True)
class LoadResult:
    """What loading found: the state (None when any error was found), every problem, and counts."""

    state: DesiredState | None
    problems: tuple[Problem, ...]
    files: int = 0
    connectors: int = 0
    spaces: int = 0

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")


def _settings(walker: Walker, allow_plaintext: bool) -> Settings:
    """kcr.yaml, or the defaults when there is none or it has problems (which `walker` then holds)."""
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
    vault = value.get("vault") or {}
    return Settings(
        id_mode=value.get("id_mode", "uuid5"),
        vault_mounts=tuple(vault.get("mounts") or ()),
        allow_env=tuple(value.get("allow_env") or ()),
        file_roots=tuple(value.get("file_roots") or ()),
        allow_plaintext_secrets=bool(value.get("allow_plaintext_secrets", False)) or allow_plaintext,
    )


def _space_settings(walker: Walker, found: tuple[Path, Path] | None) -> SpaceSettings:
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
         allow_plaintext_secrets: bool = False) -> LoadResult:
    """Read and check the whole repository (or the given spaces); never raises for bad input."""
    walker = Walker(root)
    problems = walker.problems
    settings = _settings(walker, allow_plaintext_secrets)
    found = walker.space_directories()
    if found is None:
        return LoadResult(None, tuple(problems))
    space_dirs = found
    if spaces:
        for space in spaces:
            if space not in space_dirs:
                problems.append(Problem(f"connectors/{space}", f"space {short(space)} has no directory "
                                        f"connectors/{space}/"))
        space_dirs = {s: d for s, d in space_dirs.items() if s in set(spaces)}
    checks = ConnectorChecks(settings, env or {})
    files = 0
    desired: dict[str, DesiredSpace] = {}
    for space, directory in space_dirs.items():
        settings_file, paths = walker.space_entries(directory)
        space_settings = _space_settings(walker, settings_file)
        specs: list[ConnectorSpec] = []
        for path, real in paths:
            files += 1
            doc = walker.document(path, real)
            if doc is not None:
                specs.extend(checks.file(space, FileChecker(walker.rel(path), doc, problems)))
        desired[space] = DesiredSpace(space, space_settings, tuple(specs), directory=walker.rel(directory))
    _duplicates(checks.declared, problems)
    problems.sort(key=lambda p: (p.file, p.line or 0, p.column or 0))
    has_errors = any(p.severity == "error" for p in problems)
    state = None if has_errors else DesiredState(desired, settings, str(root))
    return LoadResult(state, tuple(problems), files, checks.items, len(desired))


def load_repository(root: Path, spaces: Sequence[str] | None = None, env: Mapping[str, str] | None = None, *,
                    allow_plaintext_secrets: bool = False) -> DesiredState:
    """The desired state; raises ValidationError carrying every error (warnings are dropped)."""
    result = load(root, spaces, env, allow_plaintext_secrets=allow_plaintext_secrets)
    if result.state is None:
        raise ValidationError(result.errors)
    return result.state


def owner_label(spec: ConnectorSpec) -> str:
    return connector_label(spec.space, spec.key, spec.location.file if spec.location else None)


def load_settings(root: Path) -> Settings:
    """The repository settings alone: `kcr apply plan.json` needs them (Vault mounts, the env guard)
    without re-reading the connector files, which may have moved on since the plan was made."""
    walker = Walker(root)
    settings = _settings(walker, False)
    if walker.problems:
        raise ValidationError(walker.problems)
    return settings
