"""Semantic checks of a policy, after the schema (SPEC section 2, issue 2 item 4).

Offline only: names are checked against the bundled catalog, not against a tenant. A SKU or
service plan written as a GUID that the bundled catalog does not know is accepted (a product
newer than the catalog); the planner resolves it against the tenant's subscribedSkus. A name
the catalog does not know is an error, with the closest known name as a suggestion.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from reconciler.catalog import Catalog, SkuEntry, bundled_rules
from reconciler.countries import is_country
from reconciler.errors import Problem
from reconciler.policy.model import GroupSpec, LicenseSpec, Location, Policy, Ref

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
COUNTRY_SHAPE = re.compile(r"^[A-Z]{2}$")


def is_guid(text: str) -> bool:
    return bool(GUID.match(text))


def _mean(suggestion: str | None, written: str) -> str:
    if suggestion and suggestion.casefold() != written.casefold():
        return f"; did you mean {suggestion}?"
    return ""


@dataclass(frozen=True)
class _Source:
    country: str
    loc: Location
    how: str


class _Checker:
    def __init__(self, policy: Policy, catalog: Catalog) -> None:
        self.policy = policy
        self.catalog = catalog
        self.problems: list[Problem] = []

    def add(self, loc: Location, message: str) -> None:
        self.problems.append(loc.problem(message))

    # names -------------------------------------------------------------
    def sku(self, ref: Ref, where: str) -> SkuEntry | None:
        entry = self.catalog.sku(ref.value)
        if entry is None and not is_guid(ref.value):
            hint = _mean(self.catalog.suggest_sku(ref.value), ref.value)
            self.add(
                ref.loc,
                f"unknown SKU '{ref.value}' in {where}{hint}"
                + ("" if hint else " (use the skuPartNumber, such as ENTERPRISEPACK, or the skuId)"),
            )
        return entry

    def country(self, ref_value: str, loc: Location, where: str) -> None:
        # the schema has already rejected what is not two upper-case letters
        if COUNTRY_SHAPE.match(ref_value) and not is_country(ref_value):
            self.add(loc, f"{ref_value} in {where} is not an ISO 3166-1 alpha-2 country code")

    # sections ----------------------------------------------------------
    def run(self) -> list[Problem]:
        self.groups()
        self.licenses_everywhere()
        self.usage_locations()
        self.catalog_rules()
        self.safety()
        self.direct()
        return self.problems

    def groups(self) -> None:
        seen: dict[str, GroupSpec] = {}
        for group in self.policy.groups:
            key = group.group.casefold()
            first = seen.get(key)
            if first is not None:
                self.add(
                    group.name_loc,
                    f"group '{group.group}' is listed twice (first at {first.name_loc}); "
                    "give each group one entry",
                )
            else:
                seen[key] = group
            if group.members is not None:
                members: dict[str, Ref] = {}
                for member in group.members:
                    mkey = member.value.casefold()
                    if mkey in members:
                        self.add(
                            member.loc,
                            f"member '{member.value}' is listed twice in group '{group.group}' "
                            f"(first at {members[mkey].loc})",
                        )
                    else:
                        members[mkey] = member

    def licenses_everywhere(self) -> None:
        for group in self.policy.groups:
            if group.licenses is None:
                continue
            seen: dict[str, LicenseSpec] = {}
            for lic in group.licenses:
                entry = self.sku(lic.sku, f"group '{group.group}'")
                key = entry.sku_id if entry is not None else lic.sku.value.casefold()
                first = seen.get(key)
                if first is not None:
                    self.add(
                        lic.sku.loc,
                        f"SKU {lic.sku.value} is listed twice in group '{group.group}' "
                        f"(first at {first.sku.loc}); a group carries a SKU once",
                    )
                else:
                    seen[key] = lic
                self.license_plans(group, lic, entry)
            self.exclusive_plans(group)

    def license_plans(self, group: GroupSpec, lic: LicenseSpec, sku: SkuEntry | None) -> None:
        for field, plans in (("disabledPlans", lic.disabled_plans), ("enabledPlans", lic.enabled_plans)):
            if plans is None:
                continue
            seen: dict[str, Ref] = {}
            for ref in plans:
                where = f"{field} of {lic.sku.value} in group '{group.group}'"
                in_sku = self.catalog.plan_in_sku(sku, ref.value) if sku is not None else None
                plan = in_sku or self.catalog.plan(ref.value)
                if plan is None:
                    if not is_guid(ref.value):
                        hint = _mean(self.catalog.suggest_plan(ref.value, sku), ref.value)
                        self.add(ref.loc, f"unknown service plan '{ref.value}' in {where}{hint}")
                    key = ref.value.casefold()
                else:
                    key = plan.plan_id
                    if sku is not None and in_sku is None:
                        hint = _mean(self.catalog.suggest_plan(ref.value, sku), plan.name)
                        self.add(ref.loc, f"{plan.name} is not part of {sku.part_number} ({where}){hint}")
                if key in seen:
                    self.add(
                        ref.loc, f"plan {ref.value} is listed twice in {where} (first at {seen[key].loc})"
                    )
                else:
                    seen[key] = ref

    def _enabled(self, lic: LicenseSpec) -> set[str]:
        sku = self.catalog.sku(lic.sku.value)
        if sku is None:
            return set()
        named = lic.enabled_plans if lic.enabled_plans is not None else lic.disabled_plans or ()
        ids = set()
        for ref in named:
            entry = self.catalog.plan_in_sku(sku, ref.value)
            if entry is not None:
                ids.add(entry.plan_id)
        return ids if lic.enabled_plans is not None else set(sku.plan_ids) - ids

    def _plan_ids(self, name_or_id: str) -> frozenset[str]:
        ids = self.catalog.plan_ids(name_or_id)
        if ids:
            return frozenset(ids)
        return frozenset({name_or_id.strip().lower()}) if is_guid(name_or_id.strip()) else frozenset()

    @functools.cached_property
    def _exclusive_pairs(self) -> list[tuple[frozenset[str], frozenset[str], str]]:
        """(plan ids, plan ids, source) of every enabled mutually-exclusive rule."""
        pairs: list[tuple[frozenset[str], frozenset[str], str]] = []
        for rule in bundled_rules().rules:
            if rule.kind != "mutuallyExclusive" or not rule.enabled:
                continue
            for other in rule.others:
                pairs.append((self._plan_ids(rule.plan), self._plan_ids(other), "the bundled rule table"))
        for left, right in self.policy.catalog.mutually_exclusive:
            pairs.append(
                (
                    self._plan_ids(left.value),
                    self._plan_ids(right.value),
                    f"catalog.mutuallyExclusive at {left.loc}",
                )
            )
        return pairs

    def _plan_label(self, plan_id: str) -> str:
        entry = self.catalog.plan(plan_id)
        return entry.name if entry is not None else plan_id

    def exclusive_plans(self, group: GroupSpec) -> None:
        if not group.licenses:
            return
        by_plan: dict[str, list[LicenseSpec]] = {}
        for lic in group.licenses:
            for plan_id in self._enabled(lic):
                by_plan.setdefault(plan_id, []).append(lic)
        reported: set[frozenset[str]] = set()
        for ids_a, ids_b, source in self._exclusive_pairs:
            a = next((i for i in sorted(ids_a) if i in by_plan), None)
            b = next((i for i in sorted(ids_b) if i in by_plan), None)
            if a is None or b is None:
                continue
            pair = frozenset((a, b))
            if a == b or pair in reported:
                continue
            la, lb = by_plan[a][0], by_plan[b][0]
            if la is lb and len(by_plan[a]) == 1 and len(by_plan[b]) == 1:
                continue  # one product containing both: the catalog's business, not the policy's
            reported.add(pair)
            self.add(
                group.name_loc,
                f"group '{group.group}' enables both {self._plan_label(a)} (in {la.sku.value}) and "
                f"{self._plan_label(b)} (in {lb.sku.value}), which are mutually exclusive: every member would "
                f"get MutuallyExclusiveViolation; disable one of them (rule from {source})",
            )

    def usage_locations(self) -> None:
        ul = self.policy.usage_locations
        if ul.default is not None:
            self.country(ul.default.value, ul.default.loc, "usageLocations.default")
        sources: dict[str, list[_Source]] = {}
        users: dict[str, str] = {}
        for entry in ul.users:
            self.country(entry.country, entry.country_loc, f"usageLocations.users.{entry.user}")
            sources.setdefault(entry.user.casefold(), []).append(
                _Source(entry.country, entry.country_loc, "usageLocations.users")
            )
            users.setdefault(entry.user.casefold(), entry.user)
        for group in self.policy.groups:
            if group.usage_location is None:
                continue
            self.country(
                group.usage_location.value,
                group.usage_location.loc,
                f"the usageLocation of group '{group.group}'",
            )
            for member in group.members or ():
                sources.setdefault(member.value.casefold(), []).append(
                    _Source(
                        group.usage_location.value,
                        member.loc,
                        f"member of group '{group.group}' (usageLocation {group.usage_location.value})",
                    )
                )
                users.setdefault(member.value.casefold(), member.value)
        for key, entries in sources.items():
            first = entries[0]
            for other in entries[1:]:
                if other.country.upper() != first.country.upper():
                    self.add(
                        other.loc,
                        f"user {users[key]} is given usage location {other.country} here ({other.how}) but "
                        f"{first.country} at {first.loc} ({first.how}); a user has one usage location",
                    )
                    break

    def catalog_rules(self) -> None:
        rules = self.policy.catalog
        hint = " (a plan the bundled catalog does not know must be given by its servicePlanId)"

        def check(refs: Iterable[Ref], where: str) -> None:
            for ref in refs:
                if self.catalog.plan(ref.value) is None and not is_guid(ref.value):
                    mean = _mean(self.catalog.suggest_plan(ref.value), ref.value)
                    self.add(ref.loc, f"unknown service plan '{ref.value}' in {where}{mean or hint}")

        for left, right in rules.mutually_exclusive:
            check((left, right), "catalog.mutuallyExclusive")
            if self._plan_ids(left.value) & self._plan_ids(right.value):
                self.add(left.loc, f"catalog.mutuallyExclusive pairs {left.value} with itself")
        for plan, needs in rules.requires:
            check((plan,), "catalog.requires")
            check(needs, f"catalog.requires.{plan.value}")
        for plan, countries in rules.prohibited_locations:
            check((plan,), "catalog.prohibitedLocations")
            for country in countries:
                self.country(country.value, country.loc, f"catalog.prohibitedLocations.{plan.value}")

    def safety(self) -> None:
        mr = self.policy.safety.max_removals
        if mr is not None and mr.percent is not None and mr.percent > 100:
            self.add(mr.loc, f"safety.maxRemovals is {mr.text}; a percentage is at most 100%")

    def direct(self) -> None:
        seen: dict[str, Ref] = {}
        for ref in self.policy.direct_licenses.skus or ():
            entry = self.sku(ref, "directLicenses.skus")
            key = entry.sku_id if entry is not None else ref.value.casefold()
            if key in seen:
                self.add(
                    ref.loc,
                    f"SKU {ref.value} is listed twice in directLicenses.skus (first at {seen[key].loc})",
                )
            else:
                seen[key] = ref


def check_policy(policy: Policy, catalog: Catalog) -> list[Problem]:
    """Every semantic problem of the policy (the schema has been checked already)."""
    return _Checker(policy, catalog).run()
