"""Small hand-built SKU and rule fixtures for the licensing tests.

Every SKU and service-plan id below is a real one, copied from Microsoft's "Product names and
service plan identifiers for licensing" table (reference/licensing-service-plan-reference.csv).
Each SKU lists only the plans the tests need. The rules follow facts section 5.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from reconciler.licensing import (
    AssignmentState,
    License,
    LicensingGroup,
    LicensingInput,
    LicensingUser,
    Rules,
    SkuCapacity,
)

# SKUs (String_Id -> GUID)
STANDARDPACK = "18181a46-0d4e-45cd-891e-60aabd171b4e"  # Office 365 E1
ENTERPRISEPACK = "6fd2c87f-b296-42f0-b197-1e91e994b900"  # Office 365 E3
EMS = "efccb6f7-5641-4e0e-bd10-b4976e1bf68e"  # Enterprise Mobility + Security E3
PROJECTPROFESSIONAL = "53818b1b-4a27-454b-8896-0dba576410e6"
WORKPLACE_ANALYTICS_SKU = "3d957427-ecdc-4df2-aacd-01cc9d519da8"
MCOMEETADV_SKU = "0c266dff-15dd-4b49-8397-2bb16070ed52"  # Audio Conferencing
MCOEV_SKU = "e43b5b99-8dfb-405f-9987-dc307f34bcbd"  # Teams Phone Standard
TEAMS_FREE_SKU = "16ddbbfc-09ea-4de2-b1d7-312db6112d70"
EXCHANGESTANDARD = "4b9405b0-7788-4568-add1-99614e613b69"  # Exchange Online (Plan 1)
EXCHANGEENTERPRISE = "19ec0d23-8335-4cbd-94ac-6050e30712fa"  # Exchange Online (Plan 2)

# service plans (Service_Plan_Name -> GUID)
EXCHANGE_S_STANDARD = "9aaf7827-d63c-4b61-89c3-182f06f82e5c"
EXCHANGE_S_ENTERPRISE = "efb87545-963c-4e0d-99df-69c6916d9eb0"
EXCHANGE_S_FOUNDATION = "113feb6c-3fe4-4440-bddc-54d774bf0318"
SHAREPOINTSTANDARD = "c7699d2e-19aa-44de-8edf-1736da088ca1"
SHAREPOINTENTERPRISE = "5dbe027f-2339-4123-9542-606e4d348a72"
SHAREPOINT_PROJECT = "fe71d6c3-a2ea-4499-9778-da042bf08063"
PROJECT_PROFESSIONAL = "818523f5-016b-4355-9be8-ed6944946ea7"
TEAMS1 = "57ff2da0-773e-42df-b2af-ffb7a2317929"
TEAMS_FREE = "4fa4026d-ce74-4962-a151-8e96d57ea8e4"
MCOFREE = "617d9209-3b90-4879-96e6-838c42b2701d"
MCOSTANDARD = "0feaeb32-d00e-4d66-bd5a-43b5b83db82c"
MCOEV = "4828c8ec-dc2e-4779-b502-87ac9ce28ab7"
MCOMEETADV = "3e26ee1f-8a5f-4d52-aee2-b81ce45c8f40"
SWAY = "a23b959c-7ce8-4e57-9140-b90eb88a9e97"
YAMMER_ENTERPRISE = "7547a3fe-08ee-4ccb-b430-5077c5041653"
INTUNE_O365 = "882e1d05-acd1-4ccb-8708-6ee03664b117"
AAD_PREMIUM = "41781fb2-bc02-4b7c-bd55-b576c07bb09d"
INTUNE_A = "c1ec4a95-1f05-45b3-a911-aa3fa01094f5"
WORKPLACE_ANALYTICS = "f477b0f0-3bb1-4890-940c-40fcee6ce05f"

SKU_PLANS: dict[str, tuple[str, ...]] = {
    STANDARDPACK: (EXCHANGE_S_STANDARD, SHAREPOINTSTANDARD, TEAMS1, MCOSTANDARD, SWAY, INTUNE_O365),
    ENTERPRISEPACK: (
        EXCHANGE_S_ENTERPRISE,
        SHAREPOINTENTERPRISE,
        TEAMS1,
        MCOSTANDARD,
        SWAY,
        YAMMER_ENTERPRISE,
        INTUNE_O365,
    ),
    EMS: (AAD_PREMIUM, INTUNE_A, EXCHANGE_S_FOUNDATION),
    PROJECTPROFESSIONAL: (
        SHAREPOINT_PROJECT,
        PROJECT_PROFESSIONAL,
        SHAREPOINTENTERPRISE,
        EXCHANGE_S_FOUNDATION,
    ),
    WORKPLACE_ANALYTICS_SKU: (WORKPLACE_ANALYTICS,),
    MCOMEETADV_SKU: (MCOMEETADV,),
    MCOEV_SKU: (MCOEV,),
    TEAMS_FREE_SKU: (EXCHANGE_S_FOUNDATION, MCOFREE, TEAMS_FREE),
    EXCHANGESTANDARD: (EXCHANGE_S_STANDARD, INTUNE_O365),
    EXCHANGEENTERPRISE: (EXCHANGE_S_ENTERPRISE,),
}

SHAREPOINT_P1_P2 = frozenset({SHAREPOINTSTANDARD, SHAREPOINTENTERPRISE})
EXCHANGE_P1_P2 = frozenset({EXCHANGE_S_STANDARD, EXCHANGE_S_ENTERPRISE})
TEAMS_FREE_VS_TEAMS = frozenset({TEAMS_FREE, TEAMS1})

REQUIRES: dict[str, frozenset[str]] = {
    SHAREPOINT_PROJECT: frozenset({SHAREPOINTENTERPRISE}),
    WORKPLACE_ANALYTICS: frozenset({EXCHANGE_S_STANDARD, EXCHANGE_S_ENTERPRISE}),
    MCOMEETADV: frozenset({MCOSTANDARD}),
    MCOEV: frozenset({MCOSTANDARD}),
}
PROHIBITED: dict[str, frozenset[str]] = {MCOEV: frozenset({"BN"})}
MAILBOX = frozenset({EXCHANGE_S_STANDARD, EXCHANGE_S_ENTERPRISE})


def rules(*, exchange_exclusive: bool = False, sharepoint_exclusive: bool = True) -> Rules:
    """The rule table of the tests: SharePoint P1/P2 on, Exchange P1/P2 off (facts 2.14)."""
    pairs = {TEAMS_FREE_VS_TEAMS}
    if sharepoint_exclusive:
        pairs.add(SHAREPOINT_P1_P2)
    if exchange_exclusive:
        pairs.add(EXCHANGE_P1_P2)
    return Rules(
        mutually_exclusive=frozenset(pairs),
        requires=dict(REQUIRES),
        prohibited_locations=dict(PROHIBITED),
        mailbox_plans=MAILBOX,
    )


def skus(units: Mapping[str, int] | None = None, default: int = 100) -> dict[str, SkuCapacity]:
    units = units or {}
    return {s: SkuCapacity(s, plans, units.get(s, default)) for s, plans in SKU_PLANS.items()}


def uid(n: int) -> str:
    """A user id; ids sort in the order of n."""
    return f"00000000-0000-4000-8000-{n:012d}"


def gid(n: int) -> str:
    """A group id; ids sort in the order of n."""
    return f"99999999-0000-4000-8000-{n:012d}"


def user(
    n: int,
    *,
    location: str | None = "US",
    direct: Iterable[License] = (),
    proxies: Iterable[str] | None = None,
) -> LicensingUser:
    addresses = frozenset(proxies) if proxies is not None else frozenset({f"user{n}@contoso.com"})
    return LicensingUser(uid(n), location, addresses, tuple(direct))


def group(
    n: int, licenses: Iterable[License], members: Iterable[str], *, security: bool = True
) -> LicensingGroup:
    return LicensingGroup(gid(n), security, tuple(licenses), tuple(members))


def lic(sku_id: str, *disabled: str) -> License:
    return License(sku_id, frozenset(disabled))


def tenant(
    users: Iterable[LicensingUser],
    groups: Iterable[LicensingGroup] = (),
    *,
    units: Mapping[str, int] | None = None,
    rule_table: Rules | None = None,
    tenant_location: str | None = "US",
    previous: Mapping[str, tuple[AssignmentState, ...]] | None = None,
    other_proxy_addresses: Mapping[str, str] | None = None,
) -> LicensingInput:
    return LicensingInput(
        tenant_location=tenant_location,
        skus=skus(units),
        users={u.id: u for u in users},
        groups={g.id: g for g in groups},
        rules=rule_table if rule_table is not None else rules(),
        other_proxy_addresses=dict(other_proxy_addresses or {}),
        previous=dict(previous or {}),
    )
