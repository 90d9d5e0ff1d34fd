"""The emulator's durable store: seeding, persistence across restarts, snapshots, concurrency."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from emulator_fixtures import (
    E1,
    E3,
    G_E3,
    G_PROJECT,
    G_SALES,
    PROJECT,
    RULES,
    SP_ENT,
    SWAY,
    big_seed,
    gid,
    seed,
    states,
    uid,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.emulator.store import COMPLETE, QUEUED, Store, StoreError
from reconciler.licensing import License


def test_seed_computes_inherited_licenses_and_consumed_units(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "t.db", seed(), rules=RULES)
    # alice, bob, carol are direct members of LIC-E3; the nested Sales group's members are not licensed
    for n in (1, 2, 3):
        assert states(store, uid(n)) == [(E3, G_E3, "Active", "None")]
    assert states(store, uid(5)) == []
    assert store.users[uid(1)].assigned == (License(E3, frozenset({SWAY})),)
    assert store.consumed == {E1: 1, E3: 3, PROJECT: 0}
    assert store.groups[G_E3].processing_state == COMPLETE


def test_restart_keeps_every_change(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = Store.create(db, seed(), rules=RULES)
    store.assign_user_licenses(uid(5), [License(E1)], [])
    store.update_user(uid(7), {"usageLocation": "FR"})
    store.create_group({"id": gid(50), "displayName": "New", "securityEnabled": True, "mailEnabled": False})
    store.add_member(gid(50), uid(8))
    store.assign_group_licenses(G_SALES, [License(E1)], [])
    before = store.snapshot()
    pending = store.pending()
    store.close()

    reopened = Store.open(db, rules=RULES)
    assert reopened.snapshot() == before
    assert reopened.pending() == pending  # queued processing survives the restart
    assert reopened.groups[G_SALES].processing_state == QUEUED
    assert reopened.drain() == 1
    assert states(reopened, uid(6)) == [(E1, G_SALES, "Active", "None")]
    reopened.close()


def test_open_or_create_reuses_a_db_from_the_same_seed_and_tells_a_different_one(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = Store.open_or_create(db, seed(), rules=RULES)
    store.assign_user_licenses(uid(5), [License(E1)], [])
    store.close()
    again = Store.open_or_create(db, seed(), rules=RULES)
    assert again.same_seed(seed())
    assert [lic.sku_id for lic in again.users[uid(5)].direct.values()] == [E1]
    again.close()

    other = seed()
    other["users"][0]["displayName"] = "Alicia"
    kept = Store.open_or_create(db, other, rules=RULES)
    assert not kept.same_seed(other)  # opened as it is; the caller decides
    kept.close()
    fresh = Store.open_or_create(db, other, rules=RULES, reseed_if_changed=True)
    assert fresh.same_seed(other)
    assert fresh.users[uid(5)].direct == {}
    fresh.close()


def test_snapshot_round_trips(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "a.db", seed(), rules=RULES)
    store.assign_user_licenses(uid(4), [License(E3, frozenset({SP_ENT}))], [])
    store.assign_group_licenses(G_PROJECT, [License(PROJECT), License(E3)], [])
    store.add_member(G_PROJECT, uid(9))
    store.drain()
    snap = store.snapshot()
    again = Store.create(tmp_path / "b.db", snap, rules=RULES)
    assert again.snapshot() == snap
    # users carry direct assignments as assignedLicenses and the computed states as history
    dave = next(u for u in snap["users"] if u["id"] == uid(4))
    assert sorted(x["skuId"] for x in dave["assignedLicenses"]) == sorted([E1, E3])
    assert {s["skuId"] for s in dave["licenseAssignmentStates"]} == {E1, E3}
    skus = {s["skuId"]: s["consumedUnits"] for s in snap["subscribedSkus"]}
    assert skus[E3] == 4 and skus[PROJECT] == 0  # E3 has 4 seats: ivan is refused
    ivan = next(u for u in snap["users"] if u["id"] == uid(9))
    assert {(s["skuId"], s["error"]) for s in ivan["licenseAssignmentStates"]} == {
        (E3, "CountViolation"),
        (PROJECT, "Other"),
    }


def test_direct_assignment_errors_leave_the_store_unchanged(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "t.db", seed(), rules=RULES)
    before = store.snapshot()
    with pytest.raises(StoreError) as err:
        store.assign_user_licenses(uid(7), [License(E1)], [])  # grace has no usage location
    assert err.value.message == "License assignment cannot be done for user with invalid usage location."
    with pytest.raises(StoreError) as err:
        store.assign_user_licenses(uid(1), [], [E3])  # inherited from LIC-E3
    assert "inherited from a group membership" in err.value.message
    assert store.snapshot() == before


def test_partial_recomputation_equals_a_full_one(tmp_path: Path) -> None:
    def run(store: Store) -> None:
        # a series of changes that compete for E3 seats (4) and conflict on SharePoint plans
        store.assign_group_licenses(G_PROJECT, [License(PROJECT), License(E3)], [])
        for n in (4, 5, 8, 9):
            store.add_member(G_PROJECT, uid(n))
        store.drain()
        store.assign_group_licenses(G_SALES, [License(E1)], [])
        store.remove_member(G_E3, uid(2))
        store.drain()
        store.reprocess_user(uid(9))
        store.add_member(G_SALES, uid(10))
        store.drain()
        store.update_group(G_PROJECT, {"securityEnabled": False})  # a security flag change affects every member
        store.drain()
        assert states(store, uid(8)) == []

    partial = Store.create(tmp_path / "p.db", seed(), rules=RULES)
    full = Store.create(tmp_path / "f.db", seed(), rules=RULES)
    full.partial_recompute = False
    run(partial)
    run(full)
    assert {u: states(partial, u) for u in partial.users} == {u: states(full, u) for u in full.users}
    assert partial.consumed == full.consumed


def test_fifty_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    doc = seed()
    doc["users"] += [
        {"id": uid(1000 + i), "userPrincipalName": f"w{i}@contoso.com", "usageLocation": "US", "proxyAddresses": []}
        for i in range(50)
    ]
    store = Store.create(tmp_path / "t.db", doc, rules=RULES)
    barrier = threading.Barrier(50)
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            barrier.wait()
            store.update_user(uid(1000 + i), {"jobTitle": f"job {i}"})
            store.add_member(G_SALES, uid(1000 + i))
            store.create_group({"id": gid(1000 + i), "displayName": f"G{i}", "securityEnabled": True})
            store.add_member(gid(1000 + i), uid(1000 + i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store.close()
    reopened = Store.open(tmp_path / "t.db", rules=RULES)
    sales = reopened.groups[G_SALES].members
    for i in range(50):
        assert reopened.users[uid(1000 + i)].data["jobTitle"] == f"job {i}"
        assert uid(1000 + i) in sales
        assert list(reopened.groups[gid(1000 + i)].members) == [uid(1000 + i)]
    assert len(sales) == 52


def test_loads_a_large_tenant_in_one_transaction(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "t.db", big_seed(5000), rules=RULES)
    assert store.consumed[E1] == 5000
    store.close()
    reopened = Store.open(tmp_path / "t.db", rules=RULES)
    assert len(reopened.users) == 5000
    assert reopened.consumed[E1] == 5000
    assert states(reopened, uid(100)) == [(E1, gid(100), "Active", "None")]


def test_rules_default_to_the_seed_contract(tmp_path: Path) -> None:
    from reconciler.emulator.seed import seed_rules

    store = Store.create(tmp_path / "t.db", seed())  # no rules given: seed.seed_rules decides
    assert store.rules == seed_rules(seed())
    store.close()
    assert Store.open(tmp_path / "t.db").rules == seed_rules(seed())


def test_sample_tenant_loads_with_the_states_licensing_computes(tmp_path: Path) -> None:
    from reconciler.emulator.seed import licensing_input_from_seed, load_seed, seed_rules
    from reconciler.licensing import compute

    sample = load_seed(Path(__file__).resolve().parents[1] / "examples" / "sample-tenant.json")
    expected = compute(licensing_input_from_seed(sample, seed_rules(sample)))
    store = Store.create(tmp_path / "t.db", sample)
    for user_id, rec in store.users.items():
        want = expected.users.get(user_id)
        assert tuple(s.state for s in rec.states) == (want.states if want else ()), rec.upn
        assert rec.assigned == (tuple(sorted(want.assigned)) if want else ())
    assert store.consumed == dict(expected.consumed)
    assert Store.create(tmp_path / "again.db", store.snapshot()).snapshot() == store.snapshot()


def test_proxy_address_collisions_are_seen_by_partial_recomputation(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "t.db", seed(), rules=RULES)
    assert store.shared_address_users() == set()
    store.update_user(uid(5), {"proxyAddresses": ["SMTP:erin@contoso.com", "smtp:alice@contoso.com"]})
    assert store.shared_address_users() == {uid(1), uid(5)}
    store.add_member(G_E3, uid(5))
    store.drain()
    assert states(store, uid(5)) == [(E3, G_E3, "Error", "UniquenessViolation")]
    assert states(store, uid(1)) == [(E3, G_E3, "Active", "None")]  # alice already held the mailbox
    # a mail-enabled group holding frank's address: frank gets nothing and no state at all
    store.create_group(
        {"id": gid(60), "displayName": "DL", "securityEnabled": False, "mailEnabled": True, "mail": "frank@contoso.com"}
    )
    store.add_member(G_E3, uid(6))
    store.drain()
    assert states(store, uid(6)) == []
    # fixing the address and reprocessing resolves the error
    store.update_user(uid(5), {"proxyAddresses": ["SMTP:erin@contoso.com"]})
    assert store.shared_address_users() == {uid(6)}
    store.reprocess_user(uid(5))
    assert states(store, uid(5)) == [(E3, G_E3, "Active", "None")]


def test_one_owner_at_a_time(tmp_path: Path) -> None:
    from reconciler.emulator.store import StoreBusyError

    db = tmp_path / "t.db"
    store = Store.create(db, seed(), rules=RULES)
    with pytest.raises(StoreBusyError, match="in use by another process"):
        Store.open(db, rules=RULES)
    with pytest.raises(StoreBusyError):
        Store.create(db, seed(), rules=RULES)
    assert store.users  # the owner is untouched
    store.close()
    Store.open(db, rules=RULES).close()


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "group", "direct", "undirect", "location", "reprocess", "drain"]),
        st.integers(1, 10),
        st.sampled_from([G_E3, G_SALES, G_PROJECT]),
        st.sampled_from([E1, E3, PROJECT]),
    ),
    min_size=1,
    max_size=25,
)


def _apply(store: Store, op: str, n: int, group: str, sku: str) -> None:
    try:
        if op == "add":
            store.add_member(group, uid(n))
        elif op == "remove":
            store.remove_member(group, uid(n))
        elif op == "group":
            lics = [License(sku)] if sku != PROJECT else [License(PROJECT), License(E3)]
            store.assign_group_licenses(group, lics, [])
        elif op == "direct":
            store.assign_user_licenses(uid(n), [License(sku)], [])
        elif op == "undirect":
            store.assign_user_licenses(uid(n), [], [sku])
        elif op == "location":
            store.update_user(uid(n), {"usageLocation": None if n % 3 == 0 else "FR"})
        elif op == "reprocess":
            store.reprocess_user(uid(n))
        else:
            store.drain()
    except StoreError:
        pass  # refused like Graph refuses it; nothing changed


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_random_changes_give_the_same_states_with_partial_and_full_recomputation(
    tmp_path: Path, ops: list[Any]
) -> None:
    key = abs(hash(tuple(ops)))
    partial = Store.create(tmp_path / f"p{key}.db", seed(), rules=RULES)
    full = Store.create(tmp_path / f"f{key}.db", seed(), rules=RULES)
    full.partial_recompute = False
    try:
        for op in ops:
            _apply(partial, *op)
            _apply(full, *op)
            assert {u: states(partial, u) for u in partial.users} == {u: states(full, u) for u in full.users}
            assert partial.consumed == full.consumed
    finally:
        partial.close()
        full.close()


def test_a_freed_seat_goes_to_a_user_in_count_violation_on_the_next_processing(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "t.db", seed(), rules=RULES)
    store.assign_group_licenses(G_SALES, [License(E3)], [])  # erin and frank; E3 has one seat left
    store.drain()
    assert states(store, uid(5)) == [(E3, G_SALES, "Active", "None")]
    assert states(store, uid(6)) == [(E3, G_SALES, "Error", "CountViolation")]
    store.remove_member(G_E3, uid(1))  # alice leaves: her seat is freed
    store.drain()
    assert states(store, uid(1)) == []
    assert states(store, uid(6)) == [(E3, G_SALES, "Active", "None")]
    assert store.consumed[E3] == 4
