"""Hand-built Plan objects for the renderer and plan-file tests (no planner involved)."""

from __future__ import annotations

from reconciler.plan import (
    EXISTING,
    FIXED,
    Action,
    GraphRequest,
    Location,
    ObjectRef,
    Plan,
    PredictedState,
    Violation,
)

TENANT = "f1b45b40-57df-41f7-9596-7f2313883635"
E3 = "6fd2c87f-b296-42f0-b197-1e91e994b900"
E1 = "18181a46-0d4e-45cd-891e-60aabd171b4e"
EMS = "efccb6f7-5641-4e0e-bd10-b4976e1bf68e"
G_E3 = "0b6f7e2a-1111-4c1b-9d2e-000000000001"
G_KIOSK = None
G_OLD = "0b6f7e2a-1111-4c1b-9d2e-000000000003"


def _plan(actions: tuple[Action, ...] = (), violations: tuple[Violation, ...] = (), **kw: object) -> Plan:
    return Plan(
        tool_version="0.1.0",
        tenant_id=TENANT,
        created_at="2026-11-21T08:00:00Z",
        policy_digest="sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        state_fingerprint="sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        actions=actions,
        violations=violations,
        **kw,  # type: ignore[arg-type]
    )


def users(n: int, prefix: str = "user") -> tuple[str, ...]:
    return tuple(f"{prefix}{i:05d}@contoso.com" for i in range(1, n + 1))


def no_changes() -> Plan:
    return _plan()


def no_changes_with_existing() -> Plan:
    return _plan(
        violations=(
            Violation(
                code="CountViolation",
                severity="warning",
                message="3 members of LIC-E3-Base hold no ENTERPRISEPACK seat: 25 purchased, 25 consumed.",
                resolution="Buy 3 more ENTERPRISEPACK seats, or free seats by removing licenses from other users.",
                sku="ENTERPRISEPACK",
                group="LIC-E3-Base",
                users=("ann@contoso.com", "bea@contoso.com", "cid@contoso.com"),
                status=EXISTING,
            ),
        )
    )


def swap() -> Plan:
    """A group moves from E1 to E3 in one assignLicense call, and EMS plans change in place."""
    body = {
        "addLicenses": [{"skuId": E3, "disabledPlans": ["a23b959c-7ce8-4e57-9140-b90eb88a9e97"]}],
        "removeLicenses": [E1],
    }
    req = GraphRequest("POST", f"/groups/{G_E3}/assignLicense", body)
    members = users(42)
    return _plan(
        actions=(
            Action(
                kind="assignLicense",
                reason="ENTERPRISEPACK is in the policy for LIC-E3-Base",
                request=req,
                group=ObjectRef("LIC-E3-Base", G_E3),
                sku="ENTERPRISEPACK",
                users=members,
                details={
                    "enabledPlans": ["EXCHANGE_S_ENTERPRISE", "SHAREPOINTENTERPRISE", "TEAMS1"],
                    "disabledPlans": ["SWAY"],
                    "seats": {"needed": 42, "free": 50},
                },
                source=Location("policies/groups.yaml", 4, 9),
                request_key=f"group:{G_E3}",
            ),
            Action(
                kind="removeLicense",
                reason="STANDARDPACK is no longer in the policy for LIC-E3-Base",
                request=req,
                group=ObjectRef("LIC-E3-Base", G_E3),
                sku="STANDARDPACK",
                users=members,
                request_key=f"group:{G_E3}",
            ),
            Action(
                kind="updateLicense",
                reason="disabledPlans of EMS changed",
                request=GraphRequest(
                    "POST",
                    f"/groups/{G_E3}/assignLicense",
                    {"addLicenses": [{"skuId": EMS, "disabledPlans": []}], "removeLicenses": []},
                ),
                group=ObjectRef("LIC-E3-Base", G_E3),
                sku="EMS",
                users=members,
                details={
                    "enabledPlans": ["AAD_PREMIUM", "INTUNE_A"],
                    "heldOff": ["AAD_PREMIUM_P2"],
                    "planChanges": {"enable": ["INTUNE_A"], "disable": ["RMS_S_PREMIUM"]},
                },
            ),
        )
    )


def removals() -> Plan:
    """An unmanaged group loses its SKU, a member leaves, direct licenses go."""
    return _plan(
        actions=(
            Action(
                kind="removeLicense",
                reason="LIC-Old is licensed but no policy names it (unmanagedGroups: remove)",
                request=GraphRequest(
                    "POST", f"/groups/{G_OLD}/assignLicense", {"addLicenses": [], "removeLicenses": [E1]}
                ),
                group=ObjectRef("LIC-Old", G_OLD),
                sku="STANDARDPACK",
                users=("dan@contoso.com", "eve@contoso.com"),
                details={"protected": True},
            ),
            Action(
                kind="removeMember",
                reason="not in the members list of LIC-E1-Kiosk",
                request=GraphRequest("DELETE", "/groups/g2/members/u9/$ref"),
                group=ObjectRef("LIC-E1-Kiosk", "g2"),
                user=ObjectRef("bob@contoso.com", "u9"),
                users=("bob@contoso.com",),
            ),
            Action(
                kind="removeDirectLicense",
                reason="LIC-E3-Base gives ENTERPRISEPACK with at least the same plans (directLicenses: removeRedundant)",
                request=GraphRequest(
                    "POST", "/users/u1/assignLicense", {"addLicenses": [], "removeLicenses": [E3]}
                ),
                user=ObjectRef("alice@contoso.com", "u1"),
                sku="ENTERPRISEPACK",
                users=("alice@contoso.com",),
                details={"coveredBy": ["LIC-E3-Base"]},
            ),
        )
    )


def many_users(n: int) -> Plan:
    """A new group with n members, usage locations for all, one violation naming every user."""
    everyone = users(n)
    actions: list[Action] = [
        Action(
            kind="createGroup",
            reason="create: true in the policy",
            request=GraphRequest(
                "POST",
                "/groups",
                {"displayName": "LIC-E1-Kiosk", "mailEnabled": False, "mailNickname": "LIC-E1-Kiosk",
                 "securityEnabled": True},
            ),
            group=ObjectRef("LIC-E1-Kiosk", None),
        ),
        Action(
            kind="assignLicense",
            reason="STANDARDPACK is in the policy for LIC-E1-Kiosk",
            request=GraphRequest("POST", "/groups/{LIC-E1-Kiosk}/assignLicense",
                                 {"addLicenses": [{"skuId": E1, "disabledPlans": []}], "removeLicenses": []}),
            group=ObjectRef("LIC-E1-Kiosk", None),
            sku="STANDARDPACK",
            users=everyone,
            details={"enabledPlans": ["EXCHANGE_S_STANDARD", "SHAREPOINTSTANDARD"], "seats": {"needed": n, "free": 10}},
        ),
    ]
    for i, upn in enumerate(everyone):
        actions.append(
            Action(
                kind="addMember",
                reason="listed in members of LIC-E1-Kiosk",
                request=GraphRequest("POST", "/groups/{LIC-E1-Kiosk}/members/$ref",
                                     {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/u{i}"}),
                group=ObjectRef("LIC-E1-Kiosk", None),
                user=ObjectRef(upn, f"u{i}"),
                users=(upn,),
            )
        )
    for i, upn in enumerate(everyone):
        actions.append(
            Action(
                kind="setUsageLocation",
                reason="usageLocation of LIC-E1-Kiosk",
                request=GraphRequest("PATCH", f"/users/u{i}", {"usageLocation": "FR"}),
                user=ObjectRef(upn, f"u{i}"),
                users=(upn,),
                details={"usageLocation": "FR", "previousUsageLocation": None},
            )
        )
    violations = (
        Violation(
            code="CountViolation",
            severity="error",
            message=f"LIC-E1-Kiosk needs {n:,} STANDARDPACK seats; 10 are free.",
            resolution=f"Buy {n - 10:,} more STANDARDPACK seats, or free seats by removing licenses from other users.",
            sku="STANDARDPACK",
            group="LIC-E1-Kiosk",
            users=everyone[10:],
            source=Location("policies/kiosk.yaml", 7, 9),
        ),
        Violation(
            code="UsageLocationFallback",
            severity="warning",
            message="members of LIC-E1-Kiosk have no usage location and rely on the tenant's (US).",
            resolution="Set usageLocation on the group in the policy, or usageLocations.default.",
            group="LIC-E1-Kiosk",
            users=everyone,
        ),
    )
    return _plan(actions=tuple(actions), violations=violations)


def blocking(forced: bool = False) -> Plan:
    """Predicted, policy, existing and fixed violations together."""
    base = swap()
    violations = (
        Violation(
            code="MutuallyExclusiveViolation",
            severity="error",
            message="SHAREPOINTSTANDARD (from LIC-E1-Kiosk) and SHAREPOINTENTERPRISE (from LIC-E3-Base) cannot both be enabled.",
            resolution="Disable SHAREPOINTSTANDARD in LIC-E1-Kiosk, or remove the user from one of the groups.",
            sku="ENTERPRISEPACK",
            group="LIC-E3-Base",
            users=("frank@contoso.com", "gina@contoso.com"),
            source=Location("policies/groups.yaml", 4, 9),
        ),
        Violation(
            code="NestedGroup",
            severity="warning",
            message="LIC-E3-Base contains the group Sales-EU; its 5 members will not be licensed (nested groups are ignored).",
            resolution="Add the users as direct members of LIC-E3-Base.",
            group="LIC-E3-Base",
            users=users(5, "sales"),
            source=Location("policies/groups.yaml", 2, 5),
        ),
        Violation(
            code="DependencyViolation",
            severity="warning",
            message="PROJECT_CLIENT_SUBSCRIPTION needs SHAREPOINTENTERPRISE, which is disabled.",
            resolution="Keep SHAREPOINTENTERPRISE enabled for these users.",
            sku="PROJECTPREMIUM",
            group="LIC-Project",
            users=("hal@contoso.com",),
            status=EXISTING,
        ),
        Violation(
            code="CountViolation",
            severity="warning",
            message="2 members of LIC-E3-Base hold no ENTERPRISEPACK seat.",
            resolution="Buy 2 more ENTERPRISEPACK seats.",
            sku="ENTERPRISEPACK",
            group="LIC-E3-Base",
            users=("ivy@contoso.com", "jon@contoso.com"),
            status=FIXED,
        ),
    )
    return Plan(
        tool_version=base.tool_version,
        tenant_id=base.tenant_id,
        created_at=base.created_at,
        policy_digest=base.policy_digest,
        state_fingerprint=base.state_fingerprint,
        actions=base.actions,
        violations=violations,
        forced=forced,
        prediction={
            "u1": (PredictedState(E3, G_E3, "Active", "None"),),
            "u2": (
                PredictedState(E3, G_E3, "ActiveWithError", "MutuallyExclusiveViolation"),
                PredictedState(E1, None, "Active", "None"),
            ),
        },
    )


def policy_error() -> Plan:
    return _plan(
        violations=(
            Violation(
                code="GroupNotFound",
                severity="error",
                message="no group named LIC-E5-Admins in the tenant",
                resolution="Create the group, set create: true, or correct the name.",
                group="LIC-E5-Admins",
                source=Location("policies/admins.yaml", 3, 12),
            ),
        ),
        forced=True,
    )


ALL = {
    "no_changes": no_changes,
    "no_changes_with_existing": no_changes_with_existing,
    "swap": swap,
    "removals": removals,
    "many_users": lambda: many_users(60),
    "blocking": blocking,
    "forced": lambda: blocking(forced=True),
    "policy_error": policy_error,
}
