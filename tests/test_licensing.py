"""compute(): each test is named after the documented scenario it covers (facts sections 1.3, 2, 5)."""

from __future__ import annotations

from test_licensing_fixtures import (
    EMS,
    ENTERPRISEPACK,
    EXCHANGE_S_ENTERPRISE,
    EXCHANGE_S_STANDARD,
    EXCHANGEENTERPRISE,
    EXCHANGESTANDARD,
    INTUNE_A,
    MCOEV_SKU,
    MCOMEETADV_SKU,
    MCOSTANDARD,
    PROJECTPROFESSIONAL,
    SHAREPOINTENTERPRISE,
    SHAREPOINTSTANDARD,
    STANDARDPACK,
    SWAY,
    TEAMS_FREE_SKU,
    YAMMER_ENTERPRISE,
    gid,
    group,
    lic,
    rules,
    tenant,
    uid,
    user,
)

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
    License,
    LicensingInput,
    LicensingResult,
    compute,
    enabled_plans,
    user_enabled_plans,
)


def st(result: LicensingResult, user_n: int, sku_id: str, group_n: int | None) -> tuple[str, str] | None:
    """(state, error) of one (user, SKU, source), or None when there is no such state."""
    ul = result.users.get(uid(user_n))
    if ul is None:
        return None
    source = gid(group_n) if group_n is not None else None
    found = [s for s in ul.states if s.sku_id == sku_id and s.assigned_by_group == source]
    assert len(found) <= 1
    return (found[0].state, found[0].error) if found else None


def held(result: LicensingResult, user_n: int) -> set[str]:
    ul = result.users.get(uid(user_n))
    return {a.sku_id for a in ul.assigned} if ul else set()


def prev_state(sku_id: str, group_n: int | None, state: str = ACTIVE, *disabled: str) -> AssignmentState:
    error = NO_ERROR if state == ACTIVE else DEPENDENCY_VIOLATION
    return AssignmentState(sku_id, gid(group_n) if group_n else None, frozenset(disabled), state, error)


# ------------------------------------------------------------------ the seed article's example


def test_seed_article_e1_direct_plus_e3_group_sharepoint_plan1_plan2_conflict() -> None:
    # facts 5 / 2.14: E1 direct with all plans; an E3 group; SharePoint Plan 1 and Plan 2 exclusive
    inp = tenant([user(1, direct=[lic(STANDARDPACK)])], [group(1, [lic(ENTERPRISEPACK)], [uid(1)])])
    r = compute(inp)
    assert st(r, 1, STANDARDPACK, None) == (ACTIVE, NO_ERROR)
    assert st(r, 1, ENTERPRISEPACK, 1) == (ERROR, MUTUALLY_EXCLUSIVE_VIOLATION)
    assert held(r, 1) == {STANDARDPACK}
    assert r.consumed[ENTERPRISEPACK] == 0
    assert r.consumed[STANDARDPACK] == 1


def test_seed_article_conflict_resolved_by_disabling_sharepoint_in_the_group() -> None:
    # the documented fix: disable the conflicting plan in one of the sources
    inp = tenant(
        [user(1, direct=[lic(STANDARDPACK)])],
        [group(1, [lic(ENTERPRISEPACK, SHAREPOINTENTERPRISE)], [uid(1)])],
    )
    r = compute(inp)
    assert st(r, 1, ENTERPRISEPACK, 1) == (ACTIVE, NO_ERROR)
    assert held(r, 1) == {STANDARDPACK, ENTERPRISEPACK}


def test_exchange_plan1_plan2_allowed_when_rule_disabled() -> None:
    # facts 2.14: Microsoft now allows Exchange Plan 1 and Plan 2 together; only a rule makes them clash
    users = [user(1, direct=[lic(EXCHANGESTANDARD)])]
    groups = [group(1, [lic(EXCHANGEENTERPRISE)], [uid(1)])]
    allowed = compute(tenant(users, groups, rule_table=rules(exchange_exclusive=False)))
    assert st(allowed, 1, EXCHANGEENTERPRISE, 1) == (ACTIVE, NO_ERROR)
    clashing = compute(tenant(users, groups, rule_table=rules(exchange_exclusive=True)))
    assert st(clashing, 1, EXCHANGEENTERPRISE, 1) == (ERROR, MUTUALLY_EXCLUSIVE_VIOLATION)


def test_teams_free_and_teams_are_mutually_exclusive() -> None:
    # facts 5: TEAMS_FREE <-> TEAMS1 (Cloud Licensing design document example)
    inp = tenant([user(1, direct=[lic(TEAMS_FREE_SKU)])], [group(1, [lic(ENTERPRISEPACK)], [uid(1)])])
    assert st(compute(inp), 1, ENTERPRISEPACK, 1) == (ERROR, MUTUALLY_EXCLUSIVE_VIOLATION)


def test_mutually_exclusive_plans_within_one_group_fail_that_group() -> None:
    # E1 and E3 in the same group: SharePoint Plan 1 and Plan 2 come from the same source
    inp = tenant([user(1)], [group(1, [lic(STANDARDPACK), lic(ENTERPRISEPACK)], [uid(1)])])
    r = compute(inp)
    assert st(r, 1, STANDARDPACK, 1) == (ERROR, MUTUALLY_EXCLUSIVE_VIOLATION)
    assert st(r, 1, ENTERPRISEPACK, 1) == (ERROR, MUTUALLY_EXCLUSIVE_VIOLATION)
    assert held(r, 1) == set()


# ------------------------------------------------------------------ sources, seats, union


def test_direct_and_inherited_same_sku_coexist_as_two_states() -> None:
    # facts 1.3 / 2.7: one state per (SKU, source)
    inp = tenant([user(1, direct=[lic(ENTERPRISEPACK)])], [group(1, [lic(ENTERPRISEPACK, SWAY)], [uid(1)])])
    r = compute(inp)
    states = r.users[uid(1)].states
    assert [(s.sku_id, s.assigned_by_group) for s in states] == [
        (ENTERPRISEPACK, None),
        (ENTERPRISEPACK, gid(1)),
    ]
    assert states[1].disabled_plans == frozenset({SWAY})
    assert all(s.state == ACTIVE and s.error == NO_ERROR for s in states)


def test_one_seat_per_sku_for_direct_plus_group() -> None:
    # facts 2.7: the same SKU from a direct assignment and two groups takes one seat
    inp = tenant(
        [user(1, direct=[lic(ENTERPRISEPACK)])],
        [group(1, [lic(ENTERPRISEPACK)], [uid(1)]), group(2, [lic(ENTERPRISEPACK)], [uid(1)])],
        units={ENTERPRISEPACK: 1},
    )
    r = compute(inp)
    assert r.consumed[ENTERPRISEPACK] == 1
    assert st(r, 1, ENTERPRISEPACK, 1) == (ACTIVE, NO_ERROR)
    assert st(r, 1, ENTERPRISEPACK, 2) == (ACTIVE, NO_ERROR)
    assert [a.sku_id for a in r.users[uid(1)].assigned] == [ENTERPRISEPACK]


def test_enabled_plans_are_union_of_sources() -> None:
    # facts 2.7: effective disabled plans = intersection of the sources' disabled plans
    inp = tenant(
        [user(1)],
        [
            group(1, [lic(ENTERPRISEPACK, SWAY, YAMMER_ENTERPRISE)], [uid(1)]),
            group(2, [lic(ENTERPRISEPACK, SWAY, SHAREPOINTENTERPRISE)], [uid(1)]),
        ],
    )
    r = compute(inp)
    (assigned,) = r.users[uid(1)].assigned
    assert assigned == License(ENTERPRISEPACK, frozenset({SWAY}))
    plans = user_enabled_plans(r.users[uid(1)], inp.skus)
    assert SHAREPOINTENTERPRISE in plans and YAMMER_ENTERPRISE in plans and SWAY not in plans


def test_direct_assignment_is_active_even_over_capacity() -> None:
    # direct assignments were validated when made; Entra does not revoke
    inp = tenant([user(1, direct=[lic(EMS)]), user(2, direct=[lic(EMS)])], units={EMS: 1})
    r = compute(inp)
    assert st(r, 1, EMS, None) == (ACTIVE, NO_ERROR)
    assert st(r, 2, EMS, None) == (ACTIVE, NO_ERROR)
    assert r.consumed[EMS] == 2


def test_nested_group_members_are_not_licensed() -> None:
    # facts 2.3: only direct user members; a member that is a group passes nothing on
    inner = group(2, [], [uid(2)])
    outer = group(1, [lic(EMS)], [uid(1), inner.id])
    r = compute(tenant([user(1), user(2)], [outer, inner]))
    assert st(r, 1, EMS, 1) == (ACTIVE, NO_ERROR)
    assert uid(2) not in r.users
    assert r.consumed[EMS] == 1


def test_non_security_group_grants_nothing() -> None:
    # facts 2.4: only security-enabled groups
    r = compute(tenant([user(1)], [group(1, [lic(EMS)], [uid(1)], security=False)]))
    assert uid(1) not in r.users
    assert r.consumed[EMS] == 0


def test_success_error_is_the_string_none() -> None:
    # facts 1.3: Graph returns "None", not null, on success
    r = compute(tenant([user(1)], [group(1, [lic(EMS)], [uid(1)])]))
    (state,) = r.users[uid(1)].states
    assert state.error == "None"
    assert state.state == "Active"


# ------------------------------------------------------------------ usage location


def test_user_without_location_uses_tenant_location() -> None:
    # facts 2.5: the tenant location is used for group licensing
    group_ = group(1, [lic(ENTERPRISEPACK), lic(MCOEV_SKU)], [uid(1), uid(2)])
    users = [user(1, location=None), user(2, location="US")]
    in_us = compute(tenant(users, [group_], tenant_location="US"))
    assert st(in_us, 1, MCOEV_SKU, 1) == (ACTIVE, NO_ERROR)
    in_bn = compute(tenant(users, [group_], tenant_location="BN"))
    assert st(in_bn, 1, MCOEV_SKU, 1) == (ERROR, PROHIBITED_IN_USAGE_LOCATION_VIOLATION)
    assert st(in_bn, 1, ENTERPRISEPACK, 1) == (ERROR, OTHER)
    # the user's own location wins over the tenant's
    assert st(in_bn, 2, MCOEV_SKU, 1) == (ACTIVE, NO_ERROR)


def test_no_location_at_all_fails_group_licensing() -> None:
    r = compute(tenant([user(1, location=None)], [group(1, [lic(EMS)], [uid(1)])], tenant_location=None))
    assert st(r, 1, EMS, 1) == (ERROR, PROHIBITED_IN_USAGE_LOCATION_VIOLATION)


def test_prohibited_location() -> None:
    # facts 6: Teams Phone (MCOEV) prohibited in Brunei (BN) by the rule table
    group_ = group(1, [lic(ENTERPRISEPACK), lic(MCOEV_SKU)], [uid(1), uid(2)])
    r = compute(tenant([user(1, location="BN"), user(2, location="FR")], [group_]))
    assert st(r, 1, MCOEV_SKU, 1) == (ERROR, PROHIBITED_IN_USAGE_LOCATION_VIOLATION)
    assert st(r, 1, ENTERPRISEPACK, 1) == (ERROR, OTHER)
    assert st(r, 2, MCOEV_SKU, 1) == (ACTIVE, NO_ERROR)


# ------------------------------------------------------------------ all or nothing per group


def test_multi_product_group_all_or_nothing_sibling_gets_other() -> None:
    # facts 2.6: one failing product fails the group's other products with "Other"
    inp = tenant(
        [user(1, direct=[lic(STANDARDPACK)])],
        [group(1, [lic(ENTERPRISEPACK), lic(EMS)], [uid(1)])],
    )
    r = compute(inp)
    assert st(r, 1, ENTERPRISEPACK, 1) == (ERROR, MUTUALLY_EXCLUSIVE_VIOLATION)
    assert st(r, 1, EMS, 1) == (ERROR, OTHER)
    assert held(r, 1) == {STANDARDPACK}
    assert r.consumed[EMS] == 0


def test_failing_group_does_not_affect_another_group_of_the_same_sku() -> None:
    inp = tenant(
        [user(1, direct=[lic(STANDARDPACK)])],
        [group(1, [lic(ENTERPRISEPACK), lic(EMS)], [uid(1)]), group(2, [lic(EMS)], [uid(1)])],
    )
    r = compute(inp)
    assert st(r, 1, EMS, 1) == (ERROR, OTHER)
    assert st(r, 1, EMS, 2) == (ACTIVE, NO_ERROR)
    assert held(r, 1) == {STANDARDPACK, EMS}


# ------------------------------------------------------------------ seats


def test_count_violation_when_seats_run_out_deterministic_order() -> None:
    # seats go to new claimants in user-id order, whatever the input order
    members = [uid(3), uid(1), uid(2)]
    users = [user(3), user(2), user(1)]
    r = compute(
        tenant(users, [group(1, [lic(ENTERPRISEPACK), lic(EMS)], members)], units={ENTERPRISEPACK: 2})
    )
    assert st(r, 1, ENTERPRISEPACK, 1) == (ACTIVE, NO_ERROR)
    assert st(r, 2, ENTERPRISEPACK, 1) == (ACTIVE, NO_ERROR)
    assert st(r, 3, ENTERPRISEPACK, 1) == (ERROR, COUNT_VIOLATION)
    assert st(r, 3, EMS, 1) == (ERROR, OTHER)
    assert r.consumed[ENTERPRISEPACK] == 2
    assert r.consumed[EMS] == 2


def test_previous_holders_keep_their_seats_before_new_claimants() -> None:
    # user 9 held E3 before; user 1 (smaller id) is new and gets CountViolation
    inp = tenant(
        [user(1), user(9)],
        [group(1, [lic(ENTERPRISEPACK)], [uid(1), uid(9)])],
        units={ENTERPRISEPACK: 1},
        previous={uid(9): (prev_state(ENTERPRISEPACK, 1),)},
    )
    r = compute(inp)
    assert st(r, 9, ENTERPRISEPACK, 1) == (ACTIVE, NO_ERROR)
    assert st(r, 1, ENTERPRISEPACK, 1) == (ERROR, COUNT_VIOLATION)


def test_existing_holders_keep_seats_when_capacity_is_already_exceeded() -> None:
    # capacity reduced below use: nobody is revoked, nobody new gets one
    previous = {uid(n): (prev_state(EMS, 1),) for n in (1, 2, 3)}
    inp = tenant(
        [user(n) for n in (1, 2, 3, 4)],
        [group(1, [lic(EMS)], [uid(n) for n in (1, 2, 3, 4)])],
        units={EMS: 2},
        previous=previous,
    )
    r = compute(inp)
    for n in (1, 2, 3):
        assert st(r, n, EMS, 1) == (ACTIVE, NO_ERROR)
    assert st(r, 4, EMS, 1) == (ERROR, COUNT_VIOLATION)
    assert r.consumed[EMS] == 3


def test_count_violation_frees_the_sibling_seat_for_the_next_user() -> None:
    # user 1's group needs E3 and EMS; no EMS seat -> E3 "Other", so user 2 gets the only E3 seat
    inp = tenant(
        [user(1), user(2)],
        [group(1, [lic(ENTERPRISEPACK), lic(EMS)], [uid(1)]), group(2, [lic(ENTERPRISEPACK)], [uid(2)])],
        units={ENTERPRISEPACK: 1, EMS: 0},
    )
    r = compute(inp)
    assert st(r, 1, EMS, 1) == (ERROR, COUNT_VIOLATION)
    assert st(r, 1, ENTERPRISEPACK, 1) == (ERROR, OTHER)
    assert st(r, 2, ENTERPRISEPACK, 2) == (ACTIVE, NO_ERROR)
    assert r.consumed[ENTERPRISEPACK] == 1


def test_user_holding_sku_directly_needs_no_seat_for_the_group_copy() -> None:
    inp = tenant(
        [user(1, direct=[lic(EMS)]), user(2)],
        [group(1, [lic(EMS)], [uid(1), uid(2)])],
        units={EMS: 1},
    )
    r = compute(inp)
    assert st(r, 1, EMS, 1) == (ACTIVE, NO_ERROR)
    assert st(r, 2, EMS, 1) == (ERROR, COUNT_VIOLATION)
    assert r.consumed[EMS] == 1


def test_previous_error_state_is_reevaluated_when_seats_are_added() -> None:
    previous = {uid(1): (AssignmentState(EMS, gid(1), frozenset(), ERROR, COUNT_VIOLATION),)}
    users, groups = [user(1)], [group(1, [lic(EMS)], [uid(1)])]
    assert st(compute(tenant(users, groups, units={EMS: 0}, previous=previous)), 1, EMS, 1) == (
        ERROR,
        COUNT_VIOLATION,
    )
    assert st(compute(tenant(users, groups, units={EMS: 1}, previous=previous)), 1, EMS, 1) == (
        ACTIVE,
        NO_ERROR,
    )


# ------------------------------------------------------------------ priority


def test_previously_held_group_has_priority_over_a_new_group() -> None:
    # group 1 (E3, lower id) is new; group 2 (E1) was held before: group 2 keeps its license
    groups = [group(1, [lic(ENTERPRISEPACK)], [uid(1)]), group(2, [lic(STANDARDPACK)], [uid(1)])]
    fresh = compute(tenant([user(1)], groups))
    assert st(fresh, 1, ENTERPRISEPACK, 1) == (ACTIVE, NO_ERROR)
    assert st(fresh, 1, STANDARDPACK, 2) == (ERROR, MUTUALLY_EXCLUSIVE_VIOLATION)
    later = compute(tenant([user(1)], groups, previous={uid(1): (prev_state(STANDARDPACK, 2),)}))
    assert st(later, 1, STANDARDPACK, 2) == (ACTIVE, NO_ERROR)
    assert st(later, 1, ENTERPRISEPACK, 1) == (ERROR, MUTUALLY_EXCLUSIVE_VIOLATION)


# ------------------------------------------------------------------ dependencies


def test_add_on_without_prerequisite_gets_dependency_violation() -> None:
    # facts 5: Audio Conferencing (MCOMEETADV) depends on Skype for Business / Teams (MCOSTANDARD)
    r = compute(tenant([user(1)], [group(1, [lic(MCOMEETADV_SKU), lic(EMS)], [uid(1)])]))
    assert st(r, 1, MCOMEETADV_SKU, 1) == (ERROR, DEPENDENCY_VIOLATION)
    assert st(r, 1, EMS, 1) == (ERROR, OTHER)


def test_add_on_prerequisite_from_another_source_satisfies_dependency() -> None:
    groups = [group(1, [lic(MCOMEETADV_SKU)], [uid(1)]), group(2, [lic(ENTERPRISEPACK)], [uid(1)])]
    r = compute(tenant([user(1)], groups))
    assert st(r, 1, MCOMEETADV_SKU, 1) == (ACTIVE, NO_ERROR)
    # ... but not when that source disables the prerequisite
    groups = [
        group(1, [lic(MCOMEETADV_SKU)], [uid(1)]),
        group(2, [lic(ENTERPRISEPACK, MCOSTANDARD)], [uid(1)]),
    ]
    r = compute(tenant([user(1)], groups))
    assert st(r, 1, MCOMEETADV_SKU, 1) == (ERROR, DEPENDENCY_VIOLATION)


def test_dependency_violation_on_removal_keeps_license_active_with_error() -> None:
    # facts 2.9: Project (SHAREPOINT_PROJECT) relies on SharePoint Plan 2 from the E3 group; the user
    # leaves the E3 group -> the E3 license stays, ActiveWithError / DependencyViolation
    project = group(2, [lic(PROJECTPROFESSIONAL, SHAREPOINTENTERPRISE)], [uid(1)])
    e3_without_user = group(1, [lic(ENTERPRISEPACK)], [])
    previous = {uid(1): (prev_state(ENTERPRISEPACK, 1, ACTIVE, SWAY), prev_state(PROJECTPROFESSIONAL, 2))}
    inp = tenant([user(1)], [e3_without_user, project], previous=previous, units={ENTERPRISEPACK: 0})
    r = compute(inp)
    ul = r.users[uid(1)]
    kept = [s for s in ul.states if s.sku_id == ENTERPRISEPACK]
    assert kept == [
        AssignmentState(ENTERPRISEPACK, gid(1), frozenset({SWAY}), ACTIVE_WITH_ERROR, DEPENDENCY_VIOLATION)
    ]
    assert st(r, 1, PROJECTPROFESSIONAL, 2) == (ACTIVE, NO_ERROR)
    assert SHAREPOINTENTERPRISE in user_enabled_plans(ul, inp.skus)
    assert held(r, 1) == {ENTERPRISEPACK, PROJECTPROFESSIONAL}
    assert r.consumed[ENTERPRISEPACK] == 1  # the seat stays although there are 0 units


def test_dependency_on_removal_also_when_the_group_drops_the_sku() -> None:
    project = group(2, [lic(PROJECTPROFESSIONAL, SHAREPOINTENTERPRISE)], [uid(1)])
    e3_group_now_ems = group(1, [lic(EMS)], [uid(1)])
    previous = {uid(1): (prev_state(ENTERPRISEPACK, 1), prev_state(PROJECTPROFESSIONAL, 2))}
    r = compute(tenant([user(1)], [e3_group_now_ems, project], previous=previous))
    assert st(r, 1, ENTERPRISEPACK, 1) == (ACTIVE_WITH_ERROR, DEPENDENCY_VIOLATION)
    assert st(r, 1, EMS, 1) == (ACTIVE, NO_ERROR)


def test_removal_without_dependency_simply_removes_the_license() -> None:
    project = group(2, [lic(PROJECTPROFESSIONAL)], [uid(1)])  # brings its own SharePoint Plan 2
    previous = {uid(1): (prev_state(ENTERPRISEPACK, 1), prev_state(PROJECTPROFESSIONAL, 2))}
    r = compute(tenant([user(1)], [group(1, [lic(ENTERPRISEPACK)], []), project], previous=previous))
    assert st(r, 1, ENTERPRISEPACK, 1) is None
    assert held(r, 1) == {PROJECTPROFESSIONAL}
    assert r.consumed[ENTERPRISEPACK] == 0


def test_leaving_group_keeps_direct_license_of_same_sku() -> None:
    # facts 2.9: users who leave keep their directly assigned licenses
    previous = {uid(1): (prev_state(EMS, None), prev_state(EMS, 1))}
    r = compute(tenant([user(1, direct=[lic(EMS)])], [group(1, [lic(EMS)], [])], previous=previous))
    assert [(s.assigned_by_group, s.state) for s in r.users[uid(1)].states] == [(None, ACTIVE)]


# ------------------------------------------------------------------ proxy addresses


def test_duplicate_proxy_address_uniqueness_violation() -> None:
    # facts 2.16: a mailbox-bearing license for two users sharing a proxy address
    shared = "sales@contoso.com"
    users = [user(1, proxies=[shared, "a@contoso.com"]), user(2, proxies=[shared])]
    r = compute(tenant(users, [group(1, [lic(ENTERPRISEPACK), lic(EMS)], [uid(1), uid(2)])]))
    for n in (1, 2):
        assert st(r, n, ENTERPRISEPACK, 1) == (ERROR, UNIQUENESS_VIOLATION)
        assert st(r, n, EMS, 1) == (ERROR, OTHER)


def test_duplicate_proxy_address_previous_mailbox_holder_keeps_it() -> None:
    shared = "sales@contoso.com"
    users = [user(1, proxies=[shared]), user(2, proxies=[shared])]
    previous = {uid(2): (prev_state(ENTERPRISEPACK, 1),)}
    r = compute(tenant(users, [group(1, [lic(ENTERPRISEPACK)], [uid(1), uid(2)])], previous=previous))
    assert st(r, 2, ENTERPRISEPACK, 1) == (ACTIVE, NO_ERROR)
    assert st(r, 1, ENTERPRISEPACK, 1) == (ERROR, UNIQUENESS_VIOLATION)


def test_duplicate_proxy_address_does_not_matter_without_mailbox_plan() -> None:
    shared = "sales@contoso.com"
    users = [user(1, proxies=[shared]), user(2, proxies=[shared])]
    no_exchange = lic(ENTERPRISEPACK, EXCHANGE_S_ENTERPRISE)
    r = compute(tenant(users, [group(1, [no_exchange, lic(EMS)], [uid(1), uid(2)])]))
    assert st(r, 1, ENTERPRISEPACK, 1) == (ACTIVE, NO_ERROR)
    assert st(r, 2, EMS, 1) == (ACTIVE, NO_ERROR)


def test_silent_failure_when_proxy_held_by_group() -> None:
    # SPEC 3 / facts 2.16: the address belongs to a group: no license and no error state at all
    shared = "helpdesk@contoso.com"
    inp = tenant(
        [user(1, proxies=[shared]), user(2)],
        [group(1, [lic(ENTERPRISEPACK)], [uid(1), uid(2)]), group(2, [lic(EMS)], [uid(1)])],
        other_proxy_addresses={shared: gid(77)},
    )
    r = compute(inp)
    assert st(r, 1, ENTERPRISEPACK, 1) is None
    assert ENTERPRISEPACK not in held(r, 1)
    assert r.users[uid(1)].silent_groups == (gid(1),)
    assert st(r, 1, EMS, 2) == (ACTIVE, NO_ERROR)  # a group without a mailbox plan is unaffected
    assert st(r, 2, ENTERPRISEPACK, 1) == (ACTIVE, NO_ERROR)
    assert r.consumed[ENTERPRISEPACK] == 1


def test_mailbox_from_exchange_plan1_direct_counts_as_held_mailbox() -> None:
    shared = "sales@contoso.com"
    users = [user(1, proxies=[shared], direct=[lic(EXCHANGESTANDARD)]), user(2, proxies=[shared])]
    r = compute(tenant(users, [group(1, [lic(EXCHANGEENTERPRISE)], [uid(1), uid(2)])]))
    assert st(r, 1, EXCHANGEENTERPRISE, 1) == (ACTIVE, NO_ERROR)
    assert st(r, 2, EXCHANGEENTERPRISE, 1) == (ERROR, UNIQUENESS_VIOLATION)
    assert EXCHANGE_S_STANDARD in user_enabled_plans(r.users[uid(1)], tenant(users).skus)


# ------------------------------------------------------------------ helpers


def test_enabled_plans_helper_removes_disabled_plans() -> None:
    sku = tenant([]).skus[STANDARDPACK]
    plans = enabled_plans(sku, lic(STANDARDPACK, SHAREPOINTSTANDARD))
    assert SHAREPOINTSTANDARD not in plans
    assert plans == frozenset(sku.plan_ids) - {SHAREPOINTSTANDARD}


def test_user_losing_a_held_seat_releases_it_for_the_next_user() -> None:
    # user 1 held E3 from group 1; the group now also carries EMS, for which there is no seat:
    # CountViolation on EMS, "Other" on E3, so user 1's E3 seat goes to user 2 (next in id order)
    inp = tenant(
        [user(1), user(2)],
        [group(1, [lic(ENTERPRISEPACK), lic(EMS)], [uid(1)]), group(2, [lic(ENTERPRISEPACK)], [uid(2)])],
        units={ENTERPRISEPACK: 1, EMS: 0},
        previous={uid(1): (prev_state(ENTERPRISEPACK, 1),)},
    )
    r = compute(inp)
    assert st(r, 1, EMS, 1) == (ERROR, COUNT_VIOLATION)
    assert st(r, 1, ENTERPRISEPACK, 1) == (ERROR, OTHER)
    assert st(r, 2, ENTERPRISEPACK, 2) == (ACTIVE, NO_ERROR)
    assert r.consumed[ENTERPRISEPACK] == 1


def test_group_sku_without_subscription_gives_count_violation_to_new_members() -> None:
    # a SKU the tenant no longer subscribes to has no seat to give; a previous holder keeps it
    gone = "11111111-2222-4333-8444-555555555555"
    inp = tenant(
        [user(1), user(2)],
        [group(1, [lic(gone)], [uid(1), uid(2)])],
        previous={uid(2): (prev_state(gone, 1),)},
    )
    r = compute(inp)
    assert st(r, 1, gone, 1) == (ERROR, COUNT_VIOLATION)
    assert st(r, 2, gone, 1) == (ACTIVE, NO_ERROR)
    assert r.consumed[gone] == 1


def test_seat_already_held_is_counted_when_a_count_violation_changes_the_outcome() -> None:
    # user 1 had E1 directly (now removed) and is in group 1 (E3 + EMS) and group 2 (E1). Without
    # seat limits group 1 wins and E1 conflicts; with no EMS seat group 1 fails, so group 2's E1 is
    # assigned on the seat user 1 already had: user 2 must not get that seat as well
    inp = tenant(
        [user(1), user(2)],
        [
            group(1, [lic(ENTERPRISEPACK), lic(EMS)], [uid(1)]),
            group(2, [lic(STANDARDPACK)], [uid(1), uid(2)]),
        ],
        units={STANDARDPACK: 1, EMS: 0},
        previous={uid(1): (prev_state(STANDARDPACK, None),)},
    )
    r = compute(inp)
    assert st(r, 1, EMS, 1) == (ERROR, COUNT_VIOLATION)
    assert st(r, 1, STANDARDPACK, 2) == (ACTIVE, NO_ERROR)
    assert st(r, 2, STANDARDPACK, 2) == (ERROR, COUNT_VIOLATION)
    assert r.consumed[STANDARDPACK] == 1


def test_seat_of_a_user_who_left_goes_to_a_new_member_in_the_same_run() -> None:
    inp = tenant(
        [user(1), user(2)],
        [group(1, [lic(EMS)], [uid(2)])],
        units={EMS: 1},
        previous={uid(1): (prev_state(EMS, 1),)},
    )
    r = compute(inp)
    assert uid(1) not in r.users
    assert st(r, 2, EMS, 1) == (ACTIVE, NO_ERROR)
    assert r.consumed[EMS] == 1


def test_dependency_on_removal_when_the_group_is_no_longer_security_enabled() -> None:
    project = group(2, [lic(PROJECTPROFESSIONAL, SHAREPOINTENTERPRISE)], [uid(1)])
    e3_now_distribution_list = group(1, [lic(ENTERPRISEPACK)], [uid(1)], security=False)
    previous = {uid(1): (prev_state(ENTERPRISEPACK, 1), prev_state(PROJECTPROFESSIONAL, 2))}
    r = compute(tenant([user(1)], [e3_now_distribution_list, project], previous=previous))
    assert st(r, 1, ENTERPRISEPACK, 1) == (ACTIVE_WITH_ERROR, DEPENDENCY_VIOLATION)
    assert st(r, 1, PROJECTPROFESSIONAL, 2) == (ACTIVE, NO_ERROR)


def test_states_are_sorted_by_sku_then_direct_then_group_id() -> None:
    inp = tenant(
        [user(1, direct=[lic(EMS), lic(ENTERPRISEPACK)])],
        [group(2, [lic(EMS), lic(ENTERPRISEPACK)], [uid(1)]), group(1, [lic(EMS)], [uid(1)])],
    )
    states = compute(inp).users[uid(1)].states
    assert [(s.sku_id, s.assigned_by_group) for s in states] == [
        (ENTERPRISEPACK, None),
        (ENTERPRISEPACK, gid(2)),
        (EMS, None),
        (EMS, gid(1)),
        (EMS, gid(2)),
    ]


# ------------------------------------------------------------------ a group disabling a plan in place (facts 2.9)
# E3 group 1 held by user 1 (direct Project Online with SharePoint Plan 2 switched off: its
# SHAREPOINT_PROJECT relies on E3's SHAREPOINTENTERPRISE, like the sample tenant's project1) and
# by user 2 (nothing else). The group then switches SHAREPOINTENTERPRISE off in its E3.

PROJECT_WITHOUT_SP2 = lic(PROJECTPROFESSIONAL, SHAREPOINTENTERPRISE)


def e3_in_place(before: tuple[str, ...], after: tuple[str, ...], *, units: int = 100) -> LicensingInput:
    previous = {
        uid(1): (prev_state(PROJECTPROFESSIONAL, None), prev_state(ENTERPRISEPACK, 1, ACTIVE, *before)),
        uid(2): (prev_state(ENTERPRISEPACK, 1, ACTIVE, *before),),
    }
    return tenant(
        [user(1, direct=[PROJECT_WITHOUT_SP2]), user(2)],
        [group(1, [lic(ENTERPRISEPACK, *after)], [uid(1), uid(2)])],
        previous=previous,
        units={ENTERPRISEPACK: units},
    )


def state_of(result: LicensingResult, user_n: int, sku_id: str, group_n: int | None) -> AssignmentState:
    source = gid(group_n) if group_n is not None else None
    (found,) = [
        s for s in result.users[uid(user_n)].states if s.sku_id == sku_id and s.assigned_by_group == source
    ]
    return found


def assigned_of(result: LicensingResult, user_n: int, sku_id: str) -> License:
    (found,) = [a for a in result.users[uid(user_n)].assigned if a.sku_id == sku_id]
    return found


def test_group_disabling_a_prerequisite_plan_in_place_keeps_the_old_assignment_active_with_error() -> None:
    # 0 units: both users already hold their E3 seat, which stays held
    inp = e3_in_place((SWAY,), (SWAY, SHAREPOINTENTERPRISE), units=0)
    r = compute(inp)
    assert state_of(r, 1, ENTERPRISEPACK, 1) == AssignmentState(
        ENTERPRISEPACK, gid(1), frozenset({SWAY}), ACTIVE_WITH_ERROR, DEPENDENCY_VIOLATION
    )
    assert assigned_of(r, 1, ENTERPRISEPACK) == License(ENTERPRISEPACK, frozenset({SWAY}))
    assert SHAREPOINTENTERPRISE in user_enabled_plans(r.users[uid(1)], inp.skus)
    assert st(r, 1, PROJECTPROFESSIONAL, None) == (ACTIVE, NO_ERROR)
    # the other member does not need SharePoint Plan 2: the group's new disabled plans apply
    assert state_of(r, 2, ENTERPRISEPACK, 1) == AssignmentState(
        ENTERPRISEPACK, gid(1), frozenset({SWAY, SHAREPOINTENTERPRISE}), ACTIVE, NO_ERROR
    )
    assert r.consumed[ENTERPRISEPACK] == 2
    # reprocessing the result changes nothing: the error stays until the dependency is resolved
    again = compute(with_states(inp, r))
    assert dict(again.users) == dict(r.users)


def test_group_disabling_a_prerequisite_in_a_multi_product_group_keeps_only_that_product_old() -> None:
    # the group also switches a plan off in EMS: that change applies to user 1 as well
    previous = {
        uid(1): (
            prev_state(PROJECTPROFESSIONAL, None),
            prev_state(ENTERPRISEPACK, 1),
            prev_state(EMS, 1),
        )
    }
    groups = [group(1, [lic(ENTERPRISEPACK, SHAREPOINTENTERPRISE), lic(EMS, INTUNE_A)], [uid(1)])]
    r = compute(tenant([user(1, direct=[PROJECT_WITHOUT_SP2])], groups, previous=previous))
    assert state_of(r, 1, ENTERPRISEPACK, 1) == AssignmentState(
        ENTERPRISEPACK, gid(1), frozenset(), ACTIVE_WITH_ERROR, DEPENDENCY_VIOLATION
    )
    assert state_of(r, 1, EMS, 1) == AssignmentState(EMS, gid(1), frozenset({INTUNE_A}), ACTIVE, NO_ERROR)


def test_group_disabling_a_plan_nobody_depends_on_applies_to_everyone() -> None:
    r = compute(e3_in_place((SWAY,), (SWAY, YAMMER_ENTERPRISE)))
    for n in (1, 2):
        assert state_of(r, n, ENTERPRISEPACK, 1) == AssignmentState(
            ENTERPRISEPACK, gid(1), frozenset({SWAY, YAMMER_ENTERPRISE}), ACTIVE, NO_ERROR
        )
    # and switching a plan back on applies too
    r = compute(e3_in_place((SWAY, YAMMER_ENTERPRISE), (SWAY,)))
    for n in (1, 2):
        assert st(r, n, ENTERPRISEPACK, 1) == (ACTIVE, NO_ERROR)
        assert assigned_of(r, n, ENTERPRISEPACK) == License(ENTERPRISEPACK, frozenset({SWAY}))


def test_group_disabling_a_prerequisite_that_another_group_still_provides_gives_no_error() -> None:
    previous = {
        uid(1): (
            prev_state(PROJECTPROFESSIONAL, None),
            prev_state(ENTERPRISEPACK, 1),
            prev_state(ENTERPRISEPACK, 2, ACTIVE, SWAY),
        )
    }
    groups = [
        group(1, [lic(ENTERPRISEPACK, SHAREPOINTENTERPRISE)], [uid(1)]),
        group(2, [lic(ENTERPRISEPACK, SWAY)], [uid(1)]),  # SharePoint Plan 2 still on here
    ]
    r = compute(tenant([user(1, direct=[PROJECT_WITHOUT_SP2])], groups, previous=previous))
    assert state_of(r, 1, ENTERPRISEPACK, 1) == AssignmentState(
        ENTERPRISEPACK, gid(1), frozenset({SHAREPOINTENTERPRISE}), ACTIVE, NO_ERROR
    )
    assert st(r, 1, ENTERPRISEPACK, 2) == (ACTIVE, NO_ERROR)
    assert assigned_of(r, 1, ENTERPRISEPACK) == License(ENTERPRISEPACK, frozenset())
    # ... and when that other group switches it off too, in the same run, one of the two stays
    groups[1] = group(2, [lic(ENTERPRISEPACK, SWAY, SHAREPOINTENTERPRISE)], [uid(1)])
    r = compute(tenant([user(1, direct=[PROJECT_WITHOUT_SP2])], groups, previous=previous))
    assert st(r, 1, ENTERPRISEPACK, 1) == (ACTIVE_WITH_ERROR, DEPENDENCY_VIOLATION)
    assert state_of(r, 1, ENTERPRISEPACK, 2) == AssignmentState(
        ENTERPRISEPACK, gid(2), frozenset({SWAY, SHAREPOINTENTERPRISE}), ACTIVE, NO_ERROR
    )
    assert SHAREPOINTENTERPRISE in user_enabled_plans(r.users[uid(1)], tenant([]).skus)


def test_group_disabling_a_prerequisite_of_another_groups_plan_keeps_the_old_assignment() -> None:
    # Audio Conferencing (group 2) requires MCOSTANDARD, which only the E3 of group 1 gives
    previous = {uid(1): (prev_state(ENTERPRISEPACK, 1), prev_state(MCOMEETADV_SKU, 2))}
    groups = [
        group(1, [lic(ENTERPRISEPACK, MCOSTANDARD)], [uid(1)]),
        group(2, [lic(MCOMEETADV_SKU)], [uid(1)]),
    ]
    r = compute(tenant([user(1)], groups, previous=previous))
    assert state_of(r, 1, ENTERPRISEPACK, 1) == AssignmentState(
        ENTERPRISEPACK, gid(1), frozenset(), ACTIVE_WITH_ERROR, DEPENDENCY_VIOLATION
    )
    assert st(r, 1, MCOMEETADV_SKU, 2) == (ACTIVE, NO_ERROR)


def test_group_update_that_also_enables_a_plan_is_refused_whole_for_the_dependent_user() -> None:
    # Sway on, SharePoint Plan 2 off: user 1 keeps the previous plans (Sway still off)
    inp = e3_in_place((SWAY,), (SHAREPOINTENTERPRISE,))
    r = compute(inp)
    assert state_of(r, 1, ENTERPRISEPACK, 1) == AssignmentState(
        ENTERPRISEPACK, gid(1), frozenset({SWAY}), ACTIVE_WITH_ERROR, DEPENDENCY_VIOLATION
    )
    assert SWAY not in user_enabled_plans(r.users[uid(1)], inp.skus)
    assert assigned_of(r, 2, ENTERPRISEPACK) == License(ENTERPRISEPACK, frozenset({SHAREPOINTENTERPRISE}))


def test_removing_the_dependent_direct_license_later_applies_the_groups_new_disabled_plans() -> None:
    inp = e3_in_place((SWAY,), (SWAY, SHAREPOINTENTERPRISE))
    first = compute(inp)
    assert st(first, 1, ENTERPRISEPACK, 1) == (ACTIVE_WITH_ERROR, DEPENDENCY_VIOLATION)
    # the administrator removes the direct Project license; the next run clears the error
    later = LicensingInput(
        tenant_location=inp.tenant_location,
        skus=inp.skus,
        users={**inp.users, uid(1): user(1)},
        groups=inp.groups,
        rules=inp.rules,
        previous={
            u: tuple(s for s in ul.states if s.assigned_by_group is not None) for u, ul in first.users.items()
        },
    )
    r = compute(later)
    assert r.users[uid(1)].states == (
        AssignmentState(ENTERPRISEPACK, gid(1), frozenset({SWAY, SHAREPOINTENTERPRISE}), ACTIVE, NO_ERROR),
    )
    assert r.users[uid(1)].assigned == (License(ENTERPRISEPACK, frozenset({SWAY, SHAREPOINTENTERPRISE})),)
    assert r.consumed[ENTERPRISEPACK] == 2
    assert r.consumed[PROJECTPROFESSIONAL] == 0


def test_group_disabling_a_prerequisite_the_users_direct_copy_provides_gives_no_error() -> None:
    previous = {uid(1): (prev_state(ENTERPRISEPACK, None), prev_state(ENTERPRISEPACK, 1))}
    groups = [
        group(1, [lic(ENTERPRISEPACK, MCOSTANDARD)], [uid(1)]),
        group(2, [lic(MCOMEETADV_SKU)], [uid(1)]),
    ]
    r = compute(tenant([user(1, direct=[lic(ENTERPRISEPACK)])], groups, previous=previous))
    assert st(r, 1, ENTERPRISEPACK, 1) == (ACTIVE, NO_ERROR)
    assert st(r, 1, MCOMEETADV_SKU, 2) == (ACTIVE, NO_ERROR)


def with_states(inp: LicensingInput, result: LicensingResult) -> LicensingInput:
    """`inp` with `result`'s states as the previous ones (the next processing)."""
    return LicensingInput(
        tenant_location=inp.tenant_location,
        skus=inp.skus,
        users=inp.users,
        groups=inp.groups,
        rules=inp.rules,
        other_proxy_addresses=inp.other_proxy_addresses,
        previous={u: ul.states for u, ul in result.users.items()},
    )
