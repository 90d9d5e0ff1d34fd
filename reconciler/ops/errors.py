"""`reconciler errors`: every user in error, why, and what to do; and the silent failures.

    find_errors(client, group=None) -> ErrorsReport         (read-only Graph reads, below)
    collect_errors(state, in_error, holders, group=None) -> ErrorsReport   (pure)
    silent_candidates(state, group=None) -> list[SilentCandidate]          (pure)
    render_errors(report, fmt) -> str                       text | markdown | json | csv

Graph reads (facts 1.5, 3.4): the tenant as `plan` observes it (organization, SKUs, licensed groups
and their members, the mail-enabled groups' addresses); `GET /groups?$filter=hasMembersWithLicenseErrors
eq true`; each such group's `membersWithLicenseErrors` (batched, with the users' license states); and,
for the silent failures, `users` and `groups` filtered on `proxyAddresses/any(...)` for each address of
the users concerned (batched) to name the other object that holds it.

A silent failure is a direct user member of a licensed security group whose processing is complete
and who holds, for some SKU of the group, neither the group's assignment nor an error for it: what
Entra does when a proxy address of the user belongs to a group or contact (facts 2.16; sample tenant e').
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from reconciler import licensing
from reconciler.errors import UsageError
from reconciler.graph.client import BatchRequest, GraphClient
from reconciler.ops.explain import SILENT_MEANING, Explainer, meaning
from reconciler.ops.output import check_format, md_table, plural, to_csv, to_json
from reconciler.state import Group, TenantState, User, user_from_graph

PROCESSING_COMPLETE = "ProcessingComplete"
ERROR_USER_SELECT = (
    "id",
    "userPrincipalName",
    "displayName",
    "usageLocation",
    "proxyAddresses",
    "licenseAssignmentStates",
)


@dataclass(frozen=True)
class LicenseError:
    """One user's error on one SKU from one group."""

    user_id: str
    user: str  # UPN
    code: str
    sku_id: str
    sku: str  # part number
    group_id: str | None
    group: str  # display name ("direct assignment" when assignedByGroup is null)
    state: str  # Error | ActiveWithError
    meaning: str
    detail: str
    resolution: str
    failed_sibling: str | None = None  # for Other: the part number(s) of the group's SKU that failed


@dataclass(frozen=True)
class SilentFailure:
    """A member that should hold a group's license and holds neither it nor an error."""

    user_id: str
    user: str
    group_id: str
    group: str
    skus: tuple[str, ...]  # part numbers missing
    holders: tuple[str, ...]  # "address: user x" / "address: group y" (the other objects)
    meaning: str
    detail: str
    resolution: str


@dataclass(frozen=True)
class ErrorGroup:
    id: str
    name: str
    users: int  # members in error


@dataclass(frozen=True)
class NestedGroup:
    """A group nested in a licensed group: group licensing ignores it (facts 2.3), so its members
    who are not direct members of the licensed group get nothing from it (and no error)."""

    group_id: str
    group: str  # the licensed group
    nested: tuple[str, ...]  # display names of the nested groups
    users: tuple[str, ...]  # UPNs left without the licensed group's licenses


@dataclass(frozen=True)
class SilentCandidate:
    user_id: str
    group_id: str
    sku_ids: tuple[str, ...]


@dataclass
class ErrorsReport:
    groups: list[ErrorGroup] = field(default_factory=list)
    errors: list[LicenseError] = field(default_factory=list)
    silent: list[SilentFailure] = field(default_factory=list)
    pending_groups: list[str] = field(default_factory=list)  # licensed groups still processing
    nested: list[NestedGroup] = field(default_factory=list)  # informational: not counted as errors
    requests: int | None = None  # HTTP requests sent (when read from Graph)

    @property
    def found(self) -> bool:
        return bool(self.errors or self.silent)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": {
                "groupsWithErrors": len(self.groups),
                "usersInError": len({e.user_id for e in self.errors}),
                "errors": len(self.errors),
                "silentFailures": len(self.silent),
            },
            "groups": [{"id": g.id, "displayName": g.name, "usersInError": g.users} for g in self.groups],
            "errors": [
                {
                    "user": e.user,
                    "userId": e.user_id,
                    "code": e.code,
                    "sku": e.sku,
                    "skuId": e.sku_id,
                    "group": e.group,
                    "groupId": e.group_id,
                    "state": e.state,
                    "meaning": e.meaning,
                    "detail": e.detail,
                    "resolution": e.resolution,
                    **({"failedSibling": e.failed_sibling} if e.failed_sibling else {}),
                }
                for e in self.errors
            ],
            "silentFailures": [
                {
                    "user": s.user,
                    "userId": s.user_id,
                    "group": s.group,
                    "groupId": s.group_id,
                    "skus": list(s.skus),
                    "sameProxyAddress": list(s.holders),
                    "meaning": s.meaning,
                    "detail": s.detail,
                    "resolution": s.resolution,
                }
                for s in self.silent
            ],
            "pendingGroups": list(self.pending_groups),
            "nestedGroups": [
                {"group": n.group, "groupId": n.group_id, "nested": list(n.nested), "users": list(n.users)}
                for n in self.nested
            ],
        }


# --------------------------------------------------------------------------- pure part


def smtp_of(proxy_addresses: Iterable[str]) -> list[str]:
    """The SMTP addresses (lower case, no prefix) of a proxyAddresses list, in order."""
    out: list[str] = []
    for p in proxy_addresses:
        kind, _, address = str(p).partition(":")
        if kind.lower() == "smtp" and address and address.lower() not in out:
            out.append(address.lower())
    return out


def _select_group(state: TenantState, group: str | None) -> Group | None:
    if group is None:
        return None
    text = group.strip()
    found = state.groups.get(text.lower())
    if found is not None:
        return found
    named = [g for g in state.groups.values() if g.display_name.casefold() == text.casefold()]
    if not named:
        raise UsageError(f"--group {group}: no group with this display name or id in the tenant")
    if len(named) > 1:
        ids = ", ".join(g.id for g in named)
        raise UsageError(f"--group {group}: several groups have this display name ({ids}); give the object id")
    return named[0]


def silent_candidates(state: TenantState, group: str | None = None) -> list[SilentCandidate]:
    """Direct user members of licensed security groups (processing complete) holding, for a SKU of
    the group, neither the group's assignment nor an error state."""
    only = _select_group(state, group)
    out: list[SilentCandidate] = []
    users = state.users
    # (group, SKU) pairs of each distinct tuple of license states (observe shares one tuple between
    # users whose states are equal); keyed by identity: every tuple stays alive in `state`
    held: dict[int, frozenset[tuple[str | None, str]]] = {}
    for g in sorted(state.groups.values(), key=lambda g: (g.display_name.casefold(), g.id)):
        if only is not None and g.id != only.id:
            continue
        if not g.licenses or not g.security_enabled:
            continue
        if g.processing_state not in (None, PROCESSING_COMPLETE):
            continue
        gid = g.id
        wanted = [(gid, lic.sku_id) for lic in g.licenses]
        for uid in g.member_user_ids:
            user = users.get(uid)
            if user is None:
                continue
            states = user.license_states
            have = held.get(id(states))
            if have is None:
                have = held[id(states)] = frozenset((s.assigned_by_group, s.sku_id) for s in states)
            if have.issuperset(wanted):
                continue
            out.append(SilentCandidate(uid, gid, tuple(key[1] for key in wanted if key not in have)))
    return out


def nested_groups(state: TenantState, group: str | None = None) -> list[NestedGroup]:
    only = _select_group(state, group)
    out: list[NestedGroup] = []
    for g in sorted(state.groups.values(), key=lambda g: (g.display_name.casefold(), g.id)):
        if (only is not None and g.id != only.id) or not g.licenses or not g.security_enabled:
            continue
        if not g.member_group_ids:
            continue
        direct = set(g.member_user_ids)
        names: list[str] = []
        users: set[str] = set()
        for nid in g.member_group_ids:
            ng = state.groups.get(nid)
            names.append(ng.display_name if ng is not None else nid)
            if ng is not None:
                users.update(
                    state.users[u].user_principal_name for u in ng.member_user_ids if u not in direct and u in state.users
                )
        out.append(
            NestedGroup(g.id, g.display_name, tuple(sorted(names, key=str.casefold)), tuple(sorted(users, key=str.casefold)))
        )
    return out


def pending_groups(state: TenantState) -> list[str]:
    return sorted(
        (
            g.display_name
            for g in state.groups.values()
            if g.licenses and g.security_enabled and g.processing_state not in (None, PROCESSING_COMPLETE)
        ),
        key=str.casefold,
    )


def _others(user: User, holders: Mapping[str, Sequence[str]]) -> list[str]:
    """"address: user x" / "address: group y" for the other objects holding the user's addresses."""
    found: list[str] = []
    for address in smtp_of(user.proxy_addresses):
        for holder in holders.get(address, ()):
            if holder != f"user {user.user_principal_name}":
                found.append(f"{address}: {holder}")
    return found


def collect_errors(
    state: TenantState,
    in_error: Mapping[str, Sequence[User]],
    holders: Mapping[str, Sequence[str]],
    group: str | None = None,
    *,
    explainer: Explainer | None = None,
    candidates: Sequence[SilentCandidate] | None = None,
) -> ErrorsReport:
    """The report from what Graph returned.

    `in_error`: group id -> the users `membersWithLicenseErrors` lists (with their license states);
    `holders`: SMTP address -> the objects holding it ("user upn" / "group name"), as found by the
    proxyAddresses search; `candidates`: silent_candidates(state, group) when already worked out.
    """
    only = _select_group(state, group)
    made: list[Explainer] = [explainer] if explainer is not None else []

    def explain() -> Explainer:
        """Made on first use: it runs the predictor over the tenant (about a second on 100,000
        users), which a tenant with nothing to explain does without."""
        if not made:
            made.append(Explainer(state))
        return made[0]

    def part(sku_id: str) -> str:
        sku = state.skus.get(sku_id)
        return sku.part_number if sku is not None else sku_id

    def gname(gid: str | None) -> str:
        if gid is None:
            return "direct assignment"
        g = state.groups.get(gid)
        return g.display_name if g is not None else gid

    report = ErrorsReport(pending_groups=pending_groups(state), nested=nested_groups(state, group))
    seen: set[tuple[str, str, str | None, str]] = set()
    # membersWithLicenseErrors lists current members only; a user who left a group and keeps its
    # license in error (DependencyViolation on removal, facts 2.9) is found among the observed users
    sources: dict[str, list[User]] = {gid: list(users) for gid, users in in_error.items()}
    listed: dict[str, set[str]] = {gid: {u.id for u in users} for gid, users in sources.items()}
    # the groups each distinct tuple of license states has an error from (by identity, as above)
    failing: dict[int, list[str]] = {}
    for user in state.users.values():
        states = user.license_states
        gids = failing.get(id(states))
        if gids is None:
            gids = failing[id(states)] = [
                st.assigned_by_group
                for st in states
                if st.error != licensing.NO_ERROR and st.assigned_by_group is not None
            ]
        for gid in gids:
            ids = listed.setdefault(gid, set())
            if user.id not in ids:
                ids.add(user.id)
                sources.setdefault(gid, []).append(user)
    for gid in sorted(sources, key=lambda k: (gname(k).casefold(), k)):
        if only is not None and gid != only.id:
            continue
        users_in_error: set[str] = set()
        for user in sources[gid]:
            for st in user.license_states:
                if st.error == licensing.NO_ERROR or st.assigned_by_group != gid:
                    continue
                key = (user.id, st.sku_id, st.assigned_by_group, st.error)
                if key in seen:
                    continue
                seen.add(key)
                users_in_error.add(user.id)
                sibling = None
                if st.error == licensing.OTHER:
                    failed = sorted(
                        {
                            part(o.sku_id)
                            for o in user.license_states
                            if o.assigned_by_group == gid
                            and o.sku_id != st.sku_id
                            and o.error not in (licensing.NO_ERROR, licensing.OTHER)
                        }
                    )
                    sibling = ", ".join(failed) or None
                why = explain().error(st.error, st.sku_id, gid, user.id)
                resolution = why.resolution
                if st.error == licensing.UNIQUENESS_VIOLATION:
                    others = _others(user, holders)
                    if others:
                        resolution = (
                            f"fix the duplicate proxy address ({'; '.join(others)}): remove it from the other "
                            "object or from the user, then reprocess the user"
                        )
                report.errors.append(
                    LicenseError(
                        user_id=user.id,
                        user=user.user_principal_name,
                        code=st.error,
                        sku_id=st.sku_id,
                        sku=part(st.sku_id),
                        group_id=gid,
                        group=gname(gid),
                        state=st.state,
                        meaning=meaning(st.error),
                        detail=why.detail,
                        resolution=resolution,
                        failed_sibling=sibling,
                    )
                )
        if users_in_error:
            report.groups.append(ErrorGroup(gid, gname(gid), len(users_in_error)))
    report.errors.sort(key=lambda e: (e.group.casefold(), e.user.casefold(), e.sku, e.code))

    for cand in silent_candidates(state, group) if candidates is None else candidates:
        user = state.users[cand.user_id]
        found = _others(user, holders)
        why = explain().silent(cand.group_id, cand.user_id)
        resolution = why.resolution
        if found:
            resolution = (
                f"fix the duplicate proxy address ({'; '.join(found)}): remove it from the other object or "
                "from the user, then reprocess the user"
            )
        report.silent.append(
            SilentFailure(
                user_id=user.id,
                user=user.user_principal_name,
                group_id=cand.group_id,
                group=gname(cand.group_id),
                skus=tuple(part(s) for s in cand.sku_ids),
                holders=tuple(found),
                meaning=SILENT_MEANING if found else "no license and no error state for this group's products",
                detail=(
                    f"member of {gname(cand.group_id)} but holds neither its "
                    f"{', '.join(part(s) for s in cand.sku_ids)} nor an error"
                ),
                resolution=resolution if found else "reprocess the user; if nothing changes, check the "
                "user's proxy addresses against every group and contact",
            )
        )
    return report


# --------------------------------------------------------------------------- Graph


def _odata_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def read_holders(client: GraphClient, addresses: Sequence[str]) -> dict[str, list[str]]:
    """For each SMTP address, the users and groups whose proxyAddresses hold it (two filtered reads
    per address, batched)."""
    reqs: list[BatchRequest] = []
    for i, address in enumerate(addresses):
        flt = quote(f"proxyAddresses/any(x:x eq {_odata_string('smtp:' + address)})")
        reqs.append(BatchRequest(f"u{i}", "GET", f"/users?$filter={flt}&$select=id,userPrincipalName"))
        reqs.append(BatchRequest(f"g{i}", "GET", f"/groups?$filter={flt}&$select=id,displayName,mail"))
    if not reqs:
        return {}
    got = client.batch_get_all(reqs)
    out: dict[str, list[str]] = {}
    for i, address in enumerate(addresses):
        found = [f"user {u.get('userPrincipalName') or u.get('id')}" for u in got[f"u{i}"]]
        found += [f"group {g.get('displayName') or g.get('id')}" for g in got[f"g{i}"]]
        out[address] = found
    return out


def _read_errors(
    client: GraphClient, state: TenantState, group: str | None, only: Group | None
) -> tuple[dict[str, list[User]], list[SilentCandidate], dict[str, list[str]]]:
    """The groups' members in error, the silent candidates, and the holders of their addresses."""
    if only is not None:
        error_groups = [only.id]
    else:
        raw = client.get_all(
            "/groups", select=("id", "displayName"), params={"$filter": "hasMembersWithLicenseErrors eq true"}
        )
        error_groups = sorted(str(g["id"]).lower() for g in raw)
    members = client.batch_get_all(
        BatchRequest(
            f"e{i}",
            "GET",
            f"/groups/{gid}/membersWithLicenseErrors?$select={','.join(ERROR_USER_SELECT)}&$top=999",
        )
        for i, gid in enumerate(error_groups)
    )
    in_error = {
        gid: [user_from_graph(raw) for raw in members[f"e{i}"] if raw.get("userPrincipalName") is not None]
        for i, gid in enumerate(error_groups)
    }
    candidates = silent_candidates(state, group)
    addresses = {a for c in candidates for a in smtp_of(state.users[c.user_id].proxy_addresses)}
    for users in in_error.values():
        for user in users:
            if any(s.error == licensing.UNIQUENESS_VIOLATION for s in user.license_states):
                addresses.update(smtp_of(user.proxy_addresses))
    holders = read_holders(client, sorted(addresses))
    return in_error, candidates, holders


def find_errors(client: GraphClient, group: str | None = None, *, progress: bool | None = None) -> ErrorsReport:
    """Read the tenant (read-only) and build the errors report."""
    from reconciler.graph.observe import observe
    from reconciler.planner.run import supplement

    before = client.stats.requests
    state = observe(
        client,
        group_refs=[group] if group else [],
        direct_licenses=True,
        progress=None if progress is None else (None if progress else False),
    )
    state = supplement(client, state)
    only = _select_group(state, group)
    in_error, candidates, holders = _read_errors(client, state, group, only)
    report = collect_errors(state, in_error, holders, group, candidates=candidates)
    report.requests = client.stats.requests - before
    return report


# --------------------------------------------------------------------------- rendering


def _summary(report: ErrorsReport) -> str:
    nested = f"; {plural(len(report.nested), 'nested group')} ignored by group licensing" if report.nested else ""
    if not report.found:
        return "no license errors and no silent failures" + nested
    users = len({e.user_id for e in report.errors})
    return (
        f"{plural(len(report.groups), 'group')} with members in error, {plural(users, 'user')} in error "
        f"({plural(len(report.errors), 'error')}), {plural(len(report.silent), 'silent failure')}" + nested
    )


def render_text(report: ErrorsReport) -> str:
    out: list[str] = []
    by_group: dict[str, list[LicenseError]] = {}
    for e in report.errors:
        by_group.setdefault(e.group_id or "", []).append(e)
    for g in report.groups:
        out.append(f"{g.name} ({g.id}): {plural(g.users, 'member')} in error")
        for e in by_group.get(g.id, ()):
            out.append(f"  {e.user}: {e.code} on {e.sku} ({e.state})")
            out.append(f"      means:  {e.meaning}")
            if e.failed_sibling:
                out.append(f"      failed: {e.failed_sibling} in the same group")
            if e.detail:
                out.append(f"      why:    {e.detail}")
            out.append(f"      do:     {e.resolution}")
        out.append("")
    if report.silent:
        out.append("Silent failures (members that hold neither the group's license nor an error):")
        for s in report.silent:
            out.append(f"  {s.user}: no {', '.join(s.skus)} from {s.group}")
            out.append(f"      means:  {s.meaning}")
            for h in s.holders:
                out.append(f"      same proxy address: {h}")
            out.append(f"      do:     {s.resolution}")
        out.append("")
    if report.nested:
        out.append("Nested groups (group licensing ignores them; their members get nothing from the group):")
        for n in report.nested:
            who = ", ".join(n.users) if n.users else "no user outside the group's direct members"
            out.append(f"  {n.group} contains {', '.join(n.nested)}: {who}")
            out.append(
                f"      do:     add the users as direct members of {n.group}, or license the nested group itself"
            )
        out.append("")
    if report.pending_groups:
        out.append(
            "Still processing (not checked for silent failures): " + ", ".join(report.pending_groups)
        )
        out.append("")
    out.append(_summary(report) + ".")
    return "\n".join(out) + "\n"


def render_markdown(report: ErrorsReport) -> str:
    out = ["## License errors", "", _summary(report) + ".", ""]
    if report.errors:
        out += md_table(
            ("Group", "User", "Code", "SKU", "Means", "Why", "What to do"),
            (
                (
                    e.group,
                    e.user,
                    e.code,
                    e.sku + (f" (failed: {e.failed_sibling})" if e.failed_sibling else ""),
                    e.meaning,
                    e.detail,
                    e.resolution,
                )
                for e in report.errors
            ),
        )
        out.append("")
    if report.silent:
        out += ["### Silent failures", ""]
        out += md_table(
            ("Group", "User", "SKUs", "Same proxy address", "What to do"),
            ((s.group, s.user, ", ".join(s.skus), "; ".join(s.holders), s.resolution) for s in report.silent),
        )
        out.append("")
    if report.nested:
        out += ["### Nested groups (ignored by group licensing)", ""]
        out += md_table(
            ("Licensed group", "Nested groups", "Users left without its licenses"),
            ((n.group, ", ".join(n.nested), ", ".join(n.users)) for n in report.nested),
        )
        out.append("")
    if report.pending_groups:
        out += [f"Still processing: {', '.join(report.pending_groups)}", ""]
    return "\n".join(out)


CSV_HEADER = (
    "kind",
    "group",
    "groupId",
    "user",
    "userId",
    "code",
    "sku",
    "state",
    "failedSibling",
    "sameProxyAddress",
    "meaning",
    "detail",
    "resolution",
)


def render_csv(report: ErrorsReport) -> str:
    rows: list[list[Any]] = [
        [
            "error",
            e.group,
            e.group_id,
            e.user,
            e.user_id,
            e.code,
            e.sku,
            e.state,
            e.failed_sibling,
            "",
            e.meaning,
            e.detail,
            e.resolution,
        ]
        for e in report.errors
    ]
    rows += [
        [
            "silent",
            s.group,
            s.group_id,
            s.user,
            s.user_id,
            "",
            " ".join(s.skus),
            "",
            "",
            "; ".join(s.holders),
            s.meaning,
            s.detail,
            s.resolution,
        ]
        for s in report.silent
    ]
    rows += [
        [
            "nested",
            n.group,
            n.group_id,
            " ".join(n.users),
            "",
            "",
            "",
            "",
            "",
            "",
            f"nested groups ignored by group licensing: {', '.join(n.nested)}",
            "",
            f"add the users as direct members of {n.group}, or license the nested group itself",
        ]
        for n in report.nested
    ]
    return to_csv(CSV_HEADER, rows)


def render_errors(report: ErrorsReport, fmt: str) -> str:
    check_format(fmt)
    if fmt == "json":
        return to_json(report.to_dict())
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "csv":
        return render_csv(report)
    return render_text(report)
