"""The plan and apply pipelines: the stages called in their order, values in and values out.

    plan:  the whole repository -> the planned spaces -> secrets resolved into digests -> the record
           (and its key warning) -> Kibana read -> the plan -> the rules that block it attached
           (`--no-secrets` skips the secrets and the record: a plan for review that apply refuses)
    apply: a saved plan loaded and verified -> its target confirmed -> checked against the repository
           (or a plan made in this run, with the repository's own secret values) -> the ambiguous-key
           check -> the applier, under the record's lock

A Session holds what a command was given (the environment, the repository, the spaces, Kibana's URL,
an httpx transport); nothing here reads os.environ, parses flags or prints. Separate from the CLI so
that tests and the demo run the same pipelines without click, and the CLI keeps flags and exit codes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from reconciler import applier, environments, planner
from reconciler.apply_checks import AllowReferenced
from reconciler.apply_report import ActionResult, ApplyReport
from reconciler.connection import Connection, redact_url
from reconciler.desired import load_repository, load_settings, owner_label
from reconciler.errors import ConfigError, PlanFileError, Problem, ValidationError
from reconciler.kibana import KibanaClient, read_concurrency
from reconciler.model import DesiredState, Environment, SecretDigest, Settings
from reconciler.plan import Action, Plan
from reconciler.plancheck import check_against_repository
from reconciler.planfile import loads
from reconciler.secrets import SecretResolver
from reconciler.selection import Selection
from reconciler.state import RecordBackend, backend_from_env, fingerprint_key, normalize_kibana_url

log = logging.getLogger("kcr")

NOT_CHECKED = ("{source} was made with `kcr plan --no-secrets`: its secrets were not checked, so it cannot be "
               "applied; re-plan with secrets (`kcr plan --out` where the secret variables are set) and apply that")

OnProgress = Callable[[ActionResult], None]
Progress = Callable[[Plan], AbstractContextManager[OnProgress | None]]


@dataclass(frozen=True)
class Session:
    """What one command was given. `transport`: an httpx transport for Kibana (tests, the demo);
    None: the network."""

    root: Path
    env: Mapping[str, str]
    spaces: tuple[str, ...] = ()
    kibana_url: str | None = None
    transport: Any = None
    selection: Selection | None = None  # `--target`/`--exclude`
    environment_name: str | None = None  # `--env` or KCR_ENV

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.root)

    @cached_property
    def environment(self) -> Environment | None:
        """The kcr.yaml environment this command works on; refused when environments are declared and
        none is selected, before anything is read or sent."""
        return environments.select(self.settings, self.environment_name)

    @cached_property
    def kibana_env(self) -> Mapping[str, str]:
        """The variables Kibana's URL, credentials and the record are read from, for the environment."""
        return environments.kibana_env(self.env, self.environment)

    @cached_property
    def connection(self) -> Connection:
        """Built once per command, so its warnings (several credentials, TLS off) are said once. An
        environment with a URL of its own and a --kibana-url naming another Kibana contradict each
        other: nothing says which one was meant."""
        environment = self.environment
        own = environments.own_url(environment, self.env) if environment is not None else None
        if environment is not None and own is not None and self.kibana_url is not None \
                and normalize_kibana_url(own) != normalize_kibana_url(self.kibana_url):
            raise ConfigError(f"--kibana-url {redact_url(self.kibana_url)} is not the Kibana of environment "
                              f"{environment.name!r} ({redact_url(own)}, kcr.yaml); drop --kibana-url or select "
                              "the environment it belongs to")
        return Connection.from_env(self.kibana_env, url=self.kibana_url)

    @property
    def fingerprint_key(self) -> bytes | None:
        return fingerprint_key(self.env)  # one reading of KCR_FINGERPRINT_KEY, the record's

    @contextmanager
    def client(self) -> Iterator[KibanaClient]:
        client = KibanaClient(self.connection, transport=self.transport,
                              read_concurrency=read_concurrency(self.kibana_env))
        try:
            yield client
        finally:
            client.close()

    @contextmanager
    def record(self) -> Iterator[RecordBackend]:
        """The record of applied secrets for this Kibana; an HTTP backend's connection is closed after."""
        backend = backend_from_env(self.kibana_env, self.root, kibana_url=self.connection.url)
        try:
            yield backend
        finally:
            close = getattr(backend, "close", None)
            if callable(close):
                close()


# --- plan: files -> secrets -> Kibana -> Plan ---------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    plan: Plan
    desired: DesiredState
    resolver: SecretResolver  # kept for a one-run apply: each Vault secret is read once per run


def make_plan(session: Session, *, sync_secrets: bool = False, allow_plaintext_secrets: bool = False,
              check_secrets: bool = True, desired: DesiredState | None = None) -> Planned:
    """Without `check_secrets` (`--no-secrets`, for merge-request pipelines that cannot see production
    secrets) no reference is resolved and the record is not read: the plan compares names, types and
    config only, says so, and cannot be applied. `desired`: the environment's state, when already
    loaded (`--all-envs` reads the files once for every environment)."""
    if sync_secrets and not check_secrets:
        raise ConfigError("--sync-secrets pushes the secrets, which --no-secrets never reads: use one or the other")
    # The whole repository, even with --space: a connector another space declares must never be
    # planned as a delete here, and only the whole repository can say which those are.
    environment = session.environment  # refused here when one must be selected, before any file is read
    if desired is None:
        desired = load_repository(session.root, None, env=session.env, allow_plaintext_secrets=allow_plaintext_secrets,
                                  environment=environment.name if environment is not None else None)
    spaces = _planned_spaces(session.spaces, desired)
    resolver = SecretResolver(session.env, desired.settings, session.root)
    digests: Mapping[str, SecretDigest] = {}
    record: Mapping[str, SecretDigest] = {}
    if check_secrets:
        digests = _digests(session, desired, resolver, spaces)
        with session.record() as backend:
            record = backend.load()
        if backend.key_warning:  # said here, once per run: an apply in the same run loads the record again
            log.warning("%s", backend.key_warning)
    with session.client() as client:
        live = client.read_live(spaces)
        plan = planner.make_plan(desired, live, digests=digests, record=record, sync_secrets=sync_secrets,
                                 spaces=spaces, check_secrets=check_secrets, selection=session.selection)
        wanted = planner.blocked_ids(plan)
        if wanted:
            rules = {cid: tuple(client.rules_referencing(space, cid)) for space, cid in wanted}
            plan = planner.attach_rules(plan, rules)
    plan = replace(plan, created_at=datetime.now(UTC).replace(microsecond=0).isoformat())
    return Planned(plan=plan, desired=desired, resolver=resolver)


def _planned_spaces(asked: Sequence[str], desired: DesiredState) -> list[str]:
    missing = [s for s in dict.fromkeys(asked) if s not in desired.spaces]
    if missing and desired.environment is not None:
        raise ValidationError(Problem("kcr.yaml", f"space {s!r} is not a space of environment {desired.environment!r} "
                                      f"(its spaces: {', '.join(sorted(desired.spaces)) or 'none'})")
                              for s in missing)
    if missing:
        raise ValidationError(Problem(f"connectors/{s}", f"space {s!r} has no directory connectors/{s}/")
                              for s in missing)
    return sorted(set(asked)) if asked else sorted(desired.spaces)


def _digests(session: Session, desired: DesiredState, resolver: SecretResolver,
             spaces: Sequence[str]) -> dict[str, SecretDigest]:
    """Resolve every secret reference of the planned spaces before any request to Kibana: an unset
    variable stops the run here, naming the reference and the connector."""
    owners: dict[str, tuple[str, Mapping[str, Any]]] = {}
    selected = session.selection.selects if session.selection is not None else (lambda *_: True)
    for space in (desired.spaces[s] for s in spaces):
        for spec in space.connectors:
            if spec.secrets and not spec.preconfigured and selected(spec.space, spec.id, spec.key):
                owners[owner_label(spec)] = (spec.id, spec.secrets)
    resolved = resolver.resolve_many({owner: refs for owner, (_, refs) in owners.items()})
    key = session.fingerprint_key
    if key is None and any(not r.vault_versions for r in resolved.values()):
        log.warning("KCR_FINGERPRINT_KEY is not set: a changed ${env:..} or ${file:..} secret cannot be "
                    "detected (the plan says 'unknown'); set it, e.g. as a masked CI variable")
    return {owners[o][0]: r.digest(owners[o][0], key) for o, r in resolved.items()}


# --- apply: a saved plan, or one made in this run -> the applier ---------------------------------------------


@dataclass(frozen=True)
class Applicable:
    """A plan cleared for apply, with the resolver its secrets are read by. `secret_refs` (by address)
    is set when plan and apply run in one process: the repository's own secret values (a plaintext
    one included, which a saved plan never holds) go straight to the applier."""

    plan: Plan
    resolver: SecretResolver
    secret_refs: Mapping[str, Mapping[str, Any]] | None = None

    @property
    def saved(self) -> bool:
        return self.secret_refs is None


def one_run(planned: Planned) -> Applicable:
    refs = {f"{spec.space}/{spec.id}": dict(spec.secrets)
            for space in planned.desired.spaces.values() for spec in space.connectors}
    return Applicable(planned.plan, planned.resolver, refs)


def saved_plan(session: Session, plan_file: Path) -> Applicable:
    """The plan file verified, its target confirmed, and the repository checked out here in agreement
    with its deletes and protections, all before the record backend or Kibana hears anything."""
    plan = _load_saved_plan(session, plan_file)
    if plan.has_errors:
        raise ConfigError(f"{plan_file} holds a plan with errors (see `kcr plan`); fix them and plan again")
    if not plan.secrets_checked:
        raise PlanFileError(NOT_CHECKED.format(source=plan_file))
    _confirm_target(session, plan)
    desired = load_repository(session.root, None, env=session.env, allow_plaintext_secrets=True,
                              environment=plan.environment)
    check_against_repository(plan, desired, str(plan_file))
    return Applicable(plan, SecretResolver(session.env, desired.settings, session.root))


def apply(session: Session, job: Applicable, *, parallelism: int, allow_referenced: Sequence[str],
          progress: Progress | None = None) -> ApplyReport:
    """`progress` opens a display for the plan once Kibana and the record are ready, and gives the
    callback each result is shown by (or None)."""
    if not job.plan.secrets_checked:  # saved_plan refuses it first; this keeps every caller honest
        raise PlanFileError(NOT_CHECKED.format(source="the plan"))
    allow: AllowReferenced = "all" if "all" in allow_referenced else frozenset(allow_referenced)
    refuse_ambiguous_keys(job.plan, allow_referenced)
    with session.record() as record, session.client() as client, \
            (progress or _no_progress)(job.plan) as on_progress:
        report = applier.apply_plan(job.plan, client, job.resolver, record, parallelism=parallelism,
                                    allow_referenced=allow, fingerprint_key=session.fingerprint_key,
                                    on_progress=on_progress, secret_refs=job.secret_refs)
    if job.saved and record.key_warning:  # a one-run apply said it while planning
        log.warning("%s", record.key_warning)
    return report


@contextmanager
def _no_progress(plan: Plan) -> Iterator[OnProgress | None]:
    yield None


def refuse_ambiguous_keys(plan: Plan, names: Sequence[str]) -> None:
    """A bare key may be declared in several spaces: lifting the guard of all of them because one was
    meant is the kind of surprise a guard exists to prevent."""
    for name in names:
        spaces = sorted({c.space for c in plan.changes if c.desired is not None and c.desired.key == name
                         and c.action in (Action.DELETE, Action.RECREATE)})
        if len(spaces) > 1:
            raise ConfigError(f"--allow-referenced {name}: the key {name} is declared in spaces {', '.join(spaces)}; "
                              f"write SPACE/{name} or the connector id")


def _load_saved_plan(session: Session, plan_file: Path) -> Plan:
    """With KCR_FINGERPRINT_KEY the plan must carry a MAC that verifies; without it nothing can tell
    the reviewed plan from an edited one, which is said every time."""
    key = session.fingerprint_key
    if key is None:
        log.warning("%s cannot be authenticated: KCR_FINGERPRINT_KEY is not set, so an edit after "
                    "`kcr plan --out` would go unnoticed (set KCR_FINGERPRINT_KEY to sign and verify plans)", plan_file)
    try:
        text = plan_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{plan_file}: cannot be read ({type(exc).__name__}: {exc})") from None
    return loads(text, str(plan_file), key=key)


def _confirm_target(session: Session, plan: Plan) -> None:
    """The URL inside a plan file is data, not a target: sending the credentials wherever a file says
    would hand them to whoever wrote it. The operator names Kibana; the plan must agree with it.
    A plan made against another Kibana would refuse every action as stale at best, so that is said
    up front too (before any request, the record's included)."""
    environment = session.environment
    name = environment.name if environment is not None else None
    if plan.environment != name:
        made = f"environment {plan.environment!r}" if plan.environment else "a repository without environments"
        now = f"environment {name!r}" if name else "no environment (kcr.yaml declares none)"
        raise ConfigError(f"the plan was made for {made}, and this run is for {now}; apply it with --env "
                          f"{plan.environment} or re-plan" if plan.environment else
                          f"the plan was made for {made}, and this run is for {now}; re-run `kcr plan --out`")
    env = session.kibana_env
    if not (session.kibana_url or env.get("KIBANA_URL") or env.get("KIBANA_ENDPOINT")):
        raise ConfigError(f"the plan targets {redact_url(plan.kibana_url)}; set KIBANA_URL or pass --kibana-url "
                          "to confirm the target")
    url = session.connection.url
    if normalize_kibana_url(url) != normalize_kibana_url(plan.kibana_url):  # the record's spelling: one per Kibana
        raise ConfigError(f"the plan was made against {redact_url(plan.kibana_url)} but KIBANA_URL is "
                          f"{redact_url(url)}; re-run `kcr plan --out` against this Kibana")
