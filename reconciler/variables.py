"""`${var:NAME}`: the values that differ between environments, substituted offline.

    name:   "Jira (${var:env})"               inside a string: the value's text
    config: {projectKey: ${var:jira_project}}  the whole value: the value itself, typed (true, 587, a list)
    secrets: ${vault:kv/${var:region}/slack#url}   inside a reference's path: one level, text only
    $${var:x}                                  the literal text "${var:x}" (in name and config)

A value comes from the selected environment's `vars`, else the top-level `vars` of kcr.yaml; `env`
(the environment's name) and `space` (the connector's space, per copy of a fanned-out connector) are
built in. A var's own value may hold `${var:OTHER}` and `${env:NAME}`: a variable of the run that is
*not* secret (a region, a project key), shown in plans like any config; the exfiltration guard
applies to it as to secrets. Secret backends (`${vault:..}`, `${file:..}`) are refused in vars: a
secret belongs in `secrets`, where it is never shown.

Values are resolved when used, so an unused var may stay unset; a cycle or an undefined name is an
error naming the var and the environment. No I/O besides the environment mapping given."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import JSON, Settings
from reconciler.secret_backends import BACKENDS
from reconciler.secret_backends.guard import guard_refusal

BUILT_INS = ("env", "space")
_VAR = re.compile(r"(\$?)\$\{var:([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_IN_VAR = re.compile(r"(\$?)\$\{([a-z][a-z0-9_-]*):([^}]*)\}")


class VarError(ValueError):
    """A var that cannot be substituted. Var values are not secret, but messages name vars, never echo
    the string they were found in (it may be a misplaced secret)."""


class UnsetVar(VarError):
    """A var fed by `${env:NAME}` whose variable is not set in this run: offline validation (an MR job
    may not see an environment-scoped variable) says so as a warning; plan and apply refuse."""


def mentions_var(text: str) -> bool:
    return any(not m.group(1) for m in _VAR.finditer(text))


@dataclass
class Scope:
    """The vars of one environment (or of a repository without environments: `environment` None) and
    one space. `env` is the run's environment mapping, for env-fed vars."""

    settings: Settings
    environment: str | None
    env: Mapping[str, str]
    jwt_var: str
    space: str = ""
    _resolved: dict[str, JSON] = field(default_factory=dict)  # the vars whose value is the same in every space
    _by_space: set[str] = field(default_factory=set)  # the vars reading ${var:space}, directly or through others

    def for_space(self, space: str) -> Scope:
        """The same vars in `space`: a var that does not read ${var:space} is resolved once per
        environment; one that does is resolved again for each copy (never the first copy's value)."""
        scope = Scope(self.settings, self.environment, self.env, self.jwt_var, space)
        scope._resolved, scope._by_space = self._resolved, self._by_space
        return scope

    @property
    def where(self) -> str:
        return f"environment {self.environment!r}" if self.environment else "kcr.yaml"

    def declared(self) -> Mapping[str, JSON]:
        own = self.settings.environments[self.environment].vars if self.environment else {}
        return {**self.settings.vars, **own}

    def value(self, name: str, chain: tuple[str, ...] = ()) -> JSON:
        """The typed value of `name`, resolved (its own ${var:}/${env:} substituted)."""
        if name == "space":
            self._by_space.update(chain)
            return self.space
        if name == "env":
            if self.environment is None:
                raise VarError("${var:env} is the environment's name, and kcr.yaml declares no environments; "
                               "declare `environments:` or write the value itself")
            return self.environment
        if name in self._resolved:
            return copy.deepcopy(self._resolved[name])
        if name in chain:
            cycle = " -> ".join((*chain[chain.index(name):], name))
            raise VarError(f"vars form a cycle in {self.where}: {cycle}; give one of them a literal value")
        if not _NAME.fullmatch(name):
            raise VarError(f"${{var:{name[:40]}}}: a var name is letters, digits and '_', not starting with a digit")
        declared = self.declared()
        if name not in declared:
            raise VarError(self.undefined(name))
        value = self._resolve(declared[name], (*chain, name))
        if name not in self._by_space:
            self._resolved[name] = value
        return copy.deepcopy(value)

    def undefined(self, name: str) -> str:
        if self.environment is None:
            return (f"${{var:{name}}} is not defined: add `{name}` to `vars:` in kcr.yaml")
        return (f"${{var:{name}}} is not defined for environment {self.environment!r}: add `{name}` to "
                f"environments.{self.environment}.vars (or to the top-level `vars:` defaults) in kcr.yaml")

    def _resolve(self, value: JSON, chain: tuple[str, ...]) -> JSON:
        if isinstance(value, dict):
            return {k: self._resolve(v, chain) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v, chain) for v in value]
        if not isinstance(value, str):
            return value
        whole = _IN_VAR.fullmatch(value)
        if whole and not whole.group(1) and whole.group(2) == "var":
            return self.value(whole.group(3), chain)
        return _IN_VAR.sub(lambda m: self._part(m, chain), value)

    def _part(self, match: re.Match[str], chain: tuple[str, ...]) -> str:
        """One `${scheme:target}` inside a var's own value: another var, or a non-secret variable."""
        if match.group(1):
            return match.group(0)[1:]  # '$${' is a literal '${'
        scheme, target, var = match.group(2), match.group(3), chain[-1]
        if scheme == "var":
            return self.text(target, chain)
        if scheme != "env":
            kind = "a secret reference" if scheme in BACKENDS else f"'${{{scheme}:'"
            raise VarError(f"var `{var}` ({self.where}) holds {kind}: vars are shown in plans, so only "
                           "${env:NAME} (a non-secret variable) may feed one; put secrets under `secrets:`")
        refusal = guard_refusal(target, self.settings, self.jwt_var)
        if refusal:
            raise VarError(f"var `{var}` ({self.where}): {refusal}")
        if target not in self.env:
            raise UnsetVar(f"var `{var}` ({self.where}) reads ${{env:{target}}}, which is not set; set it, or "
                           f"give `{var}` a literal value")
        return self.env[target]

    def text(self, name: str, chain: tuple[str, ...] = ()) -> str:
        """The value of `name` as it reads inside a longer string."""
        value = self.value(name, chain)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, str):
            return value
        kind = "null" if value is None else type(value).__name__.replace("dict", "a mapping").replace("list", "a list")
        raise VarError(f"${{var:{name}}} holds {kind} ({self.where}), which cannot stand inside a string; "
                       "write it as the whole value")

    def substitute(self, value: Any) -> Any:
        """`value` (a name or config) with every ${var:} replaced; the original is not modified."""
        if isinstance(value, dict):
            return {k: self.substitute(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.substitute(v) for v in value]
        if not isinstance(value, str) or "${var:" not in value:
            return value
        whole = _VAR.fullmatch(value)
        if whole and not whole.group(1):
            return self.value(whole.group(2))
        return _VAR.sub(lambda m: m.group(0)[1:] if m.group(1) else self.text(m.group(2)), value)

    def in_text(self, value: Any) -> Any:
        """`value` (a connector's name) with every ${var:} replaced as text: a name is a string, so
        `name: ${var:release}` holding 2 is "2", and one holding a list is refused, never dropped."""
        if not isinstance(value, str) or "${var:" not in value:
            return value
        return _VAR.sub(lambda m: m.group(0)[1:] if m.group(1) else self.text(m.group(2)), value)

    def in_secret(self, value: Any) -> Any:
        """`value` (a secrets block) with ${var:} replaced inside its reference templates, as text; a
        '$${' escape is left for the reference parser. A value holding '${' would make a new reference."""
        if isinstance(value, dict):
            return {k: self.in_secret(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.in_secret(v) for v in value]
        if not isinstance(value, str) or "${var:" not in value:
            return value

        def one(m: re.Match[str]) -> str:
            if m.group(1):
                return m.group(0)
            text = self.text(m.group(2))
            if "${" in text or "}" in text:
                raise VarError(f"${{var:{m.group(2)}}} ({self.where}) holds '${{' or '}}', which inside a secret "
                               "reference would change what is read")
            return text

        return _VAR.sub(one, value)

