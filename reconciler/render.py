"""Views of a Plan, and of the ApplyReport that applying it produced, for people and machines, made
from those values alone (a plan's JSON is `planfile.dumps`). The one place kcr colours terminal text.

Nothing here prints secret references or values: a plan carries references in `desired.secret_refs`
for apply, and the views show only the names of the secret keys that change. Names and config
values come from Kibana and the repository, so text output strips terminal control characters and
Markdown output escapes HTML.

At about 490 lines on purpose: the text, Markdown and report views share their helpers (the
escaping above, the symbols, the summary), and splitting them would put those helpers in a third place.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from typing import Any

from reconciler.apply_report import ActionResult, ApplyReport, Status, exit_code
from reconciler.plan import MUTATING, Action, Change, FieldDiff, Plan, SecretsStatus

NO_CHANGES = "No changes. Kibana matches the repository."
NO_CHANGES_UNSURE = "No changes."  # errors, or secrets kcr cannot compare: it cannot vouch for a match
UNKNOWN_SECRETS = ("secrets unknown for {n}: no record of what kcr applied, or no KCR_FINGERPRINT_KEY to "
                   "compare with; set the key, then run `kcr apply --sync-secrets` once to push them")
SECRETS_NOT_CHECKED = ("Secrets not checked (--no-secrets): names, types and config were compared, no secret was read; "
                       "this plan cannot be applied.")
PLAN_ERRORS = "The plan has errors (above): nothing can be applied until they are fixed."
MARKER = "<!-- kcr-plan -->"
TEXT_VALUE_WIDTH = 80
MARKDOWN_VALUE_WIDTH = 200

_SYMBOL = {
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.RECREATE: "-/+",
    Action.DELETE: "-",
    Action.UNMANAGED: "?",
    Action.NOOP: " ",
}
_COLOUR = {"+": "green", "~": "yellow", "-/+": "magenta", "-": "red", "!": "bold red", "?": "dim", "error": "red",
           "warning": "yellow", "drift": "bold red"}
# C0, DEL, C1 (a CSI at U+009B drives a terminal like ESC [) and the bidi overrides and isolates, which
# can make a name read as something else (Trojan Source): shown as escapes, never sent to a terminal.
_UNPRINTABLE = (*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_CONTROL = {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in _UNPRINTABLE}
_HAS_CONTROL = re.compile("[" + "".join(re.escape(chr(c)) for c in _UNPRINTABLE) + "]")  # one C scan a line


def paint(style: str, s: str, color: bool) -> str:
    """`s` in a rich style (e.g. "bold red") when `color`, else as it is. rich is imported only then:
    plain output, the CI case, never pays for it."""
    if not color:
        return s
    from rich.color import ColorSystem
    from rich.style import Style

    return Style.parse(style).render(s, color_system=ColorSystem.STANDARD)


def unknown_secrets(plan: Plan) -> int:
    """Unchanged connectors whose secrets could not be compared (typically right after adoption)."""
    return sum(1 for c in plan.changes if c.action is Action.NOOP and c.secrets is SecretsStatus.UNKNOWN)


def unchanged_line(plan: Plan) -> str | None:
    noop = plan.summary()["no-op"]
    if not noop:
        return None
    unknown = unknown_secrets(plan)
    return f"{noop} unchanged" + (f" ({UNKNOWN_SECRETS.format(n=unknown)})" if unknown else "")


def removed(plan: Plan) -> list[Change]:
    """Connectors kcr applied that no file declares any more, left in Kibana (drift, not a change)."""
    return [c for c in plan.changes if c.removed_from_files]


def summary_line(plan: Plan) -> str:
    gone = len(removed(plan))
    still = f"{gone} connector{'s' if gone != 1 else ''} removed from the files still in Kibana" if gone else ""
    if plan.has_errors and not plan.has_changes:
        return PLAN_ERRORS
    if not plan.has_changes and gone:
        return f"No changes to apply, but {still} (drift)."
    if not plan.has_changes and plan.has_drift:
        return "No changes to apply, but Kibana's preconfigured connectors differ from the files (drift)."
    if not plan.has_changes:
        unsure = (plan.has_errors or not plan.secrets_checked
                  or any(c.secrets is SecretsStatus.UNKNOWN for c in plan.changes))
        return NO_CHANGES_UNSURE if unsure else NO_CHANGES
    s = plan.summary()
    return (
        f"Plan: {s['create']} to create, {s['update']} to update, {s['recreate']} to recreate, "
        f"{s['delete']} to delete, {s['blocked']} blocked." + (f" {still[0].upper()}{still[1:]}." if gone else "")
    )


def _symbol(change: Change) -> str:
    return "!" if change.guard.blocked and change.action in MUTATING else _SYMBOL[change.action]


def _value(value: Any, width: int) -> str:
    text = "(absent)" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def _left_alone(title: str, changes: Sequence[Change], colour: str, color: bool) -> list[str]:
    """A section of connectors the plan shows but never touches, or nothing when there are none."""
    if not changes:
        return []
    lines = [title]
    for c in changes:
        line = f"  ? {c.address}  {json.dumps(c.name, ensure_ascii=False)}  [{c.type}]  {c.reason}"
        lines.append(paint(_COLOUR[colour], _clean(line), color))
    return [*lines, ""]


def _clean(text: str) -> str:
    return text.translate(_CONTROL) if _HAS_CONTROL.search(text) else text


def _address(change: Change) -> str:
    key = change.desired.key if change.desired is not None and change.desired.key != change.id else None
    return f"{change.address} ({key})" if key else change.address


def _secrets_line(change: Change) -> str | None:
    keys = ", ".join(change.secret_keys_changed)
    if change.secrets is SecretsStatus.NONE:
        return None
    if change.secrets is SecretsStatus.CHANGED:
        if change.action in (Action.CREATE, Action.RECREATE):
            return f"set (keys: {keys})" if keys else "none declared"
        return f"changed (keys: {keys})" if keys else "changed"
    if change.secrets is SecretsStatus.NOT_CHECKED:
        return "not checked (--no-secrets)"
    return change.secrets.value


def _rules(change: Change) -> str:
    return ", ".join(f'"{r.name}" ({r.id})' for r in change.guard.rules)


def _guard_text(change: Change) -> str | None:
    if change.action not in (Action.DELETE, Action.RECREATE):
        return None
    if not change.guard.blocked:
        return "allowed"
    rules = f"; used by rules: {_rules(change)}" if change.guard.rules else ""
    return f"BLOCKED ({'; '.join(change.guard.reasons)}){rules}"


# --- text ----------------------------------------------------------------------------------------


def text(plan: Plan, color: bool) -> str:
    """Terraform-like. Unchanged connectors show as a count only, to keep the output short."""
    where = f"Environment {_clean(plan.environment)}: " if plan.environment is not None else ""
    lines = [f"{where}Kibana {_clean(plan.kibana_url)}, spaces: {', '.join(plan.spaces) or '(none)'}", ""]
    for change in plan.changes:
        if change.action not in MUTATING:
            continue
        symbol = _symbol(change)
        head = f"{symbol:>3} {_address(change)}  {json.dumps(change.name, ensure_ascii=False)}  [{change.type}]"
        lines.append(paint(_COLOUR[symbol], _clean(head), color) + f"  {change.action.value}")
        lines.append(_clean(f"      reason: {change.reason}"))
        for d in change.diffs:
            lines += [_clean(line) for line in _diff_lines(d, TEXT_VALUE_WIDTH)]
        secrets = _secrets_line(change)
        if secrets is not None:
            lines.append(_clean(f"      secrets: {secrets}"))
        if change.live_fingerprint is not None:
            count = change.referenced_by_count
            lines.append(f"      referenced_by_count: {'unknown (not in Kibana answer)' if count is None else count}")
        guard = _guard_text(change)
        if guard is not None:
            guard = _clean(guard)
            lines.append(f"      guard: {paint(_COLOUR['!'], guard, color) if change.guard.blocked else guard}")
        lines.append("")
    lines += _left_alone("Removed from the files, still in Kibana (kcr applied them; the space does not prune):",
                         removed(plan), "!", color)
    lines += _left_alone("Unmanaged (not declared in this space, left alone):",
                         [c for c in plan.changes if c.action is Action.UNMANAGED and not c.removed_from_files],
                         "?", color)
    if plan.problems:
        lines.append("Problems:")
        for p in plan.problems:
            severity = paint(_COLOUR.get(p.severity, "none"), _clean(p.severity), color)
            lines.append(f"  {severity}: {_clean(f'{p.where()}: {p.message}')}")
        lines.append("")
    if plan.ignored:
        lines.append(f"{len(plan.ignored)} ignored by `ignore` globs.")
    unchanged = unchanged_line(plan)
    if unchanged is not None:
        lines.append(f"{unchanged}.")
    if not plan.secrets_checked:
        lines.append(SECRETS_NOT_CHECKED)
    if plan.selection is not None:
        lines.append(_clean(PARTIAL.format(plan.selection.described())))
    lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


SET_NOTE = "a set: order ignored"
PARTIAL = "partial plan: {} (every other connector is left alone)."


def _diff_lines(d: FieldDiff, width: int) -> list[str]:
    """One line per diff; a set-like list adds one line per member it gains or loses, since the
    members, not the two whole lists, are what a reviewer checks."""
    head = f"      {d.path}: {_diff_text(d, width)}"
    if d.members is None:
        return [head]
    return [head, *(f"        + {_value(v, width)}" for v in d.members.added),
            *(f"        - {_value(v, width)}" for v in d.members.removed)]


def _diff_text(d: FieldDiff, width: int) -> str:
    if d.members is not None:
        return f"{len(d.members.added)} added, {len(d.members.removed)} removed ({SET_NOTE})"
    if d.kind == "added":
        return f"+ {_value(d.after, width)}"
    if d.kind == "removed":
        return f"- {_value(d.before, width)}"
    return f"{_value(d.before, width)} → {_value(d.after, width)}"


# --- Markdown ------------------------------------------------------------------------------------


# Every string from the plan (names from Kibana, ids, reasons, messages, values) is escaped for both
# places it lands: raw HTML (the <summary> line is an HTML block) and Markdown inlines (lists, table
# cells). A numeric character reference is decoded as literal text and never as syntax, so each
# character that could start a link or image ([ ]), raw HTML (< >), a code span (`), emphasis (* _ ~),
# a table cell (|), a heading (#), a backslash escape, GitLab math ($) or inline diff ({ }), an email
# autolink or a mention (@) becomes one, and so do the ':' of `scheme://` and the '.' of `www.` (the
# other autolinks). The rest of the punctuation stays readable: without those it means nothing. Line
# breaks become <br>, so no string can begin a line of its own (a heading, a list, a quote).
_MD_ENTITIES = {
    **{ord(c): f"&#{ord(c)};" for c in "!#$%*@[\\]_`{|}~"},
    **{ord(c): html.escape(c, quote=True) for c in "&<>\"'"},
    **{c: "&#92;" + _CONTROL[c][1:] for c in _UNPRINTABLE if c not in (0x0A, 0x0D)},
}
_MD_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_MD_AUTOLINK = re.compile(r":(?=//)|(?i:(?<=www)\.)")
_ZWSP = "&#8203;"


def _md_escape(s: str) -> str:
    escaped = _MD_AUTOLINK.sub(lambda m: f"&#{ord(m.group(0))};", s.translate(_MD_ENTITIES))
    return _MD_LINE_BREAK.sub("<br>", escaped)


# GitLab's reference prefixes: @user, #issue, !merge request, ~label, %milestone, $snippet, &epic.
# (only where one could start: before a word character or a quoted label)
_MD_REFERENCES = re.compile(r"(?:&#64;|&#35;|&#33;|&#126;|&#37;|&#36;|&amp;)(?=\w|&quot;)")


def _md(s: str) -> str:
    """Escaped text. GitLab finds mentions, references and URLs in the rendered text itself, entities
    decoded, so a zero-width space also keeps `@all` from notifying a project, `#12` from posting a
    "mentioned in" note on an issue, and `https://` from becoming a link."""
    return _MD_REFERENCES.sub(lambda m: m.group(0) + _ZWSP, _md_escape(s)).replace("&#58;//", "&#58;" + _ZWSP + "//")


def markdown_text(s: str) -> str:
    """`s` as inert Markdown text, for other writers of Markdown (the MR comment's title)."""
    return _md(s)


def _code(s: str) -> str:
    """Escaped text in <code>, where GitLab looks for no mention or link: copied, it is the value."""
    return f"<code>{_md_escape(s)}</code>"


def _md_inline_code(s: str) -> str:
    """Escaped text whose `backticked` parts become <code>."""
    return "".join(_code(part) if i % 2 else _md(part) for i, part in enumerate(s.split("`")))


def markdown(plan: Plan) -> str:
    """For a merge-request note; MARKER lets CI find and update its one sticky comment."""
    s = plan.summary()
    changed = [c for c in plan.changes if c.action in MUTATING]
    # What someone must act on comes first: problems and blocked actions, above the summary.
    out = [MARKER, "### kcr plan", "", *_md_problems(plan), *_md_blocked(changed),
           f"**{_md(summary_line(plan))}**", ""]
    if not plan.secrets_checked:
        out += [_md_inline_code(SECRETS_NOT_CHECKED.replace("--no-secrets", "`--no-secrets`")), ""]
    if plan.selection is not None:
        out += [_md(PARTIAL.format(plan.selection.described())), ""]
    where = f"Environment {_code(plan.environment)} · " if plan.environment is not None else ""
    spaces = ', '.join(_code(x) for x in plan.spaces) or '(none)'
    out.append(f"{where}Kibana {_code(plan.kibana_url)} · spaces: {spaces}")
    out += ["", "| action | count |", "|---|---:|"]
    out += [f"| {name} | {s[name]} |" for name in ("create", "update", "recreate", "delete", "no-op", "unmanaged")]
    gone = removed(plan)
    out += [f"| blocked | {s['blocked']} |", *([f"| removed from the files | {len(gone)} |"] if gone else []), ""]
    if changed:
        out += ["#### Changes", ""]
        for c in changed:
            out += _md_change(c)
    if gone:
        out += ["#### Removed from the files, still in Kibana", ""]
        out += [f"- {_code(c.address)} {_md(c.name)} ({_code(c.type)}): {_md(c.reason)}" for c in gone]
        out.append("")
    unmanaged = [c for c in plan.changes if c.action is Action.UNMANAGED and not c.removed_from_files]
    if unmanaged:
        out += [f"<details><summary>Unmanaged connectors ({len(unmanaged)}), left alone</summary>", ""]
        out += [f"- {_code(c.address)} {_md(c.name)} ({_code(c.type)})" for c in unmanaged]
        out += ["", "</details>", ""]
    if s["no-op"]:
        unknown = unknown_secrets(plan)
        also = f" ({_md_inline_code(UNKNOWN_SECRETS.format(n=unknown))})" if unknown else ""
        out += [f"{s['no-op']} connector{'s' if s['no-op'] != 1 else ''} unchanged{also}.", ""]
    return "\n".join(out)


def _md_problems(plan: Plan) -> list[str]:
    if not plan.problems:
        return []
    return ["#### Problems", "",
            *(f"- **{_md(p.severity)}** {_code(p.where().rstrip(': '))}: {_md(p.message)}" for p in plan.problems), ""]


def _md_blocked(changed: list[Change]) -> list[str]:
    out = []
    for c in (c for c in changed if c.guard.blocked):
        rules = "; ".join(f"{_md(r.name)} ({_code(r.id)})" for r in c.guard.rules)
        used = f" — used by rules: {rules}" if rules else ""
        out.append(f"- {_code(c.address)} {_md(c.name)}: {c.action.value} BLOCKED, "
                   f"{_md('; '.join(c.guard.reasons))}{used}")
    return ["#### Blocked", "", *out, ""] if out else []


def _md_change(c: Change) -> list[str]:
    symbol = _symbol(c)
    key = f" ({_code(c.desired.key)})" if c.desired is not None and c.desired.key != c.id else ""
    out = [
        f"<details><summary><code>{_md(symbol)} {c.action.value}</code> {_code(c.address)}{key} — "
        f"{_md(c.name)}</summary>",
        "",
        f"Type {_code(c.type)}. Reason: {_md(c.reason)}",
        "",
    ]
    if c.diffs:
        out += ["| field | before | after |", "|---|---|---|"]
        out += [_md_diff_row(d) for d in c.diffs]
        out.append("")
    secrets = _secrets_line(c)
    if secrets is not None:
        out += [f"Secrets: {_md(secrets)}", ""]
    if c.live_fingerprint is not None:
        count = c.referenced_by_count
        out += ["Referenced by an unknown number of saved objects (Kibana's answer did not carry it)." if count is None
                else f"Referenced by {count} saved object{'s' if count != 1 else ''} (rules, cases).", ""]
    guard = _guard_text(c)
    if guard is not None:
        out += [f"Guard: {'**' + _md(guard) + '**' if c.guard.blocked else _md(guard)}", ""]
    out += ["</details>", ""]
    return out


def _md_diff_row(d: FieldDiff) -> str:
    """A table row; a set-like list shows the members it loses under before and gains under after."""
    if d.members is None:
        return f"| {_code(d.path)} | {_cell(d.before, d.kind != 'added')} | {_cell(d.after, d.kind != 'removed')} |"
    return (f"| {_code(d.path)} ({_md(SET_NOTE)}) | {_members_cell('removed', d.members.removed)} | "
            f"{_members_cell('added', d.members.added)} |")


def _cell(value: Any, present: bool) -> str:
    return _code(_value(value, MARKDOWN_VALUE_WIDTH)) if present else "—"


def _members_cell(what: str, members: tuple[Any, ...]) -> str:
    if not members:
        return "—"
    return f"{what}: " + "<br>".join(_code(_value(v, MARKDOWN_VALUE_WIDTH)) for v in members)


# --- GitLab --------------------------------------------------------------------------------------


def gitlab_report(plan: Plan) -> dict[str, int]:
    """GitLab's `artifacts:reports:terraform` shape, only these three keys. A recreate counts as one
    delete plus one create, as GitLab's documented jq recipe counts Terraform's delete-then-create.
    Blocked actions count too: they are planned, the guard decides at apply time. A `--no-secrets`
    plan counts what it compared: its updates are name or config changes (or secrets Kibana says are
    missing), never secrets, and the Markdown says the secrets were not checked."""
    s = plan.summary()
    return {
        "create": s["create"] + s["recreate"],
        "update": s["update"],
        "delete": s["delete"] + s["recreate"],
    }


# --- the apply report ------------------------------------------------------------------------------

_MARK = {
    Status.OK: ("✓", "green"),
    Status.FAILED: ("✗", "red"),
    Status.STALE: ("!", "yellow"),
    Status.BLOCKED: ("⊘", "magenta"),
}


def report_summary_line(report: ApplyReport) -> str:
    c = report.counts
    return (
        f"Apply: {c[Status.OK]} succeeded, {c[Status.FAILED]} failed, {c[Status.STALE]} stale, "
        f"{c[Status.BLOCKED]} blocked."
    )


def result_text(result: ActionResult, color: bool) -> str:
    mark, style = _MARK[result.status]
    head = f"{mark} {result.action.value} {result.address}: {result.status.value} ({result.duration:.2f}s)"
    head = paint(style, head, color)
    return f"{head}\n    {result.message}" if result.message else head


def report_text(report: ApplyReport, color: bool) -> str:
    lines = [result_text(r, color) for r in report.results]
    if report.record_error:
        lines.append(f"warning: the record of applied secrets was not saved: {report.record_error}")
    if lines:
        lines.append("")
    lines.append(report_summary_line(report))
    return "\n".join(lines) + "\n"


def report_json(report: ApplyReport) -> dict[str, Any]:
    return {
        "summary": dict(report.counts),
        "exit_code": exit_code(report),
        "record_updated": report.record_updated,
        "record_error": report.record_error,
        "results": [r.to_json() for r in report.results],
    }


APPLY_MARKER = "<!-- kcr-apply -->"
_APPLIED = {Action.CREATE: "created", Action.UPDATE: "updated", Action.RECREATE: "recreated", Action.DELETE: "deleted"}
_SECTIONS = ((Status.FAILED, "Failed"), (Status.STALE, "Stale (Kibana changed since the plan; re-plan)"),
             (Status.BLOCKED, "Blocked by a guard"), (Status.OK, "Applied"))


def report_markdown(report: ApplyReport, plan: Plan | None = None) -> str:
    """The apply report for the merge request it came from: what was created, updated, recreated and
    deleted, and (first, being what someone must act on) what failed, was stale or was blocked. The
    plan gives the environment, Kibana and the connectors' names. Messages are the applier's, masked
    there; every string is escaped as in the plan's Markdown."""
    out = [APPLY_MARKER, "### kcr apply", "", f"**{_md(report_summary_line(report))}**", ""]
    if plan is not None:
        out += [_md_where(plan.environment) + f"Kibana {_code(plan.kibana_url)}", ""]
    if not report.results:
        out += ["No changes: nothing was applied.", ""]
    else:
        done = [r.action for r in report.with_status(Status.OK)]
        out += ["| result | count |", "|---|---:|"]
        out += [f"| {word} | {done.count(action)} |" for action, word in _APPLIED.items()]
        out += [f"| {s.value} | {report.counts[s]} |" for s in (Status.BLOCKED, Status.FAILED, Status.STALE)]
        out.append("")
    names = {c.address: c.name for c in plan.changes} if plan is not None else {}
    for status, heading in _SECTIONS:
        results = report.with_status(status)
        if results:
            out += [f"#### {heading} ({len(results)})", "", *(_md_result(r, names.get(r.address)) for r in results), ""]
    if report.record_error:
        out += [f"**Warning:** the record of applied secrets was not saved: {_md(report.record_error)}", ""]
    return "\n".join(out)


def apply_stopped_markdown(reason: str, environment: str | None) -> str:
    """For an apply that ended without a report (an error, a refusal, a cancelled prompt): the MR still
    hears of it. `reason` is an error message, which never carries a secret."""
    where = [_md_where(environment).removesuffix(" · "), ""] if environment is not None else []
    return "\n".join([APPLY_MARKER, "### kcr apply", "", "**Apply stopped before it finished.**", "", *where,
                      _md(reason), "", f"See the job's log; {_code('kcr plan')} shows what Kibana holds now.", ""])


def _md_where(environment: str | None) -> str:
    return f"Environment {_code(environment)} · " if environment is not None else ""


def _md_result(result: ActionResult, name: str | None) -> str:
    mark, _ = _MARK[result.status]
    named = f" — {_md(name)}" if name else ""
    said = f": {_md(result.message)}" if result.message else ""
    return f"- {mark} <code>{result.action.value}</code> {_code(result.address)}{named}{said}"
