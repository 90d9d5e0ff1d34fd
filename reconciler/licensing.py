"""Entra ID group-based licensing rules, as pure functions.

This module is the single statement of how Entra turns direct and group
license assignments into each user's `assignedLicenses` and
`licenseAssignmentStates` (SPEC section 4; sources in
reference/graph-licensing-facts.md sections 1.8, 2 and 5). The planner runs it
on the state a plan would produce to predict errors; the emulator runs it to
process group assignments. Nothing here does I/O.

All identifiers are lower-case GUID strings (sku ids, plan ids, object ids).
"""

from __future__ import annotations

from collections.abc import Mapping
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


@dataclass(frozen=True)
class LicensingResult:
    # only users with at least one assignment state appear
    users: Mapping[str, UserLicensing]
    consumed: Mapping[str, int]


def compute(inp: LicensingInput) -> LicensingResult:
    """Compute every user's license states from the tenant's assignments."""
    raise NotImplementedError
