"""The sample tenant's situations (examples/README-sample-tenant.md) produce the documented
states and error codes when its licensing is computed in-process by reconciler.licensing."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.emulator.seed import licensing_input_from_seed, load_seed, seed_rules
from reconciler.licensing import (
    ACTIVE,
    ACTIVE_WITH_ERROR,
    COUNT_VIOLATION,
    DEPENDENCY_VIOLATION,
    ERROR,
    MUTUALLY_EXCLUSIVE_VIOLATION,
    NO_ERROR,
    OTHER,
    PROHIBITED_IN_USAGE_LOCATION_VIOLATION,
    UNIQUENESS_VIOLATION,
    AssignmentState,
    LicensingGroup,
    LicensingInput,
    LicensingResult,
    compute,
)

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample-tenant.json"

SKU = {
    "STANDARDPACK": "18181a46-0d4e-45cd-891e-60aabd171b4e",
    "ENTERPRISEPACK": "6fd2c87f-b296-42f0-b197-1e91e994b900",
    "ENTERPRISEPREMIUM": "c7df2760-2c81-4ef7-b578-5b5392b571df",
    "EMS": "efccb6f7-5641-4e0e-bd10-b4976e1bf68e",
    "POWER_BI_PRO": "f8a1db68-be16-40ed-86d5-cb42ce701560",
    "VISIOCLIENT": "c5928f49-12ba-48f7-ada3-0d743a3601d5",
    "PROJECTPREMIUM": "09015f9f-377f-4538-bbb5-f75ceb09358a",
    "MCOEV": "e43b5b99-8dfb-405f-9987-dc307f34bcbd",
}


@cache
def seed() -> dict[str, Any]:
    return load_seed(SAMPLE)


def uid(nick: str) -> str:
    return next(str(u["id"]) for u in seed()["users"] if u["userPrincipalName"] == f"{nick}@contoso.com")


def gid(name: str) -> str:
    return next(str(g["id"]) for g in seed()["groups"] if g["displayName"] == name)


def base_input() -> LicensingInput:
    return licensing_input_from_seed(seed(), seed_rules(seed()))


@cache
def result() -> LicensingResult:
    return compute(base_input())


def states(nick: str, res: LicensingResult | None = None) -> dict[tuple[str, str | None], AssignmentState]:
    res = res or result()
    user = res.users.get(uid(nick))
    return {(st.sku_id, st.assigned_by_group): st for st in (user.states if user else ())}


def state_of(nick: str, sku: str, group: str | None, res: LicensingResult | None = None) -> tuple[str, str]:
    st = states(nick, res)[(SKU[sku], gid(group) if group else None)]
    return st.state, st.error


def held(nick: str, res: LicensingResult | None = None) -> set[str]:
    res = res or result()
    user = res.users.get(uid(nick))
    return {lic.sku_id for lic in user.assigned} if user else set()


def test_recorded_states_in_the_seed_are_what_compute_gives() -> None:
    """The seed's licenseAssignmentStates are a fixed point: loading it changes nothing."""
    for u in seed()["users"]:
        recorded = {
            (st["skuId"], st["assignedByGroup"], st["state"], st["error"])
            for st in u.get("licenseAssignmentStates", [])
        }
        user = result().users.get(u["id"])
        computed = {(s.sku_id, s.assigned_by_group, s.state, s.error) for s in (user.states if user else ())}
        assert recorded == computed, u["userPrincipalName"]


def test_consumed_units_match_the_documented_seats() -> None:
    consumed = {sku: result().consumed[sku_id] for sku, sku_id in SKU.items()}
    assert consumed == {
        "STANDARDPACK": 2,
        "ENTERPRISEPACK": 38,
        "ENTERPRISEPREMIUM": 3,
        "EMS": 5,
        "POWER_BI_PRO": 3,
        "VISIOCLIENT": 4,
        "PROJECTPREMIUM": 1,
        "MCOEV": 2,
    }
    for s in seed()["subscribedSkus"]:
        assert s["consumedUnits"] == result().consumed[s["skuId"]]


@pytest.mark.parametrize("nick", ["e1direct1", "e1direct2"])
def test_a_direct_e1_with_all_plans_and_the_e3_group_conflict_on_sharepoint(nick: str) -> None:
    assert state_of(nick, "STANDARDPACK", None) == (ACTIVE, NO_ERROR)
    assert state_of(nick, "ENTERPRISEPACK", "LIC-E3-Base") == (ERROR, MUTUALLY_EXCLUSIVE_VIOLATION)
    assert held(nick) == {SKU["STANDARDPACK"]}


def test_b_visio_short_of_seats_leaves_the_last_members_in_count_violation() -> None:
    for i in (1, 2, 3, 4):
        assert state_of(f"visio{i}", "VISIOCLIENT", "LIC-Visio") == (ACTIVE, NO_ERROR)
    for i in (5, 6):
        assert state_of(f"visio{i}", "VISIOCLIENT", "LIC-Visio") == (ERROR, COUNT_VIOLATION)
        assert SKU["VISIOCLIENT"] not in held(f"visio{i}")
        # other groups are not affected
        assert state_of(f"visio{i}", "ENTERPRISEPACK", "LIC-E3-Base") == (ACTIVE, NO_ERROR)


@pytest.mark.parametrize("nick", ["noloc1", "noloc2", "noloc3"])
def test_c_users_without_usage_location_are_licensed_through_the_tenant_location(nick: str) -> None:
    user = next(u for u in seed()["users"] if u["id"] == uid(nick))
    assert user["usageLocation"] is None
    assert base_input().tenant_location == "US"
    assert state_of(nick, "ENTERPRISEPACK", "LIC-E3-Base") == (ACTIVE, NO_ERROR)


def test_d_teams_phone_is_prohibited_in_brunei() -> None:
    assert state_of("brunei1", "MCOEV", "LIC-Teams-Phone") == (ERROR, PROHIBITED_IN_USAGE_LOCATION_VIOLATION)
    assert state_of("brunei1", "ENTERPRISEPACK", "LIC-E3-Base") == (ACTIVE, NO_ERROR)
    for nick in ("phone1", "phone2"):
        assert state_of(nick, "MCOEV", "LIC-Teams-Phone") == (ACTIVE, NO_ERROR)


def test_e_duplicate_proxy_address_between_two_users() -> None:
    assert state_of("dup1", "ENTERPRISEPACK", "LIC-E3-Base") == (ACTIVE, NO_ERROR)
    assert state_of("dup2", "ENTERPRISEPACK", "LIC-E3-Base") == (ERROR, UNIQUENESS_VIOLATION)
    assert held("dup2") == set()


def test_e_proxy_address_held_by_a_mail_enabled_group_is_silent() -> None:
    user = result().users[uid("silent1")]
    assert user.states == ()
    assert user.assigned == ()
    assert user.silent_groups == (gid("LIC-E3-Base"),)


def test_f_removing_the_group_that_satisfies_a_dependency_keeps_it_in_error() -> None:
    # today: direct Project Online Premium (SharePoint Plan 2 off) relies on E3's SharePoint Plan 2
    assert state_of("project1", "PROJECTPREMIUM", None) == (ACTIVE, NO_ERROR)
    assert state_of("project1", "ENTERPRISEPACK", "LIC-E3-Base") == (ACTIVE, NO_ERROR)
    # the user leaves LIC-E3-Base, with the current states as history
    inp = base_input()
    previous = {u: r.states for u, r in result().users.items()}
    e3 = inp.groups[gid("LIC-E3-Base")]
    groups = dict(inp.groups)
    groups[e3.id] = LicensingGroup(
        id=e3.id,
        security_enabled=e3.security_enabled,
        licenses=e3.licenses,
        member_ids=tuple(m for m in e3.member_ids if m != uid("project1")),
    )
    after = compute(dataclasses.replace(inp, groups=groups, previous=previous))
    assert state_of("project1", "ENTERPRISEPACK", "LIC-E3-Base", after) == (
        ACTIVE_WITH_ERROR,
        DEPENDENCY_VIOLATION,
    )
    assert SKU["ENTERPRISEPACK"] in held("project1", after)
    # someone without the dependency just loses the license
    groups[e3.id] = dataclasses.replace(
        groups[e3.id], member_ids=tuple(m for m in groups[e3.id].member_ids if m != uid("alice"))
    )
    after = compute(dataclasses.replace(inp, groups=groups, previous=previous))
    assert states("alice", after) == {}


def test_g_multi_product_group_where_one_product_is_short_of_seats() -> None:
    for i in (1, 2, 3):
        assert state_of(f"analyst{i}", "EMS", "LIC-Analysts-Bundle") == (ACTIVE, NO_ERROR)
        assert state_of(f"analyst{i}", "POWER_BI_PRO", "LIC-Analysts-Bundle") == (ACTIVE, NO_ERROR)
    assert state_of("analyst4", "POWER_BI_PRO", "LIC-Analysts-Bundle") == (ERROR, COUNT_VIOLATION)
    assert state_of("analyst4", "EMS", "LIC-Analysts-Bundle") == (ERROR, OTHER)
    assert held("analyst4") == {SKU["ENTERPRISEPACK"]}


def test_h_members_of_a_nested_group_get_nothing() -> None:
    assert (
        gid("Sales-Team") in next(g for g in seed()["groups"] if g["displayName"] == "LIC-E3-Base")["members"]
    )
    for nick in ("nested1", "nested2"):
        assert uid(nick) not in result().users


def test_i_direct_e3_ready_to_migrate_shares_one_seat_with_the_group() -> None:
    for nick in ("migrate1", "migrate2", "migrate3", "migrate4"):
        assert state_of(nick, "ENTERPRISEPACK", None) == (ACTIVE, NO_ERROR)
        assert state_of(nick, "ENTERPRISEPACK", "LIC-E3-Base") == (ACTIVE, NO_ERROR)
    group_disabled = states("migrate1")[(SKU["ENTERPRISEPACK"], gid("LIC-E3-Base"))].disabled_plans
    for nick in ("migrate1", "migrate2", "migrate3"):
        assert states(nick)[(SKU["ENTERPRISEPACK"], None)].disabled_plans == group_disabled
    # migrate4's direct E3 enables the plans the group switches off
    assert states("migrate4")[(SKU["ENTERPRISEPACK"], None)].disabled_plans == frozenset()
    for nick in ("direct1", "direct2"):
        assert set(states(nick)) == {(SKU["ENTERPRISEPACK"], None)}


def test_everyone_else_is_fine() -> None:
    in_error = {
        uid
        for uid, u in result().users.items()
        if any(st.error != NO_ERROR for st in u.states) or u.silent_groups
    }
    expected = {
        uid(n)
        for n in ("e1direct1", "e1direct2", "visio5", "visio6", "brunei1", "dup2", "silent1", "analyst4")
    }
    assert in_error == expected


# --------------------------------------------------------------------------- the sample policy

ROOT = SAMPLE.parents[1]


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_the_sample_policy_validates() -> None:
    result = run_cli(ROOT, "validate", "policies/")
    assert result.returncode == 0, result.stderr


def copy_sample(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    (tmp_path / "examples").mkdir()
    shutil.copy(SAMPLE, tmp_path / "examples" / "sample-tenant.json")
    return tmp_path


def test_planning_the_sample_policy_reports_every_situation_without_blocking(tmp_path: Path) -> None:
    cwd = copy_sample(tmp_path)
    result = run_cli(
        cwd, "plan", "policies/", "--emulator", "examples/sample-tenant.json", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    found = {(v["code"], v.get("group"), tuple(sorted(v["users"]))) for v in plan["violations"]}
    for expected in [
        ("MutuallyExclusiveViolation", "LIC-E3-Base", ("e1direct1@contoso.com", "e1direct2@contoso.com")),
        ("CountViolation", "LIC-Visio", ("visio5@contoso.com", "visio6@contoso.com")),
        ("ProhibitedInUsageLocationViolation", "LIC-Teams-Phone", ("brunei1@contoso.com",)),
        ("UniquenessViolation", "LIC-E3-Base", ("dup2@contoso.com",)),
        ("UniquenessViolation", "LIC-E3-Base", ("silent1@contoso.com",)),
        ("CountViolation", "LIC-Analysts-Bundle", ("analyst4@contoso.com",)),
        ("Other", "LIC-Analysts-Bundle", ("analyst4@contoso.com",)),
        ("NestedGroup", "LIC-E3-Base", ("nested1@contoso.com", "nested2@contoso.com")),
    ]:
        assert expected in found, (expected, found)
    assert all(v["severity"] == "warning" for v in plan["violations"])  # all already in the tenant
    removed = {u for a in plan["actions"] if a["kind"] == "removeDirectLicense" for u in a.get("users", [])}
    assert removed == {"migrate1@contoso.com", "migrate2@contoso.com", "migrate3@contoso.com"}
    assert plan["summary"].get("createGroup") == 1


def test_f_the_planner_predicts_the_dependency_violation_of_a_removal(tmp_path: Path) -> None:
    cwd = copy_sample(tmp_path)
    members = [
        u["userPrincipalName"]
        for u in seed()["users"]
        if u["id"] in next(g for g in seed()["groups"] if g["displayName"] == "LIC-E3-Base")["members"]
        and u["userPrincipalName"] != "project1@contoso.com"
    ]
    path = cwd / "policies" / "licensed-groups.yaml"
    policy = yaml.safe_load(path.read_text(encoding="utf-8"))
    policy["groups"][0]["members"] = members  # manage LIC-E3-Base's membership, without project1
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    result = run_cli(
        cwd, "plan", "policies/", "--emulator", "examples/sample-tenant.json", "--format", "json"
    )
    assert result.returncode == 3, result.stderr  # a violation the plan would cause blocks
    plan = json.loads(result.stdout)
    errors = [(v["code"], v.get("group"), v["users"]) for v in plan["violations"] if v["severity"] == "error"]
    assert errors == [("DependencyViolation", "LIC-E3-Base", ["project1@contoso.com"])]


def test_the_emulator_loads_the_sample_to_the_same_states_and_its_snapshot_is_a_valid_seed() -> None:
    from reconciler.emulator.seed import validate_seed
    from reconciler.emulator.store import Store

    store = Store.create(":memory:", seed(), rules=seed_rules(seed()))
    try:
        snap = store.snapshot()
    finally:
        store.close()
    assert validate_seed(snap) == []

    def recorded(doc: dict[str, Any]) -> dict[str, set[tuple[str, str | None, str, str]]]:
        return {
            u["userPrincipalName"]: {
                (s["skuId"], s["assignedByGroup"], s["state"], s["error"])
                for s in u.get("licenseAssignmentStates", [])
            }
            for u in doc["users"]
        }

    assert recorded(snap) == recorded(seed())
    assert {s["skuId"]: s["consumedUnits"] for s in snap["subscribedSkus"]} == {
        s["skuId"]: s["consumedUnits"] for s in seed()["subscribedSkus"]
    }
