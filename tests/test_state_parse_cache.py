"""Users read from Graph share their identical license states (less memory and parsing on large tenants)."""

from __future__ import annotations

import pytest

from reconciler import state
from reconciler.state import user_from_graph

SKU = "6FD2C87F-B296-42F0-B197-1E91E994B900"
GROUP = "11111111-2222-3333-4444-555555555555"


def raw_user(n: int, disabled: list[str]) -> dict[str, object]:
    return {
        "id": f"00000000-0000-0000-0000-{n:012d}",
        "userPrincipalName": f"u{n}@contoso.com",
        "licenseAssignmentStates": [
            {"skuId": SKU, "assignedByGroup": GROUP, "disabledPlans": disabled, "state": "Active", "error": "None"},
            {"skuId": SKU, "assignedByGroup": None, "disabledPlans": [], "state": "Active", "error": None},
        ],
    }


def test_identical_states_are_one_object() -> None:
    a = user_from_graph(raw_user(1, ["A-PLAN"]))
    b = user_from_graph(raw_user(2, ["A-PLAN"]))
    c = user_from_graph(raw_user(3, ["B-PLAN"]))
    assert a.license_states == b.license_states
    assert all(x is y for x, y in zip(a.license_states, b.license_states, strict=True))
    assert a.license_states != c.license_states
    group_state = next(s for s in a.license_states if s.assigned_by_group)
    assert group_state.sku_id == SKU.lower() and group_state.assigned_by_group == GROUP.lower()
    assert group_state.disabled_plans == frozenset({"a-plan"}) and group_state.error == "None"
    direct = next(s for s in a.license_states if s.assigned_by_group is None)
    assert direct.error == "None"  # null on success, as Graph documents it


def test_users_with_the_same_states_share_one_parsed_copy() -> None:
    a = user_from_graph(raw_user(1, ["A-PLAN"]))
    b = user_from_graph(raw_user(2, ["A-PLAN"]))
    assert a.license_states is b.license_states  # one tuple for both users, parsed once
    assert a.direct_licenses is b.direct_licenses
    assert [x.sku_id for x in a.direct_licenses] == [SKU.lower()]  # the state without assignedByGroup
    assert [s.assigned_by_group for s in a.license_states] == [None, GROUP.lower()]  # direct first
    reordered = raw_user(3, ["A-PLAN"])
    reordered["licenseAssignmentStates"] = list(reversed(reordered["licenseAssignmentStates"]))  # type: ignore[call-overload]
    assert user_from_graph(reordered).license_states == a.license_states
    assert user_from_graph({"id": "X", "userPrincipalName": "x@y"}).license_states == ()


def test_unhashable_states_are_parsed_without_the_cache() -> None:
    raw = raw_user(4, ["A-PLAN"])
    raw["licenseAssignmentStates"][0]["disabledPlans"] = [["odd"]]  # type: ignore[index]
    size = len(state._USER_LICENSING_CACHE)
    user = user_from_graph(raw)
    assert len(user.license_states) == 2
    assert len(state._USER_LICENSING_CACHE) == size


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "_STATE_CACHE_MAX", 10)
    for n in range(50):
        user_from_graph(raw_user(n, [f"P{n}"]))
    assert len(state._STATE_CACHE) <= 10
    assert len(state._USER_LICENSING_CACHE) <= 10


def test_sku_plan_ids_computed_once() -> None:
    from reconciler.state import ServicePlan, SubscribedSku

    sku = SubscribedSku("s", "S", 10, 1, (ServicePlan("p1", "P1"), ServicePlan("p2", "P2")))
    assert sku.plan_ids == ("p1", "p2")
    assert sku.plan_ids is sku.plan_ids  # report asks for it once per user and SKU
    assert sku == SubscribedSku("s", "S", 10, 1, (ServicePlan("p1", "P1"), ServicePlan("p2", "P2")))


def test_fingerprint_tells_users_apart_when_they_share_parsed_states() -> None:
    from reconciler.state import Organization, TenantState

    org = Organization(id="t", display_name="T")
    same = [user_from_graph(raw_user(n, ["A-PLAN"])) for n in range(3)]
    changed = [*same[:2], user_from_graph(raw_user(2, ["B-PLAN"]))]
    a = TenantState.build(org, [], same, [])
    b = TenantState.build(org, [], changed, [])
    assert a.fingerprint() == TenantState.build(org, [], list(reversed(same)), []).fingerprint()
    assert a.fingerprint() != b.fingerprint()
    assert b.fingerprint() == TenantState.build(org, [], changed, []).fingerprint()
