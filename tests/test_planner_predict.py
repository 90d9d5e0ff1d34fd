"""Planner step 3: predicted license errors, by running the licensing model (issue 5, item 3).

Each scenario makes the plan cause an error, checks the grouped violation (code, SKU, group,
users, message naming what matters, resolution), then corrects the policy as the resolution says
and checks that the plan no longer shows the violation.
"""

from __future__ import annotations

from pathlib import Path

from planner_fixtures import (
    BASE_POLICY,
    base_doc,
    base_state,
    find,
    gid,
    group,
    lic,
    plan_for,
    state_from,
    uid,
    user,
)

from reconciler.plan import Plan

LOOSE = "safety:\n  maxRemovals: 100%\n"


def new_violations(plan: Plan) -> list[str]:
    return sorted(v.code for v in plan.violations if v.status == "new")


def test_count_violation_caused_by_the_plan(tmp_path: Path) -> None:
    text = BASE_POLICY.replace(
        "      - sku: EMS\n", "      - sku: EMS\n    members: [alice@contoso.com, bob@contoso.com, carol@contoso.com, dave@contoso.com]\n"
    )
    text = text.replace("  - group: LIC-EMS\n    licenses:\n      - sku: EMS\n    members:", "  - group: LIC-EMS\n    members:")
    text = text.replace("dave@contoso.com]\n", "dave@contoso.com]\n    licenses:\n      - sku: EMS\n", 1)
    plan = plan_for(tmp_path, base_state(), text)
    (v,) = find(plan, "CountViolation")
    assert (v.severity, v.status, v.sku, v.group) == ("error", "new", "EMS", "LIC-EMS")
    assert v.users == ("dave@contoso.com",)  # seats go in user-id order: carol first
    assert "3 bought" in v.message
    assert "buy more EMS seats" in v.resolution and "free seats" in v.resolution
    assert v.source is not None
    assert plan.blocked
    states = {p.sku_id: p for p in plan.prediction[uid(4)]}
    assert states[lic("EMS")["skuId"]].state == "Error"
    assert states[lic("EMS")["skuId"]].error == "CountViolation"
    forced = plan_for(tmp_path, base_state(), text, force=True)
    assert forced.forced and not forced.blocked
    # corrected as the resolution says (fewer members than seats): no violation
    fixed = plan_for(tmp_path, base_state(), text.replace(", dave@contoso.com", ""))
    assert new_violations(fixed) == [] and not fixed.blocked


def test_mutually_exclusive_names_both_plans(tmp_path: Path) -> None:
    text = BASE_POLICY + "  - group: Sales\n    members: [alice@contoso.com]\n    licenses:\n      - sku: STANDARDPACK\n" + LOOSE
    plan = plan_for(tmp_path, base_state(), text)
    (v,) = find(plan, "MutuallyExclusiveViolation")
    assert (v.status, v.sku, v.group, v.users) == ("new", "STANDARDPACK", "Sales", ("alice@contoso.com",))
    assert "SHAREPOINTSTANDARD" in v.message and "SHAREPOINTENTERPRISE" in v.message
    assert "ENTERPRISEPACK from LIC-E3" in v.message
    assert "disable SHAREPOINTSTANDARD" in v.resolution
    assert plan.blocked
    corrected = text.replace("      - sku: STANDARDPACK\n", "      - sku: STANDARDPACK\n        disabledPlans: [SHAREPOINTSTANDARD]\n")
    assert new_violations(plan_for(tmp_path, base_state(), corrected)) == []


def _project_doc() -> dict[str, object]:
    doc = base_doc()
    doc["subscribedSkus"].append(__import__("planner_fixtures").sku("PROJECTPREMIUM", 2))
    doc["users"][1]["assignedLicenses"] = [lic("PROJECTPREMIUM", ["SHAREPOINTENTERPRISE"])]  # bob
    return doc


def test_dependency_violation_when_removal_leaves_a_plan_without_prerequisite(tmp_path: Path) -> None:
    state = state_from(_project_doc())
    text = BASE_POLICY.replace(
        "    licenses:\n      - sku: ENTERPRISEPACK\n        disabledPlans: [YAMMER_ENTERPRISE, SWAY]\n", "    licenses: []\n"
    ) + LOOSE
    plan = plan_for(tmp_path, state, text)
    (v,) = [v for v in find(plan, "DependencyViolation") if v.status == "new"]
    assert (v.sku, v.group, v.users) == ("ENTERPRISEPACK", "LIC-E3", ("bob@contoso.com",))
    assert "SHAREPOINT_PROJECT" in v.message and "SHAREPOINTENTERPRISE" in v.message
    assert "keep the prerequisite plan SHAREPOINTENTERPRISE" in v.resolution
    (bob_e3,) = [p for p in plan.prediction[uid(2)] if p.sku_id == lic("ENTERPRISEPACK")["skuId"]]
    assert (bob_e3.state, bob_e3.error, bob_e3.assigned_by_group) == ("ActiveWithError", "DependencyViolation", gid(1))
    assert plan.blocked
    # corrected: keep E3 on the group
    assert new_violations(plan_for(tmp_path, state, BASE_POLICY + LOOSE)) == []


def test_dependency_violation_when_a_group_switches_the_prerequisite_off_in_place(tmp_path: Path) -> None:
    state = state_from(_project_doc())
    text = BASE_POLICY.replace(
        "disabledPlans: [YAMMER_ENTERPRISE, SWAY]", "disabledPlans: [YAMMER_ENTERPRISE, SWAY, SHAREPOINTENTERPRISE]"
    ) + LOOSE
    plan = plan_for(tmp_path, state, text)
    (v,) = [v for v in find(plan, "DependencyViolation") if v.status == "new"]
    assert (v.sku, v.group, v.users) == ("ENTERPRISEPACK", "LIC-E3", ("bob@contoso.com",))
    assert "switching SHAREPOINTENTERPRISE off in LIC-E3's ENTERPRISEPACK" in v.message
    assert "SHAREPOINT_PROJECT" in v.message
    assert "keep SHAREPOINTENTERPRISE enabled in LIC-E3's ENTERPRISEPACK" in v.resolution
    (bob_e3,) = [p for p in plan.prediction[uid(2)] if p.sku_id == lic("ENTERPRISEPACK")["skuId"]]
    assert (bob_e3.state, bob_e3.error) == ("ActiveWithError", "DependencyViolation")
    assert plan.blocked


def test_group_add_on_without_its_prerequisite_is_refused(tmp_path: Path) -> None:
    text = BASE_POLICY + "  - group: Sales\n    licenses:\n      - sku: MCOEV\n"
    plan = plan_for(tmp_path, base_state(), text)
    refused = [v for v in find(plan, "DependencyViolation") if "refuse" in v.message]
    assert len(refused) == 1 and refused[0].group == "Sales" and "MCOEV" in refused[0].message
    assert plan.blocked
    corrected = text.replace("      - sku: MCOEV\n", "      - sku: MCOEV\n      - sku: STANDARDPACK\n")
    assert new_violations(plan_for(tmp_path, base_state(), corrected)) == []


def test_prohibited_location_and_all_or_nothing(tmp_path: Path) -> None:
    text = BASE_POLICY.replace(
        "        disabledPlans: [YAMMER_ENTERPRISE, SWAY]\n", "        disabledPlans: [YAMMER_ENTERPRISE, SWAY]\n      - sku: MCOEV\n"
    ) + "usageLocations:\n  users:\n    alice@contoso.com: BN\n"
    plan = plan_for(tmp_path, base_state(), text)
    (v,) = find(plan, "ProhibitedInUsageLocationViolation")
    assert (v.status, v.sku, v.users) == ("new", "MCOEV", ("alice@contoso.com",))
    assert "MCOEV" in v.message and "BN" in v.message
    assert "usage location" in v.resolution
    (other,) = find(plan, "Other")
    assert (other.sku, other.users) == ("ENTERPRISEPACK", ("alice@contoso.com",))
    assert "MCOEV (ProhibitedInUsageLocationViolation)" in other.message
    corrected = text.replace("alice@contoso.com: BN", "alice@contoso.com: FR")
    assert new_violations(plan_for(tmp_path, base_state(), corrected)) == []


def test_usage_location_change_alone_is_reprocessed(tmp_path: Path) -> None:
    doc = base_doc()
    doc["groups"][0]["assignedLicenses"].append(lic("MCOEV"))
    policy = BASE_POLICY.replace(
        "        disabledPlans: [YAMMER_ENTERPRISE, SWAY]\n", "        disabledPlans: [YAMMER_ENTERPRISE, SWAY]\n      - sku: MCOEV\n"
    )
    plan = plan_for(tmp_path, state_from(doc), policy + "usageLocations:\n  users:\n    alice@contoso.com: BN\n")
    assert [(a.kind, a.users) for a in plan.actions] == [
        ("setUsageLocation", ("alice@contoso.com",)),
        ("reprocess", ("alice@contoso.com",)),
    ]
    assert plan.actions[1].request.url == f"/users/{uid(1)}/reprocessLicenseAssignment"
    assert find(plan, "ProhibitedInUsageLocationViolation")[0].status == "new"


def test_uniqueness_violation_names_the_other_object(tmp_path: Path) -> None:
    doc = base_doc()
    doc["users"][8]["proxyAddresses"] = ["SMTP:ivan@contoso.com", "smtp:alice@contoso.com"]
    text = BASE_POLICY + "  - group: Sales\n    members: [ivan@contoso.com]\n    licenses:\n      - sku: ENTERPRISEPACK\n"
    plan = plan_for(tmp_path, state_from(doc), text)
    (v,) = find(plan, "UniquenessViolation", "new")
    assert v.users == ("ivan@contoso.com",)
    assert "alice@contoso.com is also held by alice@contoso.com" in v.message
    assert "duplicate proxy address" in v.resolution and "reprocess" in v.resolution


def test_silent_failure_with_a_group_address(tmp_path: Path) -> None:
    doc = base_doc()
    doc["groups"].append(
        group(8, "Helpdesk", [], [], securityEnabled=False, mailEnabled=True, mail="helpdesk@contoso.com",
              proxyAddresses=["SMTP:helpdesk@contoso.com"])
    )
    doc["users"][8]["proxyAddresses"] = ["SMTP:ivan@contoso.com", "smtp:helpdesk@contoso.com"]
    text = BASE_POLICY + "  - group: Sales\n    members: [ivan@contoso.com]\n    licenses:\n      - sku: ENTERPRISEPACK\n"
    plan = plan_for(tmp_path, state_from(doc), text)
    (v,) = find(plan, "UniquenessViolation")
    assert v.status == "new" and v.users == ("ivan@contoso.com",) and v.sku is None
    assert "neither" in v.message and "group Helpdesk" in v.message
    assert plan.prediction[uid(9)] == ()


def test_existing_errors_are_warnings_and_fixed_ones_are_marked(tmp_path: Path) -> None:
    doc = base_doc()
    doc["groups"][2]["members"] = [uid(1), uid(2), uid(3), uid(4)]  # 4 members, 3 EMS seats: dave in error
    state = state_from(doc)
    plan = plan_for(tmp_path, state, BASE_POLICY)
    (v,) = find(plan, "CountViolation")
    assert (v.status, v.severity, v.users) == ("existing", "warning", ("dave@contoso.com",))
    assert not plan.blocked and plan.actions == ()
    text = BASE_POLICY.replace(
        "  - group: LIC-EMS\n", "  - group: LIC-EMS\n    members: [alice@contoso.com, bob@contoso.com, dave@contoso.com]\n"
    ) + LOOSE
    fixing = plan_for(tmp_path, state, text)
    (f,) = find(fixing, "CountViolation")
    assert (f.status, f.severity, f.users) == ("fixed", "warning", ("dave@contoso.com",))
    assert {p.error for p in fixing.prediction[uid(4)]} == {"None"}


def test_nested_group_warning_names_the_members(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, base_state(), BASE_POLICY)
    (v,) = find(plan, "NestedGroup")
    assert (v.group, v.users, v.severity, v.status) == ("LIC-E3", ("dave@contoso.com",), "warning", "existing")
    assert "Sales" in v.message
    # a group that starts carrying licenses with a nested group: a new warning
    doc = base_doc()
    doc["groups"].append(group(7, "Parent", [], [gid(2), uid(9)]))
    plan2 = plan_for(tmp_path, state_from(doc), BASE_POLICY + "  - group: Parent\n    licenses:\n      - sku: STANDARDPACK\n")
    parent = [w for w in find(plan2, "NestedGroup") if w.group == "Parent"]
    assert parent and parent[0].status == "new" and parent[0].users == ("dave@contoso.com",)


def test_prediction_lists_touched_and_changed_users_only(tmp_path: Path) -> None:
    text = BASE_POLICY + "  - group: Sales\n    licenses:\n      - sku: STANDARDPACK\n"
    plan = plan_for(tmp_path, base_state(), text)
    assert set(plan.prediction) == {uid(4)}  # dave, the only direct member of Sales
    (p,) = plan.prediction[uid(4)]
    assert (p.assigned_by_group, p.state, p.error) == (gid(2), "Active", "None")


def test_model_gaps_are_not_blamed_on_the_plan(tmp_path: Path) -> None:
    # the tenant records an error the model would not give today (e.g. seats bought since):
    # it is reported as existing/fixed, never as caused by the plan
    doc = base_doc()
    users = doc["users"]
    users.append(user(10, "kim"))
    doc["groups"][2]["members"].append(uid(10))
    state = state_from(doc)
    import dataclasses

    from reconciler.licensing import AssignmentState

    kim = state.users[uid(10)]
    err = AssignmentState(lic("EMS")["skuId"], gid(3), frozenset(), "Error", "CountViolation")
    state = dataclasses.replace(state, users={**state.users, uid(10): dataclasses.replace(kim, license_states=(err,))})
    plan = plan_for(tmp_path, state, BASE_POLICY)
    assert not plan.blocked
    assert all(v.status != "new" for v in find(plan, "CountViolation"))
