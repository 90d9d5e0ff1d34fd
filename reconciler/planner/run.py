"""The `plan` command's work, outside the CLI: read what the policy needs from the tenant, plan.

    policy_refs(policy) -> (group refs, user refs)
    observe_for(client, policy) -> TenantState
    plan_tenant(policy, options, *, force=False) -> Plan      (connects read-only)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from reconciler.graph.client import GraphClient
from reconciler.plan import Plan
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


def plan_tenant(
    policy: Policy,
    options: object,
    *,
    force: bool = False,
    now: dt.datetime | Callable[[], dt.datetime] | None = None,
) -> Plan:
    """Connect read-only with `options` (reconciler.graph.connect.ConnectionOptions), observe, plan."""
    from reconciler.graph.connect import ConnectionOptions, connect

    assert isinstance(options, ConnectionOptions)
    with connect(options, read_only=True) as client:
        state = observe_for(client, policy)
    return make_plan(policy, state, force=force, now=now)
