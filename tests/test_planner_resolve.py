"""Planner step 1: the policy's names resolved against the tenant (issue 5, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from planner_fixtures import (
    BASE_POLICY,
    TENANT_ID,
    base_doc,
    base_state,
    codes,
    find,
    gid,
    group,
    kinds,
    lic,
    plan_for,
    state_from,
    uid,
)

from reconciler.errors import WrongTenantError


@pytest.mark.parametrize("tenant", ["contoso.onmicrosoft.com", "CONTOSO.com", TENANT_ID, TENANT_ID.upper()])
def test_tenant_of_this_directory_is_accepted(tmp_path: Path, tenant: str) -> None:
    plan = plan_for(tmp_path, base_state(), f"tenant: {tenant}\n" + BASE_POLICY)
    assert plan.tenant_id == TENANT_ID


def test_other_tenant_refuses_to_plan(tmp_path: Path) -> None:
    with pytest.raises(WrongTenantError) as info:
        plan_for(tmp_path, base_state(), "tenant: fabrikam.onmicrosoft.com\n" + BASE_POLICY)
    message = str(info.value)
    assert "policy.yaml:2:" in message and "fabrikam.onmicrosoft.com" in message
    assert "contoso.onmicrosoft.com" in message
    assert info.value.exit_code == 4


def test_group_by_id_and_by_name_case_insensitively(tmp_path: Path) -> None:
    text = f"""\
groups:
  - group: {gid(1)}
    licenses:
      - sku: ENTERPRISEPACK
        disabledPlans: [YAMMER_ENTERPRISE]
  - group: lic-ems
    licenses:
      - sku: EMS
        disabledPlans: [INTUNE_A]
"""
    plan = plan_for(tmp_path, base_state(), text)
    assert ("updateLicense", "LIC-E3", "ENTERPRISEPACK") in kinds(plan)
    assert ("updateLicense", "LIC-EMS", "EMS") in kinds(plan)
    a = next(a for a in plan.actions if a.group and a.group.name == "LIC-EMS")
    assert a.group is not None and a.group.id == gid(3)


def test_missing_group_is_a_blocking_policy_error_with_location(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, base_state(), "groups:\n  - group: LIC-Nope\n    licenses:\n      - sku: EMS\n", force=True)
    (v,) = find(plan, "GroupNotFound")
    assert v.severity == "error" and v.group == "LIC-Nope"
    assert v.source is not None and (v.source.line, v.source.column) == (3, 12)
    assert "create: true" in v.resolution
    assert plan.blocked  # policy errors block even when forced
    assert not [a for a in plan.actions if a.group and a.group.name == "LIC-Nope"]


def test_create_true_plans_the_group_with_a_placeholder_id(tmp_path: Path) -> None:
    text = """\
groups:
  - group: LIC-E1-Kiosk
    create: true
    members: [dave@contoso.com, IVAN@contoso.com]
    licenses:
      - sku: STANDARDPACK
"""
    plan = plan_for(tmp_path, base_state(), text)
    assert kinds(plan)[:1] == [("createGroup", "LIC-E1-Kiosk", "")]
    create = plan.actions[0]
    assert create.request.method == "POST" and create.request.url == "/groups"
    assert create.request.body == {
        "description": "Group-based licensing; managed by reconciler",
        "displayName": "LIC-E1-Kiosk",
        "mailEnabled": False,
        "mailNickname": "LIC-E1-Kiosk",
        "securityEnabled": True,
    }
    assert create.group is not None and create.group.id is None
    urls = {a.request.url for a in plan.actions[1:]}
    assert urls == {"/groups/{new:LIC-E1-Kiosk}/members/$ref", "/groups/{new:LIC-E1-Kiosk}/assignLicense"}
    # the created group's members get the license in the prediction, under the placeholder id
    states = plan.prediction[uid(9)]
    assert any(p.assigned_by_group == "{new:LIC-E1-Kiosk}" and p.state == "Active" for p in states)
    assert not plan.blocked


def test_ambiguous_group_lists_the_ids(tmp_path: Path) -> None:
    doc = base_doc()
    doc["groups"].append(group(9, "lic-ems", [], []))
    plan = plan_for(tmp_path, state_from(doc), BASE_POLICY)
    (v,) = find(plan, "AmbiguousGroup")
    assert gid(3) in v.message and gid(9) in v.message
    assert v.severity == "error" and plan.blocked
    # the ambiguous groups are named by the policy: not reported as unmanaged
    assert all(u.group != "LIC-EMS" for u in find(plan, "UnmanagedGroup"))


def test_unknown_users_block_with_their_location(tmp_path: Path) -> None:
    text = BASE_POLICY + """\
  - group: LIC-EMS2
    create: true
    members: [alice@contoso.com, nobody@contoso.com]
usageLocations:
  users:
    ghost@contoso.com: FR
"""
    plan = plan_for(tmp_path, base_state(), text, force=True)
    found = find(plan, "UnknownUser")
    assert sorted(v.users[0] for v in found) == ["ghost@contoso.com", "nobody@contoso.com"]
    assert all(v.severity == "error" and v.source is not None for v in found)
    assert plan.blocked


def test_unowned_sku_and_unknown_plan(tmp_path: Path) -> None:
    text = """\
groups:
  - group: LIC-E3
    licenses:
      - sku: SPE_E5
  - group: LIC-EMS
    licenses:
      - sku: EMS
        disabledPlans: [INTUNE_A]
"""
    doc = base_doc()
    ems = next(s for s in doc["subscribedSkus"] if s["skuPartNumber"] == "EMS")
    ems["servicePlans"] = [p for p in ems["servicePlans"] if p["servicePlanName"] != "INTUNE_A"]
    plan = plan_for(tmp_path, state_from(doc), text)
    (sku,) = find(plan, "UnknownSku")
    assert "SPE_E5" in sku.message and "ENTERPRISEPACK" in sku.message
    assert sku.source is not None and sku.source.line == 5
    (plan_v,) = find(plan, "UnknownPlan")
    assert "INTUNE_A" in plan_v.message and plan_v.sku == "EMS"
    assert plan.blocked
    # a group whose licenses do not resolve is not touched (no removal planned from a typo)
    assert not [a for a in plan.actions if a.kind.endswith("License")]


def test_plans_by_id_and_sku_by_id(tmp_path: Path) -> None:
    from planner_fixtures import plan_id, sku_id

    text = f"""\
groups:
  - group: LIC-E3
    licenses:
      - sku: {sku_id("ENTERPRISEPACK")}
        disabledPlans: [{plan_id("YAMMER_ENTERPRISE")}, sway]
"""
    plan = plan_for(tmp_path, base_state(), text)
    assert not [a for a in plan.actions if a.group and a.group.name == "LIC-E3"]
    assert not plan.blocked
    assert ("GroupNotFound", "error", "new") not in codes(plan)


def test_directlicenses_skus_unknown(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, base_state(), BASE_POLICY + "directLicenses:\n  mode: report\n  skus: [VISIOCLIENT]\n")
    (v,) = find(plan, "UnknownSku")
    assert "VISIOCLIENT" in v.message and plan.blocked


def test_group_with_lic_helper_is_settled() -> None:
    # the fixtures' tenant is settled: every member of LIC-E3 holds E3 (direct users share the seat)
    state = base_state()
    assert state.skus[lic("ENTERPRISEPACK")["skuId"]].consumed_units == 6


def test_members_of_a_dynamic_group_cannot_be_managed(tmp_path: Path) -> None:
    doc = base_doc()
    doc["groups"][2].update(groupTypes=["DynamicMembership"], membershipRule='user.department -eq "Sales"')
    text = BASE_POLICY.replace("  - group: LIC-EMS\n", "  - group: LIC-EMS\n    members: [alice@contoso.com]\n")
    plan = plan_for(tmp_path, state_from(doc), text, force=True)
    (v,) = find(plan, "MembershipNotManaged")
    assert v.group == "LIC-EMS" and "dynamic" in v.message and plan.blocked
    assert not [a for a in plan.actions if a.kind.endswith("Member")]
