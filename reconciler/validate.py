"""What `kcr validate` and `kcr types` compute, as data; the CLI only prints it and picks the exit code.

Loading the files is `desired` (offline); resolving every secret reference (`--resolve-secrets`) is
here, so that reading a repository never depends on the secret backends."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from reconciler.desired import load, owner_label
from reconciler.errors import Problem
from reconciler.model import ConnectorTypeInfo, DesiredState
from reconciler.secrets import SecretResolver
from reconciler.user_types import BUNDLED_ONLY, TypeCatalog


@dataclass(frozen=True)
class ValidationReport:
    problems: tuple[Problem, ...]
    files: int
    connectors: int
    spaces: int
    secrets_resolved: bool = False
    environments: tuple[str, ...] = ()  # the kcr.yaml environments checked

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors


def validate(root: Path, *, spaces: Sequence[str] | None = None, resolve_secrets: bool = False,
             env: Mapping[str, str] | None = None, vault_transport: httpx.BaseTransport | None = None,
             allow_plaintext_secrets: bool = False, environment: str | None = None) -> ValidationReport:
    """Offline by default (no network, no environment read for values); `resolve_secrets` also resolves
    every reference and reports each failure as a problem at its connector. Every environment kcr.yaml
    declares is checked unless `environment` narrows it."""
    result = load(root, spaces, env, allow_plaintext_secrets=allow_plaintext_secrets, environment=environment,
                  offline=True)
    problems = list(result.problems)
    resolved = False
    if resolve_secrets and result.states:
        found = [p for state in result.states.values() for p in check_secrets(state, root, env or {}, vault_transport)]
        problems.extend(dict.fromkeys(found))
        resolved = True
    return ValidationReport(tuple(problems), result.files, result.connectors, result.spaces, resolved,
                            result.environments)


def validate_repository(root: Path, *, resolve_secrets: bool = False, env: Mapping[str, str] | None = None,
                        spaces: Sequence[str] | None = None, vault_transport: httpx.BaseTransport | None = None,
                        allow_plaintext_secrets: bool = False) -> list[Problem]:
    """Every problem (errors and warnings) of the repository; offline unless resolve_secrets."""
    return list(validate(root, spaces=spaces, resolve_secrets=resolve_secrets, env=env,
                         vault_transport=vault_transport, allow_plaintext_secrets=allow_plaintext_secrets).problems)


def check_secrets(state: DesiredState, root: Path, env: Mapping[str, str],
                  vault_transport: httpx.BaseTransport | None = None) -> list[Problem]:
    """Resolve every reference (env, files, Vault) and report each failure at its connector's secrets."""
    specs = {owner_label(spec): spec for space in state.spaces.values() for spec in space.connectors if spec.secrets}
    resolver = SecretResolver(env, state.settings, root, vault_transport)
    _, errors = resolver.resolve_collect({owner: spec.secrets for owner, spec in specs.items()})
    problems = []
    for owner, messages in sorted(errors.items()):
        spec = specs[owner]
        loc = spec.locations.get("secrets") or spec.location
        for message in messages:
            problems.append(Problem(loc.file if loc else owner, message, loc.line if loc else None,
                                    loc.column if loc else None, "secrets"))
    return problems


def summary(report: ValidationReport) -> str:
    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    scope = f"{plural(report.connectors, 'connector')} in {plural(report.files, 'file')}, " \
            f"{plural(report.spaces, 'space')}"
    if report.environments:
        scope += f", {plural(len(report.environments), 'environment')} ({', '.join(report.environments)})"
    verdict = "valid" if report.ok else f"{plural(len(report.errors), 'error')}"
    tail = f", {plural(len(report.warnings), 'warning')}" if report.warnings else ""
    secrets = "; secrets resolved" if report.secrets_resolved else ""
    return f"{scope}: {verdict}{tail}{secrets}"


def format_problems_text(report: ValidationReport) -> str:
    """One line per problem (file:line:col: severity: message (field)), then a summary line."""
    lines = [f"{p.location()}: {p.severity}: {p.message}" + (f" ({p.path})" if p.path else "")
             for p in report.problems]
    lines.append(summary(report))
    return "\n".join(lines) + "\n"


def format_problems_json(report: ValidationReport) -> str:
    body = {
        "valid": report.ok,
        "files": report.files,
        "connectors": report.connectors,
        "spaces": report.spaces,
        "secrets_resolved": report.secrets_resolved,
        "environments": list(report.environments),
        "problems": [p.to_json() for p in report.problems],
    }
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def types_table(live: Mapping[str, ConnectorTypeInfo] | None = None,
                types: TypeCatalog = BUNDLED_ONLY) -> list[dict[str, Any]]:
    """Rows for `kcr types`: the types kcr knows (bundled, and the repository's `types`) with where each
    schema comes from, and with `live` (Kibana's connector_types) whether that Kibana has and enables
    each. Types only one side knows are listed too; `only_in` says which side (`only_lists`)."""
    rows: list[dict[str, Any]] = []
    for type_id in sorted(set(types.ids()) | set(live or {})):
        ct = types.get(type_id)
        info = (live or {}).get(type_id)
        schemed = types.has_schema(type_id)
        row: dict[str, Any] = {
            "id": type_id,
            "name": ct.name if ct else (info.name if info else type_id),
            "minimum_license": info.minimum_license_required if info else (ct.minimum_license if ct else ""),
            "required_config": list(ct.required("config")) if ct else [],
            "required_secrets": list(ct.required("secrets")) if ct else [],
            "system_action": (ct.is_system_action if ct else bool(info and info.is_system_action_type)),
            "known": ct is not None,
            "schema": types.source(type_id) if schemed else None,
        }
        if live is not None:
            row.update({
                "in_kibana": info is not None,
                "enabled": bool(info and info.enabled),
                "enabled_in_config": bool(info and info.enabled_in_config),
                "enabled_in_license": bool(info and info.enabled_in_license),
                # Kibana's list leaves system action types out, so their absence says nothing.
                "only_in": "kibana" if info is not None and not schemed else
                           "kcr" if info is None and schemed and not row["system_action"] else None,
            })
        rows.append(row)
    return rows


def only_lists(rows: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The live rows the Kibana has and kcr has no schema for, and those kcr has a schema for and the
    Kibana does not list."""
    return ([r for r in rows if r.get("only_in") == "kibana"], [r for r in rows if r.get("only_in") == "kcr"])


def format_types_text(rows: Sequence[Mapping[str, Any]], kibana_url: str | None = None) -> str:
    """A plain aligned table: readable in a terminal and in a CI log alike. With live rows, the types
    only one side knows follow side by side."""
    live = bool(rows) and "in_kibana" in rows[0]
    header = ["TYPE", "NAME", "LICENCE", "REQUIRED CONFIG", "REQUIRED SECRETS", "SCHEMA"] + \
        (["IN KIBANA"] if live else [])
    table = [header]
    for row in rows:
        cells = [row["id"], row["name"] + (" (system action)" if row["system_action"] else ""),
                 row["minimum_license"] or "-", _cell(row["required_config"]), _cell(row["required_secrets"]),
                 row.get("schema") or "-"]
        if live:
            state = "no" if not row["in_kibana"] else "enabled" if row["enabled"] else (
                "disabled (licence)" if not row["enabled_in_license"] else "disabled (config)")
            cells.append(state)
        table.append(cells)
    text = _aligned(table)
    if live:
        kibana_only, kcr_only = only_lists(rows)
        kibana = "Kibana"
        text += f"\nTypes only one side knows ({kibana} {kibana_url or ''} and kcr):\n".replace(" )", ")")
        left = [f"{kibana} has, kcr has no schema ({len(kibana_only)})"] + \
            [f"  {r['id']}  {r['name']}" for r in kibana_only] + (["  (none)"] if not kibana_only else [])
        right = [f"kcr has a schema, {kibana} does not list ({len(kcr_only)})"] + \
            [f"  {r['id']}  {r['name']}" for r in kcr_only] + (["  (none)"] if not kcr_only else [])
        depth = max(len(left), len(right))
        pairs = [[left[i] if i < len(left) else "", right[i] if i < len(right) else ""] for i in range(depth)]
        text += _aligned(pairs, gap="    ")
    return text


def _aligned(table: Sequence[Sequence[str]], gap: str = "  ") -> str:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [gap.join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    return "\n".join(lines) + "\n"


def _cell(keys: Sequence[str], width: int = 44) -> str:
    """A key list that keeps the table readable (`--format json` has them all)."""
    text = ", ".join(keys) or "-"
    return text if len(text) <= width else text[: width - 1].rsplit(", ", 1)[0] + ", …"
