"""The checks apply makes before it sends a change: protection and the plan's guard, the secrets the
plan saw, the live connector the plan saw, and the references a delete or recreate would break.

Each check is a function of the Change and of what the run has just read from Kibana; it raises
Outcome with the status to report (stale, blocked, failed) and never sends anything. Separate from
the run in `applier`, which does the reading, the sending and the bookkeeping, so that every reason
apply refuses an action can be read, and tested, in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from reconciler.apply_report import Status
from reconciler.errors import ReconcilerError
from reconciler.model import LiveConnector, RuleRef, SecretDigest
from reconciler.plan import Action, Change, live_fingerprint

AllowReferenced = frozenset[str] | Literal["all"]
Lists = Mapping[str, Mapping[str, LiveConnector] | Exception]  # space -> id -> live, or why it is unknown

STALE_LIVE = "changed in Kibana since the plan was made; re-run kcr plan"
STALE_SECRETS = "secrets changed since the plan was made; re-run kcr plan"
UNKNOWN_COUNT = "referenced_by_count could not be re-read, so nothing was sent"
UNKNOWN_COUNT_FIX = ("re-run kcr apply; if it stays blocked, check that GET .../api/actions/connectors of that "
                     "space lists the connector with its referenced_by_count (--allow-referenced does not lift this)")
PLAINTEXT_IN_SAVED_PLAN = ("a plaintext secret (allow_plaintext_secrets) is never written to a saved plan; "
                           "apply it with `kcr apply` (plan and apply in one run)")


class Outcome(Exception):
    """Ends one action early with a status other than ok (the applier's control flow only)."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def describe(exc: BaseException) -> str:
    """A result's message for an exception: kcr's own errors say themselves, others their type too."""
    if isinstance(exc, ReconcilerError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def digest_matches(planned: SecretDigest | None, now: SecretDigest) -> bool:
    """HMACs are compared when both sides have them (a run without the key has none), Vault versions
    for every reference the plan recorded. A plan without a digest promised nothing to compare."""
    if planned is None:
        return True
    if planned.hmacs and now.hmacs and dict(planned.hmacs) != dict(now.hmacs):
        return False
    return all(now.vault_versions.get(ref) == version for ref, version in planned.vault_versions.items())


def check_secrets(change: Change, digests: Mapping[str, SecretDigest]) -> None:
    """`digests`: by address, those of the secrets resolved for this run (a delete sends none)."""
    if change.action is Action.DELETE:
        return
    if not digest_matches(change.secret_digest, digests[change.address]):
        raise Outcome(Status.STALE, STALE_SECRETS)


def check_protect(change: Change) -> None:
    if change.action not in (Action.DELETE, Action.RECREATE):
        if change.guard.blocked:  # the planner blocked something no re-read can lift
            raise Outcome(Status.BLOCKED, "; ".join(change.guard.reasons) or "blocked by the plan")
        return
    if change.desired is not None and change.desired.protect:
        verb = "deleted" if change.action is Action.DELETE else "recreated"
        raise Outcome(Status.BLOCKED, f"protect: true — this connector is never {verb}")
    if change.guard.blocked and change.referenced_by_count == 0:
        raise Outcome(Status.BLOCKED, "; ".join(change.guard.reasons) or "blocked by the plan")


def listed(change: Change, lists: Lists, what: str) -> Mapping[str, LiveConnector]:
    """The space's list read at the start of the phase. A delete or recreate that cannot have it
    is blocked, not failed: nothing was sent, and nothing proves the connector unused."""
    connectors = lists.get(change.space)
    guarded = change.action in (Action.DELETE, Action.RECREATE)
    if isinstance(connectors, Exception):
        if guarded:
            raise Outcome(Status.BLOCKED, f"{UNKNOWN_COUNT}: the list of connectors of space "
                                          f"{change.space} could not be read ({describe(connectors)}); "
                                          f"{UNKNOWN_COUNT_FIX}")
        raise Outcome(Status.FAILED, f"could not re-read {what}: {describe(connectors)}")
    if connectors is None and guarded:
        raise Outcome(Status.BLOCKED, f"{UNKNOWN_COUNT}: the connectors of space {change.space} were not "
                                      f"listed; {UNKNOWN_COUNT_FIX}")
    return connectors or {}


def check_live(change: Change, live: LiveConnector | None) -> None:
    """`live`: the connector as Kibana holds it now (None: absent), against the fingerprint the plan saw."""
    now = None if live is None else live_fingerprint(live)
    if now == change.live_fingerprint:
        if live is not None and live.type != change.live_type:
            # The fingerprint covers the type, so this is a plan whose live_type was edited: a
            # "recreate" of a connector whose type does not change would delete it for nothing.
            raise Outcome(Status.STALE, f"Kibana holds a {live.type} connector, the plan says "
                                        f"{change.live_type}: {STALE_LIVE}")
        return
    if change.live_fingerprint is None:
        raise Outcome(Status.STALE, f"now exists in Kibana: {STALE_LIVE}")
    if live is None:
        raise Outcome(Status.STALE, f"no longer exists in Kibana: {STALE_LIVE}")
    raise Outcome(Status.STALE, STALE_LIVE)


def check_references(change: Change, connectors: Mapping[str, LiveConnector],
                     allow_referenced: AllowReferenced,
                     rules: Callable[[], Sequence[RuleRef]] | None = None) -> None:
    """Fails closed: a connector missing from the list (cut at 10,000, or a partial answer) or
    listed without a count blocks whatever --allow-referenced says, since that flag lifts a known
    count, not an unknown one. A block names the rules as the plan does: `rules` reads them now (a
    rule may have been added since the plan), else the plan's are named."""
    found = connectors.get(change.id)
    if found is None:
        raise Outcome(Status.BLOCKED, f"{UNKNOWN_COUNT}: Kibana's list of space {change.space} "
                                      f"({len(connectors)} connectors) does not include it (a list cut at "
                                      f"10,000, or a partial answer); {UNKNOWN_COUNT_FIX}")
    count = found.referenced_by_count
    if count is None:
        raise Outcome(Status.BLOCKED, f"{UNKNOWN_COUNT}: Kibana's list of space {change.space} carries no "
                                      f"count for it; {UNKNOWN_COUNT_FIX}")
    keys = {change.desired.key, f"{change.space}/{change.desired.key}"} if change.desired else set()
    names_for = {change.id, change.address} | keys
    allowed = allow_referenced == "all" or bool(names_for & set(allow_referenced))
    if count > 0 and not allowed:
        named = (rules() if rules is not None else ()) or change.guard.rules
        names = ", ".join(f'"{r.name}" ({r.id})' for r in named)
        used_by = f"; used by rules: {names}" if names else ""
        raise Outcome(
            Status.BLOCKED,
            f"referenced by {count} saved object{'s' if count != 1 else ''}{used_by}; "
            f"pass --allow-referenced {change.id} (or all) to {change.action.value} it anyway",
        )
