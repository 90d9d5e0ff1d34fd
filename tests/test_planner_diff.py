"""Planner step 2: actions, their Graph requests and details (issue 5, item 2)."""

from __future__ import annotations

from pathlib import Path

from planner_fixtures import (
    BASE_POLICY,
    E3_OFF,
    base_doc,
    base_state,
    find,
    gid,
    kinds,
    lic,
    plan_for,
    plan_id,
    sku,
    sku_id,
    state_from,
    uid,
)

from reconciler.plan import Action, Plan


def group_actions(plan: Plan, name: str) -> list[Action]:
    return [a for a in plan.actions if a.group is not None and a.group.name == name and a.kind.endswith("License")]


def test_policy_equal_to_tenant_gives_no_changes(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, base_state(), BASE_POLICY)
    assert plan.actions == ()
    assert not plan.blocked


def test_swap_update_and_removal_in_one_request(tmp_path: Path) -> None:
    text = """\
groups:
  - group: LIC-E3
    licenses:
      - sku: ENTERPRISEPACK
        disabledPlans: [YAMMER_ENTERPRISE]
      - sku: MCOEV
  - group: LIC-EMS
    licenses:
      - sku: ENTERPRISEPREMIUM
safety:
  maxRemovals: 100%
"""
    plan = plan_for(tmp_path, base_state(), text)
    e3 = group_actions(plan, "LIC-E3")
    assert [(a.kind, a.sku) for a in e3] == [("updateLicense", "ENTERPRISEPACK"), ("assignLicense", "MCOEV")]
    assert e3[0].request is e3[1].request or e3[0].request == e3[1].request
    assert e3[0].request_key == e3[1].request_key == f"assignLicense:{gid(1)}"
    assert e3[0].request.url == f"/groups/{gid(1)}/assignLicense"
    assert e3[0].request.body == {
        "addLicenses": [
            {"disabledPlans": [plan_id("YAMMER_ENTERPRISE")], "skuId": sku_id("ENTERPRISEPACK")},
            {"disabledPlans": [], "skuId": sku_id("MCOEV")},
        ],
        "removeLicenses": [],
    }
    # in place: the plan change is an update, never remove + add
    assert e3[0].details["planChanges"] == {"enable": ["SWAY"], "disable": []}
    ems = group_actions(plan, "LIC-EMS")
    # sorted by part number; one request for both
    assert [(a.kind, a.sku) for a in ems] == [("removeLicense", "EMS"), ("assignLicense", "ENTERPRISEPREMIUM")]
    body = ems[0].request.body
    assert body is not None
    assert body["removeLicenses"] == [sku_id("EMS")]
    assert [x["skuId"] for x in body["addLicenses"]] == [sku_id("ENTERPRISEPREMIUM")]
    assert ems[0].reason and ems[0].users == ("alice@contoso.com", "bob@contoso.com")
    # LIC-Admins is not in this policy: its licenses are not touched (reported as unmanaged)
    assert not group_actions(plan, "LIC-Admins")
    assert {v.group for v in find(plan, "UnmanagedGroup")} == {"LIC-Admins", "Old-Pilot"}


def test_details_for_renderers(tmp_path: Path) -> None:
    text = """\
groups:
  - group: Sales
    licenses:
      - sku: EMS
        enabledPlans: [AAD_PREMIUM, INTUNE_A]
  - group: LIC-E3
    licenses:
      - sku: ENTERPRISEPACK
        disabledPlans: [YAMMER_ENTERPRISE, SWAY, FORMS_PLAN_E3]
"""
    plan = plan_for(tmp_path, base_state(), text)
    (assign,) = group_actions(plan, "Sales")
    assert assign.kind == "assignLicense" and assign.users == ("dave@contoso.com",)
    assert assign.details["enabledPlans"] == ["AAD_PREMIUM", "INTUNE_A"] or set(assign.details["enabledPlans"]) == {
        "AAD_PREMIUM",
        "INTUNE_A",
    }
    held = set(assign.details["heldOff"])
    assert "MFA_PREMIUM" in held and "AAD_PREMIUM" not in held
    assert assign.details["seats"] == {"needed": 1, "free": 1}
    (update,) = group_actions(plan, "LIC-E3")
    assert update.details["planChanges"] == {"enable": [], "disable": ["FORMS_PLAN_E3"]}
    assert set(update.details["disabledPlans"]) == {"YAMMER_ENTERPRISE", "SWAY", "FORMS_PLAN_E3"}
    assert "FORMS_PLAN_E3" not in update.details["enabledPlans"]
    assert update.source is not None and update.source.line == 9


def test_licenses_key_absent_means_not_managed(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, base_state(), "groups:\n  - group: LIC-E3\n    usageLocation: FR\n")
    assert not group_actions(plan, "LIC-E3")


def test_empty_licenses_list_removes_everything(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, base_state(), "groups:\n  - group: LIC-EMS\n    licenses: []\nsafety:\n  maxRemovals: 5\n")
    assert [(a.kind, a.sku) for a in group_actions(plan, "LIC-EMS")] == [("removeLicense", "EMS")]


def test_members_managed_exactly_for_users_only(tmp_path: Path) -> None:
    text = """\
groups:
  - group: LIC-E3
    members: [alice@contoso.com, bob@contoso.com, carol@contoso.com, gina@contoso.com, hank@contoso.com, ivan@contoso.com]
safety:
  maxRemovals: 5
"""
    plan = plan_for(tmp_path, base_state(), text)
    members = [(a.kind, a.user.name if a.user else "") for a in plan.actions if a.kind.endswith("Member")]
    assert members == [("addMember", "ivan@contoso.com"), ("removeMember", "frank@contoso.com")]
    add = next(a for a in plan.actions if a.kind == "addMember")
    assert add.request.method == "POST" and add.request.url == f"/groups/{gid(1)}/members/$ref"
    assert add.request.body == {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{uid(9)}"}
    remove = next(a for a in plan.actions if a.kind == "removeMember")
    assert remove.request.method == "DELETE" and remove.request.url == f"/groups/{gid(1)}/members/{uid(6)}/$ref"
    assert remove.request.body is None
    # the nested group Sales stays a member (no action on it)
    assert all(gid(2) not in a.request.url for a in plan.actions)


def test_usage_locations_explicit_group_and_default(tmp_path: Path) -> None:
    doc = base_doc()
    doc["users"].append({**doc["users"][0], "id": uid(10), "userPrincipalName": "jo@contoso.com", "usageLocation": None,
                         "proxyAddresses": ["SMTP:jo@contoso.com"], "mail": "jo@contoso.com"})
    doc["groups"][2]["members"].append(uid(10))  # jo in LIC-EMS
    text = BASE_POLICY.replace("  - group: LIC-EMS\n", "  - group: LIC-EMS\n    usageLocation: DE\n") + """\
usageLocations:
  default: GB
  users:
    alice@contoso.com: FR
    bob@contoso.com: US
"""
    plan = plan_for(tmp_path, state_from(doc), text)
    usage = [(a.user.name, a.details["usageLocation"], a.details["previousUsageLocation"])
             for a in plan.actions if a.kind == "setUsageLocation" and a.user]
    assert usage == [
        ("alice@contoso.com", "FR", "US"),
        ("frank@contoso.com", "GB", None),
        ("jo@contoso.com", "DE", None),
    ]
    first = next(a for a in plan.actions if a.kind == "setUsageLocation")
    assert first.request.method == "PATCH" and first.request.url == f"/users/{uid(1)}"
    assert first.request.body == {"usageLocation": "FR"}
    assert not find(plan, "UsageLocationFallback")


def test_usage_location_fallback_warning(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, base_state(), BASE_POLICY)
    (v,) = find(plan, "UsageLocationFallback")
    assert v.severity == "warning" and v.users == ("frank@contoso.com",)
    assert "US" in v.message


def test_direct_licenses_report(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, base_state(), BASE_POLICY + "directLicenses:\n  mode: report\n")
    assert plan.actions == ()
    (redundant,) = find(plan, "RedundantDirectLicense")
    assert redundant.users == ("gina@contoso.com",) and redundant.severity == "warning"
    (kept,) = find(plan, "DirectLicenseKept")
    assert kept.users == ("hank@contoso.com",)
    assert "SWAY" in kept.message and "YAMMER_ENTERPRISE" in kept.message


def test_direct_licenses_keep(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, base_state(), BASE_POLICY + "directLicenses:\n  mode: keep\n")
    assert not find(plan, "RedundantDirectLicense") and not find(plan, "DirectLicenseKept")


def _many_direct() -> dict[str, object]:
    doc = base_doc()
    for u in doc["users"]:
        if u["userPrincipalName"] in ("alice@contoso.com", "bob@contoso.com"):
            u["assignedLicenses"] = [lic("ENTERPRISEPACK", E3_OFF)]
    return doc


def test_remove_redundant_in_waves(tmp_path: Path) -> None:
    text = BASE_POLICY + "directLicenses:\n  mode: removeRedundant\n  skus: [ENTERPRISEPACK]\n  waveSize: 2\n"
    plan = plan_for(tmp_path, state_from(_many_direct()), text)
    removals = [a for a in plan.actions if a.kind == "removeDirectLicense"]
    assert [a.users for a in removals] == [("alice@contoso.com",), ("bob@contoso.com",)]
    a = removals[0]
    assert a.request.url == f"/users/{uid(1)}/assignLicense"
    assert a.request.body == {"addLicenses": [], "removeLicenses": [sku_id("ENTERPRISEPACK")]}
    assert a.details["coveredBy"] == ["LIC-E3"] and a.sku == "ENTERPRISEPACK"
    (rest,) = find(plan, "RedundantDirectLicense")
    assert rest.users == ("gina@contoso.com",) and "1 more" in rest.message
    assert find(plan, "DirectLicenseKept")[0].users == ("hank@contoso.com",)
    # nobody loses anything: the group keeps giving the same plans
    assert all(p.state == "Active" for uid_ in (uid(1), uid(2)) for p in plan.prediction[uid_])
    assert not plan.blocked


def test_remove_redundant_waits_for_the_inherited_assignment(tmp_path: Path) -> None:
    # ivan holds E1 directly; the policy now gives E1 to Sales, which he joins: not Active yet
    doc = base_doc()
    doc["users"][8]["assignedLicenses"] = [lic("STANDARDPACK")]
    text = """\
groups:
  - group: Sales
    members: [ivan@contoso.com]
    licenses:
      - sku: STANDARDPACK
directLicenses:
  mode: removeRedundant
safety:
  maxRemovals: 5
"""
    plan = plan_for(tmp_path, state_from(doc), text)
    assert not [a for a in plan.actions if a.kind == "removeDirectLicense"]
    (pending,) = find(plan, "RedundantDirectLicense")
    assert pending.users == ("ivan@contoso.com",) and "later plan" in pending.message
    # report mode lists only what is redundant today
    report = plan_for(tmp_path, state_from(doc), text.replace("mode: removeRedundant", "mode: report"))
    assert not find(report, "RedundantDirectLicense")


def test_direct_licenses_limited_to_skus(tmp_path: Path) -> None:
    text = BASE_POLICY + "directLicenses:\n  mode: removeRedundant\n  skus: [EMS]\n"
    plan = plan_for(tmp_path, base_state(), text)
    assert not [a for a in plan.actions if a.kind == "removeDirectLicense"]
    assert not find(plan, "DirectLicenseKept")


def test_unmanaged_groups_ignore_and_remove(tmp_path: Path) -> None:
    ignore = plan_for(tmp_path, base_state(), BASE_POLICY + "unmanagedGroups: ignore\n")
    assert not find(ignore, "UnmanagedGroup") and ignore.actions == ()
    remove = plan_for(tmp_path, base_state(), BASE_POLICY + "unmanagedGroups: remove\n")
    (a,) = remove.actions
    assert (a.kind, a.group and a.group.name, a.sku) == ("removeLicense", "Old-Pilot", "ENTERPRISEPREMIUM")
    assert a.request.body == {"addLicenses": [], "removeLicenses": [sku_id("ENTERPRISEPREMIUM")]}
    assert a.users == ("erin@contoso.com",)
    assert plan_id  # keep import used


def test_new_service_plans(tmp_path: Path) -> None:
    new_plan = ("9f0e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f", "COPILOT_SOMETHING_NEW")
    doc = base_doc()
    doc["subscribedSkus"][1] = sku("ENTERPRISEPACK", 10, pending=[new_plan])
    text = BASE_POLICY + """\
  - group: Sales
    licenses:
      - sku: EMS
        enabledPlans: [AAD_PREMIUM]
"""
    plan = plan_for(tmp_path, state_from(doc), text)
    (v,) = find(plan, "NewServicePlans")
    assert v.group == "LIC-E3" and "COPILOT_SOMETHING_NEW" in v.message and v.severity == "warning"
    # the enabledPlans form: no warning, plans outside the list are held off
    doc2 = base_doc()
    doc2["subscribedSkus"][2] = sku("EMS", 3, pending=[new_plan])
    plan2 = plan_for(tmp_path, state_from(doc2), text)
    # LIC-EMS lists EMS without a plan list (every plan on): warned; Sales uses enabledPlans: not
    assert [v.group for v in find(plan2, "NewServicePlans")] == ["LIC-EMS"]
    (assign,) = group_actions(plan2, "Sales")
    assert "COPILOT_SOMETHING_NEW" in assign.details["heldOff"]
    assert assign.details["newServicePlans"] == ["COPILOT_SOMETHING_NEW"]


def test_action_order(tmp_path: Path) -> None:
    text = """\
groups:
  - group: LIC-E1-Kiosk
    create: true
    members: [ivan@contoso.com]
    licenses:
      - sku: STANDARDPACK
  - group: LIC-E3
    licenses:
      - sku: ENTERPRISEPACK
        disabledPlans: [SWAY]
usageLocations:
  default: US
  users:
    alice@contoso.com: FR
"""
    plan = plan_for(tmp_path, base_state(), text)
    assert [k for k, _, _ in kinds(plan)] == [
        "createGroup",
        "setUsageLocation",
        "setUsageLocation",
        "addMember",
        "assignLicense",
        "updateLicense",
    ]
