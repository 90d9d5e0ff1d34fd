"""`reconciler report`: seats per SKU and where every user's licenses come from.

    read_report(client) -> LicenseReport             (observe, read-only)
    build_report(state) -> LicenseReport             (pure)
    render_report(report, fmt) -> str                text | markdown | json | csv (one row per user x SKU)

Seats are subscribedSkus' own figures: purchased = prepaidUnits.enabled, consumed = consumedUnits,
free = purchased - consumed (facts 1.1). A user's sources of a SKU are its licenseAssignmentStates:
`direct` (assignedByGroup null) and the groups; the enabled plans are the union over the sources
that hold the license (Active or ActiveWithError, facts 2.7). Sources in error are listed with
their error and enable nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.graph.client import GraphClient
from reconciler.licensing import HELD_STATES, NO_ERROR
from reconciler.ops.output import check_format, md_table, plural, to_csv, to_json
from reconciler.state import TenantState

DIRECT = "direct"


@dataclass(frozen=True)
class SkuLine:
    sku_id: str
    sku: str  # part number
    purchased: int
    consumed: int
    free: int
    groups: tuple[str, ...]  # licensed groups giving the SKU (display names)
    capability_status: str = "Enabled"


@dataclass(frozen=True)
class Source:
    name: str  # "direct" or the group's display name
    group_id: str | None
    state: str
    error: str


@dataclass(frozen=True)
class UserSku:
    user_id: str
    user: str
    sku_id: str
    sku: str
    sources: tuple[Source, ...]
    enabled_plans: tuple[str, ...]  # names, in the SKU's order

    @property
    def held(self) -> bool:
        return any(s.state in HELD_STATES for s in self.sources)


@dataclass
class LicenseReport:
    tenant: str
    skus: list[SkuLine]
    users: list[UserSku]
    requests: int | None = None
    # sku id -> every plan name of the SKU, in its order (to say "all but X" in text)
    plan_names: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
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
            "users": [
                {
                    "user": u.user,
                    "userId": u.user_id,
                    "sku": u.sku,
                    "skuId": u.sku_id,
                    "held": u.held,
                    "sources": [
                        {
                            "source": s.name,
                            **({"groupId": s.group_id} if s.group_id else {}),
                            "state": s.state,
                            "error": s.error,
                        }
                        for s in u.sources
                    ],
                    "enabledPlans": list(u.enabled_plans),
                }
                for u in self.users
            ],
        }


def build_report(state: TenantState) -> LicenseReport:
    gnames = {gid: g.display_name for gid, g in state.groups.items()}
    skus: list[SkuLine] = []
    for line in sorted(state.skus.values(), key=lambda s: (s.part_number.casefold(), s.sku_id)):
        groups = sorted(
            (
                g.display_name
                for g in state.groups.values()
                if g.security_enabled and any(lic.sku_id == line.sku_id for lic in g.licenses)
            ),
            key=str.casefold,
        )
        skus.append(
            SkuLine(
                sku_id=line.sku_id,
                sku=line.part_number,
                purchased=line.enabled_units,
                consumed=line.consumed_units,
                free=line.free_units,
                groups=tuple(groups),
                capability_status=line.capability_status,
            )
        )
    users: list[UserSku] = []
    for user in sorted(state.users.values(), key=lambda u: (u.user_principal_name.casefold(), u.id)):
        by_sku: dict[str, list[Source]] = {}
        for st in user.license_states:
            name = DIRECT if st.assigned_by_group is None else gnames.get(st.assigned_by_group, st.assigned_by_group)
            by_sku.setdefault(st.sku_id, []).append(Source(name, st.assigned_by_group, st.state, st.error))
        if not user.license_states:
            for lic in user.direct_licenses:
                by_sku.setdefault(lic.sku_id, []).append(Source(DIRECT, None, "Active", NO_ERROR))
        for sku_id, sources in by_sku.items():
            sku = state.skus.get(sku_id)
            part = sku.part_number if sku is not None else sku_id
            enabled: set[str] = set()
            for st in user.license_states:
                if st.sku_id == sku_id and st.state in HELD_STATES and sku is not None:
                    enabled.update(p for p in sku.plan_ids if p not in st.disabled_plans)
            if not user.license_states and sku is not None:
                for lic in user.direct_licenses:
                    if lic.sku_id == sku_id:
                        enabled.update(p for p in sku.plan_ids if p not in lic.disabled_plans)
            plans = tuple(p.name or p.plan_id for p in sku.service_plans if p.plan_id in enabled) if sku else ()
            ordered = sorted(sources, key=lambda s: (s.group_id is not None, s.name.casefold()))
            users.append(UserSku(user.id, user.user_principal_name, sku_id, part, tuple(ordered), plans))
    users.sort(key=lambda u: (u.user.casefold(), u.sku.casefold()))
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
    off = [p for p in every if p not in set(u.enabled_plans)]
    if not off:
        return f"all {len(every)} plans"
    if len(off) < len(u.enabled_plans):
        return f"all but {', '.join(off)} ({len(every) - len(off)} of {len(every)})"
    return ", ".join(u.enabled_plans)


def render_text(report: LicenseReport) -> str:
    width = max([len("SKU"), *(len(s.sku) for s in report.skus)])
    out = [f"Seats in {report.tenant}", ""]
    out.append(f"  {'SKU':<{width}}  purchased  consumed      free  licensed groups")
    for s in report.skus:
        groups = ", ".join(s.groups) or "-"
        out.append(f"  {s.sku:<{width}}  {s.purchased:>9}  {s.consumed:>8}  {s.free:>8}  {groups}")
    out.append("")
    holders = sorted({u.user_id for u in report.users})
    out.append(f"Licenses per user ({plural(len(holders), 'user')})")
    current = None
    for u in report.users:
        if u.user_id != current:
            current = u.user_id
            out.append("")
            out.append(f"  {u.user}")
        out.append(f"    {u.sku}: from {', '.join(_source_text(s) for s in u.sources)}")
        if u.enabled_plans:
            out.append(f"      plans: {_plans_text(u, report.plan_names.get(u.sku_id, ()))}")
        elif not u.held:
            out.append("      not held (every source is in error)")
    out.append("")
    consumed = sum(s.consumed for s in report.skus)
    purchased = sum(s.purchased for s in report.skus)
    out.append(
        f"{plural(len(report.skus), 'SKU')}, {consumed} of {purchased} seats consumed, "
        f"{plural(len(holders), 'licensed user')}."
    )
    return "\n".join(out) + "\n"


def render_markdown(report: LicenseReport) -> str:
    out = [f"## Licenses in {report.tenant}", "", "### Seats", ""]
    out += md_table(
        ("SKU", "Purchased", "Consumed", "Free", "Licensed groups"),
        ((s.sku, s.purchased, s.consumed, s.free, ", ".join(s.groups)) for s in report.skus),
    )
    out += ["", "### Users", ""]
    out += md_table(
        ("User", "SKU", "Sources", "Enabled plans"),
        (
            (u.user, u.sku, ", ".join(_source_text(s) for s in u.sources), ", ".join(u.enabled_plans))
            for u in report.users
        ),
    )
    out.append("")
    return "\n".join(out)


CSV_HEADER = ("user", "userId", "sku", "skuId", "held", "direct", "groups", "errors", "enabledPlans")


def render_csv(report: LicenseReport) -> str:
    rows = []
    for u in report.users:
        rows.append(
            [
                u.user,
                u.user_id,
                u.sku,
                u.sku_id,
                "yes" if u.held else "no",
                "yes" if any(s.group_id is None and s.state in HELD_STATES for s in u.sources) else "no",
                "; ".join(s.name for s in u.sources if s.group_id is not None),
                "; ".join(f"{s.name}: {s.error}" for s in u.sources if s.error != NO_ERROR),
                " ".join(u.enabled_plans),
            ]
        )
    return to_csv(CSV_HEADER, rows)


def render_report(report: LicenseReport, fmt: str) -> str:
    check_format(fmt)
    if fmt == "json":
        return to_json(report.to_dict())
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "csv":
        return render_csv(report)
    return render_text(report)
