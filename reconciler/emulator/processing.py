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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from reconciler import licensing
from reconciler.emulator.seed import smtp_addresses
from reconciler.licensing import (
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
    """Bundled rule table extended with the seed's ``emulator.rules``, in plan ids."""
    from reconciler import catalog

    cat = catalog.load_catalog()
    table = catalog.bundled_rules()
    seed_rules = store.emulator.get("rules")
    if seed_rules:
        table = table.extend(seed_rules, "seed: emulator.rules")
    extra = sorted({(name, pid) for pid, name in store.sku_plan_names().items() if name})
    return table.to_rules(cat, extra)


def _licensing_user(u: UserRecord) -> LicensingUser:
    loc = u.data.get("usageLocation")
    return LicensingUser(
        id=u.id,
        usage_location=str(loc) if loc else None,
        proxy_addresses=smtp_addresses(u.data.get("proxyAddresses") or ()),
        direct=tuple(sorted(u.direct.values())),
    )


def build_input(store: Store) -> LicensingInput:
    """The tenant as licensing sees it: direct licenses as they are, groups as last processed."""
    skus = {
        sid: SkuCapacity(
            sku_id=sid,
            plan_ids=tuple(str(p["servicePlanId"]).lower() for p in sku.get("servicePlans") or ()),
            enabled_units=int((sku.get("prepaidUnits") or {}).get("enabled") or 0),
        )
        for sid, sku in store.skus.items()
    }
    users = {uid: _licensing_user(u) for uid, u in store.users.items()}
    groups = {
        gid: LicensingGroup(
            id=gid,
            security_enabled=bool(g.data.get("securityEnabled", True)),
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
    previous = {uid: tuple(s.state for s in u.states) for uid, u in store.users.items() if u.states}
    return LicensingInput(
        tenant_location=store.tenant_location,
        skus=skus,
        users=users,
        groups=groups,
        rules=store.rules,
        other_proxy_addresses=others,
        previous=previous,
    )


def recompute(store: Store, db: sqlite3.Connection) -> None:
    """Run licensing.compute over the tenant and store the outcome (caller holds the transaction)."""
    from reconciler.emulator.store import StateRecord, graph_now

    result = licensing.compute(build_input(store))
    now = graph_now(store.clock)
    changed = []
    for uid, u in store.users.items():
        computed = result.users.get(uid)
        new_states = computed.states if computed else ()
        new_assigned = tuple(sorted(computed.assigned)) if computed else ()
        old = {s.state: s.last_updated for s in u.states}
        records = tuple(StateRecord(s, old.get(s, now)) for s in new_states)
        if records != u.states or new_assigned != u.assigned:
            u.states = records
            u.assigned = new_assigned
            changed.append(u)
    if changed:
        store.write_states(db, changed)
    store.write_consumed(db, result.consumed)


def check_direct(store: Store, user_id: str, add: Sequence[License], remove: Sequence[str]) -> str | None:
    """Graph's 400 message for a direct assignLicense that Entra refuses, else None."""
    return licensing.check_direct_assignment(
        build_input(store), user_id, tuple(add), tuple(remove), consumed=store.consumed
    )


def check_group(store: Store, group_id: str, add: Sequence[License], remove: Sequence[str]) -> str | None:
    """Graph's 400 message for a group assignLicense that Entra refuses synchronously, else None."""
    group = store.groups[group_id]
    removed = set(remove)
    after = {sku: lic for sku, lic in group.licenses.items() if sku not in removed}
    for lic in add:
        after[lic.sku_id] = lic
    skus = build_input(store).skus
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
