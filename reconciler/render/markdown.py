"""Markdown rendering of a plan for pull-request comments, job summaries and drift issues.

    render_markdown(plan, *, budget=60_000, max_users=100, hint="reconciler show PLANFILE") -> str

Layout:
1. `<!-- reconciler-plan -->` (MARKER), first line, so CI finds and updates its one comment;
2. the summary: the one-line summary in bold, then whether the plan blocks or was forced;
3. violations tables: those of this plan, then those already in the tenant (saying which the
   plan fixes), one row per violation (severity, code, SKU, group, users count, message, resolution);
4. the users of each violation, one `<details>` block each;
5. the changes, one `<details>` block per group (and per user-level section), as a ```diff block.

The whole is kept within `budget` characters (GitHub refuses comments over 65,536). Parts 1-3 are
never dropped. When the rest does not fit, the change blocks are cut first (the last ones that fit
are truncated, the following ones omitted), then the violations' user lists are shortened, and a
final note says what was cut. No timestamps: the same plan gives the same bytes.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from reconciler.plan import FIXED, Plan, Violation
from reconciler.render.common import (
    Section,
    change_counts,
    change_sections,
    plural,
    split_violations,
    status_lines,
    summary_line,
)

MARKER = "<!-- reconciler-plan -->"
BUDGET = 60_000
_NOTE_RESERVE = 600  # room kept for the "cut to fit" note
_CELL_LIMITS = (400, 160, 60, 20)  # characters per table cell, shortened when the tables alone overflow
_USER_CAPS = (1_000, 200, 50, 20, 5, 0)  # user-list lengths tried when the lists do not fit


def _esc(text: str) -> str:
    """Escape text for inline markdown inside HTML or tables: no tags, no pipes, no line breaks."""
    out = html.escape(text, quote=False).replace("|", "\\|")
    return re.sub(r"\s*[\r\n]+\s*", " ", out)


def _html(text: str) -> str:
    """Escape text for an HTML element (a <summary>): no tags, one line."""
    return re.sub(r"\s*[\r\n]+\s*", " ", html.escape(text, quote=False))


def _cell(text: str | None, limit: int = _CELL_LIMITS[0]) -> str:
    if not text:
        return ""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return _esc(text)


def _code(text: str) -> str:
    """An inline code span that survives backticks in the text."""
    text = re.sub(r"[\r\n]+", " ", text)
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (run + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _fence(lines: Sequence[str]) -> tuple[str, str]:
    run = max((len(m) for line in lines for m in re.findall(r"`{3,}", line)), default=0)
    fence = "`" * max(3, run + 1)
    return fence + "diff", fence


def _head(plan: Plan) -> str:
    c = change_counts(plan)
    lines = [MARKER, "## reconciler plan", ""]
    lines.append(f"**{summary_line(plan)}**")
    if not plan.has_changes and plan.violations:
        lines[-1] += f" {plural(c.violations, 'violation')}."
    status = status_lines(plan)
    if status or plan.has_changes:
        lines.append("")
    if plan.blocked:
        lines.append(f"**:no_entry: {_esc(status[-1])}**")
        if plan.forced:
            lines.append("")
            lines.append(_esc(status[0]))
    elif plan.forced:
        lines.append(f"**:warning: {_esc(status[0])}**")
    elif plan.has_changes:
        lines.append("**:white_check_mark: Nothing blocks this plan.**")
    lines.append("")
    counts = ", ".join(f"{kind} {n:,}" for kind, n in plan.summary.items())
    facts = [f"Tenant {_code(plan.tenant_id)}", f"policy {_code(plan.policy_digest)}"]
    if counts:
        facts.append(f"actions: {counts}")
    lines.append(" · ".join(facts))
    return "\n".join(lines) + "\n"


def _table(violations: Sequence[Violation], fixed_column: bool, limit: int) -> str:
    head = "| Severity | Code | SKU | Group | Users | Message | Resolution |"
    rule = "|---|---|---|---|---:|---|---|"
    if fixed_column:
        head += " Fixed by this plan |"
        rule += "---|"
    rows = [head, rule]
    for v in violations:
        message = _cell(v.message, limit)
        if v.source is not None:
            message += f" ({_code(str(v.source))})"
        row = (
            f"| {v.severity} | {v.code} | {_cell(v.sku, limit)} | {_cell(v.group, limit)} | {len(v.users):,} "
            f"| {message} | {_cell(v.resolution, limit)} |"
        )
        if fixed_column:
            row += " yes |" if v.status == FIXED else " no |"
        rows.append(row)
    return "\n".join(rows) + "\n"


def _tables(plan: Plan, limit: int = _CELL_LIMITS[0]) -> str:
    ours, existing = split_violations(plan)
    parts = []
    if ours:
        parts.append(f"### Violations ({len(ours):,})\n\n" + _table(ours, fixed_column=False, limit=limit))
    if existing:
        fixed = sum(1 for v in existing if v.status == FIXED)
        note = f"; this plan fixes {fixed:,}" if fixed else ""
        parts.append(
            f"### Already in the tenant ({plural(len(existing), 'problem')}{note})\n\n"
            + _table(existing, fixed_column=True, limit=limit)
        )
    return "\n".join(parts)


def _user_list(v: Violation, cap: int | None) -> str:
    label = " · ".join(p for p in (v.code, v.sku, v.group) if p)
    users = list(v.users) if cap is None else list(v.users[:cap])
    more = len(v.users) - len(users)
    body = ", ".join(_code(u) for u in users)
    if more:
        body += (", " if body else "") + f"... and {more:,} more (list cut to fit)"
    return (
        f"<details><summary>{_html(label)}: {plural(len(v.users), 'user')}</summary>\n\n{body}\n\n</details>\n"
    )


def _user_lists(plan: Plan, cap: int | None) -> str:
    if cap == 0:
        return ""  # the tables keep the counts
    ours, existing = split_violations(plan)
    blocks = [_user_list(v, cap) for v in (*ours, *existing) if v.users]
    if not blocks:
        return ""
    return "#### Users per violation\n\n" + "\n".join(blocks)


def _section_block(sec: Section, lines: Sequence[str], cut: int = 0) -> str:
    opening, closing = _fence(lines)
    tally = sec.tally
    summary = f"<b>{_html(sec.title)}</b>" + (f": {tally}" if tally else "")
    body = list(lines)
    if cut:
        body.append(f"... {plural(cut, 'more line')} cut to fit")
    return f"<details><summary>{summary}</summary>\n\n{opening}\n" + "\n".join(body) + f"\n{closing}\n\n</details>\n"


def _sections(sections: Sequence[Section], room: int) -> tuple[str, int, int]:
    """Change blocks within `room` characters: (text, sections shown whole, sections cut or omitted)."""
    if not sections:
        return "", 0, 0
    heading = "### Changes\n"
    out = [heading]
    used = len(heading)
    whole = 0
    for i, sec in enumerate(sections):
        block = _section_block(sec, sec.lines)
        if used + len(block) + 1 <= room:
            out.append(block)
            used += len(block) + 1
            whole += 1
            continue
        # truncate this one to the lines that fit, then stop
        keep: list[str] = []
        for n in range(len(sec.lines)):
            candidate = _section_block(sec, sec.lines[: n + 1], len(sec.lines) - n - 1)
            if used + len(candidate) + 1 > room:
                break
            keep = sec.lines[: n + 1]
        if keep:
            block = _section_block(sec, keep, len(sec.lines) - len(keep))
            out.append(block)
            used += len(block) + 1
        return ("\n".join(out) if whole or keep else ""), whole, len(sections) - i
    return "\n".join(out), whole, 0


def render_markdown(
    plan: Plan,
    *,
    budget: int = BUDGET,
    max_users: int = 100,
    hint: str = "reconciler show PLANFILE",
) -> str:
    """The plan as markdown within `budget` characters (summary and violations are always kept)."""
    head = _head(plan)
    tables = _tables(plan)
    shortened = False
    for limit in _CELL_LIMITS[1:]:
        if len(head) + len(tables) + _NOTE_RESERVE <= budget:
            break
        # so many violations that the tables alone overflow: shorten their cells, keep every row
        tables = _tables(plan, limit)
        shortened = True
    required = head + ("\n" + tables if tables else "")
    sections = change_sections(plan, max_users)
    room = budget - len(required) - _NOTE_RESERVE

    # cut order: the change blocks go first; the users' lists are shortened only when they alone
    # do not fit, and then no change block is shown
    lists = _user_lists(plan, None)
    cap_used: int | None = None
    if len(lists) > room:
        for cap in _USER_CAPS:
            lists = _user_lists(plan, cap)
            cap_used = cap
            if len(lists) <= room:
                break
        room = 0
    else:
        room -= len(lists) + 1

    changes, _whole, cut = _sections(sections, max(room, 0))
    parts = [required]
    if lists:
        parts.append(lists)
    if changes:
        parts.append(changes)
    notes = []
    if shortened:
        notes.append("the violations' messages and resolutions (shortened)")
    if cut:
        notes.append(
            f"all {plural(cut, 'change block')}"
            if cut == len(sections)
            else f"{plural(cut, 'change block')} of {len(sections):,}"
        )
    if cap_used is not None:
        notes.append(
            f"the violations' user lists (at most {cap_used:,} users each)"
            if cap_used
            else "the violations' user lists (only their counts are shown)"
        )
    if notes:
        parts.append(
            f"> **Cut to fit the {budget:,}-character limit:** {' and '.join(notes)}. "
            f"Run {_code(hint)} for the whole plan.\n"
        )
    elif not plan.has_changes and not plan.violations:
        parts.append("The tenant matches the policy.\n")
    return "\n".join(parts)
