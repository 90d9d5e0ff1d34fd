"""The typed policy (SPEC section 2), with the source location of everything a message may point at.

Build one with `reconciler.policy.load_policy(paths)`; it validates the files first
(schema and semantic checks) and raises PolicyError listing every problem.

Every `Ref` keeps the text as written, where it was written (`loc`: file, line, column,
1-based) and, for SKUs and service plans, the GUID the bundled catalog resolves it to
(`id`, lower-case; None when the bundled catalog does not know it, e.g. a GUID of a product
newer than the catalog: the planner then resolves it against the tenant's subscribedSkus).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import Problem

API_VERSION = "reconciler/v1"
DIRECT_MODES = ("keep", "report", "removeRedundant")
UNMANAGED_MODES = ("report", "ignore", "remove")


@dataclass(frozen=True, order=True)
class Location:
    """Where something was written: file path, 1-based line and column."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"

    def problem(self, message: str) -> Problem:
        return Problem(self.path, self.line, self.column, message)


@dataclass(frozen=True)
class Ref:
    """A name as written (SKU, plan, group, user or country code), where, and its catalog GUID if any."""

    value: str
    loc: Location
    id: str | None = None

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class LicenseSpec:
    """One entry of a group's `licenses`: a SKU, and disabledPlans or enabledPlans (or neither)."""

    sku: Ref
    loc: Location  # the start of the entry (the `- sku:` line)
    disabled_plans: tuple[Ref, ...] | None = None
    enabled_plans: tuple[Ref, ...] | None = None


@dataclass(frozen=True)
class GroupSpec:
    """One entry of `groups`.

    `members` None means membership is not managed; `licenses` None means the group's
    licenses are not managed (an empty tuple means: the group must carry no license).
    """

    group: str
    loc: Location  # the start of the entry (the `- group:` line)
    name_loc: Location  # where the group's name is written
    create: bool = False
    members: tuple[Ref, ...] | None = None
    licenses: tuple[LicenseSpec, ...] | None = None
    usage_location: Ref | None = None


@dataclass(frozen=True)
class UserLocation:
    """One entry of `usageLocations.users`: `loc` is where the user (the key) is written."""

    user: str
    country: str
    loc: Location
    country_loc: Location


@dataclass(frozen=True)
class UsageLocations:
    default: Ref | None = None
    users: tuple[UserLocation, ...] = ()


@dataclass(frozen=True)
class DirectLicenses:
    mode: str = "keep"
    skus: tuple[Ref, ...] | None = None  # None: every SKU
    wave_size: int | None = None
    loc: Location | None = None


@dataclass(frozen=True)
class MaxRemovals:
    """`safety.maxRemovals`: a count, or a percentage of licensed users."""

    text: str
    loc: Location
    count: int | None = None
    percent: float | None = None

    def limit(self, licensed_users: int) -> int:
        """How many users may lose a SKU or plan in one apply, for a tenant with this many licensed users."""
        if self.count is not None:
            return self.count
        pct = self.percent or 0.0
        return int(licensed_users * pct / 100.0)


@dataclass(frozen=True)
class Safety:
    max_removals: MaxRemovals | None = None
    protected: tuple[Ref, ...] = ()


@dataclass(frozen=True)
class CatalogRules:
    """The policy's `catalog` section in plan names as written; `raw` is the plain mapping
    to pass to `reconciler.catalog.RuleTable.extend`."""

    mutually_exclusive: tuple[tuple[Ref, Ref], ...] = ()
    requires: tuple[tuple[Ref, tuple[Ref, ...]], ...] = ()
    prohibited_locations: tuple[tuple[Ref, tuple[Ref, ...]], ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    """A validated policy, merged from one or more files."""

    files: tuple[str, ...]
    document: Mapping[str, Any]  # the merged document as plain data
    digest: str  # sha256 of the merged document in canonical JSON ("sha256:<hex>")
    api_version: str = API_VERSION
    tenant: Ref | None = None
    catalog: CatalogRules = CatalogRules()
    groups: tuple[GroupSpec, ...] = ()
    usage_locations: UsageLocations = UsageLocations()
    direct_licenses: DirectLicenses = DirectLicenses()
    unmanaged_groups: str = "report"
    safety: Safety = Safety()

    def group(self, name: str) -> GroupSpec | None:
        """The group entry with this name or object id (case-insensitive), or None."""
        folded = name.casefold()
        for group in self.groups:
            if group.group.casefold() == folded:
                return group
        return None
