"""Benchmark of reconciler.licensing.compute on a large synthetic tenant.

    python tests/bench/bench_licensing.py [--users 100000] [--groups 300] [--memberships 150000]
                                          [--skus 40] [--seed 1]

Builds the input in-process (deterministic for a seed), then prints, for a first processing
(no previous states: the emulator loading a seed) and a steady-state reprocessing (the previous
result fed back as `previous`): wall time without tracing, peak traced memory (tracemalloc, in a
second run) and the process's maximum resident set size. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from reconciler.licensing import (
    AssignmentState,
    License,
    LicensingGroup,
    LicensingInput,
    LicensingResult,
    LicensingUser,
    Rules,
    SkuCapacity,
    compute,
)

T = TypeVar("T")


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build(users: int, groups: int, memberships: int, skus: int, seed: int) -> LicensingInput:
    rng = random.Random(seed)
    # plan pool: 3 mailbox plans, 60 "suite" plans, 40 add-on plans
    mailbox_plans = [_guid(rng) for _ in range(3)]
    suite_plans = [_guid(rng) for _ in range(60)]
    addon_plans = [_guid(rng) for _ in range(40)]
    sku_list: list[tuple[str, tuple[str, ...]]] = []
    for i in range(skus):
        if i % 4 == 3:  # an add-on product: one or two add-on plans
            chosen = rng.sample(addon_plans, rng.randint(1, 2))
        else:  # a suite: 10-30 plans, most with a mailbox
            chosen = rng.sample(suite_plans, rng.randint(10, 30))
            if i % 5 != 0:
                chosen.append(mailbox_plans[i % 3])
        sku_list.append((_guid(rng), tuple(chosen)))
    # like SharePoint Plan 1/2 and Teams/Teams (free): two pairs of plans that some suites carry
    pairs = [rng.sample(suite_plans, 2) for _ in range(2)]
    exclusive = frozenset(frozenset(pair) for pair in pairs)
    for i, (sku_id, sku_plans) in enumerate(sku_list):
        clean = tuple(p for p in sku_plans if all(p not in pair for pair in pairs))
        extra = tuple(pair[i % 2] for k, pair in enumerate(pairs) if i % 4 != 3 and (i // 2 + k) % 3 == 0)
        sku_list[i] = (sku_id, clean + extra)
    # add-ons need any one of a few suite plans
    requires = {p: frozenset(rng.sample(suite_plans, 8)) for p in addon_plans[:20]}
    prohibited = {p: frozenset({"BN", "CU"}) for p in rng.sample(addon_plans, 3)}
    rules = Rules(exclusive, requires, prohibited, frozenset(mailbox_plans))

    locations = ["US", "FR", "DE", "GB", "BN", "JP"]
    user_ids = sorted(_guid(rng) for _ in range(users))
    user_objs: dict[str, LicensingUser] = {}
    for i, u in enumerate(user_ids):
        loc = None if i % 20 == 0 else rng.choice(locations)
        address = f"user{i}@contoso.com"
        proxies = {address, f"u{i}@sales.contoso.com"}
        if i % 2000 == 1:
            proxies.add(f"user{i - 1}@contoso.com")  # a duplicate proxy address with another user
        direct: tuple[License, ...] = ()
        if i % 10 == 0:
            sku_id, sku_plans = rng.choice(sku_list)
            disabled = frozenset(rng.sample(sku_plans, min(2, len(sku_plans) - 1)))
            direct = (License(sku_id, disabled),)
        user_objs[u] = LicensingUser(u, loc, frozenset(proxies), direct)

    group_ids = sorted(_guid(rng) for _ in range(groups))
    # group sizes: a few big groups and a long tail, summing to about `memberships`
    weights = [1.0 / (k + 1) ** 0.8 for k in range(groups)]
    total = sum(weights)
    sizes = [max(1, int(memberships * w / total)) for w in weights]
    group_objs: dict[str, LicensingGroup] = {}
    for k, g in enumerate(group_ids):
        licenses = tuple(
            License(sku_id, frozenset(rng.sample(sku_plans, min(1, len(sku_plans) - 1))))
            for sku_id, sku_plans in rng.sample(sku_list, rng.choice([1, 1, 1, 2, 3]))
        )
        members = rng.sample(user_ids, min(sizes[k], users))
        if k % 25 == 0 and k > 0:
            members.append(group_ids[k - 1])  # a nested group, ignored
        group_objs[g] = LicensingGroup(
            g, security_enabled=k % 50 != 7, licenses=licenses, member_ids=tuple(members)
        )

    # seats: about 3% short of what the groups and direct assignments would use
    demand: Counter[str] = Counter()
    for u in user_objs.values():
        for lic in u.direct:
            demand[lic.sku_id] += 1
    for g in group_objs.values():
        for lic in g.licenses:
            demand[lic.sku_id] += len(g.member_ids)
    sku_caps = {s: SkuCapacity(s, p, int(demand[s] * 0.97) + 5) for s, p in sku_list}
    other = {f"user{i}@contoso.com": group_ids[0] for i in range(5, users, 5000)}
    return LicensingInput("US", sku_caps, user_objs, group_objs, rules, other, {})


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    """The value, the wall time and the CPU time of this process (the machine may be shared)."""
    start, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - start, time.process_time() - cpu


def traced_peak(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def with_previous(inp: LicensingInput, result: LicensingResult) -> LicensingInput:
    previous: dict[str, tuple[AssignmentState, ...]] = {u: ul.states for u, ul in result.users.items()}
    return LicensingInput(
        inp.tenant_location, inp.skus, inp.users, inp.groups, inp.rules, inp.other_proxy_addresses, previous
    )


def describe(result: LicensingResult) -> str:
    states = [s for ul in result.users.values() for s in ul.states]
    errors = Counter(s.error for s in states if s.error != "None")
    return f"{len(result.users)} licensed users, {len(states)} states, errors {dict(sorted(errors.items()))}"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--groups", type=int, default=300)
    ap.add_argument("--memberships", type=int, default=150_000)
    ap.add_argument("--skus", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    _, _, calibration = timed(lambda: sum(range(10**7)))
    print(
        f"machine calibration: sum(range(10**7)) takes {calibration:.3f} s CPU (about 0.2 s on an idle laptop)"
    )
    inp, build_s, _ = timed(lambda: build(args.users, args.groups, args.memberships, args.skus, args.seed))
    n_members = sum(len(g.member_ids) for g in inp.groups.values())
    print(
        f"input: {len(inp.users)} users, {len(inp.groups)} groups, {n_members} memberships, "
        f"{len(inp.skus)} SKUs (built in {build_s:.2f} s)"
    )

    first, first_s, first_cpu = timed(lambda: compute(inp))
    print(f"first processing (no previous states): {first_s:.2f} s wall, {first_cpu:.2f} s CPU")
    print(f"  {describe(first)}")
    again = with_previous(inp, first)
    second, second_s, second_cpu = timed(lambda: compute(again))
    print(
        f"steady-state reprocessing (previous = last result): {second_s:.2f} s wall, {second_cpu:.2f} s CPU"
    )
    print(f"  {describe(second)}")

    peak_first = traced_peak(lambda: compute(inp))
    peak_second = traced_peak(lambda: compute(again))
    print(
        f"peak traced memory during compute: first {peak_first / 2**20:.1f} MiB, steady {peak_second / 2**20:.1f} MiB"
    )
    maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"process max RSS (input + results + tracing): {maxrss_kib / 1024:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
