"""Waiting for Entra's asynchronous group processing (facts 2.1).

A 202 from a group's ``assignLicense`` (or a membership change of a licensed group) only queues
the group. ``wait_for_processing`` polls, with backoff:

1. the groups: ``GET /groups/{id}?$select=id,licenseProcessingState`` (batched) until every one
   says ``ProcessingComplete`` (or ``ProcessingFailed``, reported);
2. then the affected users: ``GET /users/{id}?$select=...licenseAssignmentStates`` (batched)
   until each one's states equal the expected ones, or no longer change between two reads.
   When many users are affected, listing every user (``$top=999``) is cheaper than reading them
   by id (``ceil(total/999)`` requests instead of ``ceil(n/20)`` $batch calls and n resource units):
   it is used then, as parallel listings split by the first character of userPrincipalName
   when there are many pages (as observe does; a wanted user none of them returned is read by
   id). Only what is looked at afterwards is selected (``WAIT_SELECT``: the states, the UPN and
   the usage location), not observe's whole ``USER_SELECT``. A user the caller takes over as it is
   (``handed_over``: apply reprocesses it next, and waits for it again) is not waited for.

It gives up at ``deadline`` and says what is still pending. Progress goes to stderr (rich) when
stderr is a terminal. The emulator's drain endpoint is for tests only: this module never calls it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from reconciler.errors import GraphError
from reconciler.graph.client import BATCH_SIZE, BatchRequest, GraphClient
from reconciler.graph.observe import PARTITION_PAGES, ProgressCallback, list_users_by_upn
from reconciler.state import User, user_from_graph

COMPLETE = "ProcessingComplete"
FAILED = "ProcessingFailed"

StateKey = tuple[str, str | None, str, str]  # sku id, group id (None: direct), state, error


def state_keys(user: User) -> frozenset[StateKey]:
    return frozenset((s.sku_id, s.assigned_by_group, s.state, s.error) for s in user.license_states)


@dataclass
class Poller:
    """Poll intervals with backoff: ``first``, then x``factor`` up to ``cap`` seconds."""

    first: float = 1.0
    factor: float = 1.5
    cap: float = 15.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _next: float = field(default=0.0, init=False)

    def reset(self) -> None:
        self._next = self.first

    def pause(self, deadline: float) -> bool:
        """Sleep the next interval (never past the deadline); False when the deadline has passed."""
        now = self.clock()
        if now >= deadline:
            return False
        if self._next <= 0:
            self._next = self.first
        self.sleep(min(self._next, max(0.0, deadline - now)))
        self._next = min(self.cap, self._next * self.factor)
        return True


@dataclass
class WaitResult:
    complete: bool
    pending_groups: list[str] = field(default_factory=list)  # group ids still processing
    failed_groups: list[str] = field(default_factory=list)  # ProcessingFailed
    pending_users: list[str] = field(default_factory=list)  # user ids still changing
    users: dict[str, User] = field(default_factory=dict)  # the last read of each user
    polls: int = 0


def read_group_states(client: GraphClient, group_ids: Iterable[str]) -> dict[str, str | None]:
    """group id -> licenseProcessingState.state (None when Graph gives none; missing when deleted)."""
    ids = sorted(set(group_ids))
    reqs = [BatchRequest(f"g{i}", "GET", f"/groups/{gid}?$select=id,licenseProcessingState") for i, gid in enumerate(ids)]
    out: dict[str, str | None] = {}
    for gid, req, res in zip(ids, reqs, client.batch(reqs), strict=True):
        if res.status == 404:
            continue
        body = client.check(req, res)
        state = body.get("licenseProcessingState") if isinstance(body, Mapping) else None
        out[gid] = str(state.get("state")) if isinstance(state, Mapping) and state.get("state") else None
    return out


LIST_ABOVE = 1000  # users read by id below this (at most 50 $batch calls): no $count needed

# What is looked at in a user read here (waiting, removing direct licenses, verifying, reprocess):
# the states, and the UPN and usage location for the report.
WAIT_SELECT = ("id", "userPrincipalName", "usageLocation", "licenseAssignmentStates")


def read_users(client: GraphClient, user_ids: Iterable[str], *, sample_upns: Sequence[str] = ()) -> dict[str, User]:
    """The users (with their licenseAssignmentStates), batched or, for many users, by listing every
    user when that takes fewer requests; users that no longer exist are left out. ``sample_upns``
    (UPNs of the tenant, e.g. the observed ones) balance the parallel listings."""
    ids = sorted(set(user_ids))
    if len(ids) > LIST_ABOVE:
        total = _user_count(client)
        if total is not None and math.ceil(total / client.page_size) < math.ceil(len(ids) / BATCH_SIZE):
            return _list_users(client, set(ids), total, sample_upns)
    return _read_by_id(client, ids)


def _read_by_id(client: GraphClient, ids: Sequence[str]) -> dict[str, User]:
    reqs = [
        BatchRequest(f"u{i}", "GET", f"/users/{quote(uid, safe='@')}?$select={','.join(WAIT_SELECT)}")
        for i, uid in enumerate(ids)
    ]
    out: dict[str, User] = {}
    for req, res in zip(reqs, client.batch(reqs), strict=True):
        if res.status == 404:
            continue
        user = user_from_graph(client.check(req, res))
        out[user.id] = user
    return out


def _keep(out: dict[str, User], page: Iterable[Mapping[str, Any]], wanted: set[str]) -> None:
    for raw in page:
        if str(raw.get("id") or "").lower() in wanted:
            user = user_from_graph(raw)
            out[user.id] = user


def _list_users(client: GraphClient, wanted: set[str], total: int, sample_upns: Sequence[str]) -> dict[str, User]:
    if math.ceil(total / client.page_size) > PARTITION_PAGES and client.max_concurrency > 1:
        by_upn = list_users_by_upn(client, sample_upns, WAIT_SELECT, lambda out, page: _keep(out, page, wanted))
        if by_upn is not None:
            listed = by_upn[0]
            # a wanted user that no listing returned: deleted meanwhile, or its UPN starts with a
            # character no listing asked for; read by id (a deleted one is a 404, left out)
            missing = sorted(wanted - set(listed))
            if missing:
                listed.update(_read_by_id(client, missing))
            return listed
    out: dict[str, User] = {}
    for page in client.iter_pages("/users", select=WAIT_SELECT):
        _keep(out, page, wanted)
    return out


def _user_count(client: GraphClient) -> int | None:
    try:
        return client.count("/users")
    except GraphError:
        return None


def wait_for_processing(
    client: GraphClient,
    group_ids: Iterable[str],
    user_ids: Iterable[str],
    *,
    deadline: float,
    expected: Mapping[str, frozenset[StateKey]] | None = None,
    poller: Poller | None = None,
    progress: ProgressCallback | None = None,
    sample_upns: Sequence[str] = (),
    handed_over: Callable[[User], bool] | None = None,
) -> WaitResult:
    """Poll the groups until processed, then the users until each one's states equal
    ``expected`` or read the same twice in a row; a user for which ``handed_over`` is true is
    not waited for here (the caller acts on it and waits again). ``sample_upns`` balance
    the listings of a large user read (``read_users``)."""
    poller = poller or Poller()
    poller.reset()
    groups = sorted(set(group_ids))
    users = sorted(set(user_ids))
    result = WaitResult(complete=False)
    # 1. groups
    stage = "Waiting for group license processing"
    while groups:
        result.polls += 1
        states = read_group_states(client, groups)
        pending = [g for g in groups if g in states and states[g] not in (COMPLETE, FAILED, None)]
        result.failed_groups = sorted(g for g in groups if states.get(g) == FAILED)
        if progress is not None:
            progress(stage, len(groups) - len(pending), len(groups))
        if not pending:
            break
        if not poller.pause(deadline):
            result.pending_groups = pending
            result.pending_users = users
            return result
    # 2. users
    stage = "Waiting for users' license states"
    poller.reset()
    previous: dict[str, frozenset[StateKey]] = {}
    todo = list(users)
    while todo:
        result.polls += 1
        got = read_users(client, todo, sample_upns=sample_upns)
        result.users.update(got)
        still: list[str] = []
        for uid in todo:
            user = got.get(uid)
            if user is None:
                continue  # deleted meanwhile: nothing to wait for
            keys = state_keys(user)
            if expected is not None and uid in expected and keys == expected[uid]:
                continue
            if handed_over is not None and handed_over(user):
                continue
            if previous.get(uid) == keys:
                continue
            previous[uid] = keys
            still.append(uid)
        if progress is not None:
            progress(stage, len(users) - len(still), len(users))
        todo = still
        if not todo:
            break
        if not poller.pause(deadline):
            result.pending_users = todo
            return result
    result.complete = True
    return result
