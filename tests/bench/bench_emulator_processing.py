"""Benchmark: the emulator's store with a large tenant.

    python tests/bench/bench_emulator_processing.py [--users 100000] [--groups 2000] [--members 50000]

Steps, each timed (wall time) with the process's peak RSS after it:
  1. generate_tenant (in memory), with one extra unlicensed group of `--members` users
  2. Store.create: SQLite load in one transaction + licensing.compute over the tenant
  3. Store.open: reopen the database (no recomputation)
  4. group assignLicense on the big group, then drain (processing `--members` members)
  5. one membership change on the big group, then drain (partial recomputation)
  6. one direct assignLicense
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from reconciler.emulator.generate import generate_tenant
from reconciler.emulator.store import Store
from reconciler.licensing import License

T = TypeVar("T")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step(name: str, fn: Callable[[], T]) -> T:
    start = time.perf_counter()
    out = fn()
    print(f"{name:<48} {time.perf_counter() - start:8.2f} s   peak RSS {peak_mb():8.0f} MB", flush=True)
    return out


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--groups", type=int, default=2000)
    ap.add_argument("--members", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    doc = step(f"generate {args.users} users, {args.groups} groups", lambda: generate_tenant(
        users=args.users, groups=args.groups, seed=args.seed
    ))
    big_id = "0badc0de-0000-4000-8000-000000000001"
    members = [u["id"] for u in doc["users"][: args.members]]
    doc["groups"].append(
        {
            "id": big_id,
            "displayName": "BENCH-BIG",
            "securityEnabled": True,
            "mailEnabled": False,
            "mailNickname": "bench-big",
            "groupTypes": [],
            "assignedLicenses": [],
            "members": members,
        }
    )
    # a SKU with room for every member of the big group
    sku = doc["subscribedSkus"][0]
    sku["prepaidUnits"]["enabled"] = int(sku["prepaidUnits"]["enabled"]) + args.members

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "tenant.db"
        store = step("Store.create (load + compute)", lambda: Store.create(db, doc))
        store.close()
        store = step("Store.open (reopen)", lambda: Store.open(db))
        sku_id = str(sku["skuId"]).lower()
        step(
            f"group assignLicense + drain ({len(members)} members)",
            lambda: (store.assign_group_licenses(big_id, [License(sku_id)], []), store.drain()),
        )
        extra = doc["users"][args.members]["id"] if len(doc["users"]) > args.members else members[0]
        if extra in store.groups[big_id].members:
            step("remove one member + drain", lambda: (store.remove_member(big_id, extra), store.drain()))
        else:
            step("add one member + drain", lambda: (store.add_member(big_id, extra), store.drain()))
        target = next(u for u in store.users.values() if u.data.get("usageLocation") and not u.assigned)
        free = next(
            (s for s in store.skus if store.consumed.get(s, 0) < int(store.skus[s]["prepaidUnits"]["enabled"])), None
        )
        if free is not None:
            step("direct assignLicense (one user)", lambda: store.assign_user_licenses(target.id, [License(free)], []))
        held = sum(1 for m in members if any(lic.sku_id == sku_id for lic in store.users[m].assigned))
        print(f"members holding the SKU after processing: {held} of {len(members)}")
        store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
