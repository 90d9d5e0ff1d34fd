"""Group-license processing for the emulator: the glue between the store and
``reconciler.licensing`` (which alone decides every licensing outcome), and the
background worker that completes queued group processing.

``recompute`` runs ``licensing.compute`` over the whole tenant, with every
group's *applied* licenses and members and the users' current states as
history, and stores the new states (keeping ``lastUpdatedDateTime`` of the
states that did not change), the effective licenses and the consumed seats.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from reconciler import licensing
from reconciler.emulator.seed import smtp_addresses
from reconciler.licensing import (
    NO_ERROR,
    License,
    LicensingGroup,
    LicensingInput,
    LicensingUser,
    Rules,
    SkuCapacity,
)

if TYPE_CHECKING:
    from reconciler.emulator.store import Store, UserRecord


def rules_for_tenant(store: Store) -> Rules:
    """The rules Entra enforces in this tenant, decided by ``seed.seed_rules`` (the tenant
    schema's contract: the seed's ``emulator.rules`` when present, else the bundled table)."""
    from reconciler.emulator.seed import seed_rules

    return seed_rules({"emulator": store.emulator, "subscribedSkus": list(store.skus.values())})


def _licensing_user(u: UserRecord) -> LicensingUser:
    cached = u.licensing
    if isinstance(cached, LicensingUser):
        return cached
    loc = u.data.get("usageLocation")
    lic = LicensingUser(
        id=u.id,
        usage_location=str(loc) if loc else None,
        proxy_addresses=smtp_addresses(u.data.get("proxyAddresses") or ()),
        direct=tuple(sorted(u.direct.values())),
    )
    u.licensing = lic
    return lic


def sku_capacities(store: Store, outside: Mapping[str, int] | None = None) -> dict[str, SkuCapacity]:
    """Every subscribed SKU's plans and capacity (less `outside` seats when given)."""
    outside = outside or {}
    return {
        sid: SkuCapacity(
            sku_id=sid,
            plan_ids=tuple(str(p["servicePlanId"]).lower() for p in sku.get("servicePlans") or ()),
            enabled_units=int((sku.get("prepaidUnits") or {}).get("enabled") or 0) - outside.get(sid, 0),
        )
        for sid, sku in store.skus.items()
    }


def build_input(
    store: Store,
    user_ids: Collection[str] | None = None,
    *,
    reserve_outside: bool = True,
    outside: Mapping[str, int] | None = None,
) -> LicensingInput:
    """The tenant as licensing sees it: direct licenses as they are, groups as last processed.

    With `user_ids`, only those users are included and each SKU's capacity is reduced by the
    seats that the other users hold (they keep them: their inputs did not change; `outside`
    when the caller has them already). The groups and addresses are then cut to what those
    users' outcome depends on, which gives them the outcome of the whole input: compute looks at
    licensed security groups only, at their members only as users it computes, and at other
    objects' proxy addresses only as addresses a user holds."""
    if user_ids is None:
        return _whole_input(store)
    subset = {uid: store.users[uid] for uid in user_ids}
    if reserve_outside and outside is None:
        outside = seats_outside(store, subset)
    skus = sku_capacities(store, outside if reserve_outside else None)
    users = {uid: _licensing_user(u) for uid, u in subset.items()}
    groups: dict[str, LicensingGroup] = {}
    in_subset = subset.__contains__
    for gid, g in store.groups.items():
        if not g.applied_security or not g.applied_licenses:
            continue  # licenses nobody
        members = tuple(filter(in_subset, g.applied_members))
        if members:
            groups[gid] = LicensingGroup(
                id=gid, security_enabled=True, licenses=tuple(sorted(g.applied_licenses)), member_ids=members
            )
    # addresses of the users that a group also holds (the first such group in id order): such an
    # address has two holders, so only users sharing an address can have one
    others: dict[str, str] = {}
    for uid in store.shared_address_users() & subset.keys():
        for addr in users[uid].proxy_addresses:
            if addr not in others:
                holders = sorted(o for o in store.address_owners(addr) if o in store.groups)
                if holders:
                    others[addr] = holders[0]
    return _input(store, subset, skus, users, groups, others)


def _whole_input(store: Store) -> LicensingInput:
    skus = sku_capacities(store)
    users = {uid: _licensing_user(u) for uid, u in store.users.items()}
    groups = {
        gid: LicensingGroup(
            id=gid,
            security_enabled=g.applied_security,
            licenses=tuple(sorted(g.applied_licenses)),
            member_ids=g.applied_members,
        )
        for gid, g in store.groups.items()
    }
    others: dict[str, str] = {}
    for gid in sorted(store.groups):
        g = store.groups[gid]
        addresses = set(smtp_addresses(g.data.get("proxyAddresses") or ()))
        if g.data.get("mailEnabled") and g.data.get("mail"):
            addresses.add(str(g.data["mail"]).lower())
        for addr in sorted(addresses):
            others.setdefault(addr, gid)
    return _input(store, store.users, skus, users, groups, others)


def _input(
    store: Store,
    records: Mapping[str, UserRecord],
    skus: dict[str, SkuCapacity],
    users: dict[str, LicensingUser],
    groups: dict[str, LicensingGroup],
    others: dict[str, str],
) -> LicensingInput:
    """The input over `users`, each with the states it holds now as `previous`."""
    return LicensingInput(
        tenant_location=store.tenant_location,
        skus=skus,
        users=users,
        groups=groups,
        rules=store.rules,
        other_proxy_addresses=others,
        previous={uid: tuple(s.state for s in u.states) for uid, u in records.items() if u.states},
    )


def _held(store: Store, user_ids: Iterable[str]) -> dict[str, int]:
    held: dict[str, int] = {}
    for uid in user_ids:
        for lic in store.users[uid].assigned:
            held[lic.sku_id] = held.get(lic.sku_id, 0) + 1
    return held


def seats_outside(store: Store, user_ids: Iterable[str]) -> dict[str, int]:
    """Seats per SKU held by the users not in `user_ids` (from the last computation)."""
    held = _held(store, user_ids)
    return {sku: store.consumed.get(sku, 0) - held.get(sku, 0) for sku in store.skus}


def _unsettled_users(store: Store) -> set[str]:
    """Users whose outcome can change without any change of their own: every user in
    `CountViolation` (seats may have been freed) and every user sharing a proxy address with
    another object. Always part of a partial recomputation.

    A user's outcome depends on the user's own inputs (groups, direct licenses, location), the
    previous states, the seats left and the addresses others hold. The stored states are what
    compute gave for the current inputs, and compute given its own output as the previous
    states gives it again; so a user with unchanged inputs keeps the outcome unless a seat it
    waits for (`CountViolation`) or an address it shares changes hands. Other errors
    (exclusive or missing plans, a location) are the user's own and stay as they are."""
    waiting = {
        uid
        for uid in store.error_users
        if any(r.state.error == licensing.COUNT_VIOLATION for r in store.users[uid].states)
    }
    return waiting | store.shared_address_users()


def recompute(
    store: Store, db: sqlite3.Connection, affected: Iterable[str] | None = None, *, write_all: bool = False
) -> None:
    """Run licensing.compute and store the outcome (the caller holds the transaction).

    `write_all`: write every user's rows (a fresh database).
    `affected`: the users whose inputs changed. Only they and the unsettled users are computed,
    with the seats of everybody else set aside; this equals a full recomputation because every
    other user has unchanged inputs and waits for no seat, so compute keeps their outcome as it
    is (see `_unsettled_users`)."""
    from reconciler.emulator.store import StateRecord, graph_now

    subset: set[str] | None = None
    if affected is not None and store.partial_recompute:
        subset = {uid for uid in affected if uid in store.users} | _unsettled_users(store)
        if len(subset) * 5 > len(store.users) * 4:  # most of the tenant: a full run is as cheap
            subset = None
    outside = seats_outside(store, subset) if subset is not None else {}
    result = licensing.compute(build_input(store, subset, outside=outside))
    now = graph_now(store.clock)
    changed = []
    for uid in store.users if subset is None else sorted(subset):
        u = store.users[uid]
        computed = result.users.get(uid)
        new_states = computed.states if computed else ()
        new_assigned = tuple(sorted(computed.assigned)) if computed else ()
        old_records = u.states
        if (
            not write_all
            and new_assigned == u.assigned
            and len(new_states) == len(old_records)
            and all(s == r.state for s, r in zip(new_states, old_records, strict=True))
        ):
            continue  # unchanged (each state keeps its lastUpdatedDateTime)
        old = {r.state: r.last_updated for r in old_records}
        u.states = tuple(StateRecord(s, old.get(s, now)) for s in new_states)
        u.assigned = new_assigned
        changed.append(u)
        if any(s.error != NO_ERROR for s in new_states):
            store.error_users.add(uid)
        else:
            store.error_users.discard(uid)
    if changed:
        store.write_states(db, changed, fresh=write_all)
    if subset is None:
        store.write_consumed(db, result.consumed)
    else:
        held = _held(store, subset)
        store.write_consumed(db, {sku: outside.get(sku, 0) + held.get(sku, 0) for sku in store.skus})


def check_direct(store: Store, user_id: str, add: Sequence[License], remove: Sequence[str]) -> str | None:
    """Graph's 400 message for a direct assignLicense that Entra refuses, else None."""
    return licensing.check_direct_assignment(
        build_input(store, {user_id}, reserve_outside=False),
        user_id, tuple(add), tuple(remove), consumed=store.consumed
    )


def check_group(store: Store, group_id: str, add: Sequence[License], remove: Sequence[str]) -> str | None:
    """Graph's 400 message for a group assignLicense that Entra refuses synchronously, else None."""
    group = store.groups[group_id]
    removed = set(remove)
    after = {sku: lic for sku, lic in group.licenses.items() if sku not in removed}
    for lic in add:
        after[lic.sku_id] = lic
    skus = sku_capacities(store)
    for sku in remove:
        if sku not in skus:
            return licensing.MSG_UNKNOWN_SKU.format(sku_id=sku)
    return licensing.check_group_assignment(store.rules, skus, tuple(after.values()))


class ProcessingWorker:
    """Background thread that completes queued group processing when it falls due."""

    def __init__(self, store: Store, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self.clock = clock or store.clock
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="emulator-processing", daemon=True)
        self.errors: list[BaseException] = []

    def start(self) -> ProcessingWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        with self.store.changed:
            self._stop = True
            self.store.changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        store = self.store
        with store.changed:
            while not self._stop:
                due = store.next_due()
                now = self.clock()
                if due is not None and due <= now:
                    try:
                        store.process_due(now)
                    except Exception as exc:  # keep serving; the error is visible in stats
                        self.errors.append(exc)
                        time.sleep(0)
                        store.changed.wait(1.0)
                    continue
                wait = 1.0 if due is None else max(0.01, min(1.0, due - now))
                store.changed.wait(wait)
