"""Entra ID group-based licensing rules, as pure functions.

This module is the single statement of how Entra turns direct and group
license assignments into each user's `assignedLicenses` and
`licenseAssignmentStates` (SPEC section 4; sources in
reference/graph-licensing-facts.md sections 1.8, 2 and 5). The planner runs it
on the state a plan would produce to predict errors; the emulator runs it to
process group assignments. Nothing here does I/O.

All identifiers are lower-case GUID strings (sku ids, plan ids, object ids).

How `compute` decides (facts section in brackets)
-------------------------------------------------

Sources. A user's sources are the direct assignments (`LicensingUser.direct`) and, for
every security-enabled group the user is a *direct* member of, the group's
licenses (2.3, 2.4; member ids that are not users, i.e. nested groups, are
ignored; non-security groups grant nothing). Each (SKU, source) gets one
`licenseAssignmentState`; `assigned_by_group` is None for direct ones (1.3).

Direct assignments were validated synchronously when they were made
(`check_direct_assignment`, 1.8), so they are always `Active` and always hold
their seat, even when the subscription is now over capacity.

Usage location. The user's own, else `LicensingInput.tenant_location`, for
group licensing only (2.5). When neither exists, every group SKU of the user
gets `ProhibitedInUsageLocationViolation` (a license cannot be placed without
a location; real tenants always have a `countryLetterCode`).

Priority (deterministic). For each user the sources are considered in this
order: direct assignments; then the groups whose licenses the user held before
(`LicensingInput.previous` has an `Active`/`ActiveWithError` state from that
group), in group-id order; then the other groups, in group-id order. A later
source whose enabled plans are mutually exclusive with a plan an earlier
*accepted* source enabled gets `MutuallyExclusiveViolation`; plans of a group
that are mutually exclusive with each other fail that group on its own.

Checks per (user, group, SKU), in this order, the first failing one being the
SKU's error: ProhibitedInUsageLocationViolation (an enabled plan is prohibited
in the location), MutuallyExclusiveViolation (above), DependencyViolation (an
enabled plan requires any one of a set of plans and none is enabled in the
user's resulting union of plans), UniquenessViolation (see proxy addresses),
CountViolation (see seats).

All or nothing per (user, group) (2.6). If any SKU of a group fails for a
user, that SKU has state `Error` with its error and every other SKU of the
group has state `Error` with error `Other`; none of the group's SKUs
contributes plans or takes a seat.

Effective licenses (2.7). One `assigned` License per SKU held (by an
`Active` or `ActiveWithError` source); its disabled plans are the intersection
of the held sources' disabled plans, i.e. the enabled plans are the union.
One seat per SKU per user however many sources hold it.

Seats. `consumed` counts the users holding each SKU. A user keeps the seat of
every SKU held before (an `Active`/`ActiveWithError` state in `previous`) or
held directly, even when the subscription is already over capacity (Entra
does not revoke). Every user is first evaluated as if seats were unlimited;
then the users who would take a *new* seat are processed one by one in
user-id order, each taking a seat while `enabled_units - consumed > 0` and
otherwise getting `CountViolation` on that SKU (and `Other` on its group
siblings). A user who is denied a seat is re-evaluated (a sibling's `Other`
frees plans and seats and can let another group of the same user through)
until the user's denials stop growing, which terminates because they only
grow; seats the user no longer holds are given back at once, for the users
that come next. A seat freed by a user processed later in the same run is not
given back to an earlier user who was denied; like in Entra, that user stays
in `CountViolation` until reprocessed (the next `compute`).

Proxy addresses (2.16). For group SKUs that enable a mailbox plan
(`Rules.mailbox_plans`): if one of the user's proxy addresses is also held by
another *user*, the group's SKUs get `UniquenessViolation` unless this user
already held a mailbox (a mailbox plan enabled by a direct assignment, or by a
previous `Active`/`ActiveWithError` state), in which case the user keeps it
and only the other user is in error. If the address is held by a *non-user*
object (`LicensingInput.other_proxy_addresses`: a group or a contact), this is
the silent failure administrators report: the user gets neither the group's
licenses nor any state for them (no entry at all for that group). The
duplicate-with-a-user case is checked first; the silent case takes precedence
over every other check of that group.

Removal with a dependency (2.9). Entra does not take a plan away from a user
when a plan the user keeps from another source (a direct license or another
group) requires it and nothing else gives it. This applies to a group source
the user held before (`previous`, `Active` or `ActiveWithError`) that is
*gone* (the group dropped the SKU, the user left the group, the group is gone
or no longer security-enabled) and to one that *shrinks* in place (the group
still assigns the SKU but its new disabled plans switch off a plan the old ones
left on, e.g. an E3 group switching SharePoint Plan 2 off while a member keeps
Project Online, which needs it). Such a source stays as it was: state
`ActiveWithError`, error `DependencyViolation`, `assigned_by_group` still the
group, its previous disabled plans (a refused in-place update is refused as a
whole: plans it would switch on stay off), its plans still enabled and its
seat still held. The group's other SKUs, and its other members who do not need
the plan, get the group's current licenses as usual. Otherwise the source just
disappears or takes the new disabled plans; once the dependent plan is gone
(or another source gives the prerequisite) the next `compute` does so. A kept
source's plans can be what another removal's dependent needs, so removals are
decided to a fixed point, in state order (when two sources lose the same
prerequisite, the first keeps it and the second is applied). A shrunk source
counts only while its group is accepted for the user. Kept sources are not
checked against mutual exclusions in either direction: a group is accepted or
not on its current licenses.

Previous states in `Error` are simply evaluated again. The state `Disabled`
is never produced.

Result. `LicensingResult.users` has every user with at least one state (or a
silent group, listed in `UserLicensing.silent_groups` so that `errors` can
report it); a user's states are sorted by SKU id, the direct one first, then by
group id. `consumed` has every SKU of the input (0 when unused).

Cost. Users with the same groups, direct licenses, previous states, relevant
location and proxy-address situation get the same outcome, so each distinct
combination is evaluated once (100,000 users in 300 groups: see
tests/bench/bench_licensing.py). A previous group state is compared with the
group's current license once per combination; only one that loses a plan some
rule requires (a prerequisite) is looked at further. The cyclic garbage
collector is paused during `compute` (it only creates acyclic objects) and
restored afterwards.

Validations. `check_direct_assignment` and `check_group_assignment` are the
synchronous checks of a direct and a group `assignLicense` (facts 1.2, 1.8,
2.11); they return Graph's error message, or None when Graph accepts the call.
"""

from __future__ import annotations

import gc
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# licenseAssignmentState.state values
ACTIVE = "Active"
ACTIVE_WITH_ERROR = "ActiveWithError"
DISABLED = "Disabled"
ERROR = "Error"

# licenseAssignmentState.error values ("None" is what Graph really returns on success)
NO_ERROR = "None"
COUNT_VIOLATION = "CountViolation"
MUTUALLY_EXCLUSIVE_VIOLATION = "MutuallyExclusiveViolation"
DEPENDENCY_VIOLATION = "DependencyViolation"
PROHIBITED_IN_USAGE_LOCATION_VIOLATION = "ProhibitedInUsageLocationViolation"
UNIQUENESS_VIOLATION = "UniquenessViolation"
OTHER = "Other"

LICENSE_ERRORS = (
    COUNT_VIOLATION,
    MUTUALLY_EXCLUSIVE_VIOLATION,
    DEPENDENCY_VIOLATION,
    PROHIBITED_IN_USAGE_LOCATION_VIOLATION,
    UNIQUENESS_VIOLATION,
    OTHER,
)

HELD_STATES = frozenset({ACTIVE, ACTIVE_WITH_ERROR})

# Graph's synchronous error messages for direct assignLicense (facts 1.8) and for group
# assignLicense of an add-on without its prerequisite (facts 2.11).
MSG_INVALID_USAGE_LOCATION = "License assignment cannot be done for user with invalid usage location."
MSG_UNKNOWN_SKU = "License {sku_id} does not correspond to a valid company License."
MSG_NO_SEATS = "Subscription with SKU {sku_id} does not have any available licenses."
MSG_MUTUALLY_EXCLUSIVE = (
    "License assignment failed because service plans {plan1},{plan2} are mutually exclusive."
)
MSG_DEPENDS_ON = (
    "License assignment failed because service plan {plan} depends on the service plan(s) {required}"
)
MSG_DEPENDS_ON_SEPARATOR = ", "
MSG_INHERITED = (
    "User license is inherited from a group membership and it cannot be removed directly from the user."
)
MSG_GROUP_DEPENDENCY = (
    "License operation failed. Make sure that the group has necessary services before adding or "
    "removing a dependent service. The service {plan} requires {required} to be enabled as well."
)
MSG_GROUP_DEPENDENCY_SEPARATOR = " or "


@dataclass(frozen=True, order=True)
class License:
    """One license as Graph's `assignedLicense`: a SKU and the plans switched off in it."""

    sku_id: str
    disabled_plans: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Rules:
    """The rule table Entra enforces, in plan ids (see reconciler.catalog for names and sources)."""

    mutually_exclusive: frozenset[frozenset[str]] = frozenset()
    # plan -> the user must also have at least one of these plans enabled
    requires: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # plan -> ISO 3166-1 alpha-2 codes where it cannot be assigned
    prohibited_locations: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # plans that give the user a mailbox, so a duplicate proxy address matters
    mailbox_plans: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SkuCapacity:
    sku_id: str
    plan_ids: tuple[str, ...]
    enabled_units: int


@dataclass(frozen=True)
class AssignmentState:
    """Graph's `licenseAssignmentState`, minus `lastUpdatedDateTime` (I/O adds it)."""

    sku_id: str
    assigned_by_group: str | None
    disabled_plans: frozenset[str]
    state: str
    error: str = NO_ERROR


@dataclass(frozen=True)
class LicensingUser:
    id: str
    usage_location: str | None
    # lower-case addresses without the smtp:/SMTP: prefix
    proxy_addresses: frozenset[str]
    direct: tuple[License, ...] = ()


@dataclass(frozen=True)
class LicensingGroup:
    id: str
    security_enabled: bool
    licenses: tuple[License, ...]
    # direct members (users and groups); nested groups are ignored by group licensing
    member_ids: tuple[str, ...]


@dataclass(frozen=True)
class LicensingInput:
    tenant_location: str | None
    skus: Mapping[str, SkuCapacity]
    users: Mapping[str, LicensingUser]
    groups: Mapping[str, LicensingGroup]
    rules: Rules
    # proxy address -> id of a non-user object (group, contact) that holds it
    other_proxy_addresses: Mapping[str, str] = field(default_factory=dict)
    # user id -> the states recorded before this computation (seat and conflict priority,
    # dependency errors on removal)
    previous: Mapping[str, tuple[AssignmentState, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class UserLicensing:
    user_id: str
    states: tuple[AssignmentState, ...]
    # effective licenses: one per SKU held (Active or ActiveWithError); disabled = intersection
    assigned: tuple[License, ...]
    # ids of the groups whose licenses the user should get but for which no state exists because
    # a non-user object holds one of the user's proxy addresses (the silent failure)
    silent_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class LicensingResult:
    # only users with at least one assignment state (or a silent group) appear
    users: Mapping[str, UserLicensing]
    consumed: Mapping[str, int]


# --------------------------------------------------------------------------------------------
# small public helpers


def enabled_plans(sku: SkuCapacity, lic: License) -> frozenset[str]:
    """The plans a license switches on: the SKU's plans minus the license's disabled plans."""
    if not lic.disabled_plans:
        return frozenset(sku.plan_ids)
    return frozenset(p for p in sku.plan_ids if p not in lic.disabled_plans)


def user_enabled_plans(user: UserLicensing, skus: Mapping[str, SkuCapacity]) -> frozenset[str]:
    """The union of the plans a user's effective licenses enable (unknown SKUs enable nothing)."""
    out: set[str] = set()
    for lic in user.assigned:
        sku = skus.get(lic.sku_id)
        if sku is not None:
            out |= enabled_plans(sku, lic)
    return frozenset(out)


def exclusive_partners(rules: Rules) -> dict[str, frozenset[str]]:
    """plan -> the plans it cannot be enabled together with."""
    partners: dict[str, set[str]] = defaultdict(set)
    for group in rules.mutually_exclusive:
        for p in group:
            partners[p].update(q for q in group if q != p)
    return {p: frozenset(qs) for p, qs in partners.items()}


def consumed_units(inp: LicensingInput) -> dict[str, int]:
    """Seats in use according to the input as it stands: users holding each SKU directly or by a
    previous `Active`/`ActiveWithError` state (one per SKU per user)."""
    counts: dict[str, int] = dict.fromkeys(inp.skus, 0)
    for uid, user in inp.users.items():
        held = {lic.sku_id for lic in user.direct}
        for st in inp.previous.get(uid, ()):
            if st.state in HELD_STATES:
                held.add(st.sku_id)
        for sku_id in held:
            counts[sku_id] = counts.get(sku_id, 0) + 1
    return counts


# --------------------------------------------------------------------------------------------
# compute: precomputed, input-wide lookups


@dataclass(frozen=True, slots=True)
class _LicInfo:
    """Everything about one License that does not depend on the user."""

    lic: License
    sku_id: str
    enabled: frozenset[str]
    partners: frozenset[str]  # plans exclusive with one of `enabled`
    deps: tuple[tuple[str, frozenset[str]], ...]  # (enabled plan, any-of prerequisites)
    prohibited_in: frozenset[str]  # locations where one of `enabled` is prohibited
    mailbox: bool


@dataclass(frozen=True, slots=True)
class _GroupInfo:
    id: str
    lics: tuple[_LicInfo, ...]
    sku_ids: frozenset[str]
    plans: frozenset[str]
    partners: frozenset[str]  # plans exclusive with one of `plans`
    self_exclusive_skus: frozenset[str]  # SKUs with a plan exclusive with another plan of the group
    deps: tuple[tuple[str, frozenset[str]], ...]  # (sku, any-of prerequisites) of every enabled plan
    prohibited_in: frozenset[str]
    mailbox: bool
    active_states: tuple[AssignmentState, ...]
    held: tuple[tuple[str, frozenset[str]], ...]  # (sku, disabled plans)
    disabled_of: Mapping[str, frozenset[str]] = field(compare=False)  # sku -> disabled plans


class _Context:
    def __init__(self, inp: LicensingInput) -> None:
        self.inp = inp
        self.rules = inp.rules
        self.partners = exclusive_partners(inp.rules)
        self._lic_cache: dict[License, _LicInfo] = {}
        self._state_cache: dict[tuple[str, str | None, frozenset[str], str, str], AssignmentState] = {}
        self._license_cache: dict[tuple[str, frozenset[str]], License] = {}
        self.prohibited_anywhere: frozenset[str] = frozenset().union(*inp.rules.prohibited_locations.values())
        # plans that are the prerequisite of another plan: only losing one of these can be refused
        self.prerequisites: frozenset[str] = frozenset().union(*inp.rules.requires.values())
        dependents: dict[str, list[str]] = defaultdict(list)  # prerequisite -> plans that require it
        for p in sorted(inp.rules.requires):
            for q in inp.rules.requires[p]:
                dependents[q].append(p)
        self.dependents: dict[str, tuple[str, ...]] = {q: tuple(ps) for q, ps in dependents.items()}
        # (id(previous state), its group's current disabled plans or None) -> (state, removal or None)
        self._removal_cache: dict[
            tuple[int, frozenset[str] | None], tuple[AssignmentState, _Removal | None]
        ] = {}
        self.groups: dict[str, _GroupInfo] = {}
        for gid in sorted(inp.groups):
            g = inp.groups[gid]
            if not g.security_enabled or not g.licenses:
                continue
            self.groups[gid] = self._group_info(g)

    def lic_info(self, lic: License) -> _LicInfo:
        info = self._lic_cache.get(lic)
        if info is not None:
            return info
        sku = self.inp.skus.get(lic.sku_id)
        enabled = enabled_plans(sku, lic) if sku is not None else frozenset()
        partners: set[str] = set()
        deps: list[tuple[str, frozenset[str]]] = []
        prohibited: set[str] = set()
        requires = self.rules.requires
        prohibited_locations = self.rules.prohibited_locations
        for p in sorted(enabled):
            qs = self.partners.get(p)
            if qs:
                partners |= qs
            req = requires.get(p)
            if req:
                deps.append((p, frozenset(req)))
            locs = prohibited_locations.get(p)
            if locs:
                prohibited |= locs
        info = _LicInfo(
            lic=lic,
            sku_id=lic.sku_id,
            enabled=enabled,
            partners=frozenset(partners),
            deps=tuple(deps),
            prohibited_in=frozenset(prohibited),
            mailbox=not enabled.isdisjoint(self.rules.mailbox_plans),
        )
        self._lic_cache[lic] = info
        return info

    def _group_info(self, g: LicensingGroup) -> _GroupInfo:
        by_sku: dict[str, License] = {}
        for lic in g.licenses:
            by_sku[lic.sku_id] = lic  # Graph keeps one entry per SKU; the last one wins
        lics = tuple(self.lic_info(by_sku[s]) for s in sorted(by_sku))
        plans: set[str] = set()
        partners: set[str] = set()
        prohibited: set[str] = set()
        for li in lics:
            plans |= li.enabled
            partners |= li.partners
            prohibited |= li.prohibited_in
        # another plan of the same group (of this SKU or of a sibling) is exclusive with one of its plans
        self_exclusive = {li.sku_id for li in lics if not li.partners.isdisjoint(plans)}
        return _GroupInfo(
            id=g.id,
            lics=lics,
            sku_ids=frozenset(by_sku),
            plans=frozenset(plans),
            partners=frozenset(partners),
            self_exclusive_skus=frozenset(self_exclusive),
            deps=tuple((li.sku_id, req) for li in lics for _plan, req in li.deps),
            prohibited_in=frozenset(prohibited),
            mailbox=any(li.mailbox for li in lics),
            active_states=tuple(
                self.state(li.sku_id, g.id, li.lic.disabled_plans, ACTIVE, NO_ERROR) for li in lics
            ),
            held=tuple((li.sku_id, li.lic.disabled_plans) for li in lics),
            disabled_of={li.sku_id: li.lic.disabled_plans for li in lics},
        )

    def state(
        self, sku_id: str, group: str | None, disabled: frozenset[str], state: str, error: str
    ) -> AssignmentState:
        key = (sku_id, group, disabled, state, error)
        st = self._state_cache.get(key)
        if st is None:
            st = AssignmentState(sku_id, group, disabled, state, error)
            self._state_cache[key] = st
        return st

    def removal(self, st: AssignmentState, disabled_now: frozenset[str] | None) -> _Removal | None:
        """The removal of the previous group state `st` whose group now assigns its SKU with
        `disabled_now` (None: no longer), or None when it loses no prerequisite plan."""
        key = (id(st), disabled_now)  # previous states are shared by many users and live in `inp`
        cached = self._removal_cache.get(key)
        if cached is not None and cached[0] is st:
            return cached[1]
        old_plans = self.lic_info(self.license(st.sku_id, st.disabled_plans)).enabled
        if disabled_now is None:  # gone: the user left the group, or the group dropped the SKU
            lost = old_plans
        else:  # the group changed the SKU's disabled plans in place
            lost = old_plans - self.lic_info(self.license(st.sku_id, disabled_now)).enabled
        lost_prerequisites = tuple(sorted(lost & self.prerequisites))
        removal = (
            _Removal(st, old_plans, lost_prerequisites, disabled_now is not None)
            if lost_prerequisites
            else None
        )
        self._removal_cache[key] = (st, removal)
        return removal

    def license(self, sku_id: str, disabled: frozenset[str]) -> License:
        key = (sku_id, disabled)
        lic = self._license_cache.get(key)
        if lic is None:
            lic = License(sku_id, disabled)
            self._license_cache[key] = lic
        return lic


@dataclass(frozen=True, slots=True)
class _Removal:
    """A group source the user held before that this run would take away, in whole or in part.

    Only removals that lose a plan some plan requires (`_Context.prerequisites`) are recorded."""

    state: AssignmentState  # the previous Active/ActiveWithError state
    old_plans: frozenset[str]  # the plans it enabled (with the previous disabled plans)
    # the plans this run takes away (all of old_plans when the source is gone) that some plan requires
    lost_prerequisites: tuple[str, ...]
    in_place: bool  # the group still assigns the SKU with other disabled plans; else the source is gone


@dataclass(slots=True)
class _UserFacts:
    """What the evaluation of one user needs: fixed for the whole run.

    Users with the same facts get the same outcome, so one evaluation serves all of them."""

    location: str | None
    groups: list[_GroupInfo]  # in priority order
    direct: tuple[_LicInfo, ...]
    held_before_skus: frozenset[str]  # direct SKUs and SKUs held in `previous`
    # previous group sources (Active/ActiveWithError) that are gone or lose a prerequisite plan
    removals: tuple[_Removal, ...]
    mailbox_conflict: bool  # a proxy address shared with another user, and no mailbox before
    silent_possible: bool  # a proxy address held by a non-user object, and no mailbox before


@dataclass(slots=True)
class _Outcome:
    states: list[AssignmentState]
    held: dict[str, frozenset[str]]  # sku -> disabled plans (intersection over holding sources)
    new_claims: list[str]  # held SKUs that need a new seat
    kept_claims: list[str]  # held SKUs whose seat the user already had
    silent: list[str]


_NO_STATES: tuple[AssignmentState, ...] = ()
_NO_REMOVALS: tuple[_Removal, ...] = ()


def _user_facts(
    ctx: _Context,
    direct: tuple[License, ...],
    group_ids: Sequence[str],
    prev: tuple[AssignmentState, ...],
    location: str | None,
    dup_with_user: bool,
    dup_with_other: bool,
) -> _UserFacts:
    groups = [ctx.groups[g] for g in group_ids]  # already in id order
    if not prev and not direct:
        silent = dup_with_other and not dup_with_user
        return _UserFacts(location, groups, (), frozenset(), _NO_REMOVALS, dup_with_user, silent)
    held_skus = {lic.sku_id for lic in direct}
    held_group_states: list[AssignmentState] = []
    for st in prev:
        if st.state in HELD_STATES:
            held_skus.add(st.sku_id)
            if st.assigned_by_group is not None:
                held_group_states.append(st)
    had_mailbox = False
    if dup_with_user or dup_with_other:  # only then does an earlier mailbox matter
        had_mailbox = any(ctx.lic_info(lic).mailbox for lic in direct) or any(
            st.state in HELD_STATES and ctx.lic_info(ctx.license(st.sku_id, st.disabled_plans)).mailbox
            for st in prev
        )
    removals: tuple[_Removal, ...] = _NO_REMOVALS
    if held_group_states:
        held_groups = {st.assigned_by_group for st in held_group_states}
        if len(groups) > 1:
            groups.sort(key=lambda g: (g.id not in held_groups, g.id))
        mine = {g.id: g for g in groups}
        found: list[_Removal] = []
        for st in held_group_states:
            g = mine.get(st.assigned_by_group or "")
            disabled_now = g.disabled_of.get(st.sku_id) if g is not None else None
            if disabled_now is not None and disabled_now == st.disabled_plans:
                continue  # unchanged (the common case)
            removal = ctx.removal(st, disabled_now)
            if removal is not None:
                found.append(removal)
        if found:
            removals = tuple(sorted(found, key=lambda r: _state_order(r.state)))
    return _UserFacts(
        location=location,
        groups=groups,
        direct=tuple([ctx.lic_info(lic) for lic in direct]),
        held_before_skus=frozenset(held_skus),
        removals=removals,
        mailbox_conflict=dup_with_user and not had_mailbox,
        silent_possible=dup_with_other and not dup_with_user and not had_mailbox,
    )


def _group_errors(
    g: _GroupInfo,
    acc: set[str],
    location: str | None,
    dependency: Mapping[str, str] | None,
    mailbox_conflict: bool,
    count_denied: frozenset[str],
) -> dict[str, str]:
    """The error of each failing SKU of group `g` for a user (the first failing check wins)."""
    errs: dict[str, str] = {}
    if location is None:
        errs = dict.fromkeys(g.sku_ids, PROHIBITED_IN_USAGE_LOCATION_VIOLATION)
    elif location in g.prohibited_in:
        for li in g.lics:
            if location in li.prohibited_in:
                errs[li.sku_id] = PROHIBITED_IN_USAGE_LOCATION_VIOLATION
    if g.self_exclusive_skus or not g.partners.isdisjoint(acc):
        for li in g.lics:
            if li.sku_id not in errs and (
                li.sku_id in g.self_exclusive_skus or not li.partners.isdisjoint(acc)
            ):
                errs[li.sku_id] = MUTUALLY_EXCLUSIVE_VIOLATION
    if dependency:
        for s, e in dependency.items():
            errs.setdefault(s, e)
    if mailbox_conflict and g.mailbox:
        for li in g.lics:
            if li.mailbox:
                errs.setdefault(li.sku_id, UNIQUENESS_VIOLATION)
    if count_denied:
        for s in g.sku_ids & count_denied:
            errs.setdefault(s, COUNT_VIOLATION)
    return errs


def _evaluate(ctx: _Context, f: _UserFacts, count_denied: frozenset[str]) -> _Outcome:
    """One user's states, given the SKUs for which the user was refused a new seat."""
    direct_plans: set[str] = set()
    for li in f.direct:
        direct_plans |= li.enabled
    dep_denied: dict[str, dict[str, str]] = {}  # group -> sku -> DependencyViolation
    mailbox_conflict = f.mailbox_conflict
    silent_possible = f.silent_possible
    location = f.location
    while True:
        acc = set(direct_plans)
        accepted: list[_GroupInfo] = []
        denied: list[tuple[_GroupInfo, dict[str, str]]] = []
        silent: list[str] = []
        for g in f.groups:
            if silent_possible and g.mailbox:
                silent.append(g.id)
                continue
            if (
                location is not None
                and location not in g.prohibited_in
                and not g.self_exclusive_skus
                and g.partners.isdisjoint(acc)
                and not (dep_denied and g.id in dep_denied)
                and not (mailbox_conflict and g.mailbox)
                and not (count_denied and not count_denied.isdisjoint(g.sku_ids))
            ):
                accepted.append(g)
                acc |= g.plans
                continue
            errs = _group_errors(g, acc, location, dep_denied.get(g.id), mailbox_conflict, count_denied)
            if errs:
                denied.append((g, errs))
            else:
                accepted.append(g)
                acc |= g.plans
        # sources that were removed or shrunk but must stay because of a dependency (facts 2.9)
        kept: list[_Removal] = []
        union = acc
        if f.removals:
            kept, union = _kept_removals(ctx, f.removals, direct_plans, accepted, acc)
        grew = False
        for g in accepted:
            for sku_id, req in g.deps:
                if req.isdisjoint(union):
                    dep_denied.setdefault(g.id, {})[sku_id] = DEPENDENCY_VIOLATION
                    grew = True
        if not grew:
            break
    return _outcome(ctx, f, accepted, denied, kept, silent)


def _kept_removals(
    ctx: _Context,
    removals: tuple[_Removal, ...],
    direct_plans: set[str],
    accepted: list[_GroupInfo],
    acc: set[str],
) -> tuple[list[_Removal], set[str]]:
    """The removals Entra refuses (facts 2.9) and the user's resulting union of enabled plans.

    `acc` is the union of the direct and accepted group sources, with each group's current
    licenses. A removal is refused when the plans it takes away include the only prerequisite of a
    plan the user keeps from another source (a direct license or another group); a refused source
    keeps its previous plans, which can in turn make another removal necessary to refuse, so this
    runs to a fixed point, the removals in state order. An in-place change counts only if its group
    is accepted (a failing group's states are all `Error`)."""
    requires = ctx.rules.requires
    dependents = ctx.dependents
    kept: list[_Removal] = []
    remaining = acc
    candidates: Sequence[_Removal] = removals
    accepted_ids: set[str] | None = None
    while True:
        rest: list[_Removal] = []
        kept_before = len(kept)
        for r in candidates:
            # the plans that would lose their last prerequisite (usually none: a cheap test first)
            unmet = [
                p
                for q in r.lost_prerequisites
                for p in dependents[q]
                if p in remaining and requires[p].isdisjoint(remaining)
            ]
            if unmet:
                if r.in_place:
                    if accepted_ids is None:
                        accepted_ids = {g.id for g in accepted}
                    if r.state.assigned_by_group not in accepted_ids:
                        continue
                # ... and that the user has from another source than r's group
                others = _plans_with_kept(direct_plans, accepted, kept, r.state.assigned_by_group)
                if any(p in others for p in unmet):
                    kept.append(r)
                    remaining = _plans_with_kept(direct_plans, accepted, kept, None)
                    continue
            rest.append(r)
        if len(kept) == kept_before or not rest:
            return kept, remaining
        candidates = rest


def _plans_with_kept(
    direct_plans: set[str], accepted: list[_GroupInfo], kept: list[_Removal], without: str | None
) -> set[str]:
    """The user's union of enabled plans when the `kept` sources keep their previous plans (an
    in-place change refused: the plans the group's new license would add are not there), leaving
    out the sources of group `without`."""
    in_place = {(r.state.assigned_by_group, r.state.sku_id): r for r in kept if r.in_place}
    plans = set(direct_plans)
    for g in accepted:
        if g.id == without:
            continue
        if not in_place:
            plans |= g.plans
            continue
        for li in g.lics:
            r = in_place.get((g.id, li.sku_id))
            plans |= li.enabled if r is None else r.old_plans
    for r in kept:
        if not r.in_place and r.state.assigned_by_group != without:
            plans |= r.old_plans
    return plans


def _outcome(
    ctx: _Context,
    f: _UserFacts,
    accepted: list[_GroupInfo],
    denied: list[tuple[_GroupInfo, dict[str, str]]],
    kept: list[_Removal],
    silent: list[str],
) -> _Outcome:
    states: list[AssignmentState] = []
    held: dict[str, frozenset[str]] = {}
    for li in f.direct:
        states.append(ctx.state(li.sku_id, None, li.lic.disabled_plans, ACTIVE, NO_ERROR))
        held[li.sku_id] = li.lic.disabled_plans
    in_place: dict[tuple[str | None, str], AssignmentState] = {}
    for r in kept:
        if r.in_place:
            in_place[(r.state.assigned_by_group, r.state.sku_id)] = r.state
    for g in accepted:
        if in_place:
            # a refused in-place update: that SKU keeps its previous disabled plans, in error
            for active, (sku_id, disabled) in zip(g.active_states, g.held, strict=True):
                old = in_place.get((g.id, sku_id))
                if old is None:
                    states.append(active)
                else:
                    disabled = old.disabled_plans
                    states.append(ctx.state(sku_id, g.id, disabled, ACTIVE_WITH_ERROR, DEPENDENCY_VIOLATION))
                before = held.get(sku_id)
                held[sku_id] = disabled if before is None else before & disabled
            continue
        states.extend(g.active_states)
        for sku_id, disabled in g.held:
            before = held.get(sku_id)
            held[sku_id] = disabled if before is None else before & disabled
    for g, errs in denied:
        for li in g.lics:
            error = errs.get(li.sku_id, OTHER)
            states.append(ctx.state(li.sku_id, g.id, li.lic.disabled_plans, ERROR, error))
    for r in kept:
        if r.in_place:
            continue
        st = r.state
        states.append(
            ctx.state(
                st.sku_id, st.assigned_by_group, st.disabled_plans, ACTIVE_WITH_ERROR, DEPENDENCY_VIOLATION
            )
        )
        before = held.get(st.sku_id)
        held[st.sku_id] = st.disabled_plans if before is None else before & st.disabled_plans
    hb = f.held_before_skus
    if hb:
        new_claims = [s for s in held if s not in hb]
        kept_claims = [s for s in held if s in hb]
    else:
        new_claims, kept_claims = list(held), []
    return _Outcome(states, held, new_claims, kept_claims, silent)


def _state_order(st: AssignmentState) -> tuple[str, str]:
    return (st.sku_id, st.assigned_by_group or "")


def _finish(ctx: _Context, out: _Outcome) -> tuple[tuple[AssignmentState, ...], tuple[License, ...]]:
    states = tuple(sorted(out.states, key=_state_order)) if len(out.states) > 1 else tuple(out.states)
    assigned = tuple([ctx.license(s, out.held[s]) for s in sorted(out.held)])
    return states, assigned


def _user_licensing(uid: str, template: UserLicensing) -> UserLicensing:
    """A copy of `template` for user `uid`. Fills the frozen dataclass's __dict__ directly: the
    generated __init__ (one object.__setattr__ per field) is most of the cost of building the
    result for 100,000 users."""
    obj = object.__new__(UserLicensing)
    d = obj.__dict__
    d["user_id"] = uid
    d["states"] = template.states
    d["assigned"] = template.assigned
    d["silent_groups"] = template.silent_groups
    return obj


@dataclass(slots=True)
class _Entry:
    facts: _UserFacts
    outcome: _Outcome  # with unlimited seats
    users: int = 0  # how many users have these facts


def compute(inp: LicensingInput) -> LicensingResult:
    """Compute every user's license states from the tenant's assignments (see the module doc)."""
    # Hundreds of thousands of small acyclic objects: the cyclic garbage collector would scan them
    # over and over (about 40% of the run time) and free nothing. It is restored afterwards.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _compute(inp)
    finally:
        if gc_was_enabled:
            gc.enable()


def _compute(inp: LicensingInput) -> LicensingResult:
    ctx = _Context(inp)
    users = inp.users
    previous = inp.previous
    tenant_location = inp.tenant_location
    prohibited_anywhere = ctx.prohibited_anywhere

    # direct user members of licensed security groups, groups in id order
    memberships: dict[str, list[str]] = defaultdict(list)
    for gid in ctx.groups:
        for mid in dict.fromkeys(inp.groups[gid].member_ids):
            if mid in users:
                memberships[mid].append(gid)

    # proxy addresses held by two users, or by a user and a non-user object
    address_count = Counter(a for u in users.values() for a in u.proxy_addresses)
    shared = {a for a, n in address_count.items() if n > 1}
    others = set(inp.other_proxy_addresses)
    dup_users: set[str] = set()
    other_users: set[str] = set()
    if shared or others:
        for uid, u in users.items():
            if not u.proxy_addresses.isdisjoint(shared):
                dup_users.add(uid)
            if not u.proxy_addresses.isdisjoint(others):
                other_users.add(uid)

    candidates = set(memberships)
    candidates.update(uid for uid in previous if uid in users)
    candidates.update(uid for uid, u in users.items() if u.direct)

    # every user as if seats were unlimited; users with the same facts share one evaluation
    no_denials: frozenset[str] = frozenset()
    memo: dict[tuple[object, ...], _Entry] = {}
    entries: dict[str, _Entry] = {}
    used: dict[str, int] = dict.fromkeys(inp.skus, 0)
    claimants: list[str] = []
    no_groups: list[str] = []
    prev_ids: dict[int, int] = {}  # id(previous tuple) -> key; the tuples live as long as `inp`
    prev_values: dict[tuple[AssignmentState, ...], int] = {}
    for uid in sorted(candidates):
        user = users[uid]
        group_ids = memberships.get(uid, no_groups)
        prev = previous.get(uid, _NO_STATES)
        location = user.usage_location or tenant_location
        # the location only matters where a plan is prohibited
        loc_key = location if location is None or location in prohibited_anywhere else ""
        dup_user = uid in dup_users
        dup_other = uid in other_users
        # previous states: hashed once per distinct tuple object (reprocessing shares them)
        prev_key = prev_ids.get(id(prev)) if prev else 0
        if prev_key is None:
            prev_key = prev_values.setdefault(prev, len(prev_values) + 1)
            prev_ids[id(prev)] = prev_key
        key = (tuple(group_ids), user.direct, prev_key, loc_key, dup_user, dup_other)
        entry = memo.get(key)
        if entry is None:
            facts = _user_facts(ctx, user.direct, group_ids, prev, location, dup_user, dup_other)
            entry = _Entry(facts, _evaluate(ctx, facts, no_denials))
            memo[key] = entry
        entries[uid] = entry
        entry.users += 1
        if entry.outcome.new_claims:
            claimants.append(uid)

    # seats already held stay held; the rest is free
    for entry in memo.values():
        for s in entry.outcome.kept_claims:
            used[s] = used.get(s, 0) + entry.users
    free = {s: sku.enabled_units - used.get(s, 0) for s, sku in inp.skus.items()}  # unknown SKU: none
    free_get = free.get

    # new seats, one user at a time in user-id order (claimants is sorted)
    denied_memo: dict[tuple[int, frozenset[str]], _Outcome] = {}
    changed: dict[str, _Outcome] = {}  # users whose outcome changed for want of seats
    for uid in claimants:
        entry = entries[uid]
        out = entry.outcome
        denials = no_denials
        while True:
            short = [s for s in out.new_claims if free_get(s, 0) <= 0]
            if not short:
                break
            denials = denials.union(short)
            dkey = (id(entry), denials)
            again = denied_memo.get(dkey)
            if again is None:
                again = _evaluate(ctx, entry.facts, denials)
                denied_memo[dkey] = again
            out = again
        for s in out.new_claims:
            free[s] -= 1
        if out is not entry.outcome:
            # seats the user already had: given back when no longer held, taken when held again
            before = entry.outcome.kept_claims
            for s in before:
                if s not in out.held:
                    free[s] = free_get(s, 0) + 1
            for s in out.kept_claims:
                if s not in before:
                    free[s] = free_get(s, 0) - 1
            changed[uid] = out

    result: dict[str, UserLicensing] = {}
    finished: dict[int, tuple[UserLicensing, _Outcome, list[int]]] = {}  # id(outcome) -> template, count
    for uid, entry in entries.items():
        out = changed.get(uid, entry.outcome) if changed else entry.outcome
        fin = finished.get(id(out))
        if fin is None:
            states, assigned = _finish(ctx, out)
            fin = (UserLicensing("", states, assigned, tuple(out.silent)), out, [0])
            finished[id(out)] = fin
        fin[2][0] += 1
        template = fin[0]
        if template.states or template.silent_groups:
            result[uid] = _user_licensing(uid, template)
    consumed: dict[str, int] = dict.fromkeys(inp.skus, 0)
    for _template, out, count in finished.values():
        for s in out.held:
            consumed[s] = consumed.get(s, 0) + count[0]
    return LicensingResult(users=result, consumed=consumed)


# --------------------------------------------------------------------------------------------
# synchronous validations (the emulator's direct writes)


def _group_held(inp: LicensingInput, user_id: str) -> list[AssignmentState]:
    return [
        st
        for st in inp.previous.get(user_id, ())
        if st.assigned_by_group is not None and st.state in HELD_STATES
    ]


def _plans_of(skus: Mapping[str, SkuCapacity], lics: Iterable[License]) -> set[str]:
    out: set[str] = set()
    for lic in lics:
        sku = skus.get(lic.sku_id)
        if sku is not None:
            out |= enabled_plans(sku, lic)
    return out


def check_direct_assignment(
    inp: LicensingInput,
    user_id: str,
    add: Sequence[License],
    remove: Sequence[str],
    consumed: Mapping[str, int] | None = None,
) -> str | None:
    """Validate a direct `assignLicense` on a user as Graph does, synchronously and atomically.

    The post-state (existing direct licenses - `remove` + `add`; an added SKU the user already
    holds directly replaces it, which is how disabled plans are changed) is checked against the
    user's inherited licenses (`inp.previous` states from groups, Active or ActiveWithError).
    Returns None when Graph would accept the call, else Graph's error message (facts 1.8).
    `consumed` is the seats in use per SKU; computed from `inp` when not given.
    Removing a known SKU the user does not hold at all is accepted as a no-op.
    """
    user = inp.users[user_id]
    skus = inp.skus
    if add and not user.usage_location:
        return MSG_INVALID_USAGE_LOCATION
    for lic in add:
        if lic.sku_id not in skus:
            return MSG_UNKNOWN_SKU.format(sku_id=lic.sku_id)
    for sku_id in remove:
        if sku_id not in skus:
            return MSG_UNKNOWN_SKU.format(sku_id=sku_id)

    direct_before = {lic.sku_id: lic for lic in user.direct}
    inherited = _group_held(inp, user_id)
    inherited_skus = {st.sku_id for st in inp.previous.get(user_id, ()) if st.assigned_by_group is not None}
    removed = set(remove)
    direct_after = {s: lic for s, lic in direct_before.items() if s not in removed}
    for lic in add:
        direct_after[lic.sku_id] = lic

    held_before = set(direct_before) | {st.sku_id for st in inherited}
    if consumed is None:
        consumed = consumed_units(inp)
    for lic in add:
        if lic.sku_id in held_before:
            continue
        if skus[lic.sku_id].enabled_units - consumed.get(lic.sku_id, 0) <= 0:
            return MSG_NO_SEATS.format(sku_id=lic.sku_id)

    inherited_lics = [License(st.sku_id, st.disabled_plans) for st in inherited]
    before = _plans_of(skus, [*direct_before.values(), *inherited_lics])
    after = _plans_of(skus, [*direct_after.values(), *inherited_lics])
    added_plans = _plans_of(skus, add)

    partners = exclusive_partners(inp.rules)
    pairs: list[tuple[str, str]] = []
    for p in sorted(after):
        for q in sorted(partners.get(p, frozenset()) & after):
            if p in before and q in before:
                continue  # not caused by this call
            pairs.append((p, q))
    if pairs:
        # name the newly added plan first
        pairs.sort(key=lambda pq: (pq[0] not in added_plans or pq[0] in before, pq))
        p, q = pairs[0]
        return MSG_MUTUALLY_EXCLUSIVE.format(plan1=p, plan2=q)

    requires = inp.rules.requires
    for p in sorted(after):
        req = requires.get(p)
        if not req or not req.isdisjoint(after):
            continue
        if p in before and req.isdisjoint(before):
            continue  # already unmet before this call
        return MSG_DEPENDS_ON.format(plan=p, required=MSG_DEPENDS_ON_SEPARATOR.join(sorted(req)))

    for sku_id in remove:
        if sku_id not in direct_before and sku_id in inherited_skus:
            return MSG_INHERITED
    return None


def check_group_assignment(
    inp_rules: Rules,
    skus: Mapping[str, SkuCapacity],
    group_licenses_after: Sequence[License],
) -> str | None:
    """Validate a group's licenses after a group `assignLicense` (facts 2.11).

    An add-on needs its prerequisite in the same group: every plan the group enables whose
    `requires` set is not met by the group's own enabled plans rejects the call. Unknown SKUs
    are rejected with Graph's direct-assignment message. Returns None when accepted.
    """
    plans: set[str] = set()
    for lic in group_licenses_after:
        sku = skus.get(lic.sku_id)
        if sku is None:
            return MSG_UNKNOWN_SKU.format(sku_id=lic.sku_id)
        plans |= enabled_plans(sku, lic)
    for p in sorted(plans):
        req = inp_rules.requires.get(p)
        if req and req.isdisjoint(plans):
            return MSG_GROUP_DEPENDENCY.format(
                plan=p, required=MSG_GROUP_DEPENDENCY_SEPARATOR.join(sorted(req))
            )
    return None
