"""Kibana's authorization as the sandbox emulates it: what a credential's privileges grant, and the 403
each route answers when what it needs is not granted.

The model keeps Kibana's names so a seed can hold what a real role descriptor holds. A credential
carries Kibana application privileges, as `POST /_security/api_key` names them for the application
`kibana-.kibana` (PrivilegeSerializer and ResourceSerializer, elastic/kibana
x-pack/plugins/security/server/authorization/privilege_serializer.ts, resource_serializer.ts):
base `all`/`read` (`space_all`/`space_read` at a space), feature privileges `feature_<id>.<privilege>`,
or Kibana authz actions themselves (`saved_object:action/get`, anything with a `:`; Elasticsearch accepts
action names in application privileges, `*` wildcards included), over resources `*` or `space:<id>`.
A privilege is expanded into the authz actions the routes check:

- Actions and Connectors (feature `actions`, x-pack/platform/plugins/shared/actions/server/feature.ts):
  `read` grants the `action` saved object's get/find and all of `action_task_params` ("action execution
  requires 'read' over `actions`, but 'all' over `action_task_params`"), so running a connector comes
  with `read`; `all` adds create/update/delete. `minimal_*` are the same here (sub-features grant UI only).
- Rules: every other feature's `read`/`all` grants `alerting:<consumer>/rule/<op>` for the consumers it
  covers; the sandbox keys rules on their consumer alone (Kibana on rule type and consumer, from each
  feature's `alerting` list). Stack Rules (`stackAlerts`) covers the consumers `stackAlerts` and `alerts`
  (x-pack/platform/plugins/shared/stack_alerts/server/feature.ts); any other feature id, its own.
- Every feature privilege grants `login:`, which spaces are listed and read by.
- Other sub-feature privileges (`feature_actions.endpoint_security_execute`...) grant nothing checked here.

Checks and messages:
- Connectors: ActionsAuthorization.ensureAuthorized
  (x-pack/platform/plugins/shared/actions/server/authorization/actions_authorization.ts): operation
  `saved_object:action/<op>`, `execute` aliased to action/get + action_task_params/create; 403
  `Unauthorized to <op> a "<type>" action` when the type is known, else `Unauthorized to <op> actions`
  (api-behaviour.md §0: get and get_all say `get actions`, update and delete name no type; execute names
  the type of a connector found in the space). connector_types and status need no privilege.
- Spaces: SecureSpacesClientWrapper (x-pack/platform/plugins/shared/security/server/spaces/
  secure_spaces_client_wrapper.ts): the list keeps the spaces with `login:`, a bare `Boom.forbidden()`
  (message `Forbidden`) when none; one space needs `login:` there, else `Unauthorized to get <id> space`.
- Rules: AlertingAuthorization (x-pack/platform/plugins/shared/alerting/server/authorization/
  alerting_authorization.ts): `_find` answers only the rules of authorized consumers, and
  `Unauthorized to find rules for any rule types` when there are none; get/create/update/delete answer
  `Unauthorized by "<consumer>" to <op> "<rule type>" rule`.

Order: Kibana validates a request's schema (400) before its handler asks for authorization; the sandbox
checks privileges before the handler, so an unauthorized request with a malformed body answers 403 here
(a create whose body has no string type is left to the handler's 400, as Kibana does). The
`api:actions:execute-*-connectors` tags some releases also require come with the same feature
privileges, so they change no answer for privileges named by feature and are not modelled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from reconciler.sandbox.http import HttpError

if TYPE_CHECKING:
    from reconciler.sandbox.context import Ctx

LOGIN = "login:"
_ACTION = "saved_object:action"
_TASK_PARAMS = "saved_object:action_task_params"
_READ_OPS = ("get", "find")
_RULE_CONSUMERS: Mapping[str, tuple[str, ...]] = {"stackAlerts": ("stackAlerts", "alerts")}


def _rule_actions(consumer: str, ops: Sequence[str]) -> set[str]:
    return {f"alerting:{consumer}/rule/{op}" for op in ops}


def expand(privilege: str) -> frozenset[str]:
    """The authz actions one application privilege grants (patterns; `*` matches anything)."""
    if ":" in privilege:  # an action named directly
        return frozenset({privilege})
    if privilege in ("all", "space_all"):
        return frozenset({"*"})
    if privilege in ("read", "space_read"):
        return frozenset({LOGIN, f"{_ACTION}/get", f"{_ACTION}/find", f"{_TASK_PARAMS}/*",
                          *_rule_actions("*", _READ_OPS)})
    feature, _, level = privilege.removeprefix("feature_").partition(".")
    if level not in ("all", "read", "minimal_all", "minimal_read"):
        return frozenset()
    write = level.endswith("all")
    if feature == "actions":
        ops = {f"{_ACTION}/*"} if write else {f"{_ACTION}/{op}" for op in _READ_OPS}
        return frozenset({LOGIN, f"{_TASK_PARAMS}/*", *ops})
    granted = {LOGIN}
    for consumer in _RULE_CONSUMERS.get(feature, (feature,)):
        granted |= _rule_actions(consumer, ("*",) if write else _READ_OPS)
    return frozenset(granted)


@dataclass(frozen=True)
class Grant:
    """One credential's privileges: application privileges over resources (`*` or `space:<id>`), as one
    `applications` entry of a role descriptor holds them."""

    privileges: tuple[str, ...] = ("all",)
    resources: tuple[str, ...] = ("*",)

    def actions_at(self, space: str) -> frozenset[str]:
        if "*" not in self.resources and f"space:{space}" not in self.resources:
            return frozenset()
        return frozenset().union(*(expand(p) for p in self.privileges))

    def allows(self, space: str, *actions: str) -> bool:
        granted = self.actions_at(space)
        return all(any(fnmatchcase(action, pattern) for pattern in granted) for action in actions)

    def finds_any_rules(self, space: str) -> bool:
        """Whether some consumer's rules may be found here (Kibana: some rule type is authorized)."""
        for pattern in self.actions_at(space):
            consumer = pattern.removeprefix("alerting:").split("/")[0] if pattern.startswith("alerting:") else "x"
            if fnmatchcase(f"alerting:{consumer}/rule/find", pattern):
                return True
        return False


def grant_from_seed(raw: Mapping[str, Any] | None) -> Grant:
    """A seed entry's `privileges` (a name or a list) and `resources` (default every space)."""
    raw = raw or {}
    privileges = raw.get("privileges")
    privileges = ["all"] if privileges is None else [privileges] if isinstance(privileges, str) else privileges
    resources = raw.get("resources") or ["*"]
    return Grant(tuple(str(p) for p in privileges), tuple(str(r) for r in resources))


# ---- the checks, by route name (routes.py) -------------------------------------------------------


def _forbidden(message: str) -> HttpError:
    return HttpError(403, message)


def _connector_type(ctx: Ctx, id: str) -> str | None:
    """The type execute's message names: a preconfigured connector's or one found in this space."""
    pre = ctx.settings.preconfigured.get(id)
    if pre is not None:
        return pre.type
    rec = ctx.store.connectors.get(id)
    return rec["connector_type_id"] if rec is not None and rec["space"] == ctx.space else None


def _check_connectors(grant: Grant, route: str, ctx: Ctx, params: Mapping[str, str]) -> None:
    if route in ("connectors", "get_connector"):
        op, needs, type_id = "get", [f"{_ACTION}/get"], None
    elif route == "create_connector":
        body = ctx.body if isinstance(ctx.body, Mapping) else {}
        type_id = body.get("connector_type_id")
        if not isinstance(type_id, str):
            return  # the route schema's 400 comes first (the handler answers it)
        op, needs = "create", [f"{_ACTION}/create"]
    elif route in ("update_connector", "delete_connector"):
        op = route.split("_")[0]
        needs, type_id = [f"{_ACTION}/{op}"], None
    else:  # execute_connector
        op, needs = "execute", [f"{_ACTION}/get", f"{_TASK_PARAMS}/create"]
        type_id = _connector_type(ctx, params["id"])
    if not grant.allows(ctx.space, *needs):
        target = f'a "{type_id}" action' if type_id else "actions"
        raise _forbidden(f"Unauthorized to {op} {target}")


def _check_rule(grant: Grant, route: str, ctx: Ctx, params: Mapping[str, str]) -> None:
    op = route.split("_")[0]
    if route == "create_rule":
        body = ctx.body if isinstance(ctx.body, Mapping) else {}
        type_id, consumer = body.get("rule_type_id"), body.get("consumer")
        if not (isinstance(type_id, str) and isinstance(consumer, str)):
            return  # the schema's 400 first
    else:
        rule = ctx.store.rules.get(params["id"])
        if rule is None or rule["space"] != ctx.space:
            return  # the handler's 404
        type_id, consumer = rule["rule_type_id"], rule["consumer"]
    if not grant.allows(ctx.space, f"alerting:{consumer}/rule/{op}"):
        raise _forbidden(f'Unauthorized by "{consumer}" to {op} "{type_id}" rule')


_CONNECTOR_ROUTES = frozenset({"connectors", "get_connector", "create_connector", "update_connector",
                               "delete_connector", "execute_connector"})
_RULE_ROUTES = frozenset({"create_rule", "get_rule", "update_rule", "delete_rule"})


def authorize(grant: Grant | None, route: str, ctx: Ctx, params: Mapping[str, str]) -> None:
    """Raise Kibana's 403 when `grant` lacks what the route needs; narrow what a list answers (spaces,
    rules `_find`) to what the grant may see. `None` is a superuser (the seed's list forms). Runs under
    the Sandbox's lock; it never changes the store, only the view `ctx` gives the handler."""
    if grant is None:
        return
    if route in _CONNECTOR_ROUTES:
        _check_connectors(grant, route, ctx, params)
    elif route in _RULE_ROUTES:
        _check_rule(grant, route, ctx, params)
    elif route == "find_rules":
        rules = {rid: r for rid, r in ctx.store.rules.items()
                 if r["space"] != ctx.space or grant.allows(ctx.space, f"alerting:{r['consumer']}/rule/find")}
        if not grant.finds_any_rules(ctx.space):
            raise _forbidden("Unauthorized to find rules for any rule types")
        ctx.store = replace(ctx.store, rules=rules)
    elif route == "spaces":
        visible = tuple((sid, name) for sid, name in ctx.settings.spaces if grant.allows(sid, LOGIN))
        if not visible:
            raise _forbidden("Forbidden")
        ctx.settings = replace(ctx.settings, spaces=visible)
    elif route == "space" and not grant.allows(params["id"], LOGIN):
        raise _forbidden(f"Unauthorized to get {params['id']} space")
