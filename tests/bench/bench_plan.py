"""Benchmark: plan compute time (no I/O) and peak memory on a large generated tenant.

    python tests/bench/bench_plan.py [--users 100000] [--groups 2000] [--skus 10] [--seed 1]

Setup (not timed): generate a tenant (reconciler.emulator.generate), compute its license states
in-process with reconciler.licensing (what the emulator does on load), read it with
TenantState.from_snapshot, and write a policy that names every licensed group and changes a bit
of everything (plans switched off in place, a product added, one removed, managed membership, a
group to create, usage locations, direct licenses removed in a wave).

Two policies: a broad change (about a third of the users touched) and a typical pull request (one
plan switched off in one group). Timed: make_plan(policy, state) (resolve, diff, the licensing
model run twice on the touched and unsettled users, safety, fingerprint), best of --repeat untraced
runs, wall and CPU time (CPU time is the figure to read on a shared machine); then one run under
tracemalloc for the peak traced memory. The process's maximum resident set size is printed last.
Figures are printed, never asserted (target: under 5 s for 100,000 users).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from reconciler import licensing
from reconciler.emulator.generate import generate_tenant
from reconciler.emulator.seed import licensing_input_from_seed, seed_rules
from reconciler.planner import make_plan
from reconciler.policy import load_policy
from reconciler.render.common import summary_line
from reconciler.state import TenantState


def settled_state(doc: dict[str, Any]) -> TenantState:
    """The tenant with the license states the emulator would compute on load."""
    result = licensing.compute(licensing_input_from_seed(doc, seed_rules(doc)))
    state = TenantState.from_snapshot(doc)
    users = []
    for u in state.users.values():
        computed = result.users.get(u.id)
        users.append(dataclasses.replace(u, license_states=computed.states if computed else ()))
    skus = [dataclasses.replace(s, consumed_units=result.consumed.get(s.sku_id, 0)) for s in state.skus.values()]
    return TenantState.build(state.organization, skus, users, state.groups.values())


def policy_text(doc: dict[str, Any], *, broad: bool = True) -> str:
    """broad: change a bit of everything (10% of the groups and more); else one plan switched off
    in one group (a typical pull request)."""
    parts = {s["skuId"]: s["skuPartNumber"] for s in doc["subscribedSkus"]}
    plans = {s["skuId"]: [p["servicePlanId"] for p in s["servicePlans"]] for s in doc["subscribedSkus"]}
    licensed = sorted((g for g in doc["groups"] if g.get("assignedLicenses")), key=lambda g: g["displayName"])
    user_ids = [u["id"] for u in doc["users"]]
    lines = ["apiVersion: reconciler/v1", "groups:"]
    names = {p["servicePlanId"]: p["servicePlanName"] for s in doc["subscribedSkus"] for p in s["servicePlans"]}

    def self_exclusive(lics: list[dict[str, Any]]) -> bool:
        on = {names[p] for x in lics for p in plans[x["skuId"]] if p not in x["disabledPlans"]}
        return {"SHAREPOINTSTANDARD", "SHAREPOINTENTERPRISE"} <= on or {"TEAMS_FREE", "TEAMS1"} <= on

    # groups that conflict with themselves are refused by `validate`: left unnamed (reported)
    licensed = [g for g in licensed if not self_exclusive(g["assignedLicenses"])]
    for i, g in enumerate(licensed):
        lines.append(f"  - group: {g['displayName']}")
        lics = [dict(x) for x in g["assignedLicenses"]]
        if not broad:
            if i == 1:
                extra = [p for p in plans[lics[0]["skuId"]] if p not in lics[0]["disabledPlans"]][:1]
                lics[0]["disabledPlans"] = [*lics[0]["disabledPlans"], *extra]
        elif i % 10 == 1:  # switch one more plan off, in place
            extra = [p for p in plans[lics[0]["skuId"]] if p not in lics[0]["disabledPlans"]][:1]
            lics[0]["disabledPlans"] = [*lics[0]["disabledPlans"], *extra]
        if broad and i % 10 == 2:  # one more product
            addons = [s for s in parts if parts[s] in ("POWER_BI_PRO", "EMS", "VISIOCLIENT")]
            other = next((s for s in addons if all(x["skuId"] != s for x in lics)), None)
            if other is not None and not self_exclusive([*lics, {"skuId": other, "disabledPlans": []}]):
                lics.append({"skuId": other, "disabledPlans": []})
        if broad and i == 3:  # a product taken away
            lics = lics[1:]
        if broad and i == 4:  # managed membership
            members = [m for m in g["members"] if m in set(user_ids)][10:]
            members += user_ids[-200:]
            lines.append("    members: [" + ", ".join(dict.fromkeys(members)) + "]")
        if not lics:
            lines.append("    licenses: []")
            continue
        lines.append("    licenses:")
        for x in lics:
            lines.append(f"      - sku: {parts[x['skuId']]}")
            if x["disabledPlans"]:
                lines.append("        disabledPlans: [" + ", ".join(x["disabledPlans"]) + "]")
    if broad:
        lines += [
            "  - group: LIC-Bench-New",
            "    create: true",
            "    members: [" + ", ".join(user_ids[:500]) + "]",
            "    licenses:",
            "      - sku: " + next(iter(parts.values())),
            "usageLocations:",
            "  default: US",
            "directLicenses:",
            "  mode: removeRedundant",
            "  waveSize: 500",
        ]
    lines += ["unmanagedGroups: report", "safety:", "  maxRemovals: 100%"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--groups", type=int, default=2_000)
    ap.add_argument("--skus", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    doc = generate_tenant(users=args.users, groups=args.groups, skus=args.skus, seed=args.seed)
    state = settled_state(doc)
    policies = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, broad in (("broad change", True), ("one group changed", False)):
            path = Path(tmp) / f"{broad}.yaml"
            path.write_text(policy_text(doc, broad=broad), encoding="utf-8")
            policies[name] = load_policy([path])
    del doc
    gc.collect()
    licensed = sum(1 for u in state.users.values() if u.license_states)
    print(
        f"tenant: {len(state.users):,} users ({licensed:,} licensed), {len(state.groups):,} groups, "
        f"{len(state.skus)} SKUs (setup {time.perf_counter() - t0:.1f} s)"
    )
    for name, policy in policies.items():
        print(f"\n{name}: policy naming {len(policy.groups)} groups")
        run(policy, state, args.repeat)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"\nmax resident set size of the process: {rss / 1024:.0f} MiB")
    return 0


def run(policy: Any, state: TenantState, repeat: int) -> None:

    best = best_cpu = float("inf")
    plan = None
    for _ in range(max(1, repeat)):
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        plan = make_plan(policy, state, force=True)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    assert plan is not None
    print(f"  {summary_line(plan)}")
    print(
        f"  plan compute time (make_plan, no I/O): {best:.2f} s wall, {best_cpu:.2f} s CPU "
        f"(best of {max(1, repeat)})"
    )

    gc.collect()
    tracemalloc.start()
    make_plan(policy, state, force=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  peak traced memory during make_plan: {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
