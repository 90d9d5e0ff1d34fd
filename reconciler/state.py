"""The observed tenant: one immutable object holding everything a plan depends on.

Built either by the Graph client (reconciler.graph.observe) or from a tenant
snapshot in the seed format (schemas/tenant.schema.json), so that planner tests
need no network and `observe` can be checked against the emulator's snapshot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any, TypeVar

import orjson

from reconciler.licensing import AssignmentState, License

GRAPH_DATE = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class ServicePlan:
    plan_id: str
    name: str
    provisioning_status: str = "Success"
    applies_to: str = "User"


@dataclass(frozen=True)
class SubscribedSku:
    sku_id: str
    part_number: str
    enabled_units: int
    consumed_units: int
    service_plans: tuple[ServicePlan, ...]
    applies_to: str = "User"
    capability_status: str = "Enabled"

    @property
    def free_units(self) -> int:
        return self.enabled_units - self.consumed_units

    @cached_property
    def plan_ids(self) -> tuple[str, ...]:
        # cached: `report` asks once per user and SKU (immutable: service_plans is a tuple)
        return tuple(p.plan_id for p in self.service_plans)


@dataclass(frozen=True)
class User:
    id: str
    user_principal_name: str
    display_name: str | None = None
    mail: str | None = None
    usage_location: str | None = None
    proxy_addresses: tuple[str, ...] = ()
    direct_licenses: tuple[License, ...] = ()
    license_states: tuple[AssignmentState, ...] = ()
    account_enabled: bool = True

    def held_skus(self) -> frozenset[str]:
        """SKUs the user holds a seat of (an Active or ActiveWithError state)."""
        return frozenset(
            s.sku_id for s in self.license_states if s.state in ("Active", "ActiveWithError")
        )


@dataclass(frozen=True)
class Group:
    id: str
    display_name: str
    security_enabled: bool = True
    mail_enabled: bool = False
    group_types: tuple[str, ...] = ()
    membership_rule: str | None = None
    licenses: tuple[License, ...] = ()
    processing_state: str | None = None
    member_user_ids: tuple[str, ...] = ()
    member_group_ids: tuple[str, ...] = ()
    mail: str | None = None
    proxy_addresses: tuple[str, ...] = ()

    @property
    def is_dynamic(self) -> bool:
        return "DynamicMembership" in self.group_types


@dataclass(frozen=True)
class Organization:
    id: str
    display_name: str
    country_letter_code: str | None = None
    default_usage_location: str | None = None
    verified_domains: tuple[str, ...] = ()
    initial_domain: str | None = None

    @property
    def usage_location(self) -> str | None:
        """The location group licensing uses for users without one (facts 1.7)."""
        return self.default_usage_location or self.country_letter_code


@dataclass(frozen=True)
class TenantState:
    organization: Organization
    skus: Mapping[str, SubscribedSku]
    users: Mapping[str, User]
    groups: Mapping[str, Group]

    @staticmethod
    def build(
        organization: Organization,
        skus: Iterable[SubscribedSku],
        users: Iterable[User],
        groups: Iterable[Group],
    ) -> TenantState:
        return TenantState(
            organization=organization,
            skus=MappingProxyType({s.sku_id: s for s in sorted(skus, key=lambda s: s.sku_id)}),
            users=MappingProxyType({u.id: u for u in sorted(users, key=lambda u: u.id)}),
            groups=MappingProxyType({g.id: g for g in sorted(groups, key=lambda g: g.id)}),
        )

    def fingerprint(self) -> str:
        """sha256 over canonical JSON of everything a plan depends on."""
        digest = hashlib.sha256()
        # orjson: a tenth of the standard encoder's time over 100,000 users (same canonical form:
        # sorted keys, no whitespace, UTF-8 text rather than \u escapes)
        digest.update(orjson.dumps(_canonical(self), option=orjson.OPT_SORT_KEYS))
        return "sha256:" + digest.hexdigest()

    @staticmethod
    def from_snapshot(snapshot: Mapping[str, Any]) -> TenantState:
        """Read a tenant in the seed/snapshot format (Graph's own shapes)."""
        org = snapshot["organization"]
        domains = org.get("verifiedDomains") or []
        initial = next((d["name"] for d in domains if d.get("isInitial")), None)
        organization = Organization(
            id=org["id"].lower(),
            display_name=org.get("displayName") or "",
            country_letter_code=org.get("countryLetterCode"),
            default_usage_location=org.get("defaultUsageLocation"),
            verified_domains=tuple(sorted(d["name"].lower() for d in domains)),
            initial_domain=initial.lower() if initial else None,
        )
        skus = [sku_from_graph(s) for s in snapshot.get("subscribedSkus", [])]
        users = [user_from_graph(u, direct_from_assigned=True) for u in snapshot.get("users", [])]
        user_ids = {u.id for u in users}
        groups = [group_from_graph(g, g.get("members", []), user_ids) for g in snapshot.get("groups", [])]
        return TenantState.build(organization, skus, users, groups)


def _licenses(raw: Iterable[Mapping[str, Any]] | None) -> tuple[License, ...]:
    return tuple(
        sorted(
            License(
                sku_id=str(item["skuId"]).lower(),
                disabled_plans=frozenset(str(p).lower() for p in item.get("disabledPlans") or ()),
            )
            for item in raw or ()
        )
    )


# Users of a large tenant share a few hundred distinct states: parse each once and share the
# (immutable) object. Bounded: cleared when it grows past _STATE_CACHE_MAX entries.
_STATE_CACHE: dict[tuple[Any, ...], AssignmentState] = {}
_STATE_CACHE_MAX = 50_000
_T = TypeVar("_T")


def _state_key(item: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a parsed state depends on (raises TypeError for an unhashable value)."""
    key = (
        item["skuId"],
        item.get("assignedByGroup"),
        tuple(item.get("disabledPlans") or ()),
        item.get("state"),
        item.get("error"),
    )
    hash(key)
    return key


def _shared(cache: dict[tuple[Any, ...], _T], key: tuple[Any, ...], make: Callable[[], _T]) -> _T:
    """`cache[key]`, made by `make()` the first time; the cache is cleared when it is full."""
    got = cache.get(key)
    if got is None:
        if len(cache) >= _STATE_CACHE_MAX:
            cache.clear()
        got = cache[key] = make()
    return got


def license_state_from_graph(item: Mapping[str, Any]) -> AssignmentState:
    try:
        key = _state_key(item)
    except TypeError:  # an unhashable value: parse without the cache
        return _license_state(item)
    return _shared(_STATE_CACHE, key, lambda: _license_state(item))


def _license_state(item: Mapping[str, Any]) -> AssignmentState:
    group = item.get("assignedByGroup")
    error = item.get("error")
    return AssignmentState(
        sku_id=str(item["skuId"]).lower(),
        assigned_by_group=str(group).lower() if group else None,
        disabled_plans=frozenset(str(p).lower() for p in item.get("disabledPlans") or ()),
        state=str(item.get("state") or "Active"),
        # Graph documents null on success and really returns "None"; accept both
        error=str(error) if error not in (None, "") else "None",
    )


def sku_from_graph(raw: Mapping[str, Any]) -> SubscribedSku:
    prepaid = raw.get("prepaidUnits") or {}
    return SubscribedSku(
        sku_id=str(raw["skuId"]).lower(),
        part_number=str(raw.get("skuPartNumber") or ""),
        enabled_units=int(prepaid.get("enabled") or 0),
        consumed_units=int(raw.get("consumedUnits") or 0),
        service_plans=tuple(
            ServicePlan(
                plan_id=str(p["servicePlanId"]).lower(),
                name=str(p.get("servicePlanName") or ""),
                provisioning_status=str(p.get("provisioningStatus") or "Success"),
                applies_to=str(p.get("appliesTo") or "User"),
            )
            for p in raw.get("servicePlans") or ()
        ),
        applies_to=str(raw.get("appliesTo") or "User"),
        capability_status=str(raw.get("capabilityStatus") or "Enabled"),
    )


# Most users of a large tenant hold one of a few hundred distinct lists of states: the parsed
# (states, direct licenses) pair of each list is made once and shared by every user holding it.
_USER_LICENSING_CACHE: dict[tuple[Any, ...], tuple[tuple[AssignmentState, ...], tuple[License, ...]]] = {}


def _states_and_direct(
    raw_states: Iterable[Mapping[str, Any]],
) -> tuple[tuple[AssignmentState, ...], tuple[License, ...]]:
    try:
        key = tuple(_state_key(item) for item in raw_states)
    except (TypeError, KeyError, AttributeError):  # unhashable or malformed: parse without the cache
        return _parse_states_and_direct(raw_states)
    return _shared(_USER_LICENSING_CACHE, key, lambda: _parse_states_and_direct(raw_states))


def _parse_states_and_direct(
    raw_states: Iterable[Mapping[str, Any]],
) -> tuple[tuple[AssignmentState, ...], tuple[License, ...]]:
    states = tuple(
        sorted(
            (license_state_from_graph(s) for s in raw_states),
            key=lambda s: (s.sku_id, s.assigned_by_group or ""),
        )
    )
    direct = tuple(sorted(License(s.sku_id, s.disabled_plans) for s in states if s.assigned_by_group is None))
    return states, direct


def user_from_graph(raw: Mapping[str, Any], *, direct_from_assigned: bool = False) -> User:
    """A user from Graph JSON. In the seed format `assignedLicenses` are the direct
    assignments; from Graph they are derived from the states with no assignedByGroup."""
    raw_states = raw.get("licenseAssignmentStates") or ()
    states, direct = _states_and_direct(raw_states) if raw_states else ((), ())
    if direct_from_assigned:
        direct = _licenses(raw.get("assignedLicenses"))
    return User(
        id=str(raw["id"]).lower(),
        user_principal_name=str(raw.get("userPrincipalName") or ""),
        display_name=raw.get("displayName"),
        mail=raw.get("mail"),
        usage_location=raw.get("usageLocation") or None,
        proxy_addresses=tuple(raw.get("proxyAddresses") or ()),
        direct_licenses=direct,
        license_states=states,
        account_enabled=bool(raw.get("accountEnabled", True)),
    )


def group_from_graph(
    raw: Mapping[str, Any], member_ids: Iterable[str], user_ids: set[str] | frozenset[str]
) -> Group:
    members = sorted({str(m).lower() for m in member_ids})
    state = raw.get("licenseProcessingState")
    return Group(
        id=str(raw["id"]).lower(),
        display_name=str(raw.get("displayName") or ""),
        security_enabled=bool(raw.get("securityEnabled", True)),
        mail_enabled=bool(raw.get("mailEnabled", False)),
        group_types=tuple(raw.get("groupTypes") or ()),
        membership_rule=raw.get("membershipRule"),
        licenses=_licenses(raw.get("assignedLicenses")),
        processing_state=state.get("state") if isinstance(state, Mapping) else None,
        member_user_ids=tuple(m for m in members if m in user_ids),
        member_group_ids=tuple(m for m in members if m not in user_ids),
        mail=raw.get("mail"),
        proxy_addresses=tuple(raw.get("proxyAddresses") or ()),
    )


def _canonical(state: TenantState) -> dict[str, Any]:
    # equal disabled-plan sets are shared between many licenses and states: sort each set once
    sorted_sets: dict[frozenset[str], list[str]] = {}

    def plans(values: frozenset[str]) -> list[str]:
        out = sorted_sets.get(values)
        if out is None:
            out = sorted_sets[values] = sorted(values)
        return out

    def lic(items: tuple[License, ...]) -> list[Any]:
        if not items:
            return []
        if len(items) == 1:
            return [[items[0].sku_id, plans(items[0].disabled_plans)]]
        return [[x.sku_id, plans(x.disabled_plans)] for x in sorted(items)]

    def states(items: tuple[AssignmentState, ...]) -> list[Any]:
        rows = [[s.sku_id, s.assigned_by_group, plans(s.disabled_plans), s.state, s.error] for s in items]
        if len(rows) > 1:
            rows.sort(key=lambda r: (r[0], r[1] or "", r[2], r[3], r[4]))  # direct (None) and group states
        return rows

    # users read from Graph share their tuples of states and licenses (user_from_graph): one
    # canonical form per tuple object, looked up by identity (the state keeps them all alive)
    done: dict[int, list[Any]] = {}

    def once(items: tuple[Any, ...], make: Callable[[Any], list[Any]]) -> list[Any]:
        if not items:
            return []
        got = done.get(id(items))
        if got is None:
            got = done[id(items)] = make(items)
        return got

    users: dict[str, Any] = {}
    for u in state.users.values():
        proxies = u.proxy_addresses
        users[u.id] = [
            u.user_principal_name,
            u.usage_location,
            sorted(proxies) if len(proxies) > 1 else list(proxies),
            once(u.direct_licenses, lic),
            once(u.license_states, states),
        ]
    return {
        "organization": [
            state.organization.id,
            state.organization.default_usage_location,
            state.organization.country_letter_code,
        ],
        "skus": {
            s.sku_id: [s.enabled_units, s.consumed_units, sorted(s.plan_ids)] for s in state.skus.values()
        },
        "groups": {
            g.id: [
                g.display_name,
                g.security_enabled,
                lic(g.licenses),
                list(g.member_user_ids),
                list(g.member_group_ids),
            ]
            for g in state.groups.values()
        },
        "users": users,
    }
