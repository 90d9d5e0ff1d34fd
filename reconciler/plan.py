"""The plan: one object that every renderer draws and the plan file stores (SPEC section 5).

The planner (reconciler.planner) builds it from a policy and an observed tenant;
renderers (reconciler.render) turn it into text, markdown or JSON; `apply` reads
it back from the plan file. It holds no behaviour beyond (de)serialisation and
the blocking rule, so every output agrees on what the plan is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.policy.model import Location as Location

FORMAT_VERSION = 1

ACTION_KINDS = (
    "createGroup",
    "addMember",
    "removeMember",
    "setUsageLocation",
    "assignLicense",
    "updateLicense",
    "removeLicense",
    "removeDirectLicense",
    "reprocess",
)

# Graph's own error codes, then the planner's
LICENSE_CODES = (
    "CountViolation",
    "MutuallyExclusiveViolation",
    "DependencyViolation",
    "ProhibitedInUsageLocationViolation",
    "UniquenessViolation",
    "Other",
)
POLICY_CODES = ("GroupNotFound", "AmbiguousGroup", "UnknownSku", "UnknownPlan", "UnknownUser", "MembershipNotManaged")
PLANNER_CODES = (
    *POLICY_CODES,
    "NestedGroup",
    "UnsafeRemoval",
    "NewServicePlans",
    "UsageLocationFallback",
    "UnmanagedGroup",  # a licensed group no policy names (unmanagedGroups: report)
    "RedundantDirectLicense",  # a direct license the user's groups already give (directLicenses)
    "DirectLicenseKept",  # a direct license enabling plans its groups switch off: not removed
    "ProcessingPending",  # planned while Entra was still processing groups: may go stale before apply
)

# violation.status: does the plan cause it, does it exist already, does the plan fix it
NEW = "new"
EXISTING = "existing"
FIXED = "fixed"


@dataclass(frozen=True)
class GraphRequest:
    method: str
    url: str  # relative to the Graph base URL, e.g. "/groups/{id}/assignLicense"
    body: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ObjectRef:
    """A group (display name and id) or a user (UPN and id); id is None for a group still to create."""

    name: str
    id: str | None = None


@dataclass(frozen=True)
class Action:
    """One change, with the exact Graph request that makes it.

    `details` holds facts for the renderers (reconciler.render); every key is optional and
    every value is plain JSON data (lists, not tuples, so a plan file round-trips exactly).
    Plan and group names are servicePlanName / displayName strings. Keys rendered:

        enabledPlans: [str]            assignLicense/updateLicense: plans that will be on
        disabledPlans: [str]           assignLicense/updateLicense: plans that will be off
        heldOff: [str]                 with the policy's enabledPlans form: plans of the SKU outside
                                       the allow-list (kept off, including plans Microsoft adds later)
        planChanges: {"enable": [str], "disable": [str]}
                                       updateLicense: plans switched on / off in place
        seats: {"needed": int, "free": int}
                                       assignLicense (and updateLicense when it needs seats)
        newServicePlans: [str]         plans added to the SKU since it was last assigned
        usageLocation: str             setUsageLocation: the new value (ISO 3166-1 alpha-2)
        previousUsageLocation: str|None
                                       setUsageLocation: the current value
        coveredBy: [str]               removeDirectLicense: groups that keep giving the SKU
        protected: bool                the group is in safety.protected

    Counted in the renderers' last line (reconciler.render.common.change_counts):
    "to assign" = createGroup + addMember + setUsageLocation + assignLicense,
    "to change" = updateLicense + reprocess,
    "to remove" = removeLicense + removeMember + removeDirectLicense.
    """

    kind: str
    reason: str
    request: GraphRequest
    group: ObjectRef | None = None
    user: ObjectRef | None = None
    sku: str | None = None  # part number
    users: tuple[str, ...] = ()  # UPNs of the users this action affects
    # renderer details: plans enabled before/after (names), plans held off, etc.
    details: Mapping[str, Any] = field(default_factory=dict)
    source: Location | None = None
    # actions sharing one Graph request (a group's adds and removes go in one call) share this key
    request_key: str | None = None


@dataclass(frozen=True)
class Violation:
    code: str
    severity: str  # "error" blocks, "warning" does not
    message: str
    resolution: str
    sku: str | None = None
    group: str | None = None
    users: tuple[str, ...] = ()
    status: str = NEW
    source: Location | None = None

    @property
    def blocking(self) -> bool:
        return self.severity == "error"


@dataclass(frozen=True)
class PredictedState:
    """One user's predicted licenseAssignmentState after apply (for verification)."""

    sku_id: str
    assigned_by_group: str | None
    state: str
    error: str


@dataclass(frozen=True)
class ObserveScope:
    """What the plan read from the tenant beyond the licensed groups: the groups and users the
    policy names (names or ids, as written). `apply PLANFILE` observes the same scope again, so the
    same tenant gives the same state_fingerprint."""

    groups: tuple[str, ...] = ()
    users: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    tool_version: str
    tenant_id: str
    created_at: str
    policy_digest: str
    state_fingerprint: str
    actions: tuple[Action, ...]
    violations: tuple[Violation, ...]
    forced: bool = False
    # user id -> predicted states, for the users the plan affects
    prediction: Mapping[str, tuple[PredictedState, ...]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    # what was observed (None in plans made by hand or by older versions)
    scope: ObserveScope | None = None

    @property
    def summary(self) -> dict[str, int]:
        counts = Counter(a.kind for a in self.actions)
        return {kind: counts[kind] for kind in ACTION_KINDS if counts[kind]}

    @property
    def users_affected(self) -> int:
        return len({u for a in self.actions for u in a.users})

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    @property
    def blocking_violations(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.blocking)

    @property
    def blocked(self) -> bool:
        """A plan blocks unless forced; policy errors block even when forced."""
        blocking = self.blocking_violations
        if any(v.code in POLICY_CODES for v in blocking):
            return True
        return bool(blocking) and not self.forced
