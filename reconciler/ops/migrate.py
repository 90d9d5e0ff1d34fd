"""`reconciler migrate`: move direct licenses to group-based licensing, safely.

    read_migration_state(client) -> TenantState                       (observe, read-only)
    propose_migration(state, skus=(), pattern="LIC-{sku}-{n}") -> Migration   (pure)
    migration_policy(migration, state, *, now=None) -> str            (YAML with comments)
    render_summary(migration) -> str

For every user holding a direct license (of the SKUs asked for, else every SKU), per direct SKU:
- covered: an existing security group the user is a direct member of gives the SKU with at least
  the same enabled plans and its assignment is Active without error: no mirror group is needed, the
  group is put in the policy as it is (so that `removeRedundant` may count it);
- conflict: a group the user is in gives the SKU with fewer plans: the direct license enables plans
  the group would not. The user is skipped (removing the direct license would take those plans
  away; mirroring it would perpetuate an exception to what the group decides);
- uncovered: the SKU goes into the user's mirror combination.
Users with any license error are skipped (`reconciler errors` says what to fix first).

Users with the same combination (the SKUs with their plans exactly as the users have them) share
one mirror group named by the pattern (`{sku}`: the part numbers joined with `+`, `{n}`: 1, 2...
skipping names the tenant already uses). The policy creates the mirror groups with their members
and licenses (disabledPlans as the users have them) and sets `directLicenses: removeRedundant` for
the SKUs migrated: the first plan creates the groups and assigns (no extra seat: every member
already holds a seat of each SKU, and a SKU takes one seat per user however many sources give it);
Entra processes the groups; a later plan removes the direct licenses whose inherited assignment is
Active without error (`apply` never removes one before that), `waveSize` at a time.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from reconciler import __version__
from reconciler.catalog import Catalog, is_guid, load_catalog, name_key
from reconciler.errors import UsageError
from reconciler.graph.client import GraphClient
from reconciler.licensing import ACTIVE, NO_ERROR, License, Rules, SkuCapacity, check_group_assignment
from reconciler.ops.export import Namer, comment_block, comment_text, license_lines, scalar
from reconciler.ops.output import plural
from reconciler.state import Group, SubscribedSku, TenantState

DEFAULT_PATTERN = "LIC-{sku}-{n}"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class MirrorGroup:
    name: str
    licenses: tuple[License, ...]  # the SKUs with the plans the members have directly
    members: tuple[str, ...]  # user ids, by UPN


@dataclass(frozen=True)
class Covered:
    user_id: str
    sku_id: str
    groups: tuple[str, ...]  # existing group ids giving the SKU with at least the same plans (Active)


@dataclass(frozen=True)
class Skipped:
    user_id: str
    user: str
    reason: str
    kept: tuple[str, ...] = ()  # part numbers of the direct licenses the user keeps


@dataclass
class Migration:
    skus: tuple[str, ...]  # sku ids in scope (direct licenses migrated)
    mirror_groups: list[MirrorGroup] = field(default_factory=list)
    covered: list[Covered] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    existing_groups: list[str] = field(default_factory=list)  # ids of live groups put in the policy
    users: dict[str, str] = field(default_factory=dict)  # user id -> UPN (every user concerned)
    parts: dict[str, str] = field(default_factory=dict)  # sku id -> part number

    @property
    def migrated_users(self) -> set[str]:
        return {u for u, _ in self.migrated_pairs()}

    def migrated_pairs(self) -> set[tuple[str, str]]:
        """(user id, sku id) of every direct license the migration removes."""
        out = {(u, lic.sku_id) for g in self.mirror_groups for lic in g.licenses for u in g.members}
        return out | {(c.user_id, c.sku_id) for c in self.covered}

    def removals(self) -> dict[str, int]:
        """Direct licenses that will be removed, per SKU id."""
        out: dict[str, int] = {}
        for g in self.mirror_groups:
            for lic in g.licenses:
                out[lic.sku_id] = out.get(lic.sku_id, 0) + len(g.members)
        for c in self.covered:
            out[c.sku_id] = out.get(c.sku_id, 0) + 1
        return out

    def extra_seats(self, state: TenantState) -> dict[str, int]:
        """Seats the mirror groups need beyond those their members already hold, per SKU id."""
        out: dict[str, int] = {}
        for g in self.mirror_groups:
            for lic in g.licenses:
                extra = 0
                for uid in g.members:
                    user = state.users[uid]
                    if lic.sku_id not in user.held_skus() and all(d.sku_id != lic.sku_id for d in user.direct_licenses):
                        extra += 1
                out[lic.sku_id] = out.get(lic.sku_id, 0) + extra
        return out


# --------------------------------------------------------------------------- pure part


def resolve_skus(state: TenantState, refs: Sequence[str]) -> tuple[str, ...]:
    """The sku ids `--sku` names (part number or skuId, case-insensitive); every SKU when none."""
    if not refs:
        return tuple(sorted(state.skus, key=lambda s: state.skus[s].part_number.casefold()))
    out: list[str] = []
    for ref in refs:
        text = ref.strip()
        found = None
        if is_guid(text):
            found = state.skus.get(text.lower())
        else:
            found = next((s for s in state.skus.values() if name_key(s.part_number) == name_key(text)), None)
        if found is None:
            owned = ", ".join(sorted(s.part_number for s in state.skus.values())) or "none"
            raise UsageError(f"--sku {ref}: the tenant has no subscription to it (subscribed: {owned})")
        if found.sku_id not in out:
            out.append(found.sku_id)
    return tuple(out)


def check_pattern(pattern: str) -> None:
    names = set(_PLACEHOLDER.findall(pattern))
    unknown = names - {"sku", "n"}
    if unknown:
        raise UsageError(
            f"--name-pattern {pattern!r}: unknown placeholder(s) {', '.join('{' + u + '}' for u in sorted(unknown))};"
            " use {sku} (the part numbers) and {n} (a number)"
        )
    if not pattern.replace("{sku}", "").replace("{n}", "").strip() and "{sku}" not in pattern:
        raise UsageError(f"--name-pattern {pattern!r}: give a name, e.g. {DEFAULT_PATTERN}")


def _enabled(sku: SubscribedSku, disabled: frozenset[str]) -> frozenset[str]:
    return frozenset(p for p in sku.plan_ids if p not in disabled)


def _plan_names(sku: SubscribedSku, plan_ids: frozenset[str]) -> str:
    return ", ".join(p.name or p.plan_id for p in sku.service_plans if p.plan_id in plan_ids)


def _groups_of(state: TenantState) -> dict[str, list[Group]]:
    out: dict[str, list[Group]] = {}
    for g in state.groups.values():
        if g.security_enabled and g.licenses:
            for uid in g.member_user_ids:
                out.setdefault(uid, []).append(g)
    return out


def tenant_rules(state: TenantState, catalog: Catalog | None = None) -> Rules:
    """The bundled rule table with the tenant's own plan names, as the planner uses it."""
    from reconciler.planner.resolve import resolve
    from reconciler.policy.model import Policy

    return resolve(Policy(files=(), document={}, digest=""), state, catalog or load_catalog()).rules


def _refused(state: TenantState, rules: Rules, licenses: Sequence[License]) -> str | None:
    """Why Graph would refuse a group carrying `licenses` (an add-on without its prerequisite in
    the same group, facts 2.11), in plan names; None when it accepts."""
    caps = {
        s.sku_id: SkuCapacity(s.sku_id, s.plan_ids, s.enabled_units) for s in state.skus.values()
    }
    if check_group_assignment(rules, caps, licenses) is None:
        return None
    names = {p.plan_id: p.name or p.plan_id for s in state.skus.values() for p in s.service_plans}
    on: set[str] = set()
    for lic in licenses:
        on |= _enabled(state.skus[lic.sku_id], lic.disabled_plans)
    for p in sorted(on, key=lambda x: names.get(x, x)):
        req = rules.requires.get(p)
        if req and req.isdisjoint(on):
            need = " or ".join(sorted(names.get(r, r) for r in req))
            return (
                f"a group cannot give these plans on their own: {names.get(p, p)} requires {need} in the "
                "same group (Graph refuses the group's assignLicense; the user gets it from another "
                "license today): keep the direct license, or license a group with the prerequisite too"
            )
    return "Graph would refuse a group with these licenses"


def propose_migration(
    state: TenantState,
    skus: Sequence[str] = (),
    pattern: str = DEFAULT_PATTERN,
    *,
    rules: Rules | None = None,
) -> Migration:
    check_pattern(pattern)
    rules = rules if rules is not None else tenant_rules(state)
    refused: dict[tuple[License, ...], str | None] = {}
    scope = resolve_skus(state, skus)
    in_scope = set(scope)
    mig = Migration(skus=scope, parts={s.sku_id: s.part_number for s in state.skus.values()})
    groups_of = _groups_of(state)
    combos: dict[tuple[License, ...], list[str]] = {}
    existing: set[str] = set()
    for user in sorted(state.users.values(), key=lambda u: (u.user_principal_name.casefold(), u.id)):
        direct = [lic for lic in user.direct_licenses if lic.sku_id in in_scope and lic.sku_id in state.skus]
        if not direct:
            continue
        mig.users[user.id] = user.user_principal_name
        states = {(s.sku_id, s.assigned_by_group): s for s in user.license_states}
        covered: list[Covered] = []
        uncovered: list[License] = []
        conflicts: list[str] = []
        kept: list[str] = []
        for lic in direct:
            sku = state.skus[lic.sku_id]
            on = _enabled(sku, lic.disabled_plans)
            giving = [
                (g, _enabled(sku, glic.disabled_plans))
                for g in groups_of.get(user.id, ())
                for glic in g.licenses
                if glic.sku_id == lic.sku_id
            ]
            if not giving:
                uncovered.append(lic)
                continue
            good = [
                g.id
                for g, g_on in giving
                if on <= g_on
                and (st := states.get((lic.sku_id, g.id))) is not None
                and st.state == ACTIVE
                and st.error == NO_ERROR
            ]
            if good:
                covered.append(Covered(user.id, lic.sku_id, tuple(sorted(good))))
                continue
            kept.append(lic.sku_id)
            missing = frozenset(on)
            for _, g_on in giving:
                missing &= on - g_on
            if not missing:
                names = ", ".join(sorted(g.display_name for g, _ in giving))
                conflicts.append(
                    f"the inherited {sku.part_number} from {names} is not Active without error yet"
                )
                continue
            names = ", ".join(sorted(g.display_name for g, _ in giving))
            conflicts.append(
                f"direct {sku.part_number} enables {_plan_names(sku, missing)}, which {names} "
                f"(also giving {sku.part_number}) switches off: enable the plans in the group if the user "
                "needs them, or remove the direct license by hand once not"
            )
        # a direct license an Active group assignment already covers is removed by the plan in any
        # case (removeRedundant); what remains needs a mirror group unless something stops it
        mig.covered += covered
        for c in covered:
            existing.update(c.groups)
        key = tuple(sorted(uncovered))
        errors = sorted(
            {(s.error, s.sku_id, s.assigned_by_group) for s in user.license_states if s.error != NO_ERROR},
            key=lambda e: (e[0], e[1], e[2] or ""),
        )
        why: str | None = None
        if key and errors:
            code, sku_id, gid = errors[0]
            where = state.groups[gid].display_name if gid and gid in state.groups else (gid or "a direct license")
            why = (
                f"in license error ({code} on {mig.parts.get(sku_id, sku_id)} from {where}); "
                "resolve it first (`reconciler errors`), then run migrate again"
            )
        elif conflicts:
            why = "; ".join(conflicts)
        elif key:
            if key not in refused:
                refused[key] = _refused(state, rules, key)
            why = refused[key]
        if why is not None:
            kept_ids = [*kept, *(lic.sku_id for lic in key)]
            mig.skipped.append(
                Skipped(user.id, user.user_principal_name, why, tuple(mig.parts.get(s, s) for s in kept_ids))
            )
            continue
        if key:
            combos.setdefault(key, []).append(user.id)

    taken = {g.display_name.casefold() for g in state.groups.values()}
    counters: dict[str, int] = {}
    ordered = sorted(combos, key=lambda k: (_sku_label(mig, k), [sorted(lic.disabled_plans) for lic in k]))
    for key in ordered:
        label = _sku_label(mig, key)
        while True:
            counters[label] = counters.get(label, 0) + 1
            name = pattern.replace("{sku}", label).replace("{n}", str(counters[label]))
            if "{n}" not in pattern and counters[label] > 1:
                name = f"{name}-{counters[label]}"
            if name.casefold() not in taken:
                break
        taken.add(name.casefold())
        members = tuple(sorted(combos[key], key=lambda u: mig.users[u].casefold()))
        mig.mirror_groups.append(MirrorGroup(name, key, members))
    mig.existing_groups = sorted(existing, key=lambda g: (state.groups[g].display_name.casefold(), g))
    return mig


def _sku_label(mig: Migration, licenses: Sequence[License]) -> str:
    return "+".join(sorted((mig.parts.get(lic.sku_id, lic.sku_id) for lic in licenses), key=str.casefold))


# --------------------------------------------------------------------------- policy


def migration_policy(
    mig: Migration,
    state: TenantState,
    *,
    now: dt.datetime | None = None,
    wave_size: int | None = None,
    catalog: Catalog | None = None,
) -> str:
    """The migration as a policy (YAML with comments)."""
    namer = Namer(catalog or load_catalog())
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    org = state.organization
    tenant = org.initial_domain or org.id
    removals = mig.removals()
    migrated = [s for s in mig.skus if s in removals]
    out = [
        f"# Migration of direct licenses to group-based licensing, proposed by reconciler {__version__}",
        f"# on {when} for tenant {comment_text(org.display_name or tenant)} ({org.id}).",
        "#",
        "# 1. `reconciler plan` this policy: it creates the mirror groups below with their members and",
        "#    licenses (the plans exactly as the users have them directly). No extra seat: every member",
        "#    already holds a seat of each SKU, and a SKU takes one seat per user whatever its sources.",
        "# 2. Apply it, and let Entra process the groups.",
        "# 3. Plan and apply again: each direct license is removed once the user's group gives the SKU",
        "#    with at least the same plans and that assignment is Active without error",
        "#    (directLicenses: removeRedundant; apply never removes one before). Repeat until the plan",
        "#    shows no changes.",
    ]
    out += comment_block(
        f"{plural(len(mig.migrated_users), 'user')} migrated, {plural(len(mig.skipped), 'user')} skipped (they "
        "keep the direct licenses named; one an Active group assignment already covers is still removed):",
        "",
    )
    for s in mig.skipped:
        out += comment_block(f"- {s.user} keeps direct {', '.join(s.kept)}: {s.reason}", "")
    out += [
        "# If another policy already manages a group listed here, keep that entry in one place only.",
        "apiVersion: reconciler/v1",
        f"tenant: {scalar(tenant)}",
        "",
    ]
    if not mig.existing_groups and not mig.mirror_groups:
        out.append("groups: []")
    else:
        out.append("groups:")
    by_group: dict[str, int] = {}
    for c in mig.covered:
        for gid in c.groups:
            by_group[gid] = by_group.get(gid, 0) + 1
    for gid in mig.existing_groups:
        g = state.groups[gid]
        out.append("")
        out += comment_block(
            f"Existing group, as it is: it already gives {plural(by_group.get(gid, 0), 'direct license')} "
            "with at least the same plans (Active); those direct licenses are removed by this plan.",
            "  ",
        )
        shared = sum(1 for o in state.groups.values() if o.display_name.casefold() == g.display_name.casefold()) > 1
        out.append(f"  - group: {scalar(g.id if shared else g.display_name)}" + (f"  # {comment_text(g.display_name)}" if shared else ""))
        out.append("    licenses:")
        for lic in sorted(g.licenses, key=lambda lic: (mig.parts.get(lic.sku_id, lic.sku_id).casefold(), lic.sku_id)):
            out += license_lines(state, lic, namer, "      ")
    for mg in mig.mirror_groups:
        out.append("")
        out += comment_block(
            f"Mirror group for {plural(len(mg.members), 'user')} holding {_sku_label(mig, mg.licenses)} directly "
            "with these plans; their direct licenses are removed once this group's assignment is Active.",
            "  ",
        )
        out.append(f"  - group: {scalar(mg.name)}")
        out.append("    create: true")
        out.append("    members:")
        out += [f"      - {scalar(mig.users[u])}" for u in mg.members]
        out.append("    licenses:")
        for lic in sorted(mg.licenses, key=lambda lic: (mig.parts.get(lic.sku_id, lic.sku_id).casefold(), lic.sku_id)):
            out += license_lines(state, lic, namer, "      ")
    if not migrated:
        out += ["", "directLicenses:", "  mode: keep  # nothing to migrate"]
        return "\n".join(out) + "\n"
    out += ["", "directLicenses:", "  mode: removeRedundant"]
    out.append(
        "  skus: ["
        + ", ".join(scalar(namer.sku(state.skus.get(s), s)[0]) for s in sorted(migrated, key=lambda s: mig.parts[s].casefold()))
        + "]"
    )
    if wave_size:
        out.append(f"  waveSize: {int(wave_size)}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- summary


def render_summary(mig: Migration, state: TenantState) -> str:
    out: list[str] = []
    extra = mig.extra_seats(state)
    if mig.mirror_groups:
        out.append(f"Mirror groups to create ({len(mig.mirror_groups)}):")
        for g in mig.mirror_groups:
            out.append(f"  + {g.name}: {_sku_label(mig, g.licenses)} for {plural(len(g.members), 'user')}")
    else:
        out.append("No mirror group needed.")
    if mig.existing_groups:
        out.append("Existing groups that already cover direct licenses (put in the policy as they are):")
        for gid in mig.existing_groups:
            n = sum(1 for c in mig.covered if gid in c.groups)
            out.append(f"  = {state.groups[gid].display_name}: {plural(n, 'direct license')}")
    removals = mig.removals()
    if removals:
        out.append("Seats needed:")
        for sku_id in sorted(removals, key=lambda s: mig.parts[s].casefold()):
            sku = state.skus[sku_id]
            out.append(
                f"  {mig.parts[sku_id]}: {extra.get(sku_id, 0)} extra (the users already hold their seats; "
                f"{sku.consumed_units} of {sku.enabled_units} in use)"
            )
        out.append("Direct licenses to remove:")
        for sku_id in sorted(removals, key=lambda s: mig.parts[s].casefold()):
            now_n = sum(1 for c in mig.covered if c.sku_id == sku_id)
            later = removals[sku_id] - now_n
            parts = []
            if now_n:
                parts.append(f"{now_n} by the first plan (covered by an Active group assignment)")
            if later:
                parts.append(f"{later} by a later plan, after the mirror groups are processed and Active")
            out.append(f"  - {mig.parts[sku_id]}: {removals[sku_id]} ({'; '.join(parts)})")
    if mig.skipped:
        out.append(f"Skipped ({len(mig.skipped)} users keep direct licenses):")
        for s in mig.skipped:
            out.append(f"  ! {s.user} keeps direct {', '.join(s.kept)}: {s.reason}")
    out.append(
        f"{plural(len(mig.migrated_users), 'user')} to migrate, {plural(len(mig.mirror_groups), 'mirror group')}, "
        f"{plural(len(mig.skipped), 'user')} skipped."
    )
    return "\n".join(out) + "\n"


def read_migration_state(client: GraphClient, *, progress: bool | None = None) -> TenantState:
    """Every licensed group with its members and every user holding a license (direct ones
    found through each SKU's holders)."""
    from reconciler.graph.observe import observe

    return observe(client, direct_licenses=True, progress=None if progress is None or progress else False)

