"""Step 4 of planning: safety limits (octoDNS / Peribolos style), SPEC section 2 `safety`.

    check_safety(policy, state, actions, prediction, protected) -> list[Violation]

- A user "loses" when a SKU or a service plan the model gives them today (BEFORE) is not in
  what it gives them after the plan (AFTER): effective enabled plans are compared, so removing
  a redundant direct license or swapping E3 for E5 in one request loses nothing.
- More losing users than `safety.maxRemovals` allows (a count, or a percentage of the users who
  hold any license today) -> `UnsafeRemoval` (error). Without `maxRemovals` the limit is
  DEFAULT_MAX_REMOVALS_PERCENT (10%) of licensed users, at least one user: a safe default that
  still lets a small tenant make a single-user change.
- Any license removal, plan switched off or member removed on a `protected` group ->
  `UnsafeRemoval` (error), whatever the count.

These are errors that `--force` lets through (recorded in the plan; Plan.blocked has the rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler import licensing
from reconciler.licensing import License, LicensingResult, SkuCapacity, UserLicensing
from reconciler.plan import NEW, Action, Violation
from reconciler.planner.diff import count
from reconciler.policy.model import Policy
from reconciler.state import TenantState

DEFAULT_MAX_REMOVALS_PERCENT = 10.0


def losing_users(before: LicensingResult, after: LicensingResult, skus: Mapping[str, SkuCapacity]) -> list[str]:
    """Users who hold a SKU or an enabled plan BEFORE that they do not hold AFTER (sorted ids)."""
    out = []
    # a plan change in a big group changes the licenses of tens of thousands of users, who hold
    # a few hundred distinct combinations: work out the plans of each combination once
    enabled: dict[tuple[License, ...], frozenset[str]] = {}

    def plans_of(user: UserLicensing) -> frozenset[str]:
        got = enabled.get(user.assigned)
        if got is None:
            got = enabled[user.assigned] = licensing.user_enabled_plans(user, skus)
        return got

    for uid, b in before.users.items():
        if not b.assigned:
            continue
        a = after.users.get(uid)
        if a is None:
            out.append(uid)
            continue
        if a.assigned == b.assigned:
            continue
        a_skus = {lic.sku_id for lic in a.assigned}
        if any(lic.sku_id not in a_skus for lic in b.assigned):
            out.append(uid)
            continue
        if not plans_of(b) <= plans_of(a):
            out.append(uid)
    return sorted(out)


def licensed_users(state: TenantState) -> int:
    """Users holding any license today (directly, or an Active/ActiveWithError group state)."""
    held = ("Active", "ActiveWithError")
    return sum(
        1
        for u in state.users.values()
        if u.direct_licenses or any(st.state in held for st in u.license_states)
    )


def removal_limit(policy: Policy, licensed: int) -> tuple[int, str]:
    """(how many users may lose something, how the limit reads)."""
    mr = policy.safety.max_removals
    if mr is not None:
        return mr.limit(licensed), f"safety.maxRemovals: {mr.text}"
    limit = max(1, int(licensed * DEFAULT_MAX_REMOVALS_PERCENT / 100.0))
    return limit, f"the default limit {DEFAULT_MAX_REMOVALS_PERCENT:g}% (no safety.maxRemovals)"


def _is_protected_removal(a: Action) -> bool:
    if not a.details.get("protected"):
        return False
    if a.kind in ("removeLicense", "removeMember"):
        return True
    if a.kind == "updateLicense":
        changes = a.details.get("planChanges")
        return isinstance(changes, Mapping) and bool(changes.get("disable"))
    return False


def check_safety(
    policy: Policy,
    state: TenantState,
    actions: Sequence[Action],
    before: LicensingResult,
    after: LicensingResult,
    skus: Mapping[str, SkuCapacity],
) -> list[Violation]:
    out: list[Violation] = []
    losing = losing_users(before, after, skus)
    licensed = licensed_users(state)
    limit, text = removal_limit(policy, licensed)
    if len(losing) > limit:
        upns = tuple(
            sorted(
                (state.users[u].user_principal_name if u in state.users else u for u in losing), key=str.casefold
            )
        )
        mr = policy.safety.max_removals
        out.append(
            Violation(
                code="UnsafeRemoval",
                severity="error",
                message=(
                    f"{count(len(losing), 'user')} would lose a SKU or a service plan, more than {text} allows "
                    f"({limit} of {licensed} licensed users)"
                ),
                resolution=(
                    "check that the removals are intended; split the change into smaller plans, raise "
                    "safety.maxRemovals, or plan again with --force"
                ),
                users=upns,
                status=NEW,
                source=mr.loc if mr is not None else None,
            )
        )
    by_group: dict[str, list[Action]] = {}
    for a in actions:
        if _is_protected_removal(a) and a.group is not None:
            by_group.setdefault(a.group.name, []).append(a)
    protected_locs = {r.value.strip().casefold(): r.loc for r in policy.safety.protected}
    for name in sorted(by_group, key=str.casefold):
        acts = by_group[name]
        what = sorted({f"{a.kind} {a.sku or (a.user.name if a.user else '')}".strip() for a in acts})
        users = tuple(sorted({u for a in acts for u in a.users}, key=str.casefold))
        gid = next((a.group.id for a in acts if a.group is not None and a.group.id), None)
        loc = protected_locs.get(name.casefold()) or (protected_locs.get(gid) if gid else None)
        out.append(
            Violation(
                code="UnsafeRemoval",
                severity="error",
                message=f"{name} is protected (safety.protected) and this plan takes from it: {'; '.join(what)}",
                resolution="make sure this is intended, then plan again with --force; or undo the policy change",
                group=name,
                users=users,
                status=NEW,
                source=loc or acts[0].source,
            )
        )
    return out
