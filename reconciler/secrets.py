"""Resolution: the secret templates of many connectors turned into values, each reference read by its
scheme's backend (`reconciler.secret_backends`), and a connector's result as `ResolvedSecrets`.

Values live in `Secret` (masked in repr/str/format, hence in logs) and `ResolvedSecrets`; the plain
text leaves only through `Secret.reveal()` / `ResolvedSecrets.payload()`, for the HTTP body to Kibana,
and as HMACs in the plan's secret digest. Every error names the reference and the connector that uses
it, never a value.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from reconciler.errors import SecretError
from reconciler.masking import Secret
from reconciler.model import SecretDigest, Settings
from reconciler.references import Reference, ReferenceSyntaxError, parse_template, strings_in
from reconciler.secret_backends import BACKENDS, Context, Read, Unresolved
from reconciler.yamlload import join_path


def _reveal(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, Mapping):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reveal(v) for v in value]
    return value


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, repr=False)
class ResolvedSecrets:
    """One connector's secrets with every reference replaced by its value (leaves are `Secret`)."""

    values: Mapping[str, Any]
    vault_versions: Mapping[str, int] = field(default_factory=dict)  # reference text -> KV v2 version

    def payload(self) -> dict[str, Any]:
        """The plain values, for the HTTP body to Kibana and nothing else."""
        return {k: _reveal(v) for k, v in self.values.items()}

    def digest(self, connector_id: str, key: bytes | None) -> SecretDigest:
        """HMAC-SHA256 per top-level secret key over canonical JSON [connector_id, key, value]; without
        a key only the Vault versions are kept."""
        hmacs: dict[str, str] = {}
        if key:
            for name, value in self.payload().items():
                message = _canonical([connector_id, name, value])
                hmacs[name] = hmac.new(key, message, hashlib.sha256).hexdigest()
        return SecretDigest(hmacs=hmacs, vault_versions=dict(self.vault_versions))

    def __repr__(self) -> str:
        return f"ResolvedSecrets(keys={sorted(self.values)!r}, vault_versions={dict(self.vault_versions)!r})"

    __str__ = __repr__


class SecretResolver:
    """Turns the secret templates of many connectors into values: each distinct reference is read once
    per call by its backend, all of a scheme's references in one batch (Vault: one login, concurrent
    reads), and a once-per-run backend's values are kept for the run's later calls (plan, then apply)."""

    def __init__(self, env: Mapping[str, str], settings: Settings, root: Path,
                 vault_transport: httpx.BaseTransport | None = None) -> None:
        self.context = Context(env, settings, root, vault_transport)
        self._kept: dict[str, Read] = {}  # reference text -> what a once-per-run backend read

    def resolve_many(self, items: Mapping[str, Mapping[str, Any]]) -> dict[str, ResolvedSecrets]:
        """`items`: owner label -> secret templates. Raises SecretError listing every failure."""
        resolved, errors = self.resolve_collect(items)
        if errors:
            lines = [message for owner in sorted(errors) for message in errors[owner]]
            raise SecretError("cannot resolve secrets:\n" + "\n".join(f"  {line}" for line in lines))
        return resolved

    def resolve_collect(self, items: Mapping[str, Mapping[str, Any]]
                        ) -> tuple[dict[str, ResolvedSecrets], dict[str, list[str]]]:
        """Like resolve_many, but returns the failures per owner (owners with failures get no result)."""
        errors: dict[str, list[str]] = {}
        refs_by_owner: dict[str, list[Reference]] = {}
        for owner, templates in items.items():
            refs: list[Reference] = []
            for text in strings_in(templates):
                try:
                    refs.extend(parse_template(text).references)
                except ReferenceSyntaxError as exc:
                    errors.setdefault(owner, []).append(f"{owner}: {exc}")
            refs_by_owner[owner] = refs
        all_refs = {ref.text: ref for refs in refs_by_owner.values() for ref in refs}
        reads, failures = self._read(list(all_refs.values()))
        values = {text: read.value for text, read in reads.items()}
        out: dict[str, ResolvedSecrets] = {}
        for owner, templates in items.items():
            owner_errors = errors.setdefault(owner, [])
            for ref in dict.fromkeys(refs_by_owner[owner]):
                if ref.text in failures:
                    owner_errors.append(f"{ref.text} for {owner}: {failures[ref.text]}")
            if owner_errors:
                continue
            rendered = {k: self._render(v, values, owner, k, owner_errors) for k, v in templates.items()}
            if owner_errors:
                continue
            versions = {r.text: v for r in refs_by_owner[owner] if (v := reads[r.text].version) is not None}
            out[owner] = ResolvedSecrets(rendered, versions)
        return out, {owner: msgs for owner, msgs in errors.items() if msgs}

    def _read(self, refs: list[Reference]) -> tuple[dict[str, Read], dict[str, str]]:
        """Each reference's value, or why it failed, by reference text; one batch per scheme."""
        reads: dict[str, Read] = {}
        failures: dict[str, str] = {}
        pending: dict[str, list[Reference]] = {}
        for ref in refs:
            if ref.text in self._kept:
                reads[ref.text] = self._kept[ref.text]
            else:
                pending.setdefault(ref.scheme, []).append(ref)
        for scheme, batch in pending.items():
            backend = BACKENDS[scheme]
            try:
                results = backend.read(batch, self.context)
            except Unresolved as exc:  # the whole batch: no credentials, a failed login
                results = {ref.text: exc for ref in batch}
            for ref in batch:
                result = results.get(ref.text) or Unresolved(f"the {scheme} backend gave no answer for it")
                if isinstance(result, Unresolved):
                    failures[ref.text] = str(result)
                    continue
                reads[ref.text] = result
                if backend.once_per_run:
                    self._kept[ref.text] = result
        return reads, failures

    def _render(self, value: Any, values: Mapping[str, str], owner: str, path: str, errors: list[str]) -> Any:
        if isinstance(value, str):
            text = parse_template(value).render(values)
            if not text.strip():
                errors.append(f"secrets.{path} for {owner} resolves to a blank value, which Kibana refuses "
                              "('value '' is not valid'); check the variable, file or Vault key")
            return Secret(text)
        if isinstance(value, Mapping):
            return {k: self._render(v, values, owner, join_path(path, str(k)), errors) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._render(v, values, owner, join_path(path, i), errors) for i, v in enumerate(value)]
        return value
