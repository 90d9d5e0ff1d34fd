"""Step 2 of planning: the actions that turn the live tenant into the policy (SPEC section 5).

    diff(policy, state, resolution, catalog) -> Changes

Per managed group (sorted by display name), per SKU (sorted by part number):
- a SKU the group lacks -> `assignLicense`; a SKU whose disabled plans differ -> `updateLicense`
  (in place: the SKU goes in `addLicenses`, never removed and re-added); a live SKU the policy's
  `licenses` list does not name -> `removeLicense`. All of a group's license actions are made by
  ONE Graph request, `POST /groups/{id}/assignLicense` with every add/update in `addLicenses` and
  every removal in `removeLicenses` (a swap is atomic, facts 1.2); each action carries that same
  request and the same `request_key` (`assignLicense:{group key}`).
- `create: true` and no such group -> `createGroup` (`POST /groups`, a security group); its other
  actions use the placeholder id `{new:NAME}` in their URLs, which apply replaces with the id of
  the created group.
- `members` given -> `addMember` / `removeMember` for direct *user* members (nested groups are
  left alone).
- usage locations -> `setUsageLocation` (`PATCH /users/{id}`): `usageLocations.users` always
  (when different); members of licensed managed groups without a location get the group's
  `usageLocation`, else `usageLocations.default`; those left without one rely on the tenant's
  location (`UsageLocationFallback` warning).
- `directLicenses` -> `RedundantDirectLicense` warnings (report) or `removeDirectLicense` actions
  (removeRedundant; at most `waveSize` per plan), see `_direct_licenses`.
- `unmanagedGroups` -> `UnmanagedGroup` warnings (report) or `removeLicense` actions (remove).

`Changes` also holds the tenant as the plan leaves it (group licenses and members, usage
locations, direct licenses removed), which step 3 (predict) runs the licensing model on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import licensing
from reconciler.catalog import Catalog
from reconciler.licensing import ACTIVE, NO_ERROR, License, SkuCapacity
from reconciler.plan import NEW, Action, GraphRequest, ObjectRef, Violation
from reconciler.planner.resolve import (
    FORM_ENABLED,
    Resolution,
    ResolvedGroup,
    ResolvedLicense,
)
from reconciler.policy.model import Policy
from reconciler.state import SubscribedSku, TenantState

DIRECTORY_OBJECTS = "https://graph.microsoft.com/v1.0/directoryObjects/"
WARNING = "warning"


@dataclass
class Changes:
    """The actions, the warnings found on the way, and the tenant as the plan leaves it."""

    actions: list[Action] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    # group key -> licenses after the plan (only groups whose licenses change, new ones included)
    group_licenses: dict[str, tuple[License, ...]] = field(default_factory=dict)
    # group key -> direct user members after the plan (groups whose membership changes, new ones)
    group_members: dict[str, tuple[str, ...]] = field(default_factory=dict)
    new_groups: dict[str, ResolvedGroup] = field(default_factory=dict)
    usage_locations: dict[str, str] = field(default_factory=dict)  # user id -> location after
    direct_removals: dict[str, frozenset[str]] = field(default_factory=dict)  # user id -> sku ids
    # group keys whose processing the plan triggers (license or membership change)
    processed_groups: set[str] = field(default_factory=set)


def count(n: int, one: str, many: str | None = None) -> str:
    """`1 user`, `3 users` (or the plural given)."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def plan_names(sku: SubscribedSku, plan_ids: Iterable[str]) -> list[str]:
    """Plan names in the SKU's own order."""
    wanted = set(plan_ids)
    return [p.name or p.plan_id for p in sku.service_plans if p.plan_id in wanted]


def license_json(lic: License) -> dict[str, Any]:
    return {"disabledPlans": sorted(lic.disabled_plans), "skuId": lic.sku_id}


def mail_nickname(name: str) -> str:
    """A mailNickname for a display name: ASCII letters, digits, `-`, `_` and `.`, at most 64."""
    nick = re.sub(r"[^A-Za-z0-9._-]", "", name)[:64]
    return nick or "group"


class _Differ:
    def __init__(self, policy: Policy, state: TenantState, res: Resolution, catalog: Catalog) -> None:
        self.policy = policy
        self.state = state
        self.res = res
        self.catalog = catalog
        self.out = Changes()
        # direct user members after the plan, for every resolved group
        self.members_after: dict[str, tuple[str, ...]] = {}
        # licenses after the plan, for every resolved group (live ones when not managed)
        self.licenses_after: dict[str, tuple[License, ...]] = {}
        self._groups_of: dict[str, list[ResolvedGroup]] | None = None

    def upn(self, uid: str) -> str:
        user = self.state.users.get(uid)
        return user.user_principal_name if user is not None else uid

    def upns(self, uids: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted((self.upn(u) for u in uids), key=str.casefold))

    # ------------------------------------------------------------------ groups

    def run(self) -> Changes:
        creates: list[Action] = []
        member_actions: list[Action] = []
        license_actions: list[Action] = []
        for g in self.res.groups:
            live_members = g.live.member_user_ids if g.live is not None else ()
            self.members_after[g.key] = g.members if g.members is not None else tuple(live_members)
            live_lics = g.live.licenses if g.live is not None else ()
            if g.licenses is not None:
                self.licenses_after[g.key] = tuple(sorted(r.license for r in g.licenses))
            else:
                self.licenses_after[g.key] = tuple(live_lics)
            if g.create:
                creates.append(self._create(g))
                self.out.new_groups[g.key] = g
            member_actions += self._members(g)
            license_actions += self._licenses(g)
        license_actions += self._unmanaged()
        usage = self._usage_locations()
        direct = self._direct_licenses()
        self.out.actions = [*creates, *usage, *member_actions, *license_actions, *direct]
        return self.out

    def _create(self, g: ResolvedGroup) -> Action:
        body = {
            "description": "Group-based licensing; managed by reconciler",
            "displayName": g.name,
            "mailEnabled": False,
            "mailNickname": mail_nickname(g.name),
            "securityEnabled": True,
        }
        return Action(
            kind="createGroup",
            reason=f"the policy creates {g.name} (create: true) and no such group exists",
            request=GraphRequest("POST", "/groups", body),
            group=ObjectRef(g.name, None),
            users=self.upns(self.members_after[g.key]),
            source=g.spec.name_loc,
        )

    def _members(self, g: ResolvedGroup) -> list[Action]:
        if g.members is None:
            return []
        current = set(g.live.member_user_ids) if g.live is not None else set()
        wanted = set(g.members)
        ref = ObjectRef(g.name, None if g.create else g.key)
        actions: list[Action] = []
        for uid in sorted(wanted - current, key=lambda u: self.upn(u).casefold()):
            actions.append(
                Action(
                    kind="addMember",
                    reason=f"listed in the policy's members of {g.name}",
                    request=GraphRequest(
                        "POST", f"/groups/{g.key}/members/$ref", {"@odata.id": DIRECTORY_OBJECTS + uid}
                    ),
                    group=ref,
                    user=ObjectRef(self.upn(uid), uid),
                    users=(self.upn(uid),),
                    details={"protected": True} if g.protected else {},
                    source=g.spec.name_loc,
                )
            )
        for uid in sorted(current - wanted, key=lambda u: self.upn(u).casefold()):
            actions.append(
                Action(
                    kind="removeMember",
                    reason=f"not in the policy's members of {g.name} (membership is managed exactly)",
                    request=GraphRequest("DELETE", f"/groups/{g.key}/members/{uid}/$ref"),
                    group=ref,
                    user=ObjectRef(self.upn(uid), uid),
                    users=(self.upn(uid),),
                    details={"protected": True} if g.protected else {},
                    source=g.spec.name_loc,
                )
            )
        if wanted != current:
            self.out.group_members[g.key] = tuple(sorted(wanted))
            if self.licenses_after[g.key] or (g.live is not None and g.live.licenses):
                self.out.processed_groups.add(g.key)
        return actions

    def _license_details(self, r: ResolvedLicense, members: tuple[str, ...]) -> dict[str, Any]:
        sku = r.sku
        d: dict[str, Any] = {"enabledPlans": plan_names(sku, r.enabled)}
        if r.form == FORM_ENABLED:
            d["heldOff"] = plan_names(sku, r.disabled)
        elif r.disabled:
            d["disabledPlans"] = plan_names(sku, r.disabled)
        if r.new_plans:
            d["newServicePlans"] = plan_names(sku, r.new_plans)
        needed = sum(
            1 for uid in members if uid in self.state.users and sku.sku_id not in self.state.users[uid].held_skus()
        )
        d["seats"] = {"needed": needed, "free": sku.free_units}
        return d

    def _licenses(self, g: ResolvedGroup) -> list[Action]:
        if g.licenses is None:
            return []
        live = {lic.sku_id: lic for lic in (g.live.licenses if g.live is not None else ())}
        members = self.members_after[g.key]
        current_members = g.live.member_user_ids if g.live is not None else ()
        ref = ObjectRef(g.name, None if g.create else g.key)
        pending: list[tuple[Action, License | None, str | None]] = []
        for r in g.licenses:
            sku = r.sku
            self._new_plans_warning(g, r)
            old = live.get(sku.sku_id)
            if old is None:
                details = self._license_details(r, members)
                if g.protected:
                    details["protected"] = True
                reason = f"the policy gives {sku.part_number} to {g.name}"
                pending.append(
                    (
                        Action(
                            kind="assignLicense", reason=reason, request=GraphRequest("POST", ""), group=ref,
                            sku=sku.part_number, users=self.upns(members), details=details, source=r.spec.loc,
                        ),
                        r.license,
                        None,
                    )
                )
            elif old.disabled_plans != r.disabled:
                details = self._license_details(r, members)
                details.pop("seats", None)
                details["planChanges"] = {
                    "enable": plan_names(sku, old.disabled_plans - r.disabled),
                    "disable": plan_names(sku, r.disabled - old.disabled_plans),
                }
                if g.protected:
                    details["protected"] = True
                changes = details["planChanges"]
                words = []
                if changes["enable"]:
                    words.append("switches on " + ", ".join(changes["enable"]))
                if changes["disable"]:
                    words.append("switches off " + ", ".join(changes["disable"]))
                reason = f"the policy {' and '.join(words) or 'changes the disabled plans'} in {sku.part_number}"
                pending.append(
                    (
                        Action(
                            kind="updateLicense", reason=reason, request=GraphRequest("POST", ""), group=ref,
                            sku=sku.part_number, users=self.upns(members), details=details, source=r.spec.loc,
                        ),
                        r.license,
                        None,
                    )
                )
        wanted = {r.sku.sku_id for r in g.licenses}
        for sku_id in sorted(set(live) - wanted, key=lambda s: self._part(s)):
            details = {"protected": True} if g.protected else {}
            pending.append(
                (
                    Action(
                        kind="removeLicense",
                        reason=f"{self._part(sku_id)} is on {g.name} but not in the policy's licenses for it",
                        request=GraphRequest("POST", ""),
                        group=ref,
                        sku=self._part(sku_id),
                        users=self.upns(current_members),
                        details=details,
                        source=g.spec.name_loc,
                    ),
                    None,
                    sku_id,
                )
            )
        if pending:
            self.out.group_licenses[g.key] = self.licenses_after[g.key]
            self.out.processed_groups.add(g.key)
            self._group_dependency(g)
        return self._one_request(g.key, pending)

    def _group_dependency(self, g: ResolvedGroup) -> None:
        """Graph refuses a group assignLicense whose add-on lacks its prerequisite in the same
        group (facts 2.11): say so before apply meets the 400."""
        skus = {
            s.sku_id: SkuCapacity(s.sku_id, s.plan_ids, s.enabled_units) for s in self.state.skus.values()
        }
        message = licensing.check_group_assignment(self.res.rules, skus, self.licenses_after[g.key])
        if message is None:
            return
        for pid, name in sorted(self.plan_names_by_id().items(), key=lambda kv: -len(kv[0])):
            message = message.replace(pid, name)
        self.out.violations.append(
            Violation(
                code="DependencyViolation",
                severity="error",
                message=f"Graph would refuse the change of {g.name}'s licenses: {message}",
                resolution=(
                    "keep or enable the prerequisite plan in the same group (add the product that "
                    "carries it), or disable the dependent plan"
                ),
                group=g.name,
                status=NEW,
                source=g.spec.loc,
            )
        )

    def plan_names_by_id(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for sku in self.state.skus.values():
            for p in sku.service_plans:
                out.setdefault(p.plan_id, p.name or p.plan_id)
        for pid, entry in self.catalog.plans.items():
            out.setdefault(pid, entry.name)
        return out

    def _one_request(self, key: str, pending: list[tuple[Action, License | None, str | None]]) -> list[Action]:
        if not pending:
            return []
        pending.sort(key=lambda p: ((p[0].sku or "").casefold(), p[0].kind))
        body = {
            "addLicenses": [license_json(lic) for _, lic, _ in pending if lic is not None],
            "removeLicenses": [sku_id for _, _, sku_id in pending if sku_id is not None],
        }
        request = GraphRequest("POST", f"/groups/{key}/assignLicense", body)
        rkey = f"assignLicense:{key}"
        return [
            Action(
                kind=a.kind, reason=a.reason, request=request, group=a.group, user=a.user, sku=a.sku,
                users=a.users, details=a.details, source=a.source, request_key=rkey,
            )
            for a, _, _ in pending
        ]

    def _part(self, sku_id: str) -> str:
        sku = self.state.skus.get(sku_id)
        return sku.part_number if sku is not None else sku_id

    def _new_plans_warning(self, g: ResolvedGroup, r: ResolvedLicense) -> None:
        if r.form == FORM_ENABLED or not r.new_plans:
            return
        on = [p for p in r.new_plans if p not in r.disabled]
        if not on:
            return
        names = plan_names(r.sku, on)
        self.out.violations.append(
            Violation(
                code="NewServicePlans",
                severity=WARNING,
                message=(
                    f"{r.sku.part_number} has service plans that are new or still being provisioned "
                    f"({', '.join(names)}); with the disabledPlans form they are switched on for "
                    f"every member of {g.name}"
                ),
                resolution=(
                    "review them: add the ones you do not want to disabledPlans, or write the license "
                    "with enabledPlans so that new plans stay off"
                ),
                sku=r.sku.part_number,
                group=g.name,
                users=self.upns(self.members_after[g.key]),
                status=NEW,
                source=r.spec.loc,
            )
        )

    def _unmanaged(self) -> list[Action]:
        mode = self.policy.unmanaged_groups
        if mode == "ignore":
            return []
        actions: list[Action] = []
        groups = [g for g in self.state.groups.values() if g.licenses and g.id not in self.res.named_ids]
        for g in sorted(groups, key=lambda g: (g.display_name.casefold(), g.id)):
            parts = sorted(self._part(lic.sku_id) for lic in g.licenses)
            users = self.upns(g.member_user_ids)
            if mode == "report":
                self.out.violations.append(
                    Violation(
                        code="UnmanagedGroup",
                        severity=WARNING,
                        message=(
                            f"{g.display_name} carries {', '.join(parts)} for {count(len(users), 'direct member')} "
                            "but no policy names it; it is left as it is"
                        ),
                        resolution=(
                            "adopt it in the policy (reconciler export --group prints its entry), or set "
                            "unmanagedGroups: remove to take its licenses away"
                        ),
                        sku=", ".join(parts),
                        group=g.display_name,
                        users=users,
                        status="existing",
                    )
                )
                continue
            protected = g.id in self.res.protected_ids
            ref = ObjectRef(g.display_name, g.id)
            pending: list[tuple[Action, License | None, str | None]] = []
            for lic in sorted(g.licenses, key=lambda lic: self._part(lic.sku_id)):
                pending.append(
                    (
                        Action(
                            kind="removeLicense",
                            reason=f"{g.display_name} is not named by the policy (unmanagedGroups: remove)",
                            request=GraphRequest("POST", ""),
                            group=ref,
                            sku=self._part(lic.sku_id),
                            users=users,
                            details={"protected": True} if protected else {},
                        ),
                        None,
                        lic.sku_id,
                    )
                )
            self.out.group_licenses[g.id] = ()
            self.out.processed_groups.add(g.id)
            actions += self._one_request(g.id, pending)
        return actions

    # ------------------------------------------------------------------ users

    def _licensed_groups_of(self) -> dict[str, list[ResolvedGroup]]:
        """user id -> the managed groups (carrying licenses after the plan) the user is a member of."""
        if self._groups_of is not None:
            return self._groups_of
        out: dict[str, list[ResolvedGroup]] = {}
        self._groups_of = out
        for g in self.res.groups:
            if not self.licenses_after[g.key]:
                continue
            if g.live is not None and not g.live.security_enabled:
                continue
            for uid in self.members_after[g.key]:
                out.setdefault(uid, []).append(g)
        return out

    def _usage_locations(self) -> list[Action]:
        actions: list[Action] = []
        targets: dict[str, tuple[str, str, Any]] = {}  # uid -> (location, reason, source)
        for uid, (country, loc) in self.res.user_locations.items():
            targets[uid] = (country, "set in the policy's usageLocations.users", loc)
        fallback: list[str] = []
        for uid, groups in self._licensed_groups_of().items():
            user = self.state.users.get(uid)
            if user is None or uid in targets or user.usage_location:
                continue
            from_group = next((g for g in groups if g.usage_location), None)
            if from_group is not None:
                assert from_group.usage_location is not None
                targets[uid] = (
                    from_group.usage_location,
                    f"member of {from_group.name} (usageLocation {from_group.usage_location}) without a usage location",
                    from_group.spec.usage_location.loc if from_group.spec.usage_location else from_group.spec.loc,
                )
            elif self.res.default_location:
                default = self.policy.usage_locations.default
                targets[uid] = (
                    self.res.default_location,
                    f"member of {groups[0].name} without a usage location (usageLocations.default)",
                    default.loc if default is not None else None,
                )
            else:
                fallback.append(uid)
        for uid in sorted(targets, key=lambda u: self.upn(u).casefold()):
            country, reason, loc = targets[uid]
            user = self.state.users.get(uid)
            if user is None or user.usage_location == country:
                continue
            self.out.usage_locations[uid] = country
            actions.append(
                Action(
                    kind="setUsageLocation",
                    reason=reason,
                    request=GraphRequest("PATCH", f"/users/{uid}", {"usageLocation": country}),
                    user=ObjectRef(user.user_principal_name, uid),
                    users=(user.user_principal_name,),
                    details={"usageLocation": country, "previousUsageLocation": user.usage_location},
                    source=loc,
                )
            )
        if fallback:
            tenant = self.state.organization.usage_location
            self.out.violations.append(
                Violation(
                    code="UsageLocationFallback",
                    severity=WARNING,
                    message=(
                        f"{count(len(fallback), 'member')} of licensed groups without a usage location; group licensing "
                        f"uses the tenant's ({tenant or 'none'}) and direct assignments to them would fail"
                    ),
                    resolution="set usageLocations.default, the group's usageLocation, or the users' usage location",
                    users=self.upns(fallback),
                    status="existing",
                )
            )
        return actions

    def _direct_licenses(self) -> list[Action]:
        cfg = self.policy.direct_licenses
        if cfg.mode == "keep":
            return []
        groups_of = self._licensed_groups_of()
        ready: dict[str, list[tuple[str, list[str]]]] = {}  # sku -> [(uid, covering group names)]
        pending: dict[str, list[str]] = {}  # sku -> uids covered only after this plan is applied
        extra: dict[str, list[tuple[str, list[str]]]] = {}  # sku -> [(uid, plan names only direct)]
        sku_plans = {s.sku_id: s.plan_ids for s in self.state.skus.values()}
        enabled_cache: dict[tuple[str, frozenset[str]], frozenset[str]] = {}

        def enabled(sku_id: str, disabled: frozenset[str]) -> frozenset[str]:
            key = (sku_id, disabled)
            on = enabled_cache.get(key)
            if on is None:
                on = enabled_cache[key] = frozenset(p for p in sku_plans.get(sku_id, ()) if p not in disabled)
            return on

        for uid in sorted(self.state.users):
            user = self.state.users[uid]
            if not user.direct_licenses or uid not in groups_of:
                continue
            states = {(s.sku_id, s.assigned_by_group): s for s in user.license_states}
            for lic in user.direct_licenses:
                sku = self.state.skus.get(lic.sku_id)
                if sku is None or (self.res.direct_skus is not None and lic.sku_id not in self.res.direct_skus):
                    continue
                direct_on = enabled(lic.sku_id, lic.disabled_plans)
                giving: list[tuple[ResolvedGroup, frozenset[str]]] = []
                for g in groups_of.get(uid, ()):
                    for glic in self.licenses_after[g.key]:
                        if glic.sku_id == lic.sku_id:
                            giving.append((g, enabled(glic.sku_id, glic.disabled_plans)))
                if not giving:
                    continue
                covering = [g for g, on in giving if direct_on <= on]
                if not covering:
                    missing: set[str] = set(direct_on)
                    for _, on in giving:
                        missing &= direct_on - on
                    extra.setdefault(lic.sku_id, []).append((uid, plan_names(sku, missing or direct_on)))
                    continue
                active = []
                for g in covering:
                    st = states.get((lic.sku_id, g.key))
                    if (
                        st is not None
                        and st.state == ACTIVE
                        and st.error == NO_ERROR
                        and direct_on <= enabled(st.sku_id, st.disabled_plans)
                    ):
                        active.append(g.name)
                if active:
                    ready.setdefault(lic.sku_id, []).append((uid, active))
                else:
                    pending.setdefault(lic.sku_id, []).append(uid)
        out: list[Action] = []
        loc = cfg.loc
        wave = cfg.wave_size
        remaining_by_sku: dict[str, list[str]] = {}
        for sku_id in sorted(ready, key=self._part):
            items = sorted(ready[sku_id], key=lambda item: self.upn(item[0]).casefold())
            part = self._part(sku_id)
            if cfg.mode == "report":
                self.out.violations.append(
                    Violation(
                        code="RedundantDirectLicense",
                        severity=WARNING,
                        message=(
                            f"{count(len(items), 'user holds', 'users hold')} {part} directly although their groups give it with at "
                            "least the same plans (Active)"
                        ),
                        resolution="set directLicenses.mode: removeRedundant to remove the direct licenses in waves",
                        sku=part,
                        users=self.upns(uid for uid, _ in items),
                        status="existing",
                        source=loc,
                    )
                )
                continue
            for uid, covered in items:
                if wave is not None and len(out) >= wave:
                    remaining_by_sku.setdefault(sku_id, []).append(uid)
                    continue
                self.out.direct_removals[uid] = self.out.direct_removals.get(uid, frozenset()) | {sku_id}
                out.append(
                    Action(
                        kind="removeDirectLicense",
                        reason=(
                            f"redundant: {', '.join(covered)} {'gives' if len(covered) == 1 else 'give'} {part} "
                            "with at least the same plans (Active)"
                        ),
                        request=GraphRequest(
                            "POST", f"/users/{uid}/assignLicense", {"addLicenses": [], "removeLicenses": [sku_id]}
                        ),
                        user=ObjectRef(self.upn(uid), uid),
                        sku=part,
                        users=(self.upn(uid),),
                        details={"coveredBy": sorted(covered, key=str.casefold)},
                        source=loc,
                    )
                )
        for sku_id in sorted(remaining_by_sku, key=self._part):
            uids = remaining_by_sku[sku_id]
            self.out.violations.append(
                Violation(
                    code="RedundantDirectLicense",
                    severity=WARNING,
                    message=(
                        f"{count(len(uids), 'more redundant direct ' + self._part(sku_id) + ' license is', 'more redundant direct ' + self._part(sku_id) + ' licenses are')} left for later plans "
                        f"(directLicenses.waveSize: {wave})"
                    ),
                    resolution="apply this plan, then plan again for the next wave",
                    sku=self._part(sku_id),
                    users=self.upns(uids),
                    status="existing",
                    source=loc,
                )
            )
        for sku_id in sorted(pending if cfg.mode == "removeRedundant" else {}, key=self._part):
            uids = pending[sku_id]
            self.out.violations.append(
                Violation(
                    code="RedundantDirectLicense",
                    severity=WARNING,
                    message=(
                        f"{count(len(uids), 'user holds', 'users hold')} {self._part(sku_id)} directly and will get it from a group "
                        "with at least the same plans once this plan is applied; their direct license is "
                        "removed by a later plan, after the inherited assignment is Active without error"
                    ),
                    resolution="apply this plan, wait for group processing, then plan again",
                    sku=self._part(sku_id),
                    users=self.upns(pending[sku_id]),
                    status=NEW,
                    source=loc,
                )
            )
        for sku_id in sorted(extra, key=self._part):
            items = sorted(extra[sku_id], key=lambda item: self.upn(item[0]).casefold())
            plans = sorted({p for _, names in items for p in names})
            whose, whose_many = "user's", "users'"
            self.out.violations.append(
                Violation(
                    code="DirectLicenseKept",
                    severity=WARNING,
                    message=(
                        f"{count(len(items), whose, whose_many)} direct {self._part(sku_id)} enables plans "
                        "their groups switch off "
                        f"({', '.join(plans)}); removing it would take those plans away, so it is kept"
                    ),
                    resolution=(
                        "enable those plans in the group if the users need them, or remove the direct license "
                        "by hand once they do not"
                    ),
                    sku=self._part(sku_id),
                    users=self.upns(uid for uid, _ in items),
                    status="existing",
                    source=loc,
                )
            )
        return out


def diff(policy: Policy, state: TenantState, resolution: Resolution, catalog: Catalog) -> Changes:
    return _Differ(policy, state, resolution, catalog).run()


def members_after(state: TenantState, changes: Changes) -> Mapping[str, tuple[str, ...]]:
    """group key -> direct user members after the plan, for every group (live and new)."""
    out: dict[str, tuple[str, ...]] = {g.id: g.member_user_ids for g in state.groups.values()}
    out.update(changes.group_members)
    for key in changes.new_groups:
        out.setdefault(key, ())
    return out
