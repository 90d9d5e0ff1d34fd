"""Deterministic synthetic tenants of realistic shape, for the emulator and the benchmarks.

`generate_tenant(users=..., groups=..., skus=..., seed=...)` returns a seed document in the
format of schemas/tenant.schema.json; `write_tenant(doc, stream)` writes it as JSON, one user or
group per line. The same arguments always give byte-identical output (one `random.Random(seed)`
drives everything; nothing depends on the clock, the machine or hash order).

Shape (numbers are targets; small tenants round them):
- real SKUs and service plans from reconciler.catalog, popular user SKUs first (`POPULAR`);
  suites ("base" SKUs: E3, E5, E1, F3, Business...) and add-ons (EMS, Power BI, Visio...);
- about 15% of the groups carry licenses (300 of 2,000), mostly one SKU each, some with a
  base + add-on pair, a third with a couple of plans switched off;
- about 1.5 memberships per user in licensed groups: 90% of users are in one base group (a few
  groups are much larger than the rest), 60% of those also in an add-on group, 1% in a second
  base group (which may conflict, e.g. E1 + E3 SharePoint plans);
- about one membership per user in unlicensed groups; about 2% of groups are nested in another;
- 10% of users hold a direct license (mostly the same SKU and plans as their base group: ready to
  migrate), 5% have no usage location (never those with a direct license), 2% are disabled;
- seats near capacity: 2% spare on most SKUs, one add-on about 1% short (CountViolation);
- a few duplicate proxy addresses (one pair per 2,000 users, at least one);
- the two applications of the sample tenant (reconciler-plan, reconciler-apply, demo secrets).
"""

from __future__ import annotations

import bisect
import json
import random
from collections.abc import Sequence
from typing import Any, TextIO

POPULAR = (
    "SPE_E3",
    "ENTERPRISEPACK",
    "SPE_E5",
    "STANDARDPACK",
    "EMS",
    "POWER_BI_PRO",
    "SPB",
    "VISIOCLIENT",
    "PROJECTPROFESSIONAL",
    "MCOEV",
    "DESKLESSPACK",
    "AAD_PREMIUM",
    "ENTERPRISEPREMIUM",
    "EMSPREMIUM",
    "SPE_F1",
    "MCOMEETADV",
    "O365_BUSINESS_PREMIUM",
    "Microsoft_365_Copilot",
    "EXCHANGESTANDARD",
    "ATP_ENTERPRISE",
    "AAD_PREMIUM_P2",
    "POWERAPPS_PER_USER",
    "O365_BUSINESS_ESSENTIALS",
    "PROJECT_P1",
    "VISIOONLINE_PLAN1",
    "EXCHANGEENTERPRISE",
    "EXCHANGEARCHIVE_ADDON",
    "WIN10_VDA_E3",
    "IDENTITY_THREAT_PROTECTION",
    "THREAT_INTELLIGENCE",
    "PROJECTPREMIUM",
)
BASE_SKUS = frozenset(
    {
        "SPE_E3",
        "ENTERPRISEPACK",
        "SPE_E5",
        "STANDARDPACK",
        "SPB",
        "DESKLESSPACK",
        "ENTERPRISEPREMIUM",
        "SPE_F1",
        "O365_BUSINESS_PREMIUM",
        "EXCHANGESTANDARD",
        "O365_BUSINESS_ESSENTIALS",
        "EXCHANGEENTERPRISE",
    }
)
MAX_SKUS = 300  # Entra's limit of license-based subscriptions per tenant (facts 2.17)

TENANT_NAME = "Fabrikam"
DOMAIN = "fabrikam.com"
INITIAL_DOMAIN = "fabrikam.onmicrosoft.com"

# The sample tenant's two app registrations; the secrets are fake demo values for the emulator only.
DEMO_APPLICATIONS: tuple[dict[str, Any], ...] = (
    {
        "appId": "2f6a1c9e-7b4d-4e21-9a57-0c3d8e5f1a01",
        "displayName": "reconciler-plan",
        "secret": "emulator-only-demo-secret-plan-0001",
        "permissions": ["Organization.Read.All", "User.Read.All", "Group.Read.All"],
    },
    {
        "appId": "2f6a1c9e-7b4d-4e21-9a57-0c3d8e5f1a02",
        "displayName": "reconciler-apply",
        "secret": "emulator-only-demo-secret-apply-0002",
        "permissions": [
            "LicenseAssignment.ReadWrite.All",
            "User.ReadWrite.All",
            "Group.ReadWrite.All",
            "Organization.Read.All",
        ],
    },
)

_FIRST = [
    "Adele",
    "Alex",
    "Allan",
    "Ana",
    "Ben",
    "Bianca",
    "Carlos",
    "Chen",
    "Chris",
    "Dana",
    "Diego",
    "Elena",
    "Emily",
    "Fatima",
    "Felix",
    "Grace",
    "Hana",
    "Hiro",
    "Ivan",
    "Isabel",
    "Jamal",
    "Jana",
    "Joni",
    "Kai",
    "Karin",
    "Lars",
    "Lee",
    "Lidia",
    "Lynne",
    "Mateo",
    "Megan",
    "Miriam",
    "Nestor",
    "Nina",
    "Omar",
    "Patti",
    "Pradeep",
    "Priya",
    "Raul",
    "Rosa",
    "Sam",
    "Sara",
    "Tomas",
    "Uma",
    "Victor",
    "Wei",
    "Yara",
    "Zoe",
]
_LAST = [
    "Adams",
    "Bauer",
    "Brown",
    "Chen",
    "Costa",
    "Diaz",
    "Dubois",
    "Evans",
    "Fischer",
    "Garcia",
    "Gupta",
    "Hansen",
    "Ito",
    "Jensen",
    "Kim",
    "Kowalski",
    "Lopez",
    "Martin",
    "Meyer",
    "Moreau",
    "Nakamura",
    "Novak",
    "Nguyen",
    "Okafor",
    "Patel",
    "Petrov",
    "Rossi",
    "Sato",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Tanaka",
    "Torres",
    "Vance",
    "Wagner",
    "Wang",
    "Weber",
    "Wilson",
    "Yilmaz",
]
_DEPARTMENTS = [
    "Finance",
    "HR",
    "Legal",
    "Marketing",
    "Sales",
    "Operations",
    "IT",
    "Engineering",
    "Research",
    "Support",
    "Retail",
    "Logistics",
    "Procurement",
    "Facilities",
    "Security",
]
# usage locations, weighted roughly like a US-headquartered multinational
_LOCATIONS = (("US", 55), ("GB", 8), ("DE", 7), ("FR", 5), ("IN", 6), ("CA", 4), ("JP", 3), ("BR", 3),
              ("AU", 3), ("NL", 2), ("ES", 2), ("MX", 2))  # fmt: skip


class _Picker:
    """Weighted choice by bisecting cumulative weights (fast, deterministic)."""

    def __init__(self, items: Sequence[Any], weights: Sequence[float]) -> None:
        self.items = list(items)
        total = 0.0
        self.cum: list[float] = []
        for w in weights:
            total += w
            self.cum.append(total)
        self.total = total

    def pick(self, rng: random.Random) -> Any:
        return self.items[min(bisect.bisect_right(self.cum, rng.random() * self.total), len(self.items) - 1)]


def _guid(rng: random.Random) -> str:
    x = rng.getrandbits(128)
    x = (x & ~(0xF << 76)) | (0x4 << 76)  # version 4
    x = (x & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    h = f"{x:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def choose_skus(count: int) -> list[Any]:
    """The first `count` SKUs: POPULAR in order, then the rest of the catalog by part number."""
    from reconciler.catalog import load_catalog

    catalog = load_catalog()
    chosen: list[Any] = []
    seen: set[str] = set()
    for name in POPULAR:
        entry = catalog.sku(name)
        if entry is not None and entry.sku_id not in seen and entry.plan_ids:
            chosen.append(entry)
            seen.add(entry.sku_id)
    if len(chosen) < count:
        for entry in sorted(catalog.skus.values(), key=lambda s: s.part_number.lower()):
            if entry.sku_id not in seen and entry.plan_ids:
                chosen.append(entry)
                seen.add(entry.sku_id)
    return chosen[:count]


def generate_tenant(*, users: int, groups: int, skus: int = 10, seed: int = 0) -> dict[str, Any]:
    """A synthetic tenant in the seed format (see the module doc for its shape)."""
    if users < 0 or groups < 0:
        raise ValueError("--users and --groups must be 0 or more")
    if not 1 <= skus <= MAX_SKUS:
        raise ValueError(
            f"--skus must be between 1 and {MAX_SKUS} (Entra's limit of subscriptions per tenant)"
        )
    from reconciler.catalog import load_catalog
    from reconciler.emulator.seed import bundled_rules_section

    catalog = load_catalog()
    rng = random.Random(seed)
    tenant_id = _guid(rng)

    # --- products
    entries = choose_skus(skus)
    base_idx = [i for i, e in enumerate(entries) if e.part_number in BASE_SKUS]
    addon_idx = [i for i, e in enumerate(entries) if e.part_number not in BASE_SKUS]
    if not base_idx:  # a tenant of add-ons only: treat the first SKU as the suite
        base_idx, addon_idx = addon_idx[:1], addon_idx[1:]

    # --- groups: which are licensed, with what
    n_licensed = min(groups, max(1 if groups else 0, round(groups * 0.15)))
    group_ids = [_guid(rng) for _ in range(groups)]
    licensed_positions = sorted(rng.sample(range(groups), n_licensed)) if n_licensed else []
    group_lic: dict[int, list[tuple[int, list[str]]]] = {}
    base_groups: list[int] = []
    addon_groups: list[int] = []
    used = {True: 0, False: 0}
    for k, pos in enumerate(licensed_positions):
        is_base = not addon_idx or k % 5 < 3  # 60% suites, 40% add-ons
        pool = base_idx if is_base else addon_idx
        n = used[is_base]
        used[is_base] = n + 1
        # every SKU gets a group first, then the popular ones get most of the others
        sku_i = pool[n] if n < len(pool) else pool[min(int(rng.paretovariate(1.2)) - 1, len(pool) - 1)]
        lics = [(sku_i, _disabled(rng, entries[sku_i].plan_ids))]
        if is_base and addon_idx and rng.random() < 0.1:
            extra = addon_idx[rng.randrange(len(addon_idx))]
            lics.append((extra, []))
        group_lic[pos] = lics
        (base_groups if is_base else addon_groups).append(pos)
    unlicensed = [i for i in range(groups) if i not in group_lic]

    # a few groups are much larger than the rest (Zipf-like)
    base_pick = (
        _Picker(base_groups, [1.0 / (r + 1) ** 0.8 for r in range(len(base_groups))]) if base_groups else None
    )
    addon_pick = (
        _Picker(addon_groups, [1.0 / (r + 1) ** 0.8 for r in range(len(addon_groups))])
        if addon_groups
        else None
    )
    plain_pick = (
        _Picker(unlicensed, [1.0 / (r + 1) ** 0.5 for r in range(len(unlicensed))]) if unlicensed else None
    )
    loc_pick = _Picker([c for c, _ in _LOCATIONS], [w for _, w in _LOCATIONS])

    members: list[list[str]] = [[] for _ in range(groups)]
    demand: list[set[int]] = [set() for _ in entries]
    users_out: list[dict[str, Any]] = []
    direct_users: list[int] = []
    for u in range(users):
        uid = _guid(rng)
        first = _FIRST[rng.randrange(len(_FIRST))]
        last = _LAST[rng.randrange(len(_LAST))]
        nick = f"{first}.{last}.{u + 1}".lower()
        upn = f"{nick}@{DOMAIN}"
        record: dict[str, Any] = {
            "id": uid,
            "displayName": f"{first} {last}",
            "givenName": first,
            "surname": last,
            "department": _DEPARTMENTS[rng.randrange(len(_DEPARTMENTS))],
            "userPrincipalName": upn,
            "mail": upn,
            "usageLocation": loc_pick.pick(rng),
            "proxyAddresses": [f"SMTP:{upn}"],
            "accountEnabled": rng.random() >= 0.02,
            "assignedLicenses": [],
        }
        my_base: int | None = None
        if base_pick is not None and rng.random() < 0.9:
            my_base = base_pick.pick(rng)
            _join(members, demand, group_lic, my_base, uid, u)
            if addon_pick is not None and rng.random() < 0.6:
                _join(members, demand, group_lic, addon_pick.pick(rng), uid, u)
            if rng.random() < 0.01:
                other = base_pick.pick(rng)
                if other != my_base:
                    _join(members, demand, group_lic, other, uid, u)
        if plain_pick is not None:
            for _ in range(1 + (rng.random() < 0.3) - (rng.random() < 0.3)):
                g = plain_pick.pick(rng)
                if not members[g] or members[g][-1] != uid:
                    members[g].append(uid)
        r = rng.random()
        if r < 0.10:
            if my_base is not None and rng.random() < 0.7:
                sku_i, disabled = group_lic[my_base][0]
            else:
                sku_i = rng.randrange(len(entries))
                disabled = []
            record["assignedLicenses"] = [{"skuId": entries[sku_i].sku_id, "disabledPlans": disabled}]
            demand[sku_i].add(u)
            direct_users.append(u)
        elif r < 0.15:
            record["usageLocation"] = None
        users_out.append(record)

    # duplicate proxy addresses: one pair per 2,000 users, at least one
    if users >= 2:
        for _ in range(max(1, users // 2000)):
            a, b = rng.sample(range(users), 2)
            users_out[b]["proxyAddresses"].append("smtp:" + users_out[a]["userPrincipalName"])

    # nested groups: about 2% of the groups are members of another group
    if groups >= 2:
        for _ in range(max(1, groups // 50)):
            parent, child = sorted(rng.sample(range(groups), 2))  # parent before child: no cycles
            if group_ids[child] not in members[parent]:
                members[parent].append(group_ids[child])

    # --- subscribed SKUs: seats near capacity, one add-on short
    short = next((i for i in addon_idx if demand[i]), None)
    subscribed = []
    for i, e in enumerate(entries):
        want = len(demand[i])
        # seats near capacity: 2% spare, one add-on about 1% short
        enabled = max(0, want - max(1, want // 100)) if i == short else want + max(2, want // 50)
        subscribed.append(
            {
                "skuId": e.sku_id,
                "skuPartNumber": e.part_number,
                "appliesTo": "User",
                "capabilityStatus": "Enabled",
                "prepaidUnits": {"enabled": enabled, "suspended": 0, "warning": 0, "lockedOut": 0},
                "servicePlans": [
                    {
                        "servicePlanId": p,
                        "servicePlanName": catalog.plans[p].name,
                        "provisioningStatus": "Success",
                        "appliesTo": "User",
                    }
                    for p in e.plan_ids
                ],
            }
        )

    groups_out = []
    for i in range(groups):
        glics = group_lic.get(i) or []
        if glics:
            part = entries[glics[0][0]].part_number
            name = f"LIC-{part}-{i + 1}"
            desc: str | None = " + ".join(entries[s].product_name for s, _ in glics)
        else:
            name = f"GRP-{_DEPARTMENTS[i % len(_DEPARTMENTS)]}-{i + 1}"
            desc = None
        groups_out.append(
            {
                "id": group_ids[i],
                "displayName": name,
                "description": desc,
                "securityEnabled": True,
                "mailEnabled": False,
                "mailNickname": name.lower(),
                "groupTypes": [],
                "assignedLicenses": [{"skuId": entries[s].sku_id, "disabledPlans": d} for s, d in glics],
                "members": members[i],
            }
        )

    size_class = "S" if users < 50 else "M" if users <= 500 else "L"
    return {
        "description": (
            f"Synthetic tenant generated by `reconciler emulator generate --users {users} --groups {groups} "
            f"--skus {skus} --seed {seed}`. The application secrets are fake demo values for the local "
            "emulator only."
        ),
        "organization": {
            "id": tenant_id,
            "displayName": f"{TENANT_NAME} (synthetic)",
            "countryLetterCode": "US",
            "defaultUsageLocation": "US",
            "verifiedDomains": [
                {
                    "name": DOMAIN,
                    "isDefault": True,
                    "isInitial": False,
                    "type": "Managed",
                    "capabilities": "Email, OfficeCommunicationsOnline",
                },
                {
                    "name": INITIAL_DOMAIN,
                    "isDefault": False,
                    "isInitial": True,
                    "type": "Managed",
                    "capabilities": "Email, OfficeCommunicationsOnline",
                },
            ],
        },
        "subscribedSkus": subscribed,
        "users": users_out,
        "groups": groups_out,
        "applications": [dict(a, permissions=list(a["permissions"])) for a in DEMO_APPLICATIONS],
        "emulator": {
            "rules": bundled_rules_section(),
            "processingDelaySeconds": 0,
            "tenantSizeClass": size_class,
        },
    }


def _disabled(rng: random.Random, plan_ids: Sequence[str]) -> list[str]:
    """A third of licensed groups switch off one or two plans."""
    if len(plan_ids) < 4 or rng.random() >= 0.33:
        return []
    return sorted(rng.sample(list(plan_ids), 1 + (rng.random() < 0.5)))


def _join(
    members: list[list[str]],
    demand: list[set[int]],
    group_lic: dict[int, list[tuple[int, list[str]]]],
    g: int,
    uid: str,
    u: int,
) -> None:
    if members[g] and members[g][-1] == uid:
        return
    members[g].append(uid)
    for sku_i, _ in group_lic.get(g, ()):
        demand[sku_i].add(u)


def write_tenant(doc: dict[str, Any], out: TextIO) -> None:
    """Write a tenant as JSON: small sections indented, one user or group per line."""
    compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
    out.write("{\n")
    first = True
    for key, value in doc.items():
        if not first:
            out.write(",\n")
        first = False
        out.write(f"  {json.dumps(key)}: ")
        if key in ("users", "groups", "subscribedSkus") and isinstance(value, list):
            if not value:
                out.write("[]")
                continue
            out.write("[\n    ")
            out.write(",\n    ".join(compact(item) for item in value))
            out.write("\n  ]")
        else:
            out.write(json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n  "))
    out.write("\n}\n")


def generate_to(out: str | None, *, users: int, groups: int, skus: int = 10, seed: int = 0) -> str:
    """Generate a tenant and write it to the file `out` (or stdout when None); returns a summary."""
    import sys
    from pathlib import Path

    from reconciler.errors import ReconcilerError, UsageError

    try:
        doc = generate_tenant(users=users, groups=groups, skus=skus, seed=seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    summary = f"{users} users, {groups} groups, {len(doc['subscribedSkus'])} SKUs (seed {seed})"
    if out is None or out == "-":
        write_tenant(doc, sys.stdout)
        return summary
    path = Path(out)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            write_tenant(doc, fh)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReconcilerError(f"{out}: cannot write the tenant: {exc.strerror or exc}") from None
    return f"{path}: {summary}"
