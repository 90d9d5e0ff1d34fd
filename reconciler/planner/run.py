"""The `plan` command's work, outside the CLI: read what the policy needs from the tenant, plan.

    policy_refs(policy) -> (group refs, user refs)
    observe_for(client, policy) -> TenantState
    observe_settled(client, policy, *, processing_wait) -> (TenantState, groups still processing)
    plan_tenant(policy, options, *, force=False, processing_wait=120) -> Plan   (connects read-only)

A group Entra is still processing (licenseProcessingState not ProcessingComplete, e.g. just after a
license change by hand) is about to change its members' license states: a plan made from that
half-processed tenant goes stale before `apply` (its state fingerprint no longer matches). So the
planner waits for such groups (bounded, `plan --processing-wait`), observes again, and when groups are
still processing after the bound, plans anyway with a `ProcessingPending` warning naming them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import time
from collections.abc import Callable

from reconciler.apply.wait import COMPLETE, FAILED, Poller, wait_for_processing
from reconciler.graph.client import GraphClient
from reconciler.graph.observe import ProgressCallback
from reconciler.plan import NEW, Plan, Violation
from reconciler.planner.build import make_plan
from reconciler.policy.model import Policy
from reconciler.state import TenantState


def policy_refs(policy: Policy) -> tuple[list[str], list[str]]:
    """The groups (names or ids) and users (UPNs or ids) the policy names."""
    groups = [g.group for g in policy.groups] + [r.value for r in policy.safety.protected]
    users: list[str] = []
    for g in policy.groups:
        users += [m.value for m in g.members or ()]
    users += [u.user for u in policy.usage_locations.users]
    return list(dict.fromkeys(groups)), list(dict.fromkeys(users))


def observe_for(client: GraphClient, policy: Policy) -> TenantState:
    """Read what a plan of `policy` depends on: organization and SKUs, the licensed groups and
    the groups the policy names with their members, the users the policy names, and every
    licensed user (seats and the maxRemovals percentage count them all)."""
    from reconciler.graph.observe import observe

    groups, users = policy_refs(policy)
    state = observe(client, group_refs=groups, user_refs=users, direct_licenses=True)
    return supplement(client, state)


def supplement(client: GraphClient, state: TenantState) -> TenantState:
    """Add what the prediction needs beyond the licensed and named groups, when observe left it
    out: the groups nested in them (with their user members, for `NestedGroup`) and the
    mail-enabled groups' addresses (a user whose proxy address is a group's gets neither license
    nor error: the silent failure)."""
    from urllib.parse import quote

    from reconciler.graph.client import BatchRequest
    from reconciler.graph.observe import GROUP_SELECT, USER_SELECT
    from reconciler.state import group_from_graph, user_from_graph

    nested = sorted({m for g in state.groups.values() for m in g.member_group_ids} - set(state.groups))
    mail_raw = [
        raw
        for raw in client.get_all("/groups", select=GROUP_SELECT, params={"$filter": "mailEnabled eq true"})
        if str(raw["id"]).lower() not in state.groups
    ]
    if not nested and not mail_raw:
        return state
    raw_groups: dict[str, dict[str, object]] = {}
    members: dict[str, list[str]] = {}
    if nested:
        reqs = [BatchRequest(f"g{i}", "GET", f"/groups/{gid}?$select={','.join(GROUP_SELECT)}") for i, gid in enumerate(nested)]
        for req, res in zip(reqs, client.batch(reqs), strict=True):
            if res.status == 404:
                continue
            raw = client.check(req, res)
            raw_groups[str(raw["id"]).lower()] = raw
        ids = sorted(raw_groups)
        got = client.batch_get_all(
            BatchRequest(f"m{i}", "GET", f"/groups/{gid}/members?$select=id&$top=999") for i, gid in enumerate(ids)
        )
        members = {gid: [str(m["id"]).lower() for m in got[f"m{i}"]] for i, gid in enumerate(ids)}
    users = dict(state.users)
    wanted = sorted({m for ms in members.values() for m in ms} - set(users))
    if wanted:
        reqs = [
            BatchRequest(f"u{i}", "GET", f"/users/{quote(uid)}?$select={','.join(USER_SELECT)}")
            for i, uid in enumerate(wanted)
        ]
        for req, res in zip(reqs, client.batch(reqs), strict=True):
            if res.status == 404:
                continue  # a nested group, device or service principal
            user = user_from_graph(client.check(req, res))
            users[user.id] = user
    user_ids = frozenset(users)
    groups = dict(state.groups)
    for gid, raw in raw_groups.items():
        groups[gid] = group_from_graph(raw, members.get(gid, ()), user_ids)
    for raw in mail_raw:
        gid = str(raw["id"]).lower()
        if gid not in groups:
            # addresses only: no members (a non-security group grants no license anyway)
            groups[gid] = group_from_graph(raw, (), user_ids)
    return TenantState.build(state.organization, state.skus.values(), users.values(), groups.values())


DEFAULT_PROCESSING_WAIT = 120.0  # seconds; `plan --processing-wait`


def processing_groups(state: TenantState) -> list[str]:
    """Ids of the observed groups Entra is still processing (neither complete, failed nor unknown)."""
    return sorted(g.id for g in state.groups.values() if g.processing_state not in (None, COMPLETE, FAILED))


def _names(state: TenantState, group_ids: list[str], limit: int = 10) -> str:
    names = [state.groups[g].display_name if g in state.groups else g for g in group_ids]
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {more} more" if more > 0 else "")


def _say_on_terminal(text: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def observe_settled(
    client: GraphClient,
    policy: Policy,
    *,
    processing_wait: float = DEFAULT_PROCESSING_WAIT,
    poller: Poller | None = None,
    progress: ProgressCallback | None = None,
    say: Callable[[str], None] = _say_on_terminal,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[TenantState, list[str]]:
    """Observe; while groups in the observed scope are still being processed and `processing_wait`
    seconds have not passed, wait for them (reconciler.apply.wait) and observe again.
    Returns the state and the ids of the groups still processing in it."""
    state = observe_for(client, policy)
    busy = processing_groups(state)
    if not busy or processing_wait <= 0:
        return state, busy
    deadline = clock() + processing_wait
    while busy:
        say(
            f"Entra is still processing {len(busy)} group(s) ({_names(state, busy)}); "
            f"waiting up to {max(0.0, deadline - clock()):.0f} s before planning (--processing-wait)"
        )
        outcome = wait_for_processing(client, busy, (), deadline=deadline, poller=poller, progress=progress)
        state = observe_for(client, policy)
        busy = processing_groups(state)
        if not outcome.complete or clock() >= deadline:
            break
    return state, busy


def processing_pending(state: TenantState, group_ids: list[str], waited: float) -> Violation:
    """The warning for a plan made while Entra was still processing `group_ids`."""
    waited_text = f"after waiting {waited:g} s " if waited > 0 else ""
    return Violation(
        code="ProcessingPending",
        severity="warning",
        group=state.groups[group_ids[0]].display_name if len(group_ids) == 1 and group_ids[0] in state.groups else None,
        message=(
            f"Entra was still processing {len(group_ids)} group(s) {waited_text}when this plan was made: "
            f"{_names(state, group_ids)}. Their members' license states are about to change, so this plan "
            "may go stale before apply (apply then refuses it, exit 4)."
        ),
        resolution=(
            "Re-plan once processing completes (licenseProcessingState ProcessingComplete), or give plan a "
            "longer --processing-wait."
        ),
        status=NEW,
    )


def plan_tenant(
    policy: Policy,
    options: object,
    *,
    force: bool = False,
    now: dt.datetime | Callable[[], dt.datetime] | None = None,
    processing_wait: float = DEFAULT_PROCESSING_WAIT,
    poller: Poller | None = None,
) -> Plan:
    """Connect read-only with `options` (reconciler.graph.connect.ConnectionOptions), observe (waiting
    up to `processing_wait` seconds for groups Entra is still processing), plan."""
    from reconciler.graph.connect import ConnectionOptions, connect
    from reconciler.graph.observe import rich_progress

    assert isinstance(options, ConnectionOptions)
    with connect(options, read_only=True) as client, rich_progress() as progress:
        state, busy = observe_settled(
            client, policy, processing_wait=processing_wait, poller=poller, progress=progress
        )
    plan = make_plan(policy, state, force=force, now=now)
    if busy:
        plan = dataclasses.replace(plan, violations=(*plan.violations, processing_pending(state, busy, processing_wait)))
    return plan
