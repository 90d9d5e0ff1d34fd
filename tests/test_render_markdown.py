"""Markdown rendering for pull-request comments: marker, summary first, violations table, budget."""

from __future__ import annotations

import re

import plan_samples
import pytest

from reconciler.plan import Plan, Violation
from reconciler.render import MARKER, render_markdown, summary_line


def test_marker_first_then_summary_then_violations() -> None:
    plan = plan_samples.blocking()
    md = render_markdown(plan)
    lines = md.splitlines()
    assert lines[0] == MARKER == "<!-- reconciler-plan -->"
    summary = f"**{summary_line(plan)}**"
    assert summary in lines
    blocked = next(i for i, line in enumerate(lines) if "Blocked:" in line)
    table = lines.index("### Violations (2)")
    existing = lines.index("### Already in the tenant (2 problems; this plan fixes 1)")
    changes = lines.index("### Changes")
    assert lines.index(summary) < blocked < table < existing < changes
    assert lines[table + 2] == "| Severity | Code | SKU | Group | Users | Message | Resolution |"
    row = lines[table + 4]
    assert row.startswith("| error | MutuallyExclusiveViolation | ENTERPRISEPACK | LIC-E3-Base | 2 | ")
    assert "`policies/groups.yaml:4:9`" in row
    assert row.endswith("| Disable SHAREPOINTSTANDARD in LIC-E1-Kiosk, or remove the user from one of the groups. |")
    fixed_rows = [line for line in lines[existing:changes] if line.startswith("| warning")]
    assert fixed_rows[0].endswith(" no |") and fixed_rows[1].endswith(" yes |")


def test_group_details_are_collapsible_diff_blocks() -> None:
    md = render_markdown(plan_samples.swap())
    assert "<details><summary><b>group LIC-E3-Base</b>: +1 ~1 -1</summary>" in md
    block = md[md.index("```diff") : md.index("```\n\n</details>")]
    assert "\n+ ENTERPRISEPACK: assign (42 users)\n" in block
    assert "\n~ EMS: change plans in place (42 users)\n" in block
    assert "\n- STANDARDPACK: remove (42 users)\n    reason: STANDARDPACK is no longer in the policy" in block
    assert "Cut to fit" not in md


def test_no_changes() -> None:
    md = render_markdown(plan_samples.no_changes())
    assert md.splitlines()[0] == MARKER
    assert "**No changes.**" in md
    assert "The tenant matches the policy." in md
    assert "Violations" not in md


def test_forced_and_policy_error_status() -> None:
    forced = render_markdown(plan_samples.blocking(forced=True))
    assert "This plan was forced (--force)" in forced
    assert "Blocked:" not in forced
    policy = render_markdown(plan_samples.policy_error())
    assert "Blocked: 1 policy error" in policy
    assert "| error | GroupNotFound |  | LIC-E5-Admins | 0 |" in policy


@pytest.mark.parametrize("name", sorted(plan_samples.ALL))
def test_same_plan_same_bytes(name: str) -> None:
    first = render_markdown(plan_samples.ALL[name]())
    assert render_markdown(plan_samples.ALL[name]()) == first
    assert "2026-11-21T08:00:00Z" not in first


def test_fifty_thousand_users_keep_summary_and_violations_within_budget() -> None:
    plan = plan_samples.many_users(50_000)
    md = render_markdown(plan)
    assert len(md) <= 60_000
    assert md.startswith(MARKER + "\n")
    assert "**Plan: 100,002 to assign, 0 to change, 0 to remove, 50,000 users affected, 2 violations.**" in md
    assert "| error | CountViolation | STANDARDPACK | LIC-E1-Kiosk | 49,990 |" in md
    assert "| warning | UsageLocationFallback |  | LIC-E1-Kiosk | 50,000 |" in md
    assert "Cut to fit the 60,000-character limit" in md
    assert "list cut to fit" in md
    # details go before user lists: none of the change blocks is left
    assert "### Changes" not in md


def test_details_are_cut_before_user_lists() -> None:
    plan = plan_samples.many_users(300)
    full = render_markdown(plan, budget=1_000_000)
    assert "Cut to fit" not in full
    budget = full.index("### Changes") + 2_500
    md = render_markdown(plan, budget=budget)
    assert len(md) <= budget
    # every violation user is still listed
    assert "`user00300@contoso.com`" in md.split("### Changes")[0]
    assert "list cut to fit" not in md
    assert "Cut to fit" in md and "change block" in md
    # truncated blocks stay well-formed: every fence and <details> is closed
    assert md.count("<details>") == md.count("</details>")
    assert md.count("```") % 2 == 0


def test_tiny_budget_never_drops_violations() -> None:
    plan = plan_samples.blocking()
    md = render_markdown(plan, budget=500)
    for v in plan.violations:
        assert f"| {v.code} |" in md
    assert f"**{summary_line(plan)}**" in md


def _with_violation(v: Violation) -> Plan:
    base = plan_samples.no_changes()
    return Plan(**{**base.__dict__, "violations": (v,)})


def test_cells_are_escaped() -> None:
    v = Violation(
        code="GroupNotFound",
        severity="error",
        message="no group named A|B <script>alert(1)</script>\nsecond line",
        resolution="Rename `A|B`.",
        group="A|B",
        users=("x`y@contoso.com",),
    )
    md = render_markdown(_with_violation(v))
    row = next(line for line in md.splitlines() if line.startswith("| error"))
    assert len(re.findall(r"(?<!\\)\|", row)) == 8  # seven columns: no cell broke the table
    assert "<script>" not in md
    assert "A\\|B" in row
    assert "second line" in row
    assert "``x`y@contoso.com``" in md
    assert "<summary>GroupNotFound · A|B: 1 user</summary>" in md


def test_backticks_in_names_do_not_break_the_diff_fence() -> None:
    base = plan_samples.removals()
    action = base.actions[0]
    from reconciler.plan import Action

    odd = Action(**{**action.__dict__, "reason": "name with ``` fence"})
    md = render_markdown(Plan(**{**base.__dict__, "actions": (odd,)}))
    assert "````diff" in md
    assert re.search(r"^````$", md, re.M)


def test_many_violations_keep_every_row_with_shorter_cells() -> None:
    long = "A long explanation of what went wrong for this group and how it came to be. " * 4
    violations = tuple(
        Violation(
            code="CountViolation",
            severity="error",
            message=long,
            resolution=long,
            sku="ENTERPRISEPACK",
            group=f"LIC-Group-{i:04d}",
            users=("a@contoso.com",),
        )
        for i in range(250)
    )
    base = plan_samples.no_changes()
    md = render_markdown(Plan(**{**base.__dict__, "violations": violations}))
    assert len(md) <= 60_000
    for i in range(250):
        assert f"| LIC-Group-{i:04d} | 1 |" in md
    assert "messages and resolutions (shortened)" in md
