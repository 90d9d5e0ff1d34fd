"""What every rendering shares: the counts, the summary line, the change sections, the violation order.

Counting (the last line of the text rendering and the first line of the markdown one):

    to assign  = createGroup + addMember + setUsageLocation + assignLicense
    to change  = updateLicense + reprocess
    to remove  = removeLicense + removeMember + removeDirectLicense
    users affected = distinct UPNs over every action's `users`
    violations = every violation except those the plan fixes (status "fixed")

Change sections are the Terraform-style blocks both text and markdown draw: one per group
(license actions, group creation, group reprocessing), then one per group's membership, one for
usage locations, one per SKU of direct-license removals, one for user reprocessing. Lines start
with their symbol (`+`, `~`, `-`) in column 0; sub-lines are indented by four spaces.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from reconciler.plan import (
    EXISTING,
    FIXED,
    LICENSE_CODES,
    NEW,
    PLANNER_CODES,
    POLICY_CODES,
    Action,
    Plan,
    Violation,
)

ASSIGN_KINDS = ("createGroup", "addMember", "setUsageLocation", "assignLicense")
CHANGE_KINDS = ("updateLicense", "reprocess")
REMOVE_KINDS = ("removeLicense", "removeMember", "removeDirectLicense")

SYMBOL = {
    "createGroup": "+",
    "addMember": "+",
    "setUsageLocation": "+",
    "assignLicense": "+",
    "updateLicense": "~",
    "reprocess": "~",
    "removeLicense": "-",
    "removeMember": "-",
    "removeDirectLicense": "-",
}

T = TypeVar("T")

MAX_USERS = 20  # users listed before "... and N more"
WIDTH = 100  # wrap long lists of names at this width
SUB = "    "  # indent of sub-lines under an action


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


@dataclass(frozen=True)
class Counts:
    assign: int
    change: int
    remove: int
    users: int
    violations: int


def change_counts(plan: Plan) -> Counts:
    summary = plan.summary
    return Counts(
        assign=sum(summary.get(k, 0) for k in ASSIGN_KINDS),
        change=sum(summary.get(k, 0) for k in CHANGE_KINDS),
        remove=sum(summary.get(k, 0) for k in REMOVE_KINDS),
        users=plan.users_affected,
        violations=sum(1 for v in plan.violations if v.status != FIXED),
    )


def summary_line(plan: Plan) -> str:
    """`Plan: X to assign, Y to change, Z to remove, N users affected, V violations.` or `No changes.`"""
    if not plan.has_changes:
        return "No changes."
    c = change_counts(plan)
    return (
        f"Plan: {c.assign:,} to assign, {c.change:,} to change, {c.remove:,} to remove, "
        f"{plural(c.users, 'user')} affected, {plural(c.violations, 'violation')}."
    )


def status_lines(plan: Plan) -> list[str]:
    """Plain sentences on whether the plan blocks and whether it was forced (empty when neither)."""
    out: list[str] = []
    blocking = plan.blocking_violations
    policy = [v for v in blocking if v.code in POLICY_CODES]
    if plan.forced:
        out.append(
            "This plan was forced (--force): its blocking violations do not stop apply"
            + (", except policy errors, which always block." if policy else ".")
        )
    if plan.blocked:
        n = len(policy) if plan.forced else len(blocking)
        what = plural(n, "policy error") if plan.forced else plural(n, "blocking violation")
        fix = (
            "fix the policy and plan again"
            if plan.forced or len(policy) == len(blocking)
            else "fix what blocks as the resolutions say, or plan again with --force"
        )
        out.append(f"Blocked: {what}; apply refuses this plan. To proceed, {fix}.")
    return out


# ---------------------------------------------------------------- lists of names


def first(items: Sequence[T], n: int = MAX_USERS) -> tuple[list[T], int]:
    """The first n items and how many more there are."""
    return list(items[:n]), max(0, len(items) - n)


def name_list(items: Sequence[str], n: int = MAX_USERS) -> str:
    shown, more = first(items, n)
    text = ", ".join(shown)
    return f"{text}, ... and {more:,} more" if more else text


def wrapped(label: str, text: str, indent: str = SUB, width: int = WIDTH) -> list[str]:
    """`label: text` wrapped at `width`, continuation lines aligned under the text."""
    head = f"{indent}{label}: "
    return textwrap.wrap(
        text,
        width=max(width, len(head) + 20),
        initial_indent=head,
        subsequent_indent=" " * len(head),
        break_long_words=False,
        break_on_hyphens=False,
    ) or [head.rstrip()]


def _strs(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []


# ---------------------------------------------------------------- change sections


@dataclass
class Section:
    """One block of changes: a title and its lines (symbols in column 0)."""

    title: str
    lines: list[str] = field(default_factory=list)
    per_group: bool = False  # a group's license block (else a user-level block)
    adds: int = 0
    changes: int = 0
    removes: int = 0

    def count(self, kind: str, n: int = 1) -> None:
        sym = SYMBOL.get(kind, "~")
        if sym == "+":
            self.adds += n
        elif sym == "-":
            self.removes += n
        else:
            self.changes += n

    @property
    def tally_words(self) -> str:
        """`60 to add, 1 to remove` (for user-level sections)."""
        parts = []
        if self.adds:
            parts.append(f"{self.adds:,} to add")
        if self.changes:
            parts.append(f"{self.changes:,} to change")
        if self.removes:
            parts.append(f"{self.removes:,} to remove")
        return ", ".join(parts)

    @property
    def tally(self) -> str:
        parts = []
        if self.adds:
            parts.append(f"+{self.adds:,}")
        if self.changes:
            parts.append(f"~{self.changes:,}")
        if self.removes:
            parts.append(f"-{self.removes:,}")
        return " ".join(parts)


_GROUP_ORDER = {"createGroup": 0, "assignLicense": 1, "updateLicense": 2, "removeLicense": 3, "reprocess": 4}


def _users_suffix(a: Action) -> str:
    return f" ({plural(len(a.users), 'user')})" if a.users else ""


def _license_lines(a: Action, max_users: int) -> list[str]:
    d = a.details
    sym = SYMBOL.get(a.kind, "~")
    sku = a.sku or "?"
    protected = " [protected group]" if d.get("protected") else ""
    lines: list[str] = []
    if a.kind == "assignLicense":
        lines.append(f"{sym} {sku}: assign{_users_suffix(a)}{protected}")
    elif a.kind == "updateLicense":
        lines.append(f"{sym} {sku}: change plans in place{_users_suffix(a)}{protected}")
    elif a.kind == "removeLicense":
        lines.append(f"{sym} {sku}: remove{_users_suffix(a)}{protected}")
    else:
        lines.append(f"{sym} {sku}: {a.kind}{_users_suffix(a)}{protected}")
    changes = d.get("planChanges")
    if isinstance(changes, dict):
        lines += [f"{SUB}+ {p}" for p in _strs(changes.get("enable"))]
        lines += [f"{SUB}- {p}" for p in _strs(changes.get("disable"))]
    if a.kind != "removeLicense":
        if _strs(d.get("enabledPlans")):
            lines += wrapped("plans on", ", ".join(_strs(d["enabledPlans"])))
        if _strs(d.get("heldOff")):
            lines += wrapped("held off", ", ".join(_strs(d["heldOff"])))
        elif _strs(d.get("disabledPlans")):
            lines += wrapped("disabled", ", ".join(_strs(d["disabledPlans"])))
        if _strs(d.get("newServicePlans")):
            lines += wrapped("new service plans", ", ".join(_strs(d["newServicePlans"])))
    seats = d.get("seats")
    if isinstance(seats, dict) and isinstance(seats.get("needed"), int) and isinstance(seats.get("free"), int):
        needed, free = seats["needed"], seats["free"]
        short = f" (short by {needed - free:,})" if needed > free else ""
        lines.append(f"{SUB}seats: {needed:,} needed, {free:,} free{short}")
    if sym == "-":
        lines += wrapped("reason", a.reason)
        if a.users:
            lines += wrapped("users", name_list(a.users, max_users))
    return lines


def _group_section(title: str, actions: list[Action], max_users: int) -> Section:
    sec = Section(title, per_group=True)
    for a in sorted(actions, key=lambda a: _GROUP_ORDER.get(a.kind, 9)):
        sec.count(a.kind)
        if a.kind == "createGroup":
            name = a.group.name if a.group else "?"
            sec.lines.append(f"+ create security group {name}")
        elif a.kind == "reprocess":
            sec.lines.append(f"~ reprocess license assignments{_users_suffix(a)}")
        else:
            sec.lines += _license_lines(a, max_users)
    # actions made by one Graph request (a swap): say so once
    keys: dict[str, list[Action]] = {}
    for a in actions:
        if a.request_key is not None:
            keys.setdefault(a.request_key, []).append(a)
    for grouped in keys.values():
        if len(grouped) > 1:
            parts = [f"{SYMBOL.get(a.kind, '~')}{a.sku or a.kind}" for a in grouped]
            sec.lines.append(f"{SUB}({', '.join(parts)}: one request, applied together)")
    return sec


def _user_lines(
    sec: Section, actions: list[Action], label: Any, max_users: int, noun: str, reason_always: bool = True
) -> None:
    """Per-user lines (first max_users), grouped by reason for removals, with `... and N more`."""
    buckets: dict[tuple[str, str], list[Action]] = {}
    for a in actions:
        sym = SYMBOL.get(a.kind, "~")
        key = (sym, a.reason if sym == "-" or reason_always else "")
        buckets.setdefault(key, []).append(a)
    order = {"+": 0, "~": 1, "-": 2}
    for (sym, reason), items in sorted(buckets.items(), key=lambda kv: order.get(kv[0][0], 3)):
        for a in items:
            sec.count(a.kind)
        shown, more = first(items, max_users)
        sec.lines += [f"{sym} {label(a)}" for a in shown]
        if more:
            sec.lines.append(f"{sym} ... and {more:,} more {noun}")
        if reason:
            sec.lines += wrapped("reason", reason)


def _user_name(a: Action) -> str:
    if a.user is not None:
        return a.user.name
    return a.users[0] if a.users else "?"


def _usage_label(a: Action) -> str:
    new = a.details.get("usageLocation")
    old = a.details.get("previousUsageLocation")
    if isinstance(new, str) and isinstance(old, str) and old:
        return f"{_user_name(a)}: {old} -> {new}"
    if isinstance(new, str):
        return f"{_user_name(a)}: {new}"
    return _user_name(a)


def _direct_label(a: Action) -> str:
    covered = _strs(a.details.get("coveredBy"))
    return f"{_user_name(a)} (kept through {', '.join(covered)})" if covered else _user_name(a)


def change_sections(plan: Plan, max_users: int = MAX_USERS) -> list[Section]:
    """The plan's actions as sections, in a deterministic order (first appearance in the plan)."""
    groups: dict[str, list[Action]] = {}
    members: dict[str, list[Action]] = {}
    usage: list[Action] = []
    direct: dict[str, list[Action]] = {}
    reprocess: list[Action] = []
    other: list[Action] = []
    for a in plan.actions:
        if a.kind in ("addMember", "removeMember"):
            members.setdefault(a.group.name if a.group else "?", []).append(a)
        elif a.kind == "setUsageLocation":
            usage.append(a)
        elif a.kind == "removeDirectLicense":
            direct.setdefault(a.sku or "?", []).append(a)
        elif a.kind == "reprocess" and a.user is not None:
            reprocess.append(a)
        elif a.group is not None:
            groups.setdefault(a.group.name, []).append(a)
        else:
            other.append(a)
    sections: list[Section] = []
    for name, actions in groups.items():
        new = any(a.kind == "createGroup" for a in actions)
        sections.append(_group_section(f"group {name}" + (" (new)" if new else ""), actions, max_users))
    for name, actions in members.items():
        sec = Section(f"members of {name}")
        _user_lines(sec, actions, _user_name, max_users, "members", reason_always=False)
        sections.append(sec)
    if usage:
        sec = Section("usage locations")
        _user_lines(sec, usage, _usage_label, max_users, "users", reason_always=False)
        sections.append(sec)
    for sku, actions in direct.items():
        sec = Section(f"direct licenses {sku}")
        _user_lines(sec, actions, _direct_label, max_users, "users")
        sections.append(sec)
    if reprocess:
        sec = Section("reprocess users")
        _user_lines(sec, reprocess, _user_name, max_users, "users", reason_always=False)
        sections.append(sec)
    if other:
        sec = Section("other changes")
        for a in other:
            sec.count(a.kind)
            target = a.sku or (a.user.name if a.user else "")
            sec.lines.append(f"{SYMBOL.get(a.kind, '~')} {a.kind} {target}".rstrip())
            sec.lines += wrapped("reason", a.reason)
        sections.append(sec)
    return sections


# ---------------------------------------------------------------- violations

_CODE_ORDER = {c: i for i, c in enumerate((*LICENSE_CODES, *PLANNER_CODES))}
_STATUS_ORDER = {NEW: 0, EXISTING: 1, FIXED: 2}


def violation_key(v: Violation) -> tuple[Any, ...]:
    return (
        _STATUS_ORDER.get(v.status, 3),
        0 if v.blocking else 1,
        _CODE_ORDER.get(v.code, len(_CODE_ORDER)),
        v.code,
        v.sku or "",
        v.group or "",
    )


def split_violations(plan: Plan) -> tuple[list[Violation], list[Violation]]:
    """(violations of this plan, violations already in the tenant), each sorted by status, severity,
    code, SKU and group; among those already there, the ones this plan fixes come last."""
    ordered = sorted(plan.violations, key=violation_key)
    return (
        [v for v in ordered if v.status not in (EXISTING, FIXED)],
        [v for v in ordered if v.status in (EXISTING, FIXED)],
    )


def violation_heading(v: Violation) -> str:
    parts = [v.severity, v.code]
    if v.sku:
        parts.append(v.sku)
    if v.group:
        parts.append(f"group {v.group}")
    head = "  ".join(parts)
    if v.users:
        head += f" ({plural(len(v.users), 'user')})"
    if v.status == FIXED:
        head += " [this plan fixes it]"
    return head


def join_nonempty(parts: Iterable[str], sep: str = "\n") -> str:
    return sep.join(p for p in parts if p)
