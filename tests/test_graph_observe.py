"""observe() against a small in-process fake of Graph (httpx.MockTransport): shapes, paging, $batch,
$select, the user strategy decided by counting, and equality with TenantState.from_snapshot."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from reconciler.graph.client import GraphClient
from reconciler.graph.observe import ObservePlan, observe
from reconciler.graph.transport import RetryPolicy
from reconciler.state import TenantState

BASE = "https://graph.test/v1.0"
TENANT = "f1b45b40-57df-41f7-9596-7f2313883635"
E3 = "6fd2c87f-b296-42f0-b197-1e91e994b900"
E1 = "18181a46-0d4e-45cd-891e-60aabd171b4e"
SWAY = "a23b959c-7ce8-4e57-9140-b90eb88a9e97"


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def gid(n: int) -> str:
    return f"00000000-0000-4000-9000-{n:012d}"


def make_tenant(n_users: int = 12) -> dict[str, Any]:
    """A snapshot-format tenant plus the per-user licenseAssignmentStates a real Graph would return."""
    users = []
    for i in range(n_users):
        upn = f"user{i}@contoso.com"
        states = []
        direct = []
        if i < 6:  # members of LIC-E3
            states.append(
                {
                    "skuId": E3,
                    "assignedByGroup": gid(1),
                    "disabledPlans": [SWAY],
                    "state": "Active",
                    "error": "None",
                }
            )
        if i == 7:  # a direct E1
            direct.append({"skuId": E1, "disabledPlans": []})
            states.append(
                {
                    "skuId": E1,
                    "assignedByGroup": None,
                    "disabledPlans": [],
                    "state": "Active",
                    "error": "None",
                }
            )
        users.append(
            {
                "id": uid(i),
                "userPrincipalName": upn,
                "displayName": f"User {i}",
                "mail": upn,
                "usageLocation": "US" if i % 3 else None,
                "accountEnabled": True,
                "proxyAddresses": [f"SMTP:{upn}"],
                "assignedLicenses": direct,
                "licenseAssignmentStates": states,
            }
        )
    groups = [
        {
            "id": gid(1),
            "displayName": "LIC-E3",
            "securityEnabled": True,
            "mailEnabled": False,
            "groupTypes": [],
            "membershipRule": None,
            "assignedLicenses": [{"skuId": E3, "disabledPlans": [SWAY]}],
            "licenseProcessingState": {"state": "ProcessingComplete"},
            "mail": None,
            "proxyAddresses": [],
            "members": [uid(i) for i in range(6)] + [gid(2)],
        },
        {
            "id": gid(2),
            "displayName": "Sales",
            "securityEnabled": True,
            "mailEnabled": False,
            "groupTypes": [],
            "membershipRule": None,
            "assignedLicenses": [],
            "licenseProcessingState": None,
            "mail": None,
            "proxyAddresses": [],
            "members": [uid(8), uid(9)],
        },
        {
            "id": gid(3),
            "displayName": "Unrelated",
            "securityEnabled": True,
            "mailEnabled": False,
            "groupTypes": [],
            "membershipRule": None,
            "assignedLicenses": [],
            "licenseProcessingState": None,
            "mail": None,
            "proxyAddresses": [],
            "members": [uid(10)],
        },
    ]
    return {
        "organization": {
            "id": TENANT,
            "displayName": "Contoso",
            "countryLetterCode": "US",
            "defaultUsageLocation": "FR",
            "verifiedDomains": [
                {"name": "contoso.com", "isInitial": False, "isDefault": True},
                {"name": "contoso.onmicrosoft.com", "isInitial": True, "isDefault": False},
            ],
        },
        "subscribedSkus": [
            {
                "id": f"{TENANT}_{E3}",
                "skuId": E3,
                "skuPartNumber": "ENTERPRISEPACK",
                "appliesTo": "User",
                "capabilityStatus": "Enabled",
                "consumedUnits": 6,
                "prepaidUnits": {"enabled": 10, "suspended": 0, "warning": 0, "lockedOut": 0},
                "servicePlans": [
                    {
                        "servicePlanId": SWAY,
                        "servicePlanName": "SWAY",
                        "provisioningStatus": "Success",
                        "appliesTo": "User",
                    }
                ],
            },
            {
                "id": f"{TENANT}_{E1}",
                "skuId": E1,
                "skuPartNumber": "STANDARDPACK",
                "appliesTo": "User",
                "capabilityStatus": "Enabled",
                "consumedUnits": 1,
                "prepaidUnits": {"enabled": 5, "suspended": 0, "warning": 0, "lockedOut": 0},
                "servicePlans": [],
            },
        ],
        "users": users,
        "groups": groups,
    }


class FakeGraph:
    """Just enough of Graph: collections with $select/$top/nextLink/$count, members, $batch."""

    def __init__(self, tenant: Mapping[str, Any], *, max_page: int = 999, support_count: bool = True) -> None:
        self.tenant = tenant
        self.max_page = max_page
        self.support_count = support_count
        self.log: list[str] = []
        self.users = {u["id"]: u for u in tenant["users"]}
        self.groups = {g["id"]: g for g in tenant["groups"]}

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/v1.0/$batch":
            body = json.loads(request.content)
            self.log.append(f"POST $batch[{len(body['requests'])}]")
            responses = []
            for item in body["requests"]:
                status, payload = self.get(item["url"], item.get("headers") or {})
                responses.append({"id": item["id"], "status": status, "headers": {}, "body": payload})
            return httpx.Response(200, json={"responses": responses})
        assert request.method == "GET"
        path = request.url.raw_path.decode()[len("/v1.0") :]
        self.log.append(f"GET {path.split('?')[0]}")
        status, payload = self.get(path, dict(request.headers))
        return httpx.Response(status, json=payload)

    def get(self, url: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        parts = urlsplit(url)
        path = parts.path
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if path == "/users/$count":
            if (
                not self.support_count
                or headers.get("ConsistencyLevel", headers.get("consistencylevel")) != "eventual"
            ):
                return 400, {
                    "error": {"code": "Request_BadRequest", "message": "$count is not currently supported."}
                }
            return 200, str(len(self.users))
        select = query.get("$select")
        assert select, f"no $select on {url}"
        fields = select.split(",")

        def pick(obj: Mapping[str, Any]) -> dict[str, Any]:
            return {k: obj.get(k) for k in fields}

        if path == "/organization":
            return 200, {"value": [pick(self.tenant["organization"])]}
        if path == "/subscribedSkus":
            return 200, {"value": [pick(s) for s in self.tenant["subscribedSkus"]]}
        if path == "/users":
            items = list(self.users.values())
            flt = query.get("$filter")
            if flt:
                m = re.fullmatch(r"assignedLicenses/any\(x:x/skuId eq ([0-9a-f-]+)\)", unquote(flt))
                assert m, flt
                sku = m.group(1)
                items = [
                    u
                    for u in items
                    if any(s["skuId"] == sku and s["state"] == "Active" for s in u["licenseAssignmentStates"])
                ]
            return self.page(path, query, [pick(u) for u in items])
        if path == "/groups":
            return self.page(path, query, [pick(g) for g in self.groups.values()])
        m = re.fullmatch(r"/groups/([^/]+)/members", path)
        if m:
            group = self.groups.get(m.group(1))
            if group is None:
                return 404, {"error": {"code": "Request_ResourceNotFound", "message": "no"}}
            return self.page(
                path, query, [{"@odata.type": "#microsoft.graph.user", "id": i} for i in group["members"]]
            )
        m = re.fullmatch(r"/users/([^/]+)", path)
        if m:
            ref = unquote(m.group(1)).lower()
            for u in self.users.values():
                if ref in (u["id"], u["userPrincipalName"].lower()):
                    return 200, pick(u)
            return 404, {"error": {"code": "Request_ResourceNotFound", "message": "no"}}
        raise AssertionError(f"unexpected {url}")

    def page(self, path: str, query: Mapping[str, str], items: list[dict[str, Any]]) -> tuple[int, Any]:
        top = int(query.get("$top", "100"))
        assert 1 <= top <= 999
        size = min(top, self.max_page)
        start = int(query.get("$skiptoken", "0"))
        body: dict[str, Any] = {"value": items[start : start + size]}
        if query.get("$count") == "true":
            if not self.support_count:
                return 400, {"error": {"code": "Request_UnsupportedQuery", "message": "no $count"}}
            body["@odata.count"] = len(items)
        if start + size < len(items):
            rest = {k: v for k, v in query.items() if k != "$skiptoken"}
            rest["$skiptoken"] = str(start + size)
            body["@odata.nextLink"] = BASE + path + "?" + "&".join(f"{k}={v}" for k, v in rest.items())
        return 200, body


def client_for(fake: FakeGraph) -> GraphClient:
    return GraphClient(
        BASE,
        token_provider=lambda: "t",
        transport=httpx.MockTransport(fake.handler),
        read_only=True,
        retry=RetryPolicy(sleep=lambda s: None),
    )


def snapshot_state(tenant: Mapping[str, Any]) -> TenantState:
    return TenantState.from_snapshot(tenant)


def test_observe_everything_equals_the_snapshot_in_one_batch() -> None:
    tenant = make_tenant()
    fake = FakeGraph(tenant)
    with client_for(fake) as client:
        plan = ObservePlan()
        state = observe(client, all_users=True, all_groups=True, progress=False, plan=plan)
        assert state == snapshot_state(tenant)
        assert state.fingerprint() == snapshot_state(tenant).fingerprint()
        # organization, SKUs, first pages: one batch; members of 3 groups: one more
        assert fake.log == ["POST $batch[5]", "POST $batch[3]"]
        assert client.stats.requests == 2
        assert plan.user_strategy == "all" and plan.users_total == 12


def test_observe_pages_everything_and_counts_requests_exactly() -> None:
    tenant = make_tenant(12)
    fake = FakeGraph(tenant, max_page=5)
    with client_for(fake) as client:
        state = observe(client, all_users=True, all_groups=True, progress=False)
    assert state == snapshot_state(tenant)
    # 1 first batch + 2 more user pages + 0 more group pages (3 groups) + members: LIC-E3 has 7 (2 pages)
    assert sorted(fake.log) == sorted(
        ["POST $batch[5]", "GET /users", "GET /users", "POST $batch[3]", "POST $batch[1]"]
    )


def test_default_observe_keeps_licensed_groups_their_members_and_direct_holders() -> None:
    tenant = make_tenant()
    fake = FakeGraph(tenant)
    with client_for(fake) as client:
        state = observe(client, progress=False)
    assert set(state.groups) == {gid(1)}
    assert set(state.users) == {uid(i) for i in range(6)} | {uid(7)}
    assert state.groups[gid(1)].member_group_ids == (gid(2),)
    assert state.groups[gid(1)].member_user_ids == tuple(uid(i) for i in range(6))
    assert state.organization.usage_location == "FR"
    assert state.organization.initial_domain == "contoso.onmicrosoft.com"
    assert state.users[uid(7)].direct_licenses[0].sku_id == E1


def test_named_groups_by_name_or_id_and_named_users() -> None:
    tenant = make_tenant()
    with client_for(FakeGraph(tenant)) as client:
        state = observe(
            client, group_refs=["sales", gid(3), "Missing"], user_refs=["USER11@contoso.com"], progress=False
        )
    assert set(state.groups) == {gid(1), gid(2), gid(3)}
    assert {uid(8), uid(9), uid(10), uid(11)} <= set(state.users)


def test_large_tenant_with_few_members_fetches_members_by_id() -> None:
    tenant = make_tenant(60)
    fake = FakeGraph(tenant, max_page=5)  # 12 pages to list everybody
    with client_for(fake) as client:
        plan = ObservePlan()
        state = observe(client, progress=False, plan=plan)
    assert plan.user_strategy == "members"
    assert set(state.users) == {uid(i) for i in range(6)} | {uid(7)}
    assert fake.log.count("GET /users") == 0
    expected = TenantState.from_snapshot(
        {
            **tenant,
            "users": [u for u in tenant["users"] if u["id"] in state.users],
            "groups": [g for g in tenant["groups"] if g["id"] == gid(1)],
        }
    )
    # nested group gid(2) is not a user either way
    assert state.users == expected.users
    assert state.groups[gid(1)].member_user_ids == expected.groups[gid(1)].member_user_ids


def test_large_tenant_with_many_members_lists_everybody() -> None:
    tenant = make_tenant(30)
    for g in tenant["groups"]:
        if g["id"] == gid(1):
            g["members"] = [uid(i) for i in range(30)]
    for sku in tenant["subscribedSkus"]:
        sku["consumedUnits"] = 30 if sku["skuId"] == E3 else 1
    fake = FakeGraph(tenant, max_page=10)
    with client_for(fake) as client:
        plan = ObservePlan()
        observe(client, progress=False, plan=plan)
    assert plan.user_strategy == "all"
    assert fake.log.count("GET /users") == 2


def test_without_count_support_users_are_still_read() -> None:
    tenant = make_tenant()
    fake = FakeGraph(tenant, support_count=False)
    with client_for(fake) as client:
        state = observe(client, all_users=True, all_groups=True, progress=False)
    assert state == snapshot_state(tenant)


def test_progress_callback_is_called() -> None:
    seen: list[str] = []
    with client_for(FakeGraph(make_tenant())) as client:
        observe(client, progress=lambda stage, done, total: seen.append(stage))
    assert "Reading group members" in seen


@pytest.mark.parametrize("refs", [["LIC-E3"], [gid(1).upper()]])
def test_group_reference_forms(refs: list[str]) -> None:
    with client_for(FakeGraph(make_tenant())) as client:
        assert gid(1) in observe(client, group_refs=refs, progress=False).groups


def test_pipelined_parsing_keeps_order_and_reraises_without_hanging() -> None:
    from reconciler.graph.observe import _pipelined

    seen: list[int] = []
    _pipelined(iter([[{"n": i}] for i in range(10)]), lambda page: seen.append(page[0]["n"]))
    assert seen == list(range(10))

    def boom(page: list[dict[str, Any]]) -> None:
        raise ValueError("bad page")

    with pytest.raises(ValueError, match="bad page"):
        _pipelined(iter([[{"n": i}] for i in range(100)]), boom)
