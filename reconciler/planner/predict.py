"""Step 3 of planning: predict the license states by running the licensing model.

    tenant_input(state, rules, changes=None) -> LicensingInput
    predict(state, resolution, changes, catalog) -> Prediction

The licensing model (reconciler.licensing.compute, the only place licensing rules live) runs
twice: on the tenant as it is (BEFORE) and on the tenant as the plan leaves it (AFTER: group
licenses and members changed, groups created with their members, usage locations set, direct
licenses removed), both with the users' current states as `previous` (who held a seat or a
plan first). Each user's AFTER errors are compared with the errors the tenant records today and
with BEFORE:

- an error in AFTER that is neither in the tenant today nor in BEFORE is caused by the plan:
  status "new", severity error (it blocks, SPEC section 5);
- an error in AFTER that exists today (or that the model already gives BEFORE) is "existing", a
  warning;
- an error recorded today that AFTER no longer has is "fixed" by the plan (a warning).

Only the users the plan touches (actions, members of the groups it changes, users whose location
or direct licenses change) and the unsettled ones (license errors, proxy addresses shared with
another object) are computed, with the seats held by everybody else set aside: every other
user's inputs are unchanged and they have no error, so the model keeps their states. This is
the emulator's partial recomputation; it keeps a plan on a large tenant fast.

Errors are grouped by (status, code, SKU, group) into one Violation naming the users, with a
message and the resolution Microsoft's article gives for the code. Nested groups in licensed
groups give `NestedGroup` warnings naming the users who will not be licensed through them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from reconciler import licensing
from reconciler.catalog import Catalog
from reconciler.licensing import (
    HELD_STATES,
    NO_ERROR,
    AssignmentState,
    License,
    LicensingGroup,
    LicensingInput,
    LicensingResult,
    LicensingUser,
    Rules,
    SkuCapacity,
    UserLicensing,
)
from reconciler.plan import EXISTING, FIXED, NEW, PredictedState, Violation
from reconciler.planner.diff import Changes, count
from reconciler.planner.resolve import Resolution, ResolvedGroup
from reconciler.policy.model import Location
from reconciler.state import TenantState

ERROR = "error"
WARNING = "warning"
SILENT = "Silent"  # internal marker: no license and no state (duplicate address held by a non-user)
DETAIL_USERS = 50  # users examined to name plans and objects in a message


def smtp_addresses(proxy_addresses: Iterable[str]) -> frozenset[str]:
    """SMTP proxy addresses, lower case, without the `smtp:` prefix."""
    out = set()
    for p in proxy_addresses:
        if p[:5].lower() == "smtp:" and len(p) > 5:
            out.add(p[5:].lower())
    return frozenset(out)


def user_addresses(state: TenantState) -> dict[str, frozenset[str]]:
    """user id -> SMTP proxy addresses (users without any are left out)."""
    out: dict[str, frozenset[str]] = {}
    for uid, u in state.users.items():
        if u.proxy_addresses:
            addrs = smtp_addresses(u.proxy_addresses)
            if addrs:
                out[uid] = addrs
    return out


def group_addresses(state: TenantState) -> dict[str, str]:
    """SMTP address -> the id of the (non-user) group holding it."""
    others: dict[str, str] = {}
    for gid in sorted(state.groups):
        g = state.groups[gid]
        addresses = set(smtp_addresses(g.proxy_addresses))
        if g.mail_enabled and g.mail:
            addresses.add(g.mail.lower())
        for a in sorted(addresses):
            others.setdefault(a, gid)
    return others


def sku_capacities(state: TenantState, subset: Collection[str] | None = None) -> dict[str, SkuCapacity]:
    """Each SKU's plans and the seats that the users computed (all of `state`, or `subset`) share:
    the seats bought, less the seats held by the other users (they keep them: their inputs do not
    change) and by users outside `state` (subscribedSkus' consumedUnits counts every user; an
    observed state may hold only the users a plan depends on)."""
    held_all: dict[str, int] = dict.fromkeys(state.skus, 0)
    held_in: dict[str, int] = dict.fromkeys(state.skus, 0)
    for uid, u in state.users.items():
        held: set[str] = set()
        for lic in u.direct_licenses:
            held.add(lic.sku_id)
        for st in u.license_states:
            if st.state in HELD_STATES:
                held.add(st.sku_id)
        if not held:
            continue
        inside = subset is None or uid in subset
        for sku_id in held:
            held_all[sku_id] = held_all.get(sku_id, 0) + 1
            if inside:
                held_in[sku_id] = held_in.get(sku_id, 0) + 1
    out = {}
    for s in state.skus.values():
        all_ = held_all.get(s.sku_id, 0)
        outside = max(0, s.consumed_units - all_) + all_ - held_in.get(s.sku_id, 0)
        out[s.sku_id] = SkuCapacity(sku_id=s.sku_id, plan_ids=s.plan_ids, enabled_units=s.enabled_units - outside)
    return out


def unsettled_users(
    state: TenantState, addresses: Mapping[str, frozenset[str]], others: Mapping[str, str]
) -> set[str]:
    """Users whose outcome can change without any change of their own (like the emulator's
    partial recomputation): every user with a license error, and every user sharing a proxy
    address with another object."""
    out: set[str] = set()
    for uid, u in state.users.items():
        for st in u.license_states:
            if st.error != NO_ERROR:
                out.add(uid)
                break
    first: dict[str, str] = {}
    shared: set[str] = set()
    for uid, addrs in addresses.items():
        for a in addrs:
            if a in others:
                out.add(uid)
            other = first.setdefault(a, uid)
            if other != uid:
                shared.add(a)
    if shared:
        for uid, addrs in addresses.items():
            if not shared.isdisjoint(addrs):
                out.add(uid)
    return out


@dataclass(frozen=True)
class TenantModel:
    """The tenant as the licensing model sees it, built once and shared by the BEFORE and AFTER
    inputs (only what the plan changes is rebuilt for AFTER). `users` may be a subset."""

    users: Mapping[str, LicensingUser]
    previous: Mapping[str, tuple[AssignmentState, ...]]
    groups: Mapping[str, LicensingGroup]
    others: Mapping[str, str]


def tenant_model(
    state: TenantState,
    subset: Collection[str] | None = None,
    addresses: Mapping[str, frozenset[str]] | None = None,
    others: Mapping[str, str] | None = None,
) -> TenantModel:
    users: dict[str, LicensingUser] = {}
    previous: dict[str, tuple[AssignmentState, ...]] = {}
    ids = state.users if subset is None else sorted(u for u in subset if u in state.users)
    addresses = addresses if addresses is not None else user_addresses(state)
    empty: frozenset[str] = frozenset()
    for uid in ids:
        u = state.users[uid]
        users[uid] = LicensingUser(
            id=uid,
            usage_location=u.usage_location,
            proxy_addresses=addresses.get(uid, empty),
            direct=u.direct_licenses,
        )
        if u.license_states:
            previous[uid] = u.license_states
    groups: dict[str, LicensingGroup] = {}
    for gid, g in state.groups.items():
        groups[gid] = LicensingGroup(
            id=gid,
            security_enabled=g.security_enabled,
            licenses=g.licenses,
            member_ids=(*g.member_user_ids, *g.member_group_ids),
        )
    return TenantModel(
        users=users,
        previous=previous,
        groups=groups,
        others=others if others is not None else group_addresses(state),
    )


def tenant_input(
    state: TenantState,
    rules: Rules,
    changes: Changes | None = None,
    skus: Mapping[str, SkuCapacity] | None = None,
    model: TenantModel | None = None,
) -> LicensingInput:
    """The licensing model's input for the tenant as it is, or as `changes` leave it."""
    base = model if model is not None else tenant_model(state)
    users: Mapping[str, LicensingUser] = base.users
    groups: Mapping[str, LicensingGroup] = base.groups
    if changes is not None:
        new_users = dict(base.users)
        for uid in set(changes.usage_locations) | set(changes.direct_removals):
            old = new_users.get(uid)
            if old is None:
                continue
            gone = changes.direct_removals.get(uid, frozenset())
            new_users[uid] = LicensingUser(
                id=uid,
                usage_location=changes.usage_locations.get(uid, old.usage_location),
                proxy_addresses=old.proxy_addresses,
                direct=tuple(lic for lic in old.direct if lic.sku_id not in gone),
            )
        users = new_users
        new_groups = dict(base.groups)
        for gid in set(changes.group_licenses) | set(changes.group_members) | set(changes.new_groups):
            live = state.groups.get(gid)
            new_groups[gid] = LicensingGroup(
                id=gid,
                security_enabled=live.security_enabled if live is not None else True,
                licenses=changes.group_licenses.get(gid, live.licenses if live is not None else ()),
                member_ids=(
                    *changes.group_members.get(gid, live.member_user_ids if live is not None else ()),
                    *(live.member_group_ids if live is not None else ()),
                ),
            )
        groups = new_groups
    return LicensingInput(
        tenant_location=state.organization.usage_location,
        skus=skus if skus is not None else sku_capacities(state),
        users=users,
        groups=groups,
        rules=rules,
        other_proxy_addresses=base.others,
        previous=base.previous,
    )


def predicted_states(
    states: Iterable[AssignmentState], cache: dict[int, tuple[AssignmentState, PredictedState]] | None = None
) -> tuple[PredictedState, ...]:
    """As PredictedState, in the order compute gives them (by SKU, then group; direct first).
    `cache` (by object identity: compute shares equal states between users) saves allocations."""
    if cache is None:
        return tuple(PredictedState(s.sku_id, s.assigned_by_group, s.state, s.error) for s in states)
    out = []
    for s in states:
        hit = cache.get(id(s))
        if hit is None or hit[0] is not s:
            hit = (s, PredictedState(s.sku_id, s.assigned_by_group, s.state, s.error))
            cache[id(s)] = hit
        out.append(hit[1])
    return tuple(out)


@dataclass
class Prediction:
    before: LicensingResult
    after: LicensingResult
    skus: Mapping[str, SkuCapacity]
    violations: list[Violation] = field(default_factory=list)
    # user id -> predicted states, for users whose states change or whom the plan touches
    states: dict[str, tuple[PredictedState, ...]] = field(default_factory=dict)
    # users whose predicted states differ from the tenant's current ones
    changed: set[str] = field(default_factory=set)


_ErrKey = tuple[str, str, str | None]  # (code, sku id, group id)


class Predictor:
    def __init__(
        self, state: TenantState, res: Resolution, changes: Changes, catalog: Catalog, touched: set[str]
    ) -> None:
        self.state = state
        self.res = res
        self.changes = changes
        self.catalog = catalog
        self.touched = touched
        self.skus: dict[str, SkuCapacity] = {}
        self.partners = licensing.exclusive_partners(res.rules)
        self.groups_by_key: dict[str, ResolvedGroup] = {g.key: g for g in res.groups}
        self.plan_name: dict[str, str] = {}
        for sku in state.skus.values():
            for p in sku.service_plans:
                self.plan_name.setdefault(p.plan_id, p.name or p.plan_id)
        self._address_owners: dict[str, list[str]] | None = None

    # ------------------------------------------------------------------ names

    def pname(self, pid: str) -> str:
        name = self.plan_name.get(pid)
        if name is None:
            entry = self.catalog.plans.get(pid)
            name = entry.name if entry is not None else pid
        return name

    def pnames(self, pids: Iterable[str]) -> str:
        return ", ".join(sorted({self.pname(p) for p in pids}))

    def part(self, sku_id: str) -> str:
        sku = self.state.skus.get(sku_id)
        return sku.part_number if sku is not None else sku_id

    def gname(self, key: str | None) -> str:
        if key is None:
            return "direct assignment"
        g = self.state.groups.get(key)
        if g is not None:
            return g.display_name
        r = self.groups_by_key.get(key)
        return r.name if r is not None else key

    def upn(self, uid: str) -> str:
        u = self.state.users.get(uid)
        return u.user_principal_name if u is not None else uid

    def source(self, sku_id: str, group: str | None) -> Location | None:
        if group is None:
            return None
        r = self.groups_by_key.get(group)
        if r is None:
            return None
        for lic in r.licenses or ():
            if lic.sku.sku_id == sku_id:
                return lic.spec.loc
        return r.spec.name_loc

    def enabled_of(self, sku_id: str, disabled: frozenset[str]) -> frozenset[str]:
        sku = self.skus.get(sku_id)
        if sku is None:
            return frozenset()
        return licensing.enabled_plans(sku, License(sku_id, disabled))

    # ------------------------------------------------------------------ run

    def run(self) -> Prediction:
        # Only the users the plan touches and the unsettled ones (errors, shared addresses) are
        # computed, with the seats of everybody else set aside: every other user's inputs do not
        # change and they have no error, so the model keeps their states as they are (the
        # emulator's partial recomputation makes the same choice).
        state = self.state
        self.addresses = user_addresses(state)
        others = group_addresses(state)
        subset = set(self.touched) | unsettled_users(state, self.addresses, others)
        subset &= set(state.users)
        if len(subset) * 2 > len(state.users):
            subset = set(state.users)
        self.skus = sku_capacities(state, subset)
        model = tenant_model(state, subset, self.addresses, others)
        self.model = model
        self.outside_seats = {
            sku_id: s.enabled_units - self.skus[sku_id].enabled_units for sku_id, s in state.skus.items()
        }
        before_input = tenant_input(state, self.res.rules, None, self.skus, model)
        after_input = tenant_input(state, self.res.rules, self.changes, self.skus, model)
        before = licensing.compute(before_input)
        after = licensing.compute(after_input)
        self.after_input = after_input
        pred = Prediction(before=before, after=after, skus=self.skus)
        self.after = after
        buckets: dict[tuple[str, str, str, str | None], list[str]] = {}
        empty: tuple[AssignmentState, ...] = ()
        cache: dict[int, tuple[AssignmentState, PredictedState]] = {}
        for uid in sorted(subset):
            user = self.state.users.get(uid)
            current = user.license_states if user is not None else empty
            a = after.users.get(uid)
            b = before.users.get(uid)
            a_states = a.states if a is not None else empty
            b_states = b.states if b is not None else empty
            changed = a_states != current
            if (
                _has_error(current)
                or _has_error(a_states)
                or _has_error(b_states)
                or (a is not None and a.silent_groups)
                or (b is not None and b.silent_groups)
            ):
                cur_errs = _errors(current)
                before_errs = _errors(b_states)
                after_errs = _errors(a_states)
                if b is not None:
                    before_errs |= {(SILENT, "", g) for g in b.silent_groups}
                if a is not None:
                    after_errs |= {(SILENT, "", g) for g in a.silent_groups}
                for e in after_errs:
                    status = EXISTING if (e in cur_errs or e in before_errs) else NEW
                    buckets.setdefault((status, *e), []).append(uid)
                for e in cur_errs - after_errs:
                    buckets.setdefault((FIXED, *e), []).append(uid)
            if changed and _state_set(a_states) != _state_set(current):
                pred.changed.add(uid)
            if uid in pred.changed or uid in self.touched:
                pred.states[uid] = predicted_states(a_states, cache)
        for uid in sorted(self.touched - set(pred.states)):
            if uid in self.state.users:
                pred.states[uid] = ()
        self.buckets = buckets
        for (status, code, sku_id, group), users in buckets.items():
            pred.violations.append(self.violation(status, code, sku_id, group, users))
        pred.violations += self.nested_groups()
        return pred

    # ------------------------------------------------------------------ messages

    def violation(self, status: str, code: str, sku_id: str, group: str | None, uids: list[str]) -> Violation:
        users = tuple(sorted((self.upn(u) for u in uids), key=str.casefold))
        sample = sorted(uids, key=lambda u: self.upn(u).casefold())[:DETAIL_USERS]
        n = len(users)
        who = f"{n} user{'s' if n != 1 else ''}"
        one = n == 1
        verb = {
            NEW: "would get",
            EXISTING: "has and keeps" if one else "have and keep",
            FIXED: ("has" if one else "have") + " today (this plan fixes it)",
        }[status]
        if code == SILENT:
            return self._silent(status, group, sample, users, who)
        part = self.part(sku_id)
        gname = self.gname(group)
        where = f"{part} from {gname}" if group is not None else f"direct {part}"
        message, resolution = self.explain(code, sku_id, group, sample, part, gname)
        head = f"{who} {verb} {code} on {where}"
        return Violation(
            code=code,
            severity=ERROR if status == NEW else WARNING,
            message=f"{head}: {message}" if message else head,
            resolution=resolution,
            sku=part,
            group=gname if group is not None else None,
            users=users,
            status=status,
            source=self.source(sku_id, group),
        )

    def _state_of(self, uid: str, sku_id: str, group: str | None) -> AssignmentState | None:
        u = self.after.users.get(uid)
        for st in u.states if u is not None else ():
            if st.sku_id == sku_id and st.assigned_by_group == group:
                return st
        user = self.state.users.get(uid)
        for st in user.license_states if user is not None else ():
            if st.sku_id == sku_id and st.assigned_by_group == group:
                return st
        return None

    def _after_user(self, uid: str) -> UserLicensing | None:
        return self.after.users.get(uid)

    def _union(self, uid: str) -> frozenset[str]:
        u = self._after_user(uid)
        return licensing.user_enabled_plans(u, self.skus) if u is not None else frozenset()

    def _plan_sources(self, uid: str, plans: frozenset[str]) -> list[str]:
        """Where the user's held states enabling any of `plans` come from (group names / direct)."""
        u = self._after_user(uid)
        out = []
        for st in u.states if u is not None else ():
            if st.state in HELD_STATES and not self.enabled_of(st.sku_id, st.disabled_plans).isdisjoint(plans):
                if st.assigned_by_group is None:
                    out.append(f"direct {self.part(st.sku_id)}")
                else:
                    out.append(f"{self.part(st.sku_id)} from {self.gname(st.assigned_by_group)}")
        return out

    def _still_granted(self, uid: str, sku_id: str, group: str | None) -> bool:
        """Does `group` still give `sku_id` to the user after the plan (an in-place plan change)?"""
        g = self.after_input.groups.get(group or "")
        return (
            g is not None
            and g.security_enabled
            and uid in g.member_ids
            and any(lic.sku_id == sku_id for lic in g.licenses)
        )

    def explain(
        self, code: str, sku_id: str, group: str | None, sample: list[str], part: str, gname: str
    ) -> tuple[str, str]:
        rules = self.res.rules
        if code == licensing.COUNT_VIOLATION:
            sku = self.state.skus.get(sku_id)
            bought = sku.enabled_units if sku is not None else 0
            used = self.after.consumed.get(sku_id, 0) + self.outside_seats.get(sku_id, 0)
            return (
                f"no seat left ({bought} bought, {used} in use after the plan)",
                f"buy more {part} seats, or free seats by removing {part} from other users or groups",
            )
        if code == licensing.MUTUALLY_EXCLUSIVE_VIOLATION:
            pairs: set[tuple[str, str]] = set()
            others: set[str] = set()
            for uid in sample:
                st = self._state_of(uid, sku_id, group)
                if st is None:
                    continue
                mine = self.enabled_of(sku_id, st.disabled_plans)
                union = self._union(uid)
                for p in mine:
                    for q in self.partners.get(p, frozenset()):
                        if q in union or q in mine:
                            pairs.add((p, q))
                            if q in union:
                                others.update(self._plan_sources(uid, frozenset({q})))
            if pairs:
                p, q = sorted(pairs, key=lambda pq: (self.pname(pq[0]), self.pname(pq[1])))[0]
                text = f"{self.pname(p)} ({part}) cannot be combined with {self.pname(q)}"
                if others:
                    text += f" that the users have from {'; '.join(sorted(others))}"
                return (
                    text,
                    f"disable {self.pname(p)} in {gname}'s {part} or disable {self.pname(q)} in the group or on "
                    f"the direct license that gives it, or remove the redundant license",
                )
            return ("two of the users' service plans are mutually exclusive",
                    "disable the conflicting plan in the group or on the direct license, or remove the redundant license")
        if code == licensing.DEPENDENCY_VIOLATION:
            missing: dict[str, frozenset[str]] = {}
            for uid in sample:
                st = self._state_of(uid, sku_id, group)
                if st is None:
                    continue
                mine = self.enabled_of(sku_id, st.disabled_plans)
                union = self._union(uid)
                if st.state == licensing.ACTIVE_WITH_ERROR:
                    rest = union - mine
                    for p in rest:
                        req = rules.requires.get(p)
                        if req and req.isdisjoint(rest) and not req.isdisjoint(mine):
                            missing[p] = req
                else:
                    for p in mine:
                        req = rules.requires.get(p)
                        if req and req.isdisjoint(union | mine):
                            missing[p] = req
            if missing:
                p = sorted(missing, key=self.pname)[0]
                req_names = " or ".join(sorted({self.pname(r) for r in missing[p]}))
                st0 = self._state_of(sample[0], sku_id, group) if sample else None
                if st0 is not None and st0.state == licensing.ACTIVE_WITH_ERROR and self._still_granted(
                    sample[0], sku_id, group
                ):
                    # the group keeps the SKU but switches the prerequisite off in place
                    return (
                        f"switching {req_names} off in {gname}'s {part} would leave {self.pname(p)} without its "
                        "prerequisite; the users keep their previous plans, in error",
                        f"keep {req_names} enabled in {gname}'s {part} (or give it another way), "
                        f"or remove the dependent plan {self.pname(p)} first",
                    )
                if st0 is not None and st0.state == licensing.ACTIVE_WITH_ERROR:
                    return (
                        f"taking {part} away would leave {self.pname(p)} without its prerequisite {req_names}; "
                        "the license stays on the users, in error",
                        f"keep the prerequisite plan {req_names} (leave {part} on {gname} or give it another way), "
                        f"or remove the dependent plan {self.pname(p)} first",
                    )
                return (
                    f"{self.pname(p)} requires {req_names}, which the users will not have",
                    f"keep or enable the prerequisite plan {req_names}, or disable {self.pname(p)} in {gname}'s {part}",
                )
            return ("a service plan's prerequisite is missing", "keep or enable the prerequisite plan, or remove the dependent plan")
        if code == licensing.PROHIBITED_IN_USAGE_LOCATION_VIOLATION:
            locations: set[str] = set()
            plans: set[str] = set()
            for uid in sample:
                lu = self.after_input.users.get(uid)
                loc = (lu.usage_location if lu is not None else None) or self.state.organization.usage_location
                st = self._state_of(uid, sku_id, group)
                if loc is None or st is None:
                    continue
                for p in self.enabled_of(sku_id, st.disabled_plans):
                    if loc in rules.prohibited_locations.get(p, frozenset()):
                        plans.add(p)
                        locations.add(loc)
            if plans:
                return (
                    f"{self.pnames(plans)} cannot be used in {', '.join(sorted(locations))} (the users' usage location)",
                    f"set or correct the users' usage location (usageLocations.users), or disable "
                    f"{self.pnames(plans)} in {gname}'s {part}",
                )
            return ("the users have no usage location and the tenant none either",
                    "set the users' usage location (usageLocations), or disable the plan")
        if code == licensing.UNIQUENESS_VIOLATION:
            dups = self._duplicates(sample)
            return (
                f"a proxy address is also another object's ({dups})" if dups else "a proxy address is not unique",
                f"fix the duplicate proxy address ({dups or 'see the users'}), then reprocess the users",
            )
        if code == licensing.OTHER:
            siblings: set[str] = set()
            for uid in sample:
                u = self._after_user(uid)
                for st in u.states if u is not None else ():
                    if st.assigned_by_group == group and st.sku_id != sku_id and st.error not in (NO_ERROR, licensing.OTHER):
                        siblings.add(f"{self.part(st.sku_id)} ({st.error})")
            text = ", ".join(sorted(siblings)) or "another product"
            return (
                f"{gname} assigns all its products or none, and {text} failed for these users",
                f"fix the error of {text} in the same group; {part} then follows",
            )
        return ("", "see Microsoft's article on resolving group license assignment problems")

    def _owners(self) -> dict[str, list[str]]:
        """address -> the users (UPNs) and groups holding it, for the addresses of users in
        UniquenessViolation (built once, on first use)."""
        if self._address_owners is None:
            wanted: set[str] = set()
            for uids in self._unique_users().values():
                for uid in uids:
                    wanted.update(self.addresses.get(uid, ()))
            owners: dict[str, list[str]] = {}
            for uid, addrs in self.addresses.items():
                if wanted.isdisjoint(addrs):
                    continue
                for a in addrs:
                    owners.setdefault(a, []).append(self.upn(uid))
            for g in self.state.groups.values():
                group_addrs = set(smtp_addresses(g.proxy_addresses))
                if g.mail_enabled and g.mail:
                    group_addrs.add(g.mail.lower())
                for a in group_addrs:
                    owners.setdefault(a, []).append(f"group {g.display_name}")
            self._address_owners = owners
        return self._address_owners

    def _unique_users(self) -> dict[tuple[str, str, str | None], list[str]]:
        out: dict[tuple[str, str, str | None], list[str]] = {}
        for (_status, code, sku_id, group), uids in self.buckets.items():
            if code in (licensing.UNIQUENESS_VIOLATION, SILENT):
                out.setdefault((code, sku_id, group), []).extend(uids[:DETAIL_USERS])
        return out

    def _duplicates(self, sample: list[str]) -> str:
        owners = self._owners()
        found: set[str] = set()
        for uid in sample:
            upn = self.upn(uid)
            for a in self.addresses.get(uid, ()):
                others = [o for o in owners.get(a, ()) if o != upn]
                if others:
                    found.add(f"{a} is also held by {', '.join(sorted(others))}")
        return "; ".join(sorted(found)[:5])

    def _silent(self, status: str, group: str | None, sample: list[str], users: tuple[str, ...], who: str) -> Violation:
        gname = self.gname(group)
        dups = self._duplicates(sample)
        one = len(users) == 1
        verb = {
            NEW: "would get",
            EXISTING: "gets" if one else "get",
            FIXED: ("gets" if one else "get") + " today (this plan fixes it)",
        }[status]
        return Violation(
            code=licensing.UNIQUENESS_VIOLATION,
            severity=ERROR if status == NEW else WARNING,
            message=(
                f"{who} {verb} neither {gname}'s licenses nor any error: a proxy address of theirs belongs to "
                f"another object ({dups or 'a group or contact'}); Entra records nothing"
            ),
            resolution=f"fix the duplicate proxy address ({dups or 'see the users'}), then reprocess the users",
            sku=None,
            group=gname,
            users=users,
            status=status,
            source=self.source("", group),
        )

    # ------------------------------------------------------------------ nested groups

    def nested_groups(self) -> list[Violation]:
        out: list[Violation] = []
        inp = self.after_input
        for key in sorted(inp.groups, key=lambda k: (self.gname(k).casefold(), k)):
            g = inp.groups[key]
            if not g.licenses or not g.security_enabled:
                continue
            live = self.state.groups.get(key)
            nested = live.member_group_ids if live is not None else ()
            if not nested:
                continue
            direct = set(g.member_ids)
            names = []
            users: set[str] = set()
            for nid in nested:
                ng = self.state.groups.get(nid)
                names.append(ng.display_name if ng is not None else nid)
                if ng is not None:
                    users.update(u for u in ng.member_user_ids if u not in direct)
            was_licensed = live is not None and bool(live.licenses)
            upns = tuple(sorted((self.upn(u) for u in users), key=str.casefold))
            gname = self.gname(key)
            out.append(
                Violation(
                    code="NestedGroup",
                    severity=WARNING,
                    message=(
                        f"{gname} has nested groups ({', '.join(sorted(names, key=str.casefold))}); group-based "
                        f"licensing ignores them, so their {count(len(upns), 'member')} who are not direct members get "
                        f"nothing from {gname}"
                    ),
                    resolution=f"add the users as direct members of {gname} (e.g. in its `members` list), or license the nested group itself",
                    group=gname,
                    users=upns,
                    status=EXISTING if was_licensed else NEW,
                    source=self.groups_by_key[key].spec.name_loc if key in self.groups_by_key else None,
                )
            )
        return out


def _has_error(states: Iterable[AssignmentState]) -> bool:
    return any(s.error != NO_ERROR for s in states)


def _errors(states: Iterable[AssignmentState]) -> set[_ErrKey]:
    return {(s.error, s.sku_id, s.assigned_by_group) for s in states if s.error != NO_ERROR}


def _state_set(states: Iterable[AssignmentState]) -> set[tuple[str, str | None, str, str]]:
    return {(s.sku_id, s.assigned_by_group, s.state, s.error) for s in states}


def predict(
    state: TenantState, resolution: Resolution, changes: Changes, catalog: Catalog, touched: set[str]
) -> Prediction:
    return Predictor(state, resolution, changes, catalog, touched).run()
