"""What the plan schema cannot say about a saved plan: where it points, ids (kcr's own rule for
the ids it chose, the client's for live ones), and that every change agrees with itself and with the
plan. A plan is applied exactly as written, so a field that contradicts another means it was edited,
and no field of it can be trusted to be the one the reviewer read.

Separate from `reconciler.planfile` (the format) because these are rules about meaning: each check
reads a body the schema has already accepted, and refuses it with `not_a_plan`.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import catalog
from reconciler.errors import PlanFileError
from reconciler.model import (
    KEY_PATTERN,
    SPACE_ID_PATTERN,
    UUID_PATTERN,
    DesiredState,
    derive_connector_id,
    id_segment_problem,
)
from reconciler.plan import MUTATING, Action, Plan, SecretsStatus, is_plaintext_marker
from reconciler.references import is_plaintext
from reconciler.selection import Selection
from reconciler.yamlload import join_path

_SPACE = re.compile(SPACE_ID_PATTERN)
_IDS = (re.compile(UUID_PATTERN), re.compile(KEY_PATTERN))


def not_a_plan(source: str, detail: str) -> PlanFileError:
    return PlanFileError(f"{source}: not a kcr plan, or edited by hand: {detail}; re-run `kcr plan --out`")


def check(body: Mapping[str, Any], source: str) -> None:
    """Raises PlanFileError naming `source` and the change at the first rule `body` breaks."""
    _check_target(body["kibana_url"], source)
    spaces = _check_spaces(body["spaces"], source)
    addresses: set[str] = set()
    for c in body["changes"]:
        address = _shown(f"{c['space']}/{c['id']}")
        if address in addresses:
            raise not_a_plan(source, f"change {address}: appears twice in changes (a plan holds one action per "
                             "connector)")
        addresses.add(address)
        problem = next((p for rule in _CHANGE_CHECKS if (p := rule(c, spaces)) is not None), None)
        if problem is not None:
            raise not_a_plan(source, f"change {address}: {problem}")
    _check_secrets_checked(body["secrets_checked"], body["changes"], source)
    _check_summary(body["summary"], body["changes"], source)
    _check_ignored(body["ignored"], spaces, addresses, source)
    _check_selection(Selection.from_json(body.get("selection")), body["changes"], source)


def _shown(text: str) -> str:
    """An address as a message may print it (a live id may hold characters a terminal would act on)."""
    return text if text.isprintable() else ascii(text)


def _check_target(url: str, source: str) -> None:
    """Apply compares this URL with the Kibana it is pointed at, so it must be one (never echoed:
    a hand-edited URL could carry credentials)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - validates: urlsplit parses the port lazily
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise not_a_plan(source, "kibana_url: is not an http(s) URL, so the Kibana the plan was made against is "
                         "unknown")
    if parts.username is not None or parts.password is not None:
        raise not_a_plan(source, "kibana_url: carries credentials (kcr never writes them into a plan)")


def _check_spaces(spaces: Sequence[str], source: str) -> frozenset[str]:
    seen: set[str] = set()
    for space in spaces:
        if not _SPACE.fullmatch(space):
            raise not_a_plan(source, f"spaces: {space!r} is not a Kibana space id ({SPACE_ID_PATTERN})")
        if space in seen:
            raise not_a_plan(source, f"spaces: {space} is listed twice")
        seen.add(space)
    return frozenset(seen)


def _identity_problem(c: Mapping[str, Any], spaces: frozenset[str]) -> str | None:
    """Ids kcr chose (a change with a desired state) follow kcr's rule and come from desired.key; a
    live-only id is Kibana's, and needs only to be addressable."""
    space, cid, desired = c["space"], c["id"], c["desired"]
    if not _SPACE.fullmatch(space):
        return f"space is not a Kibana space id ({SPACE_ID_PATTERN})"
    if space not in spaces:
        return f"space {space} is not one of the plan's spaces ({', '.join(sorted(spaces)) or 'none'})"
    if c["address"] != f"{space}/{cid}":
        return f"address {_shown(c['address'])!r} does not match its space and id"
    if desired is None:
        problem = id_segment_problem(cid, "id")
        return None if problem is None else f"{problem}, so kcr cannot address it in Kibana"
    if not any(p.fullmatch(cid) for p in _IDS):
        return f"id is neither a UUID nor a key ({KEY_PATTERN})"
    if not _key_gives_id(space, desired["key"], cid):
        return (f"desired.key {desired['key']!r} does not give id {cid} in space {space} (kcr uses the key itself "
                "when it is a UUID or id_mode is verbatim, else a UUID v5 of space and key)")
    return None


def _key_gives_id(space: str, key: str, cid: str) -> bool:
    if _IDS[0].fullmatch(key):
        return cid == key
    return bool(_IDS[1].fullmatch(key)) and cid in (key, derive_connector_id(space, key))


def _shape_problem(c: Mapping[str, Any], spaces: frozenset[str]) -> str | None:
    """What is sent must be what the change says it is: name and type agree with desired, a create
    starts from nothing, an update keeps the type and a recreate changes it."""
    action, desired, count = c["action"], c["desired"], c["referenced_by_count"]
    if desired is not None:
        if desired["type"] != c["type"]:
            return f"desired.type {desired['type']} contradicts type {c['type']}"
        if desired["name"] != c["name"]:
            return "desired.name contradicts name (the name shown is not the name apply would send)"
    if action == Action.CREATE.value:
        if count != 0:
            return f"a create has no live connector, yet referenced_by_count is {_count(count)}"
        return None
    if action == Action.RECREATE.value:
        if c["live_type"] == c["type"]:
            return (f"a recreate changes the type, yet live_type and type are both {c['type']} "
                    "(that is an update: a recreate would delete the connector for nothing)")
    elif c["live_type"] != c["type"]:
        return (f"live_type {c['live_type']} contradicts type {c['type']}: only a recreate changes a "
                f"connector's type, this is a {action}")
    return None


def _count(count: int | None) -> str:
    return "unknown (null)" if count is None else str(count)


def _guard_problem(c: Mapping[str, Any], spaces: frozenset[str]) -> str | None:
    """A guard must hold whenever its facts say so: apply re-reads the count, but the plan a reviewer
    approved must not claim a guarded action is free."""
    action, guard, desired, count = c["action"], c["guard"], c["desired"], c["referenced_by_count"]
    blocked = guard["blocked"]
    if blocked != bool(guard["reasons"]):
        return ("guard.blocked is true but guard.reasons is empty" if blocked
                else "guard.reasons gives reasons to block, yet guard.blocked is false")
    if guard["rules"] and not blocked:
        return "guard.rules names rules that use the connector, yet guard.blocked is false"
    if action in (Action.DELETE.value, Action.RECREATE.value):
        facts = [f"referenced_by_count is {_count(count)}"] if count is None or count > 0 else []
        if desired is not None and desired["protect"]:
            facts.append("desired.protect is true")
        if facts and not blocked:
            return f"{' and '.join(facts)}, yet guard.blocked is false for a {action}"
    elif blocked and action in (Action.NOOP.value, Action.UNMANAGED.value):
        return f"guard.blocked is true on a {action}, which sends nothing to guard"
    if c.get("removed_from_files") and action != Action.UNMANAGED.value:
        return f"removed_from_files is set on a {action}, which only an unmanaged connector can be"
    return None


def _secrets_problem(c: Mapping[str, Any], spaces: frozenset[str]) -> str | None:
    """The secrets summary, the keys named and the digest apply records must tell one story."""
    action, status, keys, desired, digest = (c["action"], c["secrets"], c["secret_keys_changed"], c["desired"],
                                             c["secret_digest"])
    if keys and status != SecretsStatus.CHANGED.value:
        return f"secret_keys_changed names {len(keys)} key(s), yet secrets is {status!r}"
    if action in (Action.DELETE.value, Action.UNMANAGED.value) and status != SecretsStatus.NONE.value:
        return f"a {action} sends no secrets, yet secrets is {status!r}"
    if action == Action.NOOP.value and status == SecretsStatus.CHANGED.value:
        return "secrets is 'changed', yet the action is no-op (changed secrets are an update)"
    if action == Action.CREATE.value and status not in (SecretsStatus.CHANGED.value, SecretsStatus.NONE.value):
        return f"a create sends every declared secret, yet secrets is {status!r}"
    if digest is not None and desired is not None:
        extra = sorted(set(digest["hmacs"]) - set(desired["secret_refs"]))
        if extra:
            return f"secret_digest.hmacs covers {', '.join(extra)}, which desired.secret_refs does not declare"
    if desired is not None:
        known = catalog.get(desired["type"]) if isinstance(desired.get("type"), str) else None
        refs = {k: v for k, v in desired["secret_refs"].items()
                if known is None or not known.is_plain_value(k, v)}  # x-kcr-plain: a selector, no secret
        literal = _literal_secret_paths(refs, "desired.secret_refs")
        if literal:
            return f"{', '.join(literal)} holds a literal value, not a reference such as ${{env:NAME}}"
    return None


def _diffs_problem(c: Mapping[str, Any], spaces: frozenset[str]) -> str | None:
    """The diffs are what the reviewer read: where they speak of the name or the type, they must say
    what apply sends."""
    action, desired, diffs = c["action"], c["desired"], c["diffs"]
    if action in (Action.DELETE.value, Action.NOOP.value, Action.UNMANAGED.value) and diffs:
        return f"a {action} changes no field, yet it lists {len(diffs)} diff(s)"
    type_diffs = [d for d in diffs if d["path"] == "connector_type_id"]
    if action == Action.RECREATE.value and not type_diffs:
        return "a recreate changes the type, yet no connector_type_id diff shows it"
    for d in diffs:
        if action == Action.CREATE.value and d["kind"] != "added":
            return f"diff {d['path']} is {d['kind']!r}, yet a create only adds fields"
        if d["path"] == "name" and desired is not None and d["after"] != desired["name"]:
            return "the name diff does not end at desired.name (the name apply would send)"
        if d["path"] == "connector_type_id" and action != Action.RECREATE.value:
            return f"a connector_type_id diff on a {action}: only a recreate changes the type"
        if d["path"] == "connector_type_id" and (d["before"] != c["live_type"] or desired is None
                                                 or d["after"] != desired["type"]):
            return "the connector_type_id diff does not go from live_type to desired.type"
    return None


_CHANGE_CHECKS = (_identity_problem, _shape_problem, _guard_problem, _secrets_problem, _diffs_problem)


def _check_secrets_checked(checked: bool, changes: Sequence[Mapping[str, Any]], source: str) -> None:
    """`kcr apply` refuses a plan made with --no-secrets by its `secrets_checked`: an edit that sets it
    must still leave a plan whose changes say their secrets were never read."""
    unchecked = SecretsStatus.NOT_CHECKED.value
    for c in changes:
        address, status = _shown(f"{c['space']}/{c['id']}"), c["secrets"]
        if checked and status == unchecked:
            raise not_a_plan(source, f"change {address}: secrets is {unchecked!r}, yet secrets_checked is true")
        if not checked and status in (SecretsStatus.UNCHANGED.value, SecretsStatus.UNKNOWN.value):
            raise not_a_plan(source, f"change {address}: secrets is {status!r}, a comparison a plan with "
                             "secrets_checked false never makes")
        if not checked and c["secret_digest"] is not None:
            raise not_a_plan(source, f"change {address}: carries a secret_digest, yet secrets_checked is false "
                             "(no secret was read)")


def _check_summary(summary: Mapping[str, int], changes: Sequence[Mapping[str, Any]], source: str) -> None:
    """The summary line is what most reviewers read; it must count the changes apply will make."""
    counts = {a.value: 0 for a in Action}
    for c in changes:
        counts[c["action"]] += 1
    counts["blocked"] = sum(1 for c in changes if c["guard"]["blocked"] and Action(c["action"]) in MUTATING)
    wrong = [f"{k} {summary[k]} (the changes hold {v})" for k, v in counts.items() if summary.get(k) != v]
    if wrong:
        raise not_a_plan(source, f"summary counts {', '.join(wrong)}")


def _check_selection(selection: Selection | None, changes: Sequence[Mapping[str, Any]], source: str) -> None:
    """A partial plan holds only its selected connectors: any other change was added by hand."""
    for c in changes if selection is not None else ():
        if selection is not None and not selection.selects(c["space"], c["id"], (c.get("desired") or {}).get("key")):
            raise not_a_plan(source, f"change {_shown(c['space'] + '/' + c['id'])}: outside the plan's selection "
                             f"({selection.described()})")


def _check_ignored(ignored: Sequence[str], spaces: frozenset[str], addresses: set[str], source: str) -> None:
    """An ignored connector is one kcr never touches: it cannot also be a change."""
    for entry in ignored:
        space = entry.partition("/")[0]
        if space not in spaces:
            raise not_a_plan(source, f"ignored: {_shown(entry)} is in space {_shown(space)}, not one of the plan's "
                             "spaces")
        if _shown(entry) in addresses:
            raise not_a_plan(source, f"ignored: {_shown(entry)} is also a change, but an ignored connector is never "
                             "touched")


def _literal_secret_paths(value: Any, path: str) -> list[str]:
    if is_plaintext_marker(value):
        return []
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _literal_secret_paths(v, join_path(path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _literal_secret_paths(v, join_path(path, i))]
    return [path] if is_plaintext(value) else []


def check_against_repository(plan: Plan, desired: DesiredState, source: str) -> None:
    """A saved plan is applied where the repository is checked out: its deletes and recreates must
    agree with what the repository declares there. Without a key nothing authenticates a plan, and
    an edit that turns an update into a delete is otherwise self-consistent; this catches it."""
    declared = {spec.id: spec for space in desired.spaces.values() for spec in space.connectors}
    for change in plan.changes:
        spec = declared.get(change.id)
        if spec is None or change.action not in MUTATING:
            continue
        where = spec.location.file if spec.location is not None else f"connectors/{spec.space}"
        if change.action is Action.DELETE:
            raise not_a_plan(source, f"change {change.address}: deletes a connector that {where} declares")
        if spec.preconfigured:  # kibana.yml's now: apply never sends it, whatever an older plan says
            raise not_a_plan(source, f"change {change.address}: {where} declares this connector preconfigured "
                             "(kibana.yml), which kcr never sends to the API; plan again")
        if spec.protect and (change.desired is None or not change.desired.protect):
            raise not_a_plan(source, f"change {change.address}: {where} protects this connector, the plan does not")
