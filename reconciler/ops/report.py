"""`reconciler report`: seats per SKU and where every user's licenses come from.

    read_report(client) -> LicenseReport             (observe, read-only)
    build_report(state) -> LicenseReport             (pure)
    render_report(report, fmt) -> str                text | markdown | json | csv (one row per user x SKU)
    write_report(report, fmt, out)                   the same, written in pieces (iter_report)

Seats are subscribedSkus' own figures: purchased = prepaidUnits.enabled, consumed = consumedUnits,
free = purchased - consumed (facts 1.1). A user's sources of a SKU are its licenseAssignmentStates:
`direct` (assignedByGroup null) and the groups; the enabled plans are the union over the sources
that hold the license (Active or ActiveWithError, facts 2.7). Sources in error are listed with
their error and enable nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple, TextIO

from reconciler.graph.client import GraphClient
from reconciler.licensing import HELD_STATES, NO_ERROR, AssignmentState, License
from reconciler.ops.output import (
    check_format,
    iter_csv,
    iter_json,
    iter_md_table,
    line_chunks,
    plural,
)
from reconciler.state import TenantState

DIRECT = "direct"


@dataclass(frozen=True, slots=True)
class SkuLine:
    sku_id: str
    sku: str  # part number
    purchased: int
    consumed: int
    free: int
    groups: tuple[str, ...]  # licensed groups giving the SKU (display names)
    capability_status: str = "Enabled"


@dataclass(frozen=True, slots=True)
class Source:
    name: str  # "direct" or the group's display name
    group_id: str | None
    state: str
    error: str


class UserSku(NamedTuple):
    """One user and one SKU (a named tuple: a big tenant has hundreds of thousands of them, and a
    frozen dataclass costs five times as much to create)."""

    user_id: str
    user: str
    sku_id: str
    sku: str
    sources: tuple[Source, ...]
    enabled_plans: tuple[str, ...]  # names, in the SKU's order
    held: bool  # some source holds the license (Active or ActiveWithError)


@dataclass
class LicenseReport:
    tenant: str
    skus: list[SkuLine]
    users: list[UserSku]
    requests: int | None = None
    # sku id -> every plan name of the SKU, in its order (to say "all but X" in text)
    plan_names: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def head_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "skus": [
                {
                    "sku": s.sku,
                    "skuId": s.sku_id,
                    "purchased": s.purchased,
                    "consumed": s.consumed,
                    "free": s.free,
                    "capabilityStatus": s.capability_status,
                    "groups": list(s.groups),
                }
                for s in self.skus
            ],
        }

    def user_dicts(self) -> Iterator[dict[str, Any]]:
        """The json objects of the users, one at a time (the same lists are shared between rows
        with the same sources or plans: they are only read)."""
        sources: dict[int, list[dict[str, Any]]] = {}
        plans: dict[int, list[str]] = {}
        for u in self.users:
            # keyed by identity: every tuple stays alive in self.users while this runs
            src = sources.get(id(u.sources))
            if src is None:
                src = sources[id(u.sources)] = [
                    {
                        "source": s.name,
                        **({"groupId": s.group_id} if s.group_id else {}),
                        "state": s.state,
                        "error": s.error,
                    }
                    for s in u.sources
                ]
            enabled = plans.get(id(u.enabled_plans))
            if enabled is None:
                enabled = plans[id(u.enabled_plans)] = list(u.enabled_plans)
            yield {
                "user": u.user,
                "userId": u.user_id,
                "sku": u.sku,
                "skuId": u.sku_id,
                "held": u.held,
                "sources": src,
                "enabledPlans": enabled,
            }

    def to_dict(self) -> dict[str, Any]:
        return {**self.head_dict(), "users": list(self.user_dicts())}


def build_report(state: TenantState) -> LicenseReport:
    """One row per user and SKU, ordered by UPN then part number (case-insensitive).

    Rows share their sources and plan-name tuples: a tenant has few distinct combinations
    (group, state, error) and few distinct sets of disabled plans per SKU."""
    gnames = {gid: g.display_name for gid, g in state.groups.items()}
    givers: dict[str, list[str]] = {}
    for g in state.groups.values():
        if g.security_enabled:
            for sku_id in dict.fromkeys(lic.sku_id for lic in g.licenses):
                givers.setdefault(sku_id, []).append(g.display_name)
    skus = [
        SkuLine(
            sku_id=line.sku_id,
            sku=line.part_number,
            purchased=line.enabled_units,
            consumed=line.consumed_units,
            free=line.free_units,
            groups=tuple(sorted(givers.get(line.sku_id, ()), key=str.casefold)),
            capability_status=line.capability_status,
        )
        for line in sorted(state.skus.values(), key=lambda s: (s.part_number.casefold(), s.sku_id))
    ]

    known = state.skus
    sources_of: dict[tuple[tuple[str | None, str, str], ...], tuple[tuple[Source, ...], bool]] = {}
    plans_of: dict[tuple[str, frozenset[str]], tuple[str, ...]] = {}
    parts: dict[str, tuple[str, str]] = {}  # sku id -> (part number, its casefold)

    def sources(key: tuple[tuple[str | None, str, str], ...]) -> tuple[tuple[Source, ...], bool]:
        got = sources_of.get(key)
        if got is None:
            made = [
                Source(DIRECT if gid is None else gnames.get(gid, gid), gid, st, err) for gid, st, err in key
            ]
            if len(made) > 1:
                made.sort(key=lambda s: (s.group_id is not None, s.name.casefold()))
            got = sources_of[key] = (tuple(made), any(s.state in HELD_STATES for s in made))
        return got

    def plans(sku_id: str, disabled: Sequence[frozenset[str]]) -> tuple[str, ...]:
        """The names of the plans enabled by at least one of the holding sources: all but the
        plans every one of them disables."""
        sku = known.get(sku_id)
        if sku is None or not disabled:
            return ()
        off = disabled[0] if len(disabled) == 1 else frozenset.intersection(*disabled)
        got = plans_of.get((sku_id, off))
        if got is None:
            got = plans_of[(sku_id, off)] = tuple(
                p.name or p.plan_id for p in sku.service_plans if p.plan_id not in off
            )
        return got

    def part(sku_id: str) -> tuple[str, str]:
        got = parts.get(sku_id)
        if got is None:
            sku = known.get(sku_id)
            name = sku.part_number if sku is not None else sku_id
            got = parts[sku_id] = (name, name.casefold())
        return got

    # (part casefold, sku id, part, sources, held, plans) per SKU of a user, in that user's order,
    # worked out once per distinct tuple of license states (observe shares one tuple between the
    # users whose states are equal): keyed by identity, every tuple stays alive in `state`
    Cells = list[tuple[str, str, str, tuple[Source, ...], bool, tuple[str, ...]]]
    cells_of: dict[int, Cells] = {}

    def cells(states: tuple[AssignmentState, ...], direct: tuple[License, ...]) -> Cells:
        key = id(states) if states else -id(direct)
        got = cells_of.get(key)
        if got is not None:
            return got
        got = []
        if states:
            by_sku: dict[str, list[AssignmentState]] = {}
            for st in states:
                by_sku.setdefault(st.sku_id, []).append(st)
            for sku_id, sts in by_sku.items():
                srcs, held = sources(tuple((st.assigned_by_group, st.state, st.error) for st in sts))
                enabled = plans(sku_id, [st.disabled_plans for st in sts if st.state in HELD_STATES])
                name, folded = part(sku_id)
                got.append((folded, sku_id, name, srcs, held, enabled))
        else:
            by_lic: dict[str, list[frozenset[str]]] = {}
            for lic in direct:
                by_lic.setdefault(lic.sku_id, []).append(lic.disabled_plans)
            for sku_id, disabled in by_lic.items():
                srcs, held = sources(((None, "Active", NO_ERROR),) * len(disabled))
                name, folded = part(sku_id)
                got.append((folded, sku_id, name, srcs, held, plans(sku_id, disabled)))
        if len(got) > 1:
            got.sort(key=itemgetter(0))
        cells_of[key] = got
        return got

    users: list[UserSku] = []
    row = UserSku._make  # the documented fast constructor (no keyword handling)
    # by UPN case-insensitively, then id: sorting on the text alone is the fast path of list.sort
    keyed = sorted(((u.user_principal_name.casefold(), u) for u in state.users.values()), key=itemgetter(0))
    i = 0
    while i < len(keyed):
        j = i + 1
        while j < len(keyed) and keyed[j][0] == keyed[i][0]:
            j += 1
        if j == i + 1:  # the only user with this UPN: its rows are in order
            user = keyed[i][1]
            uid, upn = user.id, user.user_principal_name
            users += [
                row((uid, upn, sku_id, name, srcs, enabled, held))
                for _, sku_id, name, srcs, held, enabled in cells(user.license_states, user.direct_licenses)
            ]
        else:  # UPNs equal but for case: by id, and their rows together by part number
            same = [
                (folded, row((user.id, user.user_principal_name, sku_id, name, srcs, enabled, held)))
                for user in sorted((u for _, u in keyed[i:j]), key=lambda u: u.id)
                for folded, sku_id, name, srcs, held, enabled in cells(user.license_states, user.direct_licenses)
            ]
            same.sort(key=itemgetter(0))
            users += [r for _, r in same]
        i = j
    tenant = state.organization.initial_domain or state.organization.id
    plan_names = {s.sku_id: tuple(p.name or p.plan_id for p in s.service_plans) for s in state.skus.values()}
    return LicenseReport(tenant=tenant, skus=skus, users=users, plan_names=plan_names)


def read_report(client: GraphClient, *, progress: bool | None = None) -> LicenseReport:
    """Observe every licensed user (members of licensed groups and holders of each SKU)."""
    from reconciler.graph.observe import observe

    before = client.stats.requests
    state = observe(client, direct_licenses=True, progress=None if progress is None or progress else False)
    report = build_report(state)
    report.requests = client.stats.requests - before
    return report


# --------------------------------------------------------------------------- rendering


def _source_text(s: Source) -> str:
    if s.error != NO_ERROR:
        return f"{s.name} ({s.state}: {s.error})"
    if s.state != "Active":
        return f"{s.name} ({s.state})"
    return s.name


def _plans_text(u: UserSku, every: tuple[str, ...]) -> str:
    """`all N plans`, `all but X, Y` or the list, whichever is shorter to read."""
    if not every:
        return ", ".join(u.enabled_plans)
    enabled = set(u.enabled_plans)
    off = [p for p in every if p not in enabled]
    if not off:
        return f"all {len(every)} plans"
    if len(off) < len(u.enabled_plans):
        return f"all but {', '.join(off)} ({len(every) - len(off)} of {len(every)})"
    return ", ".join(u.enabled_plans)


class _Texts:
    """What the renderings say about a row's sources and plans, worked out once per distinct
    tuple (rows share them: see build_report). Keyed by identity: every tuple stays alive in the
    report while it is rendered."""

    def __init__(self, report: LicenseReport) -> None:
        self.report = report
        self._sources: dict[int, str] = {}
        self._plans: dict[tuple[str, int], str] = {}
        self._csv: dict[int, tuple[str, str, str]] = {}

    def sources(self, u: UserSku) -> str:
        got = self._sources.get(id(u.sources))
        if got is None:
            got = self._sources[id(u.sources)] = ", ".join(_source_text(s) for s in u.sources)
        return got

    def plans(self, u: UserSku) -> str:
        key = (u.sku_id, id(u.enabled_plans))
        got = self._plans.get(key)
        if got is None:
            got = self._plans[key] = _plans_text(u, self.report.plan_names.get(u.sku_id, ()))
        return got

    def csv(self, u: UserSku) -> tuple[str, str, str]:
        """(direct, groups, errors) columns."""
        got = self._csv.get(id(u.sources))
        if got is None:
            got = self._csv[id(u.sources)] = (
                "yes" if any(s.group_id is None and s.state in HELD_STATES for s in u.sources) else "no",
                "; ".join(s.name for s in u.sources if s.group_id is not None),
                "; ".join(f"{s.name}: {s.error}" for s in u.sources if s.error != NO_ERROR),
            )
        return got


def _text_lines(report: LicenseReport) -> Iterator[str]:
    texts = _Texts(report)
    width = max([len("SKU"), *(len(s.sku) for s in report.skus)])
    yield f"Seats in {report.tenant}"
    yield ""
    yield f"  {'SKU':<{width}}  purchased  consumed      free  licensed groups"
    for s in report.skus:
        groups = ", ".join(s.groups) or "-"
        yield f"  {s.sku:<{width}}  {s.purchased:>9}  {s.consumed:>8}  {s.free:>8}  {groups}"
    yield ""
    holders = len({u.user_id for u in report.users})
    yield f"Licenses per user ({plural(holders, 'user')})"
    current = None
    for u in report.users:
        if u.user_id != current:
            current = u.user_id
            yield ""
            yield f"  {u.user}"
        yield f"    {u.sku}: from {texts.sources(u)}"
        if u.enabled_plans:
            yield f"      plans: {texts.plans(u)}"
        elif not u.held:
            yield "      not held (every source is in error)"
    yield ""
    consumed = sum(s.consumed for s in report.skus)
    purchased = sum(s.purchased for s in report.skus)
    yield (
        f"{plural(len(report.skus), 'SKU')}, {consumed} of {purchased} seats consumed, "
        f"{plural(holders, 'licensed user')}."
    )


def render_text(report: LicenseReport) -> str:
    return "".join(line_chunks(_text_lines(report)))


def _markdown_lines(report: LicenseReport) -> Iterator[str]:
    texts = _Texts(report)
    yield from (f"## Licenses in {report.tenant}", "", "### Seats", "")
    yield from iter_md_table(
        ("SKU", "Purchased", "Consumed", "Free", "Licensed groups"),
        ((s.sku, s.purchased, s.consumed, s.free, ", ".join(s.groups)) for s in report.skus),
    )
    yield from ("", "### Users", "")
    yield from iter_md_table(
        ("User", "SKU", "Sources", "Enabled plans"),
        ((u.user, u.sku, texts.sources(u), ", ".join(u.enabled_plans)) for u in report.users),
    )


def render_markdown(report: LicenseReport) -> str:
    return "".join(line_chunks(_markdown_lines(report)))


CSV_HEADER = ("user", "userId", "sku", "skuId", "held", "direct", "groups", "errors", "enabledPlans")


def _csv_rows(report: LicenseReport) -> Iterator[list[Any]]:
    texts = _Texts(report)
    for u in report.users:
        yield [u.user, u.user_id, u.sku, u.sku_id, "yes" if u.held else "no", *texts.csv(u), " ".join(u.enabled_plans)]


def render_csv(report: LicenseReport) -> str:
    return "".join(iter_csv(CSV_HEADER, _csv_rows(report)))


def iter_report(report: LicenseReport, fmt: str) -> Iterator[str]:
    """The rendering in pieces, to be written as they come (a big tenant's json is hundreds of MB)."""
    check_format(fmt)
    if fmt == "json":
        return iter_json(report.head_dict(), "users", report.user_dicts())
    if fmt == "markdown":
        return line_chunks(_markdown_lines(report))
    if fmt == "csv":
        return iter_csv(CSV_HEADER, _csv_rows(report))
    return line_chunks(_text_lines(report))


def render_report(report: LicenseReport, fmt: str) -> str:
    return "".join(iter_report(report, fmt))


def write_report(report: LicenseReport, fmt: str, out: TextIO) -> None:
    for piece in iter_report(report, fmt):
        out.write(piece)
