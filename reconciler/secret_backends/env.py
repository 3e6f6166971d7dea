"""`${env:NAME}`: an environment variable of the run, behind the exfiltration guard."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from reconciler.secret_backends.base import Context, Read, Unresolved
from reconciler.secret_backends.guard import guard_refusal, jwt_var

if TYPE_CHECKING:
    from reconciler.references import Reference

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # used with fullmatch: "$" would let "A\n" through


class EnvBackend:
    scheme = "env"
    form = "${env:NAME}"
    once_per_run = False

    def problem(self, target: str, column: int) -> str | None:
        if _ENV_NAME.fullmatch(target):
            return None
        return (f"${{env:...}} at column {column} needs a variable name of letters, digits and '_' "
                "(not starting with a digit)")

    def read(self, refs: Sequence[Reference], context: Context) -> Mapping[str, Read | Unresolved]:
        return {ref.text: self._one(ref.target, context) for ref in refs}

    @staticmethod
    def _one(name: str, context: Context) -> Read | Unresolved:
        refusal = guard_refusal(name, context.settings, jwt_var(context.env))
        if refusal:
            return Unresolved(refusal)
        if name not in context.env:
            return Unresolved(f"environment variable {name} is not set")
        return Read(context.env[name])
