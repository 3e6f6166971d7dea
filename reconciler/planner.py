"""The planner: desired state + live state + secret digests -> Plan. Pure: no client, clock,
environment or randomness, so the same inputs give the same plan byte for byte (SPEC §5).

What the planner cannot know: Kibana's `xpack.actions.allowedHosts` is not exposed by any API, so a
URL outside it surfaces only when apply sends the request (Kibana answers 400). Nor can it read
secrets back from Kibana: `reconciler.plansecrets` decides from the record whether they changed.

About 435 lines, over the house's 400: one planning pass over spaces, declared and live connectors
reads best whole; the matching of `--target`/`--exclude` lives apart in `reconciler.selection`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase

from reconciler import catalog, normalize, plansecrets
from reconciler.errors import Problem
from reconciler.model import (
    ConnectorSpec,
    DesiredSpace,
    DesiredState,
    LiveConnector,
    LiveSpace,
    LiveState,
    RuleRef,
    SecretDigest,
    SpaceSettings,
)
from reconciler.plan import Action, Change, Desired, FieldDiff, Guard, Plan, SecretsStatus
from reconciler.plansecrets import Status, new_secrets, plaintext_problems, secrets_status
from reconciler.selection import Selection
from reconciler.yamlload import join_path

ACTION_ORDER: Mapping[Action, int] = {
    Action.CREATE: 0,
    Action.UPDATE: 1,
    Action.RECREATE: 2,
    Action.DELETE: 3,
    Action.NOOP: 4,
    Action.UNMANAGED: 5,
}
MISSING_SECRETS = "secrets missing in Kibana (e.g. after a saved-object import)"
SYNC_SECRETS = "--sync-secrets"
# kcr's record of applied secrets holds an entry for every connector kcr created or updated (and drops it
# when kcr deletes one): the only memory kcr has of what it applied, so the source of "removed".
REMOVED = ("removed from the files; still in Kibana (kcr applied it, and the space does not prune): declare it "
           "again, delete it in Kibana, or set prune: true in the space's _space.yaml")
# Kibana's in-memory system actions are listed nowhere public; their ids follow this pattern.
_SYSTEM_ID_PREFIX = "system-connector-"


@dataclasses.dataclass(frozen=True)
class _Context:
    """What every space's planning needs from the whole run (ids are global across spaces)."""

    live: LiveState
    digests: Mapping[str, SecretDigest]
    record: Mapping[str, SecretDigest]
    sync_secrets: bool
    check_secrets: bool  # False: `--no-secrets`, secrets show as not checked
    reserved: Mapping[str, str]  # id -> why kcr may not manage it
    live_spaces_of: Mapping[str, tuple[str, ...]]  # id -> spaces where Kibana holds it
    declared_spaces_of: Mapping[str, tuple[str, ...]]  # id -> spaces that declare it


def make_plan(
    desired: DesiredState,
    live: LiveState,
    *,
    digests: Mapping[str, SecretDigest],
    record: Mapping[str, SecretDigest],
    sync_secrets: bool = False,
    spaces: Sequence[str] | None = None,
    check_secrets: bool = True,
    selection: Selection | None = None,
) -> Plan:
    """`digests` are the resolved secrets' fingerprints of this run and `record` what kcr last
    applied, both keyed by Kibana connector id. Without `check_secrets` (`kcr plan --no-secrets`,
    given no digests and no record) secrets are neither compared nor a reason to update."""
    scope = sorted(set(spaces)) if spaces is not None else sorted(set(desired.spaces) | set(live.spaces))
    ctx = _context(desired, live, digests, record, sync_secrets, check_secrets)
    changes: list[Change] = []
    problems: list[Problem] = []
    ignored: list[str] = []
    for space in scope:
        if space not in live.known_spaces:
            problems.append(Problem.in_kibana(space, None, "error", f"unknown space {space!r}: Kibana has no such "
                                              "space (create it in Kibana or rename the directory connectors/"
                                              + space + ")"))
            continue
        live_space = live.spaces.get(space)
        if live_space is None:
            problems.append(Problem.in_kibana(space, None, "error", f"space {space!r} was not read from Kibana; "
                                              "nothing is planned there"))
            continue
        want = desired.spaces.get(space) or DesiredSpace(space=space, settings=SpaceSettings(), connectors=())
        _plan_space(ctx, want, live_space, changes, problems, ignored)
    problems.extend(_disabled_types(desired, live, scope, changes))
    if selection is not None:  # an unselected connector is neither changed nor deleted: no change at all
        declared = [(c.space, c.id, c.key) for s, d in desired.spaces.items() if s in scope for c in d.connectors]
        changes = selection.narrow(changes, lambda c: (c.space, c.id, c.desired.key if c.desired else None), declared)
    changes.sort(key=lambda c: (c.space, ACTION_ORDER[c.action], c.id))
    problems.sort(key=lambda p: (p.space or "", p.id or "", p.severity, p.message))
    return Plan(
        kibana_url=live.kibana_url,
        spaces=tuple(scope),
        changes=tuple(changes),
        problems=tuple(problems),
        ignored=tuple(sorted(ignored)),
        secrets_checked=check_secrets,
        selection=selection,
        environment=desired.environment,
    )


def attach_rules(plan: Plan, rules: Mapping[str, tuple[RuleRef, ...]]) -> Plan:
    """Names the rules that use each blocked connector (keyed by connector id, ids being global)."""
    changes = tuple(
        dataclasses.replace(
            c,
            guard=dataclasses.replace(
                c.guard, rules=tuple(sorted(rules[c.id], key=lambda r: (r.space or "", r.name, r.id)))
            ),
        )
        if c.guard.blocked and c.id in rules
        else c
        for c in plan.changes
    )
    return dataclasses.replace(plan, changes=changes)


def blocked_ids(plan: Plan) -> list[tuple[str, str]]:
    """(space, id) of the blocked connectors something references: the ones worth a rules lookup."""
    return sorted({(c.space, c.id) for c in plan.changes
                   if c.guard.blocked and (c.referenced_by_count is None or c.referenced_by_count > 0)})


# --- the whole run -----------------------------------------------------------------------------


def _context(
    desired: DesiredState,
    live: LiveState,
    digests: Mapping[str, SecretDigest],
    record: Mapping[str, SecretDigest],
    sync_secrets: bool,
    check_secrets: bool,
) -> _Context:
    reserved: dict[str, str] = {}
    live_spaces_of: dict[str, list[str]] = {}
    for space, live_space in sorted(live.spaces.items()):
        for conn in live_space.connectors:
            if conn.is_preconfigured:
                reserved[conn.id] = "a preconfigured connector (kibana.yml xpack.actions.preconfigured)"
            elif conn.is_system_action:
                reserved[conn.id] = "a Kibana system action"
            else:
                live_spaces_of.setdefault(conn.id, []).append(space)
    declared: dict[str, list[str]] = {}
    for space, desired_space in sorted(desired.spaces.items()):
        for spec in desired_space.connectors:
            declared.setdefault(spec.id, []).append(space)
    return _Context(
        live=live,
        digests=digests,
        record=record,
        sync_secrets=sync_secrets and check_secrets,
        check_secrets=check_secrets,
        reserved=reserved,
        live_spaces_of={k: tuple(v) for k, v in live_spaces_of.items()},
        declared_spaces_of={k: tuple(v) for k, v in declared.items()},
    )


def _plan_space(
    ctx: _Context,
    want: DesiredSpace,
    have: LiveSpace,
    changes: list[Change],
    problems: list[Problem],
    ignored: list[str],
) -> None:
    space = want.space
    truncated = have.possibly_truncated
    if truncated:
        problems.append(Problem.in_kibana(space, None, "warning", f"Kibana listed {len(have.connectors)} connectors "
                                          f"in {space!r}, its maximum: the list may be truncated, so no deletion is "
                                          "planned there and a create may find its id taken"))
    live_by_id = {c.id: c for c in have.connectors}
    declared: set[str] = set()
    for spec in want.connectors:
        declared.add(spec.id)
        if spec.preconfigured:  # kibana.yml's: compared with what Kibana lists, never sent
            problems.extend(_preconfigured_drift(ctx, spec, live_by_id.get(spec.id)))
            continue
        change = _plan_connector(ctx, spec, live_by_id.get(spec.id), problems)
        if change is None:
            continue
        if want.settings.ignore and _matches(spec.id, want.settings.ignore):
            problems.append(Problem.in_kibana(space, spec.id, "warning", f"{spec.key} is declared and also matches "
                                              "an `ignore` glob of the space; the declaration wins"))
        changes.append(change)
    for conn in have.connectors:
        if conn.id in declared or conn.is_preconfigured or conn.is_system_action:
            continue
        elsewhere = ctx.declared_spaces_of.get(conn.id, ())
        if _matches(conn.id, want.settings.ignore):
            ignored.append(f"{space}/{conn.id}")
        elif elsewhere:
            changes.append(_live_only(space, conn, Action.UNMANAGED, _declared_elsewhere(elsewhere)))
        elif want.settings.prune and not truncated:
            changes.append(_delete(space, conn))
        elif not want.settings.prune and conn.id in ctx.record:
            gone = _live_only(space, conn, Action.UNMANAGED, REMOVED)
            changes.append(dataclasses.replace(gone, removed_from_files=True))
        else:
            why = ("not declared; the list may be truncated, so it is left alone" if want.settings.prune
                   else "not declared (the space does not prune)")
            changes.append(_live_only(space, conn, Action.UNMANAGED, why))


def _preconfigured_drift(ctx: _Context, spec: ConnectorSpec, conn: LiveConnector | None) -> list[Problem]:
    """A connector the files place in kibana.yml (`preconfigured`): Kibana lists such a connector in
    every space with `is_preconfigured: true`, its name and type, never its config, so name and type are
    all a plan can compare. A difference is drift (exit 2), never an action: kcr cannot write kibana.yml."""
    label, kibana = _label(spec), ctx.live.kibana_url
    fix = "render kibana.yml again (`kcr render kibana-yml`), deploy it and restart Kibana"
    if conn is None:
        why = f"declared preconfigured, but {kibana} does not list it (not in its kibana.yml); {fix}"
    elif not conn.is_preconfigured:
        why = (f"declared preconfigured, but {kibana} holds it as a connector made through the API, which kcr "
               "leaves alone while the files say preconfigured: delete it in Kibana and deploy kibana.yml, or "
               "drop `preconfigured` so kcr manages it through the API")
    elif (conn.name, conn.type) != (spec.name, spec.type):
        differs = [f"{what} is {have!r} in Kibana, {want!r} in the files" for what, have, want in
                   (("name", conn.name, spec.name), ("type", conn.type, spec.type)) if have != want]
        why = f"preconfigured connector differs from the files: {'; '.join(differs)}; {fix}"
    else:
        return []
    return [Problem.in_kibana(spec.space, spec.id, "drift", f"{label}: {why}")]


def _declared_elsewhere(spaces: Sequence[str]) -> str:
    """Ids are global across spaces: a connector the repository declares in another space is that
    declaration's, never this space's to prune (the create side reports the clash as an error)."""
    plural = "s" if len(spaces) > 1 else ""
    return (f"declared in space{plural} {', '.join(spaces)}, so never deleted from here (Kibana connector ids "
            "are global across spaces); move the declaration to this space or delete the connector by hand")


def _matches(connector_id: str, globs: Iterable[str]) -> bool:
    return any(fnmatchcase(connector_id, g) for g in globs)


# --- one declared connector ----------------------------------------------------------------------


def _plan_connector(
    ctx: _Context, spec: ConnectorSpec, conn: LiveConnector | None, problems: list[Problem]
) -> Change | None:
    space = spec.space
    label = _label(spec)
    reserved = ctx.reserved.get(spec.id)
    if reserved is None and conn is not None and (conn.is_preconfigured or conn.is_system_action):
        reserved = "a preconfigured connector" if conn.is_preconfigured else "a Kibana system action"
    if reserved is None and spec.id.startswith(_SYSTEM_ID_PREFIX):
        reserved = "the id of a Kibana system action"
    if reserved is not None:
        problems.append(Problem.in_kibana(space, spec.id, "error", f"{label}: id {spec.id} is {reserved}, which kcr "
                                          "never manages; choose another id"))
        return None
    declared_in = ctx.declared_spaces_of.get(spec.id, (space,))
    if len(declared_in) > 1:
        problems.append(Problem.in_kibana(space, spec.id, "error", f"{label}: id {spec.id} is declared in spaces "
                                          f"{', '.join(declared_in)}, but Kibana connector ids are global across "
                                          "spaces; give each its own id"))
        return None
    if conn is None:
        elsewhere = [s for s in ctx.live_spaces_of.get(spec.id, ()) if s != space]
        if elsewhere:
            problems.append(Problem.in_kibana(space, spec.id, "error", f"{label}: id {spec.id} already exists in "
                                              f"space {', '.join(elsewhere)} (Kibana ids are global across spaces), "
                                              "so Kibana would refuse the create with 409; delete it there first or "
                                              "change the id"))
        change = _create(ctx, spec)
    elif conn.type != spec.type:
        change = _recreate(ctx, spec, conn)
    else:
        change = _update_or_noop(ctx, spec, conn)
    if change.action in (Action.CREATE, Action.UPDATE, Action.RECREATE):
        problems.extend(_type_problems(spec, label, ctx.live))
        problems.extend(plaintext_problems(spec))
    return change


def _label(spec: ConnectorSpec) -> str:
    where = f" ({spec.location.file})" if spec.location is not None else ""
    return f"{spec.key}{where}"


def _desired(spec: ConnectorSpec) -> Desired:
    return Desired(
        name=spec.name,
        type=spec.type,
        config=dict(spec.config),
        secret_refs=plansecrets.plan_secret_refs(spec),
        key=spec.key,
        protect=spec.protect,
        file=spec.location.file if spec.location is not None else None,
    )


def _create(ctx: _Context, spec: ConnectorSpec) -> Change:
    diffs = (FieldDiff("name", None, spec.name, "added"),
             *normalize.added_diffs("config", normalize.declared_config(spec)))
    return _declared(ctx, spec, None, Action.CREATE, "declared, not in Kibana", diffs, new_secrets(spec))


def _recreate(ctx: _Context, spec: ConnectorSpec, conn: LiveConnector) -> Change:
    reason = (f"connector_type_id changes from {conn.type} to {spec.type}, which Kibana cannot update: "
              "delete, then create with the same id")
    diffs = (FieldDiff("connector_type_id", conn.type, spec.type, "changed"), *_field_diffs(spec, conn),
             *_lost_config(spec, conn))
    return _declared(ctx, spec, conn, Action.RECREATE, reason, diffs, new_secrets(spec),
                     guard=_guard(conn.referenced_by_count, spec))


def _update_or_noop(ctx: _Context, spec: ConnectorSpec, conn: LiveConnector) -> Change:
    diffs = _field_diffs(spec, conn)
    status, keys = (secrets_status(spec, ctx.digests.get(spec.id), ctx.record.get(spec.id)) if ctx.check_secrets
                    else plansecrets.unchecked_secrets(spec))
    reasons: list[str] = []
    fields = sorted({"name" if d.path == "name" else "config" for d in diffs}, key=("name", "config").index)
    if fields:
        reasons.append(f"{' and '.join(fields)} changed")
    if conn.is_missing_secrets:
        reasons.append(MISSING_SECRETS)
    if status is SecretsStatus.CHANGED:
        reasons.append("secrets changed")
    if not reasons and ctx.sync_secrets and spec.secrets:
        reasons.append(SYNC_SECRETS)
    action, reason = (Action.UPDATE, "; ".join(reasons)) if reasons else (Action.NOOP, "up to date")
    return _declared(ctx, spec, conn, action, reason, diffs, (status, keys))


def _lost_config(spec: ConnectorSpec, conn: LiveConnector) -> tuple[FieldDiff, ...]:
    """What a recreate's delete takes with it: the old type's keys that the new config lacks, which
    `config_diffs` leaves out (keys outside the new type's schema are Kibana's for an update)."""
    shown = {d.path for d in normalize.config_diffs(spec, conn)}
    want = normalize.desired_config(spec)
    return tuple(FieldDiff(path, value, None, "removed") for key, value in sorted(normalize.live_config(conn).items())
                 if key not in want and (path := join_path("config", key)) not in shown)


def _field_diffs(spec: ConnectorSpec, conn: LiveConnector) -> tuple[FieldDiff, ...]:
    name = (FieldDiff("name", conn.name, spec.name, "changed"),) if conn.name != spec.name else ()
    return (*name, *normalize.config_diffs(spec, conn))


def _declared(
    ctx: _Context,
    spec: ConnectorSpec,
    conn: LiveConnector | None,
    action: Action,
    reason: str,
    diffs: Sequence[FieldDiff],
    secrets: Status,
    guard: Guard = Guard(),  # noqa: B008 - frozen, so one serves every unguarded change
) -> Change:
    """A change to a declared connector; `conn` is the live one, None for a create. Only a change
    that sends something carries what it sends: the desired state and this run's secret digest."""
    sends = action is not Action.NOOP
    status, keys = secrets
    return Change(
        space=spec.space,
        id=spec.id,
        action=action,
        reason=reason,
        name=spec.name,
        type=spec.type,
        live_type=None if conn is None else conn.type,
        diffs=tuple(diffs),
        secrets=status,
        secret_keys_changed=keys,
        referenced_by_count=0 if conn is None else conn.referenced_by_count,
        guard=guard,
        live_fingerprint=conn,  # hashed only when read (a saved plan, apply)
        desired=_desired(spec) if sends else None,
        secret_digest=ctx.digests.get(spec.id) if sends else None,
    )


def _delete(space: str, conn: LiveConnector) -> Change:
    change = _live_only(space, conn, Action.DELETE, "not declared, and the space prunes")
    return dataclasses.replace(change, guard=_guard(conn.referenced_by_count, None))


def _live_only(space: str, conn: LiveConnector, action: Action, reason: str) -> Change:
    return Change(space=space, id=conn.id, action=action, reason=reason, name=conn.name, type=conn.type,
                  live_type=conn.type, referenced_by_count=conn.referenced_by_count,
                  live_fingerprint=conn)


def _guard(referenced_by_count: int | None, spec: ConnectorSpec | None) -> Guard:
    """The verdict without overrides: apply's --allow-referenced may lift a reference block, never
    a `protect`. An unknown count blocks: nothing proves the connector unused, and apply re-reads it."""
    reasons: list[str] = []
    if referenced_by_count is None:
        reasons.append("referenced_by_count unknown: Kibana's answer did not carry it, so nothing shows the "
                       "connector is unused; apply re-reads it from the list and blocks if it is still unknown")
    elif referenced_by_count > 0:
        reasons.append(f"referenced by {referenced_by_count} saved object{'s' if referenced_by_count != 1 else ''} "
                       "(rules, cases)")
    if spec is not None and spec.protect:
        where = spec.location.file if spec.location is not None else "the repository"
        reasons.append(f"protect: true in {where}")
    return Guard(blocked=bool(reasons), reasons=tuple(reasons))


def _type_problems(spec: ConnectorSpec, label: str, live: LiveState) -> list[Problem]:
    """The target Kibana must list, enable and licence the type of a connector about to be sent: the one
    check a type kcr does not bundle gets before apply, so a missing list fails closed."""
    def error(message: str) -> Problem:
        return Problem.in_kibana(spec.space, spec.id, "error", f"{label}: {message}")

    known = catalog.get(spec.type)
    if known is not None and known.is_system_action:
        return [error(f"{spec.type} is a system action type; Kibana refuses to create connectors of it")]
    kibana = f"this Kibana ({live.kibana_url})"
    if not live.connector_types:
        return [error(f"{kibana} listed no connector types (GET /api/actions/connector_types), so nothing shows "
                      f"it has type {spec.type}; kcr sends nothing it cannot check")]
    info = live.connector_types.get(spec.type)
    if info is None:
        return [error(f"type {spec.type} is not available in {kibana}: GET /api/actions/connector_types does not "
                      "list it (not registered in that Kibana version, or its plugin is switched off); use a type "
                      "it lists (`kcr types --live`) or upgrade that Kibana")]
    out: list[Problem] = []
    if not info.enabled_in_license:
        licence = info.minimum_license_required
        out.append(error(f"type {spec.type} needs {_article(licence)} {licence} licence, which this Kibana's "
                         f"licence does not cover ({live.kibana_url})"))
    if not info.enabled_in_config:
        out.append(error(f"type {spec.type} is not enabled in xpack.actions.enabledActionTypes (kibana.yml) of "
                         f"{kibana}"))
    return out


def _disabled_types(desired: DesiredState, live: LiveState, scope: Sequence[str],
                    changes: Sequence[Change]) -> list[Problem]:
    """A warning per type the repository's API connectors use that Kibana reports as not enabled in
    `xpack.actions.enabledActionTypes`, for connectors nothing sends now (a send gets `_type_problems`'
    error): Kibana refuses to run them. Preconfigured connectors run whatever that list says
    (x-pack/plugins/actions/server/action_type_registry.ts, isActionExecutable), so they are left out."""
    disabled = {type_id for type_id, info in live.connector_types.items() if not info.enabled_in_config}
    if not disabled:  # the usual Kibana: no connector to look at
        return []
    unchanged = {(c.space, c.id) for c in changes if c.action is Action.NOOP}
    users: dict[str, list[ConnectorSpec]] = {}
    for space in scope:
        for spec in desired.spaces[space].connectors if space in desired.spaces else ():
            if spec.type in disabled and (space, spec.id) in unchanged:
                users.setdefault(spec.type, []).append(spec)
    return [Problem.in_kibana(specs[0].space, None, "warning", f"type {type_id} is not enabled in "
                              f"xpack.actions.enabledActionTypes (kibana.yml) of {live.kibana_url}, yet "
                              f"{', '.join(s.key for s in specs)} use{'s' if len(specs) == 1 else ''} it: Kibana "
                              "refuses to run, update or create them; add it there (`kcr render allowed-hosts` "
                              "prints the list the files need)")
            for type_id, specs in sorted(users.items())]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
