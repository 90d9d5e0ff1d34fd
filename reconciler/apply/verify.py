"""Verification: compare every affected user's recorded license states with the plan's prediction.

    verify(plan, users, state, placeholders) -> list[Difference]

A difference lists the states the plan predicted and the states Entra recorded. When Entra
recorded an error the plan did not predict, the difference says which of the user's plans it
involves and suggests the ``catalog:`` rule that would have let ``plan`` predict it (the planner
can only predict the rules it knows: the bundled table plus the policy's ``catalog``).

Differences are reported, not failures: the writes were made and Entra processed them; what
differs is the prediction. They do not change apply's exit code (see reconciler.apply.executor).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.apply.wait import StateKey, state_keys
from reconciler.catalog import MUTUALLY_EXCLUSIVE, PROHIBITED_LOCATIONS, REQUIRES, bundled_rules, name_key
from reconciler.licensing import HELD_STATES, NO_ERROR, AssignmentState
from reconciler.plan import Plan
from reconciler.state import TenantState, User


@dataclass
class Difference:
    user_id: str
    user: str  # UPN
    expected: list[str]
    got: list[str]
    explanations: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"{self.user}:"]
        lines.append("    predicted: " + ("; ".join(self.expected) or "no license"))
        lines.append("    recorded:  " + ("; ".join(self.got) or "no license"))
        for text in self.explanations:
            lines.extend("    " + line for line in text.splitlines())
        return "\n".join(lines)


class _Names:
    def __init__(self, state: TenantState, placeholders: Mapping[str, str]) -> None:
        self.state = state
        self.group_names = {g.id: g.display_name for g in state.groups.values()}
        for placeholder, gid in placeholders.items():
            self.group_names[gid] = placeholder[len("{new:") : -1]
        self.plan_names: dict[str, str] = {}
        for sku in state.skus.values():
            for p in sku.service_plans:
                self.plan_names.setdefault(p.plan_id, p.name or p.plan_id)

    def sku(self, sku_id: str) -> str:
        sku = self.state.skus.get(sku_id)
        return sku.part_number if sku is not None and sku.part_number else sku_id

    def source(self, group: str | None) -> str:
        return "direct" if group is None else f"from {self.group_names.get(group, group)}"

    def describe(self, key: StateKey) -> str:
        sku_id, group, st, error = key
        text = f"{self.sku(sku_id)} {self.source(group)}: {st}"
        return text + (f" ({error})" if error != NO_ERROR else "")

    def plans(self, s: AssignmentState) -> list[str]:
        """Names of the plans an assignment enables, in the SKU's order."""
        sku = self.state.skus.get(s.sku_id)
        if sku is None:
            return []
        return [p.name or p.plan_id for p in sku.service_plans if p.plan_id not in s.disabled_plans]


def _prefix_related(a: str, b: str) -> bool:
    """Two plan names of the same service in different editions (SHAREPOINTSTANDARD/ENTERPRISE)."""
    ka, kb = name_key(a), name_key(b)
    if ka == kb:
        return False
    common = 0
    for x, y in zip(ka, kb, strict=False):
        if x != y:
            break
        common += 1
    return common >= 6


def _explain(names: _Names, user: User, s: AssignmentState) -> str:
    where = f"{s.error} on {names.sku(s.sku_id)} {names.source(s.assigned_by_group)}"
    mine = names.plans(s)
    others: dict[str, str] = {}  # plan name -> where it comes from
    for o in user.license_states:
        if o is s or o.state not in HELD_STATES or o.error != NO_ERROR:
            continue
        for p in names.plans(o):
            others.setdefault(p, f"{names.sku(o.sku_id)} {names.source(o.assigned_by_group)}")
    table = bundled_rules().rules
    if s.error == "MutuallyExclusiveViolation":
        pairs: list[tuple[str, str]] = []
        known = {
            frozenset((name_key(r.plan), name_key(o))) for r in table if r.kind == MUTUALLY_EXCLUSIVE for o in r.others
        }
        for p in mine:
            for q in others:
                if frozenset((name_key(p), name_key(q))) in known or _prefix_related(p, q):
                    pairs.append((p, q))
        if pairs:
            found = ", ".join(f"{p} vs {q} ({others[q]})" for p, q in pairs)
            snippet = "\n".join(f"    - [{p}, {q}]" for p, q in pairs)
            return (
                f"unpredicted {where}: its plans conflict with plans the user has elsewhere, most likely {found}.\n"
                f"To have plan predict it, add to the policy:\n  catalog:\n    mutuallyExclusive:\n{snippet}"
            )
        return (
            f"unpredicted {where}: one of its plans ({', '.join(mine)}) conflicts with one the user has elsewhere "
            f"({', '.join(sorted(others)) or 'none found'}).\nOnce you know the pair, add to the policy:\n"
            "  catalog:\n    mutuallyExclusive:\n      - [PLAN_IN_THIS_LICENSE, CONFLICTING_PLAN]"
        )
    if s.error == "DependencyViolation":
        held = {name_key(p) for p in others} | {name_key(p) for p in mine}
        missing = [
            (r.plan, r.others)
            for r in table
            if r.kind == REQUIRES and name_key(r.plan) in {name_key(p) for p in mine}
            and not any(name_key(o) in held for o in r.others)
        ]
        if missing:
            snippet = "\n".join(f"      {p}: [{', '.join(o)}]" for p, o in missing)
            return (
                f"unpredicted {where}: " + ", ".join(f"{p} needs one of {', '.join(o)}" for p, o in missing)
                + f".\nTo have plan predict it, add to the policy:\n  catalog:\n    requires:\n{snippet}"
            )
        return (
            f"unpredicted {where}: one of its plans ({', '.join(mine)}) needs a plan the user does not have.\n"
            "Once you know which, add to the policy:\n  catalog:\n    requires:\n      DEPENDENT_PLAN: [PREREQUISITE_PLAN]"
        )
    if s.error == "ProhibitedInUsageLocationViolation":
        loc = user.usage_location or "the tenant's location"
        known_plans = [
            r.plan for r in table if r.kind == PROHIBITED_LOCATIONS and name_key(r.plan) in {name_key(p) for p in mine}
        ]
        plan = known_plans[0] if known_plans else "PLAN"
        return (
            f"unpredicted {where}: one of its plans ({', '.join(mine)}) is not available in {loc}.\n"
            f"To have plan predict it, add to the policy:\n  catalog:\n    prohibitedLocations:\n      {plan}: [{loc}]"
        )
    if s.error == "CountViolation":
        return f"unpredicted {where}: no seat was left (another assignment took it meanwhile); buy or free seats"
    if s.error == "UniquenessViolation":
        return f"unpredicted {where}: a proxy address of the user is also another object's; fix it, then reprocess"
    return f"unpredicted {where}: see `reconciler errors` for what it means and how to resolve it"


def expected_keys(plan: Plan, placeholders: Mapping[str, str]) -> dict[str, frozenset[StateKey]]:
    """user id -> the predicted states, with the ids of the groups apply created."""
    out: dict[str, frozenset[StateKey]] = {}
    for uid, states in plan.prediction.items():
        out[uid] = frozenset(
            (
                p.sku_id,
                placeholders.get(p.assigned_by_group, p.assigned_by_group) if p.assigned_by_group else None,
                p.state,
                p.error,
            )
            for p in states
        )
    return out


def verify(
    plan: Plan,
    users: Mapping[str, User],
    state: TenantState,
    placeholders: Mapping[str, str],
    *,
    only: Iterable[str] | None = None,
) -> list[Difference]:
    """Differences between the prediction and the users' recorded states (users in ``only``, else all
    predicted users), sorted by UPN."""
    names = _Names(state, placeholders)
    expected = expected_keys(plan, placeholders)
    out: list[Difference] = []
    for uid in sorted(set(only) if only is not None else set(expected)):
        if uid not in expected:
            continue
        want = expected[uid]
        user = users.get(uid)
        known = state.users.get(uid)
        upn = user.user_principal_name if user is not None else (known.user_principal_name if known else uid)
        if user is None:
            out.append(Difference(uid, upn, sorted(names.describe(k) for k in want), ["(the user no longer exists)"]))
            continue
        got = state_keys(user)
        if got == want:
            continue
        diff = Difference(uid, upn, sorted(names.describe(k) for k in want), sorted(names.describe(k) for k in got))
        for s in user.license_states:
            key = (s.sku_id, s.assigned_by_group, s.state, s.error)
            if key not in want and s.error != NO_ERROR:
                diff.explanations.append(_explain(names, user, s))
        out.append(diff)
    return sorted(out, key=lambda d: d.user.casefold())
