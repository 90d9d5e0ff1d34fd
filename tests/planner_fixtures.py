"""Small hand-made tenants and policies for the planner's tests (tests/test_planner_*.py).

Tenants are built in the seed format (Graph's shapes) with real SKUs and plans from the bundled
catalog, then read with TenantState.from_snapshot; their license states are computed in-process
by reconciler.licensing (what the emulator does on load), so every test starts from a settled
tenant.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler import licensing
from reconciler.catalog import bundled_rules, load_catalog
from reconciler.plan import Plan
from reconciler.planner import make_plan
from reconciler.planner.predict import tenant_input
from reconciler.planner.resolve import tenant_extra_plans
from reconciler.policy import Policy, load_policy
from reconciler.state import TenantState

TENANT_ID = "0c8a2d6e-1b3f-4a5c-9d7e-2f4b6a8c0e1d"
NOW = dt.datetime(2026, 11, 21, 9, 0, 0, tzinfo=dt.UTC)

CATALOG = load_catalog()


def sku_id(part: str) -> str:
    entry = CATALOG.sku(part)
    assert entry is not None, part
    return entry.sku_id


def plan_id(name: str) -> str:
    entry = CATALOG.plan(name)
    assert entry is not None, name
    return entry.plan_id


def uid(n: int) -> str:
    return f"10000000-0000-4000-8000-{n:012d}"


def gid(n: int) -> str:
    return f"20000000-0000-4000-8000-{n:012d}"


def sku(part: str, units: int, *, pending: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """A subscribedSku with the catalog's plans; `pending`: (id, name) plans Microsoft just added."""
    entry = CATALOG.sku(part)
    assert entry is not None
    plans = [
        {"servicePlanId": p.plan_id, "servicePlanName": p.name, "provisioningStatus": "Success", "appliesTo": "User"}
        for p in CATALOG.sku_plans(entry)
    ]
    plans += [
        {"servicePlanId": pid, "servicePlanName": name, "provisioningStatus": "PendingProvisioning", "appliesTo": "User"}
        for pid, name in pending
    ]
    return {
        "skuId": entry.sku_id,
        "skuPartNumber": entry.part_number,
        "appliesTo": "User",
        "capabilityStatus": "Enabled",
        "consumedUnits": 0,
        "prepaidUnits": {"enabled": units, "suspended": 0, "warning": 0},
        "servicePlans": plans,
    }


def lic(part: str, disabled: Iterable[str] = ()) -> dict[str, Any]:
    return {"skuId": sku_id(part), "disabledPlans": sorted(plan_id(p) for p in disabled)}


def user(n: int, nick: str, location: str | None = "US", direct: Sequence[dict[str, Any]] = (),
         proxy: Sequence[str] | None = None) -> dict[str, Any]:
    upn = f"{nick}@contoso.com"
    return {
        "id": uid(n),
        "userPrincipalName": upn,
        "displayName": nick,
        "mail": upn,
        "usageLocation": location,
        "accountEnabled": True,
        "proxyAddresses": list(proxy) if proxy is not None else [f"SMTP:{upn}"],
        "assignedLicenses": list(direct),
    }


def group(n: int, name: str, licenses: Sequence[dict[str, Any]] = (), members: Sequence[str] = (),
          **extra: Any) -> dict[str, Any]:
    return {
        "id": gid(n),
        "displayName": name,
        "securityEnabled": True,
        "mailEnabled": False,
        "groupTypes": [],
        "assignedLicenses": list(licenses),
        "members": list(members),
        **extra,
    }


def tenant(skus: Sequence[dict[str, Any]], users: Sequence[dict[str, Any]],
           groups: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "organization": {
            "id": TENANT_ID,
            "displayName": "Contoso",
            "countryLetterCode": "US",
            "defaultUsageLocation": "US",
            "verifiedDomains": [
                {"name": "contoso.com", "isDefault": True, "isInitial": False},
                {"name": "contoso.onmicrosoft.com", "isDefault": False, "isInitial": True},
            ],
        },
        "subscribedSkus": list(skus),
        "users": list(users),
        "groups": list(groups),
    }


def settle(state: TenantState) -> TenantState:
    """The tenant with every user's license states as the licensing model computes them."""
    rules = bundled_rules().to_rules(CATALOG, tenant_extra_plans(state))
    inp = tenant_input(state, rules)
    inp = dataclasses.replace(inp, previous={})
    result = licensing.compute(inp)
    users = []
    for u in state.users.values():
        computed = result.users.get(u.id)
        users.append(dataclasses.replace(u, license_states=computed.states if computed else ()))
    skus = [dataclasses.replace(s, consumed_units=result.consumed.get(s.sku_id, 0)) for s in state.skus.values()]
    return TenantState.build(state.organization, skus, users, state.groups.values())


def state_from(doc: Mapping[str, Any]) -> TenantState:
    return settle(TenantState.from_snapshot(doc))


def write_policy(tmp_path: Path, text: str, name: str = "policy.yaml") -> Policy:
    path = tmp_path / name
    path.write_text("apiVersion: reconciler/v1\n" + textwrap.dedent(text), encoding="utf-8")
    return load_policy([path])


def plan_for(tmp_path: Path, state: TenantState, text: str, **kwargs: Any) -> Plan:
    return make_plan(write_policy(tmp_path, text), state, now=NOW, **kwargs)


def kinds(plan: Plan) -> list[tuple[str, str, str]]:
    """(kind, group or user name, sku) of every action, in plan order."""
    out = []
    for a in plan.actions:
        target = a.group.name if a.group is not None else (a.user.name if a.user is not None else "")
        if a.kind in ("addMember", "removeMember", "setUsageLocation", "removeDirectLicense", "reprocess"):
            target = a.user.name if a.user is not None else target
        out.append((a.kind, target, a.sku or ""))
    return out


def codes(plan: Plan) -> list[tuple[str, str, str]]:
    """(code, severity, status) of every violation."""
    return [(v.code, v.severity, v.status) for v in plan.violations]


def find(plan: Plan, code: str, status: str | None = None) -> list[Any]:
    return [v for v in plan.violations if v.code == code and (status is None or v.status == status)]


E3_OFF = ("YAMMER_ENTERPRISE", "SWAY")


def base_doc(**overrides: Any) -> dict[str, Any]:
    """A small settled tenant:

    LIC-E3 (E3 without Yammer and Sway): alice bob carol gina hank frank + nested group Sales (dave)
    LIC-EMS (EMS, 3 seats): alice bob; LIC-Admins (E5): carol; Old-Pilot (E5): erin (no policy names it)
    gina: direct E3 with the group's plans; hank: direct E3 with every plan; frank: no usage location.
    """
    users = [
        user(1, "alice"),
        user(2, "bob"),
        user(3, "carol"),
        user(4, "dave"),
        user(5, "erin"),
        user(6, "frank", location=None),
        user(7, "gina", direct=[lic("ENTERPRISEPACK", E3_OFF)]),
        user(8, "hank", direct=[lic("ENTERPRISEPACK")]),
        user(9, "ivan"),
    ]
    groups = [
        group(1, "LIC-E3", [lic("ENTERPRISEPACK", E3_OFF)], [uid(1), uid(2), uid(3), uid(7), uid(8), uid(6), gid(2)]),
        group(2, "Sales", [], [uid(4)]),
        group(3, "LIC-EMS", [lic("EMS")], [uid(1), uid(2)]),
        group(4, "Old-Pilot", [lic("ENTERPRISEPREMIUM")], [uid(5)]),
        group(5, "LIC-Admins", [lic("ENTERPRISEPREMIUM")], [uid(3)]),
    ]
    skus = [
        sku("STANDARDPACK", 5),
        sku("ENTERPRISEPACK", 10),
        sku("EMS", 3),
        sku("MCOEV", 10),
        sku("ENTERPRISEPREMIUM", 5),
    ]
    doc = tenant(skus, users, groups)
    doc.update(overrides)
    return doc


BASE_POLICY = """\
groups:
  - group: LIC-E3
    licenses:
      - sku: ENTERPRISEPACK
        disabledPlans: [YAMMER_ENTERPRISE, SWAY]
  - group: LIC-EMS
    licenses:
      - sku: EMS
  - group: LIC-Admins
    licenses:
      - sku: ENTERPRISEPREMIUM
"""


def base_state() -> TenantState:
    return state_from(base_doc())
