"""A small tenant for the emulator's tests (store, processing, Graph app).

Real SKU and plan ids from Microsoft's table (facts 4.1). The rules are given
explicitly (`RULES`) so the tests do not depend on the bundled rule table.
"""

from __future__ import annotations

import copy
from typing import Any

from reconciler.licensing import Rules

TENANT = "f1b45b40-57df-41f7-9596-7f2313883635"

E1 = "18181a46-0d4e-45cd-891e-60aabd171b4e"  # STANDARDPACK
E3 = "6fd2c87f-b296-42f0-b197-1e91e994b900"  # ENTERPRISEPACK
PROJECT = "53818b1b-4a27-454b-8896-0dba576410e6"  # PROJECTPROFESSIONAL
UNKNOWN_SKU = "c7df2760-2c81-4ef7-b578-5b5392b571df"  # ENTERPRISEPREMIUM, not bought

EXCH_STD = "9aaf7827-d63c-4b61-89c3-182f06f82e5c"
EXCH_ENT = "efb87545-963c-4e0d-99df-69c6916d9eb0"
SP_STD = "c7699d2e-19aa-44de-8edf-1736da088ca1"
SP_ENT = "5dbe027f-2339-4123-9542-606e4d348a72"
SP_PROJECT = "fe71d6c3-a2ea-4499-9778-da042bf08063"
TEAMS = "57ff2da0-773e-42df-b2af-ffb7a2317929"
SWAY = "a23b959c-7ce8-4e57-9140-b90eb88a9e97"

RULES = Rules(
    mutually_exclusive=frozenset({frozenset({SP_STD, SP_ENT})}),
    requires={SP_PROJECT: frozenset({SP_ENT})},
    prohibited_locations={},
    mailbox_plans=frozenset({EXCH_STD, EXCH_ENT}),
)

ADMIN_APP = "11111111-1111-1111-1111-111111111111"
READER_APP = "22222222-2222-2222-2222-222222222222"


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def gid(n: int) -> str:
    return f"00000000-0000-4000-9000-{n:012d}"


G_E3 = gid(1)  # LIC-E3: E3 for alice, bob, carol
G_SALES = gid(2)  # unlicensed; nested into G_E3
G_PROJECT = gid(3)  # PROJECT + E3


def _plan(pid: str, name: str) -> dict[str, Any]:
    return {"servicePlanId": pid, "servicePlanName": name, "provisioningStatus": "Success", "appliesTo": "User"}


def _user(n: int, name: str, location: str | None = "US", **extra: Any) -> dict[str, Any]:
    upn = f"{name}@contoso.com"
    return {
        "id": uid(n),
        "userPrincipalName": upn,
        "displayName": name.capitalize(),
        "mail": upn,
        "usageLocation": location,
        "accountEnabled": True,
        "proxyAddresses": [f"SMTP:{upn}"],
        "assignedLicenses": [],
        **extra,
    }


_SEED: dict[str, Any] = {
    "organization": {
        "id": TENANT,
        "displayName": "Contoso",
        "countryLetterCode": "US",
        "defaultUsageLocation": None,
        "verifiedDomains": [
            {"name": "contoso.com", "isDefault": True, "isInitial": False, "type": "Managed", "capabilities": "Email"},
            {
                "name": "contoso.onmicrosoft.com",
                "isDefault": False,
                "isInitial": True,
                "type": "Managed",
                "capabilities": "Email",
            },
        ],
    },
    "subscribedSkus": [
        {
            "id": f"{TENANT}_{E1}",
            "skuId": E1,
            "skuPartNumber": "STANDARDPACK",
            "appliesTo": "User",
            "capabilityStatus": "Enabled",
            "prepaidUnits": {"enabled": 5, "suspended": 0, "warning": 0, "lockedOut": 0},
            "servicePlans": [
                _plan(EXCH_STD, "EXCHANGE_S_STANDARD"),
                _plan(SP_STD, "SHAREPOINTSTANDARD"),
                _plan(TEAMS, "TEAMS1"),
            ],
        },
        {
            "id": f"{TENANT}_{E3}",
            "skuId": E3,
            "skuPartNumber": "ENTERPRISEPACK",
            "appliesTo": "User",
            "capabilityStatus": "Enabled",
            "prepaidUnits": {"enabled": 4, "suspended": 0, "warning": 0, "lockedOut": 0},
            "servicePlans": [
                _plan(EXCH_ENT, "EXCHANGE_S_ENTERPRISE"),
                _plan(SP_ENT, "SHAREPOINTENTERPRISE"),
                _plan(TEAMS, "TEAMS1"),
                _plan(SWAY, "SWAY"),
            ],
        },
        {
            "id": f"{TENANT}_{PROJECT}",
            "skuId": PROJECT,
            "skuPartNumber": "PROJECTPROFESSIONAL",
            "appliesTo": "User",
            "capabilityStatus": "Enabled",
            "prepaidUnits": {"enabled": 2, "suspended": 0, "warning": 0, "lockedOut": 0},
            "servicePlans": [_plan(SP_PROJECT, "SHAREPOINT_PROJECT")],
        },
    ],
    "users": [
        _user(1, "alice"),
        _user(2, "bob"),
        _user(3, "carol", None),  # no usage location: tenant's US for group licensing
        _user(4, "dave", assignedLicenses=[{"skuId": E1, "disabledPlans": []}]),
        _user(5, "erin"),
        _user(6, "frank"),
        _user(7, "grace", None),
        _user(8, "heidi"),
        _user(9, "ivan"),
        _user(10, "judy"),
    ],
    "groups": [
        {
            "id": G_E3,
            "displayName": "LIC-E3",
            "mailEnabled": False,
            "mailNickname": "lic-e3",
            "securityEnabled": True,
            "groupTypes": [],
            "assignedLicenses": [{"skuId": E3, "disabledPlans": [SWAY]}],
            "members": [uid(1), uid(2), uid(3), G_SALES],
        },
        {
            "id": G_SALES,
            "displayName": "Sales",
            "mailEnabled": False,
            "mailNickname": "sales",
            "securityEnabled": True,
            "groupTypes": [],
            "assignedLicenses": [],
            "members": [uid(5), uid(6)],
        },
        {
            "id": G_PROJECT,
            "displayName": "LIC-Project",
            "mailEnabled": False,
            "mailNickname": "lic-project",
            "securityEnabled": True,
            "groupTypes": [],
            "assignedLicenses": [],
            "members": [],
        },
    ],
    "applications": [
        {
            "appId": ADMIN_APP,
            "displayName": "reconciler-admin",
            "secret": "admin-secret-value",
            "permissions": [
                "Directory.Read.All",
                "LicenseAssignment.ReadWrite.All",
                "User.ReadWrite.All",
                "Group.ReadWrite.All",
            ],
        },
        {
            "appId": READER_APP,
            "displayName": "reconciler-reader",
            "secret": "reader-secret-value",
            "permissions": ["Directory.Read.All"],
        },
    ],
    "emulator": {"processingDelaySeconds": 0},
}


def seed() -> dict[str, Any]:
    return copy.deepcopy(_SEED)


def big_seed(users: int, per_group: int = 1000) -> dict[str, Any]:
    """A tenant with many users (for load tests); every user in one of a few E1 groups."""
    s = seed()
    s["subscribedSkus"][0]["prepaidUnits"]["enabled"] = users
    s["users"] = [_user(100 + i, f"user{i}") for i in range(users)]
    groups = []
    for g in range(max(1, users // per_group)):
        members = [uid(100 + i) for i in range(g * per_group, min(users, (g + 1) * per_group))]
        groups.append(
            {
                "id": gid(100 + g),
                "displayName": f"LIC-E1-{g}",
                "securityEnabled": True,
                "mailEnabled": False,
                "mailNickname": f"e1-{g}",
                "groupTypes": [],
                "assignedLicenses": [{"skuId": E1, "disabledPlans": []}],
                "members": members,
            }
        )
    s["groups"] = groups
    return s


# ----------------------------------------------------------------------------- app helpers


class Tenant:
    """A store, its token service and an in-process client of the Graph app."""

    def __init__(self, db_path: str, options: Any = None, seed_doc: dict[str, Any] | None = None) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from starlette.testclient import TestClient

        from reconciler.emulator.app import EmulatorOptions, create_app
        from reconciler.emulator.auth import TokenService
        from reconciler.emulator.store import Store

        doc = seed_doc or seed()
        self.store = Store.create(db_path, doc, rules=RULES)
        self.tokens = TokenService.from_seed(doc)
        self.app = create_app(self.store, token_service=self.tokens, options=options or EmulatorOptions())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.client = TestClient(self.app, base_url="https://127.0.0.1:8443")
        self.client.__enter__()
        self.admin = {"Authorization": f"Bearer {self.tokens.issue_access_token(ADMIN_APP)}"}
        self.reader = {"Authorization": f"Bearer {self.tokens.issue_access_token(READER_APP)}"}

    def get(self, url: str, headers: dict[str, str] | None = None) -> Any:
        return self.client.get(url, headers={**self.admin, **(headers or {})})

    def post(self, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        return self.client.post(url, json=body, headers={**self.admin, **(headers or {})})

    def patch(self, url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        return self.client.patch(url, json=body, headers={**self.admin, **(headers or {})})

    def delete(self, url: str, headers: dict[str, str] | None = None) -> Any:
        return self.client.delete(url, headers={**self.admin, **(headers or {})})

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.store.close()


def states(store: Any, user_id: str) -> list[tuple[str, str | None, str, str]]:
    """(sku, group, state, error) of a user's license states in the store."""
    u = store.users[user_id]
    return sorted(
        ((s.state.sku_id, s.state.assigned_by_group, s.state.state, s.state.error) for s in u.states),
        key=lambda t: (t[0], t[1] or "", t[2], t[3]),
    )
