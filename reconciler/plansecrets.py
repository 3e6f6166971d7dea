"""How the planner sees secrets. Kibana never returns them, so whether they changed is decided from
the record of what kcr last applied (per-key HMACs, else Vault versions); and a literal secret
(allowed by allow_plaintext_secrets for local experiments) becomes PLAINTEXT_MARKER before it can
reach a plan. Pure, like the planner that calls it; apart from it because secrets are the one part
of a connector the planner cannot compare with Kibana directly.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler import catalog
from reconciler.errors import Problem
from reconciler.model import JSON, ConnectorSpec, SecretDigest
from reconciler.plan import PLAINTEXT_MARKER, SecretsStatus
from reconciler.references import Reference, ReferenceSyntaxError, is_plaintext, references_in

PLAINTEXT_WARNING = ("plaintext secret in {where} (allow_plaintext_secrets): it is never written to the plan; "
                     "apply it with `kcr apply` (plan and apply in one run), not from a saved plan")
Status = tuple[SecretsStatus, tuple[str, ...]]  # the verdict and the top-level keys it concerns


def without_plaintext(value: JSON) -> JSON:
    """The secrets with every literal value (no `${...}` reference) replaced by the marker, so that no
    secret value reaches a saved plan or `--format json`. References, and literal text around them,
    stay: apply resolves them again."""
    if isinstance(value, Mapping):
        return {str(k): without_plaintext(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_plaintext(v) for v in value]
    return dict(PLAINTEXT_MARKER) if is_plaintext(value) else value


def plan_secret_refs(spec: ConnectorSpec) -> JSON:
    """`without_plaintext` of the connector's secrets, except a plain value (`x-kcr-plain`, e.g. a spec
    connector's `authType: bearer`), which is no secret and stays as written."""
    known = catalog.get(spec.type)
    return {str(k): v if known is not None and known.is_plain_value(str(k), v) else without_plaintext(v)
            for k, v in spec.secrets.items()}


def plaintext_problems(spec: ConnectorSpec) -> list[Problem]:
    refs = plan_secret_refs(spec)
    keys = [str(k) for k, v in spec.secrets.items() if refs.get(str(k)) != v]
    if not keys:
        return []
    first = spec.locations.get(f"secrets.{keys[0]}") or spec.location
    where = str(first) if first is not None else spec.key
    return [Problem.in_kibana(spec.space, spec.id, "warning", PLAINTEXT_WARNING.format(where=where))]


def new_secrets(spec: ConnectorSpec) -> Status:
    """A new connector gets every declared secret; no keys means none is declared (a null is none)."""
    if not _takes_secrets(spec):
        return SecretsStatus.NONE, ()
    return SecretsStatus.CHANGED, tuple(sorted(k for k, v in spec.secrets.items() if v is not None))


def unchecked_secrets(spec: ConnectorSpec) -> Status:
    """`kcr plan --no-secrets`: nothing was resolved nor compared, so a connector that takes secrets
    says so instead of claiming a verdict (and secrets alone never make an update)."""
    return (SecretsStatus.NOT_CHECKED, ()) if _takes_secrets(spec) else (SecretsStatus.NONE, ())


def secrets_status(spec: ConnectorSpec, digest: SecretDigest | None, recorded: SecretDigest | None) -> Status:
    """Per-key HMACs when both this run's digest and the record have them, else the backends'
    versions when every reference has one (Vault's today), else unknown."""
    if not _takes_secrets(spec):
        return SecretsStatus.NONE, ()
    if recorded is None:
        return SecretsStatus.UNKNOWN, ()
    if not spec.secrets:  # nothing declared: compare with what was applied last
        stale = tuple(sorted(recorded.hmacs)) if recorded.hmacs else ()
        if recorded.hmacs or recorded.vault_versions:
            return SecretsStatus.CHANGED, stale
        return SecretsStatus.UNCHANGED, ()
    if digest is None:
        return SecretsStatus.UNKNOWN, ()
    if digest.hmacs and recorded.hmacs:
        keys = tuple(sorted(k for k in digest.hmacs.keys() | recorded.hmacs.keys()
                            if digest.hmacs.get(k) != recorded.hmacs.get(k)))
        return (SecretsStatus.CHANGED, keys) if keys else (SecretsStatus.UNCHANGED, ())
    return _version_status(spec, digest, recorded)


def _takes_secrets(spec: ConnectorSpec) -> bool:
    known = catalog.get(spec.type)
    return bool(spec.secrets) or (known is not None and known.has_secrets())


def _references(secrets: Mapping[str, JSON]) -> dict[str, list[Reference]] | None:
    """The references under each top-level secret key; None when a template does not parse
    (validation reports it; the planner just cannot compare)."""
    try:
        return {str(key): references_in(value) for key, value in secrets.items()}
    except ReferenceSyntaxError:
        return None


def _version_status(spec: ConnectorSpec, digest: SecretDigest, recorded: SecretDigest) -> Status:
    """Without fingerprints, versions decide, but only when every reference has one: a backend that
    versions its secrets (Vault's KV today) reports them, whatever its scheme."""
    refs = _references(spec.secrets)
    every = [r for rs in (refs or {}).values() for r in rs]
    if not every or not recorded.vault_versions:
        return SecretsStatus.UNKNOWN, ()
    if any(r.text not in digest.vault_versions for r in every):
        return SecretsStatus.UNKNOWN, ()  # an unversioned reference, or a version missing from this run
    moved = {ref for ref, version in digest.vault_versions.items() if recorded.vault_versions.get(ref) != version}
    dropped = recorded.vault_versions.keys() - digest.vault_versions.keys()
    if not moved and not dropped:
        return SecretsStatus.UNCHANGED, ()
    keys = sorted(key for key, rs in (refs or {}).items() if any(r.text in moved for r in rs))
    return SecretsStatus.CHANGED, tuple(keys)
