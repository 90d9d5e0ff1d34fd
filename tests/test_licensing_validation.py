"""Synchronous validations of direct and group assignLicense (facts 1.2, 1.8, 2.8, 2.11)."""

from __future__ import annotations

from test_licensing_fixtures import (
    EMS,
    ENTERPRISEPACK,
    EXCHANGE_S_ENTERPRISE,
    EXCHANGE_S_STANDARD,
    MCOMEETADV,
    MCOMEETADV_SKU,
    MCOSTANDARD,
    SHAREPOINTENTERPRISE,
    SHAREPOINTSTANDARD,
    STANDARDPACK,
    SWAY,
    WORKPLACE_ANALYTICS,
    WORKPLACE_ANALYTICS_SKU,
    gid,
    group,
    lic,
    rules,
    skus,
    tenant,
    uid,
    user,
)

from reconciler.licensing import (
    ACTIVE,
    ERROR,
    MUTUALLY_EXCLUSIVE_VIOLATION,
    NO_ERROR,
    AssignmentState,
    LicensingInput,
    LicensingUser,
    check_direct_assignment,
    check_group_assignment,
    compute,
    consumed_units,
)

UNKNOWN_SKU = "11111111-2222-4333-8444-555555555555"


def inherited(sku_id: str, group_n: int, *disabled: str) -> AssignmentState:
    return AssignmentState(sku_id, gid(group_n), frozenset(disabled), ACTIVE, NO_ERROR)


def test_direct_assignment_without_location_fails_with_graph_message() -> None:
    # facts 1.8 / 2.5: the tenant location does NOT apply to direct assignment
    inp = tenant([user(1, location=None)], tenant_location="US")
    assert (
        check_direct_assignment(inp, uid(1), [lic(EMS)], [])
        == "License assignment cannot be done for user with invalid usage location."
    )
    with_location = tenant([user(1, location="FR")], tenant_location="US")
    assert check_direct_assignment(with_location, uid(1), [lic(EMS)], []) is None


def test_direct_removal_without_location_is_allowed() -> None:
    inp = tenant([user(1, location=None, direct=[lic(EMS)])])
    assert check_direct_assignment(inp, uid(1), [], [EMS]) is None


def test_direct_assignment_of_unknown_sku_fails_with_graph_message() -> None:
    inp = tenant([user(1)])
    assert (
        check_direct_assignment(inp, uid(1), [lic(UNKNOWN_SKU)], [])
        == f"License {UNKNOWN_SKU} does not correspond to a valid company License."
    )
    assert (
        check_direct_assignment(inp, uid(1), [], [UNKNOWN_SKU])
        == f"License {UNKNOWN_SKU} does not correspond to a valid company License."
    )


def test_direct_assignment_without_free_seat_fails_with_graph_message() -> None:
    inp = tenant([user(1), user(2, direct=[lic(EMS)])], units={EMS: 1})
    assert (
        check_direct_assignment(inp, uid(1), [lic(EMS)], [])
        == f"Subscription with SKU {EMS} does not have any available licenses."
    )
    # the explicit seat count given by the caller is used when present
    assert check_direct_assignment(inp, uid(1), [lic(EMS)], [], consumed={EMS: 0}) is None


def test_direct_update_of_disabled_plans_needs_no_new_seat() -> None:
    inp = tenant([user(1, direct=[lic(ENTERPRISEPACK)])], units={ENTERPRISEPACK: 1})
    assert check_direct_assignment(inp, uid(1), [lic(ENTERPRISEPACK, SWAY)], []) is None


def test_direct_copy_of_an_inherited_sku_needs_no_new_seat() -> None:
    # one seat per SKU per user: adding a direct copy of an inherited SKU takes no seat
    inp = tenant([user(1)], units={EMS: 1}, previous={uid(1): (inherited(EMS, 1),)})
    assert consumed_units(inp)[EMS] == 1
    assert check_direct_assignment(inp, uid(1), [lic(EMS)], []) is None


def test_direct_assignment_mutually_exclusive_with_inherited_plan() -> None:
    # the seed article the other way round: E3 inherited, E1 added directly
    inp = tenant([user(1)], previous={uid(1): (inherited(ENTERPRISEPACK, 1),)})
    assert check_direct_assignment(inp, uid(1), [lic(STANDARDPACK)], []) == (
        "License assignment failed because service plans "
        f"{SHAREPOINTSTANDARD},{SHAREPOINTENTERPRISE} are mutually exclusive."
    )
    assert check_direct_assignment(inp, uid(1), [lic(STANDARDPACK, SHAREPOINTSTANDARD)], []) is None


def test_direct_swap_is_validated_atomically_on_the_post_state() -> None:
    # facts 1.2: removing E1 and adding E3 in one call is fine; adding E3 alone conflicts
    inp = tenant([user(1, direct=[lic(STANDARDPACK)])])
    assert check_direct_assignment(inp, uid(1), [lic(ENTERPRISEPACK)], [STANDARDPACK]) is None
    assert check_direct_assignment(inp, uid(1), [lic(ENTERPRISEPACK)], []) is not None


def test_exchange_plan1_plan2_direct_allowed_unless_rule_enabled() -> None:
    base = tenant([user(1, direct=[lic(STANDARDPACK, SHAREPOINTSTANDARD)])])
    assert check_direct_assignment(base, uid(1), [lic(ENTERPRISEPACK)], []) is None
    strict = tenant(
        [user(1, direct=[lic(STANDARDPACK, SHAREPOINTSTANDARD)])], rule_table=rules(exchange_exclusive=True)
    )
    assert check_direct_assignment(strict, uid(1), [lic(ENTERPRISEPACK)], []) == (
        "License assignment failed because service plans "
        f"{EXCHANGE_S_ENTERPRISE},{EXCHANGE_S_STANDARD} are mutually exclusive."
    )


def test_direct_assignment_missing_dependency_fails_with_graph_message() -> None:
    inp = tenant([user(1)])
    assert check_direct_assignment(inp, uid(1), [lic(MCOMEETADV_SKU)], []) == (
        f"License assignment failed because service plan {MCOMEETADV} depends on the service plan(s) {MCOSTANDARD}"
    )
    assert check_direct_assignment(inp, uid(1), [lic(MCOMEETADV_SKU), lic(ENTERPRISEPACK)], []) is None


def test_direct_dependency_message_lists_every_alternative() -> None:
    inp = tenant([user(1)])
    message = check_direct_assignment(inp, uid(1), [lic(WORKPLACE_ANALYTICS_SKU)], [])
    alternatives = ", ".join(sorted([EXCHANGE_S_STANDARD, EXCHANGE_S_ENTERPRISE]))
    assert message == (
        f"License assignment failed because service plan {WORKPLACE_ANALYTICS} "
        f"depends on the service plan(s) {alternatives}"
    )


def test_direct_removal_that_breaks_a_dependency_fails() -> None:
    # facts 1.8: "dependency missing or being removed"
    inp = tenant([user(1, direct=[lic(ENTERPRISEPACK), lic(MCOMEETADV_SKU)])])
    assert check_direct_assignment(inp, uid(1), [], [ENTERPRISEPACK]) == (
        f"License assignment failed because service plan {MCOMEETADV} depends on the service plan(s) {MCOSTANDARD}"
    )
    assert check_direct_assignment(inp, uid(1), [], [ENTERPRISEPACK, MCOMEETADV_SKU]) is None
    # disabling the prerequisite is a removal too
    assert check_direct_assignment(inp, uid(1), [lic(ENTERPRISEPACK, MCOSTANDARD)], []) is not None


def test_direct_removal_of_prerequisite_is_fine_when_a_group_provides_it() -> None:
    inp = tenant(
        [user(1, direct=[lic(ENTERPRISEPACK), lic(MCOMEETADV_SKU)])],
        previous={uid(1): (inherited(ENTERPRISEPACK, 1),)},
    )
    assert check_direct_assignment(inp, uid(1), [], [ENTERPRISEPACK]) is None


def test_cannot_remove_inherited_license_directly() -> None:
    # facts 2.8
    inp = tenant([user(1)], previous={uid(1): (inherited(EMS, 1),)})
    assert (
        check_direct_assignment(inp, uid(1), [], [EMS])
        == "User license is inherited from a group membership and it cannot be removed directly from the user."
    )


def test_cannot_remove_inherited_license_directly_even_when_it_is_in_error() -> None:
    state = AssignmentState(EMS, gid(1), frozenset(), ERROR, "CountViolation")
    inp = tenant([user(1)], previous={uid(1): (state,)})
    assert check_direct_assignment(inp, uid(1), [], [EMS]) is not None


def test_direct_copy_can_be_removed_while_inherited_copy_stays() -> None:
    # facts 2.8: direct licenses can be removed without affecting inherited ones
    inp = tenant([user(1, direct=[lic(EMS)])], previous={uid(1): (inherited(EMS, 1),)})
    assert check_direct_assignment(inp, uid(1), [], [EMS]) is None


def test_check_agrees_with_compute_for_the_seed_article_conflict() -> None:
    # the states compute() produces feed the validation: E3 from a group blocks a direct E1
    groups = [group(1, [lic(ENTERPRISEPACK)], [uid(1)])]
    first = tenant([user(1)], groups)
    result = compute(first)
    after = LicensingInput(
        tenant_location=first.tenant_location,
        skus=first.skus,
        users=first.users,
        groups=first.groups,
        rules=first.rules,
        previous={u: ul.states for u, ul in result.users.items()},
    )
    assert check_direct_assignment(after, uid(1), [lic(STANDARDPACK)], []) is not None
    # and the state compute() gives when that E1 is forced in directly anyway (old data)
    forced = LicensingInput(
        tenant_location="US",
        skus=first.skus,
        users={uid(1): LicensingUser(uid(1), "US", frozenset(), (lic(STANDARDPACK),))},
        groups=first.groups,
        rules=first.rules,
        previous=after.previous,
    )
    (e3_state,) = [s for s in compute(forced).users[uid(1)].states if s.sku_id == ENTERPRISEPACK]
    assert (e3_state.state, e3_state.error) == (ERROR, MUTUALLY_EXCLUSIVE_VIOLATION)


# ------------------------------------------------------------------ group assignLicense


def test_group_add_on_without_prerequisite_in_same_group_is_rejected() -> None:
    # facts 2.11: Workplace Analytics requires Exchange Online Plan 1 or Plan 2 in the same group
    message = check_group_assignment(rules(), skus(), [lic(WORKPLACE_ANALYTICS_SKU)])
    alternatives = " or ".join(sorted([EXCHANGE_S_STANDARD, EXCHANGE_S_ENTERPRISE]))
    assert message == (
        "License operation failed. Make sure that the group has necessary services before adding or "
        f"removing a dependent service. The service {WORKPLACE_ANALYTICS} requires {alternatives} "
        "to be enabled as well."
    )
    assert (
        check_group_assignment(rules(), skus(), [lic(WORKPLACE_ANALYTICS_SKU), lic(ENTERPRISEPACK)]) is None
    )


def test_group_add_on_with_prerequisite_disabled_in_the_group_is_rejected() -> None:
    group_licenses = [lic(WORKPLACE_ANALYTICS_SKU), lic(ENTERPRISEPACK, EXCHANGE_S_ENTERPRISE)]
    assert check_group_assignment(rules(), skus(), group_licenses) is not None


def test_group_assignment_of_unknown_sku_is_rejected() -> None:
    assert (
        check_group_assignment(rules(), skus(), [lic(UNKNOWN_SKU)])
        == f"License {UNKNOWN_SKU} does not correspond to a valid company License."
    )


def test_group_assignment_of_ordinary_products_is_accepted() -> None:
    assert check_group_assignment(rules(), skus(), [lic(ENTERPRISEPACK, SWAY), lic(EMS)]) is None
    assert check_group_assignment(rules(), skus(), []) is None
