"""make_plan: policy + observed tenant -> Plan (resolve, diff, predict, safety).

    make_plan(policy, state, *, catalog=None, force=False, now=None) -> Plan

Order of the actions (the order apply runs them in): createGroup (by name); setUsageLocation
(by UPN, before any license is processed); addMember/removeMember (by group name, then UPN);
the groups' license actions (by group name, then SKU part number; one request per group);
removeDirectLicense (by SKU, then UPN); reprocess (by UPN) for users whose usage location
changes and whose groups the plan does not otherwise make Entra process again.

The same policy, tenant and clock give the same Plan, and so byte-identical renderings.
"""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Callable
from typing import Any

from reconciler import __version__
from reconciler.catalog import Catalog, load_catalog
from reconciler.plan import (
    EXISTING,
    FIXED,
    NEW,
    Action,
    GraphRequest,
    ObjectRef,
    ObserveScope,
    Plan,
    Violation,
)
from reconciler.planner.diff import Changes, diff, members_after
from reconciler.planner.predict import Prediction, predict
from reconciler.planner.resolve import Resolution, resolve
from reconciler.planner.safety import check_safety
from reconciler.policy.model import Policy
from reconciler.state import TenantState

Clock = Callable[[], dt.datetime]
_STATUS = {NEW: 0, EXISTING: 1, FIXED: 2}


def _created_at(now: dt.datetime | Clock | None) -> str:
    if now is None:
        value = dt.datetime.now(dt.UTC)
    elif isinstance(now, dt.datetime):
        value = now
    else:
        value = now()
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _touched(state: TenantState, changes: Changes) -> set[str]:
    """Users an action affects: its own user, members (before and after) of the groups the plan
    makes Entra process, users whose usage location or direct licenses change."""
    out: set[str] = set()
    for a in changes.actions:
        if a.user is not None and a.user.id:
            out.add(a.user.id)
    after = members_after(state, changes)
    for key in changes.processed_groups:
        out.update(after.get(key, ()))
        live = state.groups.get(key)
        if live is not None:
            out.update(live.member_user_ids)
    out.update(changes.usage_locations)
    out.update(changes.direct_removals)
    return out


def reevaluated(state: TenantState, changes: Changes) -> set[str]:
    """Users Entra re-evaluates because of the plan's own requests: every member (before and
    after) of a group whose licenses change; only those who join or leave a group whose
    membership alone changes; users whose direct licenses change (synchronously)."""
    out: set[str] = set()
    after = members_after(state, changes)
    for key in changes.group_licenses:
        out.update(after.get(key, ()))
        live = state.groups.get(key)
        if live is not None:
            out.update(live.member_user_ids)
    for key, members in changes.group_members.items():
        if key in changes.group_licenses:
            continue
        live = state.groups.get(key)
        if live is not None and (live.licenses or key in changes.group_licenses):
            out.update(set(live.member_user_ids).symmetric_difference(members))
    out.update(changes.direct_removals)
    return out


def _reprocess(state: TenantState, changes: Changes, pred: Prediction) -> list[Action]:
    """Users whose usage location changes, whose licensing the model says changes with it, and
    whom no other request of the plan makes Entra re-evaluate: reprocess them explicitly (after
    group processing; Entra does not re-evaluate licenses when only a user's location changes)."""
    again = reevaluated(state, changes)
    out = []
    for uid in changes.usage_locations:
        if uid in again or uid not in pred.changed:
            continue
        user = state.users[uid]
        out.append(
            Action(
                kind="reprocess",
                reason=f"usage location changes to {changes.usage_locations[uid]}; Entra re-evaluates "
                "the user's group licenses only when asked",
                request=GraphRequest("POST", f"/users/{uid}/reprocessLicenseAssignment"),
                user=ObjectRef(user.user_principal_name, uid),
                users=(user.user_principal_name,),
            )
        )
    return sorted(out, key=lambda a: a.users[0].casefold())


def violation_order(v: Violation) -> tuple[Any, ...]:
    return (
        _STATUS.get(v.status, 3),
        0 if v.blocking else 1,
        v.code,
        v.sku or "",
        v.group or "",
        v.message,
        v.users,
        str(v.source or ""),
    )


def make_plan(
    policy: Policy,
    state: TenantState,
    *,
    catalog: Catalog | None = None,
    force: bool = False,
    now: dt.datetime | Clock | None = None,
) -> Plan:
    """Plan the changes that make `state` match `policy`, with predicted license errors and
    safety checks. Raises WrongTenantError when the policy names another tenant.

    The cyclic garbage collector is paused meanwhile: planning allocates millions of small
    acyclic objects, and repeated full collections over a large tenant cost more than the work."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _make_plan(policy, state, catalog=catalog, force=force, now=now)
    finally:
        if gc_was_enabled:
            gc.enable()


def _make_plan(
    policy: Policy,
    state: TenantState,
    *,
    catalog: Catalog | None,
    force: bool,
    now: dt.datetime | Clock | None,
) -> Plan:
    catalog = catalog or load_catalog()
    res: Resolution = resolve(policy, state, catalog)
    changes = diff(policy, state, res, catalog)
    pred = predict(state, res, changes, catalog, _touched(state, changes))
    actions = [*changes.actions, *_reprocess(state, changes, pred)]
    violations = [
        *res.violations,
        *changes.violations,
        *pred.violations,
        *check_safety(policy, state, actions, pred.before, pred.after, pred.skus),
    ]
    return Plan(
        tool_version=__version__,
        tenant_id=state.organization.id,
        created_at=_created_at(now),
        policy_digest=policy.digest,
        state_fingerprint=state.fingerprint(),
        actions=tuple(actions),
        violations=tuple(sorted(violations, key=violation_order)),
        forced=force,
        prediction={uid: pred.states[uid] for uid in sorted(pred.states)},
        scope=_scope(policy),
    )


def _scope(policy: Policy) -> ObserveScope:
    """What observe_for read besides the licensed groups (apply reads it again)."""
    from reconciler.planner.run import policy_refs

    groups, users = policy_refs(policy)
    return ObserveScope(groups=tuple(groups), users=tuple(users))
