"""apply's user reads: many users are read by listing every user when that takes fewer requests, as
parallel listings split by UPN when there are many pages, selecting only what apply looks at."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
from test_graph_observe import BASE, E3, FakeGraph, client_for, make_tenant

from reconciler.apply.wait import LIST_ABOVE, WAIT_SELECT, read_users
from reconciler.graph.client import GraphClient
from reconciler.graph.transport import RetryPolicy


def test_many_users_are_listed_not_read_one_by_one() -> None:
    tenant = make_tenant(3000)
    fake = FakeGraph(tenant)
    wanted = [u["id"] for u in tenant["users"][: LIST_ABOVE + 500]]
    with client_for(fake) as client:
        got = read_users(client, [*wanted, "00000000-0000-0000-0000-00000000dead"])
        # $count, then 4 pages of up to 999 users, instead of 75 $batch calls of 20 GETs
        assert client.stats.requests == 5
    assert sorted(got) == sorted(wanted)
    assert not any(line.startswith("POST $batch") for line in fake.log)
    by_id = {u["id"]: u for u in tenant["users"]}
    assert all(got[i].user_principal_name == by_id[i]["userPrincipalName"] for i in wanted)


def test_few_users_are_read_by_id() -> None:
    tenant = make_tenant(3000)
    fake = FakeGraph(tenant)
    wanted = [u["id"] for u in tenant["users"][:40]]
    with client_for(fake) as client:
        got = read_users(client, wanted)
        assert client.stats.requests == 2  # two $batch calls of 20
    assert sorted(got) == sorted(wanted)


def test_by_id_when_listing_would_cost_more() -> None:
    # 1,200 of 60,000 users: 61 pages would cost more than 60 $batch calls
    tenant = make_tenant(3000)
    fake = FakeGraph(tenant)
    original = fake.get

    def get(url: str, headers: object) -> tuple[int, object]:
        if url.startswith("/users/$count"):
            return 200, "60000"
        return original(url, headers)  # type: ignore[arg-type]

    fake.get = get  # type: ignore[method-assign]
    wanted = [u["id"] for u in tenant["users"][:1200]]
    with client_for(fake) as client:
        got = read_users(client, wanted)
        assert client.stats.requests == 1 + 60
    assert sorted(got) == sorted(wanted)


def test_count_refused_falls_back_to_batches() -> None:
    tenant = make_tenant(1500)
    fake = FakeGraph(tenant, support_count=False)
    wanted = [u["id"] for u in tenant["users"][: LIST_ABOVE + 100]]
    with client_for(fake) as client:
        got = read_users(client, wanted)
        assert client.stats.requests == 1 + 55
    assert sorted(got) == sorted(wanted)


class PrefixGraph(FakeGraph):
    """FakeGraph that also answers `startswith(userPrincipalName,'c') or ...` on /users, and
    records the $select of every user read."""

    def __init__(self, tenant: dict[str, Any], **kw: Any) -> None:
        super().__init__(tenant, **kw)
        self.selects: list[str] = []
        self.prefix_listings = 0

    def get(self, url: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path.startswith("/users") and "$select" in query:
            self.selects.append(query["$select"])
        flt = query.get("$filter", "")
        if parts.path == "/users" and flt.startswith("startswith("):
            chars = tuple(c.replace("''", "'") for c in re.findall(r"startswith\(userPrincipalName,'((?:[^']|'')*)'\)", flt))
            fields = query["$select"].split(",")
            items = [
                {k: u.get(k) for k in fields}
                for u in self.users.values()
                if u["userPrincipalName"].lower().startswith(chars)
            ]
            if "$skiptoken" not in query:
                self.prefix_listings += 1
            status, body = self.page(parts.path, query, items)
            if "@odata.nextLink" in body:  # the filter holds '#' and spaces: encode the link
                rest = {k: v for k, v in query.items() if k != "$skiptoken"}
                rest["$skiptoken"] = body["@odata.nextLink"].rsplit("$skiptoken=", 1)[1].split("&")[0]
                body["@odata.nextLink"] = f"{BASE}{parts.path}?{urlencode(rest, quote_via=quote)}"
            return status, body
        return super().get(url, headers)


def test_many_pages_are_read_as_parallel_listings_of_the_states_only() -> None:
    tenant = make_tenant(3000)
    for i, u in enumerate(tenant["users"]):
        u["userPrincipalName"] = f"{'abcdefgh'[i % 8]}{u['userPrincipalName']}"
    odd = tenant["users"][7]
    odd["userPrincipalName"] = "\u00e9" + odd["userPrincipalName"]  # a first character no listing asks for
    fake = PrefixGraph(tenant, max_page=100)
    wanted = [u["id"] for u in tenant["users"][: LIST_ABOVE + 500]]
    client = GraphClient(
        BASE, token_provider=lambda: "t", transport=httpx.MockTransport(fake.handler), read_only=True,
        retry=RetryPolicy(sleep=lambda s: None), page_size=100,
    )
    with client:
        got = read_users(client, [*wanted, "00000000-0000-0000-0000-00000000dead"], sample_upns=["a@x", "b@x"])
    assert sorted(got) == sorted(wanted)
    by_id = {u["id"]: u for u in tenant["users"]}
    assert all(got[i].user_principal_name == by_id[i]["userPrincipalName"] for i in wanted)
    assert [s.sku_id for s in got[wanted[0]].license_states] == [E3]
    # 30 pages of 100: split over the client's 6 connections; then the two users no listing
    # returned (the odd one, the deleted one) by id, in one $batch
    assert fake.prefix_listings == client.max_concurrency
    assert [x for x in fake.log if x.startswith("POST")] == ["POST $batch[2]"]
    # only what apply looks at: states, UPN, usage location (not proxyAddresses, assignedLicenses...)
    assert fake.selects and all(s.split(",") == list(WAIT_SELECT) for s in fake.selects)
