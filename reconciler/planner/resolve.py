"""Step 1 of planning: resolve the policy's names against the observed tenant.

    resolve(policy, state, catalog) -> Resolution

- `tenant` (a verified domain, the initial domain or the tenant id) that is not this tenant raises
  WrongTenantError (exit 4): nothing is planned against the wrong directory.
- Groups by object id or displayName (case-insensitive, exact). None: `GroupNotFound` unless
  `create: true`, in which case the group is planned for creation and referred to by the
  placeholder key `{new:DISPLAYNAME}` (see `new_group_key`) in request URLs, ObjectRefs and
  predicted states; apply substitutes the id Graph returns. Several: `AmbiguousGroup` listing ids.
- Users (members, usageLocations.users) by UPN (case-insensitive) or object id; unknown:
  `UnknownUser`. `members` of a dynamic or mail-enabled (non-Microsoft 365) group, whose
  membership Graph does not let anyone change: `MembershipNotManaged`.
- SKUs against the tenant's subscribedSkus by part number or skuId: `UnknownSku` when the tenant
  does not own it. Service plans against that SKU's servicePlans (name, a catalog spelling, or
  id): `UnknownPlan`.

Every violation carries the policy location. A group whose licenses cannot be fully resolved is
left unmanaged by the diff (`licenses` None) so that a typo never plans a removal; policy errors
block the plan anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from reconciler.catalog import Catalog, bundled_rules, is_guid, name_key
from reconciler.errors import WrongTenantError
from reconciler.licensing import License, Rules
from reconciler.plan import Violation
from reconciler.policy.model import GroupSpec, LicenseSpec, Location, Policy, Ref
from reconciler.state import Group, SubscribedSku, TenantState, User

ERROR = "error"
WARNING = "warning"

FORM_ENABLED = "enabledPlans"
FORM_DISABLED = "disabledPlans"
FORM_ALL = "all"  # neither list: every plan of the SKU on (Entra's model, like disabledPlans: [])

PENDING = "PendingProvisioning"


def new_group_key(display_name: str) -> str:
    """The placeholder id of a group the plan creates, e.g. `{new:LIC-E1-Kiosk}`."""
    return "{new:" + display_name + "}"


def is_new_group_key(key: str) -> bool:
    return key.startswith("{new:") and key.endswith("}")


@dataclass(frozen=True)
class ResolvedLicense:
    spec: LicenseSpec
    sku: SubscribedSku
    disabled: frozenset[str]  # plan ids switched off
    form: str  # FORM_ENABLED | FORM_DISABLED | FORM_ALL
    # plans of the tenant's SKU that the bundled catalog does not list for it, or still
    # PendingProvisioning: plans Microsoft added since the catalog (facts 2.12)
    new_plans: tuple[str, ...] = ()

    @property
    def license(self) -> License:
        return License(self.sku.sku_id, self.disabled)

    @property
    def enabled(self) -> frozenset[str]:
        return frozenset(p for p in self.sku.plan_ids if p not in self.disabled)


@dataclass(frozen=True)
class ResolvedGroup:
    spec: GroupSpec
    key: str  # object id, or new_group_key(name) for a group to create
    name: str  # displayName
    live: Group | None  # None: to be created
    licenses: tuple[ResolvedLicense, ...] | None  # None: the group's licenses are not managed
    members: tuple[str, ...] | None  # user ids; None: membership not managed
    usage_location: str | None
    protected: bool

    @property
    def create(self) -> bool:
        return self.live is None


@dataclass(frozen=True)
class Resolution:
    groups: tuple[ResolvedGroup, ...]  # sorted by display name (case-insensitive), then key
    # user id -> (usage location, where the policy says it)
    user_locations: Mapping[str, tuple[str, Location]]
    default_location: str | None
    direct_skus: frozenset[str] | None  # directLicenses.skus as sku ids; None: every SKU
    protected_ids: frozenset[str]
    named_ids: frozenset[str]  # every live group the policy names (also ambiguous candidates)
    rules: Rules
    violations: tuple[Violation, ...]


class _Users:
    def __init__(self, users: Iterable[User]) -> None:
        self.by_id: dict[str, User] = {}
        self.by_upn: dict[str, User] = {}
        for u in users:
            self.by_id[u.id] = u
            self.by_upn.setdefault(u.user_principal_name.casefold(), u)

    def find(self, ref: str) -> User | None:
        text = ref.strip()
        return self.by_id.get(text.lower()) or self.by_upn.get(text.casefold())


def check_tenant(policy: Policy, state: TenantState) -> None:
    """Raise WrongTenantError when the policy names another tenant."""
    if policy.tenant is None:
        return
    org = state.organization
    wanted = policy.tenant.value.strip().lower()
    known = {org.id, *(d.lower() for d in org.verified_domains)}
    if org.initial_domain:
        known.add(org.initial_domain.lower())
    if wanted in known:
        return
    this = org.initial_domain or (org.verified_domains[0] if org.verified_domains else org.id)
    raise WrongTenantError(
        f"{policy.tenant.loc}: the policy is for tenant {policy.tenant.value!r}, but this tenant is "
        f"{org.display_name or this} ({this}, id {org.id}); check the connection settings "
        "(--tenant-id, --emulator) or the policy's `tenant`"
    )


def tenant_extra_plans(state: TenantState) -> list[tuple[str, str]]:
    """(servicePlanName, id) of every plan of the tenant's SKUs (names the catalog may lack)."""
    pairs = {(p.name, p.plan_id) for s in state.skus.values() for p in s.service_plans if p.name}
    return sorted(pairs)


def find_sku(state: TenantState, ref: Ref) -> SubscribedSku | None:
    if ref.id and ref.id in state.skus:
        return state.skus[ref.id]
    text = ref.value.strip()
    if is_guid(text):
        return state.skus.get(text.lower())
    key = name_key(text)
    for sku in state.skus.values():
        if name_key(sku.part_number) == key:
            return sku
    return None


def find_plan(sku: SubscribedSku, ref: Ref, catalog: Catalog) -> str | None:
    """The id of the plan of the tenant's `sku` that `ref` names, or None."""
    ids = sku.plan_ids
    if ref.id and ref.id in ids:
        return ref.id
    text = ref.value.strip()
    if is_guid(text):
        return text.lower() if text.lower() in ids else None
    key = name_key(text)
    for p in sku.service_plans:
        if name_key(p.name) == key:
            return p.plan_id
    for p in sku.service_plans:
        if any(name_key(s) == key for s in catalog.plan_spellings(p.plan_id)):
            return p.plan_id
    return None


def _new_plans(sku: SubscribedSku, catalog: Catalog) -> tuple[str, ...]:
    entry = catalog.skus.get(sku.sku_id)
    known = set(entry.plan_ids) if entry is not None else None
    out = []
    for p in sku.service_plans:
        if p.provisioning_status == PENDING or (known is not None and p.plan_id not in known):
            out.append(p.plan_id)
    return tuple(out)


def _violation(
    code: str, message: str, resolution: str, loc: Location | None, *, group: str | None = None,
    sku: str | None = None, users: tuple[str, ...] = (), severity: str = ERROR,
) -> Violation:
    return Violation(
        code=code, severity=severity, message=message, resolution=resolution, sku=sku, group=group,
        users=users, source=loc,
    )


def _resolve_license(
    spec: LicenseSpec, group: str, state: TenantState, catalog: Catalog, out: list[Violation]
) -> ResolvedLicense | None:
    sku = find_sku(state, spec.sku)
    if sku is None:
        owned = ", ".join(sorted(s.part_number for s in state.skus.values())) or "none"
        out.append(
            _violation(
                "UnknownSku",
                f"the tenant has no subscription to {spec.sku.value} (subscribed: {owned})",
                "buy the product, or correct the SKU name (skuPartNumber or skuId of subscribedSkus)",
                spec.sku.loc,
                group=group,
                sku=spec.sku.value,
            )
        )
        return None
    ok = True
    listed: set[str] = set()
    for ref in (*(spec.disabled_plans or ()), *(spec.enabled_plans or ())):
        pid = find_plan(sku, ref, catalog)
        if pid is None:
            plans = ", ".join(p.name for p in sku.service_plans)
            out.append(
                _violation(
                    "UnknownPlan",
                    f"{sku.part_number} has no service plan {ref.value} in this tenant (its plans: {plans})",
                    "correct the plan name (servicePlanName or servicePlanId of the tenant's SKU)",
                    ref.loc,
                    group=group,
                    sku=sku.part_number,
                )
            )
            ok = False
        else:
            listed.add(pid)
    if not ok:
        return None
    new_plans = _new_plans(sku, catalog)
    if spec.enabled_plans is not None:
        disabled = frozenset(p for p in sku.plan_ids if p not in listed)
        form = FORM_ENABLED
    elif spec.disabled_plans is not None:
        disabled = frozenset(listed)
        form = FORM_DISABLED
    else:
        disabled = frozenset()
        form = FORM_ALL
    return ResolvedLicense(spec=spec, sku=sku, disabled=disabled, form=form, new_plans=new_plans)


class _Groups:
    """Groups by object id or displayName (case-insensitive, exact)."""

    def __init__(self, state: TenantState) -> None:
        self.state = state
        self.by_name: dict[str, list[Group]] = {}
        for g in state.groups.values():  # in id order
            self.by_name.setdefault(g.display_name.casefold(), []).append(g)

    def find(self, ref: str) -> list[Group]:
        text = ref.strip()
        if text.lower() in self.state.groups:
            return [self.state.groups[text.lower()]]
        return list(self.by_name.get(text.casefold(), ()))


def _unknown_user(ref: Ref, where: str, group: str | None = None) -> Violation:
    return _violation(
        "UnknownUser",
        f"no user {ref.value} in this tenant ({where})",
        "correct the user principal name or object id, or create the user first",
        ref.loc,
        group=group,
        users=(ref.value,),
    )


def resolve(policy: Policy, state: TenantState, catalog: Catalog) -> Resolution:
    check_tenant(policy, state)
    violations: list[Violation] = []
    users = _Users(state.users.values())
    groups_index = _Groups(state)

    protected_ids: set[str] = set()
    protected_names: set[str] = set()
    for ref in policy.safety.protected:
        found = groups_index.find(ref.value)
        protected_ids.update(g.id for g in found)
        protected_names.add(ref.value.strip().casefold())

    groups: list[ResolvedGroup] = []
    named: set[str] = set()
    for spec in policy.groups:
        found = groups_index.find(spec.group)
        named.update(g.id for g in found)
        live: Group | None
        if len(found) > 1:
            listed = ", ".join(g.id for g in found)
            violations.append(
                _violation(
                    "AmbiguousGroup",
                    f"{len(found)} groups are named {spec.group}: {listed}",
                    "name the group by its object id, or rename the duplicates",
                    spec.name_loc,
                    group=spec.group,
                )
            )
            continue
        if not found:
            if not spec.create:
                violations.append(
                    _violation(
                        "GroupNotFound",
                        f"no group named {spec.group} (or with that object id) in this tenant",
                        "correct the name or id, or add `create: true` to have apply create the security group",
                        spec.name_loc,
                        group=spec.group,
                    )
                )
                continue
            live = None
            key = new_group_key(spec.group.strip())
            name = spec.group.strip()
        else:
            live = found[0]
            key = live.id
            name = live.display_name
        licenses: tuple[ResolvedLicense, ...] | None = None
        if spec.licenses is not None:
            resolved: list[ResolvedLicense] = []
            complete = True
            for lic_spec in spec.licenses:
                r = _resolve_license(lic_spec, name, state, catalog, violations)
                if r is None:
                    complete = False
                else:
                    resolved.append(r)
            licenses = tuple(sorted(resolved, key=lambda r: (r.sku.part_number.casefold(), r.sku.sku_id)))
            if not complete:
                licenses = None
        members: tuple[str, ...] | None = None
        if spec.members is not None and live is not None and (
            live.is_dynamic or (live.mail_enabled and "Unified" not in live.group_types)
        ):
            what = "a dynamic group (its rule decides)" if live.is_dynamic else "a mail-enabled distribution group"
            violations.append(
                _violation(
                    "MembershipNotManaged",
                    f"{name} is {what}: Graph refuses to add or remove its members",
                    "remove `members` from this entry, or manage the membership where it is decided",
                    spec.name_loc,
                    group=name,
                )
            )
        elif spec.members is not None:
            member_ids: list[str] = []
            for ref in spec.members:
                user = users.find(ref.value)
                if user is None:
                    violations.append(_unknown_user(ref, f"member of {name}", name))
                elif user.id not in member_ids:
                    member_ids.append(user.id)
            members = tuple(sorted(member_ids))
        protected = key in protected_ids or name.casefold() in protected_names
        groups.append(
            ResolvedGroup(
                spec=spec,
                key=key,
                name=name,
                live=live,
                licenses=licenses,
                members=members,
                usage_location=spec.usage_location.value.upper() if spec.usage_location else None,
                protected=protected,
            )
        )
    groups.sort(key=lambda g: (g.name.casefold(), g.key))

    user_locations: dict[str, tuple[str, Location]] = {}
    for entry in policy.usage_locations.users:
        user = users.find(entry.user)
        if user is None:
            violations.append(_unknown_user(Ref(entry.user, entry.loc), "usageLocations.users"))
        else:
            user_locations[user.id] = (entry.country.upper(), entry.country_loc)

    direct_skus: frozenset[str] | None = None
    if policy.direct_licenses.skus is not None:
        ids_: set[str] = set()
        for ref in policy.direct_licenses.skus:
            sku = find_sku(state, ref)
            if sku is None:
                violations.append(
                    _violation(
                        "UnknownSku",
                        f"the tenant has no subscription to {ref.value} (directLicenses.skus)",
                        "correct the SKU name (skuPartNumber or skuId), or remove it from the list",
                        ref.loc,
                        sku=ref.value,
                    )
                )
            else:
                ids_.add(sku.sku_id)
        direct_skus = frozenset(ids_)

    extra = tenant_extra_plans(state)
    try:
        table = bundled_rules()
        if policy.catalog.raw:
            table = table.extend(policy.catalog.raw, "policy catalog", extra_plans=extra)
        rules = table.to_rules(catalog, extra)
    except ValueError as exc:
        locs = [r.loc for pair in policy.catalog.mutually_exclusive for r in pair]
        locs += [p.loc for p, _ in policy.catalog.requires] + [p.loc for p, _ in policy.catalog.prohibited_locations]
        violations.append(
            _violation(
                "UnknownPlan",
                f"the policy's catalog section names plans this tenant and the bundled catalog do not know: {exc}",
                "correct the plan names in `catalog` (servicePlanName or servicePlanId)",
                min(locs) if locs else None,
            )
        )
        rules = bundled_rules().to_rules(catalog, extra)

    default = policy.usage_locations.default
    return Resolution(
        groups=tuple(groups),
        user_locations=MappingProxyType(user_locations),
        default_location=default.value.upper() if default else None,
        direct_skus=direct_skus,
        protected_ids=frozenset(protected_ids | {g.key for g in groups if g.protected}),
        named_ids=frozenset(named),
        rules=rules,
        violations=tuple(violations),
    )
