"""The error tree. Every error kcr raises on purpose is a ReconcilerError with an exit code; the CLI
catches them once and prints the message. Messages say what is wrong, where, and what to do, and
never carry a secret value.

    ReconcilerError (1)
    ├── ValidationError        files, references, schemas (carries every Problem at once)
    ├── SecretError            a reference could not be resolved (names reference + connector)
    ├── ConfigError            bad flags or environment (Kibana URL, credentials, settings)
    ├── KibanaError            Kibana answered with an error or could not be reached
    │   ├── KibanaAuthError        401/403
    │   ├── KibanaNotFound         404
    │   ├── KibanaConflict         409
    │   └── KibanaUnavailable      transport failure or 5xx after retries
    ├── StateError             the record of applied secrets (backend, lock held)
    ├── GitLabError            GitLab's API, for MR notes and drift issues (its subclasses: gitlab_api.py)
    └── PlanFileError          a saved plan that cannot be read or is of another format

Failed, stale and blocked apply actions are results, not exceptions: apply_report.exit_code maps them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


class ExitCode:
    OK = 0
    ERROR = 1
    CHANGES = 2
    BLOCKED = 3


@dataclass(frozen=True)
class Problem:
    """One finding, placed where a person can act on it: in the user's files (`file` relative to the
    repository when possible, line, column and the field `path`), or in Kibana (`space`, and `id` when
    it is about one connector; `file` is then empty). Validation reports the first kind, the planner the
    second; both print as `where: message`, and each keeps its own JSON keys."""

    file: str
    message: str
    line: int | None = None
    column: int | None = None
    path: str | None = None  # the field, e.g. "connectors[2].config.apiUrl"
    severity: str = "error"  # "error" | "warning" | "drift" (the plan's: Kibana differs where kcr never writes)
    space: str | None = field(default=None, kw_only=True)
    id: str | None = field(default=None, kw_only=True)

    @classmethod
    def in_kibana(cls, space: str, id: str | None, severity: str, message: str) -> Problem:
        return cls("", message, severity=severity, space=space, id=id)

    def location(self) -> str:
        if self.line is None:
            return self.file
        if self.column is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"

    def where(self) -> str:
        if self.space is not None:
            return f"{self.space}/{self.id}" if self.id else self.space
        return self.location()

    def __str__(self) -> str:
        in_field = f" ({self.path})" if self.path else ""
        return f"{self.where()}: {self.message}{in_field}"

    def to_json(self) -> dict[str, object]:
        """A finding about Kibana has the saved plan's keys, one about files `kcr validate`'s."""
        if self.space is not None:
            return {"space": self.space, "id": self.id, "severity": self.severity, "message": self.message}
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "severity": self.severity,
            "message": self.message,
        }


class ReconcilerError(Exception):
    exit_code: int = ExitCode.ERROR


class ValidationError(ReconcilerError):
    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        count = len(self.problems)
        head = "\n".join(str(p) for p in self.problems[:50])
        more = f"\n... and {count - 50} more" if count > 50 else ""
        super().__init__(f"{head}{more}\n{count} problem{'s' if count != 1 else ''} found")

    def __reduce__(self) -> tuple[type[ValidationError], tuple[tuple[Problem, ...]]]:
        """Rebuilt from its problems (not its message) when it crosses a process: `--all-envs` workers."""
        return type(self), (self.problems,)


class SecretError(ReconcilerError):
    pass


class ConfigError(ReconcilerError):
    pass


class KibanaError(ReconcilerError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self) -> tuple[type[KibanaError], tuple[str, int | None]]:
        return type(self), (str(self), self.status)


class KibanaAuthError(KibanaError):
    pass


class KibanaNotFound(KibanaError):
    pass


class KibanaConflict(KibanaError):
    pass


class KibanaUnavailable(KibanaError):
    pass


class StateError(ReconcilerError):
    pass


class PlanFileError(ReconcilerError):
    pass
