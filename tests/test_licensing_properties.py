"""Invariants of compute() on many random small tenants built from the real-id fixtures."""

from __future__ import annotations

import random

import pytest
from test_licensing_fixtures import SKU_PLANS, gid, group, lic, rules, tenant, uid, user

from reconciler.licensing import (
    ACTIVE,
    ACTIVE_WITH_ERROR,
    DEPENDENCY_VIOLATION,
    ERROR,
    HELD_STATES,
    NO_ERROR,
    OTHER,
    LicensingInput,
    LicensingResult,
    compute,
    enabled_plans,
    exclusive_partners,
)

SKU_IDS = sorted(SKU_PLANS)


def random_tenant(seed: int, with_previous: bool, in_place: bool = False) -> LicensingInput:
    """A random small tenant; with a previous run, then membership changes (and, `in_place`, groups
    switching plans on or off in their SKUs)."""
    rng = random.Random(seed)
    n_users = rng.randint(1, 12)
    shared = "shared@contoso.com"
    users = []
    for n in range(n_users):
        direct = [lic(s) for s in rng.sample(SKU_IDS, rng.choice([0, 0, 0, 1]))]
        proxies = [f"user{n}@contoso.com"] + ([shared] if rng.random() < 0.15 else [])
        location = rng.choice(["US", "FR", "BN", None])
        users.append(user(n, location=location, direct=direct, proxies=proxies))
    groups = []
    for k in range(rng.randint(1, 5)):
        licenses = []
        for s in rng.sample(SKU_IDS, rng.randint(1, 3)):
            plans = SKU_PLANS[s]
            licenses.append(lic(s, *rng.sample(plans, rng.randint(0, len(plans) - 1))))
        members = [uid(n) for n in range(n_users) if rng.random() < 0.5]
        if k and rng.random() < 0.3:
            members.append(gid(k - 1))
        groups.append(group(k, licenses, members, security=rng.random() < 0.9))
    units = {s: rng.randint(0, n_users) for s in SKU_IDS}
    other = {shared: gid(99)} if rng.random() < 0.3 else {}
    table = rules(exchange_exclusive=rng.random() < 0.5)
    inp = tenant(
        users,
        groups,
        units=units,
        rule_table=table,
        tenant_location=rng.choice(["US", "BN", None]),
        other_proxy_addresses=other,
    )
    if not with_previous:
        return inp
    # a previous run, then membership changes
    first = compute(inp)
    changed_groups = []
    for g in groups:
        members = [m for m in g.member_ids if rng.random() < 0.7]
        members += [uid(n) for n in range(n_users) if rng.random() < 0.2]
        licenses = list(g.licenses)
        if in_place:
            for i, old in enumerate(licenses):
                if rng.random() < 0.5:
                    plans = SKU_PLANS[old.sku_id]
                    licenses[i] = lic(old.sku_id, *rng.sample(plans, rng.randint(0, len(plans) - 1)))
        changed_groups.append(group(int(g.id[-12:]), licenses, members, security=g.security_enabled))
    return tenant(
        users,
        changed_groups,
        units=units,
        rule_table=table,
        tenant_location=inp.tenant_location,
        other_proxy_addresses=other,
        previous={u: ul.states for u, ul in first.users.items()},
    )


def reversed_input(inp: LicensingInput) -> LicensingInput:
    return LicensingInput(
        tenant_location=inp.tenant_location,
        skus=dict(reversed(list(inp.skus.items()))),
        users=dict(reversed(list(inp.users.items()))),
        groups=dict(reversed(list(inp.groups.items()))),
        rules=inp.rules,
        other_proxy_addresses=inp.other_proxy_addresses,
        previous=dict(reversed(list(inp.previous.items()))),
    )


def check_invariants(inp: LicensingInput, r: LicensingResult) -> None:
    partners = exclusive_partners(inp.rules)
    holders = dict.fromkeys(inp.skus, 0)
    for u, ul in r.users.items():
        assert u in inp.users
        for s in ul.states:
            assert (s.error == NO_ERROR) == (s.state == ACTIVE)
            assert s.state in (ACTIVE, ACTIVE_WITH_ERROR, ERROR)
        held_skus = sorted({s.sku_id for s in ul.states if s.state in HELD_STATES})
        assert [a.sku_id for a in ul.assigned] == held_skus
        for a in ul.assigned:
            holders[a.sku_id] += 1
            sources = [s for s in ul.states if s.sku_id == a.sku_id and s.state in HELD_STATES]
            expected = frozenset.intersection(*(s.disabled_plans for s in sources))
            assert a.disabled_plans == expected
        # all or nothing per group; a failing group names at least one real cause
        by_group: dict[str, list[tuple[str, str]]] = {}
        for s in ul.states:
            if s.assigned_by_group is not None and s.state != ACTIVE_WITH_ERROR:
                by_group.setdefault(s.assigned_by_group, []).append((s.state, s.error))
        for outcomes in by_group.values():
            assert len({state for state, _ in outcomes}) == 1
            if outcomes[0][0] == ERROR:
                assert any(error != OTHER for _, error in outcomes)
        # Active group sources: no exclusive pair with any held source, every dependency met
        union: set[str] = set()
        for a in ul.assigned:
            union |= enabled_plans(inp.skus[a.sku_id], a)
        for s in ul.states:
            if s.assigned_by_group is None or s.state != ACTIVE:
                continue
            plans = enabled_plans(inp.skus[s.sku_id], lic(s.sku_id, *s.disabled_plans))
            for p in plans:
                assert not (partners.get(p, frozenset()) & union), (u, s)
                req = inp.rules.requires.get(p)
                assert not req or req & union, (u, s)
        # a source kept in error (a removal or an in-place change refused, facts 2.9) is needed:
        # without it a plan the user has would lose its only prerequisite
        for s in ul.states:
            if s.state != ACTIVE_WITH_ERROR:
                continue
            assert s.error == DEPENDENCY_VIOLATION
            assert s.assigned_by_group is not None
            g = inp.groups.get(s.assigned_by_group)
            now = None
            if g is not None and g.security_enabled and u in g.member_ids:
                now = next((x for x in g.licenses if x.sku_id == s.sku_id), None)
            assert now is None or now.disabled_plans != s.disabled_plans, (u, s)
            mine = enabled_plans(inp.skus[s.sku_id], lic(s.sku_id, *s.disabled_plans))
            without: set[str] = set()
            for o in ul.states:
                if o.state in HELD_STATES and o != s:
                    without |= enabled_plans(inp.skus[o.sku_id], lic(o.sku_id, *o.disabled_plans))
            if now is not None:
                without |= enabled_plans(inp.skus[s.sku_id], now)
            lost = mine - without
            needed = [
                p for p in union if (req := inp.rules.requires.get(p)) and req & lost and not req & without
            ]
            assert needed, (u, s)
    assert holders == dict(r.consumed)
    # a new seat is never given beyond capacity
    for sku_id, sku in inp.skus.items():
        had = 0
        for u, ul in r.users.items():
            before = {lic_.sku_id for lic_ in inp.users[u].direct} | {
                s.sku_id for s in inp.previous.get(u, ()) if s.state in HELD_STATES
            }
            if sku_id in before and any(a.sku_id == sku_id for a in ul.assigned):
                had += 1
        assert r.consumed[sku_id] <= max(sku.enabled_units, had)


@pytest.mark.parametrize(("with_previous", "in_place"), [(False, False), (True, False), (True, True)])
def test_random_tenants_keep_the_documented_invariants_and_ignore_input_order(
    with_previous: bool, in_place: bool
) -> None:
    in_place_refused = 0
    for seed in range(150):
        inp = random_tenant(seed, with_previous, in_place)
        r = compute(inp)
        check_invariants(inp, r)
        in_place_refused += sum(
            1
            for u, ul in r.users.items()
            for s in ul.states
            if s.state == ACTIVE_WITH_ERROR
            and (g := inp.groups.get(s.assigned_by_group or "")) is not None
            and u in g.member_ids
        )
        again = compute(reversed_input(inp))
        assert dict(again.users) == dict(r.users), seed
        assert dict(again.consumed) == dict(r.consumed), seed
    if in_place:
        assert in_place_refused > 0  # the random in-place changes do reach the rule


def with_previous(inp: LicensingInput, r: LicensingResult) -> LicensingInput:
    return LicensingInput(
        tenant_location=inp.tenant_location,
        skus=inp.skus,
        users=inp.users,
        groups=inp.groups,
        rules=inp.rules,
        other_proxy_addresses=inp.other_proxy_addresses,
        previous={u: ul.states for u, ul in r.users.items()},
    )


@pytest.mark.parametrize(("with_previous_run", "in_place"), [(False, False), (True, False), (True, True)])
def test_reprocessing_settles_after_one_pass(with_previous_run: bool, in_place: bool) -> None:
    # the emulator reprocesses users whenever anything changes; a settled tenant must stay put
    # (one pass may still hand out seats that a later user freed in the first run)
    for seed in range(150):
        inp = random_tenant(seed, with_previous_run, in_place)
        second_input = with_previous(inp, compute(inp))
        second = compute(second_input)
        check_invariants(second_input, second)
        third = compute(with_previous(inp, second))
        assert dict(third.users) == dict(second.users), seed
        assert dict(third.consumed) == dict(second.consumed), seed
