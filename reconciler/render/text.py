"""Terraform-style text rendering of a plan (the default output of `plan` and `show`).

    render_text(plan, *, color=False, max_users=20) -> str

Layout: the changes, one block per group (`+` assign, `~` change in place, `-` remove with its
reason), then user-level blocks (membership, usage locations, direct licenses, reprocessing),
long user lists cut after `max_users` with `... and N more`; then the violations of this plan
grouped by code, SKU and group; then those already in the tenant, marking the ones the plan fixes;
then whether the plan was forced or blocks; the last line is the summary line
(reconciler.render.common.summary_line). No timestamps: the same plan gives the same bytes.
`color=True` adds ANSI colours (the CLI asks for them only when stdout is a terminal).
"""

from __future__ import annotations

import io
import textwrap

from reconciler.plan import FIXED, Plan, Violation
from reconciler.render.common import (
    MAX_USERS,
    WIDTH,
    change_sections,
    name_list,
    plural,
    split_violations,
    status_lines,
    summary_line,
    violation_heading,
    wrapped,
)

INDENT = "  "
VINDENT = "      "


def _violation_lines(v: Violation, max_users: int) -> list[str]:
    lines = [INDENT + violation_heading(v)]
    lines += textwrap.wrap(
        v.message, width=WIDTH, initial_indent=VINDENT, subsequent_indent=VINDENT, break_long_words=False
    ) or [VINDENT.rstrip()]
    if v.users:
        lines += wrapped("users", name_list(v.users, max_users), indent=VINDENT)
    if v.resolution:
        lines += wrapped("resolution", v.resolution, indent=VINDENT)
    if v.source is not None:
        lines.append(f"{VINDENT}at {v.source}")
    return lines


def text_lines(plan: Plan, max_users: int = MAX_USERS) -> list[str]:
    """The rendering as lines (no colour)."""
    out: list[str] = []
    sections = change_sections(plan, max_users)
    if sections:
        out.append("reconciler will perform the following actions:")
        for sec in sections:
            out.append("")
            tally = "" if sec.per_group else f" ({sec.tally_words})"
            out.append(f"{INDENT}# {sec.title}{tally}")
            out += [INDENT + line for line in sec.lines]
        out.append("")
    ours, existing = split_violations(plan)
    if ours:
        out.append(f"Violations ({len(ours):,}):")
        for v in ours:
            out.append("")
            out += _violation_lines(v, max_users)
        out.append("")
    if existing:
        fixed = sum(1 for v in existing if v.status == FIXED)
        note = f"; this plan fixes {fixed:,}" if fixed else ""
        out.append(f"Already in the tenant ({plural(len(existing), 'problem')}{note}):")
        for v in existing:
            out.append("")
            out += _violation_lines(v, max_users)
        out.append("")
    status = status_lines(plan)
    if status:
        out += status
        out.append("")
    out.append(summary_line(plan))
    return out


def _style(line: str) -> str | None:
    s = line.lstrip()
    if line.startswith(("Blocked:",)):
        return "bold red"
    if line.startswith("This plan was forced"):
        return "bold yellow"
    if line.startswith(("Plan:", "No changes.")):
        return "bold"
    if s.startswith("# "):
        return "bold"
    if line.startswith(INDENT + "error  "):
        return "bold red"
    if line.startswith(INDENT + "warning  "):
        return "yellow"
    if s.startswith("+ "):
        return "green"
    if s.startswith("~ "):
        return "yellow"
    if s.startswith("- "):
        return "red"
    return None


def _colorize(lines: list[str]) -> str:
    from rich.console import Console
    from rich.text import Text

    buf = io.StringIO()
    console = Console(
        file=buf,
        force_terminal=True,
        color_system="standard",
        no_color=False,  # the caller decided (it honours NO_COLOR)
        width=10_000,
        soft_wrap=True,
        highlight=False,
        emoji=False,
        markup=False,
    )
    for line in lines:
        console.print(Text(line, style=_style(line) or ""))
    return buf.getvalue()


def render_text(plan: Plan, *, color: bool = False, max_users: int = MAX_USERS) -> str:
    """The plan as Terraform-style text, ending with a newline."""
    lines = text_lines(plan, max_users)
    if color:
        return _colorize(lines)
    return "\n".join(lines) + "\n"
