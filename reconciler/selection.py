"""Selective runs (`--target`, `--exclude`): which connectors one plan may touch.

A connector is selected when it matches any target (or none is given) and no exclude, each a
fnmatch glob tried against its Kibana id, its repository key, `space/key` and its address
`space/id`. Plain data with no dependencies, so the planner stays pure (it is given the selection),
a saved plan can record it, and rendering can say the plan is partial.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, TypeVar

from reconciler.errors import ConfigError

T = TypeVar("T")
Named = tuple[str, str, str | None]  # (space, Kibana id, repository key or None for a live-only connector)


@dataclass(frozen=True)
class Selection:
    target: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def of(cls, target: Iterable[str], exclude: Iterable[str]) -> Selection | None:
        """None when nothing narrows the run: a whole plan is not a partial one."""
        t, e = tuple(dict.fromkeys(target)), tuple(dict.fromkeys(exclude))
        return cls(t, e) if t or e else None

    def selects(self, space: str, connector_id: str, key: str | None = None) -> bool:
        names = _names(space, connector_id, key)
        return (not self.target or any(_hit(p, names) for p in self.target)) and not any(
            _hit(p, names) for p in self.exclude)

    def narrow(self, items: Sequence[T], named: Callable[[T], Named], declared: Iterable[Named]) -> list[T]:
        """The selected `items` (the planner's changes); a target matching none of them nor any declared
        connector is refused, so a typo never silently plans nothing."""
        known = [named(i) for i in items]
        missing = self.unmatched([*known, *declared])
        if missing:
            raise ConfigError(f"--target {', '.join(missing)}: matches no connector in the planned spaces "
                              "(a Kibana id, a key, SPACE/KEY, SPACE/ID, or a glob of them)")
        return [i for i, k in zip(items, known, strict=True) if self.selects(*k)]

    def unmatched(self, connectors: Iterable[Named]) -> list[str]:
        """The targets no (space, id, key) matches: a typo must not silently plan nothing."""
        names = [_names(*c) for c in connectors]
        return [p for p in self.target if not any(_hit(p, n) for n in names)]

    def described(self) -> str:
        return " ".join([*(f"--target {t}" for t in self.target), *(f"--exclude {e}" for e in self.exclude)])

    def to_json(self) -> dict[str, list[str]]:
        return {"target": list(self.target), "exclude": list(self.exclude)}

    @classmethod
    def from_json(cls, body: Mapping[str, Any] | None) -> Selection | None:
        return None if body is None else cls.of(body.get("target", ()), body.get("exclude", ()))


def _names(space: str, connector_id: str, key: str | None) -> Sequence[str]:
    names = [connector_id, f"{space}/{connector_id}"]
    if key is not None:
        names += [key, f"{space}/{key}"]
    return names


def _hit(pattern: str, names: Sequence[str]) -> bool:
    return any(fnmatchcase(n, pattern) for n in names)
