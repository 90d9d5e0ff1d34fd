"""Terraform-style text rendering (issue 5, item 5)."""

from __future__ import annotations

import re

import plan_samples
import pytest

from reconciler.plan import Action, GraphRequest, ObjectRef, Plan
from reconciler.render import render_text, summary_line
from reconciler.render.common import change_counts


def lines(plan: Plan) -> list[str]:
    text = render_text(plan)
    assert text.endswith("\n")
    return text.splitlines()


def test_no_changes_is_one_line() -> None:
    assert render_text(plan_samples.no_changes()) == "No changes.\n"


def test_no_changes_still_lists_existing_problems() -> None:
    out = lines(plan_samples.no_changes_with_existing())
    assert out[-1] == "No changes."
    assert out[0] == "Already in the tenant (1 problem):"
    assert "  warning  CountViolation  ENTERPRISEPACK  group LIC-E3-Base (3 users)" in out
    assert "      users: ann@contoso.com, bea@contoso.com, cid@contoso.com" in out


def test_swap_and_in_place_change() -> None:
    out = lines(plan_samples.swap())
    assert out[0] == "reconciler will perform the following actions:"
    assert "  # group LIC-E3-Base" in out
    i = out.index("  + ENTERPRISEPACK: assign (42 users)")
    assert out[i + 1] == "      plans on: EXCHANGE_S_ENTERPRISE, SHAREPOINTENTERPRISE, TEAMS1"
    assert out[i + 2] == "      disabled: SWAY"
    assert out[i + 3] == "      seats: 42 needed, 50 free"
    j = out.index("  ~ EMS: change plans in place (42 users)")
    assert out[j + 1 : j + 3] == ["      + INTUNE_A", "      - RMS_S_PREMIUM"]
    assert "      held off: AAD_PREMIUM_P2" in out[j:]
    k = out.index("  - STANDARDPACK: remove (42 users)")
    assert out[k + 1] == "      reason: STANDARDPACK is no longer in the policy for LIC-E3-Base"
    # the order inside a group: assign, change, remove
    assert i < j < k
    assert "      (+ENTERPRISEPACK, -STANDARDPACK: one request, applied together)" in out
    assert out[-1] == "Plan: 1 to assign, 1 to change, 1 to remove, 42 users affected, 0 violations."


def test_every_removal_has_its_reason() -> None:
    out = lines(plan_samples.removals())
    assert "  - STANDARDPACK: remove (2 users) [protected group]" in out
    removal_lines = [i for i, line in enumerate(out) if line.startswith("  - ")]
    assert len(removal_lines) == 3
    for i in removal_lines:
        following = out[i + 1 : i + 3]
        assert any(line.startswith("      reason: ") for line in following), out[i]
    assert "  # members of LIC-E1-Kiosk (1 to remove)" in out
    assert "  - bob@contoso.com" in out
    assert "      reason: not in the members list of LIC-E1-Kiosk" in out
    assert "  # direct licenses ENTERPRISEPACK (1 to remove)" in out
    assert "  - alice@contoso.com (kept through LIC-E3-Base)" in out
    assert out[-1] == "Plan: 0 to assign, 0 to change, 3 to remove, 4 users affected, 0 violations."


def test_many_users_are_summarised() -> None:
    out = lines(plan_samples.many_users(500))
    assert "  # group LIC-E1-Kiosk (new)" in out
    assert "  + create security group LIC-E1-Kiosk" in out
    assert "      seats: 500 needed, 10 free (short by 490)" in out
    assert "  # members of LIC-E1-Kiosk (500 to add)" in out
    member_lines = [line for line in out if line.startswith("  + user")]
    assert len(member_lines) == 40  # 20 members, 20 usage locations
    assert "  + ... and 480 more members" in out
    assert "  + user00001@contoso.com: FR" in out
    assert "  + ... and 480 more users" in out
    assert any(line.endswith("... and 470 more") for line in out)  # the CountViolation's users
    assert out[-1] == "Plan: 1,002 to assign, 0 to change, 0 to remove, 500 users affected, 2 violations."
    assert len(out) < 150


def test_violations_grouped_existing_apart_and_fixed_marked() -> None:
    out = lines(plan_samples.blocking())
    v = out.index("Violations (2):")
    e = out.index("Already in the tenant (2 problems; this plan fixes 1):")
    assert v < e
    error = out.index("  error  MutuallyExclusiveViolation  ENTERPRISEPACK  group LIC-E3-Base (2 users)")
    warning = out.index("  warning  NestedGroup  group LIC-E3-Base (5 users)")
    assert v < error < warning < e  # blocking ones first
    assert out[error + 1].startswith("      SHAREPOINTSTANDARD (from LIC-E1-Kiosk)")
    assert "      resolution: Disable SHAREPOINTSTANDARD in LIC-E1-Kiosk, or remove the user from one of the" in out
    assert "      at policies/groups.yaml:4:9" in out
    existing = out.index("  warning  DependencyViolation  PROJECTPREMIUM  group LIC-Project (1 user)")
    fixed = out.index("  warning  CountViolation  ENTERPRISEPACK  group LIC-E3-Base (2 users) [this plan fixes it]")
    assert e < existing < fixed
    assert out[-3].startswith("Blocked: 1 blocking violation; apply refuses this plan.")
    # the fixed one is not counted among the violations
    assert out[-1] == "Plan: 1 to assign, 1 to change, 1 to remove, 42 users affected, 3 violations."


def test_forced_plan_says_so_and_does_not_block() -> None:
    out = lines(plan_samples.blocking(forced=True))
    assert "This plan was forced (--force): its blocking violations do not stop apply." in out
    assert not any(line.startswith("Blocked:") for line in out)


def test_policy_errors_block_even_when_forced() -> None:
    out = lines(plan_samples.policy_error())
    assert out[0] == "Violations (1):"
    assert "  error  GroupNotFound  group LIC-E5-Admins" in out
    assert any(line.startswith("This plan was forced") and "policy errors" in line for line in out)
    assert any(line.startswith("Blocked: 1 policy error") for line in out)
    assert out[-1] == "No changes."


@pytest.mark.parametrize("name", sorted(plan_samples.ALL))
def test_same_plan_same_bytes_no_colour_no_timestamp(name: str) -> None:
    plan = plan_samples.ALL[name]()
    first = render_text(plan)
    assert render_text(plan_samples.ALL[name]()) == first
    assert "\x1b" not in first
    assert plan.created_at not in first and "2026-" not in first
    assert first.splitlines()[-1] == summary_line(plan)


def test_colour_only_on_request() -> None:
    plan = plan_samples.blocking()
    coloured = render_text(plan, color=True)
    assert "\x1b[" in coloured
    assert "\x1b[32m" in coloured  # green for additions
    # same words once the escape codes are taken out
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == render_text(plan)


def test_counts_definition() -> None:
    def act(kind: str) -> Action:
        return Action(kind=kind, reason="r", request=GraphRequest("POST", "/x"), user=ObjectRef("u@x", "u"),
                      users=("u@x",))

    kinds = ["createGroup", "addMember", "setUsageLocation", "assignLicense", "updateLicense", "reprocess",
             "removeLicense", "removeMember", "removeDirectLicense"]
    base = plan_samples.no_changes()
    plan = Plan(**{**base.__dict__, "actions": tuple(act(k) for k in kinds)})
    c = change_counts(plan)
    assert (c.assign, c.change, c.remove, c.users) == (4, 2, 3, 1)
    assert summary_line(plan) == "Plan: 4 to assign, 2 to change, 3 to remove, 1 user affected, 0 violations."


def test_long_plan_lists_wrap() -> None:
    base = plan_samples.swap()
    first = base.actions[0]
    plans = [f"SERVICE_PLAN_NUMBER_{i:02d}" for i in range(30)]
    wide = Action(**{**first.__dict__, "details": {"enabledPlans": plans}})
    plan = Plan(**{**base.__dict__, "actions": (wide,)})
    out = lines(plan)
    assert all(len(line) <= 100 for line in out if "SERVICE_PLAN" in line)
    assert sum(line.count("SERVICE_PLAN_NUMBER_") for line in out) == 30


def test_colour_wanted_only_on_a_terminal_without_no_color() -> None:
    import io

    from reconciler.render import color_wanted

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert color_wanted(Tty(), environ={}) is True
    assert color_wanted(Tty(), environ={"NO_COLOR": "1"}) is False
    assert color_wanted(io.StringIO(), environ={}) is False


def test_usage_location_change_and_user_reprocessing() -> None:
    base = plan_samples.no_changes()
    actions = (
        Action(
            kind="setUsageLocation",
            reason="usageLocations.users",
            request=GraphRequest("PATCH", "/users/u1", {"usageLocation": "FR"}),
            user=ObjectRef("alice@contoso.com", "u1"),
            users=("alice@contoso.com",),
            details={"usageLocation": "FR", "previousUsageLocation": "US"},
        ),
        Action(
            kind="reprocess",
            reason="usage location changed",
            request=GraphRequest("POST", "/users/u1/reprocessLicenseAssignment"),
            user=ObjectRef("alice@contoso.com", "u1"),
            users=("alice@contoso.com",),
        ),
    )
    out = lines(Plan(**{**base.__dict__, "actions": actions}))
    assert "  # usage locations (1 to add)" in out
    assert "  + alice@contoso.com: US -> FR" in out
    assert "  # reprocess users (1 to change)" in out
    assert "  ~ alice@contoso.com" in out
    assert out[-1] == "Plan: 1 to assign, 1 to change, 0 to remove, 1 user affected, 0 violations."
