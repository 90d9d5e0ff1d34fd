"""Read the live tenant into one immutable TenantState, in as few requests as Graph allows.

The plan (requests for a tenant of N users, G groups, L licensed/named groups):

1. one ``$batch``: organization, subscribedSkus, the first page of groups, the first page of
   users and ``users/$count`` (so the total is known);
2. the remaining group pages (``$top=999``), in parallel with
3. the members of the licensed and named groups: ``groups/{id}/members?$select=id&$top=999``
   through ``$batch`` (20 per call, several in flight), every ``@odata.nextLink`` batched too;
4. the users, decided by counting: list them all (``ceil(N/999)`` pages, started early when that
   is clearly cheaper) or fetch only the members needed (``ceil(M/20)`` batches) plus the holders
   of each SKU (``assignedLicenses/any``) to find users with direct licenses.

All reads carry ``$select``. Progress goes to stderr (rich) when stderr is a terminal.
"""

from __future__ import annotations

import gc
import math
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from queue import Queue
from typing import Any
from urllib.parse import quote

from reconciler.errors import GraphError
from reconciler.graph.client import PAGE_SIZE, BatchRequest, BatchResponse, GraphClient
from reconciler.state import (
    Organization,
    TenantState,
    User,
    group_from_graph,
    sku_from_graph,
    user_from_graph,
)

ORG_SELECT = ("id", "displayName", "countryLetterCode", "defaultUsageLocation", "verifiedDomains")
SKU_SELECT = (
    "id",
    "skuId",
    "skuPartNumber",
    "appliesTo",
    "capabilityStatus",
    "consumedUnits",
    "prepaidUnits",
    "servicePlans",
)
GROUP_SELECT = (
    "id",
    "displayName",
    "securityEnabled",
    "mailEnabled",
    "groupTypes",
    "membershipRule",
    "assignedLicenses",
    "licenseProcessingState",
    "mail",
    "proxyAddresses",
)
USER_SELECT = (
    "id",
    "userPrincipalName",
    "displayName",
    "mail",
    "usageLocation",
    "proxyAddresses",
    "assignedLicenses",
    "licenseAssignmentStates",
    "accountEnabled",
)
MEMBER_SELECT = ("id",)
EVENTUAL = {"ConsistencyLevel": "eventual"}

# Each page of a listing brings the nextLink of the next one, so one listing of N/999 pages is
# N/999 round trips in a row. Above this many remaining pages, the users are read as parallel
# listings instead, split by the first character of userPrincipalName.
PARTITION_PAGES = 8
# What a UPN may start with (its local part allows letters, digits and ' - _ ! # ^ ~); Graph
# compares case-insensitively. Anything else is caught by the count check and read in one chain.
UPN_FIRST_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789_-'!#^~"

ProgressCallback = Callable[[str, int, int | None], None]


def _q(path: str, select: Sequence[str], *, top: int | None = PAGE_SIZE, extra: str = "") -> str:
    query = f"$select={','.join(select)}"
    if top:
        query += f"&$top={top}"
    if extra:
        query += "&" + extra
    return f"{path}?{query}"


@dataclass
class ObservePlan:
    """What observe decided and why (exposed for tests and the benchmark)."""

    users_total: int | None = None
    users_needed: int | None = None
    user_strategy: str = ""  # "all" | "members"
    groups_total: int = 0
    groups_read: int = 0
    notes: list[str] = field(default_factory=list)


def organization_from_graph(org: Mapping[str, Any]) -> Organization:
    domains = org.get("verifiedDomains") or []
    initial = next((d["name"] for d in domains if d.get("isInitial")), None)
    return Organization(
        id=str(org["id"]).lower(),
        display_name=str(org.get("displayName") or ""),
        country_letter_code=org.get("countryLetterCode"),
        default_usage_location=org.get("defaultUsageLocation"),
        verified_domains=tuple(sorted(str(d["name"]).lower() for d in domains)),
        initial_domain=str(initial).lower() if initial else None,
    )


# --------------------------------------------------------------------------- progress


class _Progress:
    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._lock = threading.Lock()
        self._done: dict[str, int] = {}

    def set(self, stage: str, done: int, total: int | None) -> None:
        if self._callback is not None:
            with self._lock:
                self._done[stage] = done
                self._callback(stage, done, total)

    def add(self, stage: str, amount: int, total: int | None) -> None:
        if self._callback is not None:
            with self._lock:
                self._done[stage] = self._done.get(stage, 0) + amount
                self._callback(stage, self._done[stage], total)


@contextmanager
def rich_progress() -> Iterator[ProgressCallback | None]:
    """A progress callback drawing rich bars on stderr, or None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:

        def update(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


# --------------------------------------------------------------------------- observe


def observe(
    client: GraphClient,
    *,
    group_refs: Iterable[str] = (),
    user_refs: Iterable[str] = (),
    all_users: bool = False,
    all_groups: bool = False,
    direct_licenses: bool = True,
    progress: ProgressCallback | bool | None = None,
    plan: ObservePlan | None = None,
    partition_pages: int = PARTITION_PAGES,
) -> TenantState:
    """Read what a plan depends on. ``progress``: a callback, None (rich on a terminal) or False.
    ``partition_pages``: list the users as parallel listings when more pages than this remain."""
    with _gc_paused(), _progress_callback(progress) as callback:
        return _observe(
            client,
            group_refs,
            user_refs,
            all_users,
            all_groups,
            direct_licenses,
            _Progress(callback),
            plan or ObservePlan(),
            partition_pages,
        )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while the tenant is read: what is read is kept, and every
    full collection walked all of it again (a third of observe's CPU time at 100,000 users)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def _progress_callback(progress: ProgressCallback | bool | None) -> Iterator[ProgressCallback | None]:
    """``progress`` as observe takes it: None draws rich bars when stderr is a terminal."""
    if progress is None:
        with rich_progress() as callback:
            yield callback
    else:
        yield progress if callable(progress) else None


def _observe(
    client: GraphClient,
    group_refs: Iterable[str],
    user_refs: Iterable[str],
    all_users: bool,
    all_groups: bool,
    direct_licenses: bool,
    progress: _Progress,
    plan: ObservePlan,
    partition_pages: int,
) -> TenantState:
    group_refs = [g.strip() for g in group_refs if g.strip()]
    user_refs = [u.strip() for u in user_refs if u.strip()]

    # 1. one $batch for the fixed reads and the first pages
    first = [
        BatchRequest("org", "GET", _q("/organization", ORG_SELECT, top=None)),
        BatchRequest("skus", "GET", _q("/subscribedSkus", SKU_SELECT, top=None)),
        BatchRequest("groups", "GET", _q("/groups", GROUP_SELECT)),
        BatchRequest("users", "GET", _q("/users", USER_SELECT)),
        # the total on its own: $count=true on the listing would make every page count again
        BatchRequest("count", "GET", "/users/$count", headers=EVENTUAL),
    ]
    progress.set("Reading organization and SKUs", 0, 1)
    org_res, skus_res, groups_res, users_res, count_res = client.batch(first)
    org_body = client.check(first[0], org_res)
    orgs = org_body.get("value") if isinstance(org_body, Mapping) and "value" in org_body else [org_body]
    if not orgs:
        raise GraphError("GET /organization returned no organization")
    organization = organization_from_graph(orgs[0])
    skus = [sku_from_graph(s) for s in client.check(first[1], skus_res).get("value") or []]
    progress.set("Reading organization and SKUs", 1, 1)

    groups_page = client.check(first[2], groups_res)
    users_page = client.check(first[3], users_res)
    plan.users_total = _count(count_res)
    if plan.users_total is None:
        plan.notes.append("users/$count refused; the number of users is unknown")

    users: dict[str, User] = {}
    _add_users(users, users_page.get("value") or [])
    users_next = users_page.get("@odata.nextLink")

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="observe") as pool:
        listing: Future[None] | None = None

        def list_rest_of_users() -> None:
            total = plan.users_total
            if total is not None and remaining_pages is not None and remaining_pages > partition_pages:
                sample = [u.user_principal_name for u in users.values()]
                read = _list_users_partitioned(client, sample, total, progress, plan)
                if read is not None:
                    users.update(read)
                    return
            progress.set("Reading users", len(users), total)

            def consume(page: list[dict[str, Any]]) -> None:
                _add_users(users, page)
                progress.add("Reading users", len(page), total)

            _pipelined(client.iter_next_pages(users_next), consume)

        # start listing every user now when that is clearly the cheaper way (or asked for)
        licensed_estimate = max((s.consumed_units for s in skus), default=0)
        # pages are as large as the server makes them (999 on Graph)
        page_len = max(1, len(users)) if users_next else PAGE_SIZE
        remaining_pages = (
            math.ceil(max(0, plan.users_total - len(users)) / page_len)
            if plan.users_total is not None
            else None
        )
        if users_next and (
            all_users
            or (remaining_pages is not None and remaining_pages <= math.ceil(licensed_estimate / 20))
        ):
            plan.user_strategy = "all"
            listing = pool.submit(list_rest_of_users)
        elif not users_next:
            plan.user_strategy = "all"

        # 2. the remaining group pages
        raw_groups: dict[str, dict[str, Any]] = {}
        for raw in groups_page.get("value") or []:
            raw_groups[str(raw["id"]).lower()] = raw
        progress.set("Reading groups", len(raw_groups), None)
        for page in client.iter_next_pages(groups_page.get("@odata.nextLink")):
            for raw in page:
                raw_groups[str(raw["id"]).lower()] = raw
            progress.set("Reading groups", len(raw_groups), None)
        plan.groups_total = len(raw_groups)

        wanted_ids = _select_groups(raw_groups, group_refs, all_groups)
        plan.groups_read = len(wanted_ids)

        # 3. members of the groups that matter, through $batch
        members = _read_members(client, wanted_ids, progress)

        # 4. users: all of them, or the ones needed
        group_ids = set(raw_groups)
        needed: set[str] = set()
        for gid in wanted_ids:
            needed.update(m for m in members[gid] if m not in group_ids)
        if listing is None and users_next:
            missing = needed - set(users)
            ref_cost = math.ceil(len([r for r in user_refs if r.lower() not in users]) / 20)
            holders = (
                sum(math.ceil(s.consumed_units / page_len) for s in skus if s.consumed_units > 0)
                if direct_licenses
                else 0
            )
            partial = math.ceil(len(missing) / 20) + holders + ref_cost
            full = remaining_pages if remaining_pages is not None else math.inf
            plan.users_needed = len(needed)
            if all_users or full <= partial:
                plan.user_strategy = "all"
                list_rest_of_users()
            else:
                plan.user_strategy = "members"
                if direct_licenses and not _read_sku_holders(client, skus, users, progress):
                    plan.notes.append("assignedLicenses filter refused; listed every user instead")
                    plan.user_strategy = "all"
                    list_rest_of_users()
                else:
                    _read_users_by_id(client, sorted(needed - set(users)), users, progress)
        if listing is not None:
            listing.result()
        plan.users_needed = len(needed)

    # user references (UPN or id) not read yet
    if plan.user_strategy == "members":
        known_upns = {u.user_principal_name.lower() for u in users.values()}
        unresolved = [r for r in user_refs if r.lower() not in users and r.lower() not in known_upns]
        _read_users_by_id(client, unresolved, users, progress)

    # keep what the plan depends on
    if all_users:
        kept_users = list(users.values())
    else:
        keep_ids = needed | _direct_holders(users) | _referenced(users, user_refs)
        kept_users = [u for uid, u in users.items() if uid in keep_ids]
    user_ids = frozenset(users)
    groups = [group_from_graph(raw_groups[gid], members[gid], user_ids) for gid in wanted_ids]
    return TenantState.build(organization, skus, kept_users, groups)


def _select_groups(
    raw_groups: Mapping[str, Mapping[str, Any]], refs: Sequence[str], all_groups: bool
) -> list[str]:
    by_name: dict[str, list[str]] = {}
    for gid, raw in raw_groups.items():
        by_name.setdefault(str(raw.get("displayName") or "").lower(), []).append(gid)
    wanted: set[str] = set()
    for gid, raw in raw_groups.items():
        if all_groups or raw.get("assignedLicenses"):
            wanted.add(gid)
    for ref in refs:
        low = ref.lower()
        if low in raw_groups:
            wanted.add(low)
        wanted.update(by_name.get(low, ()))
    return sorted(wanted)


def _read_members(client: GraphClient, group_ids: Sequence[str], progress: _Progress) -> dict[str, list[str]]:
    if not group_ids:
        return {}
    total = len(group_ids)
    progress.set("Reading group members", 0, total)
    requests = [
        BatchRequest(f"m{i}", "GET", _q(f"/groups/{gid}/members", MEMBER_SELECT))
        for i, gid in enumerate(group_ids)
    ]
    out = client.batch_get_all(requests)
    progress.set("Reading group members", total, total)
    return {gid: [str(m["id"]).lower() for m in out[f"m{i}"]] for i, gid in enumerate(group_ids)}


def _read_users_by_id(
    client: GraphClient,
    refs: Sequence[str],
    users: dict[str, User],
    progress: _Progress,
    *,
    tolerate_missing: bool = True,
) -> None:
    if not refs:
        return
    reqs = [
        BatchRequest(f"u{i}", "GET", _q(f"/users/{quote(ref, safe='@')}", USER_SELECT, top=None))
        for i, ref in enumerate(refs)
    ]
    progress.set("Reading users", 0, len(reqs))
    responses: list[BatchResponse] = client.batch(reqs)
    for req, res in zip(reqs, responses, strict=True):
        if res.status == 404 and tolerate_missing:
            continue  # a member that is not a user (device, service principal), or an unknown reference
        _add_users(users, [client.check(req, res)])
    progress.set("Reading users", len(reqs), len(reqs))


def _read_sku_holders(
    client: GraphClient, skus: Sequence[Any], users: dict[str, User], progress: _Progress
) -> bool:
    """Users holding each SKU (to find direct assignments). False if Graph refuses the filter."""
    reqs = [
        BatchRequest(
            f"s{i}",
            "GET",
            _q(
                "/users",
                USER_SELECT,
                extra="$filter=" + quote(f"assignedLicenses/any(x:x/skuId eq {s.sku_id})"),
            ),
        )
        for i, s in enumerate(skus)
        if s.consumed_units > 0
    ]
    if not reqs:
        return True
    progress.set("Reading licensed users", 0, len(reqs))
    try:
        out = client.batch_get_all(reqs)
    except GraphError as exc:
        if exc.status == 400:
            return False
        raise
    for values in out.values():
        _add_users(users, values)
    progress.set("Reading licensed users", len(reqs), len(reqs))
    return True


def user_partitions(sample_upns: Iterable[str], chains: int) -> list[tuple[str, ...]]:
    """First characters of userPrincipalName dealt over ``chains`` listings, balanced by how
    often each starts the UPNs of ``sample_upns`` (the first page: users in id order, so a fair
    sample). Every character of UPN_FIRST_CHARACTERS and of the sample is in one listing."""
    weight: dict[str, float] = dict.fromkeys(UPN_FIRST_CHARACTERS, 0.1)
    for upn in sample_upns:
        first = upn[:1].lower()
        if first:
            weight[first] = weight.get(first, 0.1) + 1.0
    chains = max(1, min(chains, len(weight)))
    load = [0.0] * chains
    parts: list[list[str]] = [[] for _ in range(chains)]
    for char in sorted(weight, key=lambda c: (-weight[c], c)):
        lightest = min(range(chains), key=lambda i: (load[i], i))
        parts[lightest].append(char)
        load[lightest] += weight[char]
    return [tuple(sorted(p)) for p in parts]


def upn_prefix_filter(chars: Iterable[str]) -> str:
    return " or ".join(f"startswith(userPrincipalName,'{c.replace(chr(39), chr(39) * 2)}')" for c in chars)


PageReader = Callable[[dict[str, User], list[dict[str, Any]]], None]


def list_users_by_upn(
    client: GraphClient, sample_upns: Sequence[str], select: Sequence[str], read_page: PageReader
) -> tuple[dict[str, User], int] | None:
    """Users from parallel listings split by the first character of their UPN (as many as the
    client's concurrency, balanced on ``sample_upns``); ``read_page(users, page)`` keeps what it
    wants of each page. Returns the users and the number of listings, or None when Graph refuses
    the filter. The caller checks completeness: a UPN may start with a character none asked for."""
    parts = user_partitions(sample_upns, client.max_concurrency)

    def listing(chars: tuple[str, ...]) -> dict[str, User]:
        read: dict[str, User] = {}
        params = {"$filter": upn_prefix_filter(chars)}
        for page in client.iter_pages("/users", select=select, params=params):
            read_page(read, page)
        return read

    out: dict[str, User] = {}
    try:
        with ThreadPoolExecutor(max_workers=len(parts), thread_name_prefix="users-by-upn") as pool:
            for part in pool.map(listing, parts):
                out.update(part)
    except GraphError as exc:
        if exc.status == 400:
            return None
        raise
    return out, len(parts)


def _list_users_partitioned(
    client: GraphClient, sample_upns: Sequence[str], total: int, progress: _Progress, plan: ObservePlan
) -> dict[str, User] | None:
    """Every user, through list_users_by_upn. None when Graph refuses the filter or the listings
    do not add up to ``users/$count``: the caller then lists in one chain."""
    progress.set("Reading users", 0, total)

    def read_page(users: dict[str, User], page: list[dict[str, Any]]) -> None:
        _add_users(users, page)
        progress.add("Reading users", len(page), total)

    listed = list_users_by_upn(client, sample_upns, USER_SELECT, read_page)
    if listed is None:
        plan.notes.append("the userPrincipalName startswith filter was refused; listed the users in one chain")
        return None
    read, listings = listed
    if len(read) != total:
        plan.notes.append(
            f"the listings by UPN held {len(read)} users, users/$count says {total}; listed the users in one chain"
        )
        return None
    plan.notes.append(f"users listed as {listings} parallel listings by UPN")
    return read


def _pipelined(
    pages: Iterator[list[dict[str, Any]]], consume: Callable[[list[dict[str, Any]]], None]
) -> None:
    """Fetch the next page while the previous one is parsed: the pages of a listing follow each
    other (each nextLink comes with the page before), so parsing must stay off that path."""
    queue: Queue[list[dict[str, Any]] | None] = Queue(maxsize=4)
    failure: list[BaseException] = []

    def worker() -> None:
        while (page := queue.get()) is not None:
            if not failure:
                try:
                    consume(page)
                except BaseException as exc:
                    failure.append(exc)

    thread = threading.Thread(target=worker, name="observe-parse", daemon=True)
    thread.start()
    try:
        for page in pages:
            queue.put(page)
            if failure:
                break
    finally:
        queue.put(None)
        thread.join()
    if failure:
        raise failure[0]


def _add_users(users: dict[str, User], raws: Iterable[Mapping[str, Any]]) -> None:
    """Parse users as their pages arrive (keeps memory to the parsed objects; users with the same
    license states share one parsed copy of them, see state.user_from_graph)."""
    for raw in raws:
        user = user_from_graph(raw)
        users[user.id] = user


def _count(response: BatchResponse) -> int | None:
    if not response.ok:
        return None
    try:
        return int(str(response.body).strip())
    except ValueError:
        return None


def _direct_holders(users: Mapping[str, User]) -> set[str]:
    return {uid for uid, user in users.items() if user.direct_licenses}


def _referenced(users: Mapping[str, User], refs: Sequence[str]) -> set[str]:
    lows = {r.lower() for r in refs}
    return {uid for uid, user in users.items() if uid in lows or user.user_principal_name.lower() in lows}
