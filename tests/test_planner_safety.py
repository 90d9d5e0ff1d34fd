"""Planner step 4: removal limits and protected groups (issue 5, item 4)."""

from __future__ import annotations

from pathlib import Path

from planner_fixtures import BASE_POLICY, base_state, find, plan_for

REMOVE_EMS = BASE_POLICY.replace("  - group: LIC-EMS\n    licenses:\n      - sku: EMS\n", "  - group: LIC-EMS\n    licenses: []\n")


def test_more_losers_than_max_removals_is_unsafe(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, base_state(), REMOVE_EMS + "safety:\n  maxRemovals: 1\n")
    (v,) = find(plan, "UnsafeRemoval")
    assert v.severity == "error" and v.users == ("alice@contoso.com", "bob@contoso.com")
    assert "2 users" in v.message and "maxRemovals: 1" in v.message
    assert v.source is not None and "--force" in v.resolution
    assert plan.blocked
    forced = plan_for(tmp_path, base_state(), REMOVE_EMS + "safety:\n  maxRemovals: 1\n", force=True)
    assert forced.forced and not forced.blocked and find(forced, "UnsafeRemoval")


def test_within_the_limit_is_safe(tmp_path: Path) -> None:
    # 7 licensed users: 30% allows 2
    plan = plan_for(tmp_path, base_state(), REMOVE_EMS + "safety:\n  maxRemovals: 30%\n")
    assert not find(plan, "UnsafeRemoval") and not plan.blocked
    plan = plan_for(tmp_path, base_state(), REMOVE_EMS + "safety:\n  maxRemovals: 2\n")
    assert not find(plan, "UnsafeRemoval")


def test_default_limit_is_ten_percent(tmp_path: Path) -> None:
    # 7 licensed users, no maxRemovals: 10% (at least one user) -> 2 losers are too many
    plan = plan_for(tmp_path, base_state(), REMOVE_EMS)
    (v,) = find(plan, "UnsafeRemoval")
    assert "default limit 10%" in v.message and v.source is None


def test_plan_disabled_counts_as_a_loss(tmp_path: Path) -> None:
    text = BASE_POLICY.replace("      - sku: EMS\n", "      - sku: EMS\n        disabledPlans: [INTUNE_A]\n")
    plan = plan_for(tmp_path, base_state(), text + "safety:\n  maxRemovals: 1\n")
    assert find(plan, "UnsafeRemoval")[0].users == ("alice@contoso.com", "bob@contoso.com")
    # switching plans on loses nothing
    more = BASE_POLICY.replace("disabledPlans: [YAMMER_ENTERPRISE, SWAY]", "disabledPlans: [SWAY]")
    assert not find(plan_for(tmp_path, base_state(), more + "safety:\n  maxRemovals: 0\n"), "UnsafeRemoval")


def test_redundant_direct_removal_loses_nothing(tmp_path: Path) -> None:
    text = BASE_POLICY + "directLicenses:\n  mode: removeRedundant\nsafety:\n  maxRemovals: 0\n"
    plan = plan_for(tmp_path, base_state(), text)
    assert [a.kind for a in plan.actions] == ["removeDirectLicense"]
    assert not find(plan, "UnsafeRemoval") and not plan.blocked


def test_protected_group_needs_force(tmp_path: Path) -> None:
    text = BASE_POLICY.replace("      - sku: ENTERPRISEPREMIUM\n", "      - sku: ENTERPRISEPREMIUM\n        disabledPlans: [SWAY]\n")
    text += "safety:\n  maxRemovals: 100%\n  protected: [LIC-Admins]\n"
    plan = plan_for(tmp_path, base_state(), text)
    (v,) = find(plan, "UnsafeRemoval")
    assert v.group == "LIC-Admins" and "protected" in v.message and "updateLicense ENTERPRISEPREMIUM" in v.message
    assert v.source is not None and (v.source.line, v.source.column) == (16, 15)  # the protected: entry
    (a,) = [a for a in plan.actions if a.group and a.group.name == "LIC-Admins"]
    assert a.details["protected"] is True
    assert plan.blocked
    assert not plan_for(tmp_path, base_state(), text, force=True).blocked


def test_protected_group_member_removal_and_additions(tmp_path: Path) -> None:
    base = BASE_POLICY + "safety:\n  maxRemovals: 100%\n  protected: [lic-admins]\n"
    removal = base.replace("  - group: LIC-Admins\n", "  - group: LIC-Admins\n    members: []\n")
    assert find(plan_for(tmp_path, base_state(), removal), "UnsafeRemoval")
    addition = base.replace("  - group: LIC-Admins\n", "  - group: LIC-Admins\n    members: [carol@contoso.com, ivan@contoso.com]\n")
    plan = plan_for(tmp_path, base_state(), addition)
    assert not find(plan, "UnsafeRemoval") and not plan.blocked


def test_policy_errors_block_even_when_forced(tmp_path: Path) -> None:
    text = REMOVE_EMS + "  - group: LIC-Missing\n    licenses: []\nsafety:\n  maxRemovals: 0\n"
    plan = plan_for(tmp_path, base_state(), text, force=True)
    assert {v.code for v in plan.blocking_violations} == {"GroupNotFound", "UnsafeRemoval"}
    assert plan.blocked
